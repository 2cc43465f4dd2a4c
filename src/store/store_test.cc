// One test body for every Store (memory, SQLite, PostgreSQL), plus the
// SQLite-only checks (read-only opens, schema versions, a kill -9 right after
// Commit returns) and the PostgreSQL-only ones (schema parity with SQLite,
// concurrent starts, read-only opens, racing writers, URLs).
//
// The PostgreSQL cases run when GRID_TEST_PG_URL names a server where the
// user may create databases (scripts/pg-test-cluster.sh starts a throwaway
// one; scripts/test.sh does that for `make test`); each test gets a database
// of its own. Without it they are skipped, saying so.
#include "store/store.h"
#include "store/migrations.h"
#include "store/postgres_conn.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace grid::store {
namespace {

using ::testing::HasSubstr;
using ledger::Account;
using ledger::Transfer;
using ledger::TransferKind;
using market::Lease;
using market::Machine;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// Strings a naive encoding would break.
const std::vector<std::string> kAwkward = {
    "", "a,b,c", "\"quoted\"", "it's", "line\nbreak\r\n", "tab\there", "back\\slash", "ünïcødé ✓ 数据 🚀",
    "K=V=W", ";DROP TABLE leases;--", std::string("nul\0inside", 10), "   ",
};

// ---------------------------------------------------------------------------
// A throwaway PostgreSQL database per test.

const char* PgUrl() {
  const char* url = std::getenv("GRID_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}
constexpr const char* kNoPg =
    "GRID_TEST_PG_URL is not set: PostgreSQL cases skipped (start a server with "
    "`scripts/pg-test-cluster.sh start DIR` and export the line it prints; `make test` does this)";

// `url` with its database replaced by `db`.
std::string WithDatabase(const std::string& url, const std::string& db) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t slash = url.find('/', start);
  size_t query = url.find('?', start);
  std::string tail = query == std::string::npos ? "" : url.substr(query);
  size_t end = std::min(slash, query);
  return url.substr(0, end == std::string::npos ? url.size() : end) + "/" + db + tail;
}

// A raw libpq connection for test set-up and inspection, beside the store.
class PgRaw {
 public:
  explicit PgRaw(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    if (PQstatus(conn_.get()) != CONNECTION_OK) error_ = PQerrorMessage(conn_.get());
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // Runs `sql`; returns the first column of every row, one per element.
  std::vector<std::string> Rows(const std::string& sql) {
    pg::ResultPtr r(PQexec(conn_.get(), sql.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(conn_.get());
    std::vector<std::string> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      std::string row;
      for (int c = 0; c < PQnfields(r.get()); ++c) row += (c > 0 ? "|" : "") + std::string(PQgetvalue(r.get(), i, c));
      out.push_back(row);
    }
    return out;
  }
  std::string One(const std::string& sql) {
    auto rows = Rows(sql);
    return rows.empty() ? "" : rows[0];
  }

 private:
  pg::ConnPtr conn_;
  std::string error_;
};

// Creates a database for one test and drops it afterwards.
class PgDatabase {
 public:
  // Returns "" (and records a failure) when the server cannot be reached.
  std::string Create() {
    static std::atomic<int> counter{0};
    name_ = "grid_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::random_device{}() % 1000000);
    PgRaw admin(PgUrl());
    EXPECT_TRUE(admin.ok()) << "GRID_TEST_PG_URL: " << admin.error();
    if (!admin.ok()) return "";
    admin.Rows("CREATE DATABASE " + name_);
    return WithDatabase(PgUrl(), name_);
  }
  ~PgDatabase() {
    if (name_.empty()) return;
    PgRaw admin(PgUrl());
    if (admin.ok()) admin.Rows("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  }

 private:
  std::string name_;
};

std::string TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "grid-store-test-XXXXXX").string();
  char* dir = ::mkdtemp(tmpl.data());
  if (dir == nullptr) std::abort();
  return dir;
}

Machine MakeMachine(int64_t id) {
  Machine m;
  m.id = id;
  m.provider = "0xprovider" + std::to_string(id);
  m.spec.gpu_name = "H100 SXM 80GB";
  m.spec.num_gpus = 8;
  m.spec.gpu_ram = 79.6;
  m.spec.cpu_cores = 128;
  m.spec.cpu_ram = 1007.3;
  m.spec.disk_space = 0.1;
  m.spec.inet_up = 1e-7;
  m.spec.inet_down = 123456789.123;
  m.spec.geolocation = "DE";
  m.spec.datacenter = true;
  m.spec.simulated = false;
  m.spec_json = R"({"gpu_name":"H100 SXM 80GB","note":"a \"quote\"\nand ünïcode"})";
  m.listing.listed = true;
  m.listing.price_per_gpu_hour = 2'100'000;
  m.listing.min_chunk = 2;
  m.listing.end_date_ms = 1'900'000'000'000;
  m.listing.storage_cost = kMax;
  m.created_ms = 1'700'000'000'000 + id % 1000;
  m.updated_ms = 1'700'000'000'500 + id % 1000;
  if (id % 2 == 0) {
    m.agent_address = "0xagent" + std::to_string(id);
    m.removed = id % 4 == 0;
    m.channel_payments = id % 3 == 0;
  }
  return m;
}

Lease MakeLease(int64_t id, std::string renter, uint64_t nonce) {
  Lease l;
  l.id = id;
  l.renter = std::move(renter);
  l.provider = "0xprovider1";
  l.machine_id = 1;
  l.gpus = {0, 1, 7};
  l.price_per_hour = 4'200'000;
  l.fee_bps = 500;
  l.image = "docker.io/library/ubuntu:22.04";
  l.env = {"A=1", "PATH=/usr/bin:/bin"};
  l.command = {"bash", "-c", "echo hi"};
  l.ports = {22, 8888};
  l.ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH renter@laptop";
  l.endpoint_host = "203.0.113.7";
  l.endpoints = {{22, 40123}, {8888, 40124}};
  l.order.offer_id = 1'002;
  l.order.gpus = 3;
  l.order.price_per_hour = 4'200'000;
  l.order.nonce = nonce;
  l.order.expiry_s = 1'800'000'000;
  l.order.signature = "0x" + std::string(130, 'a');
  l.state = market::LeaseState::kRunning;
  l.end_reason = market::EndReason::kNone;
  l.created_ms = 1'700'000'000'000;
  l.started_ms = 1'700'000'001'000;
  l.billed_ms = 60'000;
  l.charged = 70'000;
  l.fee = 3'500;
  l.held = 1'000'000;
  l.settlements = 1;
  l.message = "ok";
  return l;
}

Transfer MakeTransfer(std::string id, std::string debit, std::string credit, int64_t amount, int64_t lease_id = 0,
                      TransferKind kind = TransferKind::kPosted) {
  Transfer t;
  t.id = std::move(id);
  t.debit = std::move(debit);
  t.credit = std::move(credit);
  t.amount = amount;
  t.kind = kind;
  t.lease_id = lease_id;
  t.at_ms = 1'700'000'000'000;
  t.memo = "memo";
  return t;
}

void ExpectSameMachine(const Machine& want, const Machine& got) {
  SCOPED_TRACE("machine " + std::to_string(want.id));
  EXPECT_EQ(want.id, got.id);
  EXPECT_EQ(want.provider, got.provider);
  EXPECT_EQ(want.spec.gpu_name, got.spec.gpu_name);
  EXPECT_EQ(want.spec.num_gpus, got.spec.num_gpus);
  EXPECT_EQ(want.spec.gpu_ram, got.spec.gpu_ram);  // exact: REAL is a binary64
  EXPECT_EQ(want.spec.cpu_cores, got.spec.cpu_cores);
  EXPECT_EQ(want.spec.cpu_ram, got.spec.cpu_ram);
  EXPECT_EQ(want.spec.disk_space, got.spec.disk_space);
  EXPECT_EQ(want.spec.inet_up, got.spec.inet_up);
  EXPECT_EQ(want.spec.inet_down, got.spec.inet_down);
  EXPECT_EQ(want.spec.geolocation, got.spec.geolocation);
  EXPECT_EQ(want.spec.datacenter, got.spec.datacenter);
  EXPECT_EQ(want.spec.simulated, got.spec.simulated);
  EXPECT_TRUE(got.spec.extra.empty()) << "extra is derived from spec_json, not stored";
  EXPECT_EQ(want.spec_json, got.spec_json);
  EXPECT_EQ(want.listing.listed, got.listing.listed);
  EXPECT_EQ(want.listing.price_per_gpu_hour, got.listing.price_per_gpu_hour);
  EXPECT_EQ(want.listing.min_chunk, got.listing.min_chunk);
  EXPECT_EQ(want.listing.end_date_ms, got.listing.end_date_ms);
  EXPECT_EQ(want.listing.storage_cost, got.listing.storage_cost);
  EXPECT_EQ(want.created_ms, got.created_ms);
  EXPECT_EQ(want.updated_ms, got.updated_ms);
  EXPECT_EQ(want.agent_address, got.agent_address);
  EXPECT_EQ(want.removed, got.removed);
  EXPECT_EQ(want.channel_payments, got.channel_payments);
}

void ExpectSameLease(const Lease& want, const Lease& got) {
  SCOPED_TRACE("lease " + std::to_string(want.id));
  EXPECT_EQ(want.id, got.id);
  EXPECT_EQ(want.renter, got.renter);
  EXPECT_EQ(want.provider, got.provider);
  EXPECT_EQ(want.machine_id, got.machine_id);
  EXPECT_EQ(want.gpus, got.gpus);
  EXPECT_EQ(want.price_per_hour, got.price_per_hour);
  EXPECT_EQ(want.fee_bps, got.fee_bps);
  EXPECT_EQ(want.image, got.image);
  EXPECT_EQ(want.env, got.env);
  EXPECT_EQ(want.command, got.command);
  EXPECT_EQ(want.ports, got.ports);
  EXPECT_EQ(want.ssh_key, got.ssh_key);
  EXPECT_EQ(want.endpoint_host, got.endpoint_host);
  EXPECT_EQ(want.endpoints, got.endpoints);
  EXPECT_EQ(want.channel, got.channel);
  EXPECT_EQ(want.order.offer_id, got.order.offer_id);
  EXPECT_EQ(want.order.gpus, got.order.gpus);
  EXPECT_EQ(want.order.price_per_hour, got.order.price_per_hour);
  EXPECT_EQ(want.order.nonce, got.order.nonce);
  EXPECT_EQ(want.order.expiry_s, got.order.expiry_s);
  EXPECT_EQ(want.order.signature, got.order.signature);
  EXPECT_EQ(want.state, got.state);
  EXPECT_EQ(want.end_reason, got.end_reason);
  EXPECT_EQ(want.created_ms, got.created_ms);
  EXPECT_EQ(want.started_ms, got.started_ms);
  EXPECT_EQ(want.ended_ms, got.ended_ms);
  EXPECT_EQ(want.billed_ms, got.billed_ms);
  EXPECT_EQ(want.charged, got.charged);
  EXPECT_EQ(want.fee, got.fee);
  EXPECT_EQ(want.held, got.held);
  EXPECT_EQ(want.settlements, got.settlements);
  EXPECT_EQ(want.message, got.message);
}

void ExpectSameSnapshot(const Snapshot& want, const Snapshot& got) {
  ASSERT_EQ(want.machines.size(), got.machines.size());
  for (size_t i = 0; i < want.machines.size(); ++i) ExpectSameMachine(want.machines[i], got.machines[i]);
  ASSERT_EQ(want.leases.size(), got.leases.size());
  for (size_t i = 0; i < want.leases.size(); ++i) ExpectSameLease(want.leases[i], got.leases[i]);
  EXPECT_EQ(want.accounts, got.accounts);
  EXPECT_EQ(want.meta, got.meta);
}

std::vector<std::string> Ids(const std::vector<Transfer>& ts) {
  std::vector<std::string> ids;
  for (const Transfer& t : ts) ids.push_back(t.id);
  return ids;
}

// ---------------------------------------------------------------------------
// The shared body: every Store must pass all of it.

enum class Backend { kMemory, kSqlite, kPostgres };
const char* NameOf(Backend b) {
  return b == Backend::kMemory ? "Memory" : b == Backend::kSqlite ? "Sqlite" : "Postgres";
}
void PrintTo(Backend b, std::ostream* os) { *os << NameOf(b); }

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    path_ = dir_ + "/grid.db";
    if (GetParam() == Backend::kPostgres) {
      if (PgUrl() == nullptr) GTEST_SKIP() << kNoPg;
      pg_url_ = pg_db_.Create();
      ASSERT_FALSE(pg_url_.empty());
    }
    Open();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open() {
    if (GetParam() == Backend::kMemory) {
      store_ = NewMemoryStore();
      return;
    }
    auto opened = GetParam() == Backend::kPostgres ? OpenPostgresStore(pg_url_) : OpenSqliteStore(path_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  // kAwkward, less what this store refuses by design: PostgreSQL text cannot
  // hold a NUL byte (PostgresTest.NulBytesAreRefusedWhole checks the refusal).
  std::vector<std::string> Awkward() const {
    std::vector<std::string> out;
    for (const std::string& s : kAwkward) {
      if (GetParam() != Backend::kPostgres || s.find('\0') == std::string::npos) out.push_back(s);
    }
    return out;
  }

  // A fresh Store instance on the same data: new connections for SQLite and PostgreSQL. The
  // memory store has nothing to reopen, so it keeps its instance.
  void Reopen() {
    if (GetParam() == Backend::kMemory) return;
    store_.reset();
    Open();
  }

  Snapshot MustLoad() {
    auto snap = store_->Load();
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    return snap.ok() ? std::move(snap).value() : Snapshot{};
  }

  std::vector<Transfer> MustList(TransferQuery q) {
    auto r = store_->ListTransfers(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : std::vector<Transfer>{};
  }

  std::vector<Transfer> AllTransfers() {
    std::vector<Transfer> all;
    Status s = store_->ForEachTransfer([&](const Transfer& t) {
      all.push_back(t);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return all;
  }

  std::string dir_, path_;
  PgDatabase pg_db_;  // before store_: dropped after the store closes
  std::string pg_url_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, EmptyLoad) {
  Snapshot snap = MustLoad();
  EXPECT_TRUE(snap.machines.empty());
  EXPECT_TRUE(snap.leases.empty());
  EXPECT_TRUE(snap.accounts.empty());
  EXPECT_TRUE(snap.meta.empty());
  auto found = store_->FindTransfer("nope");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_TRUE(MustList({}).empty());
  EXPECT_TRUE(AllTransfers().empty());
  EXPECT_TRUE(store_->Commit(ChangeSet{}).ok());
  EXPECT_FALSE(store_->Describe().empty());
}

TEST_P(StoreTest, RoundTripsEveryField) {
  ChangeSet cs;
  Machine m1 = MakeMachine(1);
  m1.spec.extra["cuda_vers"] = 12.4;  // not stored: see ExpectSameMachine
  Machine m2 = MakeMachine(kMax);
  m2.provider = "";
  m2.spec.gpu_name = "ünïcode, \"GPU\"\n";
  m2.spec.datacenter = false;
  m2.spec.simulated = true;
  m2.spec.gpu_ram = 1e300;
  m2.spec_json = "";
  m2.listing = {.listed = false, .price_per_gpu_hour = kMax, .min_chunk = 1, .end_date_ms = 0, .storage_cost = 0};
  m2.created_ms = kMin;
  cs.machines = {m2, m1};  // any order in, id order out

  Lease l1 = MakeLease(7, "0xrenter", std::numeric_limits<uint64_t>::max());
  l1.env = Awkward();
  l1.command = Awkward();
  l1.image = "ünïcode:tag";
  l1.message = "exit 1\nstderr: \"boom\"";
  l1.charged = kMax;
  l1.fee = kMax - 1;
  l1.held = kMin;
  l1.state = market::LeaseState::kEnded;
  l1.end_reason = market::EndReason::kInsufficientFunds;
  l1.ended_ms = 1'700'000'100'000;
  Lease l2 = MakeLease(3, "0xrenter", 0);
  l2.gpus = {};
  l2.env = {};
  l2.command = {""};
  l2.order.signature = "";
  l2.state = market::LeaseState::kPending;
  Lease l3 = MakeLease(kMax, "0xother", 1);
  l3.gpus = {998};
  l3.end_reason = market::EndReason::kHostLost;
  l3.channel = market::ChannelPayment{.channel = "0x" + std::string(64, 'a'),
                                      .contract = "0xcontract",
                                      .chain_id = UINT64_C(1) << 62,
                                      .token = "0xtoken",
                                      .signer = "0xsigner",
                                      .payee = "",
                                      .deposit = kMax,
                                      .expiry_ms = kMin,
                                      .interval_ms = 60'000,
                                      .grace_ms = kMax,
                                      .expiry_margin_ms = 7,
                                      .length_ms = kMin,
                                      .margin = 0,
                                      .voucher = kMax - 1,
                                      .voucher_sig = "0x" + std::string(130, 'b'),
                                      .voucher_ms = 1,
                                      .redeemed = kMax - 2,
                                      .closed = true};
  cs.leases = {l1, l2, l3};

  Transfer t1 = MakeTransfer("faucet:0xrenter:1", "world", "user:0xrenter", kMax);
  Transfer t2 = MakeTransfer("lease:7:hold", "user:0xrenter", "escrow", 1, 7, TransferKind::kHold);
  t2.memo = "ünïcode \"memo\"\n";
  Transfer t3 = MakeTransfer("lease:7:release", "escrow", "user:0xrenter", 1, 7, TransferKind::kRelease);
  t3.memo = "";
  t3.at_ms = kMin;
  cs.transfers = {t1, t2, t3};

  Account a1{.id = "user:0xrenter", .debits_posted = 0, .credits_posted = kMax, .debits_pending = 1,
             .credits_pending = 0};
  Account a2{.id = "escrow", .debits_posted = kMin, .credits_posted = -1, .debits_pending = kMax,
             .credits_pending = kMin};
  Account a3{.id = "world"};
  cs.accounts = {a1, a2, a3};
  cs.meta = {{"next_lease_id", "8"}, {"ünïcode", "a\nb,\"c\""}, {"empty", ""}};
  ASSERT_TRUE(store_->Commit(cs).ok());

  Snapshot want;
  want.machines = {m1, m2};
  want.leases = {l2, l1, l3};
  want.accounts = {a2, a1, a3};  // by id
  want.meta = {{"empty", ""}, {"next_lease_id", "8"}, {"ünïcode", "a\nb,\"c\""}};

  ExpectSameSnapshot(want, MustLoad());
  Reopen();
  ExpectSameSnapshot(want, MustLoad());

  for (const Transfer& t : {t1, t2, t3}) {
    auto found = store_->FindTransfer(t.id);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    ASSERT_TRUE(found->has_value()) << t.id;
    EXPECT_EQ(t, **found);
  }
  EXPECT_EQ((std::vector<Transfer>{t1, t2, t3}), AllTransfers());
}

TEST_P(StoreTest, UpsertOverwrites) {
  ChangeSet first;
  first.machines = {MakeMachine(1)};
  first.leases = {MakeLease(1, "0xr", 1)};
  first.leases[0].channel = market::ChannelPayment{.channel = "0xc1", .signer = "0xs", .deposit = 5, .interval_ms = 1};
  first.accounts = {Account{.id = "world", .debits_posted = 5}};
  first.meta = {{"k", "v1"}};
  ASSERT_TRUE(store_->Commit(first).ok());

  ChangeSet second;
  Machine m = MakeMachine(1);
  m.listing.listed = false;
  m.listing.price_per_gpu_hour = 1;
  m.spec.gpu_name = "A100";
  m.spec_json = "{}";
  Lease l = MakeLease(1, "0xr", 1);  // same order, same lease: not a replay
  l.env = {"ONLY=1"};                // shorter lists must not keep old tails
  l.command = {};
  l.gpus = {3};
  l.state = market::LeaseState::kEnded;
  l.end_reason = market::EndReason::kRenterStopped;
  l.charged = 99;
  // A voucher arrives: the channel row is updated in place.
  l.channel = market::ChannelPayment{.channel = "0xc1", .signer = "0xs", .deposit = 5, .interval_ms = 1,
                                     .voucher = 4, .voucher_sig = "0xsig", .voucher_ms = 9};
  second.machines = {m};
  second.leases = {l};
  second.accounts = {Account{.id = "world", .debits_posted = 7, .credits_pending = 2}};
  second.meta = {{"k", "v2"}};
  ASSERT_TRUE(store_->Commit(second).ok());

  Reopen();
  Snapshot snap = MustLoad();
  ASSERT_EQ(1u, snap.machines.size());
  ExpectSameMachine(m, snap.machines[0]);
  ASSERT_EQ(1u, snap.leases.size());
  ExpectSameLease(l, snap.leases[0]);
  EXPECT_EQ((std::vector<Account>{{.id = "world", .debits_posted = 7, .credits_pending = 2}}), snap.accounts);
  EXPECT_EQ((std::vector<std::pair<std::string, std::string>>{{"k", "v2"}}), snap.meta);

  // The last of several upserts of one id in a ChangeSet wins.
  ChangeSet third;
  third.meta = {{"k", "a"}, {"k", "b"}};
  ASSERT_TRUE(store_->Commit(third).ok());
  EXPECT_EQ("b", MustLoad().meta[0].second);
}

// Withdrawals round-trip every field, and an upsert replaces the row (the
// signed transaction is stored before it is sent, then updated).
TEST_P(StoreTest, WithdrawalsRoundTripAndUpsert) {
  ledger::Withdrawal w;
  w.id = 7;
  w.address = "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  w.to = "0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
  w.amount = 12'500'000;
  w.from_earned = 10'000'000;
  w.from_available = 2'500'000;
  w.created_ms = 1'700'000'000'000;
  w.updated_ms = w.created_ms;
  ChangeSet first;
  first.withdrawals = {w};
  ASSERT_TRUE(store_->Commit(first).ok());

  w.state = ledger::WithdrawalState::kSent;
  w.nonce = 0xffffffffffffff00ULL;  // a uint64 above INT64_MAX survives
  w.raw_tx = "0x02f8" + std::string(200, 'a');
  w.tx_hashes = {"0x" + std::string(64, '1'), "0x" + std::string(64, '2')};
  w.mined_tx = w.tx_hashes[1];
  w.mined_block = 123;
  w.updated_ms += 5;
  w.sent_ms = w.updated_ms;
  w.error = "";
  ledger::Withdrawal other = w;
  other.id = 8;
  other.state = ledger::WithdrawalState::kFailed;
  other.tx_hashes = {};
  other.error = "execution reverted: insufficient balance";
  ChangeSet second;
  second.withdrawals = {w, other};
  ASSERT_TRUE(store_->Commit(second).ok());

  Reopen();
  Snapshot snap = MustLoad();
  ASSERT_EQ(2u, snap.withdrawals.size());
  EXPECT_EQ(w, snap.withdrawals[0]);
  EXPECT_EQ(other, snap.withdrawals[1]);
}

TEST_P(StoreTest, DuplicateTransferIdsFailTheWholeChangeSet) {
  Transfer t1 = MakeTransfer("faucet:1", "world", "user:0xa", 100);
  ChangeSet setup;
  setup.transfers = {t1};
  setup.accounts = {Account{.id = "user:0xa", .credits_posted = 100}};
  ASSERT_TRUE(store_->Commit(setup).ok());
  Reopen();
  const Snapshot before = MustLoad();

  // An identical retry (only at_ms differs: the service stamps it) is "exists".
  Transfer retry = t1;
  retry.at_ms += 5000;
  ChangeSet cs;
  cs.machines = {MakeMachine(1)};
  cs.leases = {MakeLease(1, "0xa", 1)};
  cs.transfers = {MakeTransfer("new:1", "world", "user:0xa", 5), retry};
  cs.accounts = {Account{.id = "user:0xa", .credits_posted = 105}};
  cs.meta = {{"k", "v"}};
  Status s = store_->Commit(cs);
  EXPECT_EQ(Code::kConflict, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("transfer faucet:1 exists"));
  ExpectSameSnapshot(before, MustLoad());
  EXPECT_FALSE(store_->FindTransfer("new:1")->has_value());

  // Same id, different content: an idempotency mismatch.
  Transfer other = t1;
  other.amount = 101;
  cs.transfers = {MakeTransfer("new:1", "world", "user:0xa", 5), other};
  s = store_->Commit(cs);
  EXPECT_EQ(Code::kIdempotencyMismatch, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("transfer faucet:1 exists with different amount"));
  other = t1;
  other.credit = "user:0xb";
  cs.transfers = {other};
  s = store_->Commit(cs);
  EXPECT_EQ(Code::kIdempotencyMismatch, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("accounts"));
  other = t1;
  other.kind = TransferKind::kHold;
  cs.transfers = {other};
  EXPECT_EQ(Code::kIdempotencyMismatch, store_->Commit(cs).code());

  // A duplicate inside one ChangeSet counts too.
  Transfer dup = MakeTransfer("new:2", "world", "user:0xa", 5);
  cs.transfers = {dup, dup};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());

  Reopen();
  ExpectSameSnapshot(before, MustLoad());
  EXPECT_EQ((std::vector<Transfer>{t1}), AllTransfers());
  auto stored = store_->FindTransfer("faucet:1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ(t1, **stored);
}

TEST_P(StoreTest, ReplayedOrderNonceIsAConflict) {
  ChangeSet cs;
  cs.leases = {MakeLease(1, "0xa", 42)};
  ASSERT_TRUE(store_->Commit(cs).ok());

  cs.leases = {MakeLease(2, "0xa", 42)};
  cs.meta = {{"next_lease_id", "3"}};
  Status s = store_->Commit(cs);
  EXPECT_EQ(Code::kConflict, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("order nonce already used"));

  // Same nonce, another renter; the same lease rewritten; unsigned leases.
  cs.leases = {MakeLease(3, "0xb", 42), MakeLease(1, "0xa", 42)};
  cs.meta = {};
  ASSERT_TRUE(store_->Commit(cs).ok());
  Lease unsigned1 = MakeLease(4, "0xa", 0), unsigned2 = MakeLease(5, "0xa", 0);
  unsigned1.order.signature = unsigned2.order.signature = "";
  cs.leases = {unsigned1, unsigned2};
  ASSERT_TRUE(store_->Commit(cs).ok());

  // A replay inside one ChangeSet, and a lease moved onto a used nonce.
  cs.leases = {MakeLease(6, "0xc", 9), MakeLease(7, "0xc", 9)};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());
  cs.leases = {MakeLease(3, "0xa", 42)};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());

  // A lease that moves off its nonce frees it.
  cs.leases = {MakeLease(1, "0xa", 43), MakeLease(8, "0xa", 42)};
  ASSERT_TRUE(store_->Commit(cs).ok());

  Reopen();
  Snapshot snap = MustLoad();
  std::vector<int64_t> ids;
  for (const Lease& l : snap.leases) ids.push_back(l.id);
  EXPECT_EQ((std::vector<int64_t>{1, 3, 4, 5, 8}), ids);
  EXPECT_TRUE(snap.meta.empty());
  cs.leases = {MakeLease(9, "0xa", 43)};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());
}

// A payment channel pays one lease: naming it for a second lease fails the
// whole ChangeSet, in one ChangeSet or across two; rewriting its own lease
// (a voucher arrives) is fine.
TEST_P(StoreTest, PaymentChannelPaysOneLease) {
  auto with_channel = [](int64_t id, const std::string& channel) {
    Lease l = MakeLease(id, "0xa", static_cast<uint64_t>(id));
    l.channel = market::ChannelPayment{.channel = channel, .signer = "0xs", .deposit = 5, .interval_ms = 1};
    return l;
  };
  ChangeSet cs;
  cs.leases = {with_channel(1, "0xc1")};
  ASSERT_TRUE(store_->Commit(cs).ok());
  cs.leases = {with_channel(2, "0xc1")};
  cs.meta = {{"k", "v"}};
  Status s = store_->Commit(cs);
  EXPECT_EQ(Code::kConflict, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("already pays lease 1"));
  cs.leases = {with_channel(3, "0xc2"), with_channel(4, "0xc2")};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());
  Lease again = with_channel(1, "0xc1");
  again.channel->voucher = 3;
  cs.leases = {again, with_channel(5, "0xc3")};
  cs.meta = {};
  ASSERT_TRUE(store_->Commit(cs).ok());

  Reopen();
  Snapshot snap = MustLoad();
  ASSERT_EQ(2u, snap.leases.size());
  EXPECT_EQ(3, snap.leases[0].channel->voucher);
  EXPECT_EQ("0xc3", snap.leases[1].channel->channel);
  EXPECT_TRUE(snap.meta.empty());
  cs.leases = {with_channel(6, "0xc3")};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());
}

TEST_P(StoreTest, ListTransfersNewestFirst) {
  // Inserted over three commits; seq order is t0..t9.
  std::vector<Transfer> ts = {
      MakeTransfer("t0", "world", "user:a", 10),
      MakeTransfer("t1", "world", "user:b", 10),
      MakeTransfer("t2", "user:a", "escrow", 5, 1, TransferKind::kHold),
      MakeTransfer("t3", "user:b", "escrow", 5, 2, TransferKind::kHold),
      MakeTransfer("t4", "escrow", "user:a", 1, 1, TransferKind::kRelease),
      MakeTransfer("t5", "user:a", "earnings:p", 1, 1),
      MakeTransfer("t6", "user:b", "user:a", 2),
      MakeTransfer("t7", "escrow", "user:b", 1, 2, TransferKind::kRelease),
      MakeTransfer("t8", "user:b", "fee", 1, 2),
      MakeTransfer("t9", "world", "user:c", 3),
  };
  for (size_t begin : {0, 4, 7}) {
    ChangeSet cs;
    size_t end = begin == 0 ? 4 : begin == 4 ? 7 : 10;
    cs.transfers.assign(ts.begin() + begin, ts.begin() + end);
    ASSERT_TRUE(store_->Commit(cs).ok());
  }
  Reopen();
  using V = std::vector<std::string>;
  EXPECT_EQ((V{"t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1", "t0"}), Ids(MustList({})));
  EXPECT_EQ((V{"t9", "t8", "t7"}), Ids(MustList({.limit = 3})));
  EXPECT_EQ((V{"t6", "t5", "t4", "t2", "t0"}), Ids(MustList({.accounts = {"user:a"}})));
  EXPECT_EQ((V{"t6", "t5"}), Ids(MustList({.accounts = {"user:a"}, .limit = 2})));
  EXPECT_EQ((V{"t9", "t6", "t5", "t4", "t2", "t0"}), Ids(MustList({.accounts = {"user:c", "user:a"}})));
  EXPECT_EQ((V{"t9", "t8", "t7", "t6"}), Ids(MustList({.accounts = {"user:a", "user:b", "user:c"}, .limit = 4})));
  EXPECT_EQ((V{"t8", "t7", "t3"}), Ids(MustList({.lease_id = 2})));
  EXPECT_EQ((V{"t8", "t7"}), Ids(MustList({.lease_id = 2, .limit = 2})));
  EXPECT_EQ((V{"t5", "t4", "t2"}), Ids(MustList({.accounts = {"user:a"}, .lease_id = 1})));
  EXPECT_EQ((V{"t5"}), Ids(MustList({.accounts = {"earnings:p", "fee"}, .lease_id = 1})));
  EXPECT_EQ((V{}), Ids(MustList({.accounts = {"nobody"}})));
  EXPECT_EQ((V{}), Ids(MustList({.lease_id = 99})));
  EXPECT_EQ((V{}), Ids(MustList({.limit = 0})));
  auto full = MustList({.accounts = {"fee"}});
  ASSERT_EQ(1u, full.size());
  EXPECT_EQ(ts[8], full[0]);
}

TEST_P(StoreTest, ForEachTransferInInsertionOrder) {
  // Ids that sort differently from insertion order, across several pages.
  std::vector<Transfer> want;
  for (int batch = 0; batch < 3; ++batch) {
    ChangeSet cs;
    for (int i = 0; i < 700; ++i) {
      int n = batch * 700 + i;
      cs.transfers.push_back(MakeTransfer("id-" + std::to_string((n * 7919) % 10007), "world",
                                          "user:" + std::to_string(n % 13), n + 1));
    }
    want.insert(want.end(), cs.transfers.begin(), cs.transfers.end());
    ASSERT_TRUE(store_->Commit(cs).ok());
  }
  Reopen();
  EXPECT_EQ(want, AllTransfers());

  int seen = 0;
  ASSERT_TRUE(store_->ForEachTransfer([&](const Transfer& t) {
    EXPECT_EQ(want[seen].id, t.id);
    return ++seen < 600;
  }).ok());
  EXPECT_EQ(600, seen);

  // The visitor may call the store (no lock is held around it).
  int calls = 0;
  ASSERT_TRUE(store_->ForEachTransfer([&](const Transfer& t) {
    auto found = store_->FindTransfer(t.id);
    EXPECT_TRUE(found.ok() && found->has_value());
    return ++calls < 3;
  }).ok());
}

TEST_P(StoreTest, FailingChangeSetLeavesNothingBehind) {
  ChangeSet setup;
  setup.machines = {MakeMachine(1)};
  setup.leases = {MakeLease(1, "0xa", 1)};
  setup.transfers = {MakeTransfer("old", "world", "user:0xa", 10)};
  setup.accounts = {Account{.id = "user:0xa", .credits_posted = 10}};
  setup.meta = {{"k", "v"}};
  ASSERT_TRUE(store_->Commit(setup).ok());
  const Snapshot before = MustLoad();

  // Every kind of change, with the failure in the last transfer.
  ChangeSet cs;
  Machine m1 = MakeMachine(1);
  m1.listing.listed = false;
  cs.machines = {m1, MakeMachine(2)};
  Lease l1 = MakeLease(1, "0xa", 1);
  l1.env = {"CHANGED=1"};
  l1.charged = 5;
  cs.leases = {l1, MakeLease(2, "0xa", 2)};
  Transfer clash = MakeTransfer("old", "world", "user:0xa", 11);
  cs.transfers = {MakeTransfer("n1", "world", "user:0xa", 1), MakeTransfer("n2", "world", "user:0xa", 1), clash};
  cs.accounts = {Account{.id = "user:0xa", .credits_posted = 13}, Account{.id = "world", .debits_posted = 13}};
  cs.meta = {{"k", "changed"}, {"k2", "new"}};
  EXPECT_EQ(Code::kIdempotencyMismatch, store_->Commit(cs).code());
  ExpectSameSnapshot(before, MustLoad());
  EXPECT_EQ(1u, AllTransfers().size());
  EXPECT_FALSE(store_->FindTransfer("n1")->has_value());

  // A failure among the leases (before the transfers) undoes the machines.
  cs.transfers = {MakeTransfer("n1", "world", "user:0xa", 1)};
  cs.leases = {l1, MakeLease(2, "0xa", 1)};
  EXPECT_EQ(Code::kConflict, store_->Commit(cs).code());
  // A spec number no store can give back.
  cs.leases = {};
  cs.machines = {MakeMachine(3), MakeMachine(4)};
  cs.machines[1].spec.gpu_ram = std::nan("");
  EXPECT_EQ(Code::kInvalidArgument, store_->Commit(cs).code());
  cs.machines[1].spec.gpu_ram = INFINITY;
  EXPECT_EQ(Code::kInvalidArgument, store_->Commit(cs).code());

  Reopen();
  ExpectSameSnapshot(before, MustLoad());
  EXPECT_EQ(1u, AllTransfers().size());

  // And the store still works afterwards.
  cs.machines = {MakeMachine(3)};
  ASSERT_TRUE(store_->Commit(cs).ok());
  EXPECT_EQ(2u, MustLoad().machines.size());
  EXPECT_TRUE(store_->FindTransfer("n1")->has_value());
}

TEST_P(StoreTest, SafeToCallFromSeveralThreads) {
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        ChangeSet cs;
        std::string id = "w" + std::to_string(w) + ":" + std::to_string(i);
        cs.transfers = {MakeTransfer(id, "world", "user:" + std::to_string(w), 1)};
        cs.meta = {{"w" + std::to_string(w), std::to_string(i)}};
        EXPECT_TRUE(store_->Commit(cs).ok());
        EXPECT_TRUE(store_->Load().ok());
        EXPECT_TRUE(store_->FindTransfer(id)->has_value());
        EXPECT_FALSE(MustList({.accounts = {"user:" + std::to_string(w)}, .limit = 5}).empty());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(static_cast<size_t>(kThreads * kEach), AllTransfers().size());
  EXPECT_EQ(static_cast<size_t>(kThreads), MustLoad().meta.size());
}

INSTANTIATE_TEST_SUITE_P(AllStores, StoreTest,
                         ::testing::Values(Backend::kMemory, Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) { return NameOf(info.param); });

// ---------------------------------------------------------------------------
// Replicas: two stores on one database (store.h, "Replicas"). Every shared
// store must pass all of it: the in-memory database and PostgreSQL.

enum class SharedBackend { kMemory, kPostgres };
void PrintTo(SharedBackend b, std::ostream* os) { *os << (b == SharedBackend::kMemory ? "Memory" : "Postgres"); }

class ReplicaStoreTest : public ::testing::TestWithParam<SharedBackend> {
 protected:
  void SetUp() override {
    if (GetParam() == SharedBackend::kPostgres) {
      if (PgUrl() == nullptr) GTEST_SKIP() << kNoPg;
      pg_url_ = pg_db_.Create();
      ASSERT_FALSE(pg_url_.empty());
    } else {
      memory_ = NewMemoryDatabase();
    }
    a_ = OpenReplica();
    b_ = OpenReplica();
    ASSERT_TRUE(a_ && b_);
  }

