// The PostgreSQL Store (store.h), over libpq's C API: for an operator whose
// market outgrows one machine (issue 7). Same contract and same answers as
// the SQLite store; the shared store_test body runs against both.
//
// Isolation: a ChangeSet is one SERIALIZABLE transaction. Commit() reads
// before it writes (is this order nonce used? does this channel pay another
// lease? does this transfer id exist?) and those reads decide its result.
// Under SERIALIZABLE, PostgreSQL guarantees the outcome of some serial order,
// so the check-then-write is sound without us enumerating the row and
// predicate locks each check would need under REPEATABLE READ (a "no such
// row" answer cannot be locked with FOR UPDATE). The price is that PostgreSQL
// may abort a transaction it cannot serialise (SQLSTATE 40001) or pick it as
// a deadlock victim (40P01): Commit() then retries the whole ChangeSet on a
// fresh transaction, up to kMaxAttempts, with jittered backoff. A unique
// violation (23505) can only come from a concurrent writer that won a race
// past our checks; it is retried the same way, and the retry's checks (which
// now see the winner's row) give exactly the SQLite store's answer:
// kConflict / kIdempotencyMismatch for the transfer, "order nonce already
// used", or ChannelReuse. A connection lost before COMMIT is not retried
// here (kUnavailable: nothing happened), and the broken connection leaves the
// pool. One lost during COMMIT has an unknown outcome: a numbered commit
// looks for its token in the change log on a fresh connection and answers
// OK or kUnavailable accordingly; otherwise, or if the database stays out of
// reach, the caller gets kOutcomeUnknown (HTTP 504), which clients never
// resend blindly.
//
// Load() reads in one REPEATABLE READ READ ONLY transaction (one snapshot for
// every table, never aborted for serialization).
//
// Durability: COMMIT returns once the WAL is flushed, as long as the server
// runs with fsync=on; a session whose synchronous_commit is "off" is raised
// to "on", because an acknowledged write must never be lost.
//
// Several brokers on one database (store.h, "Replicas"): a numbered commit
// first moves the change_head row (UPDATE … WHERE seq = after_seq), so
// replicas' commits queue on that row lock and form one serial order; the
// loser of a race sees the head moved and gets kAborted. Its change_log entry
// names the rows it wrote and pg_notify('grid_changes') wakes the other
// replicas' WaitForChange (a LISTEN connection of its own; polling while that
// connection is down). Leadership is a session advisory lock on a connection
// of its own, freed by the server when that session ends, so a kill -9'd
// leader's is taken over as soon as its backend notices the closed socket.
//
// Schema: internal::kMigrations through internal::ToPostgres(), version in
// schema_migrations (one row per applied step). Migrating takes a
// transaction-level advisory lock first, so brokers starting at once never
// run the same step twice.
//
// Thread safety: a pool of up to PostgresOptions::pool_size connections;
// each call borrows one for its duration (ForEachTransfer: per page).
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "store/migrations.h"
#include "store/postgres_conn.h"
#include "store/store.h"
#include "store/store_internal.h"

namespace grid::store {
namespace pg {

// ------------------------------------------------------------------ libpq wrappers

Result<ConnSpec> ParseUrl(const std::string& url, bool read_only) {
  ConnSpec spec;
  spec.url = url;
  spec.read_only = read_only;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err != nullptr ? err : "out of memory";
    PQfreemem(err);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    // libpq may quote the part it could not read, password included: the
    // message is scrubbed of the raw text after "user:" as well.
    size_t scheme = url.find("://");
    size_t at = url.find('@');
    if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
      std::string userinfo = url.substr(scheme + 3, at - scheme - 3);
      size_t colon = userinfo.find(':');
      if (colon != std::string::npos) spec.password = userinfo.substr(colon + 1);
    }
    return InvalidArgument("PostgreSQL url: " + Scrub(msg, spec));
  }
  std::map<std::string, std::string> values;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) values[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  spec.password = values["password"];
  // Defaults as libpq would fill them (environment aside): enough to say
  // which server and database a message is about.
  std::string host = values.count("hostaddr") ? values["hostaddr"] : values["host"];
  std::string user = values["user"];
  std::string db = values.count("dbname") ? values["dbname"] : user;
  spec.describe = "postgres://" + (user.empty() ? "" : user + "@") + (host.empty() ? "localhost" : host) +
                  (values.count("port") ? ":" + values["port"] : "") + "/" + db;
  return spec;
}

std::string Scrub(std::string message, const ConnSpec& spec) {
  if (spec.password.empty()) return message;
  for (size_t at; (at = message.find(spec.password)) != std::string::npos;) {
    message.replace(at, spec.password.size(), "***");
  }
  return message;
}

Params& Params::Add(int64_t v) {
  values_.push_back(std::to_string(v));
  return *this;
}

Params& Params::Add(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back exactly
  if (ec != std::errc() && status_.ok()) status_ = Internal("cannot format a double");
  values_.emplace_back(buf, end);
  return *this;
}

Params& Params::Add(std::string_view v) {
  if (v.find('\0') != std::string_view::npos && status_.ok()) {
    status_ = InvalidArgument("parameter " + std::to_string(values_.size() + 1) +
                              " holds a NUL byte, which PostgreSQL text cannot store");
  }
  values_.emplace_back(v);
  return *this;
}

std::vector<const char*> Params::Pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const std::string& v : values_) out.push_back(v.c_str());
  return out;
}

const char* Rows::Value(int row, int col) {
  if (PQgetisnull(r_, row, col)) {
    if (error_.empty()) error_ = "column " + std::to_string(col) + " is NULL";
    return "";
  }
  return PQgetvalue(r_, row, col);
}

int64_t Rows::Int(int row, int col) {
  const char* p = Value(row, col);
  const char* end = p + std::strlen(p);
  int64_t v = 0;
  auto [next, ec] = std::from_chars(p, end, v);
  if ((ec != std::errc() || next != end) && error_.empty()) {
    error_ = "column " + std::to_string(col) + ": '" + p + "' is not an int64";
  }
  return v;
}

double Rows::Double(int row, int col) {
  const char* p = Value(row, col);
  const char* end = p + std::strlen(p);
  double v = 0;
  auto [next, ec] = std::from_chars(p, end, v);
  if ((ec != std::errc() || next != end) && error_.empty()) {
    error_ = "column " + std::to_string(col) + ": '" + p + "' is not a double";
  }
  return v;
}

std::string Rows::Text(int row, int col) {
  const char* p = Value(row, col);
  return std::string(p, static_cast<size_t>(PQgetlength(r_, row, col)));
}

Code CodeOfSqlState(std::string_view s) {
  if (s == "40001" || s == "40P01" || s == "55P03") return Code::kUnavailable;
  if (s == "25006") return Code::kPermissionDenied;  // read-only transaction
  std::string_view cls = s.substr(0, 2);
  if (cls == "23") return Code::kConflict;         // integrity constraint violation
  if (cls == "22") return Code::kInvalidArgument;  // data exception (bad UTF-8, out of range)
  if (cls == "28" || s == "42501") return Code::kPermissionDenied;  // authorization; insufficient privilege
  // Connection, resources, operator intervention, system errors.
  if (cls == "08" || cls == "53" || cls == "57" || cls == "58" || cls == "3D") return Code::kUnavailable;
  return Code::kInternal;
}

namespace {
std::string Trimmed(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}
}  // namespace

