// BrokerClient: the CLI's and the agent's view of a broker. Wraps the HTTP
// client, signs in with SIWE when needed, caches the session token under
// $GRID_HOME (default ~/.grid, files mode 0600), and turns API errors into
// Status with the broker's own message. One client per thread.
//
// Several brokers (issue 7). The broker "URL" may be a comma-separated list
// of replicas of one deployment (one database, one session-token secret):
// "http://a:8080,http://b:8080". Every URL is checked when the client is
// created; a bad one is InvalidArgument naming it. Each request goes first to
// the broker that last answered (the first URL to begin with), and on a
// failure that says nothing of the request's outcome it goes on to the next
// URL in the list, round-robin, each broker tried at most once per request.
//
// The failover rule: a request is sent to the next broker when the current
// one
//   (a) could not be reached and never got the request: no address,
//       connection refused, connect or TLS handshake failed or timed out,
//       the write broke off (net::HttpClient::Send's maybe_delivered is
//       false) — always safe, nothing reached a handler;
//   (b) answered 503 (kUnavailable: "a dependency failed; retry"; also what
//       a stopping broker answers a parked long-poll) — the API's contract is
//       that such a request changed nothing;
//   (c) got the whole request but no answer came (connection reset or closed
//       after the request was written, response timed out), or a proxy in
//       front of it answered 502 or 504 — the broker may have applied it. The
//       request goes on only if it is safe to resend (SafeToResend below);
//       otherwise the call fails (kUnavailable) with that broker's error and
//       "... may have taken effect there, so it was not sent to another
//       broker", and no other broker sees it.
// Each attempt has the HTTP client's own deadline (30 s), so a request may
// take that long per broker that swallows it; a refused connection fails at
// once.
// Any other answer (2xx, or an API error such as 401, 404, 409) is final.
// When every broker failed, the error names each URL tried and its reason.
//
// SafeToResend: a request that, applied twice, has the effect of applying it
// once:
//   - GET, HEAD, PUT, DELETE (the API keeps them idempotent);
//   - POSTs that are idempotent by design: /v1/auth/nonce (an unused nonce
//     expires), /v1/agent/heartbeat, /v1/agent/wait, /v1/agent/enroll (the
//     machine key names the machine: enrolling again updates it),
//     /v1/agent/leases/ID/output (it carries its byte offset),
//     /v1/leases/ID/status and /v1/leases/ID/stop (a state change: the second
//     finds the lease there already and is refused, 409), /v1/leases/ID/
//     vouchers (cumulative: a voucher delivered again is recorded once),
//     /v1/leases/ID/channel/sync (reads the chain);
//   - POSTs that carry their own key: a body with a non-empty
//     "idempotency_key" (the faucet: the broker credits a key once), and
//     POST /v1/leases with a signed order's "nonce" (the broker refuses a
//     nonce it has seen with 409 "nonce N already used by lease M";
//     `grid leases create` then finds lease M by its nonce and reports it).
// Everything else is not resent after (c): POST /v1/wallet/withdrawals (no
// key: a second one would send the money twice), /v1/machines,
// /v1/provider/join-tokens, /v1/auth/login (handled by Login, below).
//
// Login: a single broker keeps the SIWE nonce it issued in its memory
// (replicas on one database share it), so POST /v1/auth/nonce and POST
// /v1/auth/login go to the same broker, which works for both. If either
// fails as in (a)-(c) (a login is always safe to redo: a lost token is never
// used), Login asks the next broker for a new nonce and signs again there.
// The session token is signed with a secret in the shared database, so a
// token from one replica is good on all: it is cached under the first URL of
// the list, and a broker that refuses it (401) gets a fresh login.
#pragma once

#include <boost/json.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "crypto/keys.h"
#include "net/http.h"

