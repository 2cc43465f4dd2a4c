#include "query/index.h"

#include <algorithm>
#include <array>
#include <map>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numeric>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace grid::query {
namespace {

__extension__ typedef unsigned __int128 U128;  // quiet under -Wpedantic

using Words = std::vector<uint64_t>;

// Big columns ask for transparent huge pages: a column of a million offers
// is 8 MB, 2,000 page faults with 4 KiB pages and 4 with 2 MiB ones, and
// page faults are dear on virtual machines (they were most of the build
// time here). Small vectors take the usual path.
template <class T>
struct HugeAlloc {
  using value_type = T;
  static constexpr size_t kHuge = size_t{1} << 21;
  HugeAlloc() = default;
  template <class U>
  HugeAlloc(const HugeAlloc<U>&) {}
  T* allocate(size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kHuge) return static_cast<T*>(::operator new(bytes));
    size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
    void* p = std::aligned_alloc(kHuge, rounded);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kHuge) ::operator delete(p);
    else std::free(p);
  }
  template <class U>
  bool operator==(const HugeAlloc<U>&) const { return true; }
};
template <class T>
using BigVector = std::vector<T, HugeAlloc<T>>;

// Bit j set when (uint64)v[j] - lo <= span, for the 64 values of one word:
// an inclusive range test with one unsigned comparison.
uint64_t InRange64Scalar(const int64_t* v, uint64_t lo, uint64_t span) {
  uint64_t m = 0;
  for (int j = 0; j < 64; ++j) m |= uint64_t{static_cast<uint64_t>(v[j]) - lo <= span} << j;
  return m;
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t InRange64Avx2(const int64_t* v, uint64_t lo, uint64_t span) {
  // AVX2 compares signed 64-bit lanes: flip the sign bit to compare unsigned.
  const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
  const __m256i vlo = _mm256_set1_epi64x(static_cast<int64_t>(lo));
  const __m256i vspan = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<int64_t>(span)), bias);
  uint64_t m = 0;
  for (int j = 0; j < 64; j += 4) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j));
    __m256i t = _mm256_xor_si256(_mm256_sub_epi64(x, vlo), bias);
    __m256i outside = _mm256_cmpgt_epi64(t, vspan);
    m |= static_cast<uint64_t>(~_mm256_movemask_pd(_mm256_castsi256_pd(outside)) & 0xF) << j;
  }
  return m;
}
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
#endif
uint64_t InRange64(const int64_t* v, uint64_t lo, uint64_t span) {
#if defined(__x86_64__)
  if (kHaveAvx2) return InRange64Avx2(v, lo, span);
#endif
  return InRange64Scalar(v, lo, span);
}

// A stable LSD radix sort of (key, slot) pairs by key, skipping the bytes
// every key shares: sorting a million keys this way takes a few
// milliseconds where std::sort takes about a hundred.
struct KeySlot {
  uint64_t key;
  uint32_t slot;
};
void RadixSort(BigVector<KeySlot>& a) {
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  BigVector<KeySlot> tmp(a.size());
  std::vector<size_t> count(kBuckets + 1);
  for (int shift = 0; shift < 64; shift += kBits) {
    std::fill(count.begin(), count.end(), 0);
    for (const KeySlot& e : a) ++count[((e.key >> shift) & (kBuckets - 1)) + 1];
    bool constant = false;
    for (size_t b = 1; b <= kBuckets; ++b) constant = constant || count[b] == a.size();
    if (constant) continue;
    for (size_t b = 1; b <= kBuckets; ++b) count[b] += count[b - 1];
    for (const KeySlot& e : a) tmp[count[(e.key >> shift) & (kBuckets - 1)]++] = e;
    a.swap(tmp);
  }
}

size_t WordsFor(size_t bits) { return (bits + 63) / 64; }
bool TestBit(const Words& b, size_t i) { return (b[i >> 6] >> (i & 63)) & 1; }
void PutBit(Words& b, size_t i, bool v) {
  uint64_t m = uint64_t{1} << (i & 63);
  if (v) b[i >> 6] |= m;
  else b[i >> 6] &= ~m;
}
// Set bits in words [lo, hi). The baseline x86-64 target has no POPCNT
// instruction (std::popcount becomes a libgcc call, ~10x slower); use it
// where the CPU has it, as the AVX2 range test does.
int64_t PopCountScalar(const uint64_t* w, size_t lo, size_t hi) {
  int64_t n = 0;
  for (size_t i = lo; i < hi; ++i) n += std::popcount(w[i]);
  return n;
}
#if defined(__x86_64__)
__attribute__((target("popcnt"))) int64_t PopCountHw(const uint64_t* w, size_t lo, size_t hi) {
  int64_t n = 0;
  for (size_t i = lo; i < hi; ++i) n += __builtin_popcountll(w[i]);
  return n;
}
const bool kHavePopcnt = __builtin_cpu_supports("popcnt");
#endif
int64_t PopCount(const Words& b, size_t lo, size_t hi) {
#if defined(__x86_64__)
  if (kHavePopcnt) return PopCountHw(b.data(), lo, hi);
#endif
  return PopCountScalar(b.data(), lo, hi);
}
int64_t PopCount(const Words& b) { return PopCount(b, 0, b.size()); }

std::string FoldAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// An inclusive range of int64 values a numeric clause accepts.
struct Range {
  int64_t lo, hi;
};

// The accepted values of a numeric clause as sorted, disjoint, inclusive
// ranges; exact (no floats), empty when nothing can match.
std::vector<Range> RangesOf(const Clause& c) {
  constexpr int64_t kMin = INT64_MIN, kMax = INT64_MAX;
  std::vector<int64_t> vals;
  bool other_kinds = false;
  for (const Value& v : c.values) {
    if (const auto* x = std::get_if<int64_t>(&v)) vals.push_back(*x);
    else other_kinds = true;
  }
  std::sort(vals.begin(), vals.end());
  vals.erase(std::unique(vals.begin(), vals.end()), vals.end());
  std::vector<Range> out;
  auto complement_of_points = [&] {
    int64_t lo = kMin;
    bool open = true;
    for (int64_t x : vals) {
      if (x > lo) out.push_back({lo, x - 1});
      if (x == kMax) {
        open = false;
        break;
      }
      lo = x + 1;
    }
    if (open) out.push_back({lo, kMax});
  };
  bool single = c.values.size() == 1 && !other_kinds;
  switch (c.op) {
    case Op::kIn:
      for (int64_t x : vals) out.push_back({x, x});
      break;
    case Op::kNotIn:
      // A value of another kind in the list makes notin false for every row
      // (MatchesClause: all_of(SameKind && !=)).
      if (other_kinds) break;
      complement_of_points();
      break;
    default: {
      if (!single) break;
      int64_t x = vals[0];
      switch (c.op) {
        case Op::kEq: out.push_back({x, x}); break;
        case Op::kNe: complement_of_points(); break;
        case Op::kLt: if (x != kMin) out.push_back({kMin, x - 1}); break;
        case Op::kLe: out.push_back({kMin, x}); break;
        case Op::kGt: if (x != kMax) out.push_back({x + 1, kMax}); break;
        case Op::kGe: out.push_back({x, kMax}); break;
        default: break;
      }
    }
  }
  return out;
}

