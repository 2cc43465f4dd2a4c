// bench_pg_settle: durable settlement transfers per second on the PostgreSQL
// store (issue 7: "durable settlement transfers/s on PostgreSQL against
// pgbench TPC-B on the same server in the same run; goal >= 1.0x").
//
// One throwaway PostgreSQL 15 cluster serves both sides: initdb in a temp
// dir (as the postgres user when we are root), 127.0.0.1 on a free port,
// fsync=on, synchronous_commit=on, defaults otherwise — the recipe of
// scripts/pg-test-cluster.sh and bench_ledger's baseline.
//
// Ours: what the broker really does. A real broker::Broker
// (BrokerOptions{dev = true, fee_bps = 250}, 60 s tick, a ManualClock) on
// store::OpenPostgresStore("postgres://postgres@127.0.0.1:PORT/grid") — a
// Shared() store, so every commit is a numbered change-log entry (change_head
// row moved, change_log row, pg_notify) exactly as a replica commits.
// Populated through the broker's commands: RegisterMachine (spec decoded by
// api::DecodeMachineSpec, as the HTTP route does), ListOffer, Faucet,
// CreateLease with EIP-712 orders signed by real secp256k1 keys,
// ReportLease(running). Default 1,000 one-GPU leases on 125 eight-GPU
// machines, 5 per renter. A round, for --seconds of wall time, advances the
// clock by the tick and calls Broker::SettleAll(), which commits up to 256
// lease settlements per SERIALIZABLE transaction. What a round made durable is
// read back from the store: transfers = ForEachTransfer count after - before;
// lease-settlements = sum of the stored leases' `settlements` after - before;
// commits = the broker's commit counter. At the end Broker::Audit() and the
// stored leases compared with the broker's.
// --followers N: N more brokers on the same database, each following the
// leader's commits (Broker::FollowChanges in a loop, as `grid broker`'s
// watcher thread does): the cost of replicas to the writer, on the same
// 2 cores.
//
// Baseline: `pgbench -i -s 1` in the cluster's `postgres` database, then
// rounds of `pgbench -c C -j 2 -T N` (C = --clients, default 2) and
// `pgbench -c 1 -T N`, alternating with ours (order rotating each round).
//
// Also printed per round, to say where the time goes: CPU seconds of this
// process and of the PostgreSQL server processes (the postmaster's
// children) per wall second, and the WAL written per commit / per TPC-B
// transaction (pg_current_wal_lsn before and after).
//
// Usage: bench_pg_settle [--rounds 3] [--seconds 10] [--leases 1000]
//                        [--faucet 3] [--clients 2] [--followers 0]
//                        [--dir /tmp] [--no-baseline]
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/codec.h"
#include "bench_util.h"
#include "broker/broker.h"
#include "core/clock.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "ledger/ledger.h"
#include "market/types.h"
#include "store/store.h"

namespace fs = std::filesystem;
using namespace grid;
using bench::Median;
using bench::NowSeconds;
using bench::RunCapture;
using bench::ShellQuote;

namespace {

volatile sig_atomic_t g_interrupted = 0;
void OnSignal(int) { g_interrupted = 1; }

// What Die() cleans up, since std::exit runs no destructors of main's locals.
std::function<void()> g_on_die;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "bench_pg_settle: %s\n", msg.c_str());
  if (auto f = std::move(g_on_die)) f();
  std::exit(1);
}

