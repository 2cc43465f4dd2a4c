// HttpServer on Boost.Beast, in the callback style of Beast's
// advanced/http server example: one io_context run by N threads, one
// listener, and per connection a Session on its own strand. A connection
// that is idle costs a pending read, never a thread, so a new client is
// served promptly however many others hold keep-alive connections.
//
// Shutdown: Stop() stops the io_context, joins the threads, then destroys the
// io_context, which destroys every pending handler and with it the Sessions
// (their shared_ptr lives only in those handlers), closing their sockets.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

#include "net/http.h"
#include "net/http_internal.h"

namespace grid::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

class Session;

// Sessions whose handler deferred its answer (a long-poll). While waiting a
// session has no pending operation, so nothing else keeps it alive; Stop()
// drops them while the io_context still exists.
struct DeferRegistry {
  std::mutex mu;
  bool stopped = false;
  std::unordered_set<std::shared_ptr<Session>> waiting;
};

// What every session needs and nothing mutates after Start().
struct Shared {
  HttpServerOptions options;
  HttpHandler handler;
  std::shared_ptr<DeferRegistry> deferred = std::make_shared<DeferRegistry>();
};

constexpr size_t kHeaderLimitBytes = 64 * 1024;
// After an error response we keep reading (and discarding) what the client is
// still sending for a short while before closing, so the kernel does not
// answer its unread bytes with a RST that would destroy our response.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerMaxBytes = 64 << 20;

std::string FormatEndpoint(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  std::string host = addr.to_string();
  if (addr.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port());
}

bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<const Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = FormatEndpoint(ep);
  }

  void Start() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::DoRead, shared_from_this()));
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimitBytes);
    parser_->body_limit(shared_->options.max_body_bytes);
    stream_.expires_after(std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  // The header is in. Clients such as curl send "Expect: 100-continue" with
  // bodies over 1 KB and wait (curl: 1 s) for the go-ahead before sending the
  // body; answer it so they do not stall. An oversized Content-Length has
  // already failed with body_limit here, so such a client gets 413 instead.
  void OnHeader(beast::error_code ec, size_t bytes) {
    if (ec || parser_->is_done()) return OnRead(ec, bytes);
    auto expect = parser_->get().find(bhttp::field::expect);
    if (expect != parser_->get().end() &&
        internal::ToLower(expect->value()) == "100-continue" && parser_->get().version() >= 11) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](beast::error_code write_ec, size_t) {
                          if (write_ec) return self->DoClose();
                          self->DoReadBody();
                        });
      return;
    }
    DoReadBody();
  }

  void DoReadBody() {
    stream_.expires_after(std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) {
      return DoClose();
    }
    if (ec == bhttp::error::body_limit) {
      return SendError(413, "invalid_argument",
                       "request body too large (limit " +
                           std::to_string(shared_->options.max_body_bytes) + " bytes)");
    }
    if (ec && IsHttpParseError(ec)) {
      return SendError(400, "invalid_argument", "malformed HTTP request: " + ec.message());
    }
    if (ec) return DoClose();  // timeout (already closed), reset, aborted
    Handle();
  }

  void Handle();

 public:
  // Sends a deferred handler's answer; runs on the session's strand.
  void Answer(HttpResponse out, unsigned version, bool keep_alive, bool head) {
    SendResponse(std::move(out), version, keep_alive, head, /*linger=*/false);
  }
  auto executor() { return stream_.get_executor(); }

 private:
  static HttpResponse ErrorResponse(int status, std::string_view code, std::string_view message) {
    HttpResponse r;
    r.status = status;
    r.body = internal::JsonErrorBody(code, message);
    return r;
  }

  void SendError(int status, std::string_view code, std::string_view message) {
    parser_.reset();
    SendResponse(ErrorResponse(status, code, message), 11, /*keep_alive=*/false,
                 /*head=*/false, /*linger=*/true);
  }

  // Builds the Beast response; returns false if the handler's response could
  // not be represented (bad status code or header), in which case a 500 is
  // built instead.
  static bool Build(HttpResponse& in, unsigned version, bool keep_alive, bool head,
                    bhttp::response<bhttp::string_body>* res) {
    try {
      if (in.status < 100 || in.status > 999) throw std::invalid_argument("bad status code");
      res->version(version);
      res->result(static_cast<unsigned>(in.status));
      for (const auto& [name, value] : in.headers) {
        std::string lower = internal::ToLower(name);
        if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection" ||
            lower == "content-type") {
          continue;  // ours to set
        }
        res->insert(name, value);
      }
      res->set(bhttp::field::content_type, in.content_type);
      res->keep_alive(keep_alive);
      if (head) {
        res->content_length(in.body.size());
      } else {
        res->body() = std::move(in.body);
        res->prepare_payload();
      }
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  void SendResponse(HttpResponse out, unsigned version, bool keep_alive, bool head, bool linger) {
    for (const auto& [name, value] : out.headers) {
      if (internal::ToLower(name) == "connection" && internal::ToLower(value) == "close") {
        keep_alive = false;
      }
    }
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    if (!Build(out, version, keep_alive, head, res.get())) {
      HttpResponse err = ErrorResponse(500, "internal", "handler returned an invalid response");
      *res = {};
      Build(err, version, keep_alive, head, res.get());
    }
    res_ = res;  // keeps the message alive during the write
    stream_.expires_after(std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    bhttp::async_write(stream_, *res_,
                       [self = shared_from_this(), keep_alive, linger](beast::error_code ec,
                                                                      size_t) {
                         self->res_.reset();
                         if (ec) return self->DoClose();
                         if (linger) return self->DoLinger();
                         if (!keep_alive) return self->DoClose();
                         self->DoRead();
                       });
  }

  void DoClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  void DoLinger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(kLingerTime);
    drain_.resize(16 * 1024);
    DoDrain();
  }

  void DoDrain() {
    stream_.async_read_some(asio::buffer(drain_), [self = shared_from_this()](
                                                      beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kLingerMaxBytes) return self->DoClose();
      self->DoDrain();
    });
  }

  beast::tcp_stream stream_;
  std::shared_ptr<const Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<bhttp::response<bhttp::string_body>> res_;
  std::string remote_;
  std::vector<char> drain_;
  size_t drained_ = 0;
};