// Duration is stored as the end date (INT64_MAX for none) and derived at
// search time. f(e) is non-decreasing, so a range of durations is a range
// of end dates.
int64_t DurationOfKey(int64_t end_key, int64_t now_ms) {
  return end_key == INT64_MAX ? kUnlimitedDuration : DurationMillionths(end_key, now_ms);
}
// The least end key e with DurationOfKey(e) >= x; nullopt when none.
std::optional<int64_t> FirstKeyAtLeast(int64_t x, int64_t now_ms) {
  if (DurationOfKey(INT64_MAX, now_ms) < x) return std::nullopt;
  int64_t lo = INT64_MIN, hi = INT64_MAX;  // f(lo) < x <= f(hi)
  if (DurationOfKey(lo, now_ms) >= x) return lo;
  while (static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) > 1) {
    int64_t mid = lo + static_cast<int64_t>((static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo)) / 2);
    if (DurationOfKey(mid, now_ms) >= x) hi = mid;
    else lo = mid;
  }
  return hi;
}
std::vector<Range> DurationRangesToKeys(const std::vector<Range>& ranges, int64_t now_ms) {
  std::vector<Range> out;
  for (const Range& r : ranges) {
    std::optional<int64_t> lo = FirstKeyAtLeast(r.lo, now_ms);
    if (!lo) continue;
    int64_t hi = INT64_MAX;
    if (r.hi != INT64_MAX) {
      std::optional<int64_t> next = FirstKeyAtLeast(r.hi + 1, now_ms);
      if (next) {
        if (*next == INT64_MIN) continue;
        hi = *next - 1;
      }
    }
    if (*lo <= hi) out.push_back({*lo, hi});
  }
  return out;
}

// A small open-addressing map int64 -> uint32 (offer id -> slot): 12 bytes
// an entry at a load factor of at most 1/2, where std::unordered_map costs
// about 40.
class IdMap {
 public:
  std::optional<uint32_t> Find(int64_t key) const {
    if (keys_.empty()) return std::nullopt;
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      if (!used_[i]) return std::nullopt;
      if (keys_[i] == key) return vals_[i];
    }
  }
  void Put(int64_t key, uint32_t val) {
    if ((size_ + 1) * 2 > keys_.size()) Grow();
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      if (!used_[i]) {
        used_[i] = 1;
        keys_[i] = key;
        vals_[i] = val;
        ++size_;
        return;
      }
      if (keys_[i] == key) {
        vals_[i] = val;
        return;
      }
    }
  }
  void Erase(int64_t key) {
    if (keys_.empty()) return;
    size_t i = Home(key);
    for (;; i = (i + 1) & mask_) {
      if (!used_[i]) return;
      if (keys_[i] == key) break;
    }
    // Backward-shift deletion keeps every probe chain unbroken.
    used_[i] = 0;
    --size_;
    for (size_t j = (i + 1) & mask_; used_[j]; j = (j + 1) & mask_) {
      size_t h = Home(keys_[j]);
      bool movable = (j > i) ? (h <= i || h > j) : (h <= i && h > j);
      if (movable) {
        keys_[i] = keys_[j];
        vals_[i] = vals_[j];
        used_[i] = 1;
        used_[j] = 0;
        i = j;
      }
    }
  }
  void Clear() { *this = IdMap(); }
  void Reserve(size_t n) {
    while (keys_.size() < n * 2) Grow();
  }
  size_t size() const { return size_; }
  size_t Bytes() const { return keys_.capacity() * 8 + vals_.capacity() * 4 + used_.capacity(); }

 private:
  size_t Home(int64_t key) const {
    uint64_t h = static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h >> 20) & mask_;
  }
  void Grow() {
    size_t cap = keys_.empty() ? 16 : keys_.size() * 2;
    std::vector<int64_t> keys = std::move(keys_);
    std::vector<uint32_t> vals = std::move(vals_);
    std::vector<uint8_t> used = std::move(used_);
    keys_.assign(cap, 0);
    vals_.assign(cap, 0);
    used_.assign(cap, 0);
    mask_ = cap - 1;
    size_ = 0;
    for (size_t i = 0; i < keys.size(); ++i)
      if (used[i]) Put(keys[i], vals[i]);
  }
  std::vector<int64_t> keys_;
  std::vector<uint32_t> vals_;
  std::vector<uint8_t> used_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace

struct OfferIndex::Impl {
  // One column per field. Which members are used depends on the type.
  struct Column {
    FieldType type = FieldType::kInt;
    BigVector<int64_t> num;     // kInt, kNumber, kMoney (duration: end key)
    Words nonnull;              // every type
    Words bits;                 // kBool: the value
    BigVector<uint32_t> code;   // kString: 0 = null, else 1 + dictionary index
    uint32_t last_code = 0;     // the last string written: rows of a machine repeat theirs
    // kString dictionary: exact strings (case kept, so rows come back as
    // given), their folded forms, folded -> codes, and each code's slots.
    std::vector<std::string> dict{""};
    std::vector<std::string> folded{""};
    std::unordered_map<std::string, std::vector<uint32_t>> by_folded;
    std::unordered_map<std::string, uint32_t> by_exact;
    std::vector<std::vector<uint32_t>> postings{{}};
  };

  std::vector<Column> cols;
  size_t n = 0;  // slots in use (live or free)
  Words live;
  std::vector<uint32_t> free_slots;
  IdMap id_slot;
  std::unordered_map<int64_t, std::vector<uint32_t>> machine_slots;
  // For the fields people sort by, the live slots sorted by (value, id),
  // nulls last, as of the last sort; slots written since are in `dirty` and
  // handled beside the permutations. 4 bytes an offer each.
  struct Perm {
    FieldId field;
    BigVector<uint32_t> slots;
    size_t nonnull = 0;  // slots[0, nonnull) have a value
  };
  static constexpr FieldId kPermFields[] = {
      FieldId::kDphTotal,  FieldId::kDphPerGpu,          FieldId::kReliability,       FieldId::kDlperf,
      FieldId::kDlperfPerDphtotal, FieldId::kFlopsPerDphtotal, FieldId::kTotalFlops, FieldId::kInetDown,
      FieldId::kInetUp,    FieldId::kGpuRam,             FieldId::kNumGpus,           FieldId::kDuration};
  std::vector<Perm> perms;
  static constexpr size_t kPermCount = std::size(kPermFields);
  // What a slot's sorted fields held when the permutations were sorted: a
  // dirty slot keeps them here, so a binary search over a permutation still
  // sees sorted keys. in_perms: the slots live at that sort.
  std::unordered_map<uint32_t, std::array<int64_t, kPermCount>> sorted_at;
  Words in_perms;
  Words dirty;
  std::vector<uint32_t> dirty_list;

  Impl() {
    cols.resize(kFieldCount);
    for (const FieldInfo& f : Fields()) cols[static_cast<size_t>(f.id)].type = f.type;
  }

  Column& Col(FieldId f) { return cols[static_cast<size_t>(f)]; }
  const Column& Col(FieldId f) const { return cols[static_cast<size_t>(f)]; }
  size_t words() const { return WordsFor(n); }

  // --- growing and writing slots

