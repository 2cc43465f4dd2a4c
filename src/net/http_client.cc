// HttpClient on Boost.Beast. Each client owns a private io_context and runs
// it on the calling thread for the duration of one Send(): operations are
// started asynchronously so that beast::tcp_stream's deadline applies to
// connect, TLS handshake, write and read alike (Beast's synchronous calls
// have no timeout). https goes through OpenSSL (Asio's ssl::stream) with the
// peer's certificate verified against the system's trust store (or
// options.ca_file) and its name checked against the URL's host.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>

#include <charconv>
#include <chrono>
#include <optional>

#include "net/http.h"
#include "net/http_internal.h"

namespace grid::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct HttpClient::Impl {
  std::string base_url;   // as given, without a trailing slash
  std::string host;       // without brackets
  std::string port;       // decimal
  std::string host_header;
  std::string base_path;  // "" or "/prefix" (no trailing slash)
  HttpClientOptions options;

  asio::io_context ioc{1};
  tcp::resolver resolver{ioc};
  // Plain http uses `stream`; https moves the connected socket into `tls`.
  std::optional<beast::tcp_stream> stream;
  std::optional<ssl::context> tls_context;  // set for https URLs
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;

  bool connected() const { return stream.has_value() || tls.has_value(); }

  Status Fail(const std::string& reason) const {
    return Unavailable("cannot reach broker at " + base_url + ": " + reason);
  }

  // Runs the io_context until the started operation completes.
  void RunToCompletion() {
    ioc.restart();
    ioc.run();
  }

  void Close() {
    beast::error_code ec;
    if (stream) {
      stream->socket().shutdown(tcp::socket::shutdown_both, ec);
      stream->socket().close(ec);
      stream.reset();
    }
    if (tls) {
      // No TLS close_notify: it would cost a round trip under no deadline,
      // and HTTP/1.1 framing already tells where the response ends.
      beast::get_lowest_layer(*tls).socket().shutdown(tcp::socket::shutdown_both, ec);
      beast::get_lowest_layer(*tls).socket().close(ec);
      tls.reset();
    }
    buffer.clear();
  }

  Status Connect(Clock::time_point deadline) {
    Close();
    // Resolve. A literal address needs no resolver; a name goes through
    // getaddrinfo, bounded by the same deadline.
    std::vector<tcp::endpoint> endpoints;
    beast::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    uint16_t port_num = static_cast<uint16_t>(std::stoi(port));
    if (!ec) {
      endpoints.emplace_back(addr, port_num);
    } else {
      bool done = false;
      tcp::resolver::results_type results;
      resolver.async_resolve(host, port, [&](beast::error_code e, tcp::resolver::results_type r) {
        ec = e;
        results = std::move(r);
        done = true;
      });
      ioc.restart();
      ioc.run_until(deadline);
      if (!done) {
        resolver.cancel();
        RunToCompletion();
        return Fail("timed out resolving " + host + " after " +
                    std::to_string(options.timeout_ms) + " ms");
      }
      if (ec) return Fail("cannot resolve " + host + ": " + ec.message());
      for (const auto& entry : results) endpoints.push_back(entry.endpoint());
      if (endpoints.empty()) return Fail("cannot resolve " + host + ": no addresses");
    }

    stream.emplace(ioc);
    stream->expires_at(deadline);
    ec = {};
    stream->async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    RunToCompletion();
    if (ec) {
      std::string reason = ec == beast::error::timeout
                               ? "connect timed out after " + std::to_string(options.timeout_ms) + " ms"
                               : ec.message();
      Close();
      return Fail(reason);
    }
    beast::error_code opt_ec;
    stream->socket().set_option(tcp::no_delay(true), opt_ec);
    if (tls_context) return Handshake(deadline);
    return Status::Ok();
  }

