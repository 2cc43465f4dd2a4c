// The SQLite Store (store.h): the embedded default.
//
// One connection, guarded by a mutex: the broker serialises writes anyway, and
// SQLite allows one writer at a time. Every SQL text is prepared once per
// connection and kept (Stmt resets it on release). A ChangeSet is one
// BEGIN IMMEDIATE transaction: the write lock is taken up front, so a commit
// never fails half-way for lock reasons, and an error in any part rolls back
// the whole ChangeSet.
//
// Durability: journal_mode=WAL with synchronous=FULL. In WAL mode NORMAL only
// syncs at checkpoints, so it survives kill -9 (the OS keeps the written
// pages) but can lose the last commits on power loss. Store::Commit() promises
// that an acknowledged write is never lost, so we pay one fsync of the WAL per
// commit (≈170 µs here; ~2,000 single-writer tx/s measured, GUIDE.md §6).
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "store/migrations.h"
#include "store/store.h"
#include "store/store_internal.h"

namespace grid::store {
namespace {

using ledger::Account;
using ledger::Transfer;
using market::Lease;
using market::Machine;
using internal::DecodeEndpoints;
using internal::DecodeGpus;
using internal::EncodeEndpoints;
using internal::EncodeGpus;
using internal::JoinList;
using internal::NonceFromDb;
using internal::NonceToDb;
using internal::SplitList;

constexpr int kBusyTimeoutMs = 5000;
constexpr int kSchemaVersion = static_cast<int>(internal::kMigrations.size());

// Maps an SQLite result code onto the Store's codes: lock contention and I/O
// failures are worth retrying (kUnavailable), constraint failures are
// conflicts, anything else means the database or our SQL is wrong.
Code CodeOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
      return Code::kUnavailable;
    case SQLITE_CONSTRAINT:
      return Code::kConflict;
    case SQLITE_NOTADB:
      return Code::kInvalidArgument;  // pointed at a file that is not a database
    default:
      return Code::kInternal;
  }
}

