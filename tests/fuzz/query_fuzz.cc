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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

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
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace grid::query;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const OfferRow row = SampleRow();

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
  }

  auto o = ParseOrder(in);
  if (o.ok()) {
    std::string text = FormatOrder(*o);
    auto again = ParseOrder(text);
    if (!again.ok() || !(*again == *o)) Fail("order round trip differs", text);
    OfferRow other = row;
    other.id = 7;
    (void)OrderLess(*o, row, other);
  } else if (o.status().message().empty()) {
    Fail("order error without a reason", std::string(in));
  }
  return 0;
}