Result<std::unique_ptr<Connection>> Connection::Connect(const ConnSpec& spec) {
  // The URL comes last and is expanded (expand_dbname), so anything it sets
  // overrides these defaults.
  // TCP keepalives and a user timeout: a broker must learn within seconds,
  // not at the kernel's 2-hour default, that its server vanished (a replica
  // that believes it still leads, a watcher waiting on a dead LISTEN).
  const char* keys[] = {"connect_timeout", "application_name", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "dbname", nullptr};
  const char* vals[] = {"10", "grid", "1", "5", "2", "3", "15000", spec.url.c_str(), nullptr};
  ConnPtr conn(PQconnectdbParams(keys, vals, /*expand_dbname=*/1));
  if (conn == nullptr) return Unavailable(spec.describe + ": cannot connect: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Unavailable(spec.describe + ": cannot connect: " + Scrub(Trimmed(PQerrorMessage(conn.get())), spec));
  }
  if (PQsetClientEncoding(conn.get(), "UTF8") != 0) {
    return Unavailable(spec.describe + ": cannot set client encoding UTF8: " +
                       Scrub(Trimmed(PQerrorMessage(conn.get())), spec));
  }
  // Server NOTICEs ("relation … already exists, skipping") are not errors
  // and would otherwise go to stderr, into the broker's log.
  PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
  std::unique_ptr<Connection> c(new Connection(&spec, std::move(conn)));
  // Exact doubles both ways (see the top of postgres_conn.h).
  GRID_RETURN_IF_ERROR(c->Exec("SET extra_float_digits = 3", "set extra_float_digits"));
  // A read-only store (grid admin audit) cannot write even through a bug.
  if (spec.read_only) {
    GRID_RETURN_IF_ERROR(c->Exec("SET default_transaction_read_only = on", "set read-only"));
  }
  GRID_ASSIGN_OR_RETURN(ResultPtr sync,
                        c->Query("SELECT current_setting('synchronous_commit')", Params(), "read synchronous_commit"));
  if (PQntuples(sync.get()) == 1 && std::string_view(PQgetvalue(sync.get(), 0, 0)) == "off") {
    GRID_RETURN_IF_ERROR(c->Exec("SET synchronous_commit = on", "set synchronous_commit"));
  }
  return c;
}

Status Connection::Fail(const PGresult* result, std::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg;
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    sqlstate_ = "08006";  // connection failure, whatever the result says
    msg = Trimmed(PQerrorMessage(conn_.get()));
  } else {
    sqlstate_ = state != nullptr ? state : "";
    const char* primary = result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    msg = primary != nullptr ? Trimmed(primary) : Trimmed(PQerrorMessage(conn_.get()));
  }
  if (!sqlstate_.empty()) msg += " (SQLSTATE " + sqlstate_ + ")";
  Code code = sqlstate_.empty() ? Code::kInternal : CodeOfSqlState(sqlstate_);
  return Status(code, spec_->describe + ": " + std::string(what) + ": " + Scrub(msg, *spec_));
}

Result<ResultPtr> Connection::Query(const std::string& sql, const Params& params, std::string_view what) {
  if (!params.status().ok()) {
    return Status(params.status().code(), spec_->describe + ": " + std::string(what) + ": " + params.status().message());
  }
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "grid_" + std::to_string(prepared_.size() + 1);
    ResultPtr prep(PQprepare(conn_.get(), name.c_str(), sql.c_str(), params.size(), nullptr));
    if (PQresultStatus(prep.get()) != PGRES_COMMAND_OK) return Fail(prep.get(), what);
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  std::vector<const char*> values = params.Pointers();
  ResultPtr r(PQexecPrepared(conn_.get(), it->second.c_str(), params.size(), values.data(), nullptr, nullptr,
                             /*resultFormat=text*/ 0));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(r.get(), what);
  return r;
}

Status Connection::Exec(const std::string& sql, std::string_view what) {
  ResultPtr r(PQexec(conn_.get(), sql.c_str()));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(r.get(), what);
  return Status::Ok();
}

bool Connection::Reusable() const {
  return PQstatus(conn_.get()) == CONNECTION_OK && PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
}

void Connection::Rollback() {
  if (PQstatus(conn_.get()) != CONNECTION_OK) return;
  if (PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) return;
  ResultPtr r(PQexec(conn_.get(), "ROLLBACK"));
}

}  // namespace pg

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
using pg::Params;
using pg::ResultPtr;
using pg::Rows;

constexpr int kSchemaVersion = static_cast<int>(internal::kMigrations.size());
constexpr int kMaxAttempts = 12;
// pg_advisory_lock(int4, int4) keys: 'GRID', then which lock.
constexpr int kLockClass = 0x47524944;
constexpr int kMigrateLock = 1;
constexpr int kOneBrokerLock = 2;  // held exclusively by brokers before replicas; shared by replicas
constexpr int kLeaderLock = 3;
constexpr char kChangesChannel[] = "grid_changes";

// "INSERT INTO t (a, b, c) VALUES ($1, $2, $3) ON CONFLICT (a) DO UPDATE SET
// b = excluded.b, c = excluded.c": the SQLite store's upserts, numbered the
// PostgreSQL way.
std::string UpsertSql(std::string_view table, std::initializer_list<std::string_view> columns) {
  std::string cols, params, sets;
  int i = 0;
  for (std::string_view c : columns) {
    if (i > 0) {
      cols += ", ";
      params += ", ";
    }
    cols += c;
    params += "$" + std::to_string(i + 1);
    if (i > 0) {
      if (i > 1) sets += ", ";
      sets += std::string(c) + " = excluded." + std::string(c);
    }
    ++i;
  }
  return "INSERT INTO " + std::string(table) + " (" + cols + ") VALUES (" + params + ") ON CONFLICT (" +
         std::string(*columns.begin()) + ") DO UPDATE SET " + sets;
}

const std::string kMachineUpsert = UpsertSql(
    "machines", {"id", "provider", "gpu_name", "num_gpus", "gpu_ram", "cpu_cores", "cpu_ram", "disk_space",
                 "inet_up", "inet_down", "geolocation", "datacenter", "simulated", "spec_json", "listed",
                 "price_per_gpu_hour", "min_chunk", "end_date_ms", "storage_cost", "created_ms", "updated_ms",
                 "agent_address", "removed", "channel_payments"});
const std::string kMachineSelect =
    "SELECT id, provider, gpu_name, num_gpus, gpu_ram, cpu_cores, cpu_ram, disk_space, inet_up, inet_down, "
    "geolocation, datacenter, simulated, spec_json, listed, price_per_gpu_hour, min_chunk, end_date_ms, "
    "storage_cost, created_ms, updated_ms, agent_address, removed, channel_payments FROM machines ";
const std::string kLeaseUpsert = UpsertSql(
    "leases", {"id", "renter", "provider", "machine_id", "gpus", "price_per_hour", "fee_bps", "image",
               "order_offer_id", "order_gpus", "order_price_per_hour", "order_nonce", "order_expiry_s",
               "order_signature", "state", "end_reason", "created_ms", "started_ms", "ended_ms", "billed_ms", "charged",
               "fee", "held", "settlements", "message", "ports", "ssh_key", "endpoint_host", "endpoints"});
const std::string kLeaseSelect =
    "SELECT id, renter, provider, machine_id, gpus, price_per_hour, fee_bps, image, order_offer_id, order_gpus, "
    "order_price_per_hour, order_nonce, order_expiry_s, order_signature, state, end_reason, created_ms, "
    "started_ms, ended_ms, billed_ms, charged, fee, held, settlements, message, ports, ssh_key, endpoint_host, "
    "endpoints FROM leases ";
const std::string kLeaseChannelUpsert = UpsertSql(
    "lease_channels", {"lease_id", "channel", "contract", "chain_id", "token", "signer", "payee", "deposit",
                       "expiry_ms", "interval_ms", "grace_ms", "expiry_margin_ms", "length_ms", "margin", "voucher",
                       "voucher_sig", "voucher_ms", "redeemed", "closed"});
const std::string kLeaseChannelSelect =
    "SELECT lease_id, channel, contract, chain_id, token, signer, payee, deposit, expiry_ms, interval_ms, grace_ms, "
    "expiry_margin_ms, length_ms, margin, voucher, voucher_sig, voucher_ms, redeemed, closed FROM lease_channels ";
const std::string kWithdrawalUpsert =
    UpsertSql("withdrawals", {"id", "address", "to_address", "amount", "from_earned", "from_available", "state",
                              "nonce", "raw_tx", "tx_hashes", "mined_tx", "mined_block", "created_ms", "updated_ms",
                              "sent_ms", "error"});
const std::string kWithdrawalSelect =
    "SELECT id, address, to_address, amount, from_earned, from_available, state, nonce, raw_tx, tx_hashes, mined_tx, "
    "mined_block, created_ms, updated_ms, sent_ms, error FROM withdrawals ";