  // TLS over the connected `stream`: SNI, peer verification, host name check.
  Status Handshake(Clock::time_point deadline) {
    tls.emplace(std::move(*stream), *tls_context);
    stream.reset();
    beast::error_code ec;
    (void)asio::ip::make_address(host, ec);
    const bool is_address = !ec;
    if (!is_address && !SSL_set_tlsext_host_name(tls->native_handle(), host.c_str())) {
      Close();
      return Fail("cannot set TLS server name " + host);
    }
    tls->set_verify_mode(ssl::verify_peer, ec);
    if (!ec) tls->set_verify_callback(ssl::host_name_verification(host), ec);
    if (ec) {
      Close();
      return Fail("cannot set up TLS verification: " + ec.message());
    }
    beast::get_lowest_layer(*tls).expires_at(deadline);
    ec = {};
    tls->async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
    RunToCompletion();
    if (ec) {
      std::string reason = ec == beast::error::timeout
                               ? "TLS handshake timed out after " + std::to_string(options.timeout_ms) + " ms"
                               : "TLS handshake failed: " + ec.message();
      Close();
      return Fail(reason);
    }
    return Status::Ok();
  }

  // One exchange on the current connection. *got_some tells whether any byte
  // of a response arrived (if not, the request may be resent safely: the
  // server closed the pooled connection before reading it). *written tells
  // whether the whole request was written (if not, the server cannot have
  // acted on it: its framing says where a request ends).
  beast::error_code Exchange(const bhttp::request<bhttp::string_body>& req, bool head,
                             Clock::time_point deadline,
                             bhttp::response_parser<bhttp::string_body>* parser, bool* got_some,
                             bool* written) {
    if (tls) return ExchangeOn(*tls, req, head, deadline, parser, got_some, written);
    return ExchangeOn(*stream, req, head, deadline, parser, got_some, written);
  }

  template <typename Stream>
  beast::error_code ExchangeOn(Stream& s, const bhttp::request<bhttp::string_body>& req, bool head,
                               Clock::time_point deadline,
                               bhttp::response_parser<bhttp::string_body>* parser, bool* got_some,
                               bool* written) {
    beast::error_code ec;
    beast::get_lowest_layer(s).expires_at(deadline);
    bhttp::async_write(s, req, [&](beast::error_code e, size_t) { ec = e; });
    RunToCompletion();
    *got_some = false;
    *written = !ec;
    if (ec) return ec;
    parser->header_limit(64 * 1024);
    parser->body_limit(options.max_response_bytes);
    if (head) parser->skip(true);
    bhttp::async_read(s, buffer, *parser, [&](beast::error_code e, size_t) { ec = e; });
    RunToCompletion();
    *got_some = parser->got_some();
    return ec;
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

const std::string& HttpClient::base_url() const { return impl_->base_url; }

Result<std::unique_ptr<HttpClient>> HttpClient::Create(std::string_view base_url,
                                                       HttpClientOptions options) {
  if (options.timeout_ms < 1) return InvalidArgument("timeout_ms must be positive");
  std::string_view url = base_url;
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  const std::string lower = internal::ToLower(url.substr(0, std::min<size_t>(url.size(), 8)));
  const bool https = lower.rfind("https://", 0) == 0;
  if (!https && lower.rfind("http://", 0) != 0) {
    return InvalidArgument("base URL must start with http:// or https://: '" + std::string(base_url) + "'");
  }
  if (!https && !options.ca_file.empty()) {
    return InvalidArgument("ca_file is only for https URLs: " + std::string(base_url));
  }
  std::string_view rest = url.substr(https ? 8 : 7);
  // The authority ends at the path, or at a query or fragment with no path.
  size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgument("credentials in the base URL are not supported: " + std::string(base_url));
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return InvalidArgument("base URL must not have a query or fragment: " + std::string(base_url));
  }
  std::string_view host = authority;
  std::string_view port = https ? "443" : "80";
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgument("bad IPv6 host in base URL: " + std::string(base_url));
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return InvalidArgument("bad base URL: " + std::string(base_url));
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  unsigned port_num = 0;
  auto [end, err] = std::from_chars(port.data(), port.data() + port.size(), port_num);
  if (host.empty() || port.empty() || err != std::errc() || end != port.data() + port.size() ||
      port_num == 0 || port_num > 65535) {
    return InvalidArgument("bad host or port in base URL: '" + std::string(base_url) + "'");
  }
  try {
    auto impl = std::make_unique<Impl>();
    impl->base_url = std::string(url);
    impl->host = std::string(host);
    impl->port = std::to_string(port_num);
    impl->host_header = std::string(authority);
    impl->base_path = std::string(path);
    impl->options = options;
    if (https) {
      impl->tls_context.emplace(ssl::context::tls_client);
      beast::error_code ec;
      impl->tls_context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                                         ssl::context::no_tlsv1_1,
                                     ec);
      if (options.ca_file.empty()) {
        impl->tls_context->set_default_verify_paths(ec);
      } else {
        impl->tls_context->load_verify_file(options.ca_file, ec);
      }
      if (ec) {
        return InvalidArgument("cannot load TLS trust anchors" +
                               (options.ca_file.empty() ? std::string() : " from " + options.ca_file) + ": " +
                               ec.message());
      }
    }
    return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
  } catch (const std::exception& e) {
    return Internal(std::string("cannot create HTTP client: ") + e.what());
  }
}