  std::unique_ptr<Store> OpenReplica() {
    if (GetParam() == SharedBackend::kMemory) return OpenMemoryReplica(memory_);
    auto opened = OpenPostgresStore(pg_url_);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  static ChangeSet Numbered(int64_t after_seq, ChangeSet cs) {
    cs.after_seq = after_seq;
    return cs;
  }

  PgDatabase pg_db_;
  std::string pg_url_;
  std::shared_ptr<MemoryDatabase> memory_;
  std::unique_ptr<Store> a_, b_;
};

TEST_P(ReplicaStoreTest, NumberedCommitsFormOneOrder) {
  EXPECT_TRUE(a_->Shared());
  EXPECT_EQ(0, a_->Head().value());
  ChangeSet first;
  first.machines = {MakeMachine(1)};
  first.meta = {{"join_token:abc", "0xp 1 0"}};
  ASSERT_TRUE(a_->Commit(Numbered(0, first)).ok());
  EXPECT_EQ(1, b_->Head().value());

  // b_ decided on the state before a_'s commit: refused, nothing written.
  ChangeSet late;
  late.machines = {MakeMachine(2)};
  late.transfers = {MakeTransfer("t1", "world", "user:0xa", 5)};
  late.accounts = {Account{.id = "user:0xa", .credits_posted = 5}};
  Status stale = b_->Commit(Numbered(0, late));
  EXPECT_EQ(Code::kAborted, stale.code()) << stale.ToString();
  EXPECT_EQ(1, a_->Head().value());
  EXPECT_EQ(1u, a_->Load()->machines.size()) << "an aborted commit writes nothing";
  EXPECT_FALSE(a_->FindTransfer("t1")->has_value());

  // b_ catches up: the rows a_ wrote, as they are now.
  auto changes = b_->ChangesSince(0);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  EXPECT_EQ(1, changes->seq);
  EXPECT_FALSE(changes->reload);
  ASSERT_EQ(1u, changes->rows.machines.size());
  EXPECT_EQ(1, changes->rows.machines[0].id);
  ASSERT_EQ(1u, changes->rows.meta.size());
  EXPECT_EQ("join_token:abc", changes->rows.meta[0].first);
  EXPECT_TRUE(changes->rows.leases.empty());
  EXPECT_TRUE(changes->rows.accounts.empty());

  ASSERT_TRUE(b_->Commit(Numbered(1, late)).ok());
  auto later = a_->ChangesSince(1);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(2, later->seq);
  ASSERT_EQ(1u, later->rows.machines.size());
  EXPECT_EQ(2, later->rows.machines[0].id);
  ASSERT_EQ(1u, later->rows.accounts.size());
  EXPECT_EQ(5, later->rows.accounts[0].credits_posted);
  EXPECT_TRUE(a_->ChangesSince(2)->rows.machines.empty()) << "nothing after the head";
  EXPECT_EQ(2, a_->Load()->seq);

  // A failing numbered commit (a duplicate transfer) leaves the log alone.
  ChangeSet dup;
  dup.transfers = {MakeTransfer("t1", "world", "user:0xa", 6)};
  EXPECT_EQ(Code::kIdempotencyMismatch, a_->Commit(Numbered(2, dup)).code());
  EXPECT_EQ(2, b_->Head().value());
}

// Racing replicas: every numbered commit that succeeds has its own number,
// and the head counts exactly the successes.
TEST_P(ReplicaStoreTest, RacingCommitsNeverShareANumber) {
  constexpr int kThreads = 4, kEach = 15;
  std::atomic<int> ok{0}, aborted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store* s = t % 2 ? b_.get() : a_.get();
      for (int i = 0; i < kEach; ++i) {
        auto head = s->Head();
        ASSERT_TRUE(head.ok());
        ChangeSet cs;
        cs.machines = {MakeMachine(1 + t * kEach + i)};
        Status st = s->Commit(Numbered(*head, cs));
        if (st.ok()) ++ok;
        else if (st.code() == Code::kAborted) ++aborted;
        else ADD_FAILURE() << st.ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(kThreads * kEach, ok + aborted);
  EXPECT_EQ(ok.load(), a_->Head().value());
  EXPECT_EQ(static_cast<size_t>(ok.load()), a_->Load()->machines.size());
  auto all = b_->ChangesSince(0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(static_cast<size_t>(ok.load()), all->rows.machines.size());
}

TEST_P(ReplicaStoreTest, WaitForChangeWakesOnAnotherReplicasCommit) {
  auto quiet = b_->WaitForChange(0, 50);
  ASSERT_TRUE(quiet.ok()) << quiet.status().ToString();
  EXPECT_EQ(0, *quiet) << "nothing committed: back at the timeout";
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ChangeSet cs;
    cs.machines = {MakeMachine(7)};
    EXPECT_TRUE(a_->Commit(Numbered(0, cs)).ok());
  });
  auto start = std::chrono::steady_clock::now();
  auto woke = b_->WaitForChange(0, 10'000);
  auto waited = std::chrono::steady_clock::now() - start;
  writer.join();
  ASSERT_TRUE(woke.ok()) << woke.status().ToString();
  EXPECT_EQ(1, *woke);
  // The watcher re-reads the head each second anyway; a wake well under
  // that comes from the notification.
  EXPECT_LT(waited, std::chrono::milliseconds(700)) << "woken by the commit's notification, not by polling";
}

TEST_P(ReplicaStoreTest, OneLeaderAtATimeAndItPassesOn) {
  EXPECT_TRUE(a_->HoldLeadership().value());
  EXPECT_FALSE(b_->HoldLeadership().value());
  EXPECT_TRUE(a_->HoldLeadership().value()) << "asking again keeps it";
  a_.reset();  // the leader goes away
  EXPECT_TRUE(b_->HoldLeadership().value());
  auto c = OpenReplica();
  EXPECT_FALSE(c->HoldLeadership().value());
}

TEST_P(ReplicaStoreTest, SharedStateIsSeenByEveryReplicaAndTakenOnce) {
  ASSERT_TRUE(a_->PutShared("nonce:abc", "v1", 1'000).ok());
  ASSERT_TRUE(a_->PutShared("nonce:abd", "v2", 1'000).ok());
  ASSERT_TRUE(a_->PutShared("beat:1", "x", 1'000).ok());
  ASSERT_TRUE(a_->PutShared("nonce:old", "v0", 10).ok());
  EXPECT_EQ("v1", b_->GetShared("nonce:abc", 500)->value_or(""));
  EXPECT_FALSE(b_->GetShared("nonce:old", 500)->has_value()) << "expired";
  auto listed = b_->ListShared("nonce:", 500);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(2u, listed->size());
  EXPECT_EQ("nonce:abc", (*listed)[0].first);
  EXPECT_EQ("v2", (*listed)[1].second);
  EXPECT_EQ("v1", b_->TakeShared("nonce:abc", 500)->value_or(""));
  EXPECT_FALSE(a_->TakeShared("nonce:abc", 500)->has_value()) << "taken once";
  EXPECT_FALSE(a_->TakeShared("nonce:old", 500)->has_value()) << "an expired value is not given";
  ASSERT_TRUE(a_->PutShared("beat:1", "y", 2'000).ok());
  EXPECT_EQ("y", b_->GetShared("beat:1", 1'500)->value_or("")) << "overwritten, with the new expiry";
  ASSERT_TRUE(a_->Maintain(1000, 1'200).ok());
  EXPECT_FALSE(b_->GetShared("nonce:abd", 0)->has_value()) << "expired rows are deleted";
  EXPECT_TRUE(b_->GetShared("beat:1", 0)->has_value());
}

TEST_P(ReplicaStoreTest, TrimmedLogAsksForAReload) {
  for (int i = 0; i < 5; ++i) {
    ChangeSet cs;
    cs.machines = {MakeMachine(i + 1)};
    ASSERT_TRUE(a_->Commit(Numbered(i, cs)).ok());
  }
  ASSERT_TRUE(a_->Maintain(/*keep_changes=*/2, 0).ok());
  auto old = b_->ChangesSince(0);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->reload);
  EXPECT_EQ(5, old->seq);
  auto recent = b_->ChangesSince(3);
  ASSERT_TRUE(recent.ok());
  EXPECT_FALSE(recent->reload);
  EXPECT_EQ(2u, recent->rows.machines.size());
}

INSTANTIATE_TEST_SUITE_P(SharedStores, ReplicaStoreTest,
                         ::testing::Values(SharedBackend::kMemory, SharedBackend::kPostgres),
                         [](const ::testing::TestParamInfo<SharedBackend>& info) {
                           return info.param == SharedBackend::kMemory ? "Memory" : "Postgres";
                         });

TEST(SqliteStoreTest, IsNotSharedAndRefusesNumberedCommits) {
  std::string dir = TempDir();
  auto store = OpenSqliteStore(dir + "/grid.db");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Shared());
  EXPECT_TRUE((*store)->HoldLeadership().value());
  ChangeSet cs;
  cs.machines = {MakeMachine(1)};
  cs.after_seq = 0;
  EXPECT_EQ(Code::kInternal, (*store)->Commit(cs).code());
  EXPECT_EQ(Code::kInternal, (*store)->PutShared("k", "v", 1).code());
  EXPECT_TRUE((*store)->Load()->machines.empty());
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------
// OpenStore() urls.

// One writer per database file; readers (the offline audit) may look on.
TEST(SqliteStoreTest, OneWriterPerDatabase) {
  std::string db = TempDir() + "/grid.db";
  auto first = OpenSqliteStore(db);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = OpenSqliteStore(db);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kConflict);
  EXPECT_NE(second.status().message().find("in use by another broker"), std::string::npos);
  EXPECT_TRUE(OpenSqliteStore(db, {.read_only = true}).ok());
  first->reset();
  EXPECT_TRUE(OpenSqliteStore(db).ok()) << "the lock goes with the store";
}

TEST(OpenStoreTest, Urls) {
  std::string dir = TempDir();
  auto mem = OpenStore("memory:");
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ("memory:", (*mem)->Describe());

  auto sqlite = OpenStore("sqlite:" + dir + "/a.db");
  ASSERT_TRUE(sqlite.ok()) << sqlite.status().ToString();
  EXPECT_EQ("sqlite:" + dir + "/a.db", (*sqlite)->Describe());
  auto bare = OpenStore(dir + "/b.db");
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  EXPECT_EQ("sqlite:" + dir + "/b.db", (*bare)->Describe());
  EXPECT_TRUE(std::filesystem::exists(dir + "/b.db"));
  auto ro = OpenStore("sqlite:" + dir + "/a.db", /*read_only=*/true);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_FALSE((*ro)->Commit(ChangeSet{.meta = {{"k", "v"}}}).ok());

  // Nothing listens on port 1: the error names the server, not the password.
  for (const char* url : {"postgres://grid:secret@127.0.0.1:1/grid", "postgresql://grid:secret@127.0.0.1:1/grid"}) {
    auto pg = OpenStore(url);
    EXPECT_EQ(Code::kUnavailable, pg.status().code()) << pg.status().ToString();
    EXPECT_THAT(pg.status().message(), HasSubstr("postgres://grid@127.0.0.1:1/grid"));
    EXPECT_THAT(pg.status().message(), ::testing::Not(HasSubstr("secret")));
  }
  // libpq quotes the part of a URL it cannot read: scrubbed too.
  auto bad = OpenStore("postgres://grid:se%ZZcret@127.0.0.1:1/grid");
  EXPECT_EQ(Code::kInvalidArgument, bad.status().code()) << bad.status().ToString();
  EXPECT_THAT(bad.status().message(), ::testing::Not(HasSubstr("ZZcret")));
  auto no_slashes = OpenStore("postgres:grid:secret@db");
  EXPECT_EQ(Code::kInvalidArgument, no_slashes.status().code());
  EXPECT_THAT(no_slashes.status().message(), ::testing::Not(HasSubstr("secret")));

  auto other = OpenStore("mysql://u:pw@db/grid");
  EXPECT_EQ(Code::kInvalidArgument, other.status().code());
  EXPECT_THAT(other.status().message(), HasSubstr("mysql://"));
  EXPECT_THAT(other.status().message(), ::testing::Not(HasSubstr("pw")));
  EXPECT_EQ(Code::kInvalidArgument, OpenStore("redis:x").status().code());
  EXPECT_EQ(Code::kInvalidArgument, OpenStore("").status().code());
  EXPECT_EQ(Code::kInvalidArgument, OpenStore("sqlite:").status().code());
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------
// SQLite only.

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    path_ = dir_ + "/grid.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs SQL on the file directly, beside the store.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_open(path_.c_str(), &db));
    char* err = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err)) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::string dir_, path_;
};

TEST_F(SqliteTest, ReadOnlyOpenOfMissingFileFailsClearly) {
  auto r = OpenSqliteStore(path_, {.read_only = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kNotFound, r.status().code());
  EXPECT_THAT(r.status().message(), HasSubstr(path_));
  EXPECT_FALSE(std::filesystem::exists(path_)) << "a read-only open must not create the file";
}

TEST_F(SqliteTest, ReadOnlyOpenNeedsTheSchema) {
  std::ofstream(path_).close();  // an empty file is an empty database
  auto r = OpenSqliteStore(path_, {.read_only = true});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("no Gridmarket schema"));
  EXPECT_THAT(r.status().message(), HasSubstr(path_));
}

TEST_F(SqliteTest, NotADatabaseFailsClearly) {
  std::ofstream(path_) << "this is not an SQLite database, just some text long enough to have a header......";
  auto r = OpenSqliteStore(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path_));
  auto ro = OpenSqliteStore(path_, {.read_only = true});
  ASSERT_FALSE(ro.ok());
  EXPECT_THAT(ro.status().message(), HasSubstr(path_));
}

TEST_F(SqliteTest, OpenInMissingDirectoryNamesThePath) {
  auto r = OpenSqliteStore(dir_ + "/no/such/dir/grid.db");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("/no/such/dir/grid.db"));
}

TEST_F(SqliteTest, NewerSchemaIsRefused) {
  ASSERT_TRUE(OpenSqliteStore(path_).ok());
  RawExec("PRAGMA user_version = 999");
  for (bool read_only : {false, true}) {
    auto r = OpenSqliteStore(path_, {.read_only = read_only});
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("newer than this binary"));
  }
}

TEST_F(SqliteTest, ReadOnlyStoreReadsButCannotWrite) {
  auto rw = OpenSqliteStore(path_);
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  ChangeSet cs;
  cs.transfers = {MakeTransfer("t1", "world", "user:a", 5)};
  cs.meta = {{"k", "v"}};
  ASSERT_TRUE((*rw)->Commit(cs).ok());

  // Beside a live writer (WAL), and again after it has closed.
  auto ro = OpenSqliteStore(path_, {.read_only = true});
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  cs.transfers = {MakeTransfer("t2", "world", "user:a", 5)};
  ASSERT_TRUE((*rw)->Commit(cs).ok());
  EXPECT_EQ(2, (int)(*ro)->ListTransfers({}).value().size()) << "a reader sees later commits";
  ro = Status(Code::kInternal, "closed");
  rw = Status(Code::kInternal, "closed");

  ro = OpenSqliteStore(path_, {.read_only = true});
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  auto snap = (*ro)->Load();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(1u, snap->meta.size());
  cs.transfers = {MakeTransfer("t3", "world", "user:a", 5)};
  Status s = (*ro)->Commit(cs);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("read-only"));
  EXPECT_FALSE((*ro)->FindTransfer("t3")->has_value());
  EXPECT_TRUE((*ro)->FindTransfer("t2")->has_value());
}

TEST_F(SqliteTest, SchemaAndPragmas) {
  ASSERT_TRUE(OpenSqliteStore(path_).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path_.c_str(), &db));
  auto one = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, sql, -1, &st, nullptr)) << sql;
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
  };
  EXPECT_EQ("wal", one("PRAGMA journal_mode"));
  EXPECT_EQ(std::to_string(internal::kMigrations.size()), one("PRAGMA user_version"));
  EXPECT_EQ("ok", one("PRAGMA integrity_check"));
  // STRICT: a wrong type is refused by the table itself.
  EXPECT_NE(SQLITE_OK, sqlite3_exec(db, "INSERT INTO meta (key, value) VALUES ('k', x'00')", nullptr, nullptr, nullptr));
  sqlite3_close(db);
}

// A database written by an older binary (schema version 1) is migrated on
// open, keeping its rows; new columns take their defaults.
TEST_F(SqliteTest, MigratesAVersionOneDatabase) {
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open(path_.c_str(), &db));
  std::string v1(internal::kMigrations[0]);
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db, v1.c_str(), nullptr, nullptr, nullptr));
  ASSERT_EQ(SQLITE_OK, sqlite3_exec(db,
                                    "INSERT INTO machines VALUES (7, '0xp', 'RTX 4090', 1, 24, 16, 64, 1000, 500, "
                                    "1000, 'DE', 0, 1, '{}', 1, 350000, 1, 0, 0, 1, 2); "
                                    "INSERT INTO leases VALUES (3, '0xr', '0xp', 7, '0', 350000, 0, 'host', 7001, 1, "
                                    "350000, 9, 1800000000, '', 'running', '', 1, 2, 0, 0, 0, 0, 0, 0, 'started'); "
                                    "PRAGMA user_version = 1;",
                                    nullptr, nullptr, nullptr));
  sqlite3_close(db);
  auto store = OpenSqliteStore(path_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto snap = (*store)->Load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->machines.size(), 1u);
  EXPECT_EQ(snap->machines[0].id, 7);
  EXPECT_EQ(snap->machines[0].listing.price_per_gpu_hour, 350000);
  EXPECT_EQ(snap->machines[0].agent_address, "");
  EXPECT_FALSE(snap->machines[0].removed);
  ASSERT_EQ(snap->leases.size(), 1u);
  EXPECT_EQ(snap->leases[0].message, "started");
  EXPECT_TRUE(snap->leases[0].ports.empty());
  EXPECT_EQ(snap->leases[0].ssh_key, "");
  EXPECT_TRUE(snap->leases[0].endpoints.empty());
}

