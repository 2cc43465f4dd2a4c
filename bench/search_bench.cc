// bench_search: offer search on a 1,000,000-offer market, the offer index
// (query::OfferIndex) against SQLite 3.40 with the best indexes we can give
// it, same data, same queries, same run (issue 5, Performance).
//
// Data: query_testing::GenerateMarket (real GPU models and specs, price
// ranges per model, 46 countries, providers, reliability tail, chunked
// offers), --offers N (default 1,000,000), --seed S.
// Queries: the fixed set in bench/search_queries.txt (QUERY<TAB>ORDER<TAB>
// LIMIT per line), parsed with query::Parse and ParseOrder, Vast's defaults
// added with query::WithDefaults.
// Baseline: query_testing::SqlOracle in memory, CreateBestIndexes() (18
// indexes, ANALYZE), prepared statements cached; each query is its rows
// (SELECT * … ORDER BY … LIMIT, read into OfferRows, as ours returns them)
// plus its total (SELECT COUNT(*)). Per
// query it runs with the better of its planner's plan and NOT INDEXED
// (GUIDE.md §6), picked on two warm-up runs of each.
// Ours: OfferIndex::Build on the same rows, then Search (rows + exact total).
// Before timing, both must return identical ids in identical order and the
// same total for every query (with both SQLite plans): the bench aborts
// otherwise.
// Every time is taken twice: wall clock and this thread's CPU time (the
// work itself, whatever else the machine runs).
// Rounds alternate: SQLite runs every query once, then ours runs every query
// --reps times (default 20); --rounds (default 5) such pairs. Printed per
// query: SQLite ms (median over rounds), ours ms (median over all runs),
// ratio, our p99 (over all runs); then the geometric-mean speed-up (goal
// >= 20x), the worst per-query p99 (goal <= 2 ms), the index build time
// (median of --builds, default 3; goal <= 2 s), MemoryBytes() per offer
// (goal <= 400) and the machine. One thread throughout.
//
// Usage: bench_search [--offers 1000000] [--seed 1] [--rounds 5] [--reps 20]
//                     [--builds 3] [--queries bench/search_queries.txt]
//                     [--dev] [--plans]
//   --dev    leave verified out of the defaults (a --dev broker)
//   --plans  print SQLite's EXPLAIN QUERY PLAN for each query's chosen plan
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "query/index.h"
#include "query/query.h"
#include "query/testing/market_gen.h"
#include "query/testing/sql_oracle.h"

using namespace grid;
using bench::Median;
using bench::NowSeconds;
using bench::ThreadCpuSeconds;
using query_testing::SqlOracle;

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "bench_search: %s\n", msg.c_str());
  std::exit(1);
}

struct Search {
  std::string text;        // the line as written, for the table
  query::Query query;      // defaults applied
  query::Order order;
  int limit = 64;
  SqlOracle::Plan plan = SqlOracle::Plan::kPlanner;  // SQLite's better plan
  double planner_ms = 0, not_indexed_ms = 0;         // warm-up, best of two
  int64_t total = 0;
  std::vector<double> sqlite_ms, ours_ms;
  std::vector<double> sqlite_cpu_ms, ours_cpu_ms;  // this thread's CPU time
  // Ours, split: the first run of each round comes right after SQLite's
  // pass (cold caches), the rest follow themselves (warm).
  std::vector<double> ours_cold_ms, ours_warm_ms;
  int64_t ours_minor_faults = 0;  // page faults taken by our runs, all together
};

std::vector<Search> LoadSearches(const std::string& path, bool dev) {
  std::ifstream in(path);
  if (!in) Die("cannot read " + path);
  std::vector<Search> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos) Die(path + ":" + std::to_string(lineno) + ": want QUERY<TAB>ORDER<TAB>LIMIT");
    Search s;
    std::string q = line.substr(0, t1), o = line.substr(t1 + 1, t2 - t1 - 1), l = line.substr(t2 + 1);
    auto parsed = query::Parse(q);
    if (!parsed.ok()) Die(path + ":" + std::to_string(lineno) + ": " + parsed.status().ToString());
    auto order = query::ParseOrder(o);
    if (!order.ok()) Die(path + ":" + std::to_string(lineno) + ": " + order.status().ToString());
    s.query = query::WithDefaults(*parsed, {.no_default = false, .dev = dev});
    s.order = *order;
    s.limit = std::atoi(l.c_str());
    if (s.limit < 0 || s.limit > query::kMaxLimit) Die(path + ":" + std::to_string(lineno) + ": bad limit");
    s.text = (q.empty() ? std::string("(defaults only)") : q) + "  -o " + o + "  limit " + l;
    out.push_back(std::move(s));
  }
  if (out.empty()) Die(path + ": no searches");
  return out;
}