Result<HttpResponse> HttpClient::Send(std::string_view method, std::string_view path_and_query,
                                      std::string_view body, const HeaderList& headers,
                                      bool* maybe_delivered) {
  Impl& c = *impl_;
  bool delivered_once = false;  // the whole request went out on some connection
  if (maybe_delivered) *maybe_delivered = false;
  // Whatever this returns, the caller learns whether the request went out.
  struct Report {
    bool* out;
    const bool& value;
    ~Report() {
      if (out) *out = value;
    }
  } report{maybe_delivered, delivered_once};
  if (method.empty() || method.find_first_of(" \t\r\n") != std::string_view::npos) {
    return InvalidArgument("bad HTTP method '" + std::string(method) + "'");
  }
  if (path_and_query.find_first_of(" \t\r\n") != std::string_view::npos) {
    return InvalidArgument("bad request path '" + std::string(path_and_query) +
                           "' (encode it with UrlEncode)");
  }
  try {
    const auto deadline = Clock::now() + std::chrono::milliseconds(c.options.timeout_ms);

    bhttp::request<bhttp::string_body> req;
    const bhttp::verb verb = bhttp::string_to_verb(method);
    if (verb == bhttp::verb::unknown) {
      req.method_string(method);
    } else {
      req.method(verb);
    }
    std::string target = c.base_path;
    if (path_and_query.empty() || path_and_query.front() != '/') target += '/';
    target += path_and_query;
    req.target(target);
    req.version(11);
    req.set(bhttp::field::host, c.host_header);
    req.set(bhttp::field::user_agent, "gridmarket");
    bool has_content_type = false;
    for (const auto& [name, value] : headers) {
      std::string lower = internal::ToLower(name);
      if (lower == "content-length" || lower == "transfer-encoding") continue;
      if (lower == "content-type") has_content_type = true;
      if (name.find_first_of(":\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        return InvalidArgument("bad HTTP header '" + name + "'");
      }
      req.set(name, value);
    }
    if (!body.empty() && !has_content_type) {
      req.set(bhttp::field::content_type, "application/json");
    }
    req.body() = std::string(body);
    req.prepare_payload();
    const bool head = verb == bhttp::verb::head;

    for (int attempt = 0;; ++attempt) {
      const bool reused = c.connected();
      if (!reused) GRID_RETURN_IF_ERROR(c.Connect(deadline));
      bhttp::response_parser<bhttp::string_body> parser;
      bool got_some = false, written = false;
      beast::error_code ec = c.Exchange(req, head, deadline, &parser, &got_some, &written);
      delivered_once = delivered_once || written;
      if (ec) {
        c.Close();
        if (ec == beast::error::timeout) {
          return c.Fail("request timed out after " + std::to_string(c.options.timeout_ms) + " ms");
        }
        // The server closed the pooled connection while it sat idle: the
        // request never reached a handler, so sending it again is safe.
        if (reused && !got_some && attempt == 0) continue;
        if (ec == bhttp::error::body_limit) {
          return c.Fail("response body larger than " +
                        std::to_string(c.options.max_response_bytes) + " bytes");
        }
        return c.Fail(ec.message());
      }
      auto msg = parser.release();
      HttpResponse out;
      out.status = static_cast<int>(msg.result_int());
      out.content_type.clear();
      for (const auto& field : msg) {
        out.headers.emplace_back(internal::ToLower(field.name_string()),
                                 std::string(field.value()));
      }
      if (auto it = msg.find(bhttp::field::content_type); it != msg.end()) {
        out.content_type = std::string(it->value());
      }
      out.body = std::move(msg.body());
      if (!msg.keep_alive()) c.Close();
      return out;
    }
  } catch (const std::exception& e) {
    c.Close();
    return c.Fail(std::string("unexpected error: ") + e.what());
  }
}

}  // namespace grid::net
