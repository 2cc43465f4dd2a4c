// Tests of the HTTP layer over loopback. Raw-socket tests use POSIX sockets
// directly so this file stays free of Boost (and compiles fast).
#include "net/http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/http_internal.h"

namespace grid::net {
namespace {

using namespace std::chrono_literals;

// An echo handler: the response body describes the request.
HttpResponse Echo(const HttpRequest& req) {
  HttpResponse r;
  r.content_type = "text/plain";
  r.body = req.method + " " + req.path + "\n";
  for (const auto& [k, v] : req.query) r.body += "q " + k + "=" + v + "\n";
  if (const std::string* h = req.Header("x-test")) r.body += "h x-test=" + *h + "\n";
  r.body += "body " + req.body;
  r.headers.emplace_back("X-Echo", "1");
  return r;
}

std::unique_ptr<HttpServer> StartServer(HttpHandler handler, HttpServerOptions opts = {}) {
  auto server = HttpServer::Start(std::move(opts), std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return std::move(server).value();
}

std::unique_ptr<HttpClient> MakeClient(uint16_t port, HttpClientOptions opts = {}) {
  auto client = HttpClient::Create("http://127.0.0.1:" + std::to_string(port), opts);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

// A blocking loopback TCP connection for sending raw bytes.
class RawSocket {
 public:
  explicit RawSocket(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until the peer closes or `timeout` passes.
  std::string ReadAll(std::chrono::milliseconds timeout = 3000ms) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A port with nothing listening on it (bound, then released).
uint16_t UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(UrlTest, EncodeDecode) {
  EXPECT_EQ(UrlEncode("a b&c=d/é~._-"), "a%20b%26c%3Dd%2F%C3%A9~._-");
  EXPECT_EQ(UrlDecode("a%20b%26c%3dd%2F%C3%A9"), "a b&c=d/é");
  EXPECT_EQ(UrlDecode("a+b", true), "a b");
  EXPECT_EQ(UrlDecode("a+b", false), "a+b");
  EXPECT_EQ(UrlDecode("100%"), "100%");
  EXPECT_EQ(UrlDecode("%zz%4"), "%zz%4");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(UrlDecode(UrlEncode(all)), all);
}

TEST(UrlTest, ParseTarget) {
  std::string path;
  HeaderList q;
  internal::ParseTarget("/v1/off%20ers?limit=5&q=gpu%3DH100+x&flag&=v&&k=", &path, &q);
  EXPECT_EQ(path, "/v1/off ers");
  ASSERT_EQ(q.size(), 5u);
  EXPECT_EQ(q[0], (std::pair<std::string, std::string>("limit", "5")));
  EXPECT_EQ(q[1], (std::pair<std::string, std::string>("q", "gpu=H100 x")));
  EXPECT_EQ(q[2], (std::pair<std::string, std::string>("flag", "")));
  EXPECT_EQ(q[3], (std::pair<std::string, std::string>("", "v")));
  EXPECT_EQ(q[4], (std::pair<std::string, std::string>("k", "")));
  internal::ParseTarget("http://host:1/a/b?x=1", &path, &q);
  EXPECT_EQ(path, "/a/b");
  ASSERT_EQ(q.size(), 1u);
  internal::ParseTarget("http://host?x=1", &path, &q);
  EXPECT_EQ(path, "/");
  ASSERT_EQ(q.size(), 1u);
  internal::ParseTarget("/p#frag", &path, &q);
  EXPECT_EQ(path, "/p");
  EXPECT_TRUE(q.empty());
}

TEST(UrlTest, JsonErrorBodyEscapes) {
  EXPECT_EQ(internal::JsonErrorBody("internal", "a\"b\\c\nd\x01"),
            R"({"error":{"code":"internal","message":"a\"b\\c\nd\u0001"}})");
}

TEST(HttpClientTest, CreateRejectsBadUrls) {
  EXPECT_TRUE(HttpClient::Create("https://x").ok());
  HttpClientOptions missing_ca;
  missing_ca.ca_file = "/nonexistent/ca.pem";
  EXPECT_EQ(HttpClient::Create("https://x", missing_ca).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(HttpClient::Create("ftp://x").ok());
  EXPECT_FALSE(HttpClient::Create("http://").ok());
  EXPECT_FALSE(HttpClient::Create("http://h:99999").ok());
  EXPECT_FALSE(HttpClient::Create("http://h:x").ok());
  EXPECT_FALSE(HttpClient::Create("http://h?x=1").ok());
  EXPECT_FALSE(HttpClient::Create("http://h:80#top").ok());
  EXPECT_FALSE(HttpClient::Create("http://h/a?x=1").ok());
  EXPECT_TRUE(HttpClient::Create("http://localhost:8080/").ok());
  EXPECT_TRUE(HttpClient::Create("http://[::1]:8080/api").ok());
  EXPECT_TRUE(HttpClient::Create("HTTP://example.com").ok());
}

TEST(HttpTest, EchoRoundTrip) {
  auto server = StartServer(Echo);
  ASSERT_NE(server->port(), 0);
  auto client = MakeClient(server->port());
  auto r = client->Send("POST", "/v1/echo?a=1&b=x%20y", R"({"k":"v"})", {{"X-Test", "hi"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "text/plain");
  EXPECT_EQ(r->body, "POST /v1/echo\nq a=1\nq b=x y\nh x-test=hi\nbody {\"k\":\"v\"}");
  ASSERT_NE(r->Header("x-echo"), nullptr);
  EXPECT_EQ(*r->Header("x-echo"), "1");
  ASSERT_NE(r->Header("content-length"), nullptr);
  EXPECT_EQ(*r->Header("content-length"), std::to_string(r->body.size()));

  // Many requests reuse the connection.
  for (int i = 0; i < 50; ++i) {
    auto g = client->Send("GET", "/n?i=" + std::to_string(i));
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(g->body, "GET /n\nq i=" + std::to_string(i) + "\nbody ");
  }
}

TEST(HttpTest, RequestFieldsDecodedAndLowercased) {
  std::mutex mu;
  HttpRequest seen;
  auto server = StartServer([&](const HttpRequest& req) {
    std::lock_guard<std::mutex> lock(mu);
    seen = req;
    return HttpResponse{};
  });
  auto client = MakeClient(server->port());
  auto r = client->Send("GET", "/v1/off%2Fers/a%20b?q=" + UrlEncode("gpu=H100 & dph<2.5") + "&x=a+b",
                        {}, {{"X-Mixed-Case", "Value"}, {"Authorization", "Bearer t"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "application/json");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/v1/off%2Fers/a%20b?q=gpu%3DH100%20%26%20dph%3C2.5&x=a+b");
  EXPECT_EQ(seen.path, "/v1/off/ers/a b");
  ASSERT_NE(seen.Query("q"), nullptr);
  EXPECT_EQ(*seen.Query("q"), "gpu=H100 & dph<2.5");
  ASSERT_NE(seen.Query("x"), nullptr);
  EXPECT_EQ(*seen.Query("x"), "a b");
  EXPECT_EQ(seen.Query("nope"), nullptr);
  ASSERT_NE(seen.Header("x-mixed-case"), nullptr);
  EXPECT_EQ(*seen.Header("x-mixed-case"), "Value");
  ASSERT_NE(seen.Header("authorization"), nullptr);
  EXPECT_EQ(*seen.Header("authorization"), "Bearer t");
  EXPECT_NE(seen.Header("host"), nullptr);
  EXPECT_EQ(seen.Header("X-Mixed-Case"), nullptr);  // names are lowercase
  EXPECT_EQ(seen.remote_address.rfind("127.0.0.1:", 0), 0u) << seen.remote_address;
}

TEST(HttpTest, HandlerStatusPassesThrough) {
  auto server = StartServer([](const HttpRequest&) {
    HttpResponse r;
    r.status = 404;
    r.body = R"({"error":{"code":"not_found","message":"no such offer"}})";
    return r;
  });
  auto client = MakeClient(server->port());
  auto r = client->Send("GET", "/v1/offers/42");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, R"({"error":{"code":"not_found","message":"no such offer"}})");
  // A 404 does not break the connection.
  auto again = client->Send("GET", "/v1/offers/43");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, 404);
}

TEST(HttpTest, BodyTooLargeGets413) {
  HttpServerOptions opts;
  opts.max_body_bytes = 1024;
  auto server = StartServer(Echo, opts);
  auto client = MakeClient(server->port());
  auto ok = client->Send("POST", "/x", std::string(1024, 'a'));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->status, 200);
  auto r = client->Send("POST", "/x", std::string(2 << 20, 'a'));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_EQ(r->body,
            R"j({"error":{"code":"invalid_argument","message":"request body too large (limit 1024 bytes)"}})j");
  // The client reconnects for the next request.
  auto after = client->Send("GET", "/y");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->status, 200);
}

TEST(HttpTest, GarbageGets400AndClose) {
  auto server = StartServer(Echo);
  RawSocket sock(server->port());
  ASSERT_TRUE(sock.connected());
  sock.Send("\x01\x02 garbage \xff\r\n\r\n");
  std::string resp = sock.ReadAll();  // returns when the server closes
  EXPECT_EQ(resp.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << resp;
  EXPECT_NE(resp.find("Content-Type: application/json"), std::string::npos) << resp;
  EXPECT_NE(resp.find("Content-Length: "), std::string::npos) << resp;
  EXPECT_NE(resp.find(R"({"error":{"code":"invalid_argument","message":"malformed HTTP request: )"),
            std::string::npos)
      << resp;

  // A well-formed request over a raw socket still works.
  RawSocket good(server->port());
  good.Send("GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string ok = good.ReadAll();
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("GET /raw"), std::string::npos) << ok;
}

TEST(HttpTest, ExpectContinueIsAnswered) {
  HttpServerOptions opts;
  opts.max_body_bytes = 100;
  auto server = StartServer(Echo, opts);
  RawSocket sock(server->port());
  sock.Send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  std::string interim = sock.ReadAll(300ms);  // no EOF: returns after the timeout
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  sock.Send("hello");
  std::string resp = sock.ReadAll(300ms);
  EXPECT_EQ(resp.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << resp;
  EXPECT_NE(resp.find("body hello"), std::string::npos) << resp;

  // Too large: 413 at once, no 100 Continue.
  RawSocket big(server->port());
  big.Send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n");
  std::string rejected = big.ReadAll();
  EXPECT_EQ(rejected.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << rejected;
}

TEST(HttpTest, HandlerExceptionGets500AndServerKeepsServing) {
  auto server = StartServer([](const HttpRequest& req) -> HttpResponse {
    if (req.path == "/throw") throw std::runtime_error("boom \"quoted\"");
    if (req.path == "/throw-int") throw 42;
    if (req.path == "/bad-status") return HttpResponse{.status = 7};
    return HttpResponse{.body = "{}"};
  });
  auto client = MakeClient(server->port());
  auto r = client->Send("GET", "/throw");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, R"({"error":{"code":"internal","message":"handler failed: boom \"quoted\""}})");
  auto r2 = client->Send("GET", "/throw-int");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->status, 500);
  auto r3 = client->Send("GET", "/bad-status");
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->status, 500);
  auto ok = client->Send("GET", "/fine");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "{}");
}

TEST(HttpTest, NewClientServedWhile64KeepAliveClientsHoldConnections) {
  auto server = StartServer(Echo);  // 2 threads
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(MakeClient(server->port()));
    auto r = clients.back()->Send("GET", "/hold");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // And 64 more that connected but never sent a byte.
  std::vector<std::unique_ptr<RawSocket>> idle;
  for (int i = 0; i < 64; ++i) {
    idle.push_back(std::make_unique<RawSocket>(server->port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  auto fresh = MakeClient(server->port());
  auto start = std::chrono::steady_clock::now();
  auto r = fresh->Send("GET", "/new");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(elapsed, 500ms);
  // The held connections are still usable.
  for (auto& c : clients) {
    auto again = c->Send("GET", "/again");
    ASSERT_TRUE(again.ok()) << again.status().ToString();
  }
}

TEST(HttpTest, ConcurrentRequestsFrom8Threads) {
  std::atomic<int> handled{0};
  HttpServerOptions opts;
  opts.threads = 4;
  auto server = StartServer(
      [&](const HttpRequest& req) {
        ++handled;
        return Echo(req);
      },
      opts);
  constexpr int kThreads = 8, kRequests = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = MakeClient(server->port());
      for (int i = 0; i < kRequests; ++i) {
        std::string body = "t" + std::to_string(t) + "i" + std::to_string(i);
        auto r = client->Send("POST", "/c", body);
        if (!r.ok() || r->status != 200 || r->body != "POST /c\nbody " + body) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(handled.load(), kThreads * kRequests);
}

TEST(HttpTest, StopIsIdempotentAndClosesConnections) {
  auto server = StartServer(Echo);
  uint16_t port = server->port();
  HttpClientOptions copts;
  copts.timeout_ms = 2000;
  auto client = MakeClient(port, copts);
  ASSERT_TRUE(client->Send("GET", "/a").ok());
  server->Stop();
  server->Stop();
  auto r = client->Send("GET", "/b");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  server.reset();  // destructor after Stop is fine too
}

TEST(HttpTest, ClientReconnectsAfterServerClosedIdleConnection) {
  HttpServerOptions opts;
  opts.idle_timeout_ms = 100;
  auto server = StartServer(Echo, opts);
  auto client = MakeClient(server->port());
  for (int i = 0; i < 3; ++i) {
    auto r = client->Send("POST", "/r", "x");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    std::this_thread::sleep_for(250ms);  // the server drops the idle connection
  }
}

TEST(HttpTest, HandlerCanCloseConnection) {
  std::atomic<int> calls{0};
  auto server = StartServer([&](const HttpRequest&) {
    ++calls;
    HttpResponse r;
    r.headers.emplace_back("Connection", "close");
    return r;
  });
  auto client = MakeClient(server->port());
  for (int i = 0; i < 3; ++i) {
    auto r = client->Send("GET", "/c");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_NE(r->Header("connection"), nullptr);
    EXPECT_EQ(*r->Header("connection"), "close");
  }
  EXPECT_EQ(calls.load(), 3);
}

TEST(HttpTest, IdleConnectionTimesOut) {
  HttpServerOptions opts;
  opts.idle_timeout_ms = 100;
  auto server = StartServer(Echo, opts);
  RawSocket sock(server->port());
  ASSERT_TRUE(sock.connected());
  auto start = std::chrono::steady_clock::now();
  std::string got = sock.ReadAll(3000ms);  // returns at EOF
  EXPECT_TRUE(got.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
}

TEST(HttpTest, ConnectRefusedIsUnavailable) {
  uint16_t port = UnusedPort();
  auto client = MakeClient(port);
  auto r = client->Send("GET", "/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message().rfind("cannot reach broker at http://127.0.0.1:" +
                                           std::to_string(port) + ": ",
                                       0),
            0u)
      << r.status().message();
}

TEST(HttpTest, ClientTimeoutIsUnavailable) {
  auto server = StartServer([](const HttpRequest&) {
    std::this_thread::sleep_for(500ms);
    return HttpResponse{};
  });
  HttpClientOptions copts;
  copts.timeout_ms = 100;
  auto client = MakeClient(server->port(), copts);
  auto r = client->Send("GET", "/slow");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
}

// maybe_delivered tells a request that never left (safe to send to another
// server) from one that was written but got no answer (perhaps applied).
TEST(HttpTest, MaybeDeliveredIsFalseWhenTheConnectionIsRefused) {
  auto client = MakeClient(UnusedPort());
  bool maybe_delivered = true;
  auto r = client->Send("POST", "/x", "{}", {}, &maybe_delivered);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(maybe_delivered);
}

TEST(HttpTest, MaybeDeliveredIsTrueWhenTheAnswerTimesOut) {
  auto server = StartServer([](const HttpRequest&) {
    std::this_thread::sleep_for(500ms);
    return HttpResponse{};
  });
  HttpClientOptions copts;
  copts.timeout_ms = 100;
  auto client = MakeClient(server->port(), copts);
  bool maybe_delivered = false;
  auto r = client->Send("POST", "/slow", "{}", {}, &maybe_delivered);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(maybe_delivered);
}

TEST(HttpTest, MaybeDeliveredIsTrueWhenTheServerReadsAndHangsUp) {
  // A listener that reads one request and closes without answering, as a
  // server killed while handling it would.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread hangup([lfd] {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    std::string got;
    char buf[4096];
    while (got.find("\r\n\r\n{}") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  });
  auto client = MakeClient(ntohs(addr.sin_port));
  bool maybe_delivered = false;
  auto r = client->Send("POST", "/x", "{}", {}, &maybe_delivered);
  hangup.join();
  ::close(lfd);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(maybe_delivered) << r.status().ToString();
}

TEST(HttpTest, MaybeDeliveredIsTrueOnAnAnswer) {
  auto server = StartServer(Echo);
  auto client = MakeClient(server->port());
  bool maybe_delivered = false;
  auto r = client->Send("GET", "/a", {}, {}, &maybe_delivered);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(maybe_delivered);
}

TEST(HttpTest, BindConflictIsUnavailable) {
  auto first = StartServer(Echo);
  HttpServerOptions opts;
  opts.port = first->port();
  auto second = HttpServer::Start(opts, Echo);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
}

TEST(HttpTest, ClientBasePathPrefix) {
  auto server = StartServer(Echo);
  auto client = HttpClient::Create("http://localhost:" + std::to_string(server->port()) + "/api/");
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto r = (*client)->Send("GET", "v1/x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "GET /api/v1/x\nbody ");
}

// Long-poll: the handler keeps the responder and answers from another
// thread; the connection is served in order and stays usable afterwards.
TEST(HttpTest, DeferredAnswerFromAnotherThread) {
  std::mutex mu;
  std::vector<std::shared_ptr<Responder>> parked;
  auto server = StartServer([&](const HttpRequest& req) {
    if (req.path == "/wait") {
      std::lock_guard lock(mu);
      parked.push_back(req.responder);
      return HttpResponse::Deferred();
    }
    return Echo(req);
  });
  std::thread waker([&] {
    for (;;) {
      std::this_thread::sleep_for(20ms);
      std::lock_guard lock(mu);
      if (parked.empty()) continue;
      HttpResponse r;
      r.body = R"({"woken":true})";
      parked[0]->Send(r);
      parked[0]->Send(r);  // a second Send is ignored
      return;
    }
  });
  auto client = MakeClient(server->port());
  auto r = client->Send("GET", "/wait");
  waker.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"woken":true})");
  auto again = client->Send("GET", "/after");  // same kept-alive connection
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->body, "GET /after\nbody ");
}

// An answer sent while the handler is still running goes out once it returns.
TEST(HttpTest, DeferredAnswerSentBeforeHandlerReturned) {
  auto server = StartServer([](const HttpRequest& req) {
    HttpResponse r;
    r.status = 202;
    r.body = "{}";
    req.responder->Send(r);
    return HttpResponse::Deferred();
  });
  auto r = MakeClient(server->port())->Send("GET", "/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 202);
}

// A handler that defers and drops its responder does not leave the client
// waiting: it gets a 503.
TEST(HttpTest, DroppedResponderAnswers503) {
  auto server = StartServer([](const HttpRequest&) { return HttpResponse::Deferred(); });
  auto r = MakeClient(server->port())->Send("GET", "/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("unavailable"), std::string::npos);
}

// Stop with requests still parked closes them; a Send after Stop (or after
// the server is gone) is ignored.
TEST(HttpTest, StopWithParkedRequestsThenLateSend) {
  std::mutex mu;
  std::vector<std::shared_ptr<Responder>> parked;
  auto server = StartServer([&](const HttpRequest& req) {
    std::lock_guard lock(mu);
    parked.push_back(req.responder);
    return HttpResponse::Deferred();
  });
  HttpClientOptions o;
  o.timeout_ms = 5000;
  std::atomic<bool> failed{false};
  std::thread t([&] {
    auto r = MakeClient(server->port(), o)->Send("GET", "/wait");
    failed = !r.ok();
  });
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(5ms);
    std::lock_guard lock(mu);
    if (!parked.empty()) break;
  }
  server->Stop();
  t.join();
  EXPECT_TRUE(failed);  // the connection was closed, not answered
  server.reset();
  std::lock_guard lock(mu);
  ASSERT_EQ(parked.size(), 1u);
  HttpResponse r;
  parked[0]->Send(r);  // must not crash
  parked.clear();      // the destructor's 503 is ignored too
}

// https to a server that speaks plain HTTP: the handshake fails cleanly
// (Unavailable), never a crash or a hang past the deadline.
TEST(HttpTest, HttpsToAPlainServerFailsCleanly) {
  auto server = StartServer(Echo);
  HttpClientOptions o;
  o.timeout_ms = 3000;
  auto client = HttpClient::Create("https://127.0.0.1:" + std::to_string(server->port()), o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto r = (*client)->Send("GET", "/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
}

}  // namespace
}  // namespace grid::net
