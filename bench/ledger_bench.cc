// bench_ledger: durable settlement transfers per second on the SQLite store,
// against PostgreSQL 15's pgbench TPC-B (fsync on) measured in the same run.
//
// Ours, default (--mode broker): the production path. A real broker::Broker
// (BrokerOptions{dev = true, fee_bps = 250}, a ManualClock) opened on a fresh
// SQLite file (store::OpenSqliteStore: WAL, synchronous=FULL) in the same
// directory as the PostgreSQL cluster. Population through the broker's own
// commands: RegisterMachine (spec decoded by api::DecodeMachineSpec, as the
// HTTP route does), ListOffer, Faucet (several requests per renter, distinct
// idempotency keys), CreateLease with EIP-712 orders signed by real secp256k1
// keys, ReportLease(running). Default: 1,000 one-GPU leases on 125 eight-GPU
// machines, 5 leases per renter. A round then, for --seconds of wall time,
// advances the clock by the tick (60 s) and calls Broker::SettleAll(), which
// commits up to 256 lease settlements per durable transaction. What a round
// made durable is read back from the store, not from our own counters:
// transfers = store ForEachTransfer count after - before; lease-settlements =
// sum of the stored leases' `settlements` after - before; commits = the
// broker's commit counter. At the end: Broker::Audit() over the store, and
// the stored leases compared with the broker's.
//
// --mode single: the previous measurement, kept for comparison. One
// store::Commit() per settlement tick of one lease, built as the broker built
// it before settlement batching (market::Settle, Ledger::Check/Preview, lease
// upsert, Ledger::Apply), round-robin over --leases leases; plus a "--group K
// ticks per commit" contender printed apart.
//
// Baseline: a throwaway PostgreSQL 15 cluster (initdb in a temp dir, run as
// the postgres user when we are root, 127.0.0.1 on a free port, fsync=on,
// synchronous_commit=on, defaults otherwise), `pgbench -i -s 1`, then rounds
// of `pgbench -c 2 -j 2 -T N` and `pgbench -c 1 -T N`. Rounds alternate with
// ours (the order rotates every round). Medians and ratios at the end: one
// TPC-B transaction is one debit/credit money movement, so the issue's unit
// (transfers/s vs tps) is printed beside the stricter lease-settlements/s vs
// tps and the per-commit commits/s vs tps. The cluster is stopped with pg_ctl
// (its postmaster PID as fallback) and the temp dir removed, also after Ctrl-C.
//
// Usage: bench_ledger [--mode broker|single] [--rounds 5] [--seconds 3]
//                     [--leases 1000] [--faucet 3] [--dir /tmp] [--group 8]
//                     [--no-baseline]
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

#include "api/codec.h"
#include "bench_util.h"
#include "broker/broker.h"
#include "core/clock.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
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
  std::string mode = "broker";  // broker: Broker::SettleAll (production); single: one commit per lease tick
  int faucet = 3;               // faucet requests (10,000 USD each) per renter, broker mode
  int prefill = 0;              // broker mode: SettleAll ticks before the rounds (a grown transfers table)
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
    std::optional<std::string> inline_value;  // --opt=value
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto next = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--mode") o.mode = next();
    else if (a == "--faucet") o.faucet = std::atoi(next().c_str());
    else if (a == "--prefill") o.prefill = std::atoi(next().c_str());
    else if (a == "--rounds") o.rounds = std::atoi(next().c_str());
    else if (a == "--seconds") o.seconds = std::atof(next().c_str());
    else if (a == "--leases") o.leases = std::atoi(next().c_str());
    else if (a == "--dir") o.dir = next();
    else if (a == "--no-baseline") o.baseline = false;
    else if (a == "--group") o.group = std::atoi(next().c_str());
    else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_ledger [--mode broker|single] [--rounds N] [--seconds S] [--leases L] [--faucet F]\n"
                  "                    [--prefill T] [--dir DIR] [--group K] [--no-baseline]\n"
                  "  broker (default): Broker::SettleAll on a real broker, up to 256 leases per commit\n"
                  "  --prefill T: settle T ticks first (on a copy in /dev/shm, then moved to DIR), so the rounds\n"
                  "               run against a grown transfers table\n"
                  "  single: the old measurement, one commit per lease tick (+ a --group K ticks/commit row)\n");
      std::exit(0);
    } else Die("unknown option " + a);
  }
  if (o.mode != "broker" && o.mode != "single") Die("--mode: broker or single");
  if (o.prefill < 0) Die("--prefill must not be negative");
  if (o.rounds < 1 || o.seconds <= 0 || o.leases < 1 || o.group < 1 || o.faucet < 1)
    Die("--rounds, --seconds, --leases, --faucet and --group must be positive");
  if (o.mode == "single" && o.group > o.leases) Die("--group must not exceed --leases");
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