// A prepared statement borrowed from the connection's cache. Releasing it
// resets it and clears its bindings, so the next user starts clean. The first
// bind error is kept and reported by Step().
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Stmt& Bind(int i, int64_t v) { return Check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& Bind(int i, int v) { return Check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& Bind(int i, bool v) { return Check(sqlite3_bind_int64(stmt_, i, v ? 1 : 0)); }
  Stmt& Bind(int i, double v) { return Check(sqlite3_bind_double(stmt_, i, v)); }
  Stmt& Bind(int i, std::string_view v) {
    // SQLITE_TRANSIENT: SQLite copies, so temporaries are safe to bind.
    return Check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const char* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    int n = sqlite3_column_bytes(stmt_, col);  // after column_text, as the docs require
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
  }

 private:
  Stmt& Check(int rc) {
    if (bind_rc_ == SQLITE_OK && rc != SQLITE_OK) bind_rc_ = rc;
    return *this;
  }
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

// "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3) ON CONFLICT (a) DO UPDATE SET
// b = excluded.b, c = excluded.c" — valid in SQLite ≥ 3.24 and PostgreSQL.
std::string UpsertSql(std::string_view table, std::initializer_list<std::string_view> columns) {
  std::string cols, params, sets;
  int i = 0;
  for (std::string_view c : columns) {
    if (i > 0) {
      cols += ", ";
      params += ", ";
    }
    cols += c;
    params += "?" + std::to_string(i + 1);
    if (i > 0) {
      if (i > 1) sets += ", ";
      sets += std::string(c) + " = excluded." + std::string(c);
    }
    ++i;
  }
  return "INSERT INTO " + std::string(table) + " (" + cols + ") VALUES (" + params + ") ON CONFLICT (" +
         std::string(*columns.begin()) + ") DO UPDATE SET " + sets;
}

const std::string& MachineUpsertSql() {
  static const std::string sql = UpsertSql(
      "machines", {"id", "provider", "gpu_name", "num_gpus", "gpu_ram", "cpu_cores", "cpu_ram", "disk_space",
                   "inet_up", "inet_down", "geolocation", "datacenter", "simulated", "spec_json", "listed",
                   "price_per_gpu_hour", "min_chunk", "end_date_ms", "storage_cost", "created_ms", "updated_ms",
                   "agent_address", "removed", "channel_payments"});
  return sql;
}
constexpr const char* kMachineSelect =
    "SELECT id, provider, gpu_name, num_gpus, gpu_ram, cpu_cores, cpu_ram, disk_space, inet_up, inet_down, "
    "geolocation, datacenter, simulated, spec_json, listed, price_per_gpu_hour, min_chunk, end_date_ms, "
    "storage_cost, created_ms, updated_ms, agent_address, removed, channel_payments FROM machines ORDER BY id";

// Leases paid by payment channel (schema 5): one row per such lease.
const std::string& LeaseChannelUpsertSql() {
  static const std::string sql = UpsertSql(
      "lease_channels", {"lease_id", "channel", "contract", "chain_id", "token", "signer", "payee", "deposit",
                         "expiry_ms", "interval_ms", "grace_ms", "expiry_margin_ms", "length_ms", "margin", "voucher",
                         "voucher_sig", "voucher_ms", "redeemed", "closed"});
  return sql;
}
constexpr const char* kLeaseChannelSelect =
    "SELECT lease_id, channel, contract, chain_id, token, signer, payee, deposit, expiry_ms, interval_ms, grace_ms, "
    "expiry_margin_ms, length_ms, margin, voucher, voucher_sig, voucher_ms, redeemed, closed FROM lease_channels "
    "ORDER BY lease_id";

const std::string& LeaseUpsertSql() {
  static const std::string sql = UpsertSql(
      "leases", {"id", "renter", "provider", "machine_id", "gpus", "price_per_hour", "fee_bps", "image",
                 "order_offer_id", "order_gpus", "order_price_per_hour", "order_nonce", "order_expiry_s",
                 "order_signature", "state", "end_reason", "created_ms", "started_ms", "ended_ms", "billed_ms",
                 "charged", "fee", "held", "settlements", "message", "ports", "ssh_key", "endpoint_host",
                 "endpoints"});
  return sql;
}
constexpr const char* kLeaseSelect =
    "SELECT id, renter, provider, machine_id, gpus, price_per_hour, fee_bps, image, order_offer_id, order_gpus, "
    "order_price_per_hour, order_nonce, order_expiry_s, order_signature, state, end_reason, created_ms, "
    "started_ms, ended_ms, billed_ms, charged, fee, held, settlements, message, ports, ssh_key, endpoint_host, "
    "endpoints FROM leases ORDER BY id";

constexpr const char* kTransferColumns = "seq, id, debit, credit, amount, kind, lease_id, at_ms, memo";

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, bool read_only) : path_(std::move(path)), read_only_(read_only) {}

  ~SqliteStore() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    if (db_ != nullptr) sqlite3_close(db_);
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the writer lock
  }

  Status Open();

  Result<Snapshot> Load() override;
  Status Commit(const ChangeSet& changes) override;
  Result<std::optional<Transfer>> FindTransfer(const std::string& id) override;
  Result<std::vector<Transfer>> ListTransfers(const TransferQuery& query) override;
  Status ForEachTransfer(const std::function<bool(const Transfer&)>& visit) override;
  std::string Describe() const override { return "sqlite:" + path_; }

 private:
  // A transaction that rolls back unless committed. SQLite may already have
  // rolled back on its own (some I/O errors); then there is nothing to undo.
  class Txn {
   public:
    explicit Txn(SqliteStore* store) : store_(store) {}
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    ~Txn() {
      if (open_ && !sqlite3_get_autocommit(store_->db_)) {
        sqlite3_exec(store_->db_, "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }
    Status Begin(const char* sql) {
      GRID_RETURN_IF_ERROR(store_->Exec(sql, "begin transaction"));
      open_ = true;
      return Status::Ok();
    }
    Status Commit() {
      GRID_RETURN_IF_ERROR(store_->Exec("COMMIT", "commit"));
      open_ = false;
      return Status::Ok();
    }

   private:
    SqliteStore* store_;
    bool open_ = false;
  };

  Status Error(int rc, std::string_view what) const {
    std::string msg = Describe() + ": " + std::string(what) + ": ";
    msg += db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    return Status(CodeOf(rc), std::move(msg));
  }
  Status Corrupt(std::string_view what) const {
    return Internal(Describe() + ": corrupt database: " + std::string(what));
  }

  Status Exec(const char* sql, std::string_view what) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? Status::Ok() : Error(rc, what);
  }

  Result<Stmt> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return Stmt(it->second);
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt,
                                nullptr);
    if (rc != SQLITE_OK) return Error(rc, "prepare " + sql);
    cache_.emplace(sql, stmt);
    return Stmt(stmt);
  }

  // Runs a statement that returns no rows.
  Status Run(Stmt& stmt, std::string_view what) {
    int rc = stmt.Step();
    return rc == SQLITE_DONE ? Status::Ok() : Error(rc, what);
  }

  Result<int> UserVersion() {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare("PRAGMA user_version"));
    int rc = stmt.Step();
    if (rc != SQLITE_ROW) return Error(rc, "read schema version");
    return static_cast<int>(stmt.Int(0));
  }

  Status Migrate();
  Status CheckSchemaReadOnly();
  Status PutMachine(const Machine& m);
  Status PutLease(const Lease& l);
  Status PutTransfer(const Transfer& t);
  Status PutAccount(const Account& a);
  Status PutMeta(const std::string& key, const std::string& value);
  Status PutWithdrawal(const ledger::Withdrawal& w);
  Result<Transfer> ReadTransfer(const Stmt& stmt, int64_t* seq);

  const std::string path_;
  const bool read_only_;
  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;  // fixed set of SQL texts
  int lock_fd_ = -1;  // flock'd PATH.lock while open for writing
};

