// The offer query language: Vast.ai's search syntax, parsed into typed
// clauses.
//
// A query is a whitespace-separated list of clauses `FIELD OP VALUE`, all
// ANDed; several clauses on one field all apply:
//
//   gpu_name=RTX_4090 num_gpus>=4 reliability>0.98 dph<2.5
//   gpu_name in [RTX_4090, A100_SXM4_80GB]   geolocation notin [CN,RU]
//
//   OP     = == != < <= > >= in notin, and the words eq neq gt gte lt lte.
//          Spaces around a symbolic operator are optional (`num_gpus>=4`).
//   VALUE  a number, true/false, a string or a list [a,b,c]. In unquoted
//          strings `_` stands for a space (`RTX_4090` is "RTX 4090"); a quoted
//          string ("..." or '...', with \" and \\ escapes) is taken literally.
//          `any` or `*` (unquoted) removes the clause: it constrains nothing,
//          but it still counts as "the user spoke about this field", which is
//          how `verified=any` turns a default off (see WithDefaults).
//
// Every field has a type (FieldType). Values are held exactly, never as
// floats: kInt as the integer, kNumber and kMoney as millionths (micro-USD
// for money, so `dph<2.5` is 2,500,000). Strings compare case-insensitively
// (ASCII) and only with = != in notin; booleans only with = != in notin.
//
// Errors are InvalidArgument with a message that names the clause and the
// 1-based column (byte position) where it starts, e.g.
//   num_gpus>=x (column 1): num_gpus takes a number, got "x"
//   gpu_nme: unknown field; did you mean gpu_name? (column 1)
// The parser never crashes or reads past its input, whatever the bytes
// (tests/fuzz/query_fuzz.cc), and Format() prints a canonical form that
// parses back to an equal Query.
//
// Pure: no I/O, no clock, no globals written. Every function is thread-safe;
// the returned values are plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/money.h"
#include "core/status.h"

