#include "query/testing/sql_oracle.h"

#include <sqlite3.h>

#include <map>
#include <type_traits>
#include <utility>

namespace grid::query_testing {
namespace {

using query::Clause;
using query::FieldId;
using query::FieldType;
using query::Op;
using query::Order;
using query::Query;
using query::Value;

std::string ColumnName(FieldId f) { return std::string(query::Info(f).name); }

std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// One statement's SQL with `?` placeholders and the values for them, in
// order (Value for the clauses, then the limit as an int64).
struct Translation {
  std::string sql;
  std::vector<Value> binds;
};

// `inline_values` writes the values into the text instead (for messages).
Translation Translate(const Query& q, const Order& order, int64_t limit, SqlOracle::Plan plan, bool count,
                      bool inline_values, bool all_columns = false) {
  Translation t;
  auto value = [&](const Value& v) {
    if (!inline_values) {
      t.binds.push_back(v);
      return std::string("?");
    }
    if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    if (const auto* b = std::get_if<bool>(&v)) return std::string(*b ? "1" : "0");
    return Quoted(std::get<std::string>(v));
  };
  t.sql = count ? "SELECT COUNT(*) FROM offers" : all_columns ? "SELECT * FROM offers" : "SELECT id FROM offers";
  if (plan == SqlOracle::Plan::kNotIndexed) t.sql += " NOT INDEXED";
  for (size_t i = 0; i < q.clauses.size(); ++i) {
    const Clause& c = q.clauses[i];
    const std::string col = ColumnName(c.field);
    t.sql += i == 0 ? " WHERE " : " AND ";
    if (c.op == Op::kIn || c.op == Op::kNotIn) {
      std::string list = "(";
      for (size_t j = 0; j < c.values.size(); ++j) {
        if (j) list += ",";
        list += value(c.values[j]);
      }
      list += ")";
      if (c.op == Op::kIn) {
        t.sql += col + " IN " + list;
      } else {
        t.sql += "(" + col + " IS NOT NULL AND " + col + " NOT IN " + list + ")";
      }
      continue;
    }
    if (c.values.size() != 1) {
      t.sql += "0";  // a malformed hand-built clause never matches (as MatchesClause)
      continue;
    }
    const char* op = "=";
    switch (c.op) {
      case Op::kEq: op = "="; break;
      case Op::kNe: op = "!="; break;
      case Op::kLt: op = "<"; break;
      case Op::kLe: op = "<="; break;
      case Op::kGt: op = ">"; break;
      case Op::kGe: op = ">="; break;
      default: break;
    }
    if (c.op == Op::kNe) {
      t.sql += "(" + col + " IS NOT NULL AND " + col + " != " + value(c.values[0]) + ")";
    } else {
      t.sql += col + " " + op + " " + value(c.values[0]);
    }
  }
  if (!count) {
    t.sql += " ORDER BY ";
    for (const query::SortKey& k : order.keys) {
      t.sql += ColumnName(k.field) + (k.descending ? " DESC" : " ASC") + " NULLS LAST, ";
    }
    t.sql += "id ASC LIMIT ";
    t.sql += inline_values ? std::to_string(limit) : "?";
    if (!inline_values) t.binds.emplace_back(std::in_place_type<int64_t>, limit);
  }
  return t;
}

// The table: every field in FieldId order, then end_date_ms.
std::string CreateTableSql() {
  std::string sql = "CREATE TABLE offers (";
  for (const query::FieldInfo& f : query::Fields()) {
    sql += std::string(f.name);
    if (f.id == FieldId::kId) {
      sql += " INTEGER PRIMARY KEY";
    } else if (f.type == FieldType::kString) {
      sql += " TEXT COLLATE NOCASE";
    } else {
      sql += " INTEGER";
    }
    sql += ", ";
  }
  sql += "end_date_ms INTEGER NOT NULL) STRICT";
  return sql;
}

std::string InsertSql() {
  std::string cols, params;
  for (const query::FieldInfo& f : query::Fields()) {
    cols += std::string(f.name) + ", ";
    params += "?, ";
  }
  return "INSERT INTO offers (" + cols + "end_date_ms) VALUES (" + params + "?)";
}

void BindOne(sqlite3_stmt* s, int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
void BindOne(sqlite3_stmt* s, int i, bool v) { sqlite3_bind_int64(s, i, v ? 1 : 0); }
void BindOne(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
template <typename T>
void BindOpt(sqlite3_stmt* s, int i, const std::optional<T>& v) {
  if (v) {
    BindOne(s, i, *v);
  } else {
    sqlite3_bind_null(s, i);
  }
}

void BindValue(sqlite3_stmt* s, int i, const Value& v) {
  std::visit([&](const auto& x) { BindOne(s, i, x); }, v);
}

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) { rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK && s_ != nullptr; }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

// A row of `SELECT *`: the fields in FieldId order, then end_date_ms.
query::OfferRow ReadRow(sqlite3_stmt* s) {
  query::OfferRow r;
  int i = 0;
  auto null = [&] { return sqlite3_column_type(s, i) == SQLITE_NULL; };
  auto get = [&](auto& field) {
    using T = typename std::remove_reference_t<decltype(field)>::value_type;
    if (!null()) {
      if constexpr (std::is_same_v<T, std::string>) {
        const unsigned char* p = sqlite3_column_text(s, i);
        field.emplace(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s, i)));
      } else if constexpr (std::is_same_v<T, bool>) {
        field = sqlite3_column_int64(s, i) != 0;
      } else {
        field = sqlite3_column_int64(s, i);
      }
    }
    ++i;
  };
#define GRID_ORACLE_READ(e, n, t) get(r.n);
  GRID_QUERY_FIELDS(GRID_ORACLE_READ)
#undef GRID_ORACLE_READ
  r.end_date_ms = sqlite3_column_int64(s, i);
  return r;
}

Status SqlError(sqlite3* db, const std::string& what) {
  return Internal(what + ": " + sqlite3_errmsg(db));
}

}  // namespace