Status SqliteStore::Open() {
  if (read_only_) {
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) {
      return NotFound(Describe() + ": cannot open read-only: " + std::strerror(errno) +
                      " (a read-only open never creates the database)");
    }
  }
  if (!read_only_) {
    // One writer per database: a second broker on the same file would keep
    // its own in-memory state and overwrite the first one's. The lock is an
    // flock on PATH.lock, released by the kernel when the process dies (even
    // by kill -9), so a crashed broker never blocks its restart.
    std::string lock_path = path_ + ".lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) return Unavailable(Describe() + ": cannot open " + lock_path + ": " + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status(Code::kConflict, Describe() + ": the database is in use by another broker (" + lock_path +
                                         " is locked)");
    }
  }
  // No SQLITE_OPEN_URI: the path is taken literally. NOMUTEX: mu_ serialises use.
  int flags = (read_only_ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
              SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = Error(rc, read_only_ ? "cannot open read-only" : "cannot open");
    sqlite3_close(db_);
    db_ = nullptr;
    return s;
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);

  // The first read of the file: tells a non-database apart early.
  GRID_ASSIGN_OR_RETURN(int version, UserVersion());
  (void)version;
  GRID_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys = ON", "enable foreign keys"));
  if (read_only_) return CheckSchemaReadOnly();

  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare("PRAGMA journal_mode = WAL"));
    rc = stmt.Step();
    if (rc != SQLITE_ROW) return Error(rc, "set journal_mode=WAL");
    if (stmt.Text(0) != "wal") return Unavailable(Describe() + ": cannot use WAL mode (got " + stmt.Text(0) + ")");
  }
  // See the top of this file for why FULL.
  GRID_RETURN_IF_ERROR(Exec("PRAGMA synchronous = FULL", "set synchronous=FULL"));
  return Migrate();
}

Status SqliteStore::Migrate() {
  for (;;) {
    // The version is re-read inside the write transaction: another process
    // opening the same file may have migrated it meanwhile.
    Txn txn(this);
    GRID_RETURN_IF_ERROR(txn.Begin("BEGIN IMMEDIATE"));
    GRID_ASSIGN_OR_RETURN(int version, UserVersion());
    if (version > kSchemaVersion) {
      return InvalidArgument(Describe() + ": schema version " + std::to_string(version) +
                             " is newer than this binary knows (" + std::to_string(kSchemaVersion) +
                             "); use a newer grid");
    }
    if (version == kSchemaVersion) return txn.Commit();
    std::string sql(internal::kMigrations[version]);
    sql += "\nPRAGMA user_version = " + std::to_string(version + 1) + ";";
    GRID_RETURN_IF_ERROR(Exec(sql.c_str(), "migrate to schema version " + std::to_string(version + 1)));
    GRID_RETURN_IF_ERROR(txn.Commit());
  }
}

Status SqliteStore::CheckSchemaReadOnly() {
  GRID_ASSIGN_OR_RETURN(int version, UserVersion());
  if (version == 0) {
    return InvalidArgument(Describe() + ": no Gridmarket schema (schema version 0); "
                           "a read-only open does not create it");
  }
  if (version > kSchemaVersion) {
    return InvalidArgument(Describe() + ": schema version " + std::to_string(version) +
                           " is newer than this binary knows (" + std::to_string(kSchemaVersion) +
                           "); use a newer grid");
  }
  if (version < kSchemaVersion) {
    return InvalidArgument(Describe() + ": schema version " + std::to_string(version) + " is older than " +
                           std::to_string(kSchemaVersion) + "; open it read-write once to migrate");
  }
  return Status::Ok();
}

