// bench_heartbeat: the broker's CPU and memory while N agents heartbeat
// (issue 3: "Broker CPU and memory while 10,000 agents heartbeat every 10 s;
// goal < 1 core; state the memory").
//
// What it does, against the REAL broker binary (a child process):
//   1. `grid broker --db TMP/broker.db --listen 127.0.0.1:0 --dev --heartbeat P`,
//      reads its "listening on" line; RSS of the empty broker.
//   2. A provider signs in (client::BrokerClient::CreateWithKey, SIWE) and
//      creates a join token (POST /v1/provider/join-tokens).
//   3. N agents, each with its own secp256k1 key, sign in with SIWE
//      (POST /v1/auth/nonce + /v1/auth/login, the same message
//      BrokerClient::Login builds) and enroll (POST /v1/agent/enroll) with the
//      spec a `grid agent --simulate-gpus` host would send (BuildSpecFields
//      over a simulated inventory: models and counts 1/2/4/8 cycled), on a
//      few threads. Setup time per phase is printed.
//   3b. With --long-poll (the default): each agent beats once (its answer's
//      "lease_version") and then holds its long-poll, as a real agent does:
//      POST /v1/agent/wait {"lease_version": V, "timeout_ms": T} with its
//      token on its OWN kept-alive connection (N raw sockets driven by one
//      epoll thread here), re-posted as soon as it is answered (200,
//      {"changed":...}). T is --wait-timeout-ms (default 20000, the agent's);
//      the first waits' timeouts are spread over (0, T] so the re-posts come
//      at the steady N/T per second from the start. RSS after the first
//      heartbeats and with the N long-polls parked: the difference over N is
//      the memory per parked long-poll connection. The long-polls stay held
//      (and re-posted) through the idle window and every load window below.
//      --no-long-poll gives the measurement without them.
//   4. An idle window of one heartbeat period (no requests: the broker's
//      ticker only), then for D seconds every agent beats once per period
//      (POST /v1/agent/heartbeat with the simulated GPU health body an agent
//      sends), spread evenly: agent i at start + i*P/N + k*P, i.e. N/P
//      requests per second. The requests go over a pool of keep-alive
//      connections (HttpClient, one per connection) on a few threads; a
//      thread that falls behind its schedule sends at once and the lag is
//      reported. The load runs in --rounds rounds (default 3) of
//      seconds/rounds each, alternating with a reference window of the same
//      length: GET /healthz at the same rate over the same connections (no
//      auth, no body: what the HTTP layer alone costs the broker), so the
//      heartbeat's own share can be read as a ratio from the same run
//      (GUIDE.md §6). --no-baseline skips it.
// Measured: the broker's CPU (utime+stime from /proc/PID/stat over the
// window, in cores), its RSS (VmRSS and parts from /proc/PID/status) at each
// step and the peak during load, heartbeat latency p50/p99/max and errors,
// and this load generator's own CPU (it shares the machine with the broker);
// with long-polls also their answers, errors and how late after their
// timeout the unchanged answers came.
//
// Usage: bench_heartbeat [--grid build/grid] [--agents 10000] [--seconds 30]
//                        [--period 10] [--threads 4] [--connections 64]
//                        [--broker-threads 2] [--rounds 3] [--no-baseline]
//                        [--long-poll | --no-long-poll] [--wait-timeout-ms 20000]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "agent/gpu/gpu_probe.h"
#include "agent/gpu/host_facts.h"
#include "agent/gpu/spec_fields.h"
#include "bench_util.h"
#include "child_process.h"
#include "client/broker_client.h"
#include "core/clock.h"
#include "crypto/eip191.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "crypto/siwe.h"
#include "net/http.h"

namespace json = boost::json;
using namespace grid;
using bench::NowSeconds;

namespace {

bench::ChildProcess* g_broker = nullptr;  // stopped by Die

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "bench_heartbeat: %s\n", msg.c_str());
  if (g_broker) g_broker->Stop();
  std::exit(1);
}

// ------------------------------------------------------------ the broker child

struct ProcStat {
  double cpu_seconds = 0;  // utime + stime
  int threads = 0;
};

ProcStat ReadProcStat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ProcStat out;
  size_t rp = s.rfind(')');
  if (rp == std::string::npos) return out;
  std::istringstream in(s.substr(rp + 2));
  std::vector<std::string> fld;
  std::string t;
  while (in >> t) fld.push_back(t);
  // fld[0] is field 3 (state); utime = field 14, stime = 15, num_threads = 20.
  if (fld.size() < 18) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  out.cpu_seconds = (std::stod(fld[11]) + std::stod(fld[12])) / tick;
  out.threads = std::stoi(fld[17]);
  return out;
}

bench::Rss ReadRssOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  bench::Rss r;
  std::string line;
  while (std::getline(f, line)) {
    auto val = [&](const char* key, int64_t* out) {
      size_t n = std::strlen(key);
      if (line.compare(0, n, key) == 0) *out = std::strtoll(line.c_str() + n, nullptr, 10);
    };
    val("VmRSS:", &r.total_kb);
    val("RssAnon:", &r.anon_kb);
    val("RssFile:", &r.file_kb);
    val("RssShmem:", &r.shmem_kb);
  }
  return r;
}