// A child commits changes and reports each acknowledged one on a pipe; the
// parent SIGKILLs it at a random point, reopens, and finds every acked change.
TEST_F(SqliteTest, AcknowledgedCommitsSurviveKill9) {
  constexpr int kCommits = 2000;  // far more than it reaches before the kill
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const int kill_after = std::uniform_int_distribution<int>(1, 150)(rng);
  {
    auto created = OpenSqliteStore(path_);  // migrate before the race starts
    ASSERT_TRUE(created.ok()) << created.status().ToString();
  }

  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto store = OpenSqliteStore(path_);
    if (!store.ok()) ::_exit(2);
    for (int i = 0; i < kCommits; ++i) {
      ChangeSet cs;
      cs.transfers = {MakeTransfer("t" + std::to_string(i), "world", "user:a", i + 1)};
      cs.accounts = {Account{.id = "user:a", .credits_posted = i + 1}};
      cs.meta = {{"last", std::to_string(i)}};
      if (!(*store)->Commit(cs).ok()) ::_exit(3);
      std::string line = "acked " + std::to_string(i) + "\n";
      if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(4);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  FILE* in = ::fdopen(fds[0], "r");
  ASSERT_NE(nullptr, in);
  int acked = -1, lines = 0;
  char buf[64];
  while (std::fgets(buf, sizeof buf, in) != nullptr) {
    int i = -1;
    ASSERT_EQ(1, std::sscanf(buf, "acked %d", &i)) << buf;
    ASSERT_EQ(acked + 1, i);
    acked = i;
    if (++lines == kill_after) ::kill(pid, SIGKILL);
  }
  std::fclose(in);
  int wstatus = 0;
  ASSERT_EQ(pid, ::waitpid(pid, &wstatus, 0));
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "child status " << wstatus;
  ASSERT_GE(acked, kill_after - 1);

  auto store = OpenSqliteStore(path_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (int i = 0; i <= acked; ++i) {
    auto t = (*store)->FindTransfer("t" + std::to_string(i));
    ASSERT_TRUE(t.ok() && t->has_value()) << "acknowledged transfer t" << i << " lost (acked up to " << acked << ")";
  }
  auto snap = (*store)->Load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(1u, snap->accounts.size());
  // The child may have committed one more than it reported, never fewer.
  EXPECT_GE(snap->accounts[0].credits_posted, acked + 1);
  EXPECT_LE(snap->accounts[0].credits_posted, acked + 2);
  int count = 0;
  ASSERT_TRUE((*store)->ForEachTransfer([&](const Transfer&) { return ++count, true; }).ok());
  EXPECT_EQ(snap->accounts[0].credits_posted, count) << "transfers and account committed together";
}

// ---------------------------------------------------------------------------
// Migrations in PostgreSQL's dialect (no server needed).

TEST(MigrationsTest, EveryStepTranslatesToPostgres) {
  for (size_t i = 0; i < internal::kMigrations.size(); ++i) {
    SCOPED_TRACE("migration " + std::to_string(i + 1));
    auto pg = internal::ToPostgres(internal::kMigrations[i]);
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    // Outside comments no SQLite-only word is left.
    std::string code;
    for (size_t pos = 0; pos < pg->size();) {
      size_t dash = pg->find("--", pos);
      code += pg->substr(pos, dash == std::string::npos ? std::string::npos : dash - pos);
      if (dash == std::string::npos) break;
      pos = pg->find('\n', dash);
      if (pos == std::string::npos) break;
    }
    for (const char* word : {"INTEGER", "REAL", "STRICT", "AUTOINCREMENT"}) {
      EXPECT_THAT(code, ::testing::Not(HasSubstr(word))) << *pg;
    }
  }
  auto first = internal::ToPostgres(internal::kMigrations[0]);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(*first, HasSubstr("seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"));
  EXPECT_THAT(*first, HasSubstr("gpu_ram            DOUBLE PRECISION    NOT NULL"));
  EXPECT_THAT(*first, HasSubstr("  value TEXT NOT NULL\n);"));
}

TEST(MigrationsTest, ToPostgresKeepsCommentsAndLiteralsAndRefusesSqliteOnlyWords) {
  auto ok = internal::ToPostgres("CREATE TABLE t (a integer, b Real DEFAULT 'INTEGER', \"Strict\" TEXT) strict; "
                                 "-- an INTEGER in a comment\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ("CREATE TABLE t (a BIGINT, b DOUBLE PRECISION DEFAULT 'INTEGER', \"Strict\" TEXT); "
            "-- an INTEGER in a comment\n",
            *ok);
  for (const char* sql : {"CREATE TABLE t (a INT)", "PRAGMA foreign_keys = ON", "CREATE TABLE t (a TEXT) WITHOUT ROWID",
                          "CREATE TABLE t (a BLOB)", "INSERT OR REPLACE INTO t VALUES (1)",
                          "CREATE TABLE t (a INTEGER PRIMARY KEY AUTOINCREMENT) STRICT, WITHOUT ROWID",
                          "CREATE TABLE t (id INTEGER AUTOINCREMENT)", "STRICT", "SELECT 'unterminated"}) {
    auto r = internal::ToPostgres(sql);
    EXPECT_FALSE(r.ok()) << sql << " -> " << (r.ok() ? *r : "");
  }
}

// ---------------------------------------------------------------------------
// PostgreSQL only.

class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgUrl() == nullptr) GTEST_SKIP() << kNoPg;
    url_ = db_.Create();
    ASSERT_FALSE(url_.empty());
  }

  Result<std::unique_ptr<Store>> Open(bool read_only = false) {
    return OpenPostgresStore(url_, {.read_only = read_only});
  }

  PgDatabase db_;
  std::string url_;
};