Status SqliteStore::Commit(const ChangeSet& changes) {
  std::lock_guard lock(mu_);
  if (read_only_) return PermissionDenied(Describe() + " is open read-only");
  // One broker per SQLite file: it never numbers commits (store.h, "Replicas").
  if (changes.after_seq) return Internal(Describe() + ": a numbered commit on a store that is not shared");
  if (changes.empty()) return Status::Ok();
  for (const Machine& m : changes.machines) GRID_RETURN_IF_ERROR(internal::ValidateMachine(m));

  Txn txn(this);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN IMMEDIATE"));
  for (const Machine& m : changes.machines) GRID_RETURN_IF_ERROR(PutMachine(m));
  for (const Lease& l : changes.leases) GRID_RETURN_IF_ERROR(PutLease(l));
  for (const Transfer& t : changes.transfers) GRID_RETURN_IF_ERROR(PutTransfer(t));
  for (const Account& a : changes.accounts) GRID_RETURN_IF_ERROR(PutAccount(a));
  for (const auto& [key, value] : changes.meta) GRID_RETURN_IF_ERROR(PutMeta(key, value));
  for (const auto& w : changes.withdrawals) GRID_RETURN_IF_ERROR(PutWithdrawal(w));
  return txn.Commit();
}

namespace {
const std::string& WithdrawalUpsertSql() {
  static const std::string sql =
      UpsertSql("withdrawals", {"id", "address", "to_address", "amount", "from_earned", "from_available", "state",
                                "nonce", "raw_tx", "tx_hashes", "mined_tx", "mined_block", "created_ms", "updated_ms",
                                "sent_ms", "error"});
  return sql;
}
constexpr const char* kWithdrawalSelect =
    "SELECT id, address, to_address, amount, from_earned, from_available, state, nonce, raw_tx, tx_hashes, mined_tx, "
    "mined_block, created_ms, updated_ms, sent_ms, error FROM withdrawals ORDER BY id";

}  // namespace

Status SqliteStore::PutWithdrawal(const ledger::Withdrawal& w) {
  GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(WithdrawalUpsertSql()));
  stmt.Bind(1, w.id)
      .Bind(2, w.address)
      .Bind(3, w.to)
      .Bind(4, w.amount)
      .Bind(5, w.from_earned)
      .Bind(6, w.from_available)
      .Bind(7, std::string(ledger::WithdrawalStateName(w.state)))
      .Bind(8, NonceToDb(w.nonce))
      .Bind(9, w.raw_tx)
      .Bind(10, JoinList(w.tx_hashes))
      .Bind(11, w.mined_tx)
      .Bind(12, static_cast<int64_t>(w.mined_block))
      .Bind(13, w.created_ms)
      .Bind(14, w.updated_ms)
      .Bind(15, w.sent_ms)
      .Bind(16, w.error);
  return Run(stmt, "write withdrawal " + std::to_string(w.id));
}

Status SqliteStore::PutMachine(const Machine& m) {
  GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(MachineUpsertSql()));
  const market::MachineSpec& s = m.spec;
  stmt.Bind(1, m.id)
      .Bind(2, m.provider)
      .Bind(3, s.gpu_name)
      .Bind(4, s.num_gpus)
      .Bind(5, s.gpu_ram)
      .Bind(6, s.cpu_cores)
      .Bind(7, s.cpu_ram)
      .Bind(8, s.disk_space)
      .Bind(9, s.inet_up)
      .Bind(10, s.inet_down)
      .Bind(11, s.geolocation)
      .Bind(12, s.datacenter)
      .Bind(13, s.simulated)
      .Bind(14, m.spec_json)
      .Bind(15, m.listing.listed)
      .Bind(16, m.listing.price_per_gpu_hour)
      .Bind(17, m.listing.min_chunk)
      .Bind(18, m.listing.end_date_ms)
      .Bind(19, m.listing.storage_cost)
      .Bind(20, m.created_ms)
      .Bind(21, m.updated_ms)
      .Bind(22, m.agent_address)
      .Bind(23, m.removed)
      .Bind(24, m.channel_payments);
  return Run(stmt, "write machine " + std::to_string(m.id));
}

