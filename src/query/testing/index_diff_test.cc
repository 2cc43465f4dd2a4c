// The differential test of offer search (issue 5, Correctness): the offer
// index (query/index.h) against an independent oracle, SQLite holding the
// same offers and queried with a SQL translation (sql_oracle.h, itself
// checked against query.h's reference semantics in oracle_test.cc).
//
// Seeded random markets (messy: nulls in every optional field, strings in
// other cases, ties in every sort key, zero prices, past end dates) and
// random searches typed as text (query_gen.h: every field, every operator
// and spelling, lists, `any`, multi-key orders with ties, limits 0..10,000,
// Vast's defaults), parsed with query::Parse and query::ParseOrder. Both must
// give the same ids in the same order and the same total. Then the live
// path: machines leased, released, repriced, taken offline, re-chunked,
// removed and added through SetMachine/RemoveMachine, the oracle reloading
// those machines' rows, compared again. A failure prints the seed, the
// search as typed and the SQL.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "query/index.h"
#include "query/testing/market_gen.h"
#include "query/testing/query_gen.h"
#include "query/testing/sql_oracle.h"

namespace grid::query_testing {
namespace {

using query::OfferIndex;
using query::OfferRow;

constexpr int64_t kNow = MarketGenOptions{}.now_ms;
constexpr int64_t kDayMs = 86'400'000;

std::unique_ptr<SqlOracle> MustOpen() {
  auto o = SqlOracle::Open();
  EXPECT_TRUE(o.ok()) << o.status().ToString();
  return o.ok() ? std::move(*o) : nullptr;
}

std::vector<int64_t> IdsOf(const query::SearchResult& r) {
  std::vector<int64_t> ids;
  for (const OfferRow& o : r.offers) ids.push_back(o.id.value_or(-1));
  return ids;
}

// Runs one search on both; returns a failure description or "". *total
// gets the oracle's total.
std::string Compare(const OfferIndex& index, SqlOracle& oracle, const ParsedSearch& p, int64_t now_ms,
                    const std::string& context, int64_t* total = nullptr) {
  query::SearchOptions opts;
  opts.limit = static_cast<int>(p.limit);
  query::SearchResult got = index.Search(p.query, p.order, now_ms, opts);
  auto want = oracle.Search(p.query, p.order, p.limit);
  if (!want.ok()) return context + ": oracle: " + want.status().ToString();
  if (total) *total = want->total;
  std::vector<int64_t> ids = IdsOf(got);
  if (got.total == want->total && ids == want->ids) return "";
  std::string m = context + "\n  parsed: '" + query::Format(p.query) + "' order '" +
                  query::FormatOrder(p.order) + "'\n  sql: " +
                  SqlOracle::Sql(p.query, p.order, p.limit, SqlOracle::Plan::kPlanner, false) +
                  "\n  total: index " + std::to_string(got.total) + ", sqlite " + std::to_string(want->total) +
                  "\n  ids: index " + std::to_string(ids.size()) + ", sqlite " + std::to_string(want->ids.size());
  size_t i = 0;
  while (i < ids.size() && i < want->ids.size() && ids[i] == want->ids[i]) ++i;
  m += "; first difference at position " + std::to_string(i);
  if (i < ids.size()) m += ": index " + std::to_string(ids[i]);
  if (i < want->ids.size()) m += ", sqlite " + std::to_string(want->ids[i]);
  return m;
}

TEST(IndexDiff, RandomMarketsAndSearchesAgreeWithSqlite) {
  int searches = 0, nonempty = 0, partial = 0;
  for (uint64_t seed : {101, 202, 303, 404}) {
    MarketGenOptions o;
    o.seed = seed;
    o.offers = 2000;
    o.messy = true;
    std::vector<OfferRow> rows = GenerateMarket(o);
    auto oracle = MustOpen();
    ASSERT_TRUE(oracle);
    ASSERT_TRUE(oracle->Insert(rows).ok());
    OfferIndex index;
    index.Build(rows);
    ASSERT_TRUE(index.Check().ok()) << index.Check().ToString();
    ASSERT_EQ(index.size(), rows.size());
    Rng rng(seed * 7919);
    for (int i = 0; i < 600; ++i) {
      RandomSearch s = MakeRandomSearch(rng, rows);
      auto p = ParseSearch(s);
      ASSERT_TRUE(p.ok()) << s.Describe() << ": " << p.status().ToString();
      int64_t total = 0;
      std::string diff =
          Compare(index, *oracle, *p, kNow, "seed " + std::to_string(seed) + " " + s.Describe(), &total);
      ASSERT_EQ(diff, "");
      nonempty += total > 0;
      partial += total > 0 && total < static_cast<int64_t>(rows.size());
      ++searches;
    }
  }
  EXPECT_EQ(searches, 2400);
  // The searches are worth their name: most find something, most not all.
  EXPECT_GT(nonempty, searches / 2);
  EXPECT_GT(partial, searches / 2);
}

// Every field of a returned offer is the offer's (strings up to ASCII case:
// the index keeps one spelling per case-folded value).
TEST(IndexDiff, ReturnedOffersCarryEveryField) {
  MarketGenOptions o;
  o.seed = 5;
  o.offers = 2000;
  o.messy = true;
  std::vector<OfferRow> rows = GenerateMarket(o);
  std::map<int64_t, const OfferRow*> by_id;
  for (const OfferRow& r : rows) by_id[*r.id] = &r;
  OfferIndex index;
  index.Build(rows);
  query::SearchOptions opts;
  opts.limit = query::kMaxLimit;
  query::SearchResult all = index.Search(query::Query{}, query::DefaultOrder(), kNow, opts);
  ASSERT_EQ(all.total, 2000);
  ASSERT_EQ(all.offers.size(), 2000u);
  auto fold = [](std::string s) {
    for (char& c : s)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
  };
  for (const OfferRow& got : all.offers) {
    const OfferRow& want = *by_id.at(*got.id);
    for (const query::FieldInfo& f : query::Fields()) {
      std::optional<query::Value> g = got.Get(f.id), w = want.Get(f.id);
      if (f.type == query::FieldType::kString && g && w) {
        EXPECT_EQ(fold(std::get<std::string>(*g)), fold(std::get<std::string>(*w))) << *got.id << " " << f.name;
      } else {
        EXPECT_EQ(g, w) << "offer " << *got.id << " field " << f.name;
      }
    }
    EXPECT_EQ(got.end_date_ms, want.end_date_ms) << *got.id;
  }
}

// Duration is derived from the end date at search time: searching at other
// "nows" must match an oracle whose rows were made at that now.
TEST(IndexDiff, DurationIsComputedAtSearchTime) {
  MarketGenOptions o;
  o.seed = 17;
  o.offers = 2000;
  o.messy = true;
  std::vector<OfferRow> rows = GenerateMarket(o);
  OfferIndex index;
  index.Build(rows);
  Rng rng(4242);
  int searches = 0;
  for (int64_t shift : {-kDayMs, int64_t{0}, kDayMs / 2 + 1234, 30 * kDayMs, 200 * kDayMs}) {
    const int64_t now = kNow + shift;
    std::vector<OfferRow> at_now = rows;
    for (OfferRow& r : at_now) {
      if (r.duration) r.duration = query::DurationMillionths(r.end_date_ms, now);
    }
    auto oracle = MustOpen();
    ASSERT_TRUE(oracle);
    ASSERT_TRUE(oracle->Insert(at_now).ok());
    for (int i = 0; i < 60; ++i) {
      // A duration bound from a row at this now, moved a little, and a
      // random search around it.
      const OfferRow& r = at_now[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(at_now.size()) - 1))];
      int64_t d = r.duration && *r.duration != query::kUnlimitedDuration ? *r.duration : rng.Uniform(-2, 150) * 1'000'000;
      d += rng.Uniform(-2, 2) * (rng.Chance(0.5) ? 1 : 1000);
      static constexpr const char* kOps[] = {"<", "<=", ">", ">=", "=", "!="};
      std::string text = "duration" + std::string(kOps[rng.Uniform(0, 5)]) + std::to_string(d / 1'000'000) + "." +
                         std::to_string(1'000'000 + std::abs(d % 1'000'000)).substr(1);
      if (d < 0 && d > -1'000'000) text = "duration" + std::string(kOps[rng.Uniform(0, 5)]) + "-0." +
                                          std::to_string(1'000'000 + (-d) % 1'000'000).substr(1);
      RandomSearch s = MakeRandomSearch(rng, at_now);
      s.query = text + (rng.Chance(0.5) ? "" : " " + s.query);
      static constexpr const char* kOrders[] = {"duration", "duration-", "duration,dph-", "", "num_gpus-,duration"};
      s.order = kOrders[rng.Uniform(0, 4)];
      auto p = ParseSearch(s);
      ASSERT_TRUE(p.ok()) << s.Describe() << ": " << p.status().ToString();
      ASSERT_EQ(Compare(index, *oracle, *p, now, "now " + std::to_string(now) + " " + s.Describe()), "");
      ++searches;
    }
  }
  EXPECT_EQ(searches, 300);
}

