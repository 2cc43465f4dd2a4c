// bench_ledger: durable settlement commits per second on the SQLite store,
// against PostgreSQL 15's pgbench TPC-B (fsync on) measured in the same run.
//
// Ours: one store::Commit() per settlement tick of one running lease, exactly
// as Broker::SettleAll() builds it: market::Settle() on the lease (release +
// earn + fee + hold top-up transfers), ledger::Ledger::Check()/Preview() for
// the touched accounts, the lease upsert; then Ledger::Apply(). The store is a
// fresh SQLite file opened with store::OpenSqliteStore (WAL,
// synchronous=FULL: one fsync per commit, as in production). One writer, as
// the broker serialises commits. Ticks go round-robin over --leases running
// leases, each with its own renter and provider, on virtual time (a tick is
// 60 s later than the lease's last), so every commit moves real money.
//
// Baseline: a throwaway PostgreSQL 15 cluster (initdb in a temp dir, run as
// the postgres user when we are root, 127.0.0.1 on a free port, fsync=on,
// synchronous_commit=on, defaults otherwise), `pgbench -i -s 1`, then rounds
// of `pgbench -c 2 -j 2 -T N` and `pgbench -c 1 -T N`. Rounds alternate with
// ours (the order rotates every round). Medians and ratios at the end. The
// cluster is stopped with pg_ctl (its postmaster PID as fallback) and the
// temp dir removed, also after Ctrl-C.
//
// A fourth contender (--group K, default 8; 1 turns it off) commits K lease
// ticks per transaction: what a broker that coalesced its commits (group
// commit) would reach. It is printed apart and never enters the ratio.
//
// Usage: bench_ledger [--rounds 5] [--seconds 3] [--leases 1000] [--dir /tmp]
//                     [--group 8] [--no-baseline]
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "ledger/ledger.h"
#include "market/billing.h"
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

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "bench_ledger: %s\n", msg.c_str());
  std::exit(1);
}

struct Options {
  int rounds = 5;
  double seconds = 3;
  int leases = 1000;
  std::string dir;
  bool baseline = true;
  int group = 8;  // the extra "ticks per commit" contender; 1 turns it off
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
    else if (a == "--dir") o.dir = next();
    else if (a == "--no-baseline") o.baseline = false;
    else if (a == "--group") o.group = std::atoi(next().c_str());
    else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_ledger [--rounds N] [--seconds S] [--leases L] [--dir DIR] [--group K] [--no-baseline]\n");
      std::exit(0);
    } else Die("unknown option " + a);
  }
  if (o.rounds < 1 || o.seconds <= 0 || o.leases < 1 || o.group < 1)
    Die("--rounds, --seconds, --leases and --group must be positive");
  if (o.group > o.leases) Die("--group must not exceed --leases");
  return o;
}

// ------------------------------------------------------------------ ours

std::string FakeAddress(char kind, int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%c%039x", kind, i);  // 40 hex digits
  return buf;
}