int64_t ReadVmHwmKb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  return 0;
}

// ------------------------------------------------------------ agent protocol

struct SimAgent {
  crypto::PrivateKey key;
  std::string token;
  std::string spec_body;    // POST /v1/agent/enroll body
  std::string health_body;  // POST /v1/agent/heartbeat body
};

Result<json::value> PostJson(net::HttpClient& http, const std::string& path, const std::string& body,
                             const std::string* token, int want_status) {
  net::HeaderList h;
  if (token) h.emplace_back("Authorization", "Bearer " + *token);
  GRID_ASSIGN_OR_RETURN(net::HttpResponse r, http.Send("POST", path, body, h));
  if (r.status != want_status) return Internal(path + ": HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec) return Internal(path + ": malformed JSON");
  return v;
}

std::string Field(const json::value& v, const char* k) {
  const json::value* x = v.is_object() ? v.as_object().if_contains(k) : nullptr;
  return x && x->is_string() ? std::string(x->get_string()) : "";
}

// The SIWE sign-in BrokerClient::Login does, without its token file.
Result<std::string> SiweLogin(net::HttpClient& http, const crypto::PrivateKey& key) {
  GRID_ASSIGN_OR_RETURN(json::value n, PostJson(http, "/v1/auth/nonce", "", nullptr, 200));
  crypto::SiweMessage m;
  m.domain = Field(n, "domain");
  m.address = crypto::AddressOf(key).ToChecksumHex();
  m.statement = "Sign in to Gridmarket.";
  m.uri = Field(n, "uri");
  m.version = "1";
  const json::value* chain = n.as_object().if_contains("chain_id");
  m.chain_id = chain && chain->is_number() ? chain->to_number<uint64_t>() : 0;
  m.nonce = Field(n, "nonce");
  UnixMs now = SystemClock().NowMs();
  m.issued_at = FormatTime(now);
  m.expiration_time = FormatTime(now + 10 * 60'000);
  std::string text = crypto::FormatSiwe(m);
  GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::SignDigest(key, crypto::PersonalMessageHash(text)));
  json::value body = json::object{{"message", text}, {"signature", crypto::HexEncode(sig)}};
  GRID_ASSIGN_OR_RETURN(json::value r, PostJson(http, "/v1/auth/login", json::serialize(body), nullptr, 200));
  std::string token = Field(r, "token");
  if (token.empty()) return Internal("login: no token in the answer");
  return token;
}

// Runs fn(i) for i in [0, n) on `threads` threads, each with its own
// HttpClient; stops at the first error.
void Parallel(const std::string& url, int threads, size_t n, const char* what,
              const std::function<Status(net::HttpClient&, size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      auto http = net::HttpClient::Create(url);
      if (!http.ok()) {
        std::lock_guard l(mu);
        first_error = http.status().message();
        return;
      }
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        Status st = fn(**http, i);
        if (!st.ok()) {
          std::lock_guard l(mu);
          if (first_error.empty()) first_error = st.message();
          next = n;
          return;
        }
      }
    });
  for (auto& t : ts) t.join();
  if (!first_error.empty()) Die(std::string(what) + ": " + first_error);
}

json::value ToJson(const agent::SpecValue& v) {
  return std::visit([](const auto& x) { return json::value(x); }, v);
}

// The health body Agent::HealthJson sends.
std::string HealthBody(agent::GpuProbe& probe) {
  json::array gpus;
  if (auto health = probe.Health(); health.ok()) {
    for (const agent::GpuHealth& h : *health) {
      json::object g{{"index", h.index}, {"ok", h.ok}};
      if (h.utilization_pct) g["utilization_pct"] = *h.utilization_pct;
      if (h.memory_used_pct) g["memory_used_pct"] = *h.memory_used_pct;
      if (h.temperature_c) g["temperature_c"] = *h.temperature_c;
      if (h.power_mw) g["power_mw"] = *h.power_mw;
      if (h.energy_mj) g["energy_mj"] = *h.energy_mj;
      gpus.push_back(std::move(g));
    }
  }
  return json::serialize(json::object{{"gpus", std::move(gpus)}, {"note", "simulated GPUs"}});
}

double Pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

double MiB(int64_t kb) { return static_cast<double>(kb) / 1024.0; }

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}


// ------------------------------------------------------------ the long-polls

// N agents' long-polls (POST /v1/agent/wait), each on its own kept-alive TCP
// connection, as real agents hold them: plain non-blocking sockets driven by
// one epoll loop on one thread (an HttpClient per connection would be an event
// loop and a few fds each: 10,000 of them do not fit the fd limit). Each
// answer (Content-Length framing) must be 200 with "changed"; the connection
// then re-posts at once with the version it was answered. A connection that
// fails is counted and reconnected.
class LongPolls {
 public:
  struct Agent {
    std::string token;
    int64_t version = 0;
  };