namespace grid::query {

enum class FieldType {
  kInt,     // a whole number (ids, counts, compute_cap 900 = 9.0)
  kNumber,  // a decimal with at most 6 decimals, held in millionths
  kMoney,   // USD with at most 6 decimals, held in micro-USD (grid::Micros)
  kBool,    // true / false
  kString,  // compared case-insensitively; only = != in notin
};

// The fields, with Vast's names so its users' queries work. One list drives
// the enum, the name table and OfferRow, so they cannot drift apart.
// X(enumerator, name, type)
#define GRID_QUERY_FIELDS(X)                          \
  X(kId, id, kInt)                                    \
  X(kMachineId, machine_id, kInt)                     \
  X(kHostId, host_id, kInt)                           \
  X(kGpuName, gpu_name, kString)                      \
  X(kNumGpus, num_gpus, kInt)                         \
  X(kGpuRam, gpu_ram, kNumber)               /* GB per GPU */ \
  X(kGpuTotalRam, gpu_total_ram, kNumber)    /* GB */ \
  X(kGpuArch, gpu_arch, kString)                      \
  X(kComputeCap, compute_cap, kInt)          /* 900 = 9.0 */ \
  X(kCudaVers, cuda_vers, kNumber)           /* max CUDA supported */ \
  X(kDriverVersion, driver_version, kString)          \
  X(kGpuMemBw, gpu_mem_bw, kNumber)          /* GB/s */ \
  X(kBwNvlink, bw_nvlink, kNumber)                    \
  X(kPcieBw, pcie_bw, kNumber)                        \
  X(kPciGen, pci_gen, kNumber)                        \
  X(kTotalFlops, total_flops, kNumber)       /* TFLOPS */ \
  X(kDlperf, dlperf, kNumber)                         \
  X(kCpuCores, cpu_cores, kInt)                       \
  X(kCpuCoresEffective, cpu_cores_effective, kNumber) \
  X(kCpuRam, cpu_ram, kNumber)               /* GB */ \
  X(kDiskSpace, disk_space, kNumber)         /* GB */ \
  X(kDiskBw, disk_bw, kNumber)                        \
  X(kInetUp, inet_up, kNumber)               /* Mbps */ \
  X(kInetDown, inet_down, kNumber)           /* Mbps */ \
  X(kGeolocation, geolocation, kString)      /* ISO country */ \
  X(kDatacenter, datacenter, kBool)                   \
  X(kVerified, verified, kBool)                       \
  X(kReliability, reliability, kNumber)      /* 0-1 */ \
  X(kDphTotal, dph_total, kMoney)            /* USD/h, whole offer */ \
  X(kDphPerGpu, dph_per_gpu, kMoney)                  \
  X(kStorageCost, storage_cost, kMoney)               \
  X(kMinBid, min_bid, kMoney)                         \
  X(kDuration, duration, kNumber)            /* days to end date */ \
  X(kDlperfPerDphtotal, dlperf_per_dphtotal, kNumber) \
  X(kFlopsPerDphtotal, flops_per_dphtotal, kNumber)   \
  X(kRentable, rentable, kBool)                       \
  X(kRented, rented, kBool)                           \
  X(kSimulated, simulated, kBool)

enum class FieldId {
#define GRID_QUERY_ENUM(e, n, t) e,
  GRID_QUERY_FIELDS(GRID_QUERY_ENUM)
#undef GRID_QUERY_ENUM
};

struct FieldInfo {
  FieldId id;
  std::string_view name;  // canonical (Vast) name
  FieldType type;
};

// Every field, in FieldId order (so Fields()[int(id)].id == id).
std::span<const FieldInfo> Fields();
#define GRID_QUERY_COUNT(e, n, t) +1
inline constexpr int kFieldCount = 0 GRID_QUERY_FIELDS(GRID_QUERY_COUNT);
#undef GRID_QUERY_COUNT
const FieldInfo& Info(FieldId id);
// By canonical name or alias (dph, dlperf_usd, flops_usd), ASCII
// case-insensitive; nullopt when unknown.
std::optional<FieldId> LookupField(std::string_view name);

enum class Op { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };
// The canonical spelling: "=" "!=" "<" "<=" ">" ">=" "in" "notin".
std::string_view OpName(Op op);

// int64_t: kInt, or millionths for kNumber and kMoney. bool: kBool.
// std::string: kString, as the user meant it (`_` already turned into
// spaces, case kept).
using Value = std::variant<int64_t, bool, std::string>;

struct Clause {
  FieldId field;
  Op op;
  // One value, except for in/notin: the list (possibly empty).
  std::vector<Value> values;
  bool operator==(const Clause&) const = default;
};

struct Query {
  std::vector<Clause> clauses;  // in the order written
  // Fields given `any`/`*`: no clause, but the query speaks about them, so
  // WithDefaults adds no default for them. In first-mention order, no repeats.
  std::vector<FieldId> any_fields;
  bool operator==(const Query&) const = default;
};

Result<Query> Parse(std::string_view text);

// The canonical form: clauses space-separated, canonical field names and
// operators, no spaces around symbolic operators, numbers without trailing
// zeros, strings unquoted with `_` for spaces where that is unambiguous and
// quoted otherwise; `field=any` for any_fields, last. Parse(Format(q)) == q.
std::string Format(const Query& q);
std::string FormatClause(const Clause& c);

// Whether the query has a clause on `field` or names it with `any`.
bool Constrains(const Query& q, FieldId field);

// Vast's defaults: verified=true rentable=true rented=false, each added
// (appended) only when the query does not already constrain that field.
// no_default (-n) adds none; dev (a --dev broker, where nothing is verified
// yet) leaves verified out.
struct DefaultOptions {
  bool no_default = false;
  bool dev = false;
};
Query WithDefaults(Query q, const DefaultOptions& options);

// Sort order: `-o 'dph,reliability-'`. Comma-separated fields; a trailing `-`
// means descending (a trailing `+`, ascending, is accepted too). The empty
// text is the default order, dph_total ascending. Ties are always broken by
// id ascending (OrderLess), so it is not listed in keys.
struct SortKey {
  FieldId field;
  bool descending = false;
  bool operator==(const SortKey&) const = default;
};
struct Order {
  std::vector<SortKey> keys;
  bool operator==(const Order&) const = default;
};
Order DefaultOrder();
Result<Order> ParseOrder(std::string_view text);
// "dph_total,reliability-"; ParseOrder(FormatOrder(o)) == o for non-empty o.
std::string FormatOrder(const Order& order);

// One offer as the query language sees it: every field, null (nullopt) when
// unknown. Held like Value: numbers in millionths, money in micro-USD.
template <FieldType T>
struct RowTypeOf;
template <> struct RowTypeOf<FieldType::kInt> { using type = int64_t; };
template <> struct RowTypeOf<FieldType::kNumber> { using type = int64_t; };
template <> struct RowTypeOf<FieldType::kMoney> { using type = Micros; };
template <> struct RowTypeOf<FieldType::kBool> { using type = bool; };
template <> struct RowTypeOf<FieldType::kString> { using type = std::string; };

struct OfferRow {
#define GRID_QUERY_MEMBER(e, n, t) std::optional<RowTypeOf<FieldType::t>::type> n;
  GRID_QUERY_FIELDS(GRID_QUERY_MEMBER)
#undef GRID_QUERY_MEMBER

  // Not a field: the machine's end date in unix ms, 0 for none. `duration`
  // is DurationMillionths(end_date_ms, now) at the time the row was made;
  // the index (index.h) keeps the end date and derives duration per search.
  int64_t end_date_ms = 0;

  // The field's value as a Value; nullopt when null.
  std::optional<Value> Get(FieldId field) const;
};

// `duration` in millionths of a day from now to the end date, rounded down
// (negative once past it); kUnlimitedDuration when there is no end date
// (end_date_ms 0), which compares above every value a query can hold.
// Non-decreasing in end_date_ms.
inline constexpr int64_t kUnlimitedDuration = INT64_MAX;
int64_t DurationMillionths(int64_t end_date_ms, int64_t now_ms);

// The reference semantics: whether the row satisfies every clause. A clause
// on a null field never matches (not even != or notin).
bool Matches(const Query& q, const OfferRow& row);
bool MatchesClause(const Clause& c, const OfferRow& row);

// Strict weak order of rows under `order`, then id ascending. A null sorts
// after every value whichever the direction, as SQL's NULLS LAST.
bool OrderLess(const Order& order, const OfferRow& a, const OfferRow& b);

}  // namespace grid::query
