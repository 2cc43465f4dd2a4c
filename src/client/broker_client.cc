#include "client/broker_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
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

// The API's {"error":{"code","message"}} of a non-2xx answer as a Status,
// keeping the broker's words; a 2xx answer's JSON.
Result<json::value> Decode(const net::HttpResponse& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (r.status >= 200 && r.status < 300) {
    if (ec) return Internal("broker sent a malformed JSON response: " + ec.message());
    return v;
  }
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

// Production transport: one pooled HTTP connection to one broker.
class HttpTransport : public BrokerTransport {
 public:
  explicit HttpTransport(std::unique_ptr<net::HttpClient> http) : http_(std::move(http)) {}
  Result<net::HttpResponse> Send(std::string_view method, std::string_view path, std::string_view body,
                                 const net::HeaderList& headers, bool* maybe_delivered) override {
    return http_->Send(method, path, body, headers, maybe_delivered);
  }

 private:
  std::unique_ptr<net::HttpClient> http_;
};

Result<std::unique_ptr<BrokerTransport>> NewHttpTransport(const std::string& url) {
  GRID_ASSIGN_OR_RETURN(auto http, net::HttpClient::Create(url));
  return std::unique_ptr<BrokerTransport>(new HttpTransport(std::move(http)));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : std::string(sep)) + p;
  return out;
}

}  // namespace