Status SqliteStore::PutLease(const Lease& l) {
  const std::string what = "write lease " + std::to_string(l.id);
  if (internal::HasSignedOrder(l)) {
    // Checked here rather than read back from the unique index's error, so
    // the message can say what happened; the index still guards the table.
    GRID_ASSIGN_OR_RETURN(
        Stmt check, Prepare("SELECT id FROM leases WHERE renter = ?1 AND order_nonce = ?2 "
                            "AND order_signature <> '' AND id <> ?3 LIMIT 1"));
    check.Bind(1, l.renter).Bind(2, NonceToDb(l.order.nonce)).Bind(3, l.id);
    int rc = check.Step();
    if (rc == SQLITE_ROW) return internal::NonceReplay(l);
    if (rc != SQLITE_DONE) return Error(rc, what);
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(LeaseUpsertSql()));
    stmt.Bind(1, l.id)
        .Bind(2, l.renter)
        .Bind(3, l.provider)
        .Bind(4, l.machine_id)
        .Bind(5, EncodeGpus(l.gpus))
        .Bind(6, l.price_per_hour)
        .Bind(7, l.fee_bps)
        .Bind(8, l.image)
        .Bind(9, l.order.offer_id)
        .Bind(10, l.order.gpus)
        .Bind(11, l.order.price_per_hour)
        .Bind(12, NonceToDb(l.order.nonce))
        .Bind(13, l.order.expiry_s)
        .Bind(14, l.order.signature)
        .Bind(15, market::LeaseStateName(l.state))
        .Bind(16, market::EndReasonName(l.end_reason))
        .Bind(17, l.created_ms)
        .Bind(18, l.started_ms)
        .Bind(19, l.ended_ms)
        .Bind(20, l.billed_ms)
        .Bind(21, l.charged)
        .Bind(22, l.fee)
        .Bind(23, l.held)
        .Bind(24, l.settlements)
        .Bind(25, l.message)
        .Bind(26, EncodeGpus(l.ports))
        .Bind(27, l.ssh_key)
        .Bind(28, l.endpoint_host)
        .Bind(29, EncodeEndpoints(l.endpoints));
    GRID_RETURN_IF_ERROR(Run(stmt, what));
  }
  if (l.channel) {
    const market::ChannelPayment& c = *l.channel;
    {
      GRID_ASSIGN_OR_RETURN(Stmt check,
                            Prepare("SELECT lease_id FROM lease_channels WHERE channel = ?1 AND lease_id <> ?2"));
      check.Bind(1, c.channel).Bind(2, l.id);
      int rc = check.Step();
      if (rc == SQLITE_ROW) return internal::ChannelReuse(l, check.Int(0));
      if (rc != SQLITE_DONE) return Error(rc, what);
    }
    GRID_ASSIGN_OR_RETURN(Stmt up, Prepare(LeaseChannelUpsertSql()));
    up.Bind(1, l.id)
        .Bind(2, c.channel)
        .Bind(3, c.contract)
        .Bind(4, static_cast<int64_t>(c.chain_id))
        .Bind(5, c.token)
        .Bind(6, c.signer)
        .Bind(7, c.payee)
        .Bind(8, c.deposit)
        .Bind(9, c.expiry_ms)
        .Bind(10, c.interval_ms)
        .Bind(11, c.grace_ms)
        .Bind(12, c.expiry_margin_ms)
        .Bind(13, c.length_ms)
        .Bind(14, c.margin)
        .Bind(15, c.voucher)
        .Bind(16, c.voucher_sig)
        .Bind(17, c.voucher_ms)
        .Bind(18, c.redeemed)
        .Bind(19, c.closed);
    GRID_RETURN_IF_ERROR(Run(up, what));
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt del, Prepare("DELETE FROM lease_strings WHERE lease_id = ?1"));
    del.Bind(1, l.id);
    GRID_RETURN_IF_ERROR(Run(del, what));
  }
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {{"env", &l.env},
                                                                            {"command", &l.command}};
  for (const auto& [list, values] : lists) {
    for (size_t pos = 0; pos < values->size(); ++pos) {
      GRID_ASSIGN_OR_RETURN(Stmt ins, Prepare("INSERT INTO lease_strings (lease_id, list, pos, value) "
                                              "VALUES (?1, ?2, ?3, ?4)"));
      ins.Bind(1, l.id).Bind(2, list).Bind(3, static_cast<int64_t>(pos)).Bind(4, (*values)[pos]);
      GRID_RETURN_IF_ERROR(Run(ins, what));
    }
  }
  return Status::Ok();
}

