// bench_memory: the broker's resident memory at scale, built through the real
// code paths: broker::Broker::Open, RegisterMachine (the spec decoded from a
// JSON body by api::DecodeMachineSpec, as the HTTP route does), ListOffer,
// Faucet, CreateLease with EIP-712 orders signed by real secp256k1 keys, and
// ReportLease(running) by each machine's provider.
//
// Store: by default SQLite (store::OpenSqliteStore, WAL, synchronous=FULL, the
// production store) on a file in /dev/shm. The SQLite store keeps nothing but
// a small page cache in our process, so the RSS is the broker's own (plus
// that cache, plus the mmapped WAL index, counted in RssShmem); the database
// file lives in tmpfs page cache, outside our RSS. tmpfs makes fsync free, so
// the ~230,000 commits of the population take seconds instead of the minutes
// one fsync each would cost on disk; memory is what is measured here, not
// durability (bench_ledger measures that). --dir puts the file on a real disk.
// --store memory uses store::NewMemoryStore(), which keeps a second copy of
// everything in the same process: its RSS is broker + store.
//
// With SQLite, a last phase drops the broker and opens a new one on the same
// file: the RSS of a broker started on this state, free of what building it
// left behind in the allocator.
//
// Usage: bench_memory [--machines 100000] [--leases 10000] [--store sqlite|memory]
//                     [--dir /dev/shm]
#include <malloc.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api/codec.h"
#include "bench_util.h"
#include "broker/broker.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "store/store.h"

namespace fs = std::filesystem;
using namespace grid;
using bench::FormatRss;
using bench::NowSeconds;
using bench::ReadRss;
using bench::Rss;

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "bench_memory: %s\n", msg.c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) Die(std::string(what) + ": " + r.status().ToString());
  return std::move(*r);
}

struct Options {
  int machines = 100'000;
  int leases = 10'000;
  std::string store = "sqlite";
  std::string dir;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  o.dir = fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--machines") o.machines = std::atoi(next().c_str());
    else if (a == "--leases") o.leases = std::atoi(next().c_str());
    else if (a == "--store") o.store = next();
    else if (a == "--dir") o.dir = next();
    else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_memory [--machines N] [--leases N] [--store sqlite|memory] [--dir DIR]\n");
      std::exit(0);
    } else Die("unknown option " + a);
  }
  if (o.store != "sqlite" && o.store != "memory") Die("--store: sqlite or memory");
  if (o.machines < 1 || o.leases < 0 || o.leases > o.machines) Die("need 1 <= machines and 0 <= leases <= machines");
  return o;
}

// A phase's report: time, RSS after, and the growth per item.
struct Phase {
  const char* name;
  double start;
  Rss before;
};
Phase Begin(const char* name) { return Phase{name, NowSeconds(), ReadRss()}; }
Rss End(const Phase& p, int64_t items, const char* per) {
  double secs = NowSeconds() - p.start;
  Rss after = ReadRss();
  std::printf("%-34s %7.2f s  %s", p.name, secs, FormatRss(after).c_str());
  if (items > 0) {
    double bytes = (after.total_kb - p.before.total_kb) * 1024.0 / items;
    std::printf("  %+.0f B/%s (%" PRId64 " in %.0f/s)", bytes, per, items, items / secs);
  }
  std::printf("\n");
  return after;
}

constexpr const char* kGpus[] = {"RTX 4090",      "RTX 3090",      "RTX A6000",   "A100 SXM4 80GB",
                                 "A100 PCIE 40GB", "H100 SXM 80GB", "H100 PCIE",   "L40S",
                                 "RTX 4080",      "A40",           "Tesla V100",  "RTX 6000Ada"};
constexpr double kGpuRam[] = {24, 24, 48, 80, 40, 80, 80, 48, 16, 48, 16, 48};
constexpr Micros kGpuPrice[] = {350'000, 200'000, 450'000, 1'300'000, 900'000, 2'400'000,
                                2'000'000, 800'000, 250'000, 400'000, 150'000, 750'000};
constexpr const char* kGeos[] = {"US", "CA", "DE", "FR", "NL", "GB", "SE", "FI", "PL", "ES",
                                 "IT", "JP", "KR", "SG", "IN", "AU", "BR", "ZA", "TW", "NO"};
constexpr int kGpuCounts[] = {1, 2, 4, 8};

std::string ProviderAddress(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%040x", 0x10000000 + i);
  return buf;
}

std::string SpecJson(int i, uint32_t h) {
  int g = static_cast<int>(h % 12);
  int n = kGpuCounts[(h >> 4) % 4];
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                R"({"gpu_name":"%s","num_gpus":%d,"gpu_ram":%g,"cpu_cores":%d,"cpu_ram":%d,"disk_space":%d,)"
                R"("inet_up":%d.5,"inet_down":%d.25,"geolocation":"%s","datacenter":%s,)"
                R"("cuda_vers":12.%d,"driver_version":"550.%d.%02d","pcie_bw":%.1f,"gpu_arch":"%s","host_tag":"rack-%d"})",
                kGpus[g], n, kGpuRam[g], 8 * n, 32 * n, 500 + (h % 4000), 100 + (h >> 8) % 9000,
                200 + (h >> 12) % 9000, kGeos[(h >> 16) % 20], ((h >> 20) & 1) ? "true" : "false", (h >> 21) % 6,
                (h >> 3) % 200, i % 100, 6.0 + (h >> 9) % 20, g < 3 ? "ampere" : (g < 8 ? "hopper" : "ada"),
                i / 40);
  return buf;
}