struct Options {
  int rounds = 3;
  double seconds = 10;
  int leases = 1000;
  int faucet = 3;
  int clients = 2;
  int followers = 0;
  std::string dir;
  bool baseline = true;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  const char* tmp = std::getenv("TMPDIR");
  o.dir = tmp && *tmp ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--rounds") o.rounds = std::atoi(next().c_str());
    else if (a == "--seconds") o.seconds = std::atof(next().c_str());
    else if (a == "--leases") o.leases = std::atoi(next().c_str());
    else if (a == "--faucet") o.faucet = std::atoi(next().c_str());
    else if (a == "--clients") o.clients = std::atoi(next().c_str());
    else if (a == "--followers") o.followers = std::atoi(next().c_str());
    else if (a == "--dir") o.dir = next();
    else if (a == "--no-baseline") o.baseline = false;
    else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_pg_settle [--rounds N] [--seconds S] [--leases L] [--faucet F] [--clients C]\n"
                  "                       [--followers N] [--dir DIR] [--no-baseline]\n"
                  "  Broker::SettleAll on the PostgreSQL store vs pgbench TPC-B (-c C -j 2, and -c 1) on the\n"
                  "  same throwaway cluster (fsync=on, synchronous_commit=on), alternating rounds\n");
      std::exit(0);
    } else Die("unknown option " + a);
  }
  if (o.rounds < 1 || o.seconds <= 0 || o.leases < 1 || o.faucet < 1 || o.clients < 1 || o.followers < 0)
    Die("--rounds, --seconds, --leases, --faucet and --clients must be positive, --followers >= 0");
  return o;
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(*r);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// ------------------------------------------------------------------ CPU accounting

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// utime+stime of `pid` and its children that exited (cutime, cstime are not
// summed: backends of pgbench's connections are still alive when read).
double ProcCpuSeconds(int pid, int* ppid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(in, s);
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream f(s.substr(close + 2));
  std::string state;
  long long pp = 0, skip = 0, ut = 0, st = 0;
  f >> state >> pp;
  for (int i = 0; i < 9; ++i) f >> skip;  // pgrp .. cmajflt
  f >> ut >> st;
  if (ppid) *ppid = static_cast<int>(pp);
  return double(ut + st) / sysconf(_SC_CLK_TCK);
}

// CPU seconds of the postmaster and its children alive now, plus a running
// total of children that were seen and have gone (pgbench's backends come and
// go between rounds, so each measurement window reads live processes only).
double ServerCpuSeconds(int postmaster) {
  double total = ProcCpuSeconds(postmaster, nullptr);
  DIR* d = opendir("/proc");
  if (!d) return total;
  while (dirent* e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == postmaster) continue;
    int ppid = 0;
    double c = ProcCpuSeconds(pid, &ppid);
    if (ppid == postmaster) total += c;
  }
  closedir(d);
  return total;
}

// ------------------------------------------------------------------ PostgreSQL

const char* kPgBin = "/usr/lib/postgresql/15/bin";

int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind: " + std::string(std::strerror(errno)));
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

class PgCluster {
 public:
  ~PgCluster() { Stop(); }

