// The live offer index: every offer of the market as columns in memory,
// answering a parsed Query with an Order and a limit in well under a
// millisecond on 1,000,000 offers, on one core.
//
// Layout (one slot per offer; a slot is a row number):
//   - numeric fields (kInt, kNumber, kMoney): one int64 column each plus a
//     null bitmap;
//   - booleans: a value bitmap and a null bitmap, nothing else;
//   - strings: a per-field dictionary of case-folded values, a uint32 code
//     per slot (0 = null) and, per value, the sorted list of its slots, so
//     `gpu_name=RTX_4090` costs the matches, not the market;
//   - duration is held as the machine's end date (ms, INT64_MAX for none)
//     and compared through DurationMillionths at search time, so it never
//     goes stale;
//   - a `live` bitmap (free slots are reused) and a permutation of the
//     slots sorted by (dph_total, id) for the default order, with a small
//     set of slots changed since it was sorted; it is re-sorted when that
//     set grows past 1/64 of the slots.
// Build() sorts the rows by (gpu_name, num_gpus, dph_total) first, so that
// the common clauses select long runs of 64-bit words and the other clauses
// only look at those words.
//
// A search ANDs one bitmap per clause, cheapest first, evaluating each
// clause only on words that are still non-zero; then it either walks the
// sorted permutation (broad results, default order) or selects the top
// `limit` with a bounded heap. `total` is always exact.
//
// Semantics are exactly Matches() and OrderLess() of query.h over the rows
// given (a clause on a null never matches; nulls sort last), which the
// differential test checks against SQLite.
//
// Pure: no I/O, no clock (now_ms comes in), no threads. Not thread-safe for
// writers: the owner serialises Set/Remove against Search (const Search
// calls may run concurrently with each other).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "query/query.h"

namespace grid::query {

struct SearchOptions {
  int limit = 64;  // 0..kMaxLimit
  bool explain = false;
  // Clauses at this index and after were added by WithDefaults (it appends):
  // explain labels them "(default)". SIZE_MAX: none.
  size_t defaults_from = SIZE_MAX;
};
inline constexpr int kMaxLimit = 10'000;

struct ClauseExplain {
  Clause clause;
  bool is_default = false;
  int64_t fails = 0;  // offers that do not satisfy this clause
  int64_t sole = 0;   // offers excluded by this clause alone (satisfy every other)
};

// An offer that misses the query by exactly one clause: the first such offer
// in the requested order.
struct NearMiss {
  size_t clause = 0;  // index into Explain::clauses
  OfferRow row;
};

struct Explain {
  int64_t offers = 0;  // offers in the index
  std::vector<ClauseExplain> clauses;
  // Only when the result is empty: per clause whose removal would give a
  // result, the best offer it alone excludes; in clause order.
  std::vector<NearMiss> near_misses;
  // One or two sentences for a person, e.g. "No offer matches. Without
  // dph_total<2 the best is offer 41008: 8x H100 SXM 80GB at $2.35/h on
  // machine 41." or "No offer matches, and no single clause is to blame:
  // ... ".
  std::string summary;
};

struct SearchResult {
  std::vector<OfferRow> offers;  // in order, at most limit
  int64_t total = 0;             // every match, not only those returned
  std::optional<Explain> explain;
};

class OfferIndex {
 public:
  OfferIndex();
  ~OfferIndex();
  OfferIndex(OfferIndex&&) noexcept;
  OfferIndex& operator=(OfferIndex&&) noexcept;

  // Replaces the whole content (clustered layout; see above). Rows need a
  // non-null id and machine_id; ids must be distinct.
  void Build(std::vector<OfferRow> rows);

  // Replaces every offer of one machine by `rows` (possibly none). Each row's
  // machine_id must equal machine_id and its id must be unique in the index.
  // Slots of the machine are reused in place when the count is unchanged (a
  // lease starting or ending, a heartbeat), so the layout stays clustered.
  void SetMachine(int64_t machine_id, std::span<const OfferRow> rows);
  void RemoveMachine(int64_t machine_id);

  // The offer with this id, if indexed (duration as of now_ms).
  std::optional<OfferRow> Get(int64_t offer_id, int64_t now_ms) const;

  size_t size() const;  // live offers
  // Bytes held by the index (columns, bitmaps, dictionaries, posting lists,
  // the permutation and the id maps), for the bytes-per-offer figure.
  size_t MemoryBytes() const;

  // Whether Build/Set produced a valid state (cheap structural checks);
  // used by tests.
  Status Check() const;

  SearchResult Search(const Query& q, const Order& order, int64_t now_ms, const SearchOptions& options = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grid::query