// Whole offers, as ours returns them (an API answers with every field).
SqlOracle::RowsAnswer RunSqlite(SqlOracle& db, const Search& s, SqlOracle::Plan plan) {
  auto a = db.SearchRows(s.query, s.order, s.limit, plan);
  if (!a.ok()) Die("sqlite: " + a.status().ToString() + " for " + s.text);
  return std::move(*a);
}

query::SearchResult RunOurs(const query::OfferIndex& index, const Search& s, int64_t now_ms) {
  query::SearchOptions opts;
  opts.limit = s.limit;
  return index.Search(s.query, s.order, now_ms, opts);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// This thread's CPU time: on a shared, loaded machine the wall time also
// measures how often we were scheduled; CPU time is the work itself.
int64_t ThreadMinorFaults() {
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

volatile int64_t g_sink = 0;

}  // namespace

int main(int argc, char** argv) {
  int64_t offers = 1'000'000;
  uint64_t seed = 1;
  int rounds = 5, reps = 20, builds = 3;
  bool dev = false, plans = false;
  std::string queries_path = std::string(GRID_SOURCE_DIR) + "/bench/search_queries.txt";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--offers") offers = std::atoll(next());
    else if (a == "--seed") seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--rounds") rounds = std::atoi(next());
    else if (a == "--reps") reps = std::atoi(next());
    else if (a == "--builds") builds = std::atoi(next());
    else if (a == "--queries") queries_path = next();
    else if (a == "--dev") dev = true;
    else if (a == "--plans") plans = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_search [--offers 1000000] [--seed 1] [--rounds 5] [--reps 20] [--builds 3]\n"
                   "                    [--queries FILE] [--dev] [--plans]\n");
      return 2;
    }
  }
  if (offers < 1 || rounds < 1 || reps < 1 || builds < 1) Die("--offers, --rounds, --reps, --builds must be positive");

  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::vector<Search> searches = LoadSearches(queries_path, dev);
  std::printf("searches: %zu from %s (defaults: verified%s rentable rented)\n", searches.size(),
              queries_path.c_str(), dev ? " off (--dev)," : ",");

  query_testing::MarketGenOptions gen;
  gen.seed = seed;
  gen.offers = offers;
  const int64_t now_ms = gen.now_ms;
  double t0 = NowSeconds();
  std::vector<query::OfferRow> rows = query_testing::GenerateMarket(gen);
  std::printf("market: %zu offers, seed %" PRIu64 ", generated in %.2f s\n", rows.size(), seed, NowSeconds() - t0);
  std::fflush(stdout);

  // The baseline's database.
  t0 = NowSeconds();
  auto opened = SqlOracle::Open();
  if (!opened.ok()) Die(opened.status().ToString());
  std::unique_ptr<SqlOracle> db = std::move(*opened);
  if (Status st = db->Insert(rows); !st.ok()) Die(st.ToString());
  double load_s = NowSeconds() - t0;
  t0 = NowSeconds();
  if (Status st = db->CreateBestIndexes(); !st.ok()) Die(st.ToString());
  std::printf("sqlite: loaded in %.2f s, 18 indexes + ANALYZE in %.2f s\n", load_s, NowSeconds() - t0);
  std::fflush(stdout);

  // Ours: the median of `builds` builds, each from its own copy.
  std::vector<double> build_s, build_cpu_s;
  query::OfferIndex index;
  for (int b = 0; b < builds; ++b) {
    std::vector<query::OfferRow> copy = rows;
    query::OfferIndex fresh;
    t0 = NowSeconds();
    double c0 = ThreadCpuSeconds();
    fresh.Build(std::move(copy));
    build_s.push_back(NowSeconds() - t0);
    build_cpu_s.push_back(ThreadCpuSeconds() - c0);
    index = std::move(fresh);
  }
  if (Status st = index.Check(); !st.ok()) Die("index Check: " + st.ToString());
  const double bytes_per_offer = static_cast<double>(index.MemoryBytes()) / static_cast<double>(index.size());
  std::printf("index: Build %.3f s wall, %.3f s CPU (medians of %d: ", Median(build_s), Median(build_cpu_s), builds);
  for (size_t i = 0; i < build_s.size(); ++i) std::printf("%s%.3f/%.3f", i ? " " : "", build_s[i], build_cpu_s[i]);
  std::printf("), MemoryBytes %.1f MiB = %.1f bytes/offer\n", static_cast<double>(index.MemoryBytes()) / 1048576.0,
              bytes_per_offer);
  std::printf("process: %s\n", bench::FormatRss(bench::ReadRss()).c_str());
  std::fflush(stdout);

  // Same answers, or nothing is worth timing. Then SQLite's better plan.
  for (Search& s : searches) {
    query::SearchResult ours = RunOurs(index, s, now_ms);
    std::vector<int64_t> ids;
    for (const query::OfferRow& r : ours.offers) ids.push_back(r.id.value_or(-1));
    for (SqlOracle::Plan plan : {SqlOracle::Plan::kPlanner, SqlOracle::Plan::kNotIndexed}) {
      SqlOracle::RowsAnswer rows_want = RunSqlite(*db, s, plan);
      SqlOracle::Answer want{{}, rows_want.total};
      for (const query::OfferRow& r : rows_want.offers) want.ids.push_back(r.id.value_or(-1));
      if (want.ids != ids || want.total != ours.total) {
        std::fprintf(stderr,
                     "\n*** MISMATCH for %s (%s)\n  index: total %" PRId64 ", %zu ids\n  sqlite: total %" PRId64
                     ", %zu ids\n  sql: %s\n",
                     s.text.c_str(), plan == SqlOracle::Plan::kPlanner ? "planner" : "NOT INDEXED", ours.total,
                     ids.size(), want.total, want.ids.size(),
                     SqlOracle::Sql(s.query, s.order, s.limit, plan, false).c_str());
        for (size_t i = 0; i < std::max(ids.size(), want.ids.size()); ++i) {
          int64_t a = i < ids.size() ? ids[i] : -1, b = i < want.ids.size() ? want.ids[i] : -1;
          if (a != b) {
            std::fprintf(stderr, "  first difference at %zu: index %" PRId64 ", sqlite %" PRId64 "\n", i, a, b);
            break;
          }
        }
        std::exit(1);
      }
    }
    s.total = ours.total;
    double best[2] = {1e30, 1e30};
    for (int rep = 0; rep < 2; ++rep) {
      for (int p = 0; p < 2; ++p) {
        auto plan = p == 0 ? SqlOracle::Plan::kPlanner : SqlOracle::Plan::kNotIndexed;
        double t = NowSeconds();
        g_sink = g_sink + RunSqlite(*db, s, plan).total;
        best[p] = std::min(best[p], (NowSeconds() - t) * 1e3);
      }
    }
    s.planner_ms = best[0];
    s.not_indexed_ms = best[1];
    s.plan = best[1] < best[0] ? SqlOracle::Plan::kNotIndexed : SqlOracle::Plan::kPlanner;
    if (plans) {
      auto plan_text = db->ExplainPlan(s.query, s.order, s.limit, s.plan);
      std::printf("plan %s: %s\n", s.text.c_str(), plan_text.ok() ? plan_text->c_str() : "?");
    }
  }
  std::printf("check: index and SQLite (both plans) return identical ids in identical order and the same "
              "total for all %zu searches\n\n",
              searches.size());
  std::fflush(stdout);

  for (int r = 0; r < rounds; ++r) {
    double sq = 0, ou = 0;
    for (Search& s : searches) {
      double t = NowSeconds(), c = ThreadCpuSeconds();
      g_sink = g_sink + RunSqlite(*db, s, s.plan).total;
      double ms = (NowSeconds() - t) * 1e3;
      s.sqlite_cpu_ms.push_back((ThreadCpuSeconds() - c) * 1e3);
      s.sqlite_ms.push_back(ms);
      sq += ms;
    }
    for (Search& s : searches) {
      for (int k = 0; k < reps; ++k) {
        int64_t f = ThreadMinorFaults();
        double t = NowSeconds(), c = ThreadCpuSeconds();
        g_sink = g_sink + RunOurs(index, s, now_ms).total;
        double ms = (NowSeconds() - t) * 1e3;
        s.ours_cpu_ms.push_back((ThreadCpuSeconds() - c) * 1e3);
        s.ours_minor_faults += ThreadMinorFaults() - f;
        s.ours_ms.push_back(ms);
        (k == 0 ? s.ours_cold_ms : s.ours_warm_ms).push_back(ms);
        ou += ms;
      }
    }
    std::printf("round %d: sqlite %.1f ms for %zu searches, ours %.2f ms for %zu\n", r + 1, sq, searches.size(), ou,
                searches.size() * static_cast<size_t>(reps));
    std::fflush(stdout);
  }

  std::printf("\n%-3s %-80s %7s %4s | %9s %8s %7s %8s | %9s %8s %7s %8s\n", "#", "search", "total", "plan",
              "sqlite ms", "ours ms", "ratio", "ours p99", "sqlite cpu", "ours cpu", "ratio", "cpu p99");
  double log_sum = 0, log_sum_cpu = 0, worst_p99 = 0, worst_p99_cpu = 0;
  size_t worst_i = 0, worst_cpu_i = 0;
  std::vector<double> all_ours, all_ours_cpu;
  for (size_t i = 0; i < searches.size(); ++i) {
    const Search& s = searches[i];
    double sq = Median(s.sqlite_ms), ou = Median(s.ours_ms), p99 = Percentile(s.ours_ms, 0.99);
    double sqc = Median(s.sqlite_cpu_ms), ouc = Median(s.ours_cpu_ms), p99c = Percentile(s.ours_cpu_ms, 0.99);
    double ratio = sq / std::max(ou, 1e-6), ratio_cpu = sqc / std::max(ouc, 1e-6);
    log_sum += std::log(ratio);
    log_sum_cpu += std::log(ratio_cpu);
    if (p99 > worst_p99) {
      worst_p99 = p99;
      worst_i = i;
    }
    if (p99c > worst_p99_cpu) {
      worst_p99_cpu = p99c;
      worst_cpu_i = i;
    }
    all_ours.insert(all_ours.end(), s.ours_ms.begin(), s.ours_ms.end());
    all_ours_cpu.insert(all_ours_cpu.end(), s.ours_cpu_ms.begin(), s.ours_cpu_ms.end());
    std::printf("%-3zu %-80.80s %7" PRId64 " %4s | %9.3f %8.4f %6.1fx %8.4f | %9.3f %8.4f %6.1fx %8.4f\n", i + 1,
                s.text.c_str(), s.total, s.plan == SqlOracle::Plan::kPlanner ? "plan" : "scan", sq, ou, ratio, p99,
                sqc, ouc, ratio_cpu, p99c);
  }
  const double n = static_cast<double>(searches.size());
  const double geomean = std::exp(log_sum / n), geomean_cpu = std::exp(log_sum_cpu / n);
  std::printf("\n(plan: SQLite's planner; scan: NOT INDEXED was faster in the warm-up. ms: wall medians; cpu: "
              "this thread's CPU time, medians; p99 over %d runs per search)\n",
              rounds * reps);
  std::printf("speed-up, geometric mean over %zu searches: %.1fx wall, %.1fx CPU (goal >= 20x): %s\n",
              searches.size(), geomean, geomean_cpu, geomean >= 20 ? "met" : "NOT met");
  std::printf("ours p99: worst search %.4f ms wall (#%zu), %.4f ms CPU (#%zu); all runs together %.4f ms wall, "
              "%.4f ms CPU (goal <= 2 ms): %s\n",
              worst_p99, worst_i + 1, worst_p99_cpu, worst_cpu_i + 1, Percentile(all_ours, 0.99),
              Percentile(all_ours_cpu, 0.99), worst_p99 <= 2.0 ? "met" : "NOT met (wall)");
  std::printf("index build: %.3f s wall, %.3f s CPU (goal <= 2 s): %s\n", Median(build_s), Median(build_cpu_s),
              Median(build_s) <= 2.0 ? "met" : "NOT met (wall)");
  std::printf("memory: %.1f bytes/offer (goal <= 400): %s\n", bytes_per_offer,
              bytes_per_offer <= 400 ? "met" : "NOT met");

  // Where the tail comes from: the first run after SQLite's pass against the
  // runs that follow, and the page faults our runs take.
  std::printf("\nours, cold (first run after SQLite's pass, %d per search) vs warm (%d), wall ms; minor page faults "
              "per run:\n",
              rounds, rounds * (reps - 1));
  std::printf("%-3s %10s %10s %10s %10s %10s\n", "#", "cold med", "cold max", "warm med", "warm p99", "faults/run");
  std::vector<double> all_warm;
  for (size_t i = 0; i < searches.size(); ++i) {
    const Search& s = searches[i];
    all_warm.insert(all_warm.end(), s.ours_warm_ms.begin(), s.ours_warm_ms.end());
    double cold_max = s.ours_cold_ms.empty() ? 0 : *std::max_element(s.ours_cold_ms.begin(), s.ours_cold_ms.end());
    std::printf("%-3zu %10.4f %10.4f %10.4f %10.4f %10.1f\n", i + 1, Median(s.ours_cold_ms), cold_max,
                Median(s.ours_warm_ms), Percentile(s.ours_warm_ms, 0.99),
                static_cast<double>(s.ours_minor_faults) / static_cast<double>(s.ours_ms.size()));
  }
  std::printf("warm runs, all searches together: p99 %.4f ms\n", Percentile(all_warm, 0.99));
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  return 0;
}