Result<std::vector<std::string>> ParseBrokerList(std::string_view list) {
  std::vector<std::string> out;
  for (size_t pos = 0;;) {
    const size_t comma = list.find(',', pos);
    std::string_view item = Trim(list.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    while (!item.empty() && item.back() == '/') item.remove_suffix(1);
    if (item.empty())
      return InvalidArgument("--broker: an empty URL in the list \"" + std::string(list) +
                             "\" (separate the URLs with commas)");
    std::string url(item);
    // The HTTP client's own check: what it accepts here it can connect to.
    if (auto http = net::HttpClient::Create(url); !http.ok())
      return InvalidArgument("--broker: bad broker URL \"" + url + "\": " + http.status().message());
    if (std::find(out.begin(), out.end(), url) != out.end())
      return InvalidArgument("--broker: " + url + " is listed twice");
    out.push_back(std::move(url));
    if (comma == std::string_view::npos) return out;
    pos = comma + 1;
  }
}

bool SafeToResend(std::string_view method, std::string_view path, const json::value* body) {
  if (method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" || method == "OPTIONS") return true;
  if (method != "POST") return false;
  const json::object* o = body ? body->if_object() : nullptr;
  auto nonempty_string = [](const json::object* obj, std::string_view k) {
    const json::value* v = obj ? obj->if_contains(k) : nullptr;
    return v && v->is_string() && !v->get_string().empty();
  };
  // A key of the client's own makes any POST repeat-safe (the faucet).
  if (nonempty_string(o, "idempotency_key")) return true;
  // "/v1/leases/7/status?x" -> {"v1", "leases", "7", "status"}
  path = path.substr(0, path.find('?'));
  std::vector<std::string_view> seg;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  for (size_t pos = 0; pos <= path.size();) {
    size_t slash = std::min(path.find('/', pos), path.size());
    seg.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  if (seg.size() < 2 || seg[0] != "v1") return false;
  const std::string_view area = seg[1];
  const bool id = seg.size() >= 3 && !seg[2].empty() &&
                  std::all_of(seg[2].begin(), seg[2].end(), [](char c) { return c >= '0' && c <= '9'; });
  if (area == "auth") return seg.size() == 3 && seg[2] == "nonce";
  if (area == "agent") {
    if (seg.size() == 3) return seg[2] == "heartbeat" || seg[2] == "wait" || seg[2] == "enroll";
    return seg.size() == 5 && seg[2] == "leases" && !seg[3].empty() && seg[4] == "output";
  }
  if (area == "leases") {
    // A signed order's nonce: the broker takes each nonce once.
    if (seg.size() == 2) {
      const json::value* order = o ? o->if_contains("order") : nullptr;
      return order && nonempty_string(order->if_object(), "nonce");
    }
    if (!id) return false;
    if (seg.size() == 4) return seg[3] == "status" || seg[3] == "stop" || seg[3] == "vouchers";
    return seg.size() == 5 && seg[3] == "channel" && seg[4] == "sync";
  }
  return false;
}

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


Result<std::unique_ptr<BrokerClient>> BrokerClient::Make(const std::string& broker_url, std::string key_path,
                                                         const TransportFactory& transport) {
  GRID_ASSIGN_OR_RETURN(std::vector<std::string> urls, ParseBrokerList(broker_url));
  std::vector<std::unique_ptr<BrokerTransport>> transports;
  for (const std::string& url : urls) {
    GRID_ASSIGN_OR_RETURN(auto t, transport(url));
    transports.push_back(std::move(t));
  }
  return std::unique_ptr<BrokerClient>(new BrokerClient(std::move(urls), std::move(transports), std::move(key_path)));
}

Result<std::unique_ptr<BrokerClient>> BrokerClient::Create(const std::string& broker_url, const std::string& key_path) {
  return Make(broker_url, key_path, NewHttpTransport);
}

Result<std::unique_ptr<BrokerClient>> BrokerClient::CreateWithKey(const std::string& broker_url,
                                                                 const crypto::PrivateKey& key, std::string home) {
  return CreateWithTransport(broker_url, key, std::move(home), NewHttpTransport);
}

Result<std::unique_ptr<BrokerClient>> BrokerClient::CreateWithTransport(const std::string& broker_url,
                                                                       const crypto::PrivateKey& key, std::string home,
                                                                       TransportFactory transport) {
  GRID_ASSIGN_OR_RETURN(auto c, Make(broker_url, "", transport));
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
  // Under the first URL of the list: the replicas of one deployment take
  // each other's tokens.
  std::string safe;
  for (char c : urls_.front()) safe.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return (home_.empty() ? GridHome() : home_) + "/tokens/" + address + "@" + safe + ".json";
}

void BrokerClient::UseBroker(size_t index, const std::string& why) {
  if (index == current_) return;
  const std::string from = urls_[current_];
  current_ = index;
  if (on_switch_) on_switch_(from, urls_[index], why);
}

BrokerClient::Attempt BrokerClient::SendTo(size_t index, std::string_view method, std::string_view path,
                                           const std::string& payload, const net::HeaderList& headers) {
  Attempt a;
  const std::string& url = urls_[index];
  bool maybe_delivered = true;  // a transport that does not say: assume the worst
  a.response = transports_[index]->Send(method, path, payload, headers, &maybe_delivered);
  if (!a.response.ok()) {
    a.outcome = maybe_delivered ? Outcome::kMaybeApplied : Outcome::kNotDelivered;
    a.error = a.response.status().message();
    if (a.error.find(url) == std::string::npos) a.error = url + ": " + a.error;
    if (maybe_delivered) a.error += " (after the request was sent)";
    return a;
  }
  const int status = a.response->status;
  if (status == 503 || status == 502 || status == 504) {
    a.outcome = status == 503 ? Outcome::kUnavailable : Outcome::kMaybeApplied;
    a.error = url + " answered " + std::to_string(status) + ": " + Decode(*a.response).status().message();
  }
  return a;
}

Result<net::HttpResponse> BrokerClient::Exchange(std::string_view method, std::string_view path,
                                                 const json::value* body, const std::string* token) {
  net::HeaderList headers;
  std::string payload;
  if (body) {
    payload = json::serialize(*body);
    headers.emplace_back("Content-Type", "application/json");
  }
  if (token) headers.emplace_back("Authorization", "Bearer " + *token);
  const size_t n = urls_.size(), start = current_;
  std::vector<std::string> errors;
  for (size_t i = 0; i < n; ++i) {
    const size_t index = (start + i) % n;
    Attempt a = SendTo(index, method, path, payload, headers);
    if (a.outcome == Outcome::kAnswered) {
      UseBroker(index, Join(errors, "; "));
      return std::move(a.response);
    }
    // One broker: its own error (or 503 answer) as before.
    if (n == 1) return std::move(a.response);
    errors.push_back(a.error);
    if (a.outcome == Outcome::kMaybeApplied && !SafeToResend(method, path, body))
      return Unavailable((errors.size() > 1 ? "no broker answered: " : "") + Join(errors, "; ") + "; " +
                         std::string(method) + " " + std::string(path.substr(0, path.find('?'))) +
                         " may have taken effect there, so it was not sent to another broker: check before "
                         "repeating it");
  }
  return Unavailable("no broker answered: " + Join(errors, "; "));
}

Result<json::value> BrokerClient::Send(std::string_view method, std::string_view path, const json::value* body,
                                       const std::string* token, int* http_status) {
  GRID_ASSIGN_OR_RETURN(net::HttpResponse r, Exchange(method, path, body, token));
  *http_status = r.status;
  return Decode(r);
}

Result<json::value> BrokerClient::Call(std::string_view method, std::string_view path, const json::value* body) {
  int status = 0;
  return Send(method, path, body, nullptr, &status);
}

Result<json::value> BrokerClient::LoginAt(size_t index, const crypto::PrivateKey& key, Attempt* failed) {
  const net::HeaderList json_body{{"Content-Type", "application/json"}};
  // Not answered (or 503): the caller may go on to another broker.
  auto unanswered = [&](Attempt& a) -> Status {
    Status s = a.response.ok() ? Decode(*a.response).status() : a.response.status();
    *failed = std::move(a);
    return s;
  };
  Attempt got = SendTo(index, "POST", "/v1/auth/nonce", "", {});
  if (got.outcome != Outcome::kAnswered) return unanswered(got);
  GRID_ASSIGN_OR_RETURN(json::value nonce, Decode(*got.response));
  if (!nonce.is_object()) return Internal("POST /v1/auth/nonce: the broker's answer is not an object");
  const json::object& n = nonce.as_object();
  auto str = [&](const char* k) -> std::string {
    const json::value* v = n.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : "";
  };
  crypto::SiweMessage m;
  m.domain = str("domain");
  m.address = crypto::AddressOf(key).ToChecksumHex();
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
  // The nonce lives at this broker only: the login goes to the same one.
  Attempt in = SendTo(index, "POST", "/v1/auth/login", json::serialize(body), json_body);
  if (in.outcome != Outcome::kAnswered) return unanswered(in);
  return Decode(*in.response);
}

Result<LoginResult> BrokerClient::Login() {
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, Key());
  const size_t n = urls_.size(), start = current_;
  std::vector<std::string> errors;
  for (size_t i = 0; i < n; ++i) {
    const size_t index = (start + i) % n;
    Attempt failed;
    Result<json::value> r = LoginAt(index, key, &failed);
    if (!r.ok()) {
      // An answer (a refusal) is final; a broker that did not answer is
      // left for the next, which issues its own nonce.
      if (failed.outcome == Outcome::kAnswered || n == 1) return r.status();
      errors.push_back(failed.error);
      continue;
    }
    UseBroker(index, Join(errors, "; "));
    if (!r->is_object()) return Internal("POST /v1/auth/login: the broker's answer is not an object");
    const json::object& o = r->as_object();
    LoginResult out;
    auto get = [&](const char* k) {
      const json::value* v = o.if_contains(k);
      return v && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    out.token = get("token");
    out.address = get("address");
    out.expires_at = get("expires_at");
    GRID_RETURN_IF_ERROR(WritePrivateFile(TokenPath(out.address), json::serialize(*r)));
    return out;
  }
  return Unavailable("no broker answered: " + Join(errors, "; "));
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