Status SqliteStore::PutTransfer(const Transfer& t) {
  const std::string what = "write transfer " + t.id;
  {
    GRID_ASSIGN_OR_RETURN(Stmt find, Prepare(std::string("SELECT ") + kTransferColumns +
                                             " FROM transfers WHERE id = ?1"));
    find.Bind(1, t.id);
    int rc = find.Step();
    if (rc == SQLITE_ROW) {
      int64_t seq = 0;
      GRID_ASSIGN_OR_RETURN(Transfer stored, ReadTransfer(find, &seq));
      return internal::DuplicateTransfer(stored, t);
    }
    if (rc != SQLITE_DONE) return Error(rc, what);
  }
  GRID_ASSIGN_OR_RETURN(Stmt ins, Prepare("INSERT INTO transfers (id, debit, credit, amount, kind, lease_id, "
                                          "at_ms, memo) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  ins.Bind(1, t.id)
      .Bind(2, t.debit)
      .Bind(3, t.credit)
      .Bind(4, t.amount)
      .Bind(5, ledger::TransferKindName(t.kind))
      .Bind(6, t.lease_id)
      .Bind(7, t.at_ms)
      .Bind(8, t.memo);
  return Run(ins, what);
}

Status SqliteStore::PutAccount(const Account& a) {
  static const std::string sql =
      UpsertSql("accounts", {"id", "debits_posted", "credits_posted", "debits_pending", "credits_pending"});
  GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
  stmt.Bind(1, a.id)
      .Bind(2, a.debits_posted)
      .Bind(3, a.credits_posted)
      .Bind(4, a.debits_pending)
      .Bind(5, a.credits_pending);
  return Run(stmt, "write account " + a.id);
}

Status SqliteStore::PutMeta(const std::string& key, const std::string& value) {
  static const std::string sql = UpsertSql("meta", {"key", "value"});
  GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
  stmt.Bind(1, key).Bind(2, value);
  return Run(stmt, "write meta " + key);
}

Result<Transfer> SqliteStore::ReadTransfer(const Stmt& stmt, int64_t* seq) {
  Transfer t;
  *seq = stmt.Int(0);
  t.id = stmt.Text(1);
  t.debit = stmt.Text(2);
  t.credit = stmt.Text(3);
  t.amount = stmt.Int(4);
  std::string kind = stmt.Text(5);
  if (!ledger::ParseTransferKind(kind, &t.kind)) return Corrupt("transfer " + t.id + " has kind '" + kind + "'");
  t.lease_id = stmt.Int(6);
  t.at_ms = stmt.Int(7);
  t.memo = stmt.Text(8);
  return t;
}

Result<Snapshot> SqliteStore::Load() {
  std::lock_guard lock(mu_);
  Snapshot snap;
  // One read transaction: every table from the same moment, even while
  // another process (a broker, for a read-only audit) writes.
  Txn txn(this);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN"));
  int rc;
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(kMachineSelect));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      Machine m;
      market::MachineSpec& s = m.spec;
      m.id = stmt.Int(0);
      m.provider = stmt.Text(1);
      s.gpu_name = stmt.Text(2);
      s.num_gpus = static_cast<int>(stmt.Int(3));
      s.gpu_ram = stmt.Double(4);
      s.cpu_cores = static_cast<int>(stmt.Int(5));
      s.cpu_ram = stmt.Double(6);
      s.disk_space = stmt.Double(7);
      s.inet_up = stmt.Double(8);
      s.inet_down = stmt.Double(9);
      s.geolocation = stmt.Text(10);
      s.datacenter = stmt.Int(11) != 0;
      s.simulated = stmt.Int(12) != 0;
      m.spec_json = stmt.Text(13);
      m.listing.listed = stmt.Int(14) != 0;
      m.listing.price_per_gpu_hour = stmt.Int(15);
      m.listing.min_chunk = static_cast<int>(stmt.Int(16));
      m.listing.end_date_ms = stmt.Int(17);
      m.listing.storage_cost = stmt.Int(18);
      m.created_ms = stmt.Int(19);
      m.updated_ms = stmt.Int(20);
      m.agent_address = stmt.Text(21);
      m.removed = stmt.Int(22) != 0;
      m.channel_payments = stmt.Int(23) != 0;
      snap.machines.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return Error(rc, "read machines");
  }
  std::unordered_map<int64_t, size_t> lease_index;
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(kLeaseSelect));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      Lease l;
      l.id = stmt.Int(0);
      l.renter = stmt.Text(1);
      l.provider = stmt.Text(2);
      l.machine_id = stmt.Int(3);
      std::string gpus = stmt.Text(4);
      if (!DecodeGpus(gpus, &l.gpus)) return Corrupt("lease " + std::to_string(l.id) + " has gpus '" + gpus + "'");
      l.price_per_hour = stmt.Int(5);
      l.fee_bps = stmt.Int(6);
      l.image = stmt.Text(7);
      l.order.offer_id = stmt.Int(8);
      l.order.gpus = static_cast<int>(stmt.Int(9));
      l.order.price_per_hour = stmt.Int(10);
      l.order.nonce = NonceFromDb(stmt.Int(11));
      l.order.expiry_s = stmt.Int(12);
      l.order.signature = stmt.Text(13);
      std::string state = stmt.Text(14), reason = stmt.Text(15);
      if (!market::ParseLeaseState(state, &l.state)) {
        return Corrupt("lease " + std::to_string(l.id) + " has state '" + state + "'");
      }
      if (!market::ParseEndReason(reason, &l.end_reason)) {
        return Corrupt("lease " + std::to_string(l.id) + " has end_reason '" + reason + "'");
      }
      l.created_ms = stmt.Int(16);
      l.started_ms = stmt.Int(17);
      l.ended_ms = stmt.Int(18);
      l.billed_ms = stmt.Int(19);
      l.charged = stmt.Int(20);
      l.fee = stmt.Int(21);
      l.held = stmt.Int(22);
      l.settlements = stmt.Int(23);
      l.message = stmt.Text(24);
      std::string ports = stmt.Text(25), endpoints = stmt.Text(28);
      if (!DecodeGpus(ports, &l.ports)) return Corrupt("lease " + std::to_string(l.id) + " has ports '" + ports + "'");
      l.ssh_key = stmt.Text(26);
      l.endpoint_host = stmt.Text(27);
      if (!DecodeEndpoints(endpoints, &l.endpoints))
        return Corrupt("lease " + std::to_string(l.id) + " has endpoints '" + endpoints + "'");
      lease_index.emplace(l.id, snap.leases.size());
      snap.leases.push_back(std::move(l));
    }
    if (rc != SQLITE_DONE) return Error(rc, "read leases");
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT lease_id, list, pos, value FROM lease_strings "
                                             "ORDER BY lease_id, list, pos"));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      int64_t lease_id = stmt.Int(0);
      auto it = lease_index.find(lease_id);
      if (it == lease_index.end()) return Corrupt("lease_strings row for missing lease " + std::to_string(lease_id));
      Lease& l = snap.leases[it->second];
      std::string list = stmt.Text(1);
      std::vector<std::string>* values = list == "env" ? &l.env : list == "command" ? &l.command : nullptr;
      if (values == nullptr || stmt.Int(2) != static_cast<int64_t>(values->size())) {
        return Corrupt("lease " + std::to_string(lease_id) + " has a gap in its " + list + " list");
      }
      values->push_back(stmt.Text(3));
    }
    if (rc != SQLITE_DONE) return Error(rc, "read lease env and command");
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(kLeaseChannelSelect));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      int64_t lease_id = stmt.Int(0);
      auto it = lease_index.find(lease_id);
      if (it == lease_index.end()) return Corrupt("lease_channels row for missing lease " + std::to_string(lease_id));
      snap.leases[it->second].channel = market::ChannelPayment{.channel = stmt.Text(1),
                                                               .contract = stmt.Text(2),
                                                               .chain_id = static_cast<uint64_t>(stmt.Int(3)),
                                                               .token = stmt.Text(4),
                                                               .signer = stmt.Text(5),
                                                               .payee = stmt.Text(6),
                                                               .deposit = stmt.Int(7),
                                                               .expiry_ms = stmt.Int(8),
                                                               .interval_ms = stmt.Int(9),
                                                               .grace_ms = stmt.Int(10),
                                                               .expiry_margin_ms = stmt.Int(11),
                                                               .length_ms = stmt.Int(12),
                                                               .margin = stmt.Int(13),
                                                               .voucher = stmt.Int(14),
                                                               .voucher_sig = stmt.Text(15),
                                                               .voucher_ms = stmt.Int(16),
                                                               .redeemed = stmt.Int(17),
                                                               .closed = stmt.Int(18) != 0};
    }
    if (rc != SQLITE_DONE) return Error(rc, "read lease channels");
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT id, debits_posted, credits_posted, debits_pending, "
                                             "credits_pending FROM accounts ORDER BY id"));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      snap.accounts.push_back(Account{.id = stmt.Text(0),
                                      .debits_posted = stmt.Int(1),
                                      .credits_posted = stmt.Int(2),
                                      .debits_pending = stmt.Int(3),
                                      .credits_pending = stmt.Int(4)});
    }
    if (rc != SQLITE_DONE) return Error(rc, "read accounts");
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT key, value FROM meta ORDER BY key"));
    while ((rc = stmt.Step()) == SQLITE_ROW) snap.meta.emplace_back(stmt.Text(0), stmt.Text(1));
    if (rc != SQLITE_DONE) return Error(rc, "read meta");
  }
  {
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(kWithdrawalSelect));
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      ledger::Withdrawal w;
      w.id = stmt.Int(0);
      w.address = stmt.Text(1);
      w.to = stmt.Text(2);
      w.amount = stmt.Int(3);
      w.from_earned = stmt.Int(4);
      w.from_available = stmt.Int(5);
      std::string state = stmt.Text(6);
      if (!ledger::ParseWithdrawalState(state, &w.state))
        return Corrupt("withdrawal " + std::to_string(w.id) + " has state '" + state + "'");
      w.nonce = NonceFromDb(stmt.Int(7));
      w.raw_tx = stmt.Text(8);
      w.tx_hashes = SplitList(stmt.Text(9));
      w.mined_tx = stmt.Text(10);
      w.mined_block = static_cast<uint64_t>(stmt.Int(11));
      w.created_ms = stmt.Int(12);
      w.updated_ms = stmt.Int(13);
      w.sent_ms = stmt.Int(14);
      w.error = stmt.Text(15);
      snap.withdrawals.push_back(std::move(w));
    }
    if (rc != SQLITE_DONE) return Error(rc, "read withdrawals");
  }
  GRID_RETURN_IF_ERROR(txn.Commit());
  return snap;
}

