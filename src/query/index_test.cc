#include "query/index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace grid::query {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNow = 1'800'000'000'000;  // ms
constexpr int64_t kDay = 86'400'000;

// A small market with nulls, ties and mixed-case strings, for comparing the
// index with the reference semantics (Matches/OrderLess) by brute force.
// The differential test against SQLite (testing/index_diff_test.cc) covers
// the same ground with text queries.
OfferRow RandomRow(std::mt19937_64& rng, int64_t machine, int n) {
  auto pick = [&](int k) { return static_cast<int>(rng() % static_cast<uint64_t>(k)); };
  static const char* kGpus[] = {"RTX 4090", "rtx 4090", "H100 SXM 80GB", "A100 PCIe 40GB", "L4"};
  static const char* kGeo[] = {"US", "DE", "FR", "JP", "us"};
  OfferRow r;
  r.id = machine * 1000 + n;
  r.machine_id = machine;
  r.host_id = machine % 7;
  r.gpu_name = kGpus[machine % 5];
  r.num_gpus = n;
  r.gpu_ram = int64_t{24'000'000} * (1 + machine % 3);
  if (pick(5)) r.geolocation = kGeo[pick(5)];
  r.datacenter = machine % 2 == 0;
  if (pick(4)) r.verified = pick(2) == 0;
  r.rentable = pick(3) != 0;
  r.rented = pick(4) == 0;
  if (pick(6)) r.reliability = 900'000 + pick(10) * 10'000;
  r.dph_total = int64_t{250'000} * pick(8) * n;  // ties on purpose, zero too
  r.dph_per_gpu = int64_t{250'000} * pick(8);
  r.cuda_vers = pick(2) ? std::optional<int64_t>(12'400'000) : std::nullopt;
  r.end_date_ms = pick(3) == 0 ? 0 : kNow + (pick(40) - 5) * kDay + pick(1000);
  r.duration = DurationMillionths(r.end_date_ms, kNow);
  return r;
}

Clause RandomClause(std::mt19937_64& rng) {
  auto pick = [&](int k) { return static_cast<int>(rng() % static_cast<uint64_t>(k)); };
  static const FieldId kFields[] = {FieldId::kGpuName,  FieldId::kNumGpus,     FieldId::kGeolocation,
                                    FieldId::kVerified, FieldId::kRentable,    FieldId::kReliability,
                                    FieldId::kDphTotal, FieldId::kDuration,    FieldId::kCudaVers,
                                    FieldId::kId,       FieldId::kDatacenter,  FieldId::kGpuRam};
  static const Op kOps[] = {Op::kEq, Op::kNe, Op::kLt, Op::kLe, Op::kGt, Op::kGe, Op::kIn, Op::kNotIn};
  Clause c;
  c.field = kFields[pick(12)];
  FieldType t = Info(c.field).type;
  c.op = kOps[pick(8)];
  if (t == FieldType::kBool || t == FieldType::kString) {
    static const Op kEqOps[] = {Op::kEq, Op::kNe, Op::kIn, Op::kNotIn};
    c.op = kEqOps[pick(4)];
  }
  auto value = [&]() -> Value {
    switch (t) {
      case FieldType::kBool: return pick(2) == 0;
      case FieldType::kString: {
        static const char* kS[] = {"rtx 4090", "RTX 4090", "l4", "us", "DE", "nowhere"};
        return std::string(kS[pick(6)]);
      }
      default:
        if (c.field == FieldId::kDuration) return int64_t{(pick(50) - 10) * 1'000'000};
        if (c.field == FieldId::kId) return int64_t{pick(40) * 1000 + pick(9)};
        if (c.field == FieldId::kNumGpus) return int64_t{pick(9)};
        if (c.field == FieldId::kReliability) return int64_t{900'000 + pick(10) * 10'000};
        return int64_t{pick(12) * 250'000};
    }
  };
  int count = (c.op == Op::kIn || c.op == Op::kNotIn) ? pick(4) : 1;
  for (int i = 0; i < count; ++i) c.values.push_back(value());
  return c;
}

Order RandomOrder(std::mt19937_64& rng) {
  static const FieldId kKeys[] = {FieldId::kDphTotal, FieldId::kReliability, FieldId::kGpuName, FieldId::kDuration,
                                  FieldId::kNumGpus,  FieldId::kVerified,    FieldId::kGeolocation};
  Order o;
  int k = static_cast<int>(rng() % 3);
  if (k == 0) return DefaultOrder();
  for (int i = 0; i < k; ++i) o.keys.push_back(SortKey{kKeys[rng() % 7], rng() % 2 == 0});
  return o;
}

std::vector<int64_t> Reference(const std::vector<OfferRow>& rows, const Query& q, const Order& o, size_t limit,
                               int64_t* total) {
  std::vector<OfferRow> m;
  for (const OfferRow& r : rows)
    if (Matches(q, r)) m.push_back(r);
  *total = static_cast<int64_t>(m.size());
  std::sort(m.begin(), m.end(), [&](const OfferRow& a, const OfferRow& b) { return OrderLess(o, a, b); });
  std::vector<int64_t> ids;
  for (size_t i = 0; i < m.size() && i < limit; ++i) ids.push_back(*m[i].id);
  return ids;
}

// Every machine's rows, in machine order.
std::vector<OfferRow> Flatten(const std::map<int64_t, std::vector<OfferRow>>& machines) {
  std::vector<OfferRow> rows;
  for (const auto& [id, v] : machines) rows.insert(rows.end(), v.begin(), v.end());
  return rows;
}

std::vector<int64_t> Ids(const SearchResult& r) {
  std::vector<int64_t> ids;
  for (const OfferRow& row : r.offers) ids.push_back(*row.id);
  return ids;
}

void CompareMany(const OfferIndex& index, const std::vector<OfferRow>& rows, std::mt19937_64& rng, int queries) {
  for (int i = 0; i < queries; ++i) {
    Query q;
    int k = static_cast<int>(rng() % 4);
    for (int j = 0; j < k; ++j) q.clauses.push_back(RandomClause(rng));
    Order o = RandomOrder(rng);
    int limit = static_cast<int>(rng() % 3 == 0 ? rng() % 5 : 64);
    int64_t total = 0;
    std::vector<int64_t> want = Reference(rows, q, o, static_cast<size_t>(limit), &total);
    SearchResult got = index.Search(q, o, kNow, SearchOptions{.limit = limit});
    ASSERT_EQ(got.total, total) << Format(q) << " -o " << FormatOrder(o);
    ASSERT_EQ(Ids(got), want) << Format(q) << " -o " << FormatOrder(o) << " limit " << limit;
  }
}

TEST(OfferIndexTest, AgreesWithTheReferenceOnRandomMarketsAndQueries) {
  std::mt19937_64 rng(7);
  for (int market = 0; market < 4; ++market) {
    std::vector<OfferRow> rows;
    for (int64_t m = 1; m <= 40 + market * 30; ++m)
      for (int n = 1; n <= 1 + static_cast<int>(m % 4); ++n) rows.push_back(RandomRow(rng, m, n));
    OfferIndex index;
    index.Build(rows);
    ASSERT_TRUE(index.Check().ok());
    EXPECT_EQ(index.size(), rows.size());
    CompareMany(index, rows, rng, 400);
  }
}

// Broad results take the sorted permutations (see TopK): few clauses, many
// matches, every order, before and after live changes leave dirty slots.
TEST(OfferIndexTest, BroadQueriesWalkingThePermutationsAgree) {
  std::mt19937_64 rng(5);
  std::map<int64_t, std::vector<OfferRow>> machines;
  for (int64_t m = 1; m <= 1200; ++m)
    for (int n = 1; n <= 1 + static_cast<int>(m % 4); ++n) machines[m].push_back(RandomRow(rng, m, n));
  auto flat = [&] { return Flatten(machines); };
  OfferIndex index;
  index.Build(flat());
  auto broad = [&](int queries) {
    std::vector<OfferRow> rows = flat();
    for (int i = 0; i < queries; ++i) {
      Query q;
      if (rng() % 2) q.clauses.push_back(Clause{FieldId::kRentable, Op::kEq, {true}});
      Order o = RandomOrder(rng);
      if (rng() % 3 == 0) o.keys.insert(o.keys.begin(), SortKey{FieldId::kDuration, rng() % 2 == 0});
      int limit = 1 + static_cast<int>(rng() % 64);
      int64_t total = 0;
      std::vector<int64_t> want = Reference(rows, q, o, static_cast<size_t>(limit), &total);
      SearchResult got = index.Search(q, o, kNow, SearchOptions{.limit = limit});
      ASSERT_EQ(got.total, total);
      ASSERT_EQ(Ids(got), want) << Format(q) << " -o " << FormatOrder(o) << " limit " << limit;
    }
  };
  broad(80);
  for (int step = 0; step < 200; ++step) {
    int64_t m = 1 + static_cast<int64_t>(rng() % 1300);
    std::vector<OfferRow> rows;
    for (int n = 1; n <= 1 + static_cast<int>(rng() % 3); ++n) rows.push_back(RandomRow(rng, m, n));
    machines[m] = rows;
    index.SetMachine(m, rows);
  }
  broad(80);
}

// Selective ranges on sorted fields go through the permutations (binary
// search, then the matches): with slots changed, freed and reused since the
// sort, whose old places must still read as sorted.
TEST(OfferIndexTest, SelectiveRangesThroughPermutationsWithDirtySlots) {
  std::mt19937_64 rng(17);
  // Continuous values, so a clause can select about 1% (the permutation
  // is taken when its matches are under 1/16 of the market).
  auto row = [&](int64_t m, int n) {
    OfferRow r = RandomRow(rng, m, n);
    r.dph_total = static_cast<int64_t>(rng() % 1'000'000'000);
    r.reliability = static_cast<int64_t>(rng() % 1'000'001);
    r.end_date_ms = kNow + static_cast<int64_t>(rng() % (100 * kDay));
    r.duration = DurationMillionths(r.end_date_ms, kNow);
    return r;
  };
  std::map<int64_t, std::vector<OfferRow>> machines;
  for (int64_t m = 1; m <= 6000; ++m)
    for (int n = 1; n <= 1 + static_cast<int>(m % 4); ++n) machines[m].push_back(row(m, n));
  auto flat = [&] { return Flatten(machines); };
  OfferIndex index;
  index.Build(flat());
  auto check = [&](int queries) {
    std::vector<OfferRow> rows = flat();
    for (int i = 0; i < queries; ++i) {
      Query q;
      int64_t x = static_cast<int64_t>(rng() % 20);
      switch (rng() % 4) {
        case 0: q.clauses.push_back(Clause{FieldId::kDphTotal, Op::kLt, {x * 1'000'000}}); break;
        case 1: q.clauses.push_back(Clause{FieldId::kReliability, Op::kGt, {int64_t{999'000} - x * 1'000}}); break;
        case 2: q.clauses.push_back(Clause{FieldId::kDuration, Op::kLe, {x * 100'000}}); break;
        default: q.clauses.push_back(Clause{FieldId::kDphTotal, Op::kGe, {int64_t{990'000'000} + x * 100'000}}); break;
      }
      if (rng() % 2) q.clauses.push_back(Clause{FieldId::kNumGpus, Op::kGe, {int64_t{2}}});
      Order o = RandomOrder(rng);
      int64_t total = 0;
      std::vector<int64_t> want = Reference(rows, q, o, 64, &total);
      SearchResult got = index.Search(q, o, kNow, SearchOptions{.limit = 64});
      ASSERT_EQ(got.total, total) << Format(q);
      ASSERT_EQ(Ids(got), want) << Format(q) << " -o " << FormatOrder(o);
    }
  };
  check(40);
  // Changes, removals (freed slots) and new machines (reused slots), fewer
  // than would trigger a re-sort.
  for (int step = 0; step < 150; ++step) {
    int64_t m = 1 + static_cast<int64_t>(rng() % 6100);
    if (rng() % 5 == 0) {
      machines.erase(m);
      index.RemoveMachine(m);
      continue;
    }
    std::vector<OfferRow> rows;
    for (int n = 1; n <= 1 + static_cast<int>(rng() % 4); ++n) rows.push_back(row(m, n));
    machines[m] = rows;
    index.SetMachine(m, rows);
  }
  ASSERT_TRUE(index.Check().ok());
  check(40);
}

TEST(OfferIndexTest, LiveChangesKeepItInStep) {
  std::mt19937_64 rng(11);
  std::map<int64_t, std::vector<OfferRow>> machines;
  for (int64_t m = 1; m <= 60; ++m)
    for (int n = 1; n <= 2; ++n) machines[m].push_back(RandomRow(rng, m, n));
  auto flat = [&] { return Flatten(machines); };
  OfferIndex index;
  index.Build(flat());
  // Enough changes to force the default-order permutation to be re-sorted
  // (more than 1024 dirty slots) and to reuse freed slots.
  for (int step = 0; step < 3000; ++step) {
    int64_t m = 1 + static_cast<int64_t>(rng() % 90);
    int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {
      machines.erase(m);
      index.RemoveMachine(m);
    } else {
      std::vector<OfferRow> rows;
      int count = kind == 1 ? 1 + static_cast<int>(rng() % 4) : static_cast<int>(machines[m].size());
      for (int n = 1; n <= count; ++n) rows.push_back(RandomRow(rng, m, n));
      if (rows.empty()) {
        machines.erase(m);
        index.RemoveMachine(m);
        continue;
      }
      machines[m] = rows;
      index.SetMachine(m, rows);
    }
    if (step % 100 == 0) {
      ASSERT_TRUE(index.Check().ok()) << index.Check().ToString();
      CompareMany(index, flat(), rng, 20);
    }
  }
  EXPECT_EQ(index.size(), flat().size());
  auto one = index.Get(machines.begin()->second.front().id.value(), kNow);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->gpu_name, machines.begin()->second.front().gpu_name);
  EXPECT_FALSE(index.Get(999'999'999, kNow).has_value());
}

TEST(OfferIndexTest, DurationComesFromTheEndDateAtSearchTime) {
  OfferRow a;
  a.id = 1001;
  a.machine_id = 1;
  a.end_date_ms = kNow + 10 * kDay;
  a.duration = DurationMillionths(a.end_date_ms, kNow);
  OfferRow b = a;
  b.id = 2001;
  b.machine_id = 2;
  b.end_date_ms = 0;  // none: unlimited
  b.duration = kUnlimitedDuration;
  OfferIndex index;
  index.Build({a, b});
  Query q = *Parse("duration>=10");
  EXPECT_EQ(index.Search(q, DefaultOrder(), kNow).total, 2);
  // A day later, machine 1 has 9 days left.
  EXPECT_EQ(index.Search(q, DefaultOrder(), kNow + kDay).total, 1);
  SearchResult r = index.Search(*Parse("duration<9.5"), DefaultOrder(), kNow + kDay);
  ASSERT_EQ(r.offers.size(), 1u);
  EXPECT_EQ(*r.offers[0].duration, 9'000'000);
  EXPECT_EQ(r.offers[0].end_date_ms, a.end_date_ms);
}

TEST(OfferIndexTest, ExplainNamesTheClauseAndTheNearestOffer) {
  std::vector<OfferRow> rows;
  for (int64_t m = 40; m <= 42; ++m) {
    OfferRow r;
    r.id = m * 1000 + 8;
    r.machine_id = m;
    r.gpu_name = "H100 SXM 80GB";
    r.num_gpus = 8;
    r.dph_total = 2'350'000 + (m - 40) * 100'000;  // $2.35, $2.45, $2.55
    r.rentable = true;
    rows.push_back(r);
  }
  OfferRow small = rows[0];
  small.id = 43001;
  small.machine_id = 43;
  small.num_gpus = 1;
  small.dph_total = 300'000;
  rows.push_back(small);
  OfferIndex index;
  index.Build(rows);
  Query q = *Parse("gpu_name=H100_SXM_80GB num_gpus=8 dph<2 rentable=true");
  SearchResult r = index.Search(q, DefaultOrder(), kNow, SearchOptions{.limit = 64, .explain = true, .defaults_from = 3});
  EXPECT_EQ(r.total, 0);
  ASSERT_TRUE(r.explain.has_value());
  const Explain& ex = *r.explain;
  EXPECT_EQ(ex.offers, 4);
  ASSERT_EQ(ex.clauses.size(), 4u);
  EXPECT_EQ(ex.clauses[1].fails, 1);  // num_gpus=8 excludes the 1-GPU offer
  EXPECT_EQ(ex.clauses[1].sole, 1);   // ... and it alone: that offer is $0.30
  EXPECT_EQ(ex.clauses[2].fails, 3);
  EXPECT_EQ(ex.clauses[2].sole, 3);
  EXPECT_TRUE(ex.clauses[3].is_default);
  EXPECT_FALSE(ex.clauses[2].is_default);
  ASSERT_EQ(ex.near_misses.size(), 2u);
  EXPECT_EQ(ex.near_misses[0].clause, 1u);
  EXPECT_EQ(*ex.near_misses[0].row.id, 43001);
  EXPECT_EQ(ex.near_misses[1].clause, 2u);
  EXPECT_EQ(*ex.near_misses[1].row.id, 40008);
  EXPECT_THAT(ex.summary, HasSubstr("Without dph_total<2"));
  EXPECT_THAT(ex.summary, HasSubstr("cheapest is offer 40008: 8x H100 SXM 80GB at $2.350000/h on machine 40"));

  // Two clauses at fault: no near miss, the summary says where it empties.
  SearchResult r2 = index.Search(*Parse("num_gpus=8 dph<1 gpu_name=L4"), DefaultOrder(), kNow,
                                 SearchOptions{.limit = 64, .explain = true});
  ASSERT_TRUE(r2.explain.has_value());
  EXPECT_TRUE(r2.explain->near_misses.empty());
  EXPECT_THAT(r2.explain->summary, HasSubstr("No single clause is to blame"));
  EXPECT_THAT(r2.explain->summary, HasSubstr("dph_total<1"));

  SearchResult r3 = index.Search(*Parse("num_gpus=8"), DefaultOrder(), kNow, SearchOptions{.limit = 1, .explain = true});
  EXPECT_EQ(r3.total, 3);
  EXPECT_EQ(r3.offers.size(), 1u);
  EXPECT_THAT(r3.explain->summary, HasSubstr("3 offers match out of 4"));
}

TEST(OfferIndexTest, EmptyIndexAndLimits) {
  OfferIndex index;
  SearchResult r = index.Search(Query{}, DefaultOrder(), kNow, SearchOptions{.limit = 64, .explain = true});
  EXPECT_EQ(r.total, 0);
  EXPECT_THAT(r.explain->summary, HasSubstr("no offers"));
  std::mt19937_64 rng(3);
  std::vector<OfferRow> rows;
  for (int64_t m = 1; m <= 20; ++m) rows.push_back(RandomRow(rng, m, 1));
  index.Build(rows);
  EXPECT_EQ(index.Search(Query{}, DefaultOrder(), kNow, SearchOptions{.limit = 0}).offers.size(), 0u);
  EXPECT_EQ(index.Search(Query{}, DefaultOrder(), kNow, SearchOptions{.limit = 0}).total, 20);
  EXPECT_EQ(index.Search(Query{}, DefaultOrder(), kNow, SearchOptions{.limit = -5}).offers.size(), 0u);
  EXPECT_EQ(index.Search(Query{}, DefaultOrder(), kNow, SearchOptions{.limit = 1'000'000}).offers.size(), 20u);
  EXPECT_GT(index.MemoryBytes(), 0u);
}

}  // namespace
}  // namespace grid::query
