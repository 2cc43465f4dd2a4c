// BrokerClient: the CLI's view of a broker. Wraps the HTTP client, signs in
// with SIWE when needed, caches the session token under $GRID_HOME (default
// ~/.grid, files mode 0600), and turns API errors into Status with the
// broker's own message. One client per thread.
#pragma once

#include <boost/json.hpp>
#include <memory>
#include <optional>
#include <string>

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

struct LoginResult {
  std::string token, address, expires_at;
};

class BrokerClient {
 public:
  static Result<std::unique_ptr<BrokerClient>> Create(const std::string& broker_url, const std::string& key_path);
  // A client signing with a key held in memory (the agent's machine key);
  // tokens are cached under `home` instead of $GRID_HOME.
  static Result<std::unique_ptr<BrokerClient>> CreateWithKey(const std::string& broker_url,
                                                              const crypto::PrivateKey& key, std::string home);

  // Unauthenticated call.
  Result<json::value> Call(std::string_view method, std::string_view path, const json::value* body = nullptr);
  // Authenticated call: uses the cached token, logs in when there is none or
  // it was refused.
  Result<json::value> AuthCall(std::string_view method, std::string_view path, const json::value* body = nullptr);
  // Always signs in afresh and caches the token.
  Result<LoginResult> Login();
  // The decrypted key (decrypted once, on first use).
  Result<crypto::PrivateKey> Key();
  const std::string& broker_url() const { return url_; }

 private:
  BrokerClient(std::unique_ptr<net::HttpClient> http, std::string url, std::string key_path)
      : http_(std::move(http)), url_(std::move(url)), key_path_(std::move(key_path)) {}
  Result<json::value> Send(std::string_view method, std::string_view path, const json::value* body,
                           const std::string* token, int* http_status);
  std::string TokenPath(const std::string& address) const;

  Result<std::string> Address();

  std::unique_ptr<net::HttpClient> http_;
  std::string url_, key_path_;
  std::optional<crypto::PrivateKey> key_;
  std::string home_;  // empty: $GRID_HOME or ~/.grid
};

}  // namespace grid::client