// ------------------------------------------------------------------ ours, production path

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(*r);
}

std::string ProviderAddress(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%040x", 0x20000000 + i);
  return buf;
}

// A real broker on a fresh SQLite file, populated through its commands, with
// every lease running. Rounds call SettleAll() on virtual time.
class BrokerBench {
 public:
  static constexpr int kGpusPerMachine = 8;
  static constexpr int kLeasesPerRenter = 5;
  static constexpr Micros kPricePerGpuHour = 2'500'000;  // 2.50 USD

  explicit BrokerBench(const Options& opt) : opt_(opt) {
    bo_.dev = true;
    bo_.fee_bps = 250;
    bo_.chain_id = 31337;
  }

  int machines() const { return (opt_.leases + kGpusPerMachine - 1) / kGpusPerMachine; }
  int renters() const { return (opt_.leases + kLeasesPerRenter - 1) / kLeasesPerRenter; }
  int64_t tick_ms() const { return bo_.tick_ms; }

  void Open(const std::string& final_path) {
    // With --prefill, the population and the prefill ticks run on tmpfs (fsync
    // free), then the file is copied to DIR, fsynced, and the broker reopened
    // on it: the same file a broker would have after those ticks on disk.
    std::string shm_dir;
    if (opt_.prefill > 0 && fs::is_directory("/dev/shm")) {
      std::string tmpl = "/dev/shm/gridbench-prefill-XXXXXX";
      std::vector<char> b(tmpl.begin(), tmpl.end());
      b.push_back('\0');
      if (mkdtemp(b.data())) shm_dir = b.data();
    }
    const std::string path = shm_dir.empty() ? final_path : shm_dir + "/grid.db";
    // Keys are the renters' side: made before the broker exists.
    std::vector<crypto::PrivateKey> keys;
    std::vector<std::string> renters;
    for (int i = 0; i < this->renters(); ++i) {
      keys.push_back(Must(crypto::GeneratePrivateKey(), "key"));
      renters.push_back(crypto::AddressOf(keys.back()).ToLowerHex());
    }
    double t0 = NowSeconds();
    auto st = Must(store::OpenSqliteStore(path), "open sqlite");
    store_ = st.get();  // owned by the broker; read between SettleAll calls, from this thread
    broker_ = Must(broker::Broker::Open(std::move(st), &clock_, bo_), "open broker");

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

    std::vector<std::pair<std::string, int64_t>> created;  // provider, lease id
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
    if (stats.leases_active != opt_.leases) Die("ours: not every lease is active after setup");
    std::printf("ours: %s (WAL, synchronous=FULL), Broker{dev, fee_bps=250, tick 60 s}; %d machines x %d GPUs, "
                "%d one-GPU leases running, %d renters (%d leases each) funded %d x %.0f USD; setup %.1f s, %" PRId64
                " commits\n",
                store_->Describe().c_str(), machines(), kGpusPerMachine, opt_.leases, this->renters(),
                kLeasesPerRenter, opt_.faucet, bo_.faucet_max / double(kMicrosPerUnit), NowSeconds() - t0, stats.commits);
    const double renter_usd_per_hour = kLeasesPerRenter * kPricePerGpuHour / double(kMicrosPerUnit);
    std::printf("ours: funding covers ~%.0f h of virtual time = ~%.0f SettleAll ticks\n",
                opt_.faucet * bo_.faucet_max / double(kMicrosPerUnit) / renter_usd_per_hour,
                opt_.faucet * bo_.faucet_max / double(kMicrosPerUnit) / renter_usd_per_hour * 60);
    if (opt_.prefill > 0) {
      double p0 = NowSeconds();
      for (int i = 0; i < opt_.prefill && !g_interrupted; ++i) {
        clock_.AdvanceMs(bo_.tick_ms);
        if (Status s = broker_->SettleAll(); !s.ok()) Die("prefill: " + s.ToString());
      }
      double p1 = NowSeconds();
      if (!shm_dir.empty()) {
        broker_.reset();  // closes the database (checkpoints the WAL)
        store_ = nullptr;
        for (const char* suffix : {"", "-wal"}) {
          std::error_code ec;
          if (!fs::exists(path + suffix)) continue;
          fs::copy_file(path + suffix, final_path + suffix, fs::copy_options::overwrite_existing, ec);
          if (ec) Die("prefill: copy " + path + suffix + ": " + ec.message());
          int fd = ::open((final_path + suffix).c_str(), O_RDONLY);
          if (fd < 0 || ::fsync(fd) != 0) Die("prefill: fsync " + final_path + suffix);
          ::close(fd);
        }
        std::error_code ec;
        fs::remove_all(shm_dir, ec);
        auto st = Must(store::OpenSqliteStore(final_path), "reopen sqlite");
        store_ = st.get();
        broker_ = Must(broker::Broker::Open(std::move(st), &clock_, bo_), "reopen broker");
        if (broker_->GetStats().leases_active != opt_.leases) Die("prefill: leases lost on reopen");
      }
      std::error_code ec;
      auto size = fs::file_size(final_path, ec);
      std::printf("ours: prefill %d SettleAll ticks in %.1f s%s; database %.1f MiB, %" PRId64
                  " transfers stored; reopened on %s (copied and fsynced in %.1f s)\n",
                  opt_.prefill, p1 - p0, shm_dir.empty() ? " (on DIR: no /dev/shm)" : " on /dev/shm",
                  size / 1048576.0, Read().transfers, store_->Describe().c_str(), NowSeconds() - p1);
    }
  }

