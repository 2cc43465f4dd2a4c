#include "client/broker_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <filesystem>

#include "core/clock.h"
#include "crypto/eip191.h"
#include "crypto/hex.h"
#include "crypto/keystore.h"
#include "crypto/siwe.h"

namespace grid::client {
namespace {

std::string GridHome() {
  if (const char* h = std::getenv("GRID_HOME"); h && *h) return h;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.grid";
}

Status WritePrivateFile(const std::string& path, const std::string& contents) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  // Unique per writer: the agent's two connections may both sign in at once.
  static std::atomic<uint64_t> seq{0};
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(seq++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return Unavailable("cannot write " + tmp);
  bool ok = ::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Unavailable("cannot write " + path);
  return Status::Ok();
}

}  // namespace

std::string KeyPassword() {
  const char* p = std::getenv("GRID_KEY_PASSWORD");
  static bool warned = false;
  if ((!p || !*p) && !warned) {
    std::fprintf(stderr, "grid: warning: GRID_KEY_PASSWORD is empty; the key file is protected by an empty password\n");
    warned = true;
  }
  return p ? p : "";
}

Result<crypto::PrivateKey> LoadKey(const std::string& path) {
  if (path.empty()) return InvalidArgument("no key: pass --key FILE or set GRID_KEY (create one with `grid keys new --out FILE`)");
  GRID_ASSIGN_OR_RETURN(std::string text, crypto::ReadFileToString(path));
  auto key = crypto::DecryptKeystore(text, KeyPassword());
  if (!key.ok()) return Status(key.status().code(), path + ": " + key.status().message());
  return key;
}

Result<std::string> KeyFileAddress(const std::string& path) {
  if (path.empty()) return InvalidArgument("no key: pass --key FILE or set GRID_KEY (create one with `grid keys new --out FILE`)");
  GRID_ASSIGN_OR_RETURN(std::string text, crypto::ReadFileToString(path));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return InvalidArgument(path + ": not a keystore JSON file");
  const json::value* a = v.as_object().if_contains("address");
  if (!a || !a->is_string()) return InvalidArgument(path + ": keystore has no address field");
  std::string s(a->get_string());
  if (!s.starts_with("0x")) s = "0x" + s;
  GRID_ASSIGN_OR_RETURN(crypto::Address addr, crypto::ParseAddress(s));
  return addr.ToLowerHex();
}

Result<std::unique_ptr<BrokerClient>> BrokerClient::Create(const std::string& broker_url, const std::string& key_path) {
  // Several brokers may be listed (URL1,URL2); the first is used for now.
  std::string url = broker_url.substr(0, broker_url.find(','));
  while (!url.empty() && url.back() == '/') url.pop_back();
  GRID_ASSIGN_OR_RETURN(auto http, net::HttpClient::Create(url));
  return std::unique_ptr<BrokerClient>(new BrokerClient(std::move(http), url, key_path));
}

Result<std::unique_ptr<BrokerClient>> BrokerClient::CreateWithKey(const std::string& broker_url,
                                                                 const crypto::PrivateKey& key, std::string home) {
  GRID_ASSIGN_OR_RETURN(auto c, Create(broker_url, ""));
  c->key_ = key;
  c->home_ = std::move(home);
  return c;
}

Result<std::string> BrokerClient::Address() {
  if (key_) return crypto::AddressOf(*key_).ToLowerHex();
  return KeyFileAddress(key_path_);
}

Result<crypto::PrivateKey> BrokerClient::Key() {
  if (!key_) {
    GRID_ASSIGN_OR_RETURN(crypto::PrivateKey k, LoadKey(key_path_));
    key_ = k;
  }
  return *key_;
}

std::string BrokerClient::TokenPath(const std::string& address) const {
  std::string safe;
  for (char c : url_) safe.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return (home_.empty() ? GridHome() : home_) + "/tokens/" + address + "@" + safe + ".json";
}

Result<json::value> BrokerClient::Send(std::string_view method, std::string_view path, const json::value* body,
                                       const std::string* token, int* http_status) {
  net::HeaderList headers;
  std::string payload;
  if (body) {
    payload = json::serialize(*body);
    headers.emplace_back("Content-Type", "application/json");
  }
  if (token) headers.emplace_back("Authorization", "Bearer " + *token);
  GRID_ASSIGN_OR_RETURN(net::HttpResponse r, http_->Send(method, path, payload, headers));
  *http_status = r.status;
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (r.status >= 200 && r.status < 300) {
    if (ec) return Internal("broker sent a malformed JSON response: " + ec.message());
    return v;
  }
  // Map the API error back to a Status, keeping the broker's words.
  Code code = Code::kInternal;
  std::string message = "HTTP " + std::to_string(r.status);
  if (!ec && v.is_object()) {
    if (const json::value* e = v.as_object().if_contains("error"); e && e->is_object()) {
      const json::object& eo = e->as_object();
      if (const json::value* m = eo.if_contains("message"); m && m->is_string()) message = std::string(m->get_string());
      if (const json::value* c = eo.if_contains("code"); c && c->is_string()) {
        for (int i = 0; i <= static_cast<int>(Code::kInternal); ++i)
          if (CodeName(static_cast<Code>(i)) == c->get_string()) code = static_cast<Code>(i);
      }
    }
  }
  if (code == Code::kOk) code = Code::kInternal;
  return Status(code, message);
}

Result<json::value> BrokerClient::Call(std::string_view method, std::string_view path, const json::value* body) {
  int status = 0;
  return Send(method, path, body, nullptr, &status);
}

Result<LoginResult> BrokerClient::Login() {
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, Key());
  crypto::Address address = crypto::AddressOf(key);
  GRID_ASSIGN_OR_RETURN(json::value nonce, Call("POST", "/v1/auth/nonce", nullptr));
  const json::object& n = nonce.as_object();
  auto str = [&](const char* k) -> std::string {
    const json::value* v = n.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : "";
  };
  crypto::SiweMessage m;
  m.domain = str("domain");
  m.address = address.ToChecksumHex();
  m.statement = "Sign in to Gridmarket.";
  m.uri = str("uri");
  m.version = "1";
  const json::value* chain = n.if_contains("chain_id");
  m.chain_id = chain && chain->is_number() ? chain->to_number<uint64_t>() : 0;
  m.nonce = str("nonce");
  SystemClock clock;
  UnixMs now = clock.NowMs();
  m.issued_at = FormatTime(now);
  m.expiration_time = FormatTime(now + 10 * 60'000);
  std::string text = crypto::FormatSiwe(m);
  GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::SignDigest(key, crypto::PersonalMessageHash(text)));
  json::value body = json::object{{"message", text}, {"signature", crypto::HexEncode(sig)}};
  GRID_ASSIGN_OR_RETURN(json::value r, Call("POST", "/v1/auth/login", &body));
  const json::object& o = r.as_object();
  LoginResult out;
  auto get = [&](const char* k) {
    const json::value* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  out.token = get("token");
  out.address = get("address");
  out.expires_at = get("expires_at");
  GRID_RETURN_IF_ERROR(WritePrivateFile(TokenPath(out.address), json::serialize(r)));
  return out;
}

Result<json::value> BrokerClient::AuthCall(std::string_view method, std::string_view path, const json::value* body) {
  GRID_ASSIGN_OR_RETURN(std::string address, Address());
  std::string token;
  if (auto cached = crypto::ReadFileToString(TokenPath(address)); cached.ok()) {
    boost::system::error_code ec;
    json::value v = json::parse(*cached, ec);
    if (!ec && v.is_object()) {
      const json::value* t = v.as_object().if_contains("token");
      const json::value* e = v.as_object().if_contains("expires_at");
      UnixMs exp = 0;
      if (t && t->is_string() && e && e->is_string() && ParseTime(e->get_string(), &exp) &&
          exp > SystemClock().NowMs() + 60'000)
        token = std::string(t->get_string());
    }
  }
  if (!token.empty()) {
    int status = 0;
    auto r = Send(method, path, body, &token, &status);
    if (status != 401) return r;
  }
  GRID_ASSIGN_OR_RETURN(LoginResult login, Login());
  int status = 0;
  return Send(method, path, body, &login.token, &status);
}

}  // namespace grid::client
