// Store: where the broker's state becomes durable. One narrow interface, with
// an SQLite implementation (the embedded default), a PostgreSQL one (for a
// market that outgrows one machine, issue 7) and an in-memory one for tests —
// all behind the same contract:
//
//  - Commit() applies a ChangeSet atomically: all of it or none of it. When it
//    returns OK the change is durable (survives kill -9 and, with SQLite's
//    synchronous=FULL, power loss). Acknowledged writes are never lost.
//  - Transfer ids are unique. Committing a transfer whose id exists fails the
//    whole ChangeSet with kIdempotencyMismatch if the stored transfer differs,
//    and kConflict ("exists") if it is identical — the caller decides.
//  - A lease's (renter, order nonce) is unique: a replayed signed order fails
//    the ChangeSet with kConflict.
//  - Load() returns everything the broker keeps in memory; transfers are read
//    on demand (history, audit), since they grow without bound.
//
// Replicas (issue 7): a store that Shared() says several brokers may open at
// once (PostgreSQL; an in-memory database in tests) keeps a change log. Every
// ChangeSet committed with `after_seq` set is numbered: it commits only if
// the log's head is still `after_seq` (else kAborted, and nothing is
// written) and becomes entry after_seq + 1, naming the rows it wrote. A
// broker that commits only that way, having applied every entry up to
// after_seq, decides each command on the database's latest state: the
// commits of all replicas form one serial order (docs/operations.md,
// "Several brokers"). ChangesSince() gives a replica the rows later entries
// wrote; WaitForChange() wakes it when another replica commits.
// HoldLeadership() elects the one replica that runs background work, and the
// shared_state table carries what replicas must share that is not the
// ledger or the market (heartbeats, login nonces, workload output).
// SQLite is not Shared(): one broker at a time (an flock), always leader.
//
// Thread safety: implementations are safe to call from several threads; the
// broker still serialises Commit() calls.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/status.h"
#include "ledger/ledger.h"
#include "ledger/withdrawal.h"
#include "market/types.h"

namespace grid::store {

struct ChangeSet {
  std::vector<market::Machine> machines;    // upserted by id
  std::vector<market::Lease> leases;        // upserted by id
  std::vector<ledger::Transfer> transfers;  // inserted
  std::vector<ledger::Account> accounts;    // upserted by id (balances after the transfers)
  std::vector<std::pair<std::string, std::string>> meta;  // upserted key -> value
  std::vector<ledger::Withdrawal> withdrawals;              // upserted by id
  // Replicas: commit only as change-log entry after_seq + 1 (see above).
  std::optional<int64_t> after_seq;
  bool empty() const {
    return machines.empty() && leases.empty() && transfers.empty() && accounts.empty() && meta.empty() &&
           withdrawals.empty();
  }
};

struct Snapshot {
  std::vector<market::Machine> machines;  // spec_json set; spec's core fields set
  std::vector<market::Lease> leases;
  std::vector<ledger::Account> accounts;
  std::vector<std::pair<std::string, std::string>> meta;
  std::vector<ledger::Withdrawal> withdrawals;
  int64_t seq = 0;  // the change log's head this snapshot reflects (0 when not Shared())
};

// What the change log's entries after some sequence number wrote: the rows
// as they are at `seq` (a Snapshot holding just those rows). `reload`: the
// log was trimmed past the sequence asked for; Load() everything again.
struct Changes {
  int64_t seq = 0;
  bool reload = false;
  Snapshot rows;
  // Each entry's number and the machines and leases it wrote (not with
  // reload), so a replica can tell which entry last touched a machine.
  struct Entry {
    int64_t seq = 0;
    std::vector<int64_t> machines, leases;
  };
  std::vector<Entry> entries;
};

struct TransferQuery {
  std::vector<std::string> accounts;  // transfers debiting or crediting any of these
  int64_t lease_id = 0;               // if > 0, only this lease's transfers
  int limit = 1000;
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<Snapshot> Load() = 0;
  virtual Status Commit(const ChangeSet& changes) = 0;
  virtual Result<std::optional<ledger::Transfer>> FindTransfer(const std::string& id) = 0;
  // Newest first (by insertion order).
  virtual Result<std::vector<ledger::Transfer>> ListTransfers(const TransferQuery& query) = 0;
  // Every transfer in insertion order (for the audit). Stops early if visit returns false.
  virtual Status ForEachTransfer(const std::function<bool(const ledger::Transfer&)>& visit) = 0;
  // "sqlite:/path/grid.db", "postgres://grid@db:5432/grid" (never a
  // password), "memory:"
  virtual std::string Describe() const = 0;