  uint32_t NewSlot() {
    if (!free_slots.empty()) {
      uint32_t s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    uint32_t s = static_cast<uint32_t>(n++);
    size_t w = words();
    if (live.size() < w) {
      live.resize(w);
      dirty.resize(w);
      for (Column& c : cols) {
        c.nonnull.resize(w);
        if (c.type == FieldType::kBool) c.bits.resize(w);
      }
    }
    for (Column& c : cols) {
      if (c.type == FieldType::kString) c.code.push_back(0);
      else if (c.type != FieldType::kBool) c.num.push_back(0);
    }
    return s;
  }

  uint32_t CodeFor(Column& c, const std::string& s) {
    if (c.last_code != 0 && c.dict[c.last_code] == s) return c.last_code;
    auto it = c.by_exact.find(s);
    if (it != c.by_exact.end()) c.last_code = it->second;
    if (it != c.by_exact.end()) return it->second;
    uint32_t code = static_cast<uint32_t>(c.dict.size());
    c.dict.push_back(s);
    c.folded.push_back(FoldAscii(s));
    c.postings.emplace_back();
    c.by_exact.emplace(s, code);
    c.by_folded[c.folded.back()].push_back(code);
    return code;
  }

  // Build (later = true) only sets codes and makes the posting lists in one
  // pass at the end (BuildPostings); a live update keeps them sorted in place.
  void SetCode(Column& c, uint32_t s, uint32_t code, bool later) {
    uint32_t old = c.code[s];
    if (later) {
      c.code[s] = code;
      return;
    }
    if (old == code) return;
    if (old != 0) {
      auto& p = c.postings[old];
      auto it = std::lower_bound(p.begin(), p.end(), s);
      if (it != p.end() && *it == s) p.erase(it);
    }
    c.code[s] = code;
    if (code != 0) {
      auto& p = c.postings[code];
      if (p.empty() || p.back() < s) p.push_back(s);
      else p.insert(std::lower_bound(p.begin(), p.end(), s), s);
    }
  }

  void WriteNum(FieldId f, uint32_t s, const std::optional<int64_t>& v) {
    Column& c = Col(f);
    PutBit(c.nonnull, s, v.has_value());
    c.num[s] = v.value_or(0);
  }
  void WriteBool(FieldId f, uint32_t s, const std::optional<bool>& v) {
    Column& c = Col(f);
    PutBit(c.nonnull, s, v.has_value());
    PutBit(c.bits, s, v.value_or(false));
  }
  void WriteStr(FieldId f, uint32_t s, const std::optional<std::string>& v, bool later) {
    Column& c = Col(f);
    PutBit(c.nonnull, s, v.has_value());
    SetCode(c, s, v ? CodeFor(c, *v) : 0, later);
  }

  void BuildPostings() {
    for (Column& c : cols) {
      if (c.type != FieldType::kString) continue;
      std::vector<size_t> sizes(c.postings.size(), 0);
      for (uint32_t s = 0; s < n; ++s) ++sizes[c.code[s]];
      for (size_t code = 1; code < c.postings.size(); ++code) {
        c.postings[code].clear();
        c.postings[code].reserve(sizes[code]);
      }
      for (uint32_t s = 0; s < n; ++s)
        if (c.code[s] != 0) c.postings[c.code[s]].push_back(s);
    }
  }

  void WriteRow(uint32_t s, const OfferRow& r, bool later) {
#define GRID_W_kInt(e, n) WriteNum(FieldId::e, s, r.n);
#define GRID_W_kNumber(e, n) WriteNum(FieldId::e, s, r.n);
#define GRID_W_kMoney(e, n) WriteNum(FieldId::e, s, r.n);
#define GRID_W_kBool(e, n) WriteBool(FieldId::e, s, r.n);
#define GRID_W_kString(e, n) WriteStr(FieldId::e, s, r.n, later);
#define GRID_W(e, n, t) GRID_W_##t(e, n)
    GRID_QUERY_FIELDS(GRID_W)
#undef GRID_W
#undef GRID_W_kInt
#undef GRID_W_kNumber
#undef GRID_W_kMoney
#undef GRID_W_kBool
#undef GRID_W_kString
    // Duration: the end date as a key, nullness from the row.
    Column& d = Col(FieldId::kDuration);
    d.num[s] = r.end_date_ms == 0 ? INT64_MAX : r.end_date_ms;
    PutBit(live, s, true);
  }

  void ClearSlot(uint32_t s) {
    for (Column& c : cols) {
      PutBit(c.nonnull, s, false);
      if (c.type == FieldType::kString) SetCode(c, s, 0, false);
      else if (c.type == FieldType::kBool) PutBit(c.bits, s, false);
    }
    PutBit(live, s, false);
  }

  // --- reading

  OfferRow ReadRow(uint32_t s, int64_t now_ms) const {
    OfferRow r;
    auto num = [&](FieldId f) -> std::optional<int64_t> {
      const Column& c = Col(f);
      if (!TestBit(c.nonnull, s)) return std::nullopt;
      return c.num[s];
    };
    auto boolean = [&](FieldId f) -> std::optional<bool> {
      const Column& c = Col(f);
      if (!TestBit(c.nonnull, s)) return std::nullopt;
      return TestBit(c.bits, s);
    };
    auto str = [&](FieldId f) -> std::optional<std::string> {
      const Column& c = Col(f);
      if (c.code[s] == 0) return std::nullopt;
      return c.dict[c.code[s]];
    };
#define GRID_R_kInt(e, n) r.n = num(FieldId::e);
#define GRID_R_kNumber(e, n) r.n = num(FieldId::e);
#define GRID_R_kMoney(e, n) r.n = num(FieldId::e);
#define GRID_R_kBool(e, n) r.n = boolean(FieldId::e);
#define GRID_R_kString(e, n) r.n = str(FieldId::e);
#define GRID_R(e, n, t) GRID_R_##t(e, n)
    GRID_QUERY_FIELDS(GRID_R)
#undef GRID_R
#undef GRID_R_kInt
#undef GRID_R_kNumber
#undef GRID_R_kMoney
#undef GRID_R_kBool
#undef GRID_R_kString
    int64_t end_key = Col(FieldId::kDuration).num[s];
    r.end_date_ms = end_key == INT64_MAX ? 0 : end_key;
    if (r.duration) r.duration = DurationOfKey(end_key, now_ms);
    return r;
  }

  // Many rows at once, column by column: the loads of one column are
  // independent, so the CPU overlaps their cache misses, where row by row
  // it waits on 38 columns in turn (a 10,000-row answer took 4x longer).
  std::vector<OfferRow> ReadRows(const std::vector<uint32_t>& out_slots, int64_t now_ms) const {
    std::vector<OfferRow> rows(out_slots.size());
    const size_t k = out_slots.size();
    // Read the columns in slot order (rows of one model sit together, so
    // neighbours share cache lines), writing each value to its row's place.
    std::vector<uint64_t> order(k);  // slot << 32 | row
    for (size_t i = 0; i < k; ++i) order[i] = uint64_t{out_slots[i]} << 32 | i;
    std::sort(order.begin(), order.end());
    auto num = [&](FieldId f, std::optional<int64_t> OfferRow::*member) {
      const Column& c = Col(f);
      for (uint64_t e : order) {
        uint32_t s = static_cast<uint32_t>(e >> 32), i = static_cast<uint32_t>(e);
        if (TestBit(c.nonnull, s)) rows[i].*member = c.num[s];
      }
    };
    auto boolean = [&](FieldId f, std::optional<bool> OfferRow::*member) {
      const Column& c = Col(f);
      for (uint64_t e : order) {
        uint32_t s = static_cast<uint32_t>(e >> 32), i = static_cast<uint32_t>(e);
        if (TestBit(c.nonnull, s)) rows[i].*member = TestBit(c.bits, s);
      }
    };
    auto str = [&](FieldId f, std::optional<std::string> OfferRow::*member) {
      const Column& c = Col(f);
      for (uint64_t e : order) {
        uint32_t s = static_cast<uint32_t>(e >> 32), i = static_cast<uint32_t>(e);
        uint32_t code = c.code[s];
        if (code != 0) rows[i].*member = c.dict[code];
      }
    };
    const std::vector<uint32_t>& slots = out_slots;
#define GRID_RR_kInt(e, n) num(FieldId::e, &OfferRow::n);
#define GRID_RR_kNumber(e, n) num(FieldId::e, &OfferRow::n);
#define GRID_RR_kMoney(e, n) num(FieldId::e, &OfferRow::n);
#define GRID_RR_kBool(e, n) boolean(FieldId::e, &OfferRow::n);
#define GRID_RR_kString(e, n) str(FieldId::e, &OfferRow::n);
#define GRID_RR(e, n, t) GRID_RR_##t(e, n)
    GRID_QUERY_FIELDS(GRID_RR)
#undef GRID_RR
#undef GRID_RR_kInt
#undef GRID_RR_kNumber
#undef GRID_RR_kMoney
#undef GRID_RR_kBool
#undef GRID_RR_kString
    const Column& d = Col(FieldId::kDuration);
    for (size_t i = 0; i < k; ++i) {
      int64_t end_key = d.num[slots[i]];
      rows[i].end_date_ms = end_key == INT64_MAX ? 0 : end_key;
      if (rows[i].duration) rows[i].duration = DurationOfKey(end_key, now_ms);
    }
    return rows;
  }

  int64_t IdOf(uint32_t s) const { return Col(FieldId::kId).num[s]; }

  // --- the sort permutations

  const Perm* PermFor(FieldId f) const {
    for (const Perm& p : perms)
      if (p.field == f) return &p;
    return nullptr;
  }

  void SortPerms() {
    // The live slots in id order; a stable sort by value then gives
    // (value, id) order.
    BigVector<KeySlot> by_id;
    by_id.reserve(id_slot.size());
    for (uint32_t s = 0; s < n; ++s)
      if (TestBit(live, s)) by_id.push_back({static_cast<uint64_t>(IdOf(s)) ^ (uint64_t{1} << 63), s});
    RadixSort(by_id);
    perms.clear();
    BigVector<KeySlot> keyed;
    for (FieldId f : kPermFields) {
      const Column& c = Col(f);
      Perm p{f, {}, 0};
      p.slots.reserve(by_id.size());
      keyed.clear();
      keyed.reserve(by_id.size());
      for (const KeySlot& e : by_id)
        if (TestBit(c.nonnull, e.slot)) keyed.push_back({static_cast<uint64_t>(c.num[e.slot]) ^ (uint64_t{1} << 63), e.slot});
      RadixSort(keyed);
      for (const KeySlot& e : keyed) p.slots.push_back(e.slot);
      p.nonnull = p.slots.size();
      for (const KeySlot& e : by_id)
        if (!TestBit(c.nonnull, e.slot)) p.slots.push_back(e.slot);
      perms.push_back(std::move(p));
    }
    std::fill(dirty.begin(), dirty.end(), 0);
    dirty_list.clear();
    sorted_at.clear();
    in_perms = live;
  }

  // A slot's sorted fields (nonnull, value) and its id: what places it in
  // the permutations.
  using SortValues = std::array<std::pair<bool, int64_t>, kPermCount + 1>;
  SortValues SortValuesOf(uint32_t s) const {
    SortValues v;
    for (size_t f = 0; f < kPermCount; ++f) {
      const Column& c = Col(kPermFields[f]);
      v[f] = {TestBit(c.nonnull, s), c.num[s]};
    }
    v.back() = {true, IdOf(s)};
    return v;
  }
  bool InPerms(uint32_t s) const { return (s >> 6) < in_perms.size() && TestBit(in_perms, s); }

  // `before`: the slot's SortValuesOf before the change that dirties it.
  void MarkDirty(uint32_t s, const SortValues& before) {
    if (TestBit(dirty, s)) return;  // keeps the values of the last sort
    PutBit(dirty, s, true);
    dirty_list.push_back(s);
    if (InPerms(s)) {
      std::array<int64_t, kPermCount> v;
      for (size_t f = 0; f < kPermCount; ++f) v[f] = before[f].second;
      sorted_at.emplace(s, v);
    }
  }
  // Called when a change is complete (never half-way: a slot being cleared
  // must not be sorted into place).
  void MaybeSortPerms() {
    if (dirty_list.size() > 1024 + n / 16) SortPerms();
  }

  // The value slot s had in field f's permutation when it was sorted.
  int64_t SortedValue(size_t f, uint32_t s) const {
    if (TestBit(dirty, s)) return sorted_at.at(s)[f];
    return Col(kPermFields[f]).num[s];
  }
  size_t PermIndex(FieldId field) const {
    for (size_t f = 0; f < kPermCount; ++f)
      if (kPermFields[f] == field) return f;
    return kPermCount;
  }

  // Positions [a, b) of field f's permutation holding values in [lo, hi].
  std::pair<size_t, size_t> PermSpan(size_t f, const Range& r) const {
    const Perm& p = perms[f];
    auto first_not_below = [&](int64_t x) {
      size_t a = 0, b = p.nonnull;
      while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (SortedValue(f, p.slots[mid]) < x) a = mid + 1;
        else b = mid;
      }
      return a;
    };
    size_t a = first_not_below(r.lo);
    size_t b = r.hi == INT64_MAX ? p.nonnull : first_not_below(r.hi + 1);
    return {a, std::max(a, b)};
  }