Result<std::optional<Transfer>> SqliteStore::FindTransfer(const std::string& id) {
  std::lock_guard lock(mu_);
  GRID_ASSIGN_OR_RETURN(Stmt stmt,
                        Prepare(std::string("SELECT ") + kTransferColumns + " FROM transfers WHERE id = ?1"));
  stmt.Bind(1, id);
  int rc = stmt.Step();
  if (rc == SQLITE_DONE) return std::optional<Transfer>();
  if (rc != SQLITE_ROW) return Error(rc, "find transfer " + id);
  int64_t seq = 0;
  GRID_ASSIGN_OR_RETURN(Transfer t, ReadTransfer(stmt, &seq));
  return std::optional<Transfer>(std::move(t));
}

Result<std::vector<Transfer>> SqliteStore::ListTransfers(const TransferQuery& query) {
  std::lock_guard lock(mu_);
  std::vector<Transfer> out;
  if (query.limit <= 0) return out;
  const size_t limit = static_cast<size_t>(query.limit);
  const std::string select = std::string("SELECT ") + kTransferColumns + " FROM transfers ";
  int rc = SQLITE_DONE;

  if (query.lease_id > 0 || query.accounts.empty()) {
    // One index walk, newest first, filtering accounts here: a lease has few
    // transfers, and without filters the first `limit` rows are the answer.
    GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(query.lease_id > 0
                                                 ? select + "WHERE lease_id = ?1 ORDER BY seq DESC"
                                                 : select + "ORDER BY seq DESC LIMIT ?1"));
    stmt.Bind(1, query.lease_id > 0 ? query.lease_id : static_cast<int64_t>(limit));
    while (out.size() < limit && (rc = stmt.Step()) == SQLITE_ROW) {
      int64_t seq = 0;
      GRID_ASSIGN_OR_RETURN(Transfer t, ReadTransfer(stmt, &seq));
      if (!query.accounts.empty()) {
        bool match = false;
        for (const std::string& a : query.accounts) match = match || t.debit == a || t.credit == a;
        if (!match) continue;
      }
      out.push_back(std::move(t));
    }
    if (out.size() < limit && rc != SQLITE_DONE) return Error(rc, "list transfers");
    return out;
  }

  // By accounts: the newest `limit` of each (account, side) through the
  // (debit, seq) and (credit, seq) indexes, merged by seq. This stays cheap
  // for busy accounts (escrow, fee) and rare ones alike.
  std::map<int64_t, Transfer, std::greater<>> merged;
  for (const char* side : {"debit", "credit"}) {
    for (const std::string& account : query.accounts) {
      GRID_ASSIGN_OR_RETURN(Stmt stmt,
                            Prepare(select + "WHERE " + side + " = ?1 ORDER BY seq DESC LIMIT ?2"));
      stmt.Bind(1, account).Bind(2, static_cast<int64_t>(limit));
      while ((rc = stmt.Step()) == SQLITE_ROW) {
        int64_t seq = 0;
        GRID_ASSIGN_OR_RETURN(Transfer t, ReadTransfer(stmt, &seq));
        merged.emplace(seq, std::move(t));
      }
      if (rc != SQLITE_DONE) return Error(rc, "list transfers");
    }
  }
  for (auto& [seq, t] : merged) {
    if (out.size() >= limit) break;
    out.push_back(std::move(t));
  }
  return out;
}