class SettlementBench {
 public:
  Status Open(const std::string& path, int num_leases) {
    GRID_ASSIGN_OR_RETURN(store_, store::OpenSqliteStore(path));
    const UnixMs t0 = 1'780'000'000'000;
    store::ChangeSet setup;
    std::vector<ledger::Transfer> funding;
    for (int i = 0; i < num_leases; ++i) {
      market::Machine m;
      m.id = i + 1;
      m.provider = FakeAddress('b', i);
      m.spec.gpu_name = "H100 SXM 80GB";
      m.spec.num_gpus = 8;
      m.spec.gpu_ram = 80;
      m.spec.cpu_cores = 128;
      m.spec.cpu_ram = 1024;
      m.spec.disk_space = 4000;
      m.spec.inet_up = m.spec.inet_down = 10000;
      m.spec.geolocation = "DE";
      m.spec.datacenter = true;
      m.spec_json = R"({"gpu_name":"H100 SXM 80GB","num_gpus":8,"gpu_ram":80,"cpu_cores":128,"cpu_ram":1024,)"
                    R"("disk_space":4000,"inet_up":10000,"inet_down":10000,"geolocation":"DE","datacenter":true})";
      m.listing = market::Listing{true, 2'500'000, 1, 0, 0};
      m.created_ms = m.updated_ms = t0;
      setup.machines.push_back(m);

      market::Lease l;
      l.id = i + 1;
      l.renter = FakeAddress('a', i);
      l.provider = m.provider;
      l.machine_id = m.id;
      l.gpus = {0, 1, 2, 3, 4, 5, 6, 7};
      l.price_per_hour = 8 * 2'500'000;  // 20 USD/h
      l.fee_bps = 1000;                  // 10 %
      l.image = "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime";
      l.env = {"WANDB_MODE=offline", "NCCL_DEBUG=WARN"};
      l.command = {"torchrun", "--nproc-per-node=8", "train.py"};
      l.order = market::SignedOrder{m.id * market::kOfferIdBase + 8, 8, l.price_per_hour,
                                    static_cast<uint64_t>(i + 1), t0 / 1000 + 3600,
                                    "0x" + std::string(128, 'a') + "1b"};
      l.state = market::LeaseState::kRunning;
      l.created_ms = t0;
      l.started_ms = t0;
      funding.push_back(ledger::Transfer{"faucet:" + l.renter, std::string(ledger::kWorld),
                                         ledger::UserAccount(l.renter), 100'000 * kMicrosPerUnit,
                                         ledger::TransferKind::kPosted, 0, t0, "faucet"});
      GRID_ASSIGN_OR_RETURN(Micros hold, market::InitialHold(l.price_per_hour));
      l.held = hold;
      for (auto& t : market::HoldTransfers(l, hold)) funding.push_back(t);
      leases_.push_back(l);
      setup.leases.push_back(l);
    }
    GRID_RETURN_IF_ERROR(ledger_.Check(funding));
    setup.accounts = ledger_.Preview(funding);
    setup.transfers = funding;
    GRID_RETURN_IF_ERROR(store_->Commit(setup));
    ledger_.Apply(funding);
    return Status::Ok();
  }

  // Settlement ticks of the next `group` leases, made durable in one
  // Commit (group 1 is what the broker does today: one commit per tick).
  Status Tick(int group) {
    store::ChangeSet cs;
    std::vector<size_t> idx;
    std::vector<market::Lease> next;
    for (int g = 0; g < group; ++g) {
      market::Lease& l = leases_[next_];
      idx.push_back(next_);
      next_ = (next_ + 1) % leases_.size();
      market::SettleOptions o;
      o.now_ms = l.started_ms + (l.settlements + 1) * o.tick_ms;
      o.renter_available = ledger_.BalanceOf(l.renter).available;
      GRID_ASSIGN_OR_RETURN(market::Settlement s, market::Settle(l, o));
      if (s.lease.state != market::LeaseState::kRunning) return Internal("lease ended; fund the renters more");
      for (auto& t : s.transfers) cs.transfers.push_back(std::move(t));
      cs.leases.push_back(s.lease);
    }
    GRID_RETURN_IF_ERROR(ledger_.Check(cs.transfers));
    cs.accounts = ledger_.Preview(cs.transfers);
    GRID_RETURN_IF_ERROR(store_->Commit(cs));
    ledger_.Apply(cs.transfers);
    for (size_t k = 0; k < idx.size(); ++k) leases_[idx[k]] = cs.leases[k];
    ++commits_;
    ticks_ += group;
    transfers_ += static_cast<int64_t>(cs.transfers.size());
    accounts_ += static_cast<int64_t>(cs.accounts.size());
    return Status::Ok();
  }

  struct RoundResult {
    double ticks_per_s = 0, transfers_per_s = 0, write_bytes_per_tick = 0;
  };
  // Settlement ticks per second over `seconds` of wall time.
  Result<RoundResult> Round(double seconds, int group) {
    int64_t t0 = ticks_, x0 = transfers_, w0 = WriteBytes();
    double start = NowSeconds(), end = start + seconds, now = start;
    while (now < end && !g_interrupted) {
      GRID_RETURN_IF_ERROR(Tick(group));
      now = NowSeconds();
    }
    double el = now - start;
    int64_t n = ticks_ - t0;
    return RoundResult{n / el, (transfers_ - x0) / el, n ? double(WriteBytes() - w0) / n : 0};
  }