// The Responder of one request. States: the handler is running (a Send now
// is kept and sent once the handler returns), deferred (a Send posts the
// answer to the session's strand), done.
class SessionResponder final : public Responder {
 public:
  SessionResponder(std::weak_ptr<Session> session, std::shared_ptr<DeferRegistry> registry, unsigned version,
                   bool keep_alive, bool head)
      : session_(std::move(session)), registry_(std::move(registry)), version_(version),
        keep_alive_(keep_alive), head_(head) {}
  ~SessionResponder() override {
    HttpResponse r;
    r.status = 503;
    r.body = internal::JsonErrorBody("unavailable", "the server dropped this request");
    Send(std::move(r));
  }

  void Send(HttpResponse response) override {
    {
      std::lock_guard lock(mu_);
      if (state_ == kDone) return;
      if (state_ == kHandling) {
        early_ = std::move(response);
        state_ = kDone;
        return;
      }
      state_ = kDone;
    }
    // Under the registry's lock, so Stop() cannot destroy the io_context
    // between the check and the post.
    std::lock_guard lock(registry_->mu);
    if (registry_->stopped) return;
    std::shared_ptr<Session> s = session_.lock();
    if (!s || !registry_->waiting.erase(s)) return;
    asio::post(s->executor(), [s, r = std::move(response), v = version_, k = keep_alive_, h = head_]() mutable {
      s->Answer(std::move(r), v, k, h);
    });
  }

  // The handler returned a non-deferred response: later Sends are ignored.
  void Disarm() {
    std::lock_guard lock(mu_);
    state_ = kDone;
  }
  // The handler deferred. Returns the answer it already sent, if any.
  std::optional<HttpResponse> Arm() {
    std::lock_guard lock(mu_);
    if (state_ == kDone) return std::move(early_);
    state_ = kDeferred;
    return std::nullopt;
  }

 private:
  enum State { kHandling, kDeferred, kDone };
  std::mutex mu_;
  State state_ = kHandling;
  std::optional<HttpResponse> early_;
  std::weak_ptr<Session> session_;
  std::shared_ptr<DeferRegistry> registry_;
  unsigned version_;
  bool keep_alive_, head_;
};