const std::string kAccountUpsert =
    UpsertSql("accounts", {"id", "debits_posted", "credits_posted", "debits_pending", "credits_pending"});
const std::string kMetaUpsert = UpsertSql("meta", {"key", "value"});
const std::string kSharedUpsert = UpsertSql("shared_state", {"key", "value", "expires_ms"});
const std::string kTransferSelect = "SELECT seq, id, debit, credit, amount, kind, lease_id, at_ms, memo FROM transfers ";

// A bounded pool of connections. Acquire() hands out an idle one, opens a new
// one while under the limit, or waits. A connection that broke or was left
// inside a transaction is closed instead of returned.
class Pool {
 public:
  class Handle {
   public:
    Handle(Pool* pool, std::unique_ptr<pg::Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Handle(Handle&& other) noexcept = default;
    Handle& operator=(Handle&&) = delete;
    Handle(const Handle&) = delete;
    ~Handle() {
      if (pool_ != nullptr && conn_ != nullptr) pool_->Release(std::move(conn_));
    }
    pg::Connection* operator->() { return conn_.get(); }
    pg::Connection& operator*() { return *conn_; }

   private:
    Pool* pool_;
    std::unique_ptr<pg::Connection> conn_;
  };

  Pool(const pg::ConnSpec* spec, int max) : spec_(spec), max_(std::max(1, max)) {}

  Result<Handle> Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_; });
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return Handle(this, std::move(conn));
    }
    ++open_;
    lock.unlock();  // connecting takes a round trip or several: not under the lock
    auto conn = pg::Connection::Connect(*spec_);
    if (!conn.ok()) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return conn.status();
    }
    return Handle(this, std::move(conn).value());
  }

 private:
  void Release(std::unique_ptr<pg::Connection> conn) {
    conn->Rollback();  // a no-op unless a caller returned early inside a transaction
    bool keep = conn->Reusable();
    if (!keep) conn.reset();  // closed outside the lock
    std::lock_guard lock(mu_);
    if (keep) {
      conn->ClearError();
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  const pg::ConnSpec* spec_;
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pg::Connection>> idle_;
  int open_ = 0;  // idle + handed out
};

// A transaction that rolls back unless committed.
class Txn {
 public:
  explicit Txn(pg::Connection& conn) : conn_(conn) {}
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() {
    if (open_) conn_.Rollback();
  }
  Status Begin(const char* sql) {
    GRID_RETURN_IF_ERROR(conn_.Exec(sql, "begin transaction"));
    open_ = true;
    return Status::Ok();
  }
  Status Commit() {
    open_ = false;  // COMMIT ends the transaction whatever it answers
    return conn_.Exec("COMMIT", "commit");
  }

 private:
  pg::Connection& conn_;
  bool open_ = false;
};

class PostgresStore final : public Store {
 public:
  PostgresStore(pg::ConnSpec spec, int pool_size) : spec_(std::move(spec)), pool_(&spec_, pool_size) {}

  ~PostgresStore() override {
    std::lock_guard lock(leader_mu_);
    if (leader_ != nullptr && leading_) {
      // Released explicitly, not left to the server's clean-up after the
      // connection closes: another replica can take over at once.
      Params p;
      p.Add(kLockClass).Add(kLeaderLock);
      (void)leader_->Query("SELECT pg_advisory_unlock($1, $2)", p, "release leadership");
    }
  }

  Status Open();

  Result<Snapshot> Load() override;
  Status Commit(const ChangeSet& changes) override;
  Result<std::optional<Transfer>> FindTransfer(const std::string& id) override;
  Result<std::vector<Transfer>> ListTransfers(const TransferQuery& query) override;
  Status ForEachTransfer(const std::function<bool(const Transfer&)>& visit) override;
  std::string Describe() const override { return spec_.describe; }

  bool Shared() const override { return true; }
  Result<int64_t> Head() override;
  Result<Changes> ChangesSince(int64_t seq) override;
  Result<int64_t> WaitForChange(int64_t seq, int64_t timeout_ms) override;
  Result<bool> HoldLeadership() override;
  Status Maintain(int64_t keep_changes, UnixMs now_ms) override;
  Status PutShared(const std::string& key, const std::string& value, UnixMs expires_ms) override;
  Result<std::optional<std::string>> GetShared(const std::string& key, UnixMs now_ms) override;
  Result<std::optional<std::string>> TakeShared(const std::string& key, UnixMs now_ms) override;
  Result<std::vector<std::pair<std::string, std::string>>> ListShared(const std::string& prefix,
                                                                     UnixMs now_ms) override;

 private:
  Status Corrupt(std::string_view what) const {
    return Internal(Describe() + ": corrupt database: " + std::string(what));
  }
  Status Migrate(pg::Connection& conn);
  Result<int> SchemaVersion(pg::Connection& conn, bool* has_table);
  Status CommitOnce(pg::Connection& conn, const ChangeSet& changes, const std::string& token, bool* commit_sent);
  // A commit whose COMMIT got no answer: OK if it happened (numbered commits
  // find their token in the change log), else kUnavailable (it did not) or
  // kOutcomeUnknown (the database cannot tell us).
  Status TakePresence(pg::Connection& conn);
  // (Re)opens leader_: keepalives, presence. Requires leader_mu_.
  Status ConnectLeaderLocked();
  Status AfterLostCommit(const ChangeSet& changes, const std::string& token, const Status& lost);
  Status PutMachine(pg::Connection& conn, const Machine& m);
  Status PutLease(pg::Connection& conn, const Lease& l);
  Status PutTransfer(pg::Connection& conn, const Transfer& t);
  Status PutWithdrawal(pg::Connection& conn, const ledger::Withdrawal& w);
  Result<std::vector<std::pair<int64_t, Transfer>>> ReadTransfers(const PGresult* r);
  Result<int64_t> ReadHead(pg::Connection& conn);
  // Every row (keys null) or the rows keys names, inside the caller's transaction.
  Status LoadRows(pg::Connection& conn, const internal::ChangeKeys* keys, Snapshot* out);

  const pg::ConnSpec spec_;  // before pool_ and the connections below: they point at it
  Pool pool_;
  // Leadership: a session advisory lock held on a connection of its own.
  std::mutex leader_mu_;
  std::unique_ptr<pg::Connection> leader_;
  bool leading_ = false;
  // WaitForChange's LISTEN connection (one waiter at a time: the broker's watcher).
  std::mutex listen_mu_;
  std::unique_ptr<pg::Connection> listener_;
};

Result<int> PostgresStore::SchemaVersion(pg::Connection& conn, bool* has_table) {
  GRID_ASSIGN_OR_RETURN(ResultPtr t, conn.Query("SELECT to_regclass('schema_migrations') IS NOT NULL", Params(),
                                                "look for schema_migrations"));
  *has_table = std::string_view(PQgetvalue(t.get(), 0, 0)) == "t";
  if (!*has_table) return 0;
  GRID_ASSIGN_OR_RETURN(ResultPtr v, conn.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", Params(),
                                                "read schema version"));
  Rows rows(v.get());
  int64_t version = rows.Int(0, 0);
  if (!rows.ok()) return Corrupt("schema_migrations: " + rows.error());
  return static_cast<int>(version);
}

Status PostgresStore::Migrate(pg::Connection& conn) {
  for (;;) {
    Txn txn(conn);
    GRID_RETURN_IF_ERROR(txn.Begin("BEGIN"));
    // Held to the end of this transaction: a second broker starting now waits
    // here, then reads the version this one wrote.
    Params lock;
    lock.Add(kLockClass).Add(kMigrateLock);
    GRID_RETURN_IF_ERROR(conn.Query("SELECT pg_advisory_xact_lock($1, $2)", lock, "take the migration lock").status());
    GRID_RETURN_IF_ERROR(conn.Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                                   "version BIGINT PRIMARY KEY, "
                                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                                   "create schema_migrations"));
    bool has_table = false;
    GRID_ASSIGN_OR_RETURN(int version, SchemaVersion(conn, &has_table));
    if (version > kSchemaVersion) {
      return InvalidArgument(Describe() + ": schema version " + std::to_string(version) +
                             " is newer than this binary knows (" + std::to_string(kSchemaVersion) +
                             "); use a newer grid");
    }
    if (version == kSchemaVersion) return txn.Commit();
    const std::string step = "migrate to schema version " + std::to_string(version + 1);
    auto sql = internal::ToPostgres(internal::kMigrations[version]);
    if (!sql.ok()) return Internal(Describe() + ": " + step + ": " + sql.status().message());
    if (Status s = conn.Exec(*sql, step); !s.ok()) {
      // A failing migration is our bug or a damaged database, never a
      // conflict for the caller to interpret.
      return Status(s.code() == Code::kUnavailable ? Code::kUnavailable : Code::kInternal, s.message());
    }
    Params v;
    v.Add(version + 1);
    GRID_RETURN_IF_ERROR(conn.Query("INSERT INTO schema_migrations (version) VALUES ($1)", v, step).status());
    GRID_RETURN_IF_ERROR(txn.Commit());
  }
}