  // Bytes this process sent to storage (/proc/self/io write_bytes).
  static int64_t WriteBytes() {
    std::ifstream in("/proc/self/io");
    std::string k;
    int64_t v = 0;
    while (in >> k >> v)
      if (k == "write_bytes:") return v;
    return 0;
  }

  // Reloads the store and checks what is durable equals what is in memory.
  Status Verify() {
    GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store_->Load());
    for (const auto& a : snap.accounts) {
      if (!(ledger_.Get(a.id) == a)) return Internal("stored account differs: " + a.id);
    }
    if (snap.accounts.size() != ledger_.accounts().size()) return Internal("account count differs");
    for (const auto& l : snap.leases) {
      const auto& mine = leases_[l.id - 1];
      if (l.settlements != mine.settlements || l.charged != mine.charged || l.held != mine.held)
        return Internal("stored lease differs: " + std::to_string(l.id));
    }
    return Status::Ok();
  }

  int64_t commits() const { return commits_; }
  int64_t ticks() const { return ticks_; }
  int64_t transfers() const { return transfers_; }
  int64_t accounts() const { return accounts_; }

 private:
  std::unique_ptr<store::Store> store_;
  ledger::Ledger ledger_;
  std::vector<market::Lease> leases_;
  size_t next_ = 0;
  int64_t commits_ = 0, ticks_ = 0, transfers_ = 0, accounts_ = 0;
};

// ------------------------------------------------------------------ fsync