  // match &= the slots whose field f is in `ranges`, from f's permutation:
  // the cost is the matches (plus the dirty slots), not the market.
  void AndPermRanges(size_t f, const std::vector<Range>& ranges, Words& match, Words& scratch, size_t lo,
                     size_t hi) const {
    scratch.assign(words(), 0);
    const Perm& p = perms[f];
    for (const Range& r : ranges) {
      auto [a, b] = PermSpan(f, r);
      for (size_t i = a; i < b; ++i) {
        uint32_t s = p.slots[i];
        if (!TestBit(dirty, s)) scratch[s >> 6] |= uint64_t{1} << (s & 63);
      }
    }
    const Column& c = Col(kPermFields[f]);
    for (uint32_t s : dirty_list) {
      if (!TestBit(live, s) || !TestBit(c.nonnull, s)) continue;
      int64_t v = c.num[s];
      for (const Range& r : ranges)
        if (v >= r.lo && v <= r.hi) scratch[s >> 6] |= uint64_t{1} << (s & 63);
    }
    const size_t nw = std::min(words(), hi);
    for (size_t w = lo; w < nw; ++w) match[w] &= scratch[w];
  }

  // --- evaluating clauses

  // out = active AND the clause's matches.
  void Eval(const Clause& c, int64_t now_ms, const Words& active, Words& out) const {
    out = active;
    Words scratch;
    AndClause(c, now_ms, out, scratch);
  }

