// libFuzzer target for the offer query language (src/query/query.h): the
// query string and the -o order come straight from renters.
//
// Checks, for any input bytes (a violation prints the reason and aborts):
//   parse   Parse never crashes or reads out of bounds (ASan); a failure is
//           InvalidArgument with a non-empty message.
//   format  Parse ok => Parse(Format(q)) is ok and == q, and Format is a
//           fixed point (Format(Parse(Format(q))) == Format(q)).
//   order   ParseOrder likewise: ok => ParseOrder(FormatOrder(o)) == o.
//   eval    Matches, WithDefaults and OrderLess run on every parsed query
//           (exercising the evaluator on every clause shape); defaults never
//           remove a clause and are idempotent.
//   index   OfferIndex::Search (with explain) over a small market with
//           nulls and ties returns exactly what Matches/OrderLess select, in
//           the default order and in any order the input also parses as.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <algorithm>
#include <vector>

#include "query/index.h"
#include "query/query.h"

namespace {
void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s\n", what, detail.c_str());
  std::abort();
}

grid::query::OfferRow SampleRow() {
  grid::query::OfferRow r;
  r.id = 41008;
  r.gpu_name = "RTX 4090";
  r.num_gpus = 4;
  r.reliability = 990'000;
  r.dph_total = 2'500'000;
  r.verified = true;
  r.geolocation = "US";
  return r;
}
constexpr int64_t kNow = 1'800'000'000'000;

std::vector<grid::query::OfferRow> SampleMarket() {
  std::vector<grid::query::OfferRow> rows;
  const char* gpus[] = {"RTX 4090", "rtx 4090", "H100 SXM 80GB", "L4"};
  for (int64_t m = 1; m <= 24; ++m) {
    for (int n = 1; n <= 1 + static_cast<int>(m % 3); ++n) {
      grid::query::OfferRow r = SampleRow();
      r.id = m * 1000 + n;
      r.machine_id = m;
      r.num_gpus = n;
      r.gpu_name = gpus[m % 4];
      r.dph_total = 500'000 * (m % 5) * n;
      if (m % 4 == 0) r.reliability.reset();
      if (m % 5 == 0) r.geolocation.reset();
      r.verified = m % 3 != 0;
      r.rentable = n <= 2;
      r.cuda_vers = 12'000'000 + (m % 4) * 100'000;
      r.end_date_ms = m % 2 ? 0 : kNow + m * 3'600'000;
      r.duration = grid::query::DurationMillionths(r.end_date_ms, kNow);
      rows.push_back(r);
    }
  }
  return rows;
}

void CheckIndex(const grid::query::OfferIndex& index, const std::vector<grid::query::OfferRow>& rows,
                const grid::query::Query& q, const grid::query::Order& o, const std::string& text) {
  using namespace grid::query;
  std::vector<const OfferRow*> want;
  for (const OfferRow& r : rows)
    if (Matches(q, r)) want.push_back(&r);
  std::sort(want.begin(), want.end(), [&](const OfferRow* a, const OfferRow* b) { return OrderLess(o, *a, *b); });
  SearchResult got = index.Search(q, o, kNow, SearchOptions{.limit = 5, .explain = true});
  if (got.total != static_cast<int64_t>(want.size())) Fail("index total differs from Matches", text);
  size_t n = std::min<size_t>(5, want.size());
  if (got.offers.size() != n) Fail("index returned a different count", text);
  for (size_t i = 0; i < n; ++i)
    if (got.offers[i].id != want[i]->id) Fail("index order differs from OrderLess", text);
  if (!got.explain || got.explain->clauses.size() != q.clauses.size() || got.explain->summary.empty())
    Fail("explain is incomplete", text);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace grid::query;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const OfferRow row = SampleRow();
  static const std::vector<OfferRow> market = SampleMarket();
  static const OfferIndex index = [] {
    OfferIndex i;
    i.Build(market);
    return i;
  }();

  auto q = Parse(in);
  if (!q.ok()) {
    if (q.status().code() != grid::Code::kInvalidArgument || q.status().message().empty()) {
      Fail("parse error without a reason", q.status().ToString());
    }
  } else {
    std::string text = Format(*q);
    auto again = Parse(text);
    if (!again.ok()) Fail("canonical form does not parse", text + " -> " + again.status().ToString());
    if (!(*again == *q)) Fail("canonical form parses to a different query", text);
    if (Format(*again) != text) Fail("Format is not a fixed point", text);

    (void)Matches(*q, row);
    (void)Matches(*q, OfferRow{});
    Query d = WithDefaults(*q, {});
    if (d.clauses.size() < q->clauses.size()) Fail("defaults removed a clause", text);
    if (!(WithDefaults(d, {}) == d)) Fail("defaults are not idempotent", text);
    CheckIndex(index, market, *q, DefaultOrder(), text);
  }

  auto o = ParseOrder(in);
  if (o.ok()) {
    std::string text = FormatOrder(*o);
    auto again = ParseOrder(text);
    if (!again.ok() || !(*again == *o)) Fail("order round trip differs", text);
    OfferRow other = row;
    other.id = 7;
    (void)OrderLess(*o, row, other);
    CheckIndex(index, market, Query{}, *o, text);
  } else if (o.status().message().empty()) {
    Fail("order error without a reason", std::string(in));
  }
  return 0;
}