// The adapter keeps both stores' tables, columns, types, NOT NULLs and
// indexes the same: compared on the live schemas.
TEST_F(PostgresTest, SchemaMatchesSqlite) {
  std::string dir = TempDir();
  ASSERT_TRUE(OpenSqliteStore(dir + "/grid.db").ok());
  auto pg_store = Open();
  ASSERT_TRUE(pg_store.ok()) << pg_store.status().ToString();

  std::vector<std::string> sqlite_columns, sqlite_indexes;
  sqlite3* db = nullptr;
  ASSERT_EQ(SQLITE_OK, sqlite3_open((dir + "/grid.db").c_str(), &db));
  auto each = [&](const std::string& sql, const std::function<void(sqlite3_stmt*)>& row) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(SQLITE_OK, sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr)) << sql;
    while (sqlite3_step(st) == SQLITE_ROW) row(st);
    sqlite3_finalize(st);
  };
  auto text = [](sqlite3_stmt* st, int col) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, col))); };
  std::vector<std::string> tables;
  each("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
       [&](sqlite3_stmt* st) { tables.push_back(text(st, 0)); });
  for (const std::string& t : tables) {
    each("SELECT name, type, \"notnull\" FROM pragma_table_info('" + t + "')", [&](sqlite3_stmt* st) {
      std::string type = text(st, 1);
      type = type == "INTEGER" ? "bigint" : type == "REAL" ? "double precision" : type == "TEXT" ? "text" : type;
      sqlite_columns.push_back(t + "." + text(st, 0) + " " + type + (sqlite3_column_int(st, 2) ? " NOT NULL" : ""));
    });
  }
  each("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
       [&](sqlite3_stmt* st) { sqlite_indexes.push_back(text(st, 0)); });
  sqlite3_close(db);
  std::filesystem::remove_all(dir);

  PgRaw raw(url_);
  ASSERT_TRUE(raw.ok()) << raw.error();
  std::vector<std::string> pg_columns;
  for (const std::string& row : raw.Rows(
           "SELECT table_name || '.' || column_name || ' ' || data_type || "
           "CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END FROM information_schema.columns "
           "WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position")) {
    pg_columns.push_back(row);
  }
  // The primary and unique constraints' own indexes are named by each engine; the rest by us.
  std::vector<std::string> pg_indexes =
      raw.Rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'schema_migrations' "
               "AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'");
  // SQLite's integer primary keys are NOT NULL implicitly (PRAGMA says 0):
  // mark them so before comparing.
  for (std::string& c : sqlite_columns) {
    for (const char* pk : {"machines.id bigint", "leases.id bigint", "transfers.seq bigint", "withdrawals.id bigint",
                           "lease_channels.lease_id bigint"}) {
      if (c == pk) c += " NOT NULL";
    }
  }
  std::sort(sqlite_columns.begin(), sqlite_columns.end());
  std::sort(pg_columns.begin(), pg_columns.end());
  std::sort(sqlite_indexes.begin(), sqlite_indexes.end());
  std::sort(pg_indexes.begin(), pg_indexes.end());
  EXPECT_GT(sqlite_columns.size(), 80u);
  EXPECT_EQ(sqlite_columns, pg_columns);
  EXPECT_EQ(sqlite_indexes, pg_indexes);

  std::vector<std::string> versions = raw.Rows("SELECT version FROM schema_migrations ORDER BY version");
  std::vector<std::string> want;
  for (size_t v = 1; v <= internal::kMigrations.size(); ++v) want.push_back(std::to_string(v));
  EXPECT_EQ(want, versions);
  EXPECT_EQ("BIGINT", internal::ToPostgres("INTEGER").value()) << "sanity";
}

