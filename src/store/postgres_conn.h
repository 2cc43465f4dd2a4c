// Thin RAII wrappers over libpq's C API, for the PostgreSQL store
// (postgres_store.cc) and its tests. Internal to src/store/.
//
// Every parameter and every result column travels in text format: one format
// for both directions keeps the code short, int64 and uint64-as-int64 values
// are exact decimal text, and doubles are exact too because we send the
// shortest round-trip form (std::to_chars) and ask the server for the same
// (extra_float_digits = 3, PostgreSQL >= 12).
//
// Thread safety: a Connection is used by one thread at a time (the pool in
// postgres_store.cc hands it out); nothing here is shared.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace grid::store::pg {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;

// What a postgres:// URL names. `describe` is "postgres://USER@HOST:PORT/DB"
// with no password: the only form that goes into messages.
struct ConnSpec {
  std::string url;
  std::string describe;
  std::string password;  // only to scrub it from libpq's messages
  bool read_only = false;
};

// Parses a postgres:// or postgresql:// URL (libpq's own parser, so every
// form libpq accepts works). kInvalidArgument on a malformed URL.
Result<ConnSpec> ParseUrl(const std::string& url, bool read_only);

// `message` with the spec's password replaced by ***, for text that came from
// libpq or the server and might echo part of the URL.
std::string Scrub(std::string message, const ConnSpec& spec);

// Query parameters, in text format. A string holding a NUL byte is refused:
// text parameters are C strings, so libpq would silently cut it short, and a
// PostgreSQL text value cannot hold NUL at all.
class Params {
 public:
  Params& Add(int64_t v);
  Params& Add(int v) { return Add(static_cast<int64_t>(v)); }
  Params& Add(bool v) { return Add(static_cast<int64_t>(v ? 1 : 0)); }  // booleans are integers 0/1
  Params& Add(double v);
  Params& Add(std::string_view v);
  Params& Add(const std::string& v) { return Add(std::string_view(v)); }
  Params& Add(const char* v) { return Add(std::string_view(v)); }

  const Status& status() const { return status_; }
  int size() const { return static_cast<int>(values_.size()); }
  std::vector<const char*> Pointers() const;

 private:
  std::vector<std::string> values_;
  Status status_;
};

// Reads text-format columns of a result. A value that does not parse (or a
// NULL where the schema says NOT NULL) is recorded, and ok() turns false:
// check it after reading a row.
class Rows {
 public:
  explicit Rows(const PGresult* result) : r_(result) {}
  int size() const { return PQntuples(r_); }
  int64_t Int(int row, int col);
  double Double(int row, int col);
  std::string Text(int row, int col);
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }  // "column 3: 'x' is not an integer"

 private:
  const char* Value(int row, int col);
  const PGresult* r_;
  std::string error_;
};

// One server connection. Statements with parameters are prepared once per
// connection and kept: the broker runs a fixed set of SQL texts.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> Connect(const ConnSpec& spec);

  // One statement with parameters; the result of a successful command or
  // query (PGRES_COMMAND_OK / PGRES_TUPLES_OK).
  Result<ResultPtr> Query(const std::string& sql, const Params& params, std::string_view what);
  // Statements without parameters, several allowed (BEGIN, COMMIT, a migration).
  Status Exec(const std::string& sql, std::string_view what);

  // SQLSTATE of the last failed statement since ClearError(); "08006" when
  // the connection broke. Read by the retry loop (40001, 40P01, 23505).
  const std::string& sqlstate() const { return sqlstate_; }
  void ClearError() { sqlstate_.clear(); }
  // Fit to go back into a pool: connected and outside any transaction.
  bool Reusable() const;
  // Best-effort ROLLBACK that leaves sqlstate() alone (for RAII cleanup).
  void Rollback();
  const ConnSpec& spec() const { return *spec_; }
  // For LISTEN: the socket to wait on and PQnotifies().
  PGconn* raw() const { return conn_.get(); }

 private:
  Connection(const ConnSpec* spec, ConnPtr conn) : spec_(spec), conn_(std::move(conn)) {}
  Status Fail(const PGresult* result, std::string_view what);

  const ConnSpec* spec_;  // owned by the store, outlives its connections
  ConnPtr conn_;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
  std::string sqlstate_;
};

// Maps an SQLSTATE onto the Store's codes: serialization failures, deadlocks
// and lost connections are worth retrying (kUnavailable), constraint
// violations are conflicts, bad data is the caller's, anything else means the
// database or our SQL is wrong.
Code CodeOfSqlState(std::string_view sqlstate);

}  // namespace grid::store::pg