uint32_t Mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352d;
  x ^= x >> 15;
  x *= 0x846ca68b;
  x ^= x >> 16;
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = ParseArgs(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("bench_memory: broker RSS with %d machines and %d running leases\n", opt.machines, opt.leases);
  std::printf("machine: %s\n", bench::MachineLine().c_str());

  std::string db_dir, db_path;
  if (opt.store == "sqlite") {
    std::string tmpl = opt.dir + "/gridbench-memory-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) Die("mkdtemp in " + opt.dir);
    db_dir = buf.data();
    db_path = db_dir + "/grid.db";
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      if (dir.empty()) return;
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{db_dir};

  // Keys and signatures are made before the first measurement, outside the
  // broker: they are the renters' side.
  const int providers = std::max(1, opt.machines / 10);  // 10 machines each
  const int renters = std::max(1, opt.leases / 5);        // 5 leases each
  ManualClock clock(1'780'000'000'000);
  broker::BrokerOptions bo;
  bo.dev = true;
  bo.fee_bps = 1000;
  bo.chain_id = 31337;
  std::vector<crypto::PrivateKey> renter_keys;
  std::vector<std::string> renter_addrs;
  for (int i = 0; i < renters; ++i) {
    renter_keys.push_back(Must(crypto::GeneratePrivateKey(), "key"));
    renter_addrs.push_back(crypto::AddressOf(renter_keys.back()).ToLowerHex());
  }
  // Spec bodies, as the HTTP route receives them, are made one at a time in
  // the register loop, so no input set sits in memory while RSS is measured.
  std::printf("inputs: %d providers, %d renters, spec JSON like %s\n", providers, renters,
              SpecJson(0, Mix(1)).c_str());
  malloc_trim(0);

  auto phase = Begin("open broker");
  std::unique_ptr<store::Store> st;
  if (opt.store == "sqlite") {
    st = Must(store::OpenSqliteStore(db_path), "open sqlite");
  } else {
    st = store::NewMemoryStore();
  }
  std::printf("store: %s%s\n", st->Describe().c_str(),
              opt.store == "sqlite" ? " (WAL, synchronous=FULL; file outside our RSS)"
                                    : " (holds a second copy of the state in this process: RSS = broker + store)");
  auto broker = Must(broker::Broker::Open(std::move(st), &clock, bo), "open broker");
  Rss open_rss = End(phase, 0, "");

  phase = Begin("register machines");
  std::vector<int64_t> ids;  // 800 KB at 100k machines, counted in this phase
  ids.reserve(static_cast<size_t>(opt.machines));
  for (int i = 0; i < opt.machines; ++i) {
    auto spec = Must(api::DecodeMachineSpec(SpecJson(i, Mix(static_cast<uint32_t>(i) + 1))), "spec");
    auto v = Must(broker->RegisterMachine(ProviderAddress(i % providers), std::move(spec.spec),
                                          std::move(spec.canonical_json)),
                  "register");
    ids.push_back(v.machine.id);
  }
  End(phase, opt.machines, "machine");

  phase = Begin("list offers");
  for (int i = 0; i < opt.machines; ++i) {
    uint32_t h = Mix(static_cast<uint32_t>(i) + 1);
    market::ListOfferRequest req;
    req.machine_id = ids[static_cast<size_t>(i)];
    req.price_per_gpu_hour = kGpuPrice[h % 12] + (h >> 24) * 1000;
    req.min_chunk = 1;
    Must(broker->ListOffer(ProviderAddress(i % providers), req), "list");
  }
  Rss listed_rss = End(phase, opt.machines, "machine");

  phase = Begin("faucet renters");
  for (int i = 0; i < renters; ++i)
    Must(broker->Faucet(renter_addrs[static_cast<size_t>(i)], 5'000 * kMicrosPerUnit, "bench"), "faucet");
  End(phase, renters, "renter");

  phase = Begin("create leases (signed orders)");
  std::vector<int64_t> lease_ids;
  std::vector<std::string> lease_providers;
  // Spread the leases over the machines: every (machines/leases)-th one.
  const int stride = opt.leases ? opt.machines / opt.leases : 1;
  for (int j = 0; j < opt.leases; ++j) {
    int i = j * stride;
    auto mv = Must(broker->GetMachine(ProviderAddress(i % providers), ids[static_cast<size_t>(i)]), "machine");
    int gpus = mv.machine.spec.num_gpus;
    market::CreateLeaseRequest req;
    req.offer_id = mv.machine.id * market::kOfferIdBase + gpus;
    req.gpus = gpus;
    req.image = "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime";
    req.env = {"WANDB_MODE=offline", "RUN_ID=" + std::to_string(j)};
    req.command = {"torchrun", "--nproc-per-node=" + std::to_string(gpus), "train.py", "--config", "cfg.yaml"};
    const size_t r = static_cast<size_t>(j % renters);
    crypto::LeaseOrder order{static_cast<uint64_t>(req.offer_id), static_cast<uint32_t>(gpus),
                             mv.machine.listing.price_per_gpu_hour * gpus, static_cast<uint64_t>(j + 1),
                             clock.NowMs() / 1000 + 3600};
    auto sig = Must(crypto::SignDigest(renter_keys[r], crypto::LeaseOrderDigest(order, bo.chain_id)), "sign");
    req.order = market::SignedOrder{req.offer_id, gpus, order.price_per_hour_micros, order.nonce, order.expiry_unix_s,
                                    "0x" + crypto::HexEncode(sig, false)};
    auto lease = Must(broker->CreateLease(renter_addrs[r], std::move(req)), "create lease");
    lease_ids.push_back(lease.id);
    lease_providers.push_back(lease.provider);
  }
  End(phase, opt.leases, "lease");

  phase = Begin("report leases running");
  clock.AdvanceMs(1000);
  for (size_t j = 0; j < lease_ids.size(); ++j)
    Must(broker->ReportLease(lease_providers[j], lease_ids[j], market::LeaseState::kRunning, "started"), "report");
  std::vector<int64_t>().swap(lease_ids);
  std::vector<std::string>().swap(lease_providers);
  Rss running_rss = End(phase, opt.leases, "lease");

  phase = Begin("settle all (one tick)");
  clock.AdvanceMs(bo.tick_ms);
  if (Status s = broker->SettleAll(); !s.ok()) Die("settle: " + s.ToString());
  malloc_trim(0);
  Rss settled_rss = End(phase, opt.leases, "lease");

  auto stats = broker->GetStats();
  std::printf("broker: %" PRId64 " machines (%" PRId64 " listed), %" PRId64 " active leases, %" PRId64 " commits\n",
              stats.machines, stats.listed, stats.leases_active, stats.commits);

  std::printf("\nbuilt state: %.1f MiB RSS (%.1f over an empty broker); %.0f B per machine (registered and "
              "listed), %.0f B per running lease (incl. its renter's accounts)\n",
              settled_rss.total_kb / 1024.0, (settled_rss.total_kb - open_rss.total_kb) / 1024.0,
              (listed_rss.total_kb - open_rss.total_kb) * 1024.0 / opt.machines,
              opt.leases ? (running_rss.total_kb - listed_rss.total_kb) * 1024.0 / opt.leases : 0.0);

  if (opt.store == "sqlite") {
    std::error_code ec;
    auto size = fs::file_size(db_path, ec);
    auto wal = fs::file_size(db_path + "-wal", ec);
    phase = Begin("drop broker");
    broker.reset();
    malloc_trim(0);
    Rss empty = End(phase, 0, "");
    phase = Begin("restart: open broker on the file");
    auto st2 = Must(store::OpenSqliteStore(db_path), "reopen sqlite");
    broker = Must(broker::Broker::Open(std::move(st2), &clock, bo), "reopen broker");
    Rss restarted = End(phase, 0, "");
    // Loading goes through a Snapshot copy that is freed at the end; glibc
    // keeps some of it. Trimmed is what a long-running broker would reuse.
    malloc_trim(0);
    Rss trimmed = ReadRss();
    auto s2 = broker->GetStats();
    std::printf("restarted broker: %" PRId64 " machines, %" PRId64 " active leases; RSS %.1f MiB, %.1f MiB over the "
                "process without a broker (after malloc_trim: %.1f MiB, %.1f over); database %.1f MiB "
                "(+ WAL %.1f MiB)\n",
                s2.machines, s2.leases_active, restarted.total_kb / 1024.0,
                (restarted.total_kb - empty.total_kb) / 1024.0, trimmed.total_kb / 1024.0,
                (trimmed.total_kb - empty.total_kb) / 1024.0, size / 1048576.0, wal / 1048576.0);
  }
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  return 0;
}