// Brokers starting at once: one migrates (the others wait on the migration
// lock, then find the schema current), and all of them open the database, as
// replicas do; exactly one of them holds leadership. Without the migration
// lock the others would fail inside CREATE TABLE instead.
TEST_F(PostgresTest, ConcurrentStartsMigrateOnceAndOneLeads) {
  constexpr int kBrokers = 4;
  std::vector<Result<std::unique_ptr<Store>>> opened;
  for (int i = 0; i < kBrokers; ++i) opened.emplace_back(Status(Code::kInternal, "not run"));
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kBrokers; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready < kBrokers) std::this_thread::yield();
      opened[i] = Open();
    });
  }
  for (auto& t : threads) t.join();
  int leaders = 0;
  for (auto& r : opened) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto lead = (*r)->HoldLeadership();
    ASSERT_TRUE(lead.ok()) << lead.status().ToString();
    leaders += *lead;
  }
  EXPECT_EQ(1, leaders);
  PgRaw raw(url_);
  EXPECT_EQ(std::to_string(internal::kMigrations.size()), raw.One("SELECT count(*) FROM schema_migrations"));
}

// A broker from before replicas holds advisory lock 2 exclusively while it
// runs; replicas hold it shared, so neither starts beside the other.
TEST_F(PostgresTest, RefusesToRunBesideABrokerFromBeforeReplicas) {
  ASSERT_TRUE(Open().ok());  // migrates
  PgRaw old(url_);
  EXPECT_EQ("t", old.One("SELECT pg_try_advisory_lock(1196575044, 2)")) << "no replica runs: the old broker starts";
  auto replica = Open();
  ASSERT_FALSE(replica.ok());
  EXPECT_EQ(Code::kConflict, replica.status().code());
  EXPECT_THAT(replica.status().message(), HasSubstr("from before replicas"));
  old.One("SELECT pg_advisory_unlock(1196575044, 2)");
  auto now = Open();
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  PgRaw late(url_);
  EXPECT_EQ("f", late.One("SELECT pg_try_advisory_lock(1196575044, 2)")) << "an old broker cannot start beside it";
}