  // --- replicas (see the top of this file). The defaults are a store only
  // one broker opens: never shared, always the leader.
  virtual bool Shared() const { return false; }
  // The change log's head (0 when not Shared()).
  virtual Result<int64_t> Head() { return int64_t{0}; }
  virtual Result<Changes> ChangesSince(int64_t seq);
  // Returns the head as soon as it passes `seq`, or at the timeout.
  virtual Result<int64_t> WaitForChange(int64_t seq, int64_t timeout_ms);
  // True while this store holds the database's one leadership: kept until
  // the store is destroyed or its connection to the database is lost (a
  // kill -9'ed replica's is freed by the server). Cheap enough to ask each
  // second.
  virtual Result<bool> HoldLeadership() { return true; }
  // Housekeeping, for the leader: trims change-log entries more than
  // `keep_changes` behind the head and deletes expired shared state.
  virtual Status Maintain(int64_t /*keep_changes*/, UnixMs /*now_ms*/) { return Status::Ok(); }
  // Shared state: small values every replica sees, outside the change log
  // (no ordering with commits). Only Shared() stores keep it; the others
  // answer kInternal, and a broker on them keeps such state in its memory.
  virtual Status PutShared(const std::string& key, const std::string& value, UnixMs expires_ms);
  // The value unless missing or expired at now_ms.
  virtual Result<std::optional<std::string>> GetShared(const std::string& key, UnixMs now_ms);
  // Deletes the key; returns its value if it was there and not expired
  // (exactly one of several concurrent takers gets it).
  virtual Result<std::optional<std::string>> TakeShared(const std::string& key, UnixMs now_ms);
  // Unexpired keys starting with `prefix`, in key order.
  virtual Result<std::vector<std::pair<std::string, std::string>>> ListShared(const std::string& prefix,
                                                                             UnixMs now_ms);
};

struct SqliteOptions {
  bool read_only = false;  // for `grid admin audit --db`: never writes, never migrates
};

// Opens (creating and migrating unless read_only) an SQLite database.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, SqliteOptions options = {});
std::unique_ptr<Store> NewMemoryStore();

// An in-memory database that several stores open at once, as replicas on
// one PostgreSQL database do (tests of the replicated broker). Each store
// from OpenMemoryReplica() is Shared(); leadership goes to the first that
// asks and passes on when it is destroyed.
class MemoryDatabase;
std::shared_ptr<MemoryDatabase> NewMemoryDatabase();
std::unique_ptr<Store> OpenMemoryReplica(std::shared_ptr<MemoryDatabase> db);

struct PostgresOptions {
  bool read_only = false;  // for `grid admin audit --db`: never writes, never migrates
  int pool_size = 4;       // connections kept open at most; callers beyond it wait
};

// Opens a PostgreSQL database by libpq URL ("postgres://USER[:PASSWORD]@HOST
// :PORT/DB[?sslmode=…]"; "postgresql://" too; the password may also come
// from ~/.pgpass or PGPASSWORD, as libpq reads them), creating and migrating
// the schema unless read_only. Contract as above; the isolation level, the
// retries and the one-writer lock are described in postgres_store.cc. A
// read-write open fails with kConflict while another read-write store (a
// broker) has the same database open. Messages name the server as
// Describe() does, never with the password.
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url, PostgresOptions options = {});

// "sqlite:PATH", "PATH", "postgres://…" / "postgresql://…" or "memory:".
Result<std::unique_ptr<Store>> OpenStore(const std::string& url, bool read_only = false);

}  // namespace grid::store
