// bench_start_latency: the time from `grid leases create` returning to the
// workload's first output line being visible to the renter
// (GET /v1/leases/{id}/logs), median of --rounds per broker heartbeat period
// (issue 3: "per runtime; goals < 0.1 s process, < 1.5 s podman").
//
// Real binaries only: `grid broker --dev --heartbeat H` and one
// `grid agent --simulate-gpus 1xRTX-4090 --runtime R` per runtime (needs root
// for the workload's namespaces and cgroups: skipped with a message
// otherwise). Each round: `grid leases create OFFER --image I -q -- sh -c
// 'echo …; exec sleep 600'` as a child process (I = host for the process
// runtime, the test image of scripts/make-test-image.sh for podman); from its
// return, GET the lease and its logs every --poll-ms until the lease is
// "running" and until the output is non-empty; then `grid leases stop` and
// wait for the offer to be back.
//
// Baseline, podman only, in the same run: `podman run --rm` of the same image
// and command, from the command's start to its first output line: what the
// container engine alone costs; the ratio is what going through the market
// (order, broker, agent, checks) adds.
//
// The agent learns of a new lease through its long-poll (POST
// /v1/agent/wait, answered the moment the lease is created), not at its next
// heartbeat, and ships a fresh workload's output every 20 ms, so the figure
// should not depend on the heartbeat period; run with the default (10 s) and
// a short one (0.2 s) to check.
//
// Usage: bench_start_latency [--grid build/grid] [--rounds 20]
//                            [--heartbeats 10,0.2] [--poll-ms 2]
//                            [--runtimes process,podman]
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "child_process.h"
#include "client/broker_client.h"

namespace json = boost::json;
using namespace grid;
using bench::NowSeconds;

namespace {

struct Failure {
  std::string what;
};

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs the grid CLI; throws Failure on a non-zero exit.
std::string Grid(const std::string& grid, const std::string& args) {
  std::string out;
  int rc = bench::RunCapture(bench::ShellQuote(grid) + " " + args, &out);
  if (rc != 0) throw Failure{"grid " + args + ": exit " + std::to_string(rc) + ": " + out.substr(0, 400)};
  return out;
}

json::value ParseJson(const std::string& text) {
  boost::system::error_code ec;
  // The CLI may print warnings to stderr first (RunCapture merges them): take
  // the JSON from its first '{'.
  size_t at = text.find('{');
  json::value v = json::parse(at == std::string::npos ? text : text.substr(at), ec);
  if (ec) throw Failure{"not JSON: " + text.substr(0, 200)};
  return v;
}

std::string Str(const json::value& v, const char* k) {
  const json::value* x = v.is_object() ? v.as_object().if_contains(k) : nullptr;
  if (!x) return "";
  if (x->is_string()) return std::string(x->get_string());
  return json::serialize(*x);
}

struct Round {
  double create_s = 0;   // the `grid leases create` command itself
  double running_s = 0;  // create returned -> state "running"
  double output_s = 0;   // create returned -> first output visible
};

constexpr const char* kPodmanImage = "localhost/grid-test:1";

std::string ImageFor(const std::string& runtime) { return runtime == "podman" ? kPodmanImage : "host"; }

// The baseline: `podman run` of the same command, start -> first line.
std::vector<double> MeasurePodmanRun(int rounds) {
  std::vector<double> out;
  for (int r = 0; r < rounds; ++r) {
    const std::string cmd = std::string("podman run --rm --pull never --runtime runc --ulimit nofile=1024:1024 "
                                        "--ulimit nproc=1024:1024 ") +
                            kPodmanImage + " sh -c 'echo first output line'";
    double t0 = NowSeconds();
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) throw Failure{"popen failed"};
    char line[256];
    bool got = fgets(line, sizeof line, p) != nullptr;
    double t1 = NowSeconds();
    while (fgets(line, sizeof line, p)) {
    }
    int rc = pclose(p);
    if (!got || rc != 0) throw Failure{"podman run failed (exit " + std::to_string(rc) + ")"};
    out.push_back(t1 - t0);
    std::printf("  podman run round %2d: first output after %.3f s\n", r + 1, t1 - t0);
    std::fflush(stdout);
  }
  return out;
}