// The leader's session ends (the server restarted it, or the leader's host
// died): the lock goes with it, another replica leads, and the old leader
// knows it no longer does: never two leaders.
TEST_F(PostgresTest, LeadershipFollowsTheSessionNotTheProcess) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->HoldLeadership().value());
  ASSERT_FALSE((*b)->HoldLeadership().value());
  PgRaw admin(url_);
  std::string pid = admin.One("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 3 AND granted");
  ASSERT_FALSE(pid.empty());
  admin.One("SELECT pg_terminate_backend(" + pid + ")");
  bool b_leads = false;
  for (int i = 0; i < 50 && !b_leads; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto lead = (*b)->HoldLeadership();
    b_leads = lead.ok() && *lead;
  }
  EXPECT_TRUE(b_leads);
  auto old_leader = (*a)->HoldLeadership();
  EXPECT_FALSE(old_leader.ok() && *old_leader) << "the old leader learns it lost the lock";
  auto still = (*b)->HoldLeadership();
  EXPECT_TRUE(still.ok() && *still);
}

TEST_F(PostgresTest, ReadOnlyOpens) {
  auto empty = Open(/*read_only=*/true);
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("no Gridmarket schema"));
  PgRaw raw(url_);
  EXPECT_EQ("", raw.One("SELECT to_regclass('schema_migrations')")) << "a read-only open must not create the schema";

  auto rw = Open();
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  ChangeSet cs;
  cs.transfers = {MakeTransfer("t1", "world", "user:a", 5)};
  cs.meta = {{"k", "v"}};
  ASSERT_TRUE((*rw)->Commit(cs).ok());
  // Beside a live broker (the audit's case): reads, never writes.
  auto ro = OpenStore(url_, /*read_only=*/true);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_EQ(1u, (*ro)->Load()->meta.size());
  cs.transfers = {MakeTransfer("t2", "world", "user:a", 5)};
  ASSERT_TRUE((*rw)->Commit(cs).ok());
  EXPECT_EQ(2u, (*ro)->ListTransfers({})->size()) << "a reader sees later commits";
  Status s = (*ro)->Commit(cs);
  EXPECT_EQ(Code::kPermissionDenied, s.code());
  EXPECT_THAT(s.message(), HasSubstr("read-only"));

  raw.Rows("INSERT INTO schema_migrations (version) VALUES (999)");
  rw = Status(Code::kInternal, "closed");
  for (bool read_only : {false, true}) {
    auto r = Open(read_only);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("newer than this binary"));
  }
}

