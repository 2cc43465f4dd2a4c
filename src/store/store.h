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
// Thread safety: implementations are safe to call from several threads; the
// broker still serialises Commit() calls.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
};

struct SqliteOptions {
  bool read_only = false;  // for `grid admin audit --db`: never writes, never migrates
};

// Opens (creating and migrating unless read_only) an SQLite database.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, SqliteOptions options = {});
std::unique_ptr<Store> NewMemoryStore();

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