// The live path: random market changes applied to the index and the oracle
// alike, compared after every few.
TEST(IndexDiff, LiveChangesAgreeWithSqlite) {
  for (uint64_t seed : {7, 8}) {
    MarketGenOptions o;
    o.seed = seed;
    o.offers = 2000;
    o.messy = true;
    std::vector<GenMachine> machines = GenerateMachines(o);
    std::vector<bool> listed(machines.size(), true);
    std::vector<OfferRow> rows;
    for (const GenMachine& m : machines) {
      for (OfferRow& r : OffersOf(m, kNow)) rows.push_back(std::move(r));
    }
    auto oracle = MustOpen();
    ASSERT_TRUE(oracle);
    ASSERT_TRUE(oracle->Insert(rows).ok());
    OfferIndex index;
    index.Build(rows);
    int64_t next_machine = machines.back().machine_id + 1;
    Rng rng(seed * 31337);
    int searches = 0;
    std::vector<OfferRow> sample = rows;  // values for the searches, refreshed now and then
    for (int step = 1; step <= 300; ++step) {
      size_t k = static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(machines.size()) - 1));
      GenMachine& m = machines[k];
      std::string what;
      double u = rng.UnitDouble();
      if (!listed[k] || u < 0.05) {
        // A new machine (or a removed one listed again, re-drawn).
        if (u < 0.025 && listed[k]) {
          machines.push_back(RandomMachine(rng, next_machine++, o));
          listed.push_back(true);
          k = machines.size() - 1;
          what = "new machine";
        } else {
          machines[k] = RandomMachine(rng, m.machine_id, o);
          listed[k] = true;
          what = "machine listed again";
        }
      } else if (u < 0.12) {
        listed[k] = false;
        what = "machine removed";
      } else if (u < 0.55) {
        m.free_gpus = static_cast<int>(rng.Uniform(0, m.num_gpus));  // leases start and end
        what = "free gpus";
      } else if (u < 0.7) {
        m.online = !m.online;
        what = "online";
      } else if (u < 0.85) {
        if (m.base.dph_per_gpu) m.base.dph_per_gpu = std::max<int64_t>(0, *m.base.dph_per_gpu + rng.Uniform(-50, 50) * 1000);
        what = "price";
      } else if (u < 0.93) {
        // Re-chunked: the number of offers changes.
        int divisors[12], n = 0;
        for (int d = 1; d <= m.num_gpus; ++d)
          if (m.num_gpus % d == 0) divisors[n++] = d;
        m.min_chunk = divisors[rng.Uniform(0, n - 1)];
        what = "min_chunk";
      } else {
        m.end_date_ms = rng.Chance(0.3) ? 0 : kNow + rng.Uniform(-kDayMs, 90 * kDayMs);
        what = "end date";
      }
      const GenMachine& c = machines[k];
      if (listed[k]) {
        std::vector<OfferRow> mrows = OffersOf(c, kNow);
        index.SetMachine(c.machine_id, mrows);
        ASSERT_TRUE(oracle->SetMachine(c.machine_id, mrows).ok());
      } else {
        index.RemoveMachine(c.machine_id);
        ASSERT_TRUE(oracle->RemoveMachine(c.machine_id).ok());
      }
      ASSERT_TRUE(index.Check().ok()) << "seed " << seed << " step " << step << " (" << what
                                      << "): " << index.Check().ToString();
      ASSERT_EQ(static_cast<int64_t>(index.size()), oracle->Count()) << "step " << step;
      if (step % 5 != 0) continue;
      if (step % 50 == 0) {
        sample.clear();
        for (size_t j = 0; j < machines.size(); ++j) {
          if (!listed[j]) continue;
          for (OfferRow& r : OffersOf(machines[j], kNow)) sample.push_back(std::move(r));
        }
      }
      for (int i = 0; i < 6; ++i) {
        RandomSearch s = MakeRandomSearch(rng, sample);
        auto p = ParseSearch(s);
        ASSERT_TRUE(p.ok()) << s.Describe();
        ASSERT_EQ(Compare(index, *oracle, *p, kNow,
                          "seed " + std::to_string(seed) + " step " + std::to_string(step) + " (after " + what +
                              ") " + s.Describe()),
                  "");
        ++searches;
      }
    }
    EXPECT_EQ(searches, 360);
  }
}

}  // namespace
}  // namespace grid::query_testing