// PostgreSQL text cannot hold NUL: such a ChangeSet is refused whole, with
// kInvalidArgument, rather than cut short by libpq.
TEST_F(PostgresTest, NulBytesAreRefusedWhole) {
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ChangeSet cs;
  cs.machines = {MakeMachine(1)};
  cs.leases = {MakeLease(1, "0xa", 1)};
  cs.leases[0].env = {"A=1", std::string("B=x\0y", 5)};
  Status s = (*store)->Commit(cs);
  EXPECT_EQ(Code::kInvalidArgument, s.code()) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("NUL"));
  EXPECT_THAT(s.message(), HasSubstr("lease 1"));
  EXPECT_TRUE((*store)->Load()->machines.empty());
}

// A writer outside this store (a later replica, here a raw connection) wins
// the race for a transfer id between our check and our insert: the retry
// answers exactly as the SQLite store would, and the ChangeSet is all or
// nothing.
TEST_F(PostgresTest, RacingWriterIsAnsweredLikeSqlite) {
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  struct Case {
    int64_t amount;
    Code want;
    const char* message;
  };
  for (const Case& c : {Case{5, Code::kConflict, "transfer race5 exists"},
                        Case{6, Code::kIdempotencyMismatch, "transfer race6 exists with different amount"}}) {
    const std::string id = "race" + std::to_string(c.amount);
    PgRaw other(url_);
    ASSERT_TRUE(other.ok()) << other.error();
    other.Rows("BEGIN");
    other.Rows("INSERT INTO transfers (id, debit, credit, amount, kind, lease_id, at_ms, memo) VALUES ('" + id +
               "', 'world', 'user:a', 5, 'posted', 0, 1, 'memo')");
    Status result;
    std::thread writer([&] {
      ChangeSet cs;
      cs.transfers = {MakeTransfer(id, "world", "user:a", c.amount)};
      cs.meta = {{"raced", id}};
      result = (*store)->Commit(cs);
    });
    // Wait until our insert is blocked behind the other transaction's row.
    PgRaw watch(url_);
    bool blocked = false;
    for (int i = 0; i < 500 && !blocked; ++i) {
      blocked = watch.One("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND wait_event_type = 'Lock'") != "0";
      if (!blocked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(blocked) << "the store's insert never waited on the other writer";
    other.Rows("COMMIT");
    writer.join();
    EXPECT_EQ(c.want, result.code()) << result.ToString();
    EXPECT_THAT(result.message(), HasSubstr(c.message));
    EXPECT_TRUE((*store)->Load()->meta.empty()) << "nothing of the failed ChangeSet stays";
  }
}

// The url forms OpenStore() takes, and a password that never shows.
TEST_F(PostgresTest, OpenStoreUrlsAndDescribe) {
  // The test cluster trusts 127.0.0.1, so a password is accepted and unused.
  std::string with_password = url_;
  size_t at = with_password.find('@');
  ASSERT_NE(std::string::npos, at) << "GRID_TEST_PG_URL needs USER@HOST";
  with_password.insert(at, ":hunter2");
  auto store = OpenStore(with_password);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_THAT((*store)->Describe(), ::testing::StartsWith("postgres://"));
  EXPECT_THAT((*store)->Describe(), ::testing::Not(HasSubstr("hunter2")));
  store = Status(Code::kInternal, "closed");
  std::string alt = "postgresql" + url_.substr(url_.find("://"));
  auto second = OpenStore(alt);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  auto missing = OpenStore(WithDatabase(with_password, "grid_no_such_database"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(Code::kUnavailable, missing.status().code());
  EXPECT_THAT(missing.status().message(), HasSubstr("grid_no_such_database"));
  EXPECT_THAT(missing.status().message(), ::testing::Not(HasSubstr("hunter2")));
}

// As SqliteTest.AcknowledgedCommitsSurviveKill9: a child commits and reports
// each acknowledged commit; SIGKILLed at a random point, then a new store
// (at once: the dead broker's lock must not keep it out) finds every one.
TEST_F(PostgresTest, AcknowledgedCommitsSurviveKill9AndTheRestartGetsIn) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const int kill_after = std::uniform_int_distribution<int>(1, 100)(rng);
  int fds[2];
  ASSERT_EQ(0, ::pipe(fds));
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto store = Open();
    if (!store.ok()) ::_exit(2);
    for (int i = 0; i < 2000; ++i) {
      ChangeSet cs;
      cs.transfers = {MakeTransfer("t" + std::to_string(i), "world", "user:a", i + 1)};
      cs.accounts = {Account{.id = "user:a", .credits_posted = i + 1}};
      if (!(*store)->Commit(cs).ok()) ::_exit(3);
      std::string line = "acked " + std::to_string(i) + "\n";
      if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(4);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  FILE* in = ::fdopen(fds[0], "r");
  ASSERT_NE(nullptr, in);
  int acked = -1, lines = 0;
  char buf[64];
  while (std::fgets(buf, sizeof buf, in) != nullptr) {
    int i = -1;
    ASSERT_EQ(1, std::sscanf(buf, "acked %d", &i)) << buf;
    acked = i;
    if (++lines == kill_after) ::kill(pid, SIGKILL);
  }
  std::fclose(in);
  int wstatus = 0;
  ASSERT_EQ(pid, ::waitpid(pid, &wstatus, 0));
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "child status " << wstatus;

  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (int i = 0; i <= acked; ++i) {
    auto t = (*store)->FindTransfer("t" + std::to_string(i));
    ASSERT_TRUE(t.ok() && t->has_value()) << "acknowledged transfer t" << i << " lost (acked up to " << acked << ")";
  }
  auto snap = (*store)->Load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(1u, snap->accounts.size());
  EXPECT_GE(snap->accounts[0].credits_posted, acked + 1);
  EXPECT_LE(snap->accounts[0].credits_posted, acked + 2);
}

}  // namespace
}  // namespace grid::store
