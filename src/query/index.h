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
//   - a `live` bitmap (free slots are reused);
//   - for twelve fields people sort by (dph_total, dph_per_gpu, reliability,
//     dlperf, dlperf_per_dphtotal, flops_per_dphtotal, total_flops,
//     inet_down, inet_up, gpu_ram, num_gpus, duration), the slots sorted by
//     (value, id), nulls last: 4 bytes an offer each. Slots written since
//     the last sort are `dirty` and handled beside them; all are re-sorted
//     (radix sort) when the dirty ones pass 1/16 of the slots.
// Big columns ask for transparent huge pages (page faults were most of the
// build time on these virtual machines). Build() places the rows by a
// counting sort on (gpu_name, num_gpus), so the common clauses select long
// runs of 64-bit words and the other clauses only look at those words.
//
// A search ANDs the clauses into one bitmap, cheapest first (string values
// through their slot lists, booleans by words, numbers by an AVX2 range
// test where the CPU has it), only over the words that can still match.
// Then, when the matches are many and the first sort key has a sorted
// permutation, it walks that permutation until it has `limit` matches (with
// a step budget: matches clustered far from the start fall back); else it
// selects the top `limit` with a bounded heap. `total` is always exact.
//
// Explain evaluates each clause over the whole market: how many offers it
// excludes, how many it alone excludes (they satisfy every other clause),
// and for an empty result the best offer each such clause alone excludes.
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