  struct Counts {
    int64_t transfers = 0, settlements = 0, commits = 0, commit_failures = 0, active = 0, write_bytes = 0;
  };
  // Read from the store (transfers, stored lease settlements) and the broker (commit counters).
  Counts Read() {
    Counts c;
    if (Status s = store_->ForEachTransfer([&](const ledger::Transfer&) {
          ++c.transfers;
          return true;
        });
        !s.ok())
      Die("ours: ForEachTransfer: " + s.ToString());
    auto snap = Must(store_->Load(), "load");
    for (const auto& l : snap.leases) {
      c.settlements += l.settlements;
      if (l.active()) ++c.active;
    }
    auto st = broker_->GetStats();
    c.commits = st.commits;
    c.commit_failures = st.commit_failures;
    c.write_bytes = SettlementBench::WriteBytes();
    return c;
  }

  struct RoundResult {
    double seconds = 0;
    int64_t calls = 0, transfers = 0, settlements = 0, commits = 0, commit_failures = 0, write_bytes = 0;
    double per_s(int64_t n) const { return n / seconds; }
  };
  Result<RoundResult> Round(double seconds) {
    Counts before = Read();
    RoundResult r;
    double start = NowSeconds(), end = start + seconds, now = start;
    while (now < end && !g_interrupted) {
      clock_.AdvanceMs(bo_.tick_ms);
      GRID_RETURN_IF_ERROR(broker_->SettleAll());
      ++r.calls;
      now = NowSeconds();
    }
    r.seconds = now - start;
    Counts after = Read();
    r.transfers = after.transfers - before.transfers;
    r.settlements = after.settlements - before.settlements;
    r.commits = after.commits - before.commits;
    r.commit_failures = after.commit_failures - before.commit_failures;
    r.write_bytes = after.write_bytes - before.write_bytes;
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

  // Broker::Audit over the store, and the stored leases against the broker's.
  Status Verify() {
    GRID_ASSIGN_OR_RETURN(ledger::AuditReport rep, broker_->Audit());
    if (!rep.ok()) return Internal("audit: " + rep.failures.front());
    GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store_->Load());
    for (const auto& l : snap.leases) {
      GRID_ASSIGN_OR_RETURN(market::Lease mine, broker_->GetLease(l.renter, l.id));
      if (l.settlements != mine.settlements || l.charged != mine.charged || l.held != mine.held)
        return Internal("stored lease differs: " + std::to_string(l.id));
    }
    return Status::Ok();
  }