  LongPolls(uint16_t port, std::vector<Agent> agents, int64_t timeout_ms)
      : port_(port), agents_(std::move(agents)), timeout_ms_(timeout_ms), conns_(agents_.size()) {}
  ~LongPolls() { Stop(); }

  // Connects every agent and sends its first wait, then keeps answering.
  // The first waits have timeouts spread evenly over (0, timeout] (agent i:
  // timeout*(i+1)/N), so the re-posts come at the steady rate N/timeout from
  // the start, as from a fleet whose agents started at different times,
  // instead of all N at once one timeout later.
  Status Start() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return Internal(std::string("epoll_create1: ") + std::strerror(errno));
    thread_ = std::thread([this] { Loop(); });
    return Status::Ok();
  }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    for (Conn& c : conns_)
      if (c.fd >= 0) close(c.fd), c.fd = -1;
    close(epfd_);
  }

  size_t agents() const { return agents_.size(); }
  size_t first_sent() const { return first_sent_.load(); }
  int64_t answers() const { return answers_.load(); }
  int64_t changed() const { return changed_.load(); }
  int64_t errors() const { return errors_.load(); }
  int64_t reconnects() const { return reconnects_.load(); }
  std::string first_error() {
    std::lock_guard l(mu_);
    return first_error_;
  }
  // How long after its timeout each unchanged answer came (ms).
  std::vector<double> TakeOverdueMs() {
    std::lock_guard l(mu_);
    return std::move(overdue_ms_);
  }

 private:
  struct Conn {
    int fd = -1;
    std::string out;  // the request being written
    size_t out_off = 0;
    std::string in;   // the answer being read
    double sent_at = 0;
    int64_t timeout_ms = 0;
  };

  void Error(const std::string& what) {
    ++errors_;
    std::lock_guard l(mu_);
    if (first_error_.empty()) first_error_ = what;
  }

  bool Connect(size_t i) {
    Conn& c = conns_[i];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      Error(std::string("socket: ") + std::strerror(errno));
      return false;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port_);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
      Error(std::string("connect: ") + std::strerror(errno));
      close(c.fd);
      c.fd = -1;
      return false;
    }
    // Edge-triggered: the request is written at once and again on each
    // EPOLLOUT edge until it is out (the connect completing is one).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = i;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
      Error(std::string("epoll_ctl: ") + std::strerror(errno));
      close(c.fd);
      c.fd = -1;
      return false;
    }
    return true;
  }

  void Post(size_t i, int64_t timeout_ms) {
    Conn& c = conns_[i];
    std::string body = "{\"lease_version\":" + std::to_string(agents_[i].version) +
                       ",\"timeout_ms\":" + std::to_string(timeout_ms) + "}";
    c.out = "POST /v1/agent/wait HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
            "\r\nAuthorization: Bearer " + agents_[i].token +
            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
            body;
    c.out_off = 0;
    c.in.clear();
    c.timeout_ms = timeout_ms;
    c.sent_at = NowSeconds();
    Flush(i);
  }

  void Flush(size_t i) {
    Conn& c = conns_[i];
    while (c.fd >= 0 && c.out_off < c.out.size()) {
      ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) {
        return;  // the next EPOLLOUT edge
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return Fail(i, std::string("send: ") + std::strerror(errno));
      }
    }
  }

  void Fail(size_t i, const std::string& what) {
    Error(what);
    Conn& c = conns_[i];
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    if (stop_ || reconnects_.load() >= static_cast<int64_t>(agents_.size())) return;  // no reconnect storm
    ++reconnects_;
    if (Connect(i)) Post(i, timeout_ms_);
  }

  // Reads what is there; handles each complete answer.
  void Read(size_t i) {
    Conn& c = conns_[i];
    char buf[4096];
    for (;;) {
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return Fail(i, "the broker closed a long-poll connection");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Fail(i, std::string("recv: ") + std::strerror(errno));
    }
    size_t hend = c.in.find("\r\n\r\n");
    if (hend == std::string::npos) return;
    // Content-Length, case-insensitively.
    std::string head = c.in.substr(0, hend);
    for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    size_t cl = head.find("\r\ncontent-length:");
    if (cl == std::string::npos) return Fail(i, "an answer without Content-Length");
    size_t len = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    if (c.in.size() < hend + 4 + len) return;
    const double now = NowSeconds();
    const int status = head.size() > 12 ? std::atoi(head.c_str() + 9) : 0;
    std::string body = c.in.substr(hend + 4, len);
    const bool closing = head.find("\r\nconnection: close") != std::string::npos;
    if (c.in.size() > hend + 4 + len) return Fail(i, "bytes after the answer");
    c.in.clear();
    if (status != 200 || body.find("\"changed\"") == std::string::npos)
      return Fail(i, "HTTP " + std::to_string(status) + ": " + body.substr(0, 200));
    ++answers_;
    const bool changed = body.find("\"changed\":true") != std::string::npos;
    if (changed) ++changed_;
    if (size_t v = body.find("\"lease_version\":"); v != std::string::npos)
      agents_[i].version = std::strtoll(body.c_str() + v + 16, nullptr, 10);
    if (!changed) {
      std::lock_guard l(mu_);
      overdue_ms_.push_back((now - c.sent_at) * 1e3 - static_cast<double>(c.timeout_ms));
    }
    if (closing) return Fail(i, "the broker answered with Connection: close");
    Post(i, timeout_ms_);  // at once, as the agent does
  }

  void Loop() {
    const size_t n = agents_.size();
    for (size_t i = 0; i < n && !stop_; ++i) {
      if (Connect(i)) Post(i, std::max<int64_t>(1, timeout_ms_ * static_cast<int64_t>(i + 1) / static_cast<int64_t>(n)));
      ++first_sent_;
      // Keep the connections already made answered while the rest connect.
      if (i % 256 == 255) Poll(0);
    }
    while (!stop_) Poll(100);
  }

  void Poll(int wait_ms) {
    epoll_event evs[256];
    int k = epoll_wait(epfd_, evs, 256, wait_ms);
    for (int e = 0; e < k; ++e) {
      size_t i = evs[e].data.u64;
      if (conns_[i].fd < 0) continue;
      if (evs[e].events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(conns_[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        Fail(i, std::string("socket error: ") + std::strerror(err));
        continue;
      }
      if (evs[e].events & EPOLLOUT) Flush(i);
      if (conns_[i].fd >= 0 && (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) Read(i);
    }
  }

  const uint16_t port_;
  std::vector<Agent> agents_;  // versions: the loop thread's
  const int64_t timeout_ms_;
  std::vector<Conn> conns_;    // the loop thread's
  int epfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> first_sent_{0};
  std::atomic<int64_t> answers_{0}, changed_{0}, errors_{0}, reconnects_{0};
  std::mutex mu_;
  std::string first_error_;
  std::vector<double> overdue_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string grid = "build/grid";
  size_t agents = 10'000;
  double seconds = 30, period = 10;
  int threads = 4, connections = 64, broker_threads = 2, rounds = 3;
  bool no_baseline = false, long_poll = true;
  int64_t wait_timeout_ms = 20'000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--grid") grid = next();
    else if (a == "--agents") agents = std::stoul(next());
    else if (a == "--seconds") seconds = std::stod(next());
    else if (a == "--period") period = std::stod(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--connections") connections = std::stoi(next());
    else if (a == "--broker-threads") broker_threads = std::stoi(next());
    else if (a == "--rounds") rounds = std::stoi(next());
    else if (a == "--no-baseline") no_baseline = true;
    else if (a == "--long-poll") long_poll = true;
    else if (a == "--no-long-poll") long_poll = false;
    else if (a == "--wait-timeout-ms") wait_timeout_ms = std::stoll(next());
    else {
      std::fprintf(stderr,
                   "usage: bench_heartbeat [--grid build/grid] [--agents 10000] [--seconds 30] [--period 10]\n"
                   "                       [--threads 4] [--connections 64] [--broker-threads 2] [--rounds 3]\n"
                   "                       [--no-baseline] [--long-poll | --no-long-poll] [--wait-timeout-ms 20000]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (agents == 0 || seconds <= 0 || period <= 0 || threads < 1 || connections < threads || rounds < 1 ||
      wait_timeout_ms < 1 || wait_timeout_ms > 60'000)
    Die("bad options");
  signal(SIGPIPE, SIG_IGN);
  // One socket per long-poll, and each HttpClient holds its own event loop (a
  // few fds besides its socket): raise the soft fd limit to the hard one (the
  // broker child inherits it: it holds one socket per connection too).
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  grid = std::filesystem::absolute(grid).string();

  char tmpl[] = "/tmp/bench_heartbeat.XXXXXX";
  if (!mkdtemp(tmpl)) Die("mkdtemp failed");
  const std::string dir = tmpl;

  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::printf("broker: %s broker --db %s/broker.db --listen 127.0.0.1:0 --dev --heartbeat %g --threads %d\n",
              grid.c_str(), dir.c_str(), period, broker_threads);
  std::printf("agents: %zu, each beating every %g s (%.0f heartbeats/s), %g s of heartbeats in %d rounds (each followed by as long of GET /healthz); load: %d threads over %d "
              "keep-alive connections\n",
              agents, period, static_cast<double>(agents) / period, seconds, rounds, threads, connections);
  if (long_poll)
    std::printf("long-polls: each agent also holds POST /v1/agent/wait on its own kept-alive connection (%zu "
                "connections, one epoll thread), timeout_ms %" PRId64 ", re-posted at once (%.0f re-posts/s)\n",
                agents, wait_timeout_ms, static_cast<double>(agents) * 1000.0 / static_cast<double>(wait_timeout_ms));
  else
    std::printf("long-polls: none (--no-long-poll)\n");
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0)
    std::printf("fd limit: %llu\n", static_cast<unsigned long long>(rl.rlim_cur));
  std::fflush(stdout);

  bench::ChildProcess broker;
  g_broker = &broker;
  auto started = bench::StartBroker(broker, grid, dir + "/broker.db", period, broker_threads, dir + "/broker.log");
  if (!started.ok()) Die("broker: " + started.status().message());
  const pid_t pid = broker.pid();
  const std::string url = *started;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  bench::Rss rss_empty = ReadRssOf(pid);
  std::printf("broker pid %d at %s; empty: %s\n", static_cast<int>(pid), url.c_str(), bench::FormatRss(rss_empty).c_str());

  // The provider and its join token.
  auto pkey = crypto::GeneratePrivateKey();
  if (!pkey.ok()) Die(pkey.status().message());
  auto provider = client::BrokerClient::CreateWithKey(url, *pkey, dir + "/provider");
  if (!provider.ok()) Die(provider.status().message());
  json::value jt_body = json::object{{"ttl_seconds", 3600}};
  auto jt = (*provider)->AuthCall("POST", "/v1/provider/join-tokens", &jt_body);
  if (!jt.ok()) Die("join token: " + jt.status().message());
  const std::string join_token = Field(*jt, "token");

  // The agents: keys, simulated specs and health bodies.
  const double t_setup = NowSeconds();
  auto host = agent::ProbeHost(dir);
  if (!host.ok()) Die("ProbeHost: " + host.status().message());
  agent::AgentSiteConfig site;
  site.geolocation = "DE";
  site.inet_up_mbps = 1000;
  site.inet_down_mbps = 1000;
  const std::vector<std::string> models = agent::SimulatedModelNames();
  const int counts[] = {1, 2, 4, 8};
  std::vector<SimAgent> fleet(agents);
  {
    std::atomic<size_t> next{0};
    std::vector<std::thread> ts;
    std::mutex mu;
    std::string err;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < agents;) {
          SimAgent& a = fleet[i];
          auto k = crypto::GeneratePrivateKey();
          std::string gpus = std::to_string(counts[i % 4]) + "x" + models[(i / 4) % models.size()];
          auto probe = agent::NewSimulatedProbe(gpus, i + 1);
          if (!k.ok() || !probe.ok()) {
            std::lock_guard l(mu);
            err = !k.ok() ? k.status().message() : probe.status().message();
            return;
          }
          a.key = *k;
          auto inv = (*probe)->Inventory();
          if (!inv.ok()) {
            std::lock_guard l(mu);
            err = inv.status().message();
            return;
          }
          json::object spec;
          for (const auto& [f, v] : agent::BuildSpecFields(*inv, *host, site)) spec[f] = ToJson(v);
          a.spec_body = json::serialize(json::object{{"join_token", join_token}, {"spec", std::move(spec)}});
          a.health_body = HealthBody(**probe);
        }
      });
    for (auto& t : ts) t.join();
    if (!err.empty()) Die("simulated agents: " + err);
  }
  const double t_keys = NowSeconds();
  Parallel(url, threads, agents, "login", [&](net::HttpClient& http, size_t i) -> Status {
    GRID_ASSIGN_OR_RETURN(fleet[i].token, SiweLogin(http, fleet[i].key));
    return Status::Ok();
  });
  const double t_login = NowSeconds();
  bench::Rss rss_logged_in = ReadRssOf(pid);
  Parallel(url, threads, agents, "enroll", [&](net::HttpClient& http, size_t i) -> Status {
    return PostJson(http, "/v1/agent/enroll", fleet[i].spec_body, &fleet[i].token, 201).status();
  });
  const double t_enroll = NowSeconds();
  size_t avg_health = 0, avg_spec = 0;
  for (const auto& a : fleet) avg_health += a.health_body.size(), avg_spec += a.spec_body.size();
  std::printf("setup: %.1f s in all: keys + simulated specs %.1f s, %zu SIWE logins %.1f s (%.0f/s), %zu enrollments "
              "%.1f s (%.0f/s), %d client threads; bodies: enroll %zu B, heartbeat %zu B on average\n",
              t_enroll - t_setup, t_keys - t_setup, agents, t_login - t_keys,
              static_cast<double>(agents) / (t_login - t_keys), agents, t_enroll - t_login,
              static_cast<double>(agents) / (t_enroll - t_login), threads, avg_spec / agents, avg_health / agents);
  bench::Rss rss_enrolled = ReadRssOf(pid);
  std::printf("broker RSS after %zu logins: %s\n", agents, bench::FormatRss(rss_logged_in).c_str());
  std::printf("broker RSS after %zu enrollments: %s\n", agents, bench::FormatRss(rss_enrolled).c_str());
  std::fflush(stdout);

  // The long-polls: a first heartbeat per agent (as the agent does: its
  // answer's lease_version is what the wait starts from), then every agent's
  // wait on its own connection.
  std::unique_ptr<LongPolls> polls;
  bench::Rss rss_first_beat, rss_parked;
  if (long_poll) {
    std::vector<LongPolls::Agent> pa(agents);
    const double tb0 = NowSeconds();
    Parallel(url, threads, agents, "first heartbeat", [&](net::HttpClient& http, size_t i) -> Status {
      GRID_ASSIGN_OR_RETURN(json::value r,
                            PostJson(http, "/v1/agent/heartbeat", fleet[i].health_body, &fleet[i].token, 200));
      const json::value* v = r.as_object().if_contains("lease_version");
      if (!v || !v->is_int64()) return Internal("heartbeat: no lease_version in the answer");
      pa[i].token = fleet[i].token;
      pa[i].version = v->get_int64();
      return Status::Ok();
    });
    const double tb1 = NowSeconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    rss_first_beat = ReadRssOf(pid);
    const size_t colon = url.rfind(':');
    const auto port = static_cast<uint16_t>(std::stoi(url.substr(colon + 1)));
    polls = std::make_unique<LongPolls>(port, std::move(pa), wait_timeout_ms);
    if (Status st = polls->Start(); !st.ok()) Die(st.message());
    while (polls->first_sent() < agents) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double tb2 = NowSeconds();
    // Let the broker read and park the last ones.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    rss_parked = ReadRssOf(pid);
    std::printf("long-polls: %zu first heartbeats %.1f s; %zu connections opened and first waits sent in %.1f s; "
                "answers so far %" PRId64 ", errors %" PRId64 "%s%s\n",
                agents, tb1 - tb0, agents, tb2 - tb1, polls->answers(), polls->errors(),
                polls->errors() ? ": " : "", polls->first_error().c_str());
    std::printf("broker RSS after %zu first heartbeats: %s\n", agents, bench::FormatRss(rss_first_beat).c_str());
    std::printf("broker RSS with %zu long-polls parked (one connection each): %s => %.2f KiB per parked long-poll "
                "connection\n",
                agents, bench::FormatRss(rss_parked).c_str(),
                static_cast<double>(rss_parked.total_kb - rss_first_beat.total_kb) / static_cast<double>(agents));
    std::fflush(stdout);
  }
  auto poll_answers = [&] { return polls ? polls->answers() : 0; };

  // Idle window: one heartbeat period with no requests (the ticker's host check).
  ProcStat idle0 = ReadProcStat(pid);
  double ti0 = NowSeconds();
  const int64_t idle_polls0 = poll_answers();
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(period, 10.0)));
  ProcStat idle1 = ReadProcStat(pid);
  double ti1 = NowSeconds();
  const double idle_poll_rate = static_cast<double>(poll_answers() - idle_polls0) / (ti1 - ti0);
  const double idle_cores = (idle1.cpu_seconds - idle0.cpu_seconds) / (ti1 - ti0);

  // The load: each thread owns connections/threads keep-alive connections and
  // the agents i with i % threads == t, in order of their slot.
  const int per_thread = connections / threads;
  std::vector<std::vector<std::unique_ptr<net::HttpClient>>> pools(threads);
  for (int t = 0; t < threads; ++t)
    for (int c = 0; c < per_thread; ++c) {
      auto h = net::HttpClient::Create(url);
      if (!h.ok()) Die(h.status().message());
      // Warm the connection (connect + one heartbeat) outside the window.
      size_t i = static_cast<size_t>(t + c * threads) % agents;
      auto r = PostJson(**h, "/v1/agent/heartbeat", fleet[i].health_body, &fleet[i].token, 200);
      if (!r.ok())
        Die("warm-up heartbeat on connection " + std::to_string(t * per_thread + c + 1) + " of " +
            std::to_string(threads * per_thread) + ": " + r.status().message());
      pools[t].push_back(std::move(*h));
    }
  // One window of the schedule: every agent once per period, in its slot.
  // kind "heartbeat": POST /v1/agent/heartbeat as the agent; kind "healthz":
  // GET /healthz at the same rate over the same connections (the reference:
  // what the HTTP layer alone costs the broker at this rate).
  struct Window {
    double seconds = 0, cores = 0, rate = 0, self_cores = 0, max_lag_ms = 0, poll_rate = 0, poll_count = 0;
    std::vector<double> lat_ms;
    size_t late = 0, errors = 0;
    std::string first_error;
  };
  const double slot = period / static_cast<double>(agents);
  auto run_window = [&](bool heartbeat, double secs) {
    struct ThreadResult {
      std::vector<double> lat_ms;
      double max_lag_ms = 0;
      size_t late = 0, errors = 0;
      std::string first_error;
    };
    std::vector<ThreadResult> results(threads);
    const double start = NowSeconds() + 0.2;
    const double end = start + secs;
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        ThreadResult& res = results[t];
        res.lat_ms.reserve(static_cast<size_t>(secs / period * static_cast<double>(agents) / threads) + 16);
        size_t conn = 0;
        for (int64_t round = 0;; ++round) {
          for (size_t i = static_cast<size_t>(t); i < agents; i += static_cast<size_t>(threads)) {
            double due = start + static_cast<double>(round) * period + static_cast<double>(i) * slot;
            if (due >= end) return;
            double now = NowSeconds();
            if (due > now) std::this_thread::sleep_for(std::chrono::duration<double>(due - now));
            else if (now - due > 0.001) {
              ++res.late;
              res.max_lag_ms = std::max(res.max_lag_ms, (now - due) * 1e3);
            }
            net::HttpClient& http = *pools[t][conn++ % pools[t].size()];
            double t0 = NowSeconds();
            Result<net::HttpResponse> r = heartbeat ? http.Send("POST", "/v1/agent/heartbeat", fleet[i].health_body,
                                                                {{"Authorization", "Bearer " + fleet[i].token}})
                                                    : http.Send("GET", "/healthz");
            double t1 = NowSeconds();
            res.lat_ms.push_back((t1 - t0) * 1e3);
            bool ok = r.ok() && r->status == 200 &&
                      r->body.rfind(heartbeat ? "{\"heartbeat_seconds\":" : "{\"status\":\"ok\"", 0) == 0;
            if (!ok) {
              ++res.errors;
              if (res.first_error.empty())
                res.first_error = r.ok() ? "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200)
                                         : r.status().message();
            }
          }
        }
      });
    while (NowSeconds() < start) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ProcStat s0 = ReadProcStat(pid);
    double self0 = SelfCpuSeconds();
    double w0 = NowSeconds();
    const int64_t p0 = poll_answers();
    for (auto& t : ts) t.join();
    ProcStat s1 = ReadProcStat(pid);
    double self1 = SelfCpuSeconds();
    double w1 = NowSeconds();
    const int64_t p1 = poll_answers();
    Window w;
    w.seconds = w1 - w0;
    w.poll_rate = static_cast<double>(p1 - p0) / w.seconds;
    w.cores = (s1.cpu_seconds - s0.cpu_seconds) / w.seconds;
    w.self_cores = (self1 - self0) / w.seconds;
    for (auto& r : results) {
      w.lat_ms.insert(w.lat_ms.end(), r.lat_ms.begin(), r.lat_ms.end());
      w.late += r.late;
      w.errors += r.errors;
      w.max_lag_ms = std::max(w.max_lag_ms, r.max_lag_ms);
      if (w.first_error.empty()) w.first_error = r.first_error;
    }
    w.rate = static_cast<double>(w.lat_ms.size()) / w.seconds;
    return w;
  };

  std::atomic<int64_t> peak_rss_kb{0};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      int64_t kb = ReadRssOf(pid).total_kb;
      int64_t prev = peak_rss_kb.load();
      while (kb > prev && !peak_rss_kb.compare_exchange_weak(prev, kb)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  // Rounds alternate: heartbeats, then the /healthz reference, each for
  // seconds/rounds.
  const double per_round = seconds / rounds;
  Window hb, ref;  // all rounds together
  std::vector<double> hb_cores, ref_cores, ratios;
  double hb_cpu = 0, ref_cpu = 0, hb_self = 0;
  auto add = [](Window& into, Window& w) {
    into.seconds += w.seconds;
    into.poll_count += w.poll_rate * w.seconds;
    into.lat_ms.insert(into.lat_ms.end(), w.lat_ms.begin(), w.lat_ms.end());
    into.late += w.late;
    into.errors += w.errors;
    into.max_lag_ms = std::max(into.max_lag_ms, w.max_lag_ms);
    if (into.first_error.empty()) into.first_error = w.first_error;
  };
  for (int r = 0; r < rounds; ++r) {
    Window h = run_window(true, per_round);
    Window b = no_baseline ? Window{} : run_window(false, per_round);
    hb_cores.push_back(h.cores);
    hb_cpu += h.cores * h.seconds;
    hb_self += h.self_cores * h.seconds;
    std::printf("round %d: heartbeats %.3f cores at %.0f/s", r + 1, h.cores, h.rate);
    if (polls) std::printf(" (+ %.0f long-poll answers/s)", h.poll_rate);
    if (!no_baseline) {
      ref_cores.push_back(b.cores);
      ref_cpu += b.cores * b.seconds;
      ratios.push_back(b.cores > 0 ? h.cores / b.cores : 0);
      std::printf("; GET /healthz %.3f cores at %.0f/s; ratio %.2f", b.cores, b.rate, ratios.back());
    }
    std::printf("\n");
    std::fflush(stdout);
    add(hb, h);
    add(ref, b);
  }
  done = true;
  sampler.join();
  bench::Rss rss_after = ReadRssOf(pid);
  int64_t hwm = ReadVmHwmKb(pid);
  ProcStat final_stat = ReadProcStat(pid);
  // The long-polls run on until here: stop them before the report.
  int64_t poll_total = 0, poll_changed = 0, poll_errors = 0, poll_reconnects = 0;
  std::string poll_first_error;
  std::vector<double> overdue;
  if (polls) {
    polls->Stop();
    poll_total = polls->answers();
    poll_changed = polls->changed();
    poll_errors = polls->errors();
    poll_reconnects = polls->reconnects();
    poll_first_error = polls->first_error();
    overdue = polls->TakeOverdueMs();
  }

  const double cores = hb_cpu / hb.seconds;
  const double rate = static_cast<double>(hb.lat_ms.size()) / hb.seconds;
  const size_t sent = hb.lat_ms.size();
  auto pmax = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  const double hmax = pmax(hb.lat_ms);
  const double p50 = Pct(hb.lat_ms, 0.50), p99 = Pct(hb.lat_ms, 0.99);

  std::printf("\nbroker CPU: %.3f cores at %.0f heartbeats/s (goal < 1 core): %s; %.1f µs of broker CPU per heartbeat; "
              "median of rounds %.3f cores\n",
              cores, rate, cores < 1.0 ? "MET" : "NOT MET", rate > 0 ? cores / rate * 1e6 : 0.0,
              bench::Median(hb_cores));
  if (!no_baseline) {
    const double rcores = ref_cpu / ref.seconds;
    const double rrate = static_cast<double>(ref.lat_ms.size()) / ref.seconds;
    std::printf("reference: GET /healthz at the same rate, same connections: %.3f cores at %.0f req/s (%.1f µs per "
                "request); heartbeat/healthz CPU ratio %.2f (median of per-round ratios %.2f); errors %zu\n",
                rcores, rrate, rrate > 0 ? rcores / rrate * 1e6 : 0.0, rcores > 0 ? cores / rcores : 0.0,
                bench::Median(ratios), ref.errors);
    const double r50 = Pct(ref.lat_ms, 0.50), r99 = Pct(ref.lat_ms, 0.99);
    std::printf("reference latency: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", r50, r99, pmax(ref.lat_ms));
  }
  const std::string idle_what =
      polls ? "ticker + long-poll re-posts only: " + std::to_string(static_cast<long>(idle_poll_rate + 0.5)) +
                  " answers/s, " + std::to_string(agents) + " parked"
            : "ticker only";
  if (idle_cores > 0)
    std::printf("broker CPU idle (%s, %zu hosts, %.0f s before the load): %.4f cores%s\n", idle_what.c_str(), agents,
                ti1 - ti0, idle_cores,
                polls && idle_poll_rate > 0
                    ? (" = " + std::to_string(static_cast<int>(idle_cores / idle_poll_rate * 1e6 + 0.5)) +
                       " µs per long-poll answer + re-post")
                          .c_str()
                    : "");
  else
    std::printf("broker CPU idle (%s, %zu hosts, %.0f s before the load): 0 (under one %ld Hz clock tick)\n",
                idle_what.c_str(), agents, ti1 - ti0, sysconf(_SC_CLK_TCK));
  if (polls) {
    const double o50 = Pct(overdue, 0.50), o99 = Pct(overdue, 0.99);
    std::printf("long-polls: %" PRId64 " answers (%" PRId64 " changed), errors %" PRId64 ", reconnects %" PRId64
                "%s%s%s; %.0f answers/s during the heartbeat windows; unchanged answers came after their timeout + "
                "p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
                poll_total, poll_changed, poll_errors, poll_reconnects, poll_first_error.empty() ? "" : " (first: ",
                poll_first_error.c_str(), poll_first_error.empty() ? "" : ")",
                static_cast<double>(hb.poll_count) / hb.seconds, o50, o99, pmax(overdue));
  }
  std::printf("heartbeats: %zu sent in %.1f s, errors %zu%s%s; latency p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", sent,
              hb.seconds, hb.errors, hb.first_error.empty() ? "" : " (first: ",
              hb.first_error.empty() ? "" : (hb.first_error + ")").c_str(), p50, p99, hmax);
  std::printf("schedule: %zu of %zu heartbeats sent more than 1 ms late (max lag %.1f ms)\n", hb.late, sent,
              hb.max_lag_ms);
  std::printf("broker memory: empty %.1f MiB; %zu agents logged in %.1f MiB; enrolled %.1f MiB; during load peak %.1f "
              "MiB, after %.1f MiB (VmHWM %.1f MiB) => %.2f KiB per enrolled agent over the empty broker\n",
              MiB(rss_empty.total_kb), agents, MiB(rss_logged_in.total_kb), MiB(rss_enrolled.total_kb),
              MiB(peak_rss_kb.load()), MiB(rss_after.total_kb), MiB(hwm),
              static_cast<double>(rss_after.total_kb - rss_empty.total_kb) / static_cast<double>(agents));
  if (polls)
    std::printf("broker memory with the long-polls: after %zu first heartbeats %.1f MiB; with %zu long-polls parked "
                "%.1f MiB => %.2f KiB per parked long-poll connection\n",
                agents, MiB(rss_first_beat.total_kb), agents, MiB(rss_parked.total_kb),
                static_cast<double>(rss_parked.total_kb - rss_first_beat.total_kb) / static_cast<double>(agents));
  std::printf("broker RSS after the load: %s; %d threads\n", bench::FormatRss(rss_after).c_str(), final_stat.threads);
  std::printf("load generator CPU during the heartbeat windows (this process, same machine): %.3f cores\n",
              hb_self / hb.seconds);
  std::printf("machine: %s; load average: ", bench::MachineLine().c_str());
  {
    std::ifstream la("/proc/loadavg");
    std::string l;
    std::getline(la, l);
    std::printf("%s\n", l.c_str());
  }

  const size_t errors = hb.errors + ref.errors + static_cast<size_t>(poll_errors);
  broker.Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return errors == 0 ? 0 : 1;
}