Status PostgresStore::Open() {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  if (spec_.read_only) {
    bool has_table = false;
    GRID_ASSIGN_OR_RETURN(int version, SchemaVersion(*conn, &has_table));
    if (!has_table || version == 0) {
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
  GRID_RETURN_IF_ERROR(Migrate(*conn));
  // Present from the start, so an older broker cannot start beside us.
  std::lock_guard lock(leader_mu_);
  return ConnectLeaderLocked();
}

Status PostgresStore::ConnectLeaderLocked() {
  leader_.reset();
  leading_ = false;
  GRID_ASSIGN_OR_RETURN(std::unique_ptr<pg::Connection> conn, pg::Connection::Connect(spec_));
  // The server's side of the keepalives: a leader whose host lost power or
  // network sends no FIN, so the server probes it and ends its session (and
  // with it the lock) within about 15 s, and another replica leads.
  GRID_RETURN_IF_ERROR(conn->Exec("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                                  "SET tcp_keepalives_count = 5",
                                  "set keepalives"));
  GRID_RETURN_IF_ERROR(TakePresence(*conn));
  leader_ = std::move(conn);
  return Status::Ok();
}

Status PostgresStore::TakePresence(pg::Connection& conn) {
  // Lock 2 is the one a broker from before replicas (schema 5) holds
  // exclusively for as long as it runs: it keeps its state in memory and
  // writes without numbering, so replicas must never run beside it. Every
  // replica holds it shared, so each side refuses to start beside the other.
  Params p;
  p.Add(kLockClass).Add(kOneBrokerLock);
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("SELECT pg_try_advisory_lock_shared($1, $2)", p, "take presence"));
  if (std::string_view(PQgetvalue(r.get(), 0, 0)) == "t") return Status::Ok();
  return Status(Code::kConflict, Describe() + ": the database is in use by a broker from before replicas (it holds "
                                              "advisory lock " + std::to_string(kLockClass) + "/" +
                                              std::to_string(kOneBrokerLock) + "); stop it and upgrade it first");
}

Status PostgresStore::Commit(const ChangeSet& changes) {
  if (spec_.read_only) return PermissionDenied(Describe() + " is open read-only");
  if (changes.empty()) return Status::Ok();  // not even a change-log entry
  for (const Machine& m : changes.machines) GRID_RETURN_IF_ERROR(internal::ValidateMachine(m));

  std::minstd_rand jitter(std::random_device{}());
  // Names this commit's change-log entry, so that a COMMIT whose answer was
  // lost can be looked up.
  std::string token;
  if (changes.after_seq) {
    std::mt19937_64 random(std::random_device{}());
    token = std::to_string(random()) + "-" + std::to_string(random());
  }
  for (int attempt = 1;; ++attempt) {
    GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
    conn->ClearError();
    bool commit_sent = false;
    Status s = CommitOnce(*conn, changes, token, &commit_sent);
    if (s.ok()) return s;
    const std::string state = conn->sqlstate();
    if (commit_sent && state == "08006") return AfterLostCommit(changes, token, s);
    if (changes.after_seq && (state == "40001" || state == "40P01")) {
      // Most often another replica moved the head: say so at once rather
      // than after a retry (a lost read of the head just retries).
      auto head = Head();
      if (head.ok() && *head != *changes.after_seq) return internal::StaleCommit(*changes.after_seq, *head);
    }
    if (state != "40001" && state != "40P01" && state != "23505") return s;
    if (attempt == kMaxAttempts) {
      return Status(state == "23505" ? Code::kConflict : Code::kUnavailable,
                    s.message() + " (gave up after " + std::to_string(kMaxAttempts) + " attempts)");
    }
    // 1, 2, 4 … 64 ms, jittered, so retrying writers spread out.
    int max_ms = 1 << std::min(attempt - 1, 6);
    std::this_thread::sleep_for(std::chrono::microseconds(
        std::uniform_int_distribution<int>(max_ms * 500, max_ms * 1000)(jitter)));
  }
}

Status PostgresStore::AfterLostCommit(const ChangeSet& changes, const std::string& token, const Status& lost) {
  const std::string unknown = Describe() + ": the connection was lost during COMMIT (" + lost.message() +
                              "), so it may or may not have happened; check before repeating it";
  if (!changes.after_seq) return Status(Code::kOutcomeUnknown, unknown);
  // A numbered commit left its token in the change log if it happened: ask,
  // on a fresh connection, for a few seconds (the server may be restarting).
  const int64_t seq = *changes.after_seq + 1;
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto conn = pool_.Acquire();
    if (!conn.ok()) continue;
    Params p;
    p.Add(seq);
    auto r = (*conn)->Query("SELECT token FROM change_log WHERE seq = $1", p, "look up a lost commit");
    if (!r.ok()) continue;
    if (PQntuples(r->get()) == 1) {
      if (token == PQgetvalue(r->get(), 0, 0)) return Status::Ok();  // it happened
      return internal::StaleCommit(*changes.after_seq, seq);       // another replica's entry: ours did not
    }
    auto head = ReadHead(**conn);
    if (!head.ok()) continue;
    if (*head <= *changes.after_seq) {
      return Status(Code::kUnavailable, Describe() + ": the connection was lost during COMMIT and it did not "
                                                     "happen; nothing was changed, retry");
    }
    return internal::StaleCommit(*changes.after_seq, *head);  // trimmed already: not ours either way
  }
  return Status(Code::kOutcomeUnknown, unknown);
}

Status PostgresStore::CommitOnce(pg::Connection& conn, const ChangeSet& changes, const std::string& token,
                                 bool* commit_sent) {
  Txn txn(conn);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN ISOLATION LEVEL SERIALIZABLE"));
  if (changes.after_seq) {
    // First, so numbered commits queue on the head row instead of doing
    // their work and then failing to serialise: the one that waited gets
    // 40001 when the first commits, and its retry finds the head moved.
    Params p;
    p.Add(*changes.after_seq);
    GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("UPDATE change_head SET seq = seq + 1 WHERE id = 1 AND seq = $1 "
                                                  "RETURNING seq",
                                                  p, "advance the change log"));
    if (PQntuples(r.get()) != 1) {
      GRID_ASSIGN_OR_RETURN(int64_t head, ReadHead(conn));
      return internal::StaleCommit(*changes.after_seq, head);
    }
    internal::ChangeKeys keys = internal::KeysOf(changes);
    Params entry;
    entry.Add(*changes.after_seq + 1)
        .Add(internal::JoinIds(keys.machines))
        .Add(internal::JoinIds(keys.leases))
        .Add(internal::JoinLines(keys.accounts))
        .Add(internal::JoinLines(keys.meta))
        .Add(internal::JoinIds(keys.withdrawals))
        .Add(token);
    GRID_RETURN_IF_ERROR(conn.Query("INSERT INTO change_log (seq, machines, leases, accounts, meta, withdrawals, "
                                    "token) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                                    entry, "write the change log")
                             .status());
    // Delivered at COMMIT, and only if it commits.
    Params note;
    note.Add(std::string(kChangesChannel)).Add(std::to_string(*changes.after_seq + 1));
    GRID_RETURN_IF_ERROR(conn.Query("SELECT pg_notify($1, $2)", note, "notify replicas").status());
  }
  for (const Machine& m : changes.machines) GRID_RETURN_IF_ERROR(PutMachine(conn, m));
  for (const Lease& l : changes.leases) GRID_RETURN_IF_ERROR(PutLease(conn, l));
  for (const Transfer& t : changes.transfers) GRID_RETURN_IF_ERROR(PutTransfer(conn, t));
  for (const Account& a : changes.accounts) {
    Params p;
    p.Add(a.id).Add(a.debits_posted).Add(a.credits_posted).Add(a.debits_pending).Add(a.credits_pending);
    GRID_RETURN_IF_ERROR(conn.Query(kAccountUpsert, p, "write account " + a.id).status());
  }
  for (const auto& [key, value] : changes.meta) {
    Params p;
    p.Add(key).Add(value);
    GRID_RETURN_IF_ERROR(conn.Query(kMetaUpsert, p, "write meta " + key).status());
  }
  for (const auto& w : changes.withdrawals) GRID_RETURN_IF_ERROR(PutWithdrawal(conn, w));
  *commit_sent = true;
  return txn.Commit();
}

