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
// and this load generator's own CPU (it shares the machine with the broker).
//
// Usage: bench_heartbeat [--grid build/grid] [--agents 10000] [--seconds 30]
//                        [--period 10] [--threads 4] [--connections 64]
//                        [--broker-threads 2] [--rounds 3] [--no-baseline]
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
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

}  // namespace

int main(int argc, char** argv) {
  std::string grid = "build/grid";
  size_t agents = 10'000;
  double seconds = 30, period = 10;
  int threads = 4, connections = 64, broker_threads = 2, rounds = 3;
  bool no_baseline = false;
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
    else {
      std::fprintf(stderr,
                   "usage: bench_heartbeat [--grid build/grid] [--agents 10000] [--seconds 30] [--period 10]\n"
                   "                       [--threads 4] [--connections 64] [--broker-threads 2] [--rounds 3]\n"
                   "                       [--no-baseline]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (agents == 0 || seconds <= 0 || period <= 0 || threads < 1 || connections < threads || rounds < 1) Die("bad options");
  signal(SIGPIPE, SIG_IGN);
  // Each HttpClient holds its own event loop (a few fds besides its socket):
  // raise the soft fd limit to the hard one for --connections in the
  // thousands (the broker child inherits it).
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

  // Idle window: one heartbeat period with no requests (the ticker's host check).
  ProcStat idle0 = ReadProcStat(pid);
  double ti0 = NowSeconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(period, 10.0)));
  ProcStat idle1 = ReadProcStat(pid);
  double ti1 = NowSeconds();
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
    double seconds = 0, cores = 0, rate = 0, self_cores = 0, max_lag_ms = 0;
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
    for (auto& t : ts) t.join();
    ProcStat s1 = ReadProcStat(pid);
    double self1 = SelfCpuSeconds();
    double w1 = NowSeconds();
    Window w;
    w.seconds = w1 - w0;
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
  if (idle_cores > 0)
    std::printf("broker CPU idle (ticker only, %zu hosts, %.0f s before the load): %.4f cores\n", agents, ti1 - ti0,
                idle_cores);
  else
    std::printf("broker CPU idle (ticker only, %zu hosts, %.0f s before the load): 0 (under one %ld Hz clock tick)\n",
                agents, ti1 - ti0, sysconf(_SC_CLK_TCK));
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

  const size_t errors = hb.errors + ref.errors;
  broker.Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return errors == 0 ? 0 : 1;
}