// Prepared statements by SQL text: a server would keep them, so the
// baseline does not pay for parsing and planning on every search.
struct SqlOracle::Cache {
  std::map<std::string, std::unique_ptr<Stmt>> by_sql;
};

SqlOracle::SqlOracle(sqlite3* db) : db_(db), cache_(std::make_unique<Cache>()) {}

SqlOracle::~SqlOracle() {
  cache_.reset();  // statements are finalized before the connection closes
  sqlite3_close(db_);
}

Result<std::unique_ptr<SqlOracle>> SqlOracle::Open() {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Internal("sqlite3_open_v2(:memory:): " + m);
  }
  std::unique_ptr<SqlOracle> o(new SqlOracle(db));
  GRID_RETURN_IF_ERROR(o->Exec(CreateTableSql().c_str()));
  // SetMachine deletes by machine: without this each change scans the table.
  GRID_RETURN_IF_ERROR(o->Exec("CREATE INDEX offers_machine ON offers (machine_id)"));
  return o;
}

Status SqlOracle::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return Internal(std::string(sql).substr(0, 80) + ": " + m);
  }
  return Status::Ok();
}

Status SqlOracle::InsertLocked(std::span<const query::OfferRow> rows) {
  Stmt ins(db_, InsertSql());
  if (!ins.ok()) return SqlError(db_, "prepare insert");
  sqlite3_stmt* s = ins.get();
  for (const query::OfferRow& r : rows) {
    int i = 1;
#define GRID_ORACLE_BIND(e, n, t) BindOpt(s, i++, r.n);
    GRID_QUERY_FIELDS(GRID_ORACLE_BIND)
#undef GRID_ORACLE_BIND
    sqlite3_bind_int64(s, i, r.end_date_ms);
    if (sqlite3_step(s) != SQLITE_DONE) {
      return SqlError(db_, "insert offer " + (r.id ? std::to_string(*r.id) : std::string("null")));
    }
    sqlite3_reset(s);
  }
  return Status::Ok();
}

Status SqlOracle::Insert(std::span<const query::OfferRow> rows) {
  GRID_RETURN_IF_ERROR(Exec("BEGIN"));
  Status st = InsertLocked(rows);
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return Exec("COMMIT");
}

Status SqlOracle::SetMachine(int64_t machine_id, std::span<const query::OfferRow> rows) {
  for (const query::OfferRow& r : rows) {
    if (r.machine_id != machine_id) return InvalidArgument("SetMachine: a row of another machine");
  }
  GRID_RETURN_IF_ERROR(Exec("BEGIN"));
  Stmt del(db_, "DELETE FROM offers WHERE machine_id = ?");
  Status st = del.ok() ? Status::Ok() : SqlError(db_, "prepare delete");
  if (st.ok()) {
    sqlite3_bind_int64(del.get(), 1, machine_id);
    if (sqlite3_step(del.get()) != SQLITE_DONE) st = SqlError(db_, "delete machine");
  }
  if (st.ok()) st = InsertLocked(rows);
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return Exec("COMMIT");
}

Status SqlOracle::RemoveMachine(int64_t machine_id) { return SetMachine(machine_id, {}); }

int64_t SqlOracle::Count() const {
  Stmt s(db_, "SELECT COUNT(*) FROM offers");
  if (!s.ok() || sqlite3_step(s.get()) != SQLITE_ROW) return -1;
  return sqlite3_column_int64(s.get(), 0);
}