Status SqliteStore::ForEachTransfer(const std::function<bool(const Transfer&)>& visit) {
  // Pages by seq, so `visit` runs without the lock (it may use the store) and
  // no read transaction stays open across the caller's work.
  constexpr int64_t kPage = 512;
  std::vector<Transfer> page;
  for (int64_t after = 0;;) {
    page.clear();
    {
      std::lock_guard lock(mu_);
      GRID_ASSIGN_OR_RETURN(Stmt stmt, Prepare(std::string("SELECT ") + kTransferColumns +
                                               " FROM transfers WHERE seq > ?1 ORDER BY seq LIMIT ?2"));
      stmt.Bind(1, after).Bind(2, kPage);
      int rc;
      while ((rc = stmt.Step()) == SQLITE_ROW) {
        GRID_ASSIGN_OR_RETURN(Transfer t, ReadTransfer(stmt, &after));
        page.push_back(std::move(t));
      }
      if (rc != SQLITE_DONE) return Error(rc, "read transfers");
    }
    if (page.empty()) return Status::Ok();
    for (const Transfer& t : page) {
      if (!visit(t)) return Status::Ok();
    }
  }
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, SqliteOptions options) {
  if (path.empty()) return InvalidArgument("empty SQLite database path");
  auto store = std::make_unique<SqliteStore>(path, options.read_only);
  GRID_RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace grid::store