Status PostgresStore::PutMachine(pg::Connection& conn, const Machine& m) {
  const market::MachineSpec& s = m.spec;
  Params p;
  p.Add(m.id)
      .Add(m.provider)
      .Add(s.gpu_name)
      .Add(s.num_gpus)
      .Add(s.gpu_ram)
      .Add(s.cpu_cores)
      .Add(s.cpu_ram)
      .Add(s.disk_space)
      .Add(s.inet_up)
      .Add(s.inet_down)
      .Add(s.geolocation)
      .Add(s.datacenter)
      .Add(s.simulated)
      .Add(m.spec_json)
      .Add(m.listing.listed)
      .Add(m.listing.price_per_gpu_hour)
      .Add(m.listing.min_chunk)
      .Add(m.listing.end_date_ms)
      .Add(m.listing.storage_cost)
      .Add(m.created_ms)
      .Add(m.updated_ms)
      .Add(m.agent_address)
      .Add(m.removed)
      .Add(m.channel_payments);
  return conn.Query(kMachineUpsert, p, "write machine " + std::to_string(m.id)).status();
}

Status PostgresStore::PutLease(pg::Connection& conn, const Lease& l) {
  const std::string what = "write lease " + std::to_string(l.id);
  if (internal::HasSignedOrder(l)) {
    // Checked here rather than read back from the unique index's error, so
    // the message says what happened; the index still guards the table.
    Params p;
    p.Add(l.renter).Add(NonceToDb(l.order.nonce)).Add(l.id);
    GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("SELECT id FROM leases WHERE renter = $1 AND order_nonce = $2 "
                                                  "AND order_signature <> '' AND id <> $3 LIMIT 1",
                                                  p, what));
    if (PQntuples(r.get()) > 0) return internal::NonceReplay(l);
  }
  {
    Params p;
    p.Add(l.id)
        .Add(l.renter)
        .Add(l.provider)
        .Add(l.machine_id)
        .Add(EncodeGpus(l.gpus))
        .Add(l.price_per_hour)
        .Add(l.fee_bps)
        .Add(l.image)
        .Add(l.order.offer_id)
        .Add(l.order.gpus)
        .Add(l.order.price_per_hour)
        .Add(NonceToDb(l.order.nonce))
        .Add(l.order.expiry_s)
        .Add(l.order.signature)
        .Add(market::LeaseStateName(l.state))
        .Add(market::EndReasonName(l.end_reason))
        .Add(l.created_ms)
        .Add(l.started_ms)
        .Add(l.ended_ms)
        .Add(l.billed_ms)
        .Add(l.charged)
        .Add(l.fee)
        .Add(l.held)
        .Add(l.settlements)
        .Add(l.message)
        .Add(EncodeGpus(l.ports))
        .Add(l.ssh_key)
        .Add(l.endpoint_host)
        .Add(EncodeEndpoints(l.endpoints));
    GRID_RETURN_IF_ERROR(conn.Query(kLeaseUpsert, p, what).status());
  }
  if (l.channel) {
    const market::ChannelPayment& c = *l.channel;
    {
      Params p;
      p.Add(c.channel).Add(l.id);
      GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("SELECT lease_id FROM lease_channels WHERE channel = $1 AND "
                                                    "lease_id <> $2",
                                                    p, what));
      if (PQntuples(r.get()) > 0) {
        Rows rows(r.get());
        int64_t other = rows.Int(0, 0);
        if (!rows.ok()) return Corrupt("lease_channels: " + rows.error());
        return internal::ChannelReuse(l, other);
      }
    }
    Params p;
    p.Add(l.id)
        .Add(c.channel)
        .Add(c.contract)
        .Add(static_cast<int64_t>(c.chain_id))
        .Add(c.token)
        .Add(c.signer)
        .Add(c.payee)
        .Add(c.deposit)
        .Add(c.expiry_ms)
        .Add(c.interval_ms)
        .Add(c.grace_ms)
        .Add(c.expiry_margin_ms)
        .Add(c.length_ms)
        .Add(c.margin)
        .Add(c.voucher)
        .Add(c.voucher_sig)
        .Add(c.voucher_ms)
        .Add(c.redeemed)
        .Add(c.closed);
    GRID_RETURN_IF_ERROR(conn.Query(kLeaseChannelUpsert, p, what).status());
  }
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {{"env", &l.env}, {"command", &l.command}};
  {
    // Most upserts (settlement, state changes) leave env and command as they
    // were: one read to see that, instead of rewriting every string.
    Params p;
    p.Add(l.id);
    GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("SELECT list, value FROM lease_strings WHERE lease_id = $1 "
                                                  "ORDER BY list, pos",
                                                  p, what));
    std::vector<std::string> env, command;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      std::string_view list = PQgetvalue(r.get(), i, 0);
      (list == "env" ? env : command).emplace_back(PQgetvalue(r.get(), i, 1));
    }
    if (env == l.env && command == l.command) return Status::Ok();
    GRID_RETURN_IF_ERROR(conn.Query("DELETE FROM lease_strings WHERE lease_id = $1", p, what).status());
  }
  for (const auto& [list, values] : lists) {
    for (size_t pos = 0; pos < values->size(); ++pos) {
      Params p;
      p.Add(l.id).Add(list).Add(static_cast<int64_t>(pos)).Add((*values)[pos]);
      GRID_RETURN_IF_ERROR(
          conn.Query("INSERT INTO lease_strings (lease_id, list, pos, value) VALUES ($1, $2, $3, $4)", p, what)
              .status());
    }
  }
  return Status::Ok();
}

Status PostgresStore::PutTransfer(pg::Connection& conn, const Transfer& t) {
  const std::string what = "write transfer " + t.id;
  {
    Params p;
    p.Add(t.id);
    GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query(kTransferSelect + "WHERE id = $1", p, what));
    if (PQntuples(r.get()) > 0) {
      GRID_ASSIGN_OR_RETURN(auto stored, ReadTransfers(r.get()));
      return internal::DuplicateTransfer(stored[0].second, t);
    }
  }
  Params p;
  p.Add(t.id)
      .Add(t.debit)
      .Add(t.credit)
      .Add(t.amount)
      .Add(ledger::TransferKindName(t.kind))
      .Add(t.lease_id)
      .Add(t.at_ms)
      .Add(t.memo);
  return conn
      .Query("INSERT INTO transfers (id, debit, credit, amount, kind, lease_id, at_ms, memo) "
             "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
             p, what)
      .status();
}

Status PostgresStore::PutWithdrawal(pg::Connection& conn, const ledger::Withdrawal& w) {
  Params p;
  p.Add(w.id)
      .Add(w.address)
      .Add(w.to)
      .Add(w.amount)
      .Add(w.from_earned)
      .Add(w.from_available)
      .Add(ledger::WithdrawalStateName(w.state))
      .Add(NonceToDb(w.nonce))
      .Add(w.raw_tx)
      .Add(JoinList(w.tx_hashes))
      .Add(w.mined_tx)
      .Add(static_cast<int64_t>(w.mined_block))
      .Add(w.created_ms)
      .Add(w.updated_ms)
      .Add(w.sent_ms)
      .Add(w.error);
  return conn.Query(kWithdrawalUpsert, p, "write withdrawal " + std::to_string(w.id)).status();
}

