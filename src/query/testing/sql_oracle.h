// SqlOracle: offer search answered by SQLite, independently of the offer
// index (query/index.h). The differential test compares the two, and
// bench/search uses it, with CreateBestIndexes(), as the baseline.
//
// One in-memory STRICT table `offers`, a column per query field named as the
// field (query.h), NULL for null: kInt, kNumber, kMoney and kBool as INTEGER
// (millionths and micro-USD as in OfferRow, booleans 0/1), kString as
// TEXT COLLATE NOCASE (stored as given; NOCASE compares ASCII
// case-insensitively, exactly as query.h's strings compare), plus
// end_date_ms. `duration` is stored as the rows carry it (computed by whoever
// made them at their now).
//
// The translation (Sql()) keeps every comparison exact and on integers: values
// are bound as int64 or text, never as doubles. A clause on NULL never
// matches, so `x != v` is `(x IS NOT NULL AND x != v)` and notin is
// `(x IS NOT NULL AND x NOT IN (...))` (SQLite's `NULL NOT IN ()` is true);
// in with an empty list is `x IN ()`, false. ORDER BY is each key with
// ASC/DESC NULLS LAST, then id ASC; LIMIT the limit. The total is a
// COUNT(*) with the same WHERE.
//
// Not thread-safe: one connection, used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "query/query.h"

struct sqlite3;

namespace grid::query_testing {

class SqlOracle {
 public:
  // How SQLite may run a search: its planner's choice, or a plain table scan
  // (`FROM offers NOT INDEXED`), which on broad queries can beat an index
  // walk by 10× (GUIDE.md §6: a fair baseline takes the better of the two).
  enum class Plan { kPlanner, kNotIndexed };

  struct Answer {
    std::vector<int64_t> ids;  // in order, at most limit
    int64_t total = 0;         // every match
  };

  // An empty in-memory database with the table (no indexes but id's).
  static Result<std::unique_ptr<SqlOracle>> Open();
  ~SqlOracle();
  SqlOracle(const SqlOracle&) = delete;
  SqlOracle& operator=(const SqlOracle&) = delete;

  // Inserts rows (one transaction). Ids must be new.
  Status Insert(std::span<const query::OfferRow> rows);
  // Replaces every row of the machine by `rows` (possibly none), like
  // OfferIndex::SetMachine / RemoveMachine.
  Status SetMachine(int64_t machine_id, std::span<const query::OfferRow> rows);
  Status RemoveMachine(int64_t machine_id);
  int64_t Count() const;

  // The indexes a DBA would give this table for these searches (see the
  // .cc for the list), then ANALYZE so the planner knows the data.
  Status CreateBestIndexes();

  // The query's rows in order (at most limit) and its total: two statements,
  // SELECT id … ORDER BY … LIMIT and SELECT COUNT(*).
  Result<Answer> Search(const query::Query& q, const query::Order& order, int64_t limit,
                        Plan plan = Plan::kPlanner);

  // The same search returning whole offers (SELECT every column), as a
  // search API must: what bench/search times, since OfferIndex::Search
  // returns whole OfferRows too. duration is as stored.
  struct RowsAnswer {
    std::vector<query::OfferRow> offers;
    int64_t total = 0;
  };
  Result<RowsAnswer> SearchRows(const query::Query& q, const query::Order& order, int64_t limit,
                                Plan plan = Plan::kPlanner);

  // The SQL Search runs, with the bound values written in (for messages).
  static std::string Sql(const query::Query& q, const query::Order& order, int64_t limit, Plan plan,
                         bool count);

  // EXPLAIN QUERY PLAN of the rows statement, one line per step.
  Result<std::string> ExplainPlan(const query::Query& q, const query::Order& order, int64_t limit, Plan plan);

 private:
  explicit SqlOracle(sqlite3* db);
  Status Exec(const char* sql);
  Status InsertLocked(std::span<const query::OfferRow> rows);
  // Runs the rows statement (all columns or id only) and the count.
  Status Run(const query::Query& q, const query::Order& order, int64_t limit, Plan plan, bool all_columns,
             Answer* ids, RowsAnswer* rows);

  struct Cache;  // prepared statements by SQL text
  sqlite3* db_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace grid::query_testing