namespace grid::client {

namespace json = boost::json;

// Loads the key file named by --key / GRID_KEY with GRID_KEY_PASSWORD.
Result<crypto::PrivateKey> LoadKey(const std::string& path);
// The address in a key file, without decrypting it (for token lookups).
Result<std::string> KeyFileAddress(const std::string& path);
// The keystore password from the environment; warns once if empty/unset.
std::string KeyPassword();

// Splits "URL[,URL...]" (spaces around the commas are ignored, trailing
// slashes dropped) and checks each as net::HttpClient::Create does.
// InvalidArgument naming the bad entry: not http(s)://host[:port][/prefix],
// empty ("a,,b", a trailing comma), or listed twice.
Result<std::vector<std::string>> ParseBrokerList(std::string_view list);

// Whether a request may be sent to another broker after the first one may
// have applied it (rule (c) above). `body` may be null.
bool SafeToResend(std::string_view method, std::string_view path, const json::value* body);

// One broker's connection: net::HttpClient in production, a fake in tests.
class BrokerTransport {
 public:
  virtual ~BrokerTransport() = default;
  // As net::HttpClient::Send, maybe_delivered included (never null here).
  virtual Result<net::HttpResponse> Send(std::string_view method, std::string_view path, std::string_view body,
                                         const net::HeaderList& headers, bool* maybe_delivered) = 0;
};
// Makes the transport for one (already checked) URL of the list.
using TransportFactory = std::function<Result<std::unique_ptr<BrokerTransport>>(const std::string& url)>;

// Told when requests move to another broker: the one left, the one that
// answered, and why (the errors of the brokers tried before it).
using SwitchObserver = std::function<void(const std::string& from, const std::string& to, const std::string& why)>;

struct LoginResult {
  std::string token, address, expires_at;
};

class BrokerClient {
 public:
  // broker_url: one URL or a comma-separated list (see above).
  static Result<std::unique_ptr<BrokerClient>> Create(const std::string& broker_url, const std::string& key_path);
  // A client signing with a key held in memory (the agent's machine key);
  // tokens are cached under `home` instead of $GRID_HOME.
  static Result<std::unique_ptr<BrokerClient>> CreateWithKey(const std::string& broker_url,
                                                              const crypto::PrivateKey& key, std::string home);
  // For tests: as CreateWithKey, with every broker reached through `transport`.
  static Result<std::unique_ptr<BrokerClient>> CreateWithTransport(const std::string& broker_url,
                                                                    const crypto::PrivateKey& key, std::string home,
                                                                    TransportFactory transport);

  // Unauthenticated call.
  Result<json::value> Call(std::string_view method, std::string_view path, const json::value* body = nullptr);
  // Authenticated call: uses the cached token, logs in when there is none or
  // it was refused.
  Result<json::value> AuthCall(std::string_view method, std::string_view path, const json::value* body = nullptr);
  // Always signs in afresh and caches the token.
  Result<LoginResult> Login();
  // The decrypted key (decrypted once, on first use).
  Result<crypto::PrivateKey> Key();
  // The broker the next request goes to first: the last one that answered.
  const std::string& broker_url() const { return urls_[current_]; }
  const std::vector<std::string>& broker_urls() const { return urls_; }
  void set_switch_observer(SwitchObserver observer) { on_switch_ = std::move(observer); }

 private:
  BrokerClient(std::vector<std::string> urls, std::vector<std::unique_ptr<BrokerTransport>> transports,
               std::string key_path)
      : urls_(std::move(urls)), transports_(std::move(transports)), key_path_(std::move(key_path)) {}
  static Result<std::unique_ptr<BrokerClient>> Make(const std::string& broker_url, std::string key_path,
                                                    const TransportFactory& transport);

  // How one request fared at one broker.
  enum class Outcome { kAnswered, kNotDelivered, kUnavailable, kMaybeApplied };
  struct Attempt {
    Outcome outcome = Outcome::kAnswered;
    Result<net::HttpResponse> response = Internal("not sent");
    std::string error;  // "URL: reason" unless answered
  };
  Attempt SendTo(size_t index, std::string_view method, std::string_view path, const std::string& payload,
                 const net::HeaderList& headers);
  // Applies the failover rule; the response of the broker that answered.
  Result<net::HttpResponse> Exchange(std::string_view method, std::string_view path, const json::value* body,
                                     const std::string* token);
  Result<json::value> Send(std::string_view method, std::string_view path, const json::value* body,
                           const std::string* token, int* http_status);
  // Nonce and login at the broker `index`.
  Result<json::value> LoginAt(size_t index, const crypto::PrivateKey& key, Attempt* failed);
  void UseBroker(size_t index, const std::string& why);
  std::string TokenPath(const std::string& address) const;

  Result<std::string> Address();

  std::vector<std::string> urls_;
  std::vector<std::unique_ptr<BrokerTransport>> transports_;  // one per URL
  size_t current_ = 0;  // where requests go first
  SwitchObserver on_switch_;
  std::string key_path_;
  std::optional<crypto::PrivateKey> key_;
  std::string home_;  // empty: $GRID_HOME or ~/.grid
};

}  // namespace grid::client