Result<std::vector<std::pair<int64_t, Transfer>>> PostgresStore::ReadTransfers(const PGresult* r) {
  Rows rows(r);
  std::vector<std::pair<int64_t, Transfer>> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    Transfer t;
    int64_t seq = rows.Int(i, 0);
    t.id = rows.Text(i, 1);
    t.debit = rows.Text(i, 2);
    t.credit = rows.Text(i, 3);
    t.amount = rows.Int(i, 4);
    std::string kind = rows.Text(i, 5);
    t.lease_id = rows.Int(i, 6);
    t.at_ms = rows.Int(i, 7);
    t.memo = rows.Text(i, 8);
    if (!rows.ok()) return Corrupt("transfer " + t.id + ": " + rows.error());
    if (!ledger::ParseTransferKind(kind, &t.kind)) return Corrupt("transfer " + t.id + " has kind '" + kind + "'");
    out.emplace_back(seq, std::move(t));
  }
  return out;
}

namespace {

// A PostgreSQL array literal of ids or of text keys, for "= ANY($1)".
std::string ArrayLiteral(const std::vector<int64_t>& ids) { return "{" + internal::JoinIds(ids) + "}"; }
std::string ArrayLiteral(const std::vector<std::string>& keys) {
  std::string out = "{";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : keys[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

}  // namespace

Result<Snapshot> PostgresStore::Load() {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Snapshot snap;
  // One snapshot for every table, even while a broker writes.
  Txn txn(*conn);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  GRID_ASSIGN_OR_RETURN(snap.seq, ReadHead(*conn));
  GRID_RETURN_IF_ERROR(LoadRows(*conn, nullptr, &snap));
  GRID_RETURN_IF_ERROR(txn.Commit());
  return snap;
}

Result<int64_t> PostgresStore::ReadHead(pg::Connection& conn) {
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn.Query("SELECT seq FROM change_head WHERE id = 1", Params(),
                                                "read the change log's head"));
  Rows rows(r.get());
  if (rows.size() != 1) return Corrupt("change_head has no row");
  int64_t seq = rows.Int(0, 0);
  if (!rows.ok()) return Corrupt("change_head: " + rows.error());
  return seq;
}

Result<int64_t> PostgresStore::Head() {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  return ReadHead(*conn);
}

Result<Changes> PostgresStore::ChangesSince(int64_t seq) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Changes out;
  Txn txn(*conn);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  GRID_ASSIGN_OR_RETURN(out.seq, ReadHead(*conn));
  out.rows.seq = out.seq;
  if (out.seq <= seq) return out;
  Params p;
  p.Add(seq);
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query("SELECT seq, machines, leases, accounts, meta, withdrawals "
                                                 "FROM change_log WHERE seq > $1 ORDER BY seq",
                                                 p, "read the change log"));
  Rows rows(r.get());
  // Entries are numbered without gaps; a missing first one was trimmed.
  if (rows.size() == 0 || rows.Int(0, 0) != seq + 1) {
    out.reload = true;
    return out;
  }
  internal::ChangeKeys keys;
  for (int i = 0; i < rows.size(); ++i) {
    internal::ChangeKeys entry;
    if (!internal::SplitIds(rows.Text(i, 1), &entry.machines) || !internal::SplitIds(rows.Text(i, 2), &entry.leases) ||
        !internal::SplitIds(rows.Text(i, 5), &entry.withdrawals))
      return Corrupt("change_log entry " + std::to_string(rows.Int(i, 0)) + " has a bad id list");
    entry.accounts = internal::SplitLines(rows.Text(i, 3));
    entry.meta = internal::SplitLines(rows.Text(i, 4));
    internal::Merge(&keys, entry);
    out.entries.push_back({rows.Int(i, 0), std::move(entry.machines), std::move(entry.leases)});
  }
  if (!rows.ok()) return Corrupt("change_log: " + rows.error());
  GRID_RETURN_IF_ERROR(LoadRows(*conn, &keys, &out.rows));
  GRID_RETURN_IF_ERROR(txn.Commit());
  return out;
}

