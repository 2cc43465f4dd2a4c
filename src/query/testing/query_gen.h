// Random search requests as a user would type them, for differential tests:
// the query as TEXT (so the parser is exercised too), the order text and a
// limit. Values are mostly drawn from the rows themselves (so clauses select
// something, and `=` hits), sometimes near them, past them or made up.
//
// The text uses every spelling the language accepts: = == != < <= > >= in
// notin and eq neq gt gte lt lte in any case, spaces around symbolic
// operators or not, field names and aliases (dph, dlperf_usd, flops_usd) in
// any case, `_` for spaces or quoted strings (with \" and \\ escapes),
// lists with and without spaces, empty lists, `in x` without brackets,
// `.5`-style decimals, negative numbers, `any` and `*`; orders with up to
// three keys, `-` and `+` suffixes, and the empty order (the default).
// Every text it makes parses (a test asserts that).
//
// Pure; deterministic for the Rng's state.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "query/query.h"
#include "query/testing/market_gen.h"

namespace grid::query_testing {

struct RandomSearch {
  std::string query;  // query::Parse accepts it
  std::string order;  // query::ParseOrder accepts it ("" = default order)
  int64_t limit = 64;
  // Apply query::WithDefaults (dev or not) after parsing.
  bool with_defaults = false;
  bool dev = false;
  // "q='…' order='…' limit=N defaults=…" for failure messages.
  std::string Describe() const;
};

// `rows` supplies realistic values; it may be empty.
RandomSearch MakeRandomSearch(Rng& rng, std::span<const query::OfferRow> rows);

// The Query and Order of a RandomSearch: parsed, defaults applied.
struct ParsedSearch {
  query::Query query;
  query::Order order;
  int64_t limit = 64;
};
Result<ParsedSearch> ParseSearch(const RandomSearch& s);

}  // namespace grid::query_testing