void Session::Handle() {
  auto& msg = parser_->get();
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  internal::ParseTarget(req.target, &req.path, &req.query);
  req.headers.reserve(8);
  for (const auto& field : msg) {
    req.headers.emplace_back(internal::ToLower(field.name_string()),
                             std::string(field.value()));
  }
  req.body = std::move(msg.body());
  req.remote_address = remote_;
  const bool keep_alive = msg.keep_alive();
  const unsigned version = msg.version();
  const bool head = msg.method() == bhttp::verb::head;
  parser_.reset();

  auto responder = std::make_shared<SessionResponder>(weak_from_this(), shared_->deferred, version,
                                                      keep_alive, head);
  req.responder = responder;
  HttpResponse out;
  try {
    out = shared_->handler(req);
  } catch (const std::exception& e) {
    out = ErrorResponse(500, "internal", std::string("handler failed: ") + e.what());
  } catch (...) {
    out = ErrorResponse(500, "internal", "handler failed with a non-standard exception");
  }
  req.responder.reset();
  if (!out.deferred) {
    responder->Disarm();
    return SendResponse(std::move(out), version, keep_alive, head, /*linger=*/false);
  }
  {
    std::lock_guard lock(shared_->deferred->mu);
    if (shared_->deferred->stopped) return;
    shared_->deferred->waiting.insert(shared_from_this());
  }
  if (std::optional<HttpResponse> early = responder->Arm()) {
    {
      std::lock_guard lock(shared_->deferred->mu);
      shared_->deferred->waiting.erase(shared_from_this());
    }
    SendResponse(std::move(*early), version, keep_alive, head, /*linger=*/false);
  }
}

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, std::shared_ptr<const Shared> shared)
      : ioc_(ioc), acceptor_(asio::make_strand(ioc)), retry_(acceptor_.get_executor()),
        shared_(std::move(shared)) {}

  Status Open(const tcp::endpoint& ep) {
    beast::error_code ec;
    auto fail = [&](const char* what) {
      return Unavailable(std::string("cannot listen on ") + FormatEndpoint(ep) + ": " + what +
                         ": " + ec.message());
    };
    acceptor_.open(ep.protocol(), ec);
    if (ec) return fail("open");
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) return fail("set_option");
    acceptor_.bind(ep, ec);
    if (ec) return fail("bind");
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail("listen");
    port_ = acceptor_.local_endpoint(ec).port();
    if (ec) return fail("local_endpoint");
    return Status::Ok();
  }

  uint16_t port() const { return port_; }

  void Run() {
    asio::dispatch(acceptor_.get_executor(),
                   beast::bind_front_handler(&Listener::DoAccept, shared_from_this()));
  }

  // Only once the io_context threads are joined.
  void Close() {
    beast::error_code ec;
    retry_.cancel();
    acceptor_.close(ec);
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(ioc_),
                           beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
  }

  void OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // E.g. out of file descriptors: back off instead of spinning.
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->DoAccept();
      });
      return;
    }
    beast::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);
    std::make_shared<Session>(std::move(socket), shared_)->Start();
    DoAccept();
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  std::shared_ptr<const Shared> shared_;
  uint16_t port_ = 0;
};

Result<tcp::endpoint> ResolveListen(const std::string& host, uint16_t port) {
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(addr, port);
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return Unavailable("cannot resolve listen host '" + host + "': " +
                       (ec ? ec.message() : std::string("no addresses")));
  }
  return results.begin()->endpoint();
}

}  // namespace

struct HttpServer::Impl {
  std::unique_ptr<asio::io_context> ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<Listener> listener;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  std::shared_ptr<DeferRegistry> deferred;
  std::mutex stop_mu;
  bool stopped = false;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const { return impl_->port; }

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      HttpHandler handler) {
  if (!handler) return InvalidArgument("HttpServer needs a handler");
  if (options.threads < 1) return InvalidArgument("HttpServer needs at least one thread");
  if (options.idle_timeout_ms < 1) return InvalidArgument("idle_timeout_ms must be positive");
  try {
    auto ep = ResolveListen(options.host, options.port);
    if (!ep.ok()) return ep.status();
    auto shared = std::make_shared<Shared>();
    shared->options = options;
    shared->handler = std::move(handler);

    auto impl = std::make_unique<Impl>();
    impl->deferred = shared->deferred;
    impl->ioc = std::make_unique<asio::io_context>(options.threads);
    impl->listener = std::make_shared<Listener>(*impl->ioc, shared);
    GRID_RETURN_IF_ERROR(impl->listener->Open(*ep));
    impl->port = impl->listener->port();
    impl->listener->Run();
    impl->work.emplace(impl->ioc->get_executor());
    std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
    for (int i = 0; i < options.threads; ++i) {
      asio::io_context* ioc = server->impl_->ioc.get();
      server->impl_->threads.emplace_back([ioc] {
        // The handlers catch what they expect; this keeps a thread serving
        // even if something unexpected (bad_alloc) escapes one of them.
        for (;;) {
          try {
            ioc->run();
            return;
          } catch (...) {
          }
        }
      });
    }
    return server;
  } catch (const std::exception& e) {
    return Internal(std::string("cannot start HTTP server: ") + e.what());
  }
}

void HttpServer::Stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->work.reset();
  impl_->ioc->stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
  {
    // Sessions waiting for a deferred answer go now, while the io_context
    // they belong to still exists; late Sends are ignored.
    std::unordered_set<std::shared_ptr<Session>> waiting;
    {
      std::lock_guard lock(impl_->deferred->mu);
      impl_->deferred->stopped = true;
      waiting.swap(impl_->deferred->waiting);
    }
  }
  impl_->listener->Close();
  impl_->listener.reset();
  impl_->ioc.reset();  // destroys pending handlers, and with them the sessions
}

}  // namespace grid::net