  // match &= the clause's matches, looking only at words still non-zero
  // (no pass over the others, no temporary for booleans and numbers).
  // scratch: a buffer strings reuse.
  // Words outside [lo, hi) must already be zero in match.
  void AndClause(const Clause& c, int64_t now_ms, Words& match, Words& scratch, size_t lo = 0,
                 size_t hi = SIZE_MAX) const {
    const size_t nw = std::min(words(), hi);
    const Column& col = Col(c.field);
    auto none = [&] { std::fill(match.begin(), match.end(), 0); };
    switch (col.type) {
      case FieldType::kBool: {
        bool want_true = false, want_false = false;
        auto has = [&](bool b) {
          for (const Value& v : c.values)
            if (const bool* x = std::get_if<bool>(&v); x && *x == b) return true;
          return false;
        };
        bool all_bool = std::all_of(c.values.begin(), c.values.end(),
                                    [](const Value& v) { return std::holds_alternative<bool>(v); });
        switch (c.op) {
          case Op::kEq:
          case Op::kIn:
            want_true = has(true);
            want_false = has(false);
            if (c.op == Op::kEq && c.values.size() != 1) want_true = want_false = false;
            break;
          case Op::kNe:
          case Op::kNotIn:
            if (!all_bool || (c.op == Op::kNe && c.values.size() != 1)) break;
            want_true = !has(true);
            want_false = !has(false);
            break;
          default:
            break;  // < > on booleans never match (the parser refuses them)
        }
        for (size_t w = lo; w < nw; ++w) {
          if (!match[w]) continue;
          uint64_t m = 0;
          if (want_true) m |= col.bits[w];
          if (want_false) m |= ~col.bits[w];
          match[w] &= m & col.nonnull[w];
        }
        return;
      }
      case FieldType::kString: {
        bool positive = c.op == Op::kEq || c.op == Op::kIn;
        bool negative = c.op == Op::kNe || c.op == Op::kNotIn;
        if (!positive && !negative) return none();
        if ((c.op == Op::kEq || c.op == Op::kNe) && c.values.size() != 1) return none();
        bool all_str = std::all_of(c.values.begin(), c.values.end(),
                                   [](const Value& v) { return std::holds_alternative<std::string>(v); });
        if (negative && !all_str) return none();
        Words& out = scratch;
        out.assign(words(), 0);
        for (const Value& v : c.values) {
          const auto* sv = std::get_if<std::string>(&v);
          if (!sv) continue;
          auto it = col.by_folded.find(FoldAscii(*sv));
          if (it == col.by_folded.end()) continue;
          for (uint32_t code : it->second)
            for (uint32_t s : col.postings[code]) out[s >> 6] |= uint64_t{1} << (s & 63);
        }
        if (negative) {
          for (size_t w = lo; w < nw; ++w) match[w] &= col.nonnull[w] & ~out[w];
        } else {
          for (size_t w = lo; w < nw; ++w) match[w] &= out[w];
        }
        return;
      }
      default:
        break;
    }
    std::vector<Range> ranges = RangesOf(c);
    if (c.field == FieldId::kDuration) ranges = DurationRangesToKeys(ranges, now_ms);
    if (ranges.empty()) return none();
    const int64_t* v = col.num.data();
    for (size_t w = lo; w < nw; ++w) {
      if (!match[w]) continue;
      uint64_t nn = col.nonnull[w] & match[w];
      if (!nn) {
        match[w] = 0;
        continue;
      }
      const size_t base = w * 64;
      const size_t cnt = std::min<size_t>(64, n - base);
      uint64_t m = 0;
      for (const Range& r : ranges) {
        const uint64_t lo = static_cast<uint64_t>(r.lo);
        const uint64_t span = static_cast<uint64_t>(r.hi) - lo;
        if (cnt == 64) {
          m |= InRange64(v + base, lo, span);
        } else {
          for (size_t j = 0; j < cnt; ++j) m |= uint64_t{static_cast<uint64_t>(v[base + j]) - lo <= span} << j;
        }
      }
      match[w] = m & nn;
    }
  }

  // How many slots a string = / in clause matches (its values' slot lists).
  uint64_t StringCount(const Clause& c) const {
    const Column& col = Col(c.field);
    uint64_t count = 0;
    for (const Value& v : c.values) {
      const auto* sv = std::get_if<std::string>(&v);
      if (!sv) continue;
      auto it = col.by_folded.find(FoldAscii(*sv));
      if (it == col.by_folded.end()) continue;
      for (uint32_t code : it->second) count += col.postings[code].size();
    }
    return count;
  }

  // Cheapest first: strings (their matches), booleans (a word op), numbers
  // (a scan of the words still alive). Stable within a class.
  static int CostClass(FieldType t, Op op) {
    if (t == FieldType::kString) return (op == Op::kEq || op == Op::kIn) ? 0 : 2;
    if (t == FieldType::kBool) return 1;
    return 3;
  }

  // --- ordering

  struct Key {
    FieldId field;
    bool desc;
    std::vector<uint32_t> rank;  // strings: code -> rank of its folded form
  };

  std::vector<Key> KeysOf(const Order& order) const {
    std::vector<Key> keys;
    for (const SortKey& k : order.keys) {
      Key key{k.field, k.descending, {}};
      const Column& c = Col(k.field);
      if (c.type == FieldType::kString) {
        std::vector<uint32_t> codes(c.dict.size());
        std::iota(codes.begin(), codes.end(), 0u);
        std::sort(codes.begin(), codes.end(), [&](uint32_t a, uint32_t b) { return c.folded[a] < c.folded[b]; });
        key.rank.assign(c.dict.size(), 0);
        uint32_t r = 0;
        for (size_t i = 0; i < codes.size(); ++i) {
          if (i > 0 && c.folded[codes[i]] != c.folded[codes[i - 1]]) ++r;
          key.rank[codes[i]] = r;
        }
      }
      keys.push_back(std::move(key));
    }
    return keys;
  }

  // The key of slot s as an unsigned 128-bit number that sorts as the order
  // wants: nulls above everything (last, whichever the direction).
  U128 KeyOf(const Key& k, uint32_t s, int64_t now_ms) const {
    const Column& c = Col(k.field);
    if (!TestBit(c.nonnull, s)) return static_cast<U128>(1) << 64;
    uint64_t u;
    switch (c.type) {
      case FieldType::kBool: u = TestBit(c.bits, s) ? 1 : 0; break;
      case FieldType::kString: u = k.rank[c.code[s]]; break;
      default: {
        int64_t v = c.num[s];
        if (k.field == FieldId::kDuration) v = DurationOfKey(v, now_ms);
        u = static_cast<uint64_t>(v) ^ (uint64_t{1} << 63);
      }
    }
    if (k.desc) u = ~u;
    return u;
  }

  struct Cand {
    U128 k1;
    int64_t id;
    uint32_t slot;
  };

  // a before b in the order (keys, then id ascending).
  bool Before(const std::vector<Key>& keys, const Cand& a, const Cand& b, int64_t now_ms) const {
    if (a.k1 != b.k1) return a.k1 < b.k1;
    for (size_t i = 1; i < keys.size(); ++i) {
      U128 x = KeyOf(keys[i], a.slot, now_ms), y = KeyOf(keys[i], b.slot, now_ms);
      if (x != y) return x < y;
    }
    return a.id < b.id;
  }

  Cand MakeCand(const std::vector<Key>& keys, uint32_t s, int64_t now_ms) const {
    return Cand{keys.empty() ? 0 : KeyOf(keys[0], s, now_ms), IdOf(s), s};
  }

  static bool IsDefaultOrder(const Order& o) {
    return o.keys.size() == 1 && o.keys[0].field == FieldId::kDphTotal && !o.keys[0].descending;
  }

