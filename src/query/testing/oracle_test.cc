// The fixtures of the offer-search tests, tested: the market generator keeps
// the market's chunking rules, the random searches all parse, and the SQLite
// oracle answers exactly as the reference semantics of query.h (Matches,
// OrderLess) brute-forced over the rows, with and without its indexes. The
// differential test (index_diff_test.cc) trusts the oracle because of this.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "query/testing/market_gen.h"
#include "query/testing/query_gen.h"
#include "query/testing/sql_oracle.h"

namespace grid::query_testing {
namespace {

using query::OfferRow;
using Plan = SqlOracle::Plan;

constexpr int64_t kNow = MarketGenOptions{}.now_ms;

std::unique_ptr<SqlOracle> MustOpen() {
  auto o = SqlOracle::Open();
  EXPECT_TRUE(o.ok()) << o.status().ToString();
  return o.ok() ? std::move(*o) : nullptr;
}

// The reference answer: Matches() over every row, OrderLess() for the order.
SqlOracle::Answer Reference(std::span<const OfferRow> rows, const query::Query& q, const query::Order& order,
                            int64_t limit) {
  std::vector<const OfferRow*> hits;
  for (const OfferRow& r : rows) {
    if (query::Matches(q, r)) hits.push_back(&r);
  }
  SqlOracle::Answer a;
  a.total = static_cast<int64_t>(hits.size());
  size_t k = std::min(hits.size(), static_cast<size_t>(limit));
  std::partial_sort(hits.begin(), hits.begin() + static_cast<ptrdiff_t>(k), hits.end(),
                    [&](const OfferRow* x, const OfferRow* y) { return query::OrderLess(order, *x, *y); });
  for (size_t i = 0; i < k; ++i) a.ids.push_back(*hits[i]->id);
  return a;
}

TEST(MarketGen, DeterministicForASeedAndExactInCount) {
  MarketGenOptions o;
  o.seed = 7;
  o.offers = 5000;
  std::vector<OfferRow> a = GenerateMarket(o), b = GenerateMarket(o);
  ASSERT_EQ(a.size(), 5000u);
  ASSERT_EQ(b.size(), 5000u);
  for (size_t i = 0; i < a.size(); ++i) {
    for (const query::FieldInfo& f : query::Fields()) {
      ASSERT_EQ(a[i].Get(f.id), b[i].Get(f.id)) << "offer " << i << " field " << f.name;
    }
  }
  o.seed = 8;
  std::vector<OfferRow> c = GenerateMarket(o);
  int same = 0;
  for (size_t i = 0; i < std::min(a.size(), c.size()); ++i) same += a[i].dph_total == c[i].dph_total;
  EXPECT_LT(same, 1000);
}

// The market's rules (market/offer_rows.h) hold on every offer.
TEST(MarketGen, OffersFollowTheChunkingRules) {
  MarketGenOptions o;
  o.seed = 3;
  o.offers = 20'000;
  std::vector<GenMachine> machines = GenerateMachines(o);
  std::set<int64_t> ids;
  std::map<std::string, int> models, countries;
  int64_t offers = 0, datacenter = 0, rented = 0, rentable = 0, low_reliability = 0, with_end = 0;
  for (const GenMachine& m : machines) {
    ASSERT_GE(m.num_gpus, 1);
    ASSERT_EQ(m.num_gpus % m.min_chunk, 0);
    std::vector<OfferRow> rows = OffersOf(m, kNow);
    ASSERT_EQ(rows.size(), static_cast<size_t>(m.num_gpus / m.min_chunk));
    for (const OfferRow& r : rows) {
      ++offers;
      const int64_t n = *r.num_gpus;
      EXPECT_TRUE(ids.insert(*r.id).second);
      EXPECT_EQ(*r.id, m.machine_id * 1000 + n);
      EXPECT_EQ(n % m.min_chunk, 0);
      EXPECT_EQ(*r.dph_total, n * *r.dph_per_gpu);
      EXPECT_EQ(*r.gpu_total_ram, n * *r.gpu_ram);
      EXPECT_EQ(*r.cpu_cores_effective, *r.cpu_cores * 1'000'000 * n / m.num_gpus);
      EXPECT_EQ(*r.dlperf_per_dphtotal,
                static_cast<int64_t>(static_cast<Int128>(*r.dlperf) * 1'000'000 / *r.dph_total));
      EXPECT_EQ(*r.rented, n > m.free_gpus);
      EXPECT_EQ(*r.rentable, m.online && n <= m.free_gpus);
      EXPECT_EQ(*r.duration, query::DurationMillionths(r.end_date_ms, kNow));
      EXPECT_GE(*r.reliability, 0);
      EXPECT_LE(*r.reliability, 1'000'000);
      EXPECT_FALSE(r.bw_nvlink && *r.gpu_name == "RTX 4090") << "no NVLink on a 4090";
      EXPECT_EQ(r.compute_cap.has_value(), *r.gpu_arch == "nvidia");
      ++models[*r.gpu_name];
      ++countries[*r.geolocation];
      datacenter += *r.datacenter;
      rented += *r.rented;
      rentable += *r.rentable;
      low_reliability += *r.reliability < 950'000;
      with_end += r.end_date_ms != 0;
    }
  }
  // A market that looks like one: many models and countries, some of
  // everything, not all of anything.
  EXPECT_GE(models.size(), 15u);
  EXPECT_GE(countries.size(), 35u);
  EXPECT_GT(datacenter, offers / 5);
  EXPECT_LT(datacenter, offers * 4 / 5);
  EXPECT_GT(rented, offers / 20);
  EXPECT_GT(rentable, offers / 2);
  EXPECT_GT(low_reliability, offers / 50);
  EXPECT_LT(low_reliability, offers / 3);
  EXPECT_GT(with_end, offers / 3);
  EXPECT_LT(with_end, offers * 2 / 3);
}

TEST(MarketGen, MessyMarketsHaveNullsCaseVariantsAndZeroPrices) {
  MarketGenOptions o;
  o.seed = 11;
  o.offers = 20'000;
  o.messy = true;
  std::vector<OfferRow> rows = GenerateMarket(o);
  int null_names = 0, lower_names = 0, zero_dph = 0, null_dlperf_usd = 0, past = 0;
  for (const OfferRow& r : rows) {
    ASSERT_TRUE(r.id && r.machine_id && r.duration);
    null_names += !r.gpu_name;
    lower_names += r.gpu_name && *r.gpu_name == "rtx 4090";
    zero_dph += r.dph_total && *r.dph_total == 0;
    null_dlperf_usd += !r.dlperf_per_dphtotal;
    past += r.end_date_ms != 0 && r.end_date_ms <= kNow;
  }
  EXPECT_GT(null_names, 0);
  EXPECT_GT(lower_names, 0);
  EXPECT_GT(zero_dph, 0);
  EXPECT_GT(null_dlperf_usd, zero_dph);
  EXPECT_GT(past, 0);
}

TEST(QueryGen, EveryRandomSearchParses) {
  MarketGenOptions o;
  o.offers = 2000;
  o.messy = true;
  std::vector<OfferRow> rows = GenerateMarket(o);
  Rng rng(5);
  std::set<query::FieldId> fields;
  std::set<query::Op> ops;
  int any = 0;
  for (int i = 0; i < 5000; ++i) {
    RandomSearch s = MakeRandomSearch(rng, rows);
    auto p = ParseSearch(s);
    ASSERT_TRUE(p.ok()) << s.Describe() << ": " << p.status().ToString();
    for (const query::Clause& c : p->query.clauses) {
      fields.insert(c.field);
      ops.insert(c.op);
    }
    any += !p->query.any_fields.empty();
  }
  EXPECT_EQ(fields.size(), static_cast<size_t>(query::kFieldCount));
  EXPECT_EQ(ops.size(), 8u);
  EXPECT_GT(any, 50);
}

// Hand-written cases for the SQL translation's edges.
TEST(SqlOracle, NullsCaseAndEmptyLists) {
  std::vector<OfferRow> rows(4);
  for (int i = 0; i < 4; ++i) {
    rows[i].id = 1001 + i;
    rows[i].machine_id = 1;
  }
  rows[0].gpu_name = "RTX 4090";
  rows[1].gpu_name = "rtx 4090";
  rows[2].gpu_name = "A100 SXM4 80GB";  // rows[3]: null name
  rows[0].dph_total = 500'000;
  rows[1].dph_total = 400'000;
  rows[3].dph_total = 400'000;  // rows[2]: null price
  auto oracle = MustOpen();
  ASSERT_TRUE(oracle);
  ASSERT_TRUE(oracle->Insert(rows).ok());

  auto check = [&](std::string_view q, std::string_view order, std::vector<int64_t> want) {
    auto parsed = query::Parse(q);
    ASSERT_TRUE(parsed.ok()) << q;
    auto o = query::ParseOrder(order);
    ASSERT_TRUE(o.ok()) << order;
    for (Plan plan : {Plan::kPlanner, Plan::kNotIndexed}) {
      auto a = oracle->Search(*parsed, *o, 100, plan);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      EXPECT_EQ(a->ids, want) << q << " -o " << order << "\n" << SqlOracle::Sql(*parsed, *o, 100, plan, false);
      EXPECT_EQ(a->total, static_cast<int64_t>(want.size())) << q;
      EXPECT_EQ(Reference(rows, *parsed, *o, 100).ids, want) << q << " (reference)";
    }
  };
  check("gpu_name=RTX_4090", "", {1002, 1001});
  check("gpu_name!=rtx_4090", "", {1003});                  // null never matches !=
  check("gpu_name notin []", "", {1002, 1001, 1003});       // nor notin, even empty
  check("gpu_name in []", "", {});
  check("gpu_name notin [a100_sxm4_80gb]", "id", {1001, 1002});
  check("dph!=0.4", "", {1001});
  check("", "dph-", {1001, 1002, 1004, 1003});              // nulls last when descending too
  check("", "gpu_name,id-", {1003, 1002, 1001, 1004});      // case-folded ties, then id-
  check("", "gpu_name-", {1001, 1002, 1003, 1004});         // ties by id ascending
}

// The oracle against the reference semantics over random markets and
// searches: without indexes, with the bench's indexes through the planner,
// and with NOT INDEXED.
TEST(SqlOracle, AgreesWithTheReferenceSemantics) {
  int searches = 0;
  for (uint64_t seed : {1, 2, 3}) {
    MarketGenOptions o;
    o.seed = seed;
    o.offers = 1000;
    o.messy = true;
    std::vector<OfferRow> rows = GenerateMarket(o);
    auto oracle = MustOpen();
    ASSERT_TRUE(oracle);
    ASSERT_TRUE(oracle->Insert(rows).ok());
    ASSERT_EQ(oracle->Count(), 1000);
    Rng rng(seed * 1000 + 17);
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        ASSERT_TRUE(oracle->CreateBestIndexes().ok());
      }
      for (int i = 0; i < 250; ++i) {
        RandomSearch s = MakeRandomSearch(rng, rows);
        auto p = ParseSearch(s);
        ASSERT_TRUE(p.ok()) << s.Describe() << ": " << p.status().ToString();
        SqlOracle::Answer want = Reference(rows, p->query, p->order, p->limit);
        for (Plan plan : {Plan::kPlanner, Plan::kNotIndexed}) {
          auto got = oracle->Search(p->query, p->order, p->limit, plan);
          ASSERT_TRUE(got.ok()) << got.status().ToString();
          ASSERT_EQ(got->total, want.total) << "seed " << seed << " " << s.Describe() << "\n"
                                            << SqlOracle::Sql(p->query, p->order, p->limit, plan, true);
          ASSERT_EQ(got->ids, want.ids) << "seed " << seed << " " << s.Describe() << "\n"
                                        << SqlOracle::Sql(p->query, p->order, p->limit, plan, false);
        }
        ++searches;
      }
    }
  }
  EXPECT_EQ(searches, 1500);
}