// Median µs of a 4 KiB append + fdatasync in `dir`: what one durable commit costs at least.
double FsyncMicros(const std::string& dir) {
  std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) return -1;
  char block[4096];
  std::memset(block, 'x', sizeof block);
  std::vector<double> us;
  for (int i = 0; i < 300; ++i) {
    if (::write(fd, block, sizeof block) != static_cast<ssize_t>(sizeof block)) break;
    double t = NowSeconds();
    ::fdatasync(fd);
    us.push_back((NowSeconds() - t) * 1e6);
  }
  ::close(fd);
  ::unlink(path.c_str());
  return Median(us);
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

  // Creates and starts the cluster under dir/pg. Prints what it did.
  bool Start(const std::string& base) {
    dir_ = base + "/pg";
    data_ = dir_ + "/data";
    fs::create_directories(dir_);
    if (geteuid() == 0) {
      passwd* pw = getpwnam("postgres");
      if (!pw) {
        std::printf("baseline: no postgres user to run PostgreSQL as (we are root)\n");
        return false;
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) return false;
      as_ = "runuser -u postgres -- ";
    }
    std::string out;
    std::string bin = kPgBin;
    // --no-sync only makes initdb itself skip its final fsync; the server runs with fsync=on.
    if (RunCapture(as_ + bin + "/initdb -D " + ShellQuote(data_) + " -U postgres -A trust --no-sync", &out) != 0) {
      std::printf("baseline: initdb failed:\n%s\n", out.c_str());
      return false;
    }
    port_ = FreePort();
    std::string opts = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) +
                       " -c unix_socket_directories=" + dir_ + " -c fsync=on -c synchronous_commit=on";
    if (RunCapture(as_ + bin + "/pg_ctl -D " + ShellQuote(data_) + " -l " + ShellQuote(dir_ + "/server.log") +
                       " -w -t 60 -o " + ShellQuote(opts) + " start",
                   &out) != 0) {
      std::printf("baseline: pg_ctl start failed:\n%s\n", out.c_str());
      return false;
    }
    started_ = true;
    std::ifstream pidf(data_ + "/postmaster.pid");
    pidf >> pid_;
    std::printf("baseline: PostgreSQL cluster %s, postmaster pid %d, 127.0.0.1:%d\n", data_.c_str(), pid_, port_);
    std::string settings;
    RunCapture(as_ + bin + "/psql " + Conn() +
                   " -Atc \"select name || '=' || setting from pg_settings where name in "
                   "('fsync','synchronous_commit','wal_sync_method','full_page_writes','shared_buffers',"
                   "'commit_delay','server_version') order by name\"",
               &settings);
    for (char& c : settings)
      if (c == '\n') c = ' ';
    std::printf("baseline: settings %s\n", settings.c_str());
    if (RunCapture(as_ + bin + "/pgbench " + Conn() + " -i -s 1 -q", &out) != 0) {
      std::printf("baseline: pgbench -i failed:\n%s\n", out.c_str());
      return false;
    }
    std::printf("baseline: pgbench -i -s 1 done\n");
    return true;
  }

  struct PgbenchResult {
    double tps = 0, wal_bytes_per_tx = 0;
  };
  // One TPC-B round: tps (without initial connection time) and the WAL it
  // wrote per transaction (pg_current_wal_lsn before and after).
  std::optional<PgbenchResult> Pgbench(int clients, double seconds) {
    std::string out, lsn;
    RunCapture(as_ + kPgBin + "/psql " + Conn() + " -Atc 'select pg_current_wal_lsn()'", &lsn);
    while (!lsn.empty() && (lsn.back() == '\n' || lsn.back() == ' ')) lsn.pop_back();
    int secs = std::max(1, static_cast<int>(seconds + 0.5));
    std::string cmd = as_ + kPgBin + "/pgbench " + Conn() + " -c " + std::to_string(clients) + " -j " +
                      std::to_string(clients) + " -T " + std::to_string(secs);
    if (RunCapture(cmd, &out) != 0) {
      std::printf("pgbench failed:\n%s\n", out.c_str());
      return std::nullopt;
    }
    auto p = out.find("tps = ");
    if (p == std::string::npos) return std::nullopt;
    PgbenchResult r;
    r.tps = std::atof(out.c_str() + p + 6);
    auto q = out.find("actually processed: ");
    double txs = q == std::string::npos ? 0 : std::atof(out.c_str() + q + 20);
    std::string diff;
    if (txs > 0 && RunCapture(as_ + kPgBin + "/psql " + Conn() + " -Atc \"select pg_wal_lsn_diff(pg_current_wal_lsn(), '" +
                                  lsn + "')\"", &diff) == 0)
      r.wal_bytes_per_tx = std::atof(diff.c_str()) / txs;
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
      std::printf("baseline: cluster stopped (postmaster %d)\n", pid_);
    }
  }

 private:
  std::string Conn() const { return "-h 127.0.0.1 -p " + std::to_string(port_) + " -U postgres postgres"; }

  std::string dir_, data_, as_;
  int port_ = 0;
  int pid_ = 0;
  bool started_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt = ParseArgs(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  std::string tmpl = opt.dir + "/gridbench-ledger-XXXXXX";
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

  std::printf("bench_ledger: durable settlement commits/s, SQLite store vs PostgreSQL pgbench TPC-B\n");
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::string fstype;
  RunCapture("stat -f -c %T " + ShellQuote(base), &fstype);
  if (!fstype.empty() && fstype.back() == '\n') fstype.pop_back();
  std::printf("dir: %s (fs %s); fdatasync of a 4 KiB append: median %.0f us\n", base.c_str(), fstype.c_str(),
              FsyncMicros(base));
  std::printf("rounds: %d x %.0f s each; leases: %d\n", opt.rounds, opt.seconds, opt.leases);

  fs::create_directories(base + "/ours");
  SettlementBench ours;
  if (Status s = ours.Open(base + "/ours/grid.db", opt.leases); !s.ok()) Die("ours: " + s.ToString());
  std::printf("ours: sqlite:%s/ours/grid.db (WAL, synchronous=FULL), one writer\n", base.c_str());

  std::unique_ptr<PgCluster> pg;
  if (opt.baseline) {
    pg = std::make_unique<PgCluster>();
    if (!pg->Start(base)) {
      pg.reset();
      std::printf("baseline: unavailable; only our figures follow\n");
    }
  }

  std::vector<double> ours_tps, grouped_tps, pg2_tps, pg1_tps, ratio2, ratio1;
  const int kinds = opt.group > 1 ? 4 : 3;
  for (int r = 0; r < opt.rounds && !g_interrupted; ++r) {
    size_t n_ours = ours_tps.size(), n2 = pg2_tps.size(), n1 = pg1_tps.size();
    // Rotate the order so no side always runs first (after a vacuum, on a cooler disk…).
    for (int k = 0; k < kinds && !g_interrupted; ++k) {
      int which = (r + k) % kinds;
      if (which == 0 || which == 3) {
        int group = which == 0 ? 1 : opt.group;
        auto res = ours.Round(opt.seconds, group);
        if (!res.ok()) Die("ours: " + res.status().ToString());
        (group == 1 ? ours_tps : grouped_tps).push_back(res->ticks_per_s);
        std::printf("round %d  %-30s %7.0f ticks/s  (%.0f commits/s, %.0f transfers/s; %.1f KiB written/tick)\n",
                    r + 1, group == 1 ? "ours (sqlite, 1 tick/commit)" : ("ours, " + std::to_string(group) +
                                                                        " ticks/commit").c_str(),
                    res->ticks_per_s, res->ticks_per_s / group, res->transfers_per_s,
                    res->write_bytes_per_tick / 1024);
      } else if (pg) {
        int clients = which == 1 ? 2 : 1;
        auto res = pg->Pgbench(clients, opt.seconds);
        if (!res) continue;
        (clients == 2 ? pg2_tps : pg1_tps).push_back(res->tps);
        std::printf("round %d  pgbench TPC-B -c %d -j %d          %7.0f tps  (%.1f KiB WAL/tx)\n", r + 1, clients,
                    clients, res->tps, res->wal_bytes_per_tx / 1024);
      }
    }
    // Ratios within a round: they ran within seconds of each other, so they
    // share the machine's mood better than medians taken apart.
    if (ours_tps.size() > n_ours && pg2_tps.size() > n2) ratio2.push_back(ours_tps.back() / pg2_tps.back());
    if (ours_tps.size() > n_ours && pg1_tps.size() > n1) ratio1.push_back(ours_tps.back() / pg1_tps.back());
  }
  if (g_interrupted) std::printf("interrupted\n");

  Status v = ours.Verify();
  std::printf("ours: %" PRId64 " settlement ticks in %" PRId64 " commits; per tick %.2f transfers, %.2f account "
              "rows, 1 lease row; reload check: %s\n",
              ours.ticks(), ours.commits(), ours.ticks() ? double(ours.transfers()) / ours.ticks() : 0.0,
              ours.ticks() ? double(ours.accounts()) / ours.ticks() : 0.0, v.ok() ? "ok" : v.ToString().c_str());

  double m_ours = Median(ours_tps), m_pg2 = Median(pg2_tps), m_pg1 = Median(pg1_tps);
  std::printf("\nmedian  ours            %8.0f commits/s (one settlement tick each)\n", m_ours);
  if (!grouped_tps.empty())
    std::printf("median  ours, %d/commit %8.0f ticks/s (what group commit would give; not the broker today)\n",
                opt.group, Median(grouped_tps));
  if (!pg2_tps.empty()) std::printf("median  pgbench -c 2    %8.0f tps\n", m_pg2);
  if (!pg1_tps.empty()) std::printf("median  pgbench -c 1    %8.0f tps\n", m_pg1);
  if (!pg2_tps.empty()) std::printf("ratio   ours/pgbench(-c 2) = %.2f  (goal >= 1.0: %s)\n", m_ours / m_pg2,
                                    m_ours >= m_pg2 ? "met" : "NOT met");
  if (!pg1_tps.empty()) std::printf("ratio   ours/pgbench(-c 1) = %.2f\n", m_ours / m_pg1);
  auto list = [](const std::vector<double>& v) {
    std::string out;
    for (double x : v) out += (out.empty() ? "" : " ") + std::to_string(x).substr(0, 4);
    return out;
  };
  if (!ratio2.empty())
    std::printf("per-round ours/pgbench(-c 2): %s  median %.2f\n", list(ratio2).c_str(), Median(ratio2));
  if (!ratio1.empty())
    std::printf("per-round ours/pgbench(-c 1): %s  median %.2f\n", list(ratio1).c_str(), Median(ratio1));
  std::printf("fdatasync of a 4 KiB append at the end: median %.0f us\n", FsyncMicros(base));
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  pg.reset();  // stops the cluster before the temp dir goes
  return v.ok() ? 0 : 1;
}