  // The first `limit` set slots of `match` in the order.
  // `match` has no bit outside words [lo, hi).
  std::vector<uint32_t> TopK(const Words& match, int64_t total, const Order& order, int64_t now_ms,
                             size_t limit, size_t lo = 0, size_t hi = SIZE_MAX) const {
    hi = std::min(hi, match.size());
    std::vector<uint32_t> out;
    if (limit == 0 || total == 0) return out;
    std::vector<Key> keys = KeysOf(order);
    auto before = [&](const Cand& a, const Cand& b) { return Before(keys, a, b, now_ms); };
    std::vector<Cand> cands;
    // Many matches, sorted by a field with a permutation: walk it, which
    // finds `limit` matches after about limit * n / total steps, where a
    // heap would look at every match.
    const Perm* perm = keys.empty() ? nullptr : PermFor(keys[0].field);
    const uint64_t live_count = id_slot.size();
    bool walk = perm && static_cast<U128>(limit) * live_count * 4 < static_cast<U128>(total) * static_cast<uint64_t>(total);
    if (walk) {
      // Walk the permutation in the order's direction (descending: from the
      // last value back, then the nulls). Forward with a single plain key
      // that is exactly the order: stop at `limit`. Otherwise (descending
      // walks see ties in reverse id order, more keys, or duration, whose
      // values tie across end dates) finish the k-th match's group of equal
      // first keys, then sort. A group too big for that, or matches too far
      // from the start, fall back to the heap.
      const bool plain = keys.size() == 1 && keys[0].field != FieldId::kDuration && !keys[0].desc;
      U128 kth = 0;
      bool gave_up = false;
      // Matches can cluster far from the walk's start (`num_gpus=2 -o dph-`
      // passes every 8-GPU offer first): past as many steps as the heap
      // would take, the heap is the better plan.
      // A step costs about what the heap pays per match, so past `total`
      // steps the walk has lost and at most doubled the heap's work.
      const size_t give_up_at = limit * 4 + 4096;
      const uint64_t max_steps = static_cast<uint64_t>(total);
      uint64_t steps = 0;
      const uint64_t* mw = match.data();
      const uint64_t* dw = dirty.data();
      // Most steps miss: keep that test in the loop, out of `visit`.
      auto hit = [mw, dw](uint32_t s) { return ((mw[s >> 6] & ~dw[s >> 6]) >> (s & 63)) & 1; };
      auto visit = [&](uint32_t s) {  // s matches and is clean; true: stop
        Cand c = MakeCand(keys, s, now_ms);
        if (cands.size() >= limit && (plain || c.k1 != kth)) return true;
        if (cands.size() >= give_up_at) {
          gave_up = true;
          return true;
        }
        cands.push_back(c);
        if (cands.size() == limit) kth = c.k1;
        return false;
      };
      const uint32_t* ps = perm->slots.data();
      auto step = [&](size_t k) {  // true: stop
        if (++steps > max_steps) {
          gave_up = true;
          return true;
        }
        return hit(ps[k]) && visit(ps[k]);
      };
      if (!keys[0].desc) {
        for (size_t k = 0; k < perm->slots.size(); ++k)
          if (step(k)) break;
      } else {
        bool stopped = false;
        for (size_t k = perm->nonnull; k-- > 0 && !stopped;) stopped = step(k);
        for (size_t k = perm->nonnull; k < perm->slots.size() && !stopped; ++k) stopped = step(k);
      }
      if (gave_up) {
        cands.clear();
        walk = false;
      } else {
        for (uint32_t s : dirty_list)
          if (TestBit(match, s) && TestBit(live, s)) cands.push_back(MakeCand(keys, s, now_ms));
        std::sort(cands.begin(), cands.end(), before);
        if (cands.size() > limit) cands.resize(limit);
      }
    }
    if (!walk) {
      // A bounded max-heap: the worst kept candidate on top, so most rows
      // are turned away by one 128-bit comparison.
      cands.reserve(std::min<size_t>(limit, static_cast<size_t>(total)) + 1);
      // The first key of a plain numeric field, without KeyOf's dispatch.
      const Column* fc = keys.empty() ? nullptr : &Col(keys[0].field);
      const bool fast = fc && keys[0].field != FieldId::kDuration && fc->type != FieldType::kBool &&
                        fc->type != FieldType::kString;
      const uint64_t flip = (uint64_t{1} << 63) ^ (fast && keys[0].desc ? ~uint64_t{0} : 0);
      auto fast_key = [&](uint32_t s) -> U128 {
        if (!((fc->nonnull[s >> 6] >> (s & 63)) & 1)) return static_cast<U128>(1) << 64;
        return static_cast<uint64_t>(fc->num[s]) ^ flip;
      };
      for (size_t w = lo; w < hi; ++w) {
        for (uint64_t x = match[w]; x; x &= x - 1) {
          uint32_t s = static_cast<uint32_t>(w * 64 + static_cast<size_t>(std::countr_zero(x)));
          if (cands.size() < limit) {
            cands.push_back(MakeCand(keys, s, now_ms));
            std::push_heap(cands.begin(), cands.end(), before);
            continue;
          }
          const Cand& top = cands.front();
          U128 k1 = fast ? fast_key(s) : (keys.empty() ? 0 : KeyOf(keys[0], s, now_ms));
          if (k1 > top.k1) continue;
          Cand c{k1, IdOf(s), s};
          if (!before(c, top)) continue;
          std::pop_heap(cands.begin(), cands.end(), before);
          cands.back() = c;
          std::push_heap(cands.begin(), cands.end(), before);
        }
      }
      std::sort_heap(cands.begin(), cands.end(), before);
    }
    out.reserve(cands.size());
    for (const Cand& c : cands) out.push_back(c.slot);
    return out;
  }

  // --- explain

  Explain MakeExplain(const Query& q, const Order& order, int64_t now_ms, const SearchOptions& options,
                      int64_t total) const {
    Explain ex;
    ex.offers = static_cast<int64_t>(id_slot.size());
    const size_t nw = words();
    // at_least_one / at_least_two: offers failing >= 1 / >= 2 clauses.
    Words one(nw, 0), two(nw, 0), m;
    for (size_t i = 0; i < q.clauses.size(); ++i) {
      const Clause& c = q.clauses[i];
      Eval(c, now_ms, live, m);
      int64_t fails = 0;
      for (size_t w = 0; w < nw; ++w) {
        uint64_t f = live[w] & ~m[w];
        fails += std::popcount(f);
        two[w] |= one[w] & f;
        one[w] |= f;
      }
      ex.clauses.push_back(ClauseExplain{c, i >= options.defaults_from, fails, 0});
    }
    // Offers failing exactly one clause; count them per clause (second pass).
    Words only(nw);
    for (size_t w = 0; w < nw; ++w) only[w] = one[w] & ~two[w];
    std::vector<size_t> culprits;
    for (size_t i = 0; i < q.clauses.size(); ++i) {
      Eval(q.clauses[i], now_ms, only, m);
      Words sole(nw);
      int64_t count = 0;
      for (size_t w = 0; w < nw; ++w) {
        sole[w] = only[w] & ~m[w];
        count += std::popcount(sole[w]);
      }
      ex.clauses[i].sole = count;
      if (total == 0 && count > 0) {
        std::vector<uint32_t> best = TopK(sole, count, order, now_ms, 1);
        if (!best.empty()) ex.near_misses.push_back(NearMiss{i, ReadRow(best[0], now_ms)});
        culprits.push_back(i);
      }
    }
    ex.summary = Summarize(q, order, ex, total, now_ms);
    return ex;
  }

