// HTTP/1.1 server and client for Gridmarket, built on Boost.Beast.
//
// Contract: this header is plain C++ on purpose. Beast and Asio cost about
// 30 s of compile time per translation unit, so they live only in
// http_server.cc and http_client.cc; everything else (the broker routes, the
// CLI, tests) sees these structs and never includes a Boost header.
//
// No exception leaves this layer: failures come back as Status.
//
// Thread safety:
//   - HttpServer: Start/Stop/port may be called from any thread, but never
//     call Stop() (or destroy the server) from inside the handler, since Stop
//     joins the server's threads. The handler is called concurrently on the
//     server's threads and must be thread-safe. A handler that blocks holds
//     one server thread for that time, so size `threads` for the blocking
//     work the handler does (idle keep-alive connections cost no thread).
//   - HttpClient: one client is used by one thread at a time (it owns one
//     pooled connection and its own event loop). Give each thread its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace grid::net {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse;

// Server side: lets a handler answer a request later, from any thread (a
// long-poll). The handler keeps the request's `responder`, returns
// HttpResponse::Deferred(), and calls Send once when it has the answer.
// Send after the server stopped, or a second Send, does nothing; a
// responder dropped without Send answers 503, so no client waits forever.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void Send(HttpResponse response) = 0;
};

struct HttpRequest {
  std::string method;          // "GET", "POST", ...
  std::string target;          // raw target "/v1/offers?limit=5"
  std::string path;            // percent-decoded path "/v1/offers"
  HeaderList query;            // decoded query params in order ('+' is a space)
  HeaderList headers;          // names lowercased, values as sent
  std::string body;
  std::string remote_address;  // "127.0.0.1:54321" ("[::1]:54321" for IPv6)
  // Server side: answers this request later (see Responder); null elsewhere.
  std::shared_ptr<Responder> responder;

  // The first header with this (lowercase) name, nullptr if absent.
  const std::string* Header(std::string_view lowercase_name) const;
  // The first query parameter with this name, nullptr if absent.
  const std::string* Query(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Server side: extra headers to send (Content-Type and Content-Length are
  // always set by the server; a "connection: close" here closes the
  // connection after the response). Client side: every response header,
  // names lowercased.
  HeaderList headers;
  // Server side: true when the handler will answer through req.responder.
  bool deferred = false;

  static HttpResponse Deferred() {
    HttpResponse r;
    r.deferred = true;
    return r;
  }

  // Client side convenience: the first header with this (lowercase) name.
  const std::string* Header(std::string_view lowercase_name) const;
};

// Called on server threads concurrently; must be thread-safe. An exception
// it throws becomes a 500 {"error":{"code":"internal",...}} response.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // an IP address or a resolvable name
  uint16_t port = 0;               // 0 picks a free port; see port()
  int threads = 2;                 // event-loop threads that also run the handler
  size_t max_body_bytes = 1 << 20; // larger bodies get 413
  int idle_timeout_ms = 60000;     // a connection with no complete request
                                   // for this long is closed
};

// An HTTP/1.1 server with keep-alive. Requests on one connection are handled
// in order; connections are handled concurrently. Malformed requests get 400
// and oversized bodies 413 (both JSON error bodies), then the connection is
// closed. Every response carries Content-Type and Content-Length.
class HttpServer {
 public:
  // Binds, listens and starts the threads. Unavailable if the address cannot
  // be bound, InvalidArgument for bad options.
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                   HttpHandler handler);
  ~HttpServer();  // calls Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Closes the listening socket and every connection, waits for running
  // handlers to return and joins the threads. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct HttpClientOptions {
  int timeout_ms = 30000;  // whole-request deadline: connect + write + read
  size_t max_response_bytes = 64 << 20;  // a bigger response body is an error
  // https only: a PEM file of CA certificates to trust instead of the
  // system's store (a private CA, or a test's self-signed certificate).
  std::string ca_file;
};

// A blocking HTTP/1.1 client for one base URL, keeping one connection alive
// between requests. Not thread-safe: one thread at a time per client.
class HttpClient {
 public:
  // base_url: "http://host[:port][/prefix]" (port defaults to 80) or
  // "https://host[:port][/prefix]" (443): TLS 1.2 or later, the server's
  // certificate verified against the system's CAs (or options.ca_file) and
  // its name (or IP address) matched against host; a failure is Unavailable
  // naming it. The prefix, if any, is prepended to every path.
  static Result<std::unique_ptr<HttpClient>> Create(std::string_view base_url,
                                                    HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole response. Reuses the kept-alive
  // connection; if the server had closed it (no response byte arrived), it
  // reconnects and resends once. Non-2xx statuses are not errors: they come
  // back in HttpResponse. Errors: Unavailable("cannot reach broker at URL:
  // <reason>") when connecting fails, the deadline passes or the connection
  // breaks; InvalidArgument for a bad method or header.
  // A body with no "content-type" in `headers` is sent as application/json.
  //
  // maybe_delivered (optional), set on every return: true when the whole
  // request was written to a connection at least once, so the server may
  // have acted on it even though no answer came back; false when it never
  // was (no address, connection refused, connect or TLS handshake failed,
  // the write broke off), so sending it elsewhere cannot make it happen twice.
  Result<HttpResponse> Send(std::string_view method, std::string_view path_and_query,
                            std::string_view body = {}, const HeaderList& headers = {},
                            bool* maybe_delivered = nullptr);

  const std::string& base_url() const;

  struct Impl;

 private:
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes everything but RFC 3986 unreserved characters
// (A-Z a-z 0-9 - . _ ~), for query values and path segments.
std::string UrlEncode(std::string_view s);
// Decodes %XX escapes (malformed escapes are kept literally); with
// plus_as_space, '+' becomes ' ' (query strings).
std::string UrlDecode(std::string_view s, bool plus_as_space = false);

}  // namespace grid::net