 private:
  Options opt_;
  broker::BrokerOptions bo_;
  ManualClock clock_{1'780'000'000'000};
  store::Store* store_ = nullptr;
  std::unique_ptr<broker::Broker> broker_;
  RoundResult total_;
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

namespace {

std::string List(const std::vector<double>& v, const char* fmt = "%.2f") {
  std::string out;
  char b[32];
  for (double x : v) {
    std::snprintf(b, sizeof b, fmt, x);
    out += (out.empty() ? "" : " ") + std::string(b);
  }
  return out;
}

// The previous measurement: one commit per lease tick, plus a K-ticks-per-commit row.
bool RunSingle(const Options& opt, const std::string& base, PgCluster* pg) {
  fs::create_directories(base + "/ours");
  SettlementBench ours;
  if (Status s = ours.Open(base + "/ours/grid.db", opt.leases); !s.ok()) Die("ours: " + s.ToString());
  std::printf("ours (--mode single): sqlite:%s/ours/grid.db (WAL, synchronous=FULL), one store::Commit per lease "
              "tick, not the broker's path since settlement batching\n",
              base.c_str());

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
    std::printf("median  ours, %d/commit %8.0f ticks/s\n", opt.group, Median(grouped_tps));
  if (!pg2_tps.empty()) std::printf("median  pgbench -c 2    %8.0f tps\n", m_pg2);
  if (!pg1_tps.empty()) std::printf("median  pgbench -c 1    %8.0f tps\n", m_pg1);
  if (!pg2_tps.empty()) std::printf("ratio   ours/pgbench(-c 2) = %.2f  (commits vs tps)\n", m_ours / m_pg2);
  if (!pg1_tps.empty()) std::printf("ratio   ours/pgbench(-c 1) = %.2f\n", m_ours / m_pg1);
  if (!ratio2.empty()) std::printf("per-round ours/pgbench(-c 2): %s  median %.2f\n", List(ratio2).c_str(), Median(ratio2));
  if (!ratio1.empty()) std::printf("per-round ours/pgbench(-c 1): %s  median %.2f\n", List(ratio1).c_str(), Median(ratio1));
  return v.ok();
}

// The production path: Broker::SettleAll on a real broker.
bool RunBroker(const Options& opt, const std::string& base, PgCluster* pg) {
  fs::create_directories(base + "/ours");
  BrokerBench ours(opt);
  ours.Open(base + "/ours/grid.db");
  {  // One settlement before the rounds: what one tick costs in transfers and commits.
    auto warm = ours.Round(0.001);
    if (!warm.ok()) Die("ours: " + warm.status().ToString());
    std::printf("ours: warm-up SettleAll x %" PRId64 ": %" PRId64 " lease-settlements, %" PRId64
                " transfers (%.2f per settlement), %" PRId64 " commits (%.0f settlements per commit), %.0f ms\n",
                warm->calls, warm->settlements, warm->transfers,
                warm->settlements ? double(warm->transfers) / warm->settlements : 0.0, warm->commits,
                warm->commits ? double(warm->settlements) / warm->commits : 0.0, warm->seconds * 1e3);
  }

  // Per round: ours' three rates and pgbench's tps.
  std::vector<double> xfer, settle, commit, calls, pg2, pg1;
  // Per-round ratios, only for rounds where both sides ran.
  std::vector<double> rx2, rs2, rc2, rx1, rs1, rc1;
  const int kinds = 3;
  for (int r = 0; r < opt.rounds && !g_interrupted; ++r) {
    size_t n_ours = xfer.size(), n2 = pg2.size(), n1 = pg1.size();
    for (int k = 0; k < kinds && !g_interrupted; ++k) {
      int which = (r + k) % kinds;  // rotate the order every round
      if (which == 0) {
        auto res = ours.Round(opt.seconds);
        if (!res.ok()) Die("ours: " + res.status().ToString());
        xfer.push_back(res->per_s(res->transfers));
        settle.push_back(res->per_s(res->settlements));
        commit.push_back(res->per_s(res->commits));
        calls.push_back(res->per_s(res->calls));
        std::printf("round %d  ours (Broker::SettleAll, sqlite)  %7.0f transfers/s  (%.0f lease-settlements/s, "
                    "%.0f commits/s, %.1f SettleAll/s; %" PRId64 " transfers in %.2f s; %.0f KiB written/commit%s)\n",
                    r + 1, xfer.back(), settle.back(), commit.back(), calls.back(), res->transfers, res->seconds,
                    res->commits ? res->write_bytes / 1024.0 / res->commits : 0.0,
                    res->commit_failures ? "; COMMIT FAILURES, fell back to one lease per commit" : "");
      } else if (pg) {
        int clients = which == 1 ? 2 : 1;
        auto res = pg->Pgbench(clients, opt.seconds);
        if (!res) continue;
        (clients == 2 ? pg2 : pg1).push_back(res->tps);
        std::printf("round %d  pgbench TPC-B -c %d -j %d            %7.0f tps  (%.1f KiB WAL/tx)\n", r + 1, clients,
                    clients, res->tps, res->wal_bytes_per_tx / 1024);
      }
    }
    if (xfer.size() > n_ours && pg2.size() > n2) {
      rx2.push_back(xfer.back() / pg2.back());
      rs2.push_back(settle.back() / pg2.back());
      rc2.push_back(commit.back() / pg2.back());
    }
    if (xfer.size() > n_ours && pg1.size() > n1) {
      rx1.push_back(xfer.back() / pg1.back());
      rs1.push_back(settle.back() / pg1.back());
      rc1.push_back(commit.back() / pg1.back());
    }
  }
  if (g_interrupted) std::printf("interrupted\n");

  const auto& t = ours.total();
  double vs = NowSeconds();
  Status v = ours.Verify();
  std::printf("ours: %" PRId64 " SettleAll calls, %" PRId64 " lease-settlements, %" PRId64 " transfers (%.2f per "
              "settlement), %" PRId64 " commits (%.1f settlements per commit), %" PRId64
              " commit failures; Broker::Audit + stored-vs-broker leases: %s (%.1f s)\n",
              t.calls, t.settlements, t.transfers, t.settlements ? double(t.transfers) / t.settlements : 0.0,
              t.commits, t.commits ? double(t.settlements) / t.commits : 0.0, t.commit_failures,
              v.ok() ? "ok" : v.ToString().c_str(), NowSeconds() - vs);

  std::printf("\nper round  transfers/s:         %s\n", List(xfer, "%.0f").c_str());
  std::printf("per round  lease-settlements/s: %s\n", List(settle, "%.0f").c_str());
  std::printf("per round  commits/s:           %s\n", List(commit, "%.0f").c_str());
  if (!pg2.empty()) std::printf("per round  pgbench -c 2 tps:    %s\n", List(pg2, "%.0f").c_str());
  if (!pg1.empty()) std::printf("per round  pgbench -c 1 tps:    %s\n", List(pg1, "%.0f").c_str());
  double mx = Median(xfer), ms = Median(settle), mc = Median(commit);
  std::printf("\nmedian  ours  %8.0f transfers/s  %8.0f lease-settlements/s  %6.0f commits/s  (%.1f SettleAll/s "
              "over %d leases)\n",
              mx, ms, mc, Median(calls), opt.leases);
  auto report = [&](const char* name, const std::vector<double>& tps, const std::vector<double>& rx,
                    const std::vector<double>& rs, const std::vector<double>& rc, bool goal) {
    if (tps.empty()) return;
    double m = Median(tps);
    std::printf("median  pgbench %s  %8.0f tps (TPC-B: one debit/credit transaction each)\n", name, m);
    std::printf("ratio vs pgbench %s, median/median (median of per-round ratios; per round):\n", name);
    std::printf("  transfers/s / tps          = %6.2f  (%.2f; %s)%s\n", mx / m, Median(rx), List(rx).c_str(),
                goal ? (mx / m >= 1.0 ? "  the issue's unit: goal >= 1.0 met" : "  the issue's unit: goal >= 1.0 NOT met")
                     : "");
    std::printf("  lease-settlements/s / tps  = %6.2f  (%.2f; %s)%s\n", ms / m, Median(rs), List(rs).c_str(),
                goal ? (ms / m >= 1.0 ? "  stricter: >= 1.0" : "  stricter: < 1.0") : "");
    std::printf("  commits/s / tps            = %6.2f  (%.2f; %s)  per durable commit\n", mc / m, Median(rc),
                List(rc).c_str());
  };
  report("-c 2 -j 2", pg2, rx2, rs2, rc2, true);
  report("-c 1", pg1, rx1, rs1, rc1, false);
  return v.ok();
}

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