  bool Start(const std::string& base) {
    dir_ = base + "/pg";
    data_ = dir_ + "/data";
    fs::create_directories(dir_);
    if (geteuid() == 0) {
      passwd* pw = getpwnam("postgres");
      if (!pw) {
        std::printf("no postgres user to run PostgreSQL as (we are root)\n");
        return false;
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) return false;
      as_ = "runuser -u postgres -- ";
    }
    std::string out;
    // --no-sync only makes initdb skip its own final flush; the server runs with fsync=on.
    if (RunCapture(as_ + kPgBin + "/initdb -D " + ShellQuote(data_) +
                       " -U postgres -A trust -E UTF8 --locale=C --no-sync",
                   &out) != 0) {
      std::printf("initdb failed:\n%s\n", out.c_str());
      return false;
    }
    port_ = FreePort();
    std::string opts = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) +
                       " -c unix_socket_directories=" + dir_ + " -c fsync=on -c synchronous_commit=on";
    if (RunCapture(as_ + kPgBin + "/pg_ctl -D " + ShellQuote(data_) + " -l " + ShellQuote(dir_ + "/server.log") +
                       " -w -t 60 -o " + ShellQuote(opts) + " start",
                   &out) != 0) {
      std::printf("pg_ctl start failed:\n%s\n", out.c_str());
      return false;
    }
    started_ = true;
    std::ifstream pidf(data_ + "/postmaster.pid");
    pidf >> pid_;
    std::printf("cluster: %s, postmaster pid %d, 127.0.0.1:%d\n", data_.c_str(), pid_, port_);
    std::printf("cluster settings: %s\n",
                Sql("postgres", "select string_agg(name || '=' || setting, ' ' order by name) from pg_settings where "
                                "name in ('fsync','synchronous_commit','wal_sync_method','full_page_writes',"
                                "'shared_buffers','commit_delay','server_version','max_connections')")
                    .c_str());
    if (RunCapture(as_ + kPgBin + "/pgbench " + Conn("postgres") + " -i -s 1 -q", &out) != 0) {
      std::printf("pgbench -i failed:\n%s\n", out.c_str());
      return false;
    }
    std::printf("baseline: pgbench -i -s 1 done (database postgres); ours: database grid\n");
    return true;
  }

  std::string Url(const std::string& db) const {
    return "postgres://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  int postmaster() const { return pid_; }

  // One query's unaligned output.
  std::string Sql(const std::string& db, const std::string& sql) const {
    std::string out;
    RunCapture(as_ + kPgBin + "/psql -X " + Conn(db) + " -Atc " + ShellQuote(sql), &out);
    return Trim(out);
  }
  std::string Lsn() const { return Sql("postgres", "select pg_current_wal_lsn()"); }
  double WalSince(const std::string& lsn) const {
    return std::atof(Sql("postgres", "select pg_wal_lsn_diff(pg_current_wal_lsn(), '" + lsn + "')").c_str());
  }

  struct PgbenchResult {
    double tps = 0, wal_per_tx = 0, seconds = 0, self_cpu = 0, server_cpu = 0, client_cpu = 0;
  };
  std::optional<PgbenchResult> Pgbench(int clients, double seconds) {
    std::string out;
    std::string lsn = Lsn();
    int secs = std::max(1, static_cast<int>(seconds + 0.5));
    std::string cmd = as_ + kPgBin + "/pgbench " + Conn("postgres") + " -c " + std::to_string(clients) + " -j " +
                      std::to_string(std::min(clients, 2)) + " -T " + std::to_string(secs);
    PgbenchResult r;
    rusage c0{}, c1{};
    getrusage(RUSAGE_CHILDREN, &c0);
    double s0 = ServerCpuSeconds(pid_), t0 = NowSeconds();
    // The server's backends for pgbench exit when it does: sample their CPU
    // just before (a sampler thread, every 100 ms, keeps the last reading).
    std::atomic<bool> done{false};
    std::atomic<double> last_server{s0};
    std::thread sampler([&] {
      while (!done) {
        last_server = ServerCpuSeconds(pid_);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    int rc = RunCapture(cmd, &out);
    done = true;
    sampler.join();
    r.seconds = NowSeconds() - t0;
    getrusage(RUSAGE_CHILDREN, &c1);
    auto secs_of = [](const rusage& u) {
      return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    };
    r.client_cpu = secs_of(c1) - secs_of(c0);
    r.server_cpu = last_server - s0;
    if (rc != 0) {
      std::printf("pgbench failed:\n%s\n", out.c_str());
      return std::nullopt;
    }
    auto p = out.find("tps = ");
    if (p == std::string::npos) return std::nullopt;
    r.tps = std::atof(out.c_str() + p + 6);
    auto q = out.find("actually processed: ");
    double txs = q == std::string::npos ? 0 : std::atof(out.c_str() + q + 20);
    if (txs > 0) r.wal_per_tx = WalSince(lsn) / txs;
    return r;
  }

  void Stop() {
    if (!started_) return;
    started_ = false;
    std::string out;
    if (RunCapture(as_ + kPgBin + "/pg_ctl -D " + ShellQuote(data_) + " -m fast -w -t 30 stop", &out) != 0) {
      std::printf("pg_ctl stop failed (%s); sending SIGTERM to postmaster %d\n", out.c_str(), pid_);
      if (pid_ > 0) ::kill(pid_, SIGTERM);
      sleep(2);
    } else {
      std::printf("cluster stopped (postmaster %d)\n", pid_);
    }
  }

 private:
  std::string Conn(const std::string& db) const {
    return "-h 127.0.0.1 -p " + std::to_string(port_) + " -U postgres " + db;
  }

  std::string dir_, data_, as_;
  int port_ = 0;
  int pid_ = 0;
  bool started_ = false;
};

// ------------------------------------------------------------------ ours

std::string ProviderAddress(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%040x", 0x20000000 + i);
  return buf;
}

// A real broker on the PostgreSQL store, populated through its commands,
// every lease running. Rounds call SettleAll() on virtual time.
class BrokerBench {
 public:
  static constexpr int kGpusPerMachine = 8;
  static constexpr int kLeasesPerRenter = 5;
  static constexpr Micros kPricePerGpuHour = 2'500'000;  // 2.50 USD

  BrokerBench(const Options& opt, PgCluster* pg) : opt_(opt), pg_(pg) {
    bo_.dev = true;
    bo_.fee_bps = 250;
    bo_.chain_id = 31337;
  }
  ~BrokerBench() { StopFollowers(); }

  int machines() const { return (opt_.leases + kGpusPerMachine - 1) / kGpusPerMachine; }
  int renters() const { return (opt_.leases + kLeasesPerRenter - 1) / kLeasesPerRenter; }

  void Open(const std::string& url) {
    std::vector<crypto::PrivateKey> keys;
    std::vector<std::string> renters;
    for (int i = 0; i < this->renters(); ++i) {
      keys.push_back(Must(crypto::GeneratePrivateKey(), "key"));
      renters.push_back(crypto::AddressOf(keys.back()).ToLowerHex());
    }
    double t0 = NowSeconds();
    auto st = Must(store::OpenPostgresStore(url), "open postgres");
    store_ = st.get();
    if (!store_->Shared()) Die("the PostgreSQL store is not Shared(): no change log to measure");
    broker_ = Must(broker::Broker::Open(std::move(st), &clock_, bo_), "open broker");
    if (!broker_->CheckLeadership()) Die("the broker did not get the leadership");

    std::vector<int64_t> machine_ids;
    for (int i = 0; i < machines(); ++i) {
      char json[512];
      std::snprintf(json, sizeof json,
                    R"({"gpu_name":"H100 SXM 80GB","num_gpus":%d,"gpu_ram":80,"cpu_cores":128,"cpu_ram":1024,)"
                    R"("disk_space":4000,"inet_up":10000,"inet_down":10000,"geolocation":"DE","datacenter":true,)"
                    R"("cuda_vers":12.4,"driver_version":"550.54.15","host_tag":"rack-%d"})",
                    kGpusPerMachine, i / 40);
      auto spec = Must(api::DecodeMachineSpec(json), "spec");
      auto mv = Must(broker_->RegisterMachine(ProviderAddress(i), std::move(spec.spec), std::move(spec.canonical_json)),
                     "register machine");
      market::ListOfferRequest req;
      req.machine_id = mv.machine.id;
      req.price_per_gpu_hour = kPricePerGpuHour;
      req.min_chunk = 1;
      Must(broker_->ListOffer(ProviderAddress(i), req), "list offer");
      machine_ids.push_back(mv.machine.id);
    }
    for (size_t r = 0; r < renters.size(); ++r)
      for (int k = 0; k < opt_.faucet; ++k)
        Must(broker_->Faucet(renters[r], bo_.faucet_max, "bench-" + std::to_string(k)), "faucet");

    std::vector<std::pair<std::string, int64_t>> created;
    for (int j = 0; j < opt_.leases; ++j) {
      const int m = j / kGpusPerMachine;
      const size_t r = static_cast<size_t>(j % this->renters());
      market::CreateLeaseRequest req;
      req.offer_id = machine_ids[static_cast<size_t>(m)] * market::kOfferIdBase + 1;
      req.gpus = 1;
      req.image = "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime";
      req.env = {"WANDB_MODE=offline", "RUN_ID=" + std::to_string(j)};
      req.command = {"torchrun", "--nproc-per-node=1", "train.py", "--config", "cfg.yaml"};
      crypto::LeaseOrder order{static_cast<uint64_t>(req.offer_id), 1, kPricePerGpuHour, static_cast<uint64_t>(j + 1),
                               clock_.NowMs() / 1000 + 3600};
      auto sig = Must(crypto::SignDigest(keys[r], crypto::LeaseOrderDigest(order, bo_.chain_id)), "sign");
      req.order = market::SignedOrder{req.offer_id, 1, order.price_per_hour_micros, order.nonce, order.expiry_unix_s,
                                      "0x" + crypto::HexEncode(sig, false)};
      auto lease = Must(broker_->CreateLease(renters[r], std::move(req)), "create lease");
      created.emplace_back(lease.provider, lease.id);
    }
    clock_.AdvanceMs(1000);
    for (auto& [provider, id] : created)
      Must(broker_->ReportLease(provider, id, market::LeaseState::kRunning, "started"), "report running");
    auto stats = broker_->GetStats();
    if (stats.leases_active != opt_.leases) Die("not every lease is active after setup");
    std::printf("ours: %s, Broker{dev, fee_bps=250, tick 60 s}, replicated (numbered commits); %d machines x %d "
                "GPUs, %d one-GPU leases running, %d renters (%d leases each) funded %d x %.0f USD; setup %.1f s, "
                "%" PRId64 " commits (%.0f commits/s one command each), change-log head %" PRId64 "\n",
                store_->Describe().c_str(), machines(), kGpusPerMachine, opt_.leases, this->renters(),
                kLeasesPerRenter, opt_.faucet, bo_.faucet_max / double(kMicrosPerUnit), NowSeconds() - t0,
                stats.commits, stats.commits / (NowSeconds() - t0), broker_->AppliedSeq());

    for (int f = 0; f < opt_.followers; ++f) {
      auto fst = Must(store::OpenPostgresStore(url), "open follower store");
      followers_.push_back(Must(broker::Broker::Open(std::move(fst), &clock_, bo_), "open follower broker"));
    }
    for (auto& fb : followers_) {
      broker::Broker* b = fb.get();
      follower_threads_.emplace_back([this, b] {
        while (!stop_followers_) {
          Status s = b->FollowChanges(500);
          if (!s.ok()) {
            std::fprintf(stderr, "follower: %s\n", s.ToString().c_str());
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
          }
        }
      });
    }
    if (!followers_.empty())
      std::printf("ours: %d follower broker(s) on the same database, each a thread calling FollowChanges(500) in a "
                  "loop (as grid broker's watcher)\n",
                  opt_.followers);
  }

  void StopFollowers() {
    stop_followers_ = true;
    for (auto& t : follower_threads_) t.join();
    follower_threads_.clear();
  }

  struct Counts {
    int64_t transfers = 0, settlements = 0, commits = 0, commit_failures = 0, active = 0;
  };
  Counts Read() {
    Counts c;
    if (Status s = store_->ForEachTransfer([&](const ledger::Transfer&) {
          ++c.transfers;
          return true;
        });
        !s.ok())
      Die("ForEachTransfer: " + s.ToString());
    auto snap = Must(store_->Load(), "load");
    for (const auto& l : snap.leases) {
      c.settlements += l.settlements;
      if (l.active()) ++c.active;
    }
    auto st = broker_->GetStats();
    c.commits = st.commits;
    c.commit_failures = st.commit_failures;
    return c;
  }

  struct RoundResult {
    double seconds = 0, self_cpu = 0, server_cpu = 0, wal_bytes = 0;
    int64_t calls = 0, transfers = 0, settlements = 0, commits = 0, commit_failures = 0;
    double per_s(double n) const { return n / seconds; }
  };
  Result<RoundResult> Round(double seconds) {
    Counts before = Read();
    std::string lsn = pg_->Lsn();
    RoundResult r;
    double c0 = SelfCpuSeconds(), s0 = ServerCpuSeconds(pg_->postmaster());
    double start = NowSeconds(), end = start + seconds, now = start;
    while (now < end && !g_interrupted) {
      clock_.AdvanceMs(bo_.tick_ms);
      GRID_RETURN_IF_ERROR(broker_->SettleAll());
      ++r.calls;
      now = NowSeconds();
    }
    r.seconds = now - start;
    r.self_cpu = SelfCpuSeconds() - c0;
    r.server_cpu = ServerCpuSeconds(pg_->postmaster()) - s0;
    r.wal_bytes = pg_->WalSince(lsn);
    Counts after = Read();
    r.transfers = after.transfers - before.transfers;
    r.settlements = after.settlements - before.settlements;
    r.commits = after.commits - before.commits;
    r.commit_failures = after.commit_failures - before.commit_failures;
    if (after.active != opt_.leases)
      return Internal(std::to_string(opt_.leases - after.active) + " leases ended; fund the renters more (--faucet)");
    total_.calls += r.calls;
    total_.transfers += r.transfers;
    total_.settlements += r.settlements;
    total_.commits += r.commits;
    total_.commit_failures += r.commit_failures;
    total_.seconds += r.seconds;
    return r;
  }
  const RoundResult& total() const { return total_; }

  Status Verify() {
    GRID_ASSIGN_OR_RETURN(ledger::AuditReport rep, broker_->Audit());
    if (!rep.ok()) return Internal("audit: " + rep.failures.front());
    GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store_->Load());
    for (const auto& l : snap.leases) {
      GRID_ASSIGN_OR_RETURN(market::Lease mine, broker_->GetLease(l.renter, l.id));
      if (l.settlements != mine.settlements || l.charged != mine.charged || l.held != mine.held)
        return Internal("stored lease differs: " + std::to_string(l.id));
    }
    // Followers caught up to the same head and the same balances.
    for (auto& fb : followers_) {
      GRID_RETURN_IF_ERROR(fb->Sync());
      if (fb->AppliedSeq() != broker_->AppliedSeq())
        return Internal("a follower is at " + std::to_string(fb->AppliedSeq()) + ", the leader at " +
                        std::to_string(broker_->AppliedSeq()));
      for (const auto& l : snap.leases) {
        ledger::Balance a = fb->GetBalance(l.renter), b = broker_->GetBalance(l.renter);
        if (a.available != b.available || a.held != b.held || a.earned != b.earned)
          return Internal("a follower's balance of " + l.renter + " differs");
      }
    }
    return Status::Ok();
  }

  int64_t head() const { return broker_->AppliedSeq(); }

 private:
  Options opt_;
  PgCluster* pg_;
  broker::BrokerOptions bo_;
  ManualClock clock_{1'780'000'000'000};
  store::Store* store_ = nullptr;
  std::unique_ptr<broker::Broker> broker_;
  std::vector<std::unique_ptr<broker::Broker>> followers_;
  std::vector<std::thread> follower_threads_;
  std::atomic<bool> stop_followers_{false};
  RoundResult total_;
};

std::string List(const std::vector<double>& v, const char* fmt = "%.2f") {
  std::string out;
  char b[32];
  for (double x : v) {
    std::snprintf(b, sizeof b, fmt, x);
    out += (out.empty() ? "" : " ") + std::string(b);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = ParseArgs(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  std::string tmpl = opt.dir + "/gridbench-pgsettle-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) Die("mkdtemp in " + opt.dir + ": " + std::strerror(errno));
  const std::string base = buf.data();
  ::chmod(base.c_str(), 0755);  // the postgres user must reach base/pg
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{base};

  std::printf("bench_pg_settle: durable settlement transfers/s via Broker::SettleAll on the PostgreSQL store vs "
              "pgbench TPC-B, one cluster, same run\n");
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::string fstype, load;
  RunCapture("stat -f -c %T " + ShellQuote(base), &fstype);
  RunCapture("cut -d' ' -f1-3 /proc/loadavg", &load);
  std::printf("dir: %s (fs %s); loadavg %s\n", base.c_str(), Trim(fstype).c_str(), Trim(load).c_str());
  std::printf("rounds: %d x %.0f s each; leases: %d; pgbench -c %d -j %d and -c 1; followers: %d\n", opt.rounds,
              opt.seconds, opt.leases, opt.clients, std::min(opt.clients, 2), opt.followers);

  // A scope so the brokers (and their connections) go before the cluster stops.
  auto pg = std::make_unique<PgCluster>();
  g_on_die = [&pg, base] {
    pg.reset();  // pg_ctl stop (fast: cuts our brokers' connections)
    std::error_code ec;
    fs::remove_all(base, ec);
  };
  if (!pg->Start(base)) Die("no PostgreSQL cluster");
  bool ok = true;
  {
    if (pg->Sql("postgres", "CREATE DATABASE grid") != "CREATE DATABASE" &&
        pg->Sql("postgres", "select 1 from pg_database where datname = 'grid'") != "1")
      Die("CREATE DATABASE grid failed");
    BrokerBench ours(opt, pg.get());
    ours.Open(pg->Url("grid"));
    {
      auto warm = ours.Round(0.001);
      if (!warm.ok()) Die("ours: " + warm.status().ToString());
      std::printf("ours: warm-up SettleAll x %" PRId64 ": %" PRId64 " lease-settlements, %" PRId64
                  " transfers (%.2f per settlement), %" PRId64 " commits (%.0f settlements per commit), %.0f ms\n",
                  warm->calls, warm->settlements, warm->transfers,
                  warm->settlements ? double(warm->transfers) / warm->settlements : 0.0, warm->commits,
                  warm->commits ? double(warm->settlements) / warm->commits : 0.0, warm->seconds * 1e3);
    }

    // Rows written in our database per table over all rounds (pg_stat_user_tables; flushed by the
    // backends at most once a second, hence the pause before reading).
    const std::string kTableRows =
        "select string_agg(relname || ':' || (n_tup_ins + n_tup_upd + n_tup_del), ' ' order by relname) from "
        "pg_stat_user_tables where n_tup_ins + n_tup_upd + n_tup_del > 0";
    sleep(2);
    const std::string rows_before = pg->Sql("grid", kTableRows);
    const int64_t settlements_before = ours.total().settlements;
    std::vector<double> xfer, settle, commit, pgc, pg1, rx, rs, rx1;
    const int kinds = opt.baseline ? 3 : 1;
    for (int r = 0; r < opt.rounds && !g_interrupted; ++r) {
      size_t n_ours = xfer.size(), nc = pgc.size(), n1 = pg1.size();
      for (int k = 0; k < kinds && !g_interrupted; ++k) {
        int which = (r + k) % kinds;
        if (which == 0) {
          auto res = ours.Round(opt.seconds);
          if (!res.ok()) Die("ours: " + res.status().ToString());
          xfer.push_back(res->per_s(res->transfers));
          settle.push_back(res->per_s(res->settlements));
          commit.push_back(res->per_s(res->commits));
          std::printf("round %d  ours (SettleAll, postgres)  %7.0f transfers/s  (%.0f lease-settlements/s, %.1f "
                      "commits/s, %.2f SettleAll/s; %.0f ms/commit; %.0f KiB WAL/commit; CPU s per wall s: "
                      "bench %.2f, server %.2f%s)\n",
                      r + 1, xfer.back(), settle.back(), commit.back(), res->per_s(res->calls),
                      res->commits ? res->seconds * 1e3 / res->commits : 0.0,
                      res->commits ? res->wal_bytes / 1024 / res->commits : 0.0, res->self_cpu / res->seconds,
                      res->server_cpu / res->seconds,
                      res->commit_failures ? "; COMMIT FAILURES, fell back to one lease per commit" : "");
        } else {
          int clients = which == 1 ? opt.clients : 1;
          auto res = pg->Pgbench(clients, opt.seconds);
          if (!res) continue;
          (which == 1 ? pgc : pg1).push_back(res->tps);
          std::printf("round %d  pgbench TPC-B -c %d -j %d            %7.0f tps  (%.1f KiB WAL/tx; CPU s per wall "
                      "s: pgbench %.2f, server %.2f)\n",
                      r + 1, clients, std::min(clients, 2), res->tps, res->wal_per_tx / 1024,
                      res->client_cpu / res->seconds, res->server_cpu / res->seconds);
        }
      }
      if (xfer.size() > n_ours && pgc.size() > nc) {
        rx.push_back(xfer.back() / pgc.back());
        rs.push_back(settle.back() / pgc.back());
      }
      if (xfer.size() > n_ours && pg1.size() > n1) rx1.push_back(xfer.back() / pg1.back());
    }
    if (g_interrupted) std::printf("interrupted\n");
    ours.StopFollowers();
    sleep(2);
    {
      // Per table: rows inserted + updated + deleted per lease-settlement during the rounds.
      auto parse = [](const std::string& text) {
        std::vector<std::pair<std::string, double>> out;
        std::istringstream in(text);
        std::string item;
        while (in >> item) {
          auto c = item.rfind(':');
          if (c != std::string::npos) out.emplace_back(item.substr(0, c), std::atof(item.c_str() + c + 1));
        }
        return out;
      };
      auto before = parse(rows_before), after = parse(pg->Sql("grid", kTableRows));
      const double n = double(ours.total().settlements - settlements_before);
      std::string line;
      double sum = 0;
      for (const auto& [table, v] : after) {
        double b = 0;
        for (const auto& [t2, v2] : before)
          if (t2 == table) b = v2;
        if (v - b <= 0 || n <= 0) continue;
        char part[96];
        std::snprintf(part, sizeof part, "%s%s %.2f", line.empty() ? "" : ", ", table.c_str(), (v - b) / n);
        line += part;
        sum += (v - b) / n;
      }
      std::printf("ours: rows written (inserted+updated+deleted) per lease-settlement during the rounds: %.1f (%s)\n",
                  sum, line.c_str());
    }

    const auto& t = ours.total();
    double vs = NowSeconds();
    Status v = ours.Verify();
    ok = v.ok();
    std::printf("ours: %" PRId64 " SettleAll calls, %" PRId64 " lease-settlements, %" PRId64
                " transfers (%.2f per settlement), %" PRId64 " commits (%.1f settlements per commit), %" PRId64
                " commit failures, change-log head %" PRId64 "; Broker::Audit + stored-vs-broker leases%s: %s (%.1f s)\n",
                t.calls, t.settlements, t.transfers, t.settlements ? double(t.transfers) / t.settlements : 0.0,
                t.commits, t.commits ? double(t.settlements) / t.commits : 0.0, t.commit_failures, ours.head(),
                opt.followers ? " + followers caught up" : "", v.ok() ? "ok" : v.ToString().c_str(),
                NowSeconds() - vs);

    std::printf("\nper round  transfers/s:          %s\n", List(xfer, "%.0f").c_str());
    std::printf("per round  lease-settlements/s:  %s\n", List(settle, "%.0f").c_str());
    std::printf("per round  commits/s:            %s\n", List(commit, "%.1f").c_str());
    if (!pgc.empty()) std::printf("per round  pgbench -c %d tps:     %s\n", opt.clients, List(pgc, "%.0f").c_str());
    if (!pg1.empty()) std::printf("per round  pgbench -c 1 tps:     %s\n", List(pg1, "%.0f").c_str());
    double mx = Median(xfer), ms = Median(settle);
    std::printf("\nmedian  ours  %8.0f transfers/s  %8.0f lease-settlements/s  %6.1f commits/s\n", mx, ms,
                Median(commit));
    if (!pgc.empty()) {
      double m = Median(pgc);
      std::printf("median  pgbench -c %d -j %d  %8.0f tps (TPC-B: one debit/credit transaction each)\n", opt.clients,
                  std::min(opt.clients, 2), m);
      std::printf("ratio   transfers/s / tps(-c %d)         = %6.2f  (median of per-round ratios %.2f; %s)  goal >= "
                  "1.0 %s\n",
                  opt.clients, mx / m, Median(rx), List(rx).c_str(), mx / m >= 1.0 ? "met" : "NOT met");
      std::printf("ratio   lease-settlements/s / tps(-c %d) = %6.2f  (median of per-round ratios %.2f; %s)  stricter\n",
                  opt.clients, ms / m, Median(rs), List(rs).c_str());
    }
    if (!pg1.empty())
      std::printf("ratio   transfers/s / tps(-c 1)         = %6.2f  (median of per-round ratios %.2f)\n",
                  mx / Median(pg1), Median(rx1));
  }
  RunCapture("cut -d' ' -f1-3 /proc/loadavg", &load);
  std::printf("loadavg at the end %s; machine: %s\n", Trim(load).c_str(), bench::MachineLine().c_str());
  g_on_die = nullptr;
  pg.reset();
  return ok ? 0 : 1;
}