Status PostgresStore::LoadRows(pg::Connection& connection, const internal::ChangeKeys* keys, Snapshot* out) {
  pg::Connection* conn = &connection;
  Snapshot& snap = *out;
  // Every row, or (keys) the rows named: "WHERE column = ANY($1)".
  auto select = [&](const std::string& base, const char* column, const char* type, const std::string& literal,
                    const char* order, const char* what) -> Result<ResultPtr> {
    Params p;
    std::string sql = base;
    // Nothing named in this table: no round trip, an empty result.
    if (keys != nullptr && literal == "{}") return ResultPtr(PQmakeEmptyPGresult(conn->raw(), PGRES_TUPLES_OK));
    if (keys != nullptr) {
      sql += std::string("WHERE ") + column + " = ANY($1::" + type + "[]) ";
      p.Add(literal);
    }
    sql += std::string("ORDER BY ") + order;
    return conn->Query(sql, p, what);
  };
  auto ids = [&](const std::vector<int64_t> internal::ChangeKeys::*field) {
    return keys != nullptr ? ArrayLiteral(keys->*field) : std::string();
  };
  auto texts = [&](const std::vector<std::string> internal::ChangeKeys::*field) {
    return keys != nullptr ? ArrayLiteral(keys->*field) : std::string();
  };
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select(kMachineSelect, "id", "bigint", ids(&internal::ChangeKeys::machines),
                                              "id", "read machines"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      Machine m;
      market::MachineSpec& s = m.spec;
      m.id = rows.Int(i, 0);
      m.provider = rows.Text(i, 1);
      s.gpu_name = rows.Text(i, 2);
      s.num_gpus = static_cast<int>(rows.Int(i, 3));
      s.gpu_ram = rows.Double(i, 4);
      s.cpu_cores = static_cast<int>(rows.Int(i, 5));
      s.cpu_ram = rows.Double(i, 6);
      s.disk_space = rows.Double(i, 7);
      s.inet_up = rows.Double(i, 8);
      s.inet_down = rows.Double(i, 9);
      s.geolocation = rows.Text(i, 10);
      s.datacenter = rows.Int(i, 11) != 0;
      s.simulated = rows.Int(i, 12) != 0;
      m.spec_json = rows.Text(i, 13);
      m.listing.listed = rows.Int(i, 14) != 0;
      m.listing.price_per_gpu_hour = rows.Int(i, 15);
      m.listing.min_chunk = static_cast<int>(rows.Int(i, 16));
      m.listing.end_date_ms = rows.Int(i, 17);
      m.listing.storage_cost = rows.Int(i, 18);
      m.created_ms = rows.Int(i, 19);
      m.updated_ms = rows.Int(i, 20);
      m.agent_address = rows.Text(i, 21);
      m.removed = rows.Int(i, 22) != 0;
      m.channel_payments = rows.Int(i, 23) != 0;
      if (!rows.ok()) return Corrupt("machine " + std::to_string(m.id) + ": " + rows.error());
      snap.machines.push_back(std::move(m));
    }
  }
  std::unordered_map<int64_t, size_t> lease_index;
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select(kLeaseSelect, "id", "bigint", ids(&internal::ChangeKeys::leases), "id",
                                              "read leases"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      Lease l;
      l.id = rows.Int(i, 0);
      const std::string lease = "lease " + std::to_string(l.id);
      l.renter = rows.Text(i, 1);
      l.provider = rows.Text(i, 2);
      l.machine_id = rows.Int(i, 3);
      std::string gpus = rows.Text(i, 4);
      if (!DecodeGpus(gpus, &l.gpus)) return Corrupt(lease + " has gpus '" + gpus + "'");
      l.price_per_hour = rows.Int(i, 5);
      l.fee_bps = rows.Int(i, 6);
      l.image = rows.Text(i, 7);
      l.order.offer_id = rows.Int(i, 8);
      l.order.gpus = static_cast<int>(rows.Int(i, 9));
      l.order.price_per_hour = rows.Int(i, 10);
      l.order.nonce = NonceFromDb(rows.Int(i, 11));
      l.order.expiry_s = rows.Int(i, 12);
      l.order.signature = rows.Text(i, 13);
      std::string state = rows.Text(i, 14), reason = rows.Text(i, 15);
      if (!market::ParseLeaseState(state, &l.state)) return Corrupt(lease + " has state '" + state + "'");
      if (!market::ParseEndReason(reason, &l.end_reason)) return Corrupt(lease + " has end_reason '" + reason + "'");
      l.created_ms = rows.Int(i, 16);
      l.started_ms = rows.Int(i, 17);
      l.ended_ms = rows.Int(i, 18);
      l.billed_ms = rows.Int(i, 19);
      l.charged = rows.Int(i, 20);
      l.fee = rows.Int(i, 21);
      l.held = rows.Int(i, 22);
      l.settlements = rows.Int(i, 23);
      l.message = rows.Text(i, 24);
      std::string ports = rows.Text(i, 25), endpoints = rows.Text(i, 28);
      if (!DecodeGpus(ports, &l.ports)) return Corrupt(lease + " has ports '" + ports + "'");
      l.ssh_key = rows.Text(i, 26);
      l.endpoint_host = rows.Text(i, 27);
      if (!DecodeEndpoints(endpoints, &l.endpoints)) return Corrupt(lease + " has endpoints '" + endpoints + "'");
      if (!rows.ok()) return Corrupt(lease + ": " + rows.error());
      lease_index.emplace(l.id, snap.leases.size());
      snap.leases.push_back(std::move(l));
    }
  }
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select("SELECT lease_id, list, pos, value FROM lease_strings ", "lease_id",
                                              "bigint", ids(&internal::ChangeKeys::leases), "lease_id, list, pos",
                                              "read lease env and command"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      int64_t lease_id = rows.Int(i, 0);
      std::string list = rows.Text(i, 1);
      int64_t pos = rows.Int(i, 2);
      std::string value = rows.Text(i, 3);
      if (!rows.ok()) return Corrupt("lease_strings: " + rows.error());
      auto it = lease_index.find(lease_id);
      if (it == lease_index.end()) return Corrupt("lease_strings row for missing lease " + std::to_string(lease_id));
      Lease& l = snap.leases[it->second];
      std::vector<std::string>* values = list == "env" ? &l.env : list == "command" ? &l.command : nullptr;
      if (values == nullptr || pos != static_cast<int64_t>(values->size())) {
        return Corrupt("lease " + std::to_string(lease_id) + " has a gap in its " + list + " list");
      }
      values->push_back(std::move(value));
    }
  }
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select(kLeaseChannelSelect, "lease_id", "bigint",
                                              ids(&internal::ChangeKeys::leases), "lease_id", "read lease channels"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      int64_t lease_id = rows.Int(i, 0);
      auto it = lease_index.find(lease_id);
      if (it == lease_index.end()) return Corrupt("lease_channels row for missing lease " + std::to_string(lease_id));
      snap.leases[it->second].channel = market::ChannelPayment{.channel = rows.Text(i, 1),
                                                               .contract = rows.Text(i, 2),
                                                               .chain_id = static_cast<uint64_t>(rows.Int(i, 3)),
                                                               .token = rows.Text(i, 4),
                                                               .signer = rows.Text(i, 5),
                                                               .payee = rows.Text(i, 6),
                                                               .deposit = rows.Int(i, 7),
                                                               .expiry_ms = rows.Int(i, 8),
                                                               .interval_ms = rows.Int(i, 9),
                                                               .grace_ms = rows.Int(i, 10),
                                                               .expiry_margin_ms = rows.Int(i, 11),
                                                               .length_ms = rows.Int(i, 12),
                                                               .margin = rows.Int(i, 13),
                                                               .voucher = rows.Int(i, 14),
                                                               .voucher_sig = rows.Text(i, 15),
                                                               .voucher_ms = rows.Int(i, 16),
                                                               .redeemed = rows.Int(i, 17),
                                                               .closed = rows.Int(i, 18) != 0};
      if (!rows.ok()) return Corrupt("lease_channels of lease " + std::to_string(lease_id) + ": " + rows.error());
    }
  }
  {
    // COLLATE "C" here and for meta: byte order, as SQLite's default BINARY
    // collation sorts, whatever the database's locale.
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select("SELECT id, debits_posted, credits_posted, debits_pending, "
                                              "credits_pending FROM accounts ",
                                              "id", "text", texts(&internal::ChangeKeys::accounts),
                                              "id COLLATE \"C\"", "read accounts"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      snap.accounts.push_back(Account{.id = rows.Text(i, 0),
                                      .debits_posted = rows.Int(i, 1),
                                      .credits_posted = rows.Int(i, 2),
                                      .debits_pending = rows.Int(i, 3),
                                      .credits_pending = rows.Int(i, 4)});
    }
    if (!rows.ok()) return Corrupt("accounts: " + rows.error());
  }
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select("SELECT key, value FROM meta ", "key", "text",
                                              texts(&internal::ChangeKeys::meta), "key COLLATE \"C\"", "read meta"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) snap.meta.emplace_back(rows.Text(i, 0), rows.Text(i, 1));
    if (!rows.ok()) return Corrupt("meta: " + rows.error());
  }
  {
    GRID_ASSIGN_OR_RETURN(ResultPtr r, select(kWithdrawalSelect, "id", "bigint",
                                              ids(&internal::ChangeKeys::withdrawals), "id", "read withdrawals"));
    Rows rows(r.get());
    for (int i = 0; i < rows.size(); ++i) {
      ledger::Withdrawal w;
      w.id = rows.Int(i, 0);
      w.address = rows.Text(i, 1);
      w.to = rows.Text(i, 2);
      w.amount = rows.Int(i, 3);
      w.from_earned = rows.Int(i, 4);
      w.from_available = rows.Int(i, 5);
      std::string state = rows.Text(i, 6);
      if (!ledger::ParseWithdrawalState(state, &w.state))
        return Corrupt("withdrawal " + std::to_string(w.id) + " has state '" + state + "'");
      w.nonce = NonceFromDb(rows.Int(i, 7));
      w.raw_tx = rows.Text(i, 8);
      w.tx_hashes = SplitList(rows.Text(i, 9));
      w.mined_tx = rows.Text(i, 10);
      w.mined_block = static_cast<uint64_t>(rows.Int(i, 11));
      w.created_ms = rows.Int(i, 12);
      w.updated_ms = rows.Int(i, 13);
      w.sent_ms = rows.Int(i, 14);
      w.error = rows.Text(i, 15);
      if (!rows.ok()) return Corrupt("withdrawal " + std::to_string(w.id) + ": " + rows.error());
      snap.withdrawals.push_back(std::move(w));
    }
  }
  return Status::Ok();
}

Result<std::optional<Transfer>> PostgresStore::FindTransfer(const std::string& id) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Params p;
  p.Add(id);
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query(kTransferSelect + "WHERE id = $1", p, "find transfer " + id));
  GRID_ASSIGN_OR_RETURN(auto found, ReadTransfers(r.get()));
  if (found.empty()) return std::optional<Transfer>();
  return std::optional<Transfer>(std::move(found[0].second));
}

Result<std::vector<Transfer>> PostgresStore::ListTransfers(const TransferQuery& query) {
  std::vector<Transfer> out;
  if (query.limit <= 0) return out;
  const size_t limit = static_cast<size_t>(query.limit);
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());

  if (query.lease_id > 0 || query.accounts.empty()) {
    // As in the SQLite store: a lease has few transfers (filter accounts
    // here); without filters the newest `limit` rows are the answer.
    Params p;
    p.Add(query.lease_id > 0 ? query.lease_id : static_cast<int64_t>(limit));
    GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query(query.lease_id > 0
                                                       ? kTransferSelect + "WHERE lease_id = $1 ORDER BY seq DESC"
                                                       : kTransferSelect + "ORDER BY seq DESC LIMIT $1",
                                                   p, "list transfers"));
    GRID_ASSIGN_OR_RETURN(auto rows, ReadTransfers(r.get()));
    for (auto& [seq, t] : rows) {
      if (out.size() >= limit) break;
      if (!query.accounts.empty() &&
          std::none_of(query.accounts.begin(), query.accounts.end(),
                       [&](const std::string& a) { return t.debit == a || t.credit == a; })) {
        continue;
      }
      out.push_back(std::move(t));
    }
    return out;
  }

  // By accounts: the newest `limit` of each (account, side) through the
  // (debit, seq) and (credit, seq) indexes, merged by seq, as in SQLite.
  std::map<int64_t, Transfer, std::greater<>> merged;
  for (const char* side : {"debit", "credit"}) {
    const std::string sql = kTransferSelect + "WHERE " + side + " = $1 ORDER BY seq DESC LIMIT $2";
    for (const std::string& account : query.accounts) {
      Params p;
      p.Add(account).Add(static_cast<int64_t>(limit));
      GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query(sql, p, "list transfers"));
      GRID_ASSIGN_OR_RETURN(auto rows, ReadTransfers(r.get()));
      for (auto& [seq, t] : rows) merged.emplace(seq, std::move(t));
    }
  }
  for (auto& [seq, t] : merged) {
    if (out.size() >= limit) break;
    out.push_back(std::move(t));
  }
  return out;
}