  static std::string Describe(const OfferRow& r) {
    std::string s = "offer " + std::to_string(r.id.value_or(0)) + ": ";
    s += std::to_string(r.num_gpus.value_or(0)) + "x " + r.gpu_name.value_or("?");
    if (r.dph_total) s += " at $" + FormatMoney(*r.dph_total) + "/h";
    s += " on machine " + std::to_string(r.machine_id.value_or(0));
    return s;
  }

  std::string Summarize(const Query& q, const Order& order, const Explain& ex, int64_t total, int64_t now_ms) const {
    (void)now_ms;
    if (ex.offers == 0) return "The market has no offers.";
    if (total > 0)
      return std::to_string(total) + (total == 1 ? " offer matches" : " offers match") + " out of " +
             std::to_string(ex.offers) + ".";
    if (q.clauses.empty()) return "No offer matches.";
    std::string s = "No offer matches.";
    if (!ex.near_misses.empty()) {
      bool cheapest = IsDefaultOrder(order);
      for (const NearMiss& nm : ex.near_misses) {
        const Clause& c = ex.clauses[nm.clause].clause;
        s += " Without " + FormatClause(c) + (ex.clauses[nm.clause].is_default ? " (a default)" : "") + ", " +
             std::to_string(ex.clauses[nm.clause].sole) + (ex.clauses[nm.clause].sole == 1 ? " offer" : " offers") +
             " would match; the " + (cheapest ? "cheapest" : "first in your order") + " is " + Describe(nm.row);
        std::optional<Value> v = nm.row.Get(c.field);
        s += " (it has " + (v ? FormatClause(Clause{c.field, Op::kEq, {*v}}) : std::string(Info(c.field).name) + " null") +
             ").";
      }
      return s;
    }
    // No single clause is to blame: say where the clauses, in the order
    // written, first leave nothing.
    Words acc = live, m;
    int64_t before = ex.offers;
    for (size_t i = 0; i < q.clauses.size(); ++i) {
      AndClause(q.clauses[i], now_ms, acc, m);
      int64_t left = PopCount(acc);
      if (left == 0) {
        s += " No single clause is to blame: relaxing any one still leaves none. In the order written, " +
             std::to_string(before) + (before == 1 ? " offer satisfies" : " offers satisfy") + " the clauses before " +
             FormatClause(q.clauses[i]) + (ex.clauses[i].is_default ? " (a default)" : "") + ", which excludes " +
             (before == 1 ? "it." : "them all.");
        return s;
      }
      before = left;
    }
    return s;
  }
};

OfferIndex::OfferIndex() : impl_(std::make_unique<Impl>()) {}
OfferIndex::~OfferIndex() = default;
OfferIndex::OfferIndex(OfferIndex&&) noexcept = default;
OfferIndex& OfferIndex::operator=(OfferIndex&&) noexcept = default;

void OfferIndex::Build(std::vector<OfferRow> rows) {
  impl_ = std::make_unique<Impl>();
  Impl& m = *impl_;
  // Cluster: rows of one GPU model and count sit together, so the common
  // clauses select runs of whole words. A counting sort by (model, count)
  // keeps each bucket in input order, so reading the rows stays sequential
  // and the writes go to a few hundred sequential streams.
  std::unordered_map<std::string, uint32_t> gpu_codes;
  std::vector<std::string> gpu_names;
  std::vector<uint64_t> bucket_of(rows.size());
  std::string last;
  uint32_t last_code = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const OfferRow& r = rows[i];
    const std::string& name = r.gpu_name ? *r.gpu_name : last;
    if (i == 0 || !r.gpu_name || name != last) {
      std::string folded = FoldAscii(r.gpu_name.value_or(""));
      auto [it, added] = gpu_codes.emplace(folded, static_cast<uint32_t>(gpu_codes.size()));
      if (added) gpu_names.push_back(folded);
      last_code = it->second;
      last = r.gpu_name.value_or("");
    }
    uint64_t gpus = static_cast<uint64_t>(std::clamp<int64_t>(r.num_gpus.value_or(0), 0, 0xFFFF));
    bucket_of[i] = uint64_t{last_code} << 16 | gpus;
  }
  // Buckets in (model name, count) order.
  std::vector<uint32_t> rank(gpu_names.size());
  {
    std::vector<uint32_t> by_name(gpu_names.size());
    std::iota(by_name.begin(), by_name.end(), 0u);
    std::sort(by_name.begin(), by_name.end(), [&](uint32_t a, uint32_t b) { return gpu_names[a] < gpu_names[b]; });
    for (uint32_t i = 0; i < by_name.size(); ++i) rank[by_name[i]] = i;
  }
  // Counts per (model rank, GPU count), then each bucket's first slot.
  constexpr uint64_t kCounts = 1024;  // GPU counts above share the last bucket
  std::vector<uint32_t> start(rank.size() * kCounts + 1, 0);
  for (uint64_t& b : bucket_of) {
    b = uint64_t{rank[b >> 16]} * kCounts + std::min<uint64_t>(b & 0xFFFF, kCounts - 1);
    ++start[b];
  }
  uint32_t next = 0;
  for (uint32_t& count : start) {
    uint32_t c = count;
    count = next;
    next += c;
  }
  const size_t nw = WordsFor(rows.size());
  m.live.assign(nw, 0);
  m.dirty.assign(nw, 0);
  for (auto& c : m.cols) {
    c.nonnull.assign(nw, 0);
    if (c.type == FieldType::kBool) c.bits.assign(nw, 0);
    if (c.type == FieldType::kString) c.code.assign(rows.size(), 0);
    else if (c.type != FieldType::kBool) c.num.assign(rows.size(), 0);
  }
  m.n = rows.size();
  m.id_slot.Reserve(rows.size());
  m.machine_slots.reserve(rows.size() / 2);
  int64_t last_machine = 0;
  std::vector<uint32_t>* machine_list = nullptr;
  for (size_t i = 0; i < rows.size(); ++i) {
    const OfferRow& r = rows[i];
    uint32_t s = start[bucket_of[i]]++;
    m.WriteRow(s, r, /*later=*/true);
    m.id_slot.Put(r.id.value_or(0), s);
    // A machine's rows usually come together: one map lookup per machine.
    int64_t machine = r.machine_id.value_or(0);
    if (machine != last_machine || !machine_list) {
      machine_list = &m.machine_slots[machine];
      last_machine = machine;
    }
    machine_list->push_back(s);
  }
  m.BuildPostings();
  m.SortPerms();
}

void OfferIndex::SetMachine(int64_t machine_id, std::span<const OfferRow> rows) {
  Impl& m = *impl_;
  std::vector<uint32_t>& slots = m.machine_slots[machine_id];
  // Reuse the machine's slots in place; free the extra ones, take new ones.
  for (uint32_t s : slots) m.id_slot.Erase(m.IdOf(s));
  while (slots.size() > rows.size()) {
    uint32_t s = slots.back();
    slots.pop_back();
    m.MarkDirty(s, m.SortValuesOf(s));  // its place in the permutations goes stale
    m.ClearSlot(s);
    m.free_slots.push_back(s);
  }
  while (slots.size() < rows.size()) slots.push_back(m.NewSlot());
  // A slot whose id or any sorted field changes leaves its place in the
  // permutations: mark it dirty.
  for (size_t i = 0; i < rows.size(); ++i) {
    uint32_t s = slots[i];
    bool was_live = TestBit(m.live, s);
    Impl::SortValues before = m.SortValuesOf(s);
    m.WriteRow(s, rows[i], false);
    m.id_slot.Put(rows[i].id.value_or(0), s);
    if (!was_live || before != m.SortValuesOf(s)) m.MarkDirty(s, before);
  }
  m.MaybeSortPerms();
  if (slots.empty()) m.machine_slots.erase(machine_id);
}