std::vector<Round> Measure(const std::string& grid, const std::string& dir, const std::string& runtime,
                           double heartbeat_s, int rounds, int poll_ms) {
  std::string hb_name = std::to_string(static_cast<int>(heartbeat_s * 1000)) + "ms";
  std::string root = dir + "/" + runtime + "-hb" + hb_name;
  std::filesystem::create_directories(root);
  bench::ChildProcess broker, agent;
  auto url = bench::StartBroker(broker, grid, root + "/broker.db", heartbeat_s, 2, root + "/broker.log");
  if (!url.ok()) throw Failure{url.status().message()};
  setenv("GRID_BROKER", url->c_str(), 1);
  const std::string prov = "--key " + bench::ShellQuote(root + "/provider.key");
  const std::string renter = "--key " + bench::ShellQuote(root + "/renter.key");
  Grid(grid, "keys new --out " + bench::ShellQuote(root + "/provider.key"));
  Grid(grid, "keys new --out " + bench::ShellQuote(root + "/renter.key"));
  std::string token = Str(ParseJson(Grid(grid, prov + " provider join-token create --ttl 1h --json")), "token");
  Status st = agent.Start({grid, "agent", "--broker", *url, "--join-token", token, "--state-dir", root + "/agent",
                           "--simulate-gpus", "1xRTX-4090", "--runtime", runtime, "--geolocation", "DE"},
                          root + "/agent.log");
  if (!st.ok()) throw Failure{st.message()};
  if (auto l = agent.WaitForLine("enrolled", 30); !l.ok()) throw Failure{"agent: " + l.status().message()};
  json::value machines = ParseJson(Grid(grid, prov + " machines list --json"));
  std::string machine = Str(machines.as_object().at("machines").as_array().at(0), "id");
  Grid(grid, prov + " machines list-offer " + machine + " --price-gpu 0.35");
  Grid(grid, renter + " wallet faucet 1000");
  auto client = client::BrokerClient::Create(*url, root + "/renter.key");
  if (!client.ok()) throw Failure{client.status().message()};
  auto offer_id = [&]() -> std::string {
    const double deadline = NowSeconds() + 60;
    while (NowSeconds() < deadline) {
      json::value o = ParseJson(Grid(grid, "offers search --json"));
      const json::array& a = o.as_object().at("offers").as_array();
      if (!a.empty()) return Str(a.at(0), "id");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw Failure{"no offer came back within 60 s"};
  };

  // A random pause before each create, so the create does not fall at a
  // fixed phase of the agent's heartbeat (each round ends right after a
  // heartbeat shipped the output; without it every wait would be a whole period).
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> phase(0.0, heartbeat_s);
  std::vector<Round> out;
  std::string lease;
  for (int r = 0; r < rounds; ++r) {
    std::string offer = offer_id();
    std::this_thread::sleep_for(std::chrono::duration<double>(phase(rng)));
    const std::string cmd = renter + " leases create " + offer +
                            " --image " + ImageFor(runtime) + " -q -- sh -c 'echo first output line; exec sleep 600'";
    double t0 = NowSeconds();
    lease = Trim(Grid(grid, cmd));
    double t1 = NowSeconds();
    if (lease.empty() || lease.find_first_not_of("0123456789") != std::string::npos)
      throw Failure{"leases create printed \"" + lease + "\", not a lease id"};
    Round rd;
    rd.create_s = t1 - t0;
    const double deadline = t1 + 4 * heartbeat_s + 30;
    while (rd.output_s == 0 && NowSeconds() < deadline) {
      if (rd.running_s == 0) {
        auto l = (*client)->AuthCall("GET", "/v1/leases/" + lease);
        if (!l.ok()) throw Failure{l.status().message()};
        std::string state = Str(*l, "state");
        if (state == "running") rd.running_s = NowSeconds() - t1;
        else if (state != "pending" && state != "starting" && state != "created")
          throw Failure{"lease " + lease + " went to " + state + ": " + json::serialize(*l).substr(0, 300)};
      }
      auto g = (*client)->AuthCall("GET", "/v1/leases/" + lease + "/logs");
      if (!g.ok()) throw Failure{g.status().message()};
      if (!Str(*g, "data").empty()) rd.output_s = NowSeconds() - t1;
      else std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    }
    if (rd.output_s == 0) throw Failure{"lease " + lease + ": no output within the deadline"};
    if (rd.running_s == 0) rd.running_s = rd.output_s;  // both seen in the same poll
    std::printf("  %s, heartbeat %gs round %2d: lease %s running after %.3f s, first output after %.3f s (create took %.3f s)\n",
                runtime.c_str(), heartbeat_s, r + 1, lease.c_str(), rd.running_s, rd.output_s, rd.create_s);
    std::fflush(stdout);
    out.push_back(rd);
    Grid(grid, renter + " leases stop " + lease);
  }
  // Let the agent stop the last workload before it goes (a workload's init
  // outlives its agent by design, to be re-adopted).
  if (!lease.empty()) (void)agent.WaitForLine("stopping lease-" + lease + ":", 2 * heartbeat_s + 10);
  agent.Stop();
  broker.Stop();
  if (int n = bench::KillProcessesMatching(root + "/agent"); n > 0)
    std::printf("  (killed %d leftover workload process(es) under %s/agent)\n", n, root.c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string grid = "build/grid";
  int rounds = 20, poll_ms = 2;
  std::vector<double> heartbeats = {10, 0.2};
  std::vector<std::string> runtimes = {"process", "podman"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_start_latency: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--grid") grid = next();
    else if (a == "--rounds") rounds = std::stoi(next());
    else if (a == "--poll-ms") poll_ms = std::stoi(next());
    else if (a == "--runtimes") {
      runtimes.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) runtimes.push_back(x);
    }
    else if (a == "--heartbeats") {
      heartbeats.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) heartbeats.push_back(std::stod(x));
    } else {
      std::fprintf(stderr, "usage: bench_start_latency [--grid build/grid] [--rounds 20] [--heartbeats 10,0.2] "
                           "[--poll-ms 2] [--runtimes process,podman]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  if (geteuid() != 0) {
    std::printf("bench_start_latency: skipped: `grid agent --runtime process` runs workloads in their own namespaces "
                "and cgroups and needs root\n");
    return 0;
  }
  grid = std::filesystem::absolute(grid).string();
  bench::StopChildrenOnSignal();
  char tmpl[] = "/tmp/bench_start_latency.XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  chmod(dir.c_str(), 0711);  // workloads run as unprivileged uids below the agent's state dir
  setenv("GRID_HOME", (dir + "/home").c_str(), 1);
  setenv("GRID_KEY_PASSWORD", "bench-password", 1);
  setenv("GRID_SCRYPT_N", "4096", 1);
  std::printf("%d rounds per runtime and heartbeat period, logs polled every %d ms\n", rounds, poll_ms);
  std::vector<std::string> summary;
  int rc = 0;
  for (const std::string& runtime : runtimes) {
    const double goal_s = runtime == "podman" ? 1.5 : 0.1;
    double baseline_s = 0;
    if (runtime == "podman") {
      std::string out;
      if (bench::RunCapture("bash scripts/make-test-image.sh " + std::string(kPodmanImage), &out) != 0) {
        summary.push_back("podman: skipped: scripts/make-test-image.sh failed (run from the source dir, as root, "
                          "with podman installed): " + out.substr(0, 300));
        continue;
      }
      try {
        baseline_s = bench::Median(MeasurePodmanRun(rounds));
      } catch (const Failure& f) {
        summary.push_back("podman run baseline: FAILED: " + f.what);
        rc = 1;
        continue;
      }
    }
    for (double hb : heartbeats) {
      try {
        std::vector<Round> rs = Measure(grid, dir, runtime, hb, rounds, poll_ms);
        std::vector<double> out, run, create;
        for (const Round& r : rs) out.push_back(r.output_s), run.push_back(r.running_s), create.push_back(r.create_s);
        char line[768];
        int n = std::snprintf(line, sizeof line,
                              "%s, heartbeat %gs: create -> first output line median %.3f s (min %.3f, max %.3f); -> "
                              "running median %.3f s; `grid leases create` itself median %.3f s; goal < %.1f s: %s",
                              runtime.c_str(), hb, bench::Median(out), *std::min_element(out.begin(), out.end()),
                              *std::max_element(out.begin(), out.end()), bench::Median(run), bench::Median(create),
                              goal_s, bench::Median(out) < goal_s ? "MET" : "NOT MET");
        if (baseline_s > 0 && n > 0 && static_cast<size_t>(n) < sizeof line)
          std::snprintf(line + n, sizeof line - static_cast<size_t>(n),
                        "; baseline `podman run` -> first line median %.3f s, ratio %.2fx", baseline_s,
                        bench::Median(out) / baseline_s);
        summary.push_back(line);
      } catch (const Failure& f) {
        bench::KillProcessesMatching(dir + "/" + runtime + "-hb");  // workloads left by the agent
        summary.push_back(runtime + ", heartbeat " + std::to_string(hb) + "s: FAILED: " + f.what + " (files in " +
                          dir + ")");
        rc = 1;
      }
    }
  }
  std::printf("\n");
  for (const auto& s : summary) std::printf("%s\n", s.c_str());
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  if (rc == 0) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