Status PostgresStore::ForEachTransfer(const std::function<bool(const Transfer&)>& visit) {
  // Pages by seq, each on a connection returned before `visit` runs, so the
  // visitor may use the store and no transaction stays open meanwhile.
  constexpr int64_t kPage = 512;
  for (int64_t after = 0;;) {
    std::vector<std::pair<int64_t, Transfer>> page;
    {
      GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
      Params p;
      p.Add(after).Add(kPage);
      GRID_ASSIGN_OR_RETURN(ResultPtr r,
                            conn->Query(kTransferSelect + "WHERE seq > $1 ORDER BY seq LIMIT $2", p, "read transfers"));
      GRID_ASSIGN_OR_RETURN(page, ReadTransfers(r.get()));
    }
    if (page.empty()) return Status::Ok();
    after = page.back().first;
    for (const auto& [seq, t] : page) {
      if (!visit(t)) return Status::Ok();
    }
  }
}

Result<int64_t> PostgresStore::WaitForChange(int64_t seq, int64_t timeout_ms) {
  std::lock_guard lock(listen_mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (listener_ == nullptr || !listener_->Reusable()) {
    listener_.reset();
    auto conn = pg::Connection::Connect(spec_);
    if (conn.ok()) {
      listener_ = std::move(conn).value();
      if (!listener_->Exec(std::string("LISTEN ") + kChangesChannel, "listen for changes").ok()) listener_.reset();
    }
  }
  for (;;) {
    // LISTEN is in place before the head is read, so a commit after this
    // read is always noticed.
    GRID_ASSIGN_OR_RETURN(int64_t head, Head());
    if (head > seq) return head;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return head;
    if (listener_ == nullptr) {
      // No LISTEN connection (the server is restarting?): poll.
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(200)));
      continue;
    }
    pollfd fd{PQsocket(listener_->raw()), POLLIN, 0};
    int ready = poll(&fd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) listener_.reset();
    if (listener_ != nullptr && ready > 0) {
      if (PQconsumeInput(listener_->raw()) == 0) {
        listener_.reset();  // the connection broke; reconnect on the next call
      } else {
        while (PGnotify* n = PQnotifies(listener_->raw())) PQfreemem(n);
      }
    }
  }
}

Result<bool> PostgresStore::HoldLeadership() {
  if (spec_.read_only) return false;
  std::lock_guard lock(leader_mu_);
  if (leader_ != nullptr && leading_) {
    // Still ours while the session lives: a round trip proves it.
    if (leader_->Exec("SELECT 1", "check leadership").ok()) return true;
    leader_.reset();  // the session is gone, and the server freed the lock with it
    leading_ = false;
  }
  if (leader_ == nullptr || !leader_->Reusable()) GRID_RETURN_IF_ERROR(ConnectLeaderLocked());
  Params p;
  p.Add(kLockClass).Add(kLeaderLock);
  GRID_ASSIGN_OR_RETURN(ResultPtr r, leader_->Query("SELECT pg_try_advisory_lock($1, $2)", p, "take leadership"));
  leading_ = std::string_view(PQgetvalue(r.get(), 0, 0)) == "t";
  return leading_;
}

Status PostgresStore::Maintain(int64_t keep_changes, UnixMs now_ms) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Params trim;
  trim.Add(keep_changes);
  GRID_RETURN_IF_ERROR(conn->Query("DELETE FROM change_log WHERE seq < (SELECT seq FROM change_head WHERE id = 1) - $1",
                                   trim, "trim the change log")
                           .status());
  Params expired;
  expired.Add(now_ms);
  return conn->Query("DELETE FROM shared_state WHERE expires_ms <= $1", expired, "delete expired shared state")
      .status();
}

Status PostgresStore::PutShared(const std::string& key, const std::string& value, UnixMs expires_ms) {
  if (spec_.read_only) return PermissionDenied(Describe() + " is open read-only");
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  // Heartbeats, nonces and output are rewritten all the time and worth
  // less than a flush each: this transaction does not wait for its WAL to
  // reach the disk (a server crash may lose the last fraction of a second of
  // them; the ledger and the market never commit this way).
  Txn txn(*conn);
  GRID_RETURN_IF_ERROR(txn.Begin("BEGIN"));
  GRID_RETURN_IF_ERROR(conn->Exec("SET LOCAL synchronous_commit TO off", "write shared state"));
  Params p;
  p.Add(key).Add(value).Add(expires_ms);
  GRID_RETURN_IF_ERROR(conn->Query(kSharedUpsert, p, "write shared state").status());
  return txn.Commit();
}

Result<std::optional<std::string>> PostgresStore::GetShared(const std::string& key, UnixMs now_ms) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Params p;
  p.Add(key).Add(now_ms);
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query("SELECT value FROM shared_state WHERE key = $1 AND expires_ms > $2",
                                                 p, "read shared state"));
  if (PQntuples(r.get()) == 0) return std::optional<std::string>();
  return std::optional<std::string>(PQgetvalue(r.get(), 0, 0));
}

Result<std::optional<std::string>> PostgresStore::TakeShared(const std::string& key, UnixMs now_ms) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Params p;
  p.Add(key);
  // One statement: of two replicas taking the same key, one deletes the row.
  GRID_ASSIGN_OR_RETURN(ResultPtr r, conn->Query("DELETE FROM shared_state WHERE key = $1 RETURNING value, expires_ms",
                                                 p, "take shared state"));
  if (PQntuples(r.get()) == 0) return std::optional<std::string>();
  Rows rows(r.get());
  std::string value = rows.Text(0, 0);
  int64_t expires = rows.Int(0, 1);
  if (!rows.ok()) return Corrupt("shared_state " + key + ": " + rows.error());
  if (expires <= now_ms) return std::optional<std::string>();
  return std::optional<std::string>(std::move(value));
}

Result<std::vector<std::pair<std::string, std::string>>> PostgresStore::ListShared(const std::string& prefix,
                                                                                  UnixMs now_ms) {
  GRID_ASSIGN_OR_RETURN(Pool::Handle conn, pool_.Acquire());
  Params p;
  // A range on the key, not LIKE: the prefix may hold % or _.
  p.Add(prefix).Add(prefix + "\xf4\x8f\xbf\xbf").Add(now_ms);
  GRID_ASSIGN_OR_RETURN(ResultPtr r,
                        conn->Query("SELECT key, value FROM shared_state WHERE key COLLATE \"C\" >= $1 AND "
                                    "key COLLATE \"C\" < $2 AND expires_ms > $3 ORDER BY key COLLATE \"C\"",
                                    p, "list shared state"));
  Rows rows(r.get());
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 0; i < rows.size(); ++i) {
    std::string key = rows.Text(i, 0);
    if (key.starts_with(prefix)) out.emplace_back(std::move(key), rows.Text(i, 1));
  }
  if (!rows.ok()) return Corrupt("shared_state: " + rows.error());
  return out;
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url, PostgresOptions options) {
  GRID_ASSIGN_OR_RETURN(pg::ConnSpec spec, pg::ParseUrl(url, options.read_only));
  auto store = std::make_unique<PostgresStore>(std::move(spec), options.pool_size);
  GRID_RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace grid::store