  std::printf("bench_ledger --mode %s: durable settlement transfers/s, SQLite store vs PostgreSQL pgbench TPC-B\n",
              opt.mode.c_str());
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::string fstype, load;
  RunCapture("stat -f -c %T " + ShellQuote(base), &fstype);
  if (!fstype.empty() && fstype.back() == '\n') fstype.pop_back();
  RunCapture("cut -d' ' -f1-3 /proc/loadavg", &load);
  if (!load.empty() && load.back() == '\n') load.pop_back();
  std::printf("dir: %s (fs %s, same dir for ours and the PostgreSQL cluster); fdatasync of a 4 KiB append: median "
              "%.0f us; loadavg %s\n",
              base.c_str(), fstype.c_str(), FsyncMicros(base), load.c_str());
  std::printf("rounds: %d x %.0f s each; leases: %d\n", opt.rounds, opt.seconds, opt.leases);

  std::unique_ptr<PgCluster> pg;
  if (opt.baseline) {
    pg = std::make_unique<PgCluster>();
    if (!pg->Start(base)) {
      pg.reset();
      std::printf("baseline: unavailable; only our figures follow\n");
    }
  }

  bool ok = opt.mode == "single" ? RunSingle(opt, base, pg.get()) : RunBroker(opt, base, pg.get());

  RunCapture("cut -d' ' -f1-3 /proc/loadavg", &load);
  if (!load.empty() && load.back() == '\n') load.pop_back();
  std::printf("fdatasync of a 4 KiB append at the end: median %.0f us; loadavg %s\n", FsyncMicros(base), load.c_str());
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  pg.reset();  // stops the cluster before the temp dir goes
  return ok ? 0 : 1;
}