void OfferIndex::RemoveMachine(int64_t machine_id) { SetMachine(machine_id, {}); }

std::optional<OfferRow> OfferIndex::Get(int64_t offer_id, int64_t now_ms) const {
  std::optional<uint32_t> s = impl_->id_slot.Find(offer_id);
  if (!s) return std::nullopt;
  return impl_->ReadRow(*s, now_ms);
}

size_t OfferIndex::size() const { return impl_->id_slot.size(); }

size_t OfferIndex::MemoryBytes() const {
  const Impl& m = *impl_;
  auto words = [](const Words& w) { return w.capacity() * 8; };
  size_t b = sizeof(Impl) + m.cols.capacity() * sizeof(Impl::Column);
  for (const auto& c : m.cols) {
    b += c.num.capacity() * 8 + words(c.nonnull) + words(c.bits) + c.code.capacity() * 4;
    for (const auto& p : c.postings) b += p.capacity() * 4 + sizeof(p);
    for (const auto& s : c.dict) b += s.capacity() + sizeof(s);
    for (const auto& s : c.folded) b += s.capacity() + sizeof(s);
    // Hash nodes: key, value and two pointers each, plus the bucket array.
    b += c.by_folded.size() * (sizeof(std::string) + 24 + 16) + c.by_folded.bucket_count() * 8;
    b += c.by_exact.size() * (sizeof(std::string) + 4 + 16) + c.by_exact.bucket_count() * 8;
  }
  b += words(m.live) + words(m.dirty) + m.free_slots.capacity() * 4 + m.id_slot.Bytes();
  for (const auto& p : m.perms) b += p.slots.capacity() * 4;
  b += m.dirty_list.capacity() * 4;
  b += m.machine_slots.bucket_count() * 8;
  for (const auto& [id, v] : m.machine_slots) b += 8 + sizeof(v) + 16 + v.capacity() * 4;
  return b;
}

Status OfferIndex::Check() const {
  const Impl& m = *impl_;
  if (static_cast<size_t>(PopCount(m.live)) != m.id_slot.size())
    return Internal("index: live slots and ids disagree");
  size_t in_machines = 0;
  for (const auto& [id, slots] : m.machine_slots) {
    for (uint32_t s : slots) {
      if (!TestBit(m.live, s)) return Internal("index: a machine's slot is not live");
      if (m.Col(FieldId::kMachineId).num[s] != id) return Internal("index: a slot is filed under the wrong machine");
      auto found = m.id_slot.Find(m.IdOf(s));
      if (!found || *found != s) return Internal("index: id map out of step");
    }
    in_machines += slots.size();
  }
  if (in_machines != m.id_slot.size()) return Internal("index: machines and ids disagree");
  for (const auto& c : m.cols) {
    if (c.type != FieldType::kString) continue;
    for (uint32_t code = 1; code < c.postings.size(); ++code) {
      const auto& p = c.postings[code];
      if (!std::is_sorted(p.begin(), p.end())) return Internal("index: a posting list is unsorted");
      for (uint32_t s : p)
        if (c.code[s] != code) return Internal("index: a posting list is out of step");
    }
  }
  return Status::Ok();
}

SearchResult OfferIndex::Search(const Query& q, const Order& order, int64_t now_ms,
                                const SearchOptions& options) const {
  const Impl& m = *impl_;
  SearchResult result;
  const size_t nw = m.words();
  // The bitmaps live per thread and keep their capacity from one search to
  // the next: a fresh pair per search was a malloc (and a glibc
  // malloc_consolidate) per query. Search stays const and thread-safe, and
  // nothing under it calls Search again, so one pair per thread suffices.
  thread_local Words tl_match, tl_scratch;
  Words& match = tl_match;
  Words& scratch = tl_scratch;
  match.assign(m.live.begin(), m.live.end());
  // The plan: clauses whose matches can be counted cheaply (string values
  // through their slot lists, ranges of a sorted field through its
  // permutation) first, fewest matches first, each built from its matches
  // alone; then booleans (a word op), then scans of the surviving words.
  struct Step {
    size_t clause;
    int cls;                     // 0 counted, 1 boolean, 2 other string, 3 scan
    uint64_t count = 0;          // cls 0: the matches (an upper bound)
    size_t perm = Impl::kPermCount;  // < kPermCount: through this permutation
    std::vector<Range> ranges;
  };
  const uint64_t live_count = m.id_slot.size();
  std::vector<Step> plan;
  for (size_t i = 0; i < q.clauses.size(); ++i) {
    const Clause& c = q.clauses[i];
    const Impl::Column& col = m.Col(c.field);
    Step st{i, 3};
    if (col.type == FieldType::kBool) {
      st.cls = 1;
    } else if (col.type == FieldType::kString) {
      st.cls = Impl::CostClass(col.type, c.op) == 0 ? 0 : 2;
      if (st.cls == 0) st.count = m.StringCount(c);
    } else if (size_t f = m.PermIndex(c.field); f < Impl::kPermCount) {
      st.ranges = RangesOf(c);
      if (c.field == FieldId::kDuration) st.ranges = DurationRangesToKeys(st.ranges, now_ms);
      uint64_t count = m.dirty_list.size();
      for (const Range& r : st.ranges) {
        auto [a, b] = m.PermSpan(f, r);
        count += b - a;
      }
      // A permutation pays per match; a scan about 1/16 of a slot each.
      if (count * 16 < live_count) {
        st.cls = 0;
        st.count = count;
        st.perm = f;
      }
    }
    plan.push_back(std::move(st));
  }
  std::stable_sort(plan.begin(), plan.end(), [](const Step& a, const Step& b) {
    if (a.cls != b.cls) return a.cls < b.cls;
    return a.cls == 0 && a.count < b.count;
  });
  // [lo, hi): the words that can still hold a match. The clustered layout
  // makes the first clauses (a GPU model) shrink it a lot.
  size_t lo = 0, hi = nw;
  for (const Step& st : plan) {
    if (lo >= hi) break;
    if (st.perm < Impl::kPermCount) m.AndPermRanges(st.perm, st.ranges, match, scratch, lo, hi);
    else m.AndClause(q.clauses[st.clause], now_ms, match, scratch, lo, hi);
    while (lo < hi && match[lo] == 0) ++lo;
    while (hi > lo && match[hi - 1] == 0) --hi;
  }
  const bool any = lo < hi;
  result.total = any ? PopCount(match, lo, hi) : 0;
  size_t limit = static_cast<size_t>(std::clamp(options.limit, 0, kMaxLimit));
  result.offers = m.ReadRows(m.TopK(match, result.total, order, now_ms, limit, lo, hi), now_ms);
  if (options.explain) result.explain = m.MakeExplain(q, order, now_ms, options, result.total);
  return result;
}

}  // namespace grid::query