Status SqlOracle::CreateBestIndexes() {
  // What a DBA would add for these searches: the common filter prefix
  // (model, GPU count) with the default sort key after it, the Vast
  // defaults with the default sort key (walks the cheapest available offers
  // in order), and single-column indexes on every field people filter or
  // sort by often. String indexes take the column's NOCASE collation.
  static const char* kIndexes[] = {
      "CREATE INDEX offers_model ON offers (gpu_name, num_gpus, dph_total)",
      "CREATE INDEX offers_defaults ON offers (verified, rentable, rented, dph_total)",
      "CREATE INDEX offers_dph ON offers (dph_total)",
      "CREATE INDEX offers_dph_per_gpu ON offers (dph_per_gpu)",
      "CREATE INDEX offers_num_gpus ON offers (num_gpus, dph_total)",
      "CREATE INDEX offers_geo ON offers (geolocation, dph_total)",
      "CREATE INDEX offers_reliability ON offers (reliability)",
      "CREATE INDEX offers_gpu_ram ON offers (gpu_ram)",
      "CREATE INDEX offers_gpu_total_ram ON offers (gpu_total_ram)",
      "CREATE INDEX offers_compute_cap ON offers (compute_cap)",
      "CREATE INDEX offers_cuda ON offers (cuda_vers)",
      "CREATE INDEX offers_dlperf ON offers (dlperf)",
      "CREATE INDEX offers_dlperf_usd ON offers (dlperf_per_dphtotal)",
      "CREATE INDEX offers_flops_usd ON offers (flops_per_dphtotal)",
      "CREATE INDEX offers_total_flops ON offers (total_flops)",
      "CREATE INDEX offers_inet_down ON offers (inet_down)",
      "CREATE INDEX offers_duration ON offers (duration)",
      "CREATE INDEX offers_host ON offers (host_id)",
  };
  for (const char* sql : kIndexes) GRID_RETURN_IF_ERROR(Exec(sql));
  cache_->by_sql.clear();  // plans change with the indexes
  return Exec("ANALYZE");
}

Status SqlOracle::Run(const Query& q, const Order& order, int64_t limit, Plan plan, bool all_columns,
                      Answer* ids, RowsAnswer* rows) {
  for (bool count : {false, true}) {
    Translation t = Translate(q, order, limit, plan, count, /*inline_values=*/false, all_columns);
    std::unique_ptr<Stmt>& st = cache_->by_sql[t.sql];
    if (!st) {
      st = std::make_unique<Stmt>(db_, t.sql);
      if (!st->ok()) {
        Status e = SqlError(db_, "prepare " + t.sql);
        st.reset();
        return e;
      }
    }
    sqlite3_stmt* s = st->get();
    for (size_t i = 0; i < t.binds.size(); ++i) BindValue(s, static_cast<int>(i + 1), t.binds[i]);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (count) {
        (ids ? ids->total : rows->total) = sqlite3_column_int64(s, 0);
      } else if (!all_columns) {
        ids->ids.push_back(sqlite3_column_int64(s, 0));
      } else {
        rows->offers.push_back(ReadRow(s));
      }
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) return SqlError(db_, "step " + t.sql);
  }
  return Status::Ok();
}

Result<SqlOracle::Answer> SqlOracle::Search(const Query& q, const Order& order, int64_t limit, Plan plan) {
  Answer a;
  GRID_RETURN_IF_ERROR(Run(q, order, limit, plan, /*all_columns=*/false, &a, nullptr));
  return a;
}

Result<SqlOracle::RowsAnswer> SqlOracle::SearchRows(const Query& q, const Order& order, int64_t limit, Plan plan) {
  RowsAnswer a;
  GRID_RETURN_IF_ERROR(Run(q, order, limit, plan, /*all_columns=*/true, nullptr, &a));
  return a;
}

std::string SqlOracle::Sql(const Query& q, const Order& order, int64_t limit, Plan plan, bool count) {
  return Translate(q, order, limit, plan, count, /*inline_values=*/true).sql;
}

Result<std::string> SqlOracle::ExplainPlan(const Query& q, const Order& order, int64_t limit, Plan plan) {
  Translation t = Translate(q, order, limit, plan, /*count=*/false, /*inline_values=*/false);
  Stmt s(db_, "EXPLAIN QUERY PLAN " + t.sql);
  if (!s.ok()) return SqlError(db_, "prepare EXPLAIN QUERY PLAN");
  for (size_t i = 0; i < t.binds.size(); ++i) BindValue(s.get(), static_cast<int>(i + 1), t.binds[i]);
  std::string out;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    if (!out.empty()) out += "; ";
    out += reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 3));
  }
  return out;
}

}  // namespace grid::query_testing