// SearchRows gives back every field as inserted, in the same order as Search.
TEST(SqlOracle, SearchRowsReturnsWholeOffers) {
  MarketGenOptions o;
  o.seed = 4;
  o.offers = 800;
  o.messy = true;
  std::vector<OfferRow> rows = GenerateMarket(o);
  std::map<int64_t, const OfferRow*> by_id;
  for (const OfferRow& r : rows) by_id[*r.id] = &r;
  auto oracle = MustOpen();
  ASSERT_TRUE(oracle);
  ASSERT_TRUE(oracle->Insert(rows).ok());
  auto order = query::ParseOrder("gpu_name,reliability-");
  ASSERT_TRUE(order.ok());
  auto ids = oracle->Search(query::Query{}, *order, 10'000);
  auto full = oracle->SearchRows(query::Query{}, *order, 10'000);
  ASSERT_TRUE(ids.ok() && full.ok());
  ASSERT_EQ(full->total, 800);
  ASSERT_EQ(full->offers.size(), 800u);
  for (size_t i = 0; i < full->offers.size(); ++i) {
    const OfferRow& got = full->offers[i];
    ASSERT_EQ(*got.id, ids->ids[i]);
    const OfferRow& want = *by_id.at(*got.id);
    for (const query::FieldInfo& f : query::Fields()) {
      EXPECT_EQ(got.Get(f.id), want.Get(f.id)) << "offer " << *got.id << " field " << f.name;
    }
    EXPECT_EQ(got.end_date_ms, want.end_date_ms);
  }
}

// SetMachine / RemoveMachine replace a machine's rows, as the index's do.
TEST(SqlOracle, SetMachineReplacesItsRows) {
  MarketGenOptions o;
  o.seed = 9;
  o.offers = 1000;
  o.messy = true;
  std::vector<GenMachine> machines = GenerateMachines(o);
  auto oracle = MustOpen();
  ASSERT_TRUE(oracle);
  for (const GenMachine& m : machines) ASSERT_TRUE(oracle->Insert(OffersOf(m, kNow)).ok());
  Rng rng(99);
  for (int step = 0; step < 300; ++step) {
    GenMachine& m = machines[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(machines.size()) - 1))];
    if (rng.Chance(0.1)) {
      m.num_gpus = 0;  // removed: no offers
      ASSERT_TRUE(oracle->RemoveMachine(m.machine_id).ok());
      continue;
    }
    if (m.num_gpus == 0) m = RandomMachine(rng, m.machine_id, o);
    m.free_gpus = static_cast<int>(rng.Uniform(0, m.num_gpus));
    m.online = rng.Chance(0.9);
    if (m.base.dph_per_gpu) m.base.dph_per_gpu = *m.base.dph_per_gpu + rng.Uniform(-5, 5) * 1000;
    ASSERT_TRUE(oracle->SetMachine(m.machine_id, OffersOf(m, kNow)).ok());
  }
  std::vector<OfferRow> rows;
  for (const GenMachine& m : machines) {
    if (m.num_gpus == 0) continue;
    for (OfferRow& r : OffersOf(m, kNow)) rows.push_back(std::move(r));
  }
  ASSERT_EQ(oracle->Count(), static_cast<int64_t>(rows.size()));
  for (int i = 0; i < 300; ++i) {
    RandomSearch s = MakeRandomSearch(rng, rows);
    auto p = ParseSearch(s);
    ASSERT_TRUE(p.ok()) << s.Describe();
    SqlOracle::Answer want = Reference(rows, p->query, p->order, p->limit);
    auto got = oracle->Search(p->query, p->order, p->limit);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->total, want.total) << s.Describe();
    ASSERT_EQ(got->ids, want.ids) << s.Describe();
  }
}

}  // namespace
}  // namespace grid::query_testing
