#include "query/testing/query_gen.h"

#include <algorithm>
#include <array>

namespace grid::query_testing {
namespace {

using query::FieldId;
using query::FieldType;
using query::OfferRow;
using query::Op;
using query::Value;

constexpr int64_t kM = 1'000'000;

char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The same word in a random case: as is, upper, lower or mixed.
std::string RandomCase(Rng& rng, std::string_view s) {
  std::string out(s);
  switch (rng.Uniform(0, 5)) {
    case 0: for (char& c : out) c = Upper(c); break;
    case 1: for (char& c : out) c = Lower(c); break;
    case 2: for (char& c : out) c = rng.Chance(0.5) ? Upper(c) : Lower(c); break;
    default: break;  // as is, most of the time
  }
  return out;
}

// Millionths as a decimal the parser takes: "2", "2.5", "2.500", ".5",
// "-0.25", "-.25".
std::string NumberText(Rng& rng, int64_t v) {
  bool neg = v < 0;
  uint64_t a = neg ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
  uint64_t whole = a / kM, frac = a % kM;
  std::string out = neg ? "-" : "";
  if (whole == 0 && frac != 0 && rng.Chance(0.3)) {
    // ".5": no leading zero
  } else {
    out += std::to_string(whole);
  }
  std::string f = std::to_string(frac);
  f.insert(0, 6 - f.size(), '0');
  size_t keep = 6;
  while (keep > 0 && f[keep - 1] == '0') --keep;
  if (keep > 0 || rng.Chance(0.1)) {
    // Sometimes a few trailing zeros ("2.50"), always at least one digit.
    size_t extra = static_cast<size_t>(rng.Uniform(0, 6 - static_cast<int64_t>(keep)));
    if (keep + extra == 0) extra = 1;
    if (rng.Chance(0.7)) extra = keep == 0 ? 1 : 0;
    out += '.';
    out.append(f, 0, keep + extra);
  }
  return out;
}

bool PlainForBare(const std::string& s) {
  if (s.empty()) return false;
  std::string low;
  for (char c : s) low += Lower(c);
  if (low == "any" || low == "true" || low == "false") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '.' ||
           c == '-';
  });
}

// A string value as typed: bare with `_` for spaces when that reads back the
// same, else quoted with escapes.
std::string StringText(Rng& rng, const std::string& s) {
  if (PlainForBare(s) && rng.Chance(0.85)) {
    std::string out = s;
    std::replace(out.begin(), out.end(), ' ', '_');
    return out;
  }
  char q = rng.Chance(0.7) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') out += '\\';
    out += c;
  }
  out += q;
  return out;
}

std::string ValueText(Rng& rng, FieldType type, const Value& v) {
  switch (type) {
    case FieldType::kInt: return std::to_string(std::get<int64_t>(v));
    case FieldType::kNumber:
    case FieldType::kMoney: return NumberText(rng, std::get<int64_t>(v));
    case FieldType::kBool: return RandomCase(rng, std::get<bool>(v) ? "true" : "false");
    case FieldType::kString: return StringText(rng, std::get<std::string>(v));
  }
  return "";
}

// The smallest step a field's values move by, for "just above / below".
int64_t Step(Rng& rng, FieldType type) {
  if (type == FieldType::kInt) return 1;
  static constexpr int64_t kSteps[] = {1, 100, 1000, 100'000, kM};
  return kSteps[rng.Uniform(0, 4)];
}

int64_t Clamp(Int128 v) {
  if (v > INT64_MAX) return INT64_MAX;
  if (v < INT64_MIN + 1) return INT64_MIN + 1;  // keep negation safe
  return static_cast<int64_t>(v);
}

// A value for a clause on `field`: from a row, near one, or made up.
Value RandomValue(Rng& rng, FieldId field, std::span<const OfferRow> rows) {
  const FieldType type = query::Info(field).type;
  std::optional<Value> seen;
  for (int i = 0; i < 4 && !seen && !rows.empty(); ++i) {
    seen = rows[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(rows.size()) - 1))].Get(field);
  }
  if (type == FieldType::kBool) return Value(seen && rng.Chance(0.8) ? std::get<bool>(*seen) : rng.Chance(0.5));
  if (type == FieldType::kString) {
    double u = rng.UnitDouble();
    if (seen && u < 0.75) {
      return Value(rng.Chance(0.3) ? RandomCase(rng, std::get<std::string>(*seen)) : std::get<std::string>(*seen));
    }
    if (u < 0.85) {
      auto names = GpuModelNames();
      return Value(std::string(names[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(names.size()) - 1))]));
    }
    if (u < 0.93) {
      auto codes = CountryCodes();
      return Value(RandomCase(rng, codes[static_cast<size_t>(rng.Uniform(0, static_cast<int64_t>(codes.size()) - 1))]));
    }
    static constexpr std::string_view kMadeUp[] = {"GTX 1080", "", "XX", "nvidia", "550.127.05", "any",
                                                   "GTX_1080 Ti", "Quadro \"P6000\"", "Tesla K80\\2"};
    return Value(std::string(kMadeUp[rng.Uniform(0, 8)]));
  }
  // Numbers (millionths or whole).
  double u = rng.UnitDouble();
  if (seen && std::get<int64_t>(*seen) == query::kUnlimitedDuration) {
    // A duration without end date: compare with days, as people do.
    seen = Value(rng.Uniform(0, 200) * kM);
  }
  if (seen && u < 0.6) return *seen;
  if (seen && u < 0.8) {
    int64_t s = Step(rng, type) * (rng.Chance(0.5) ? 1 : -1);
    return Value(Clamp(static_cast<Int128>(std::get<int64_t>(*seen)) + s));
  }
  if (seen && u < 0.93) {
    // Somewhere in the same range: ×0.1 to ×3.
    Int128 v = static_cast<Int128>(std::get<int64_t>(*seen)) * rng.Uniform(1, 30) / 10;
    if (type != FieldType::kInt) v = v / 1000 * 1000;
    return Value(Clamp(v));
  }
  static constexpr int64_t kEdges[] = {0, -1, 1, kM, -kM, 500'000, 8, 100 * kM, INT64_MAX, 9'999'999'999'999};
  int64_t e = kEdges[rng.Uniform(0, 9)];
  if (type == FieldType::kInt && e == INT64_MAX) e = INT64_MAX;  // whole numbers take it as is
  return Value(e);
}

struct OpSpelling {
  Op op;
  std::string_view symbol;  // "" when none
  std::string_view word;
};
constexpr OpSpelling kOps[] = {
    {Op::kEq, "=", "eq"},  {Op::kNe, "!=", "neq"}, {Op::kLt, "<", "lt"},     {Op::kLe, "<=", "lte"},
    {Op::kGt, ">", "gt"},  {Op::kGe, ">=", "gte"}, {Op::kIn, "", "in"},      {Op::kNotIn, "", "notin"},
};

std::string FieldText(Rng& rng, FieldId field) {
  switch (field) {
    case FieldId::kDphTotal:
      if (rng.Chance(0.6)) return RandomCase(rng, "dph");
      break;
    case FieldId::kDlperfPerDphtotal:
      if (rng.Chance(0.5)) return RandomCase(rng, "dlperf_usd");
      break;
    case FieldId::kFlopsPerDphtotal:
      if (rng.Chance(0.5)) return RandomCase(rng, "flops_usd");
      break;
    default: break;
  }
  return RandomCase(rng, query::Info(field).name);
}

constexpr FieldId kCommon[] = {
    FieldId::kGpuName,    FieldId::kNumGpus,     FieldId::kDphTotal,   FieldId::kReliability,
    FieldId::kGeolocation, FieldId::kGpuRam,     FieldId::kVerified,   FieldId::kRentable,
    FieldId::kRented,     FieldId::kDatacenter,  FieldId::kDuration,   FieldId::kComputeCap,
    FieldId::kCudaVers,   FieldId::kDlperfPerDphtotal, FieldId::kGpuTotalRam, FieldId::kInetDown,
};

FieldId RandomField(Rng& rng) {
  if (rng.Chance(0.4)) return kCommon[rng.Uniform(0, std::size(kCommon) - 1)];
  return static_cast<FieldId>(rng.Uniform(0, query::kFieldCount - 1));
}

std::string ClauseText(Rng& rng, std::span<const OfferRow> rows) {
  const FieldId field = RandomField(rng);
  const FieldType type = query::Info(field).type;
  const bool ordered_ok = type != FieldType::kString && type != FieldType::kBool;
  std::string out = FieldText(rng, field);

  if (rng.Chance(0.04)) {  // any / *: no constraint
    out += rng.Chance(0.5) ? "=" : " = ";
    out += rng.Chance(0.5) ? RandomCase(rng, "any") : "*";
    return out;
  }

  Op op;
  do {
    // in / notin a bit more often than uniform: lists are where bugs hide.
    op = rng.Chance(0.3) ? (rng.Chance(0.5) ? Op::kIn : Op::kNotIn) : kOps[rng.Uniform(0, 7)].op;
  } while (!ordered_ok && (op == Op::kLt || op == Op::kLe || op == Op::kGt || op == Op::kGe));
  const OpSpelling& sp = kOps[static_cast<int>(op)];

  if (op == Op::kIn || op == Op::kNotIn) {
    out += ' ';
    out += RandomCase(rng, sp.word);
    int n = static_cast<int>(rng.Uniform(0, 4));
    if (n == 1 && rng.Chance(0.2)) {  // `in x`: one value, no brackets
      return out + " " + ValueText(rng, type, RandomValue(rng, field, rows));
    }
    out += rng.Chance(0.5) ? " [" : "[";
    for (int i = 0; i < n; ++i) {
      if (i) out += rng.Chance(0.5) ? "," : " , ";
      out += ValueText(rng, type, RandomValue(rng, field, rows));
    }
    return out + (rng.Chance(0.3) ? " ]" : "]");
  }
  if (rng.Chance(0.25)) {
    out += ' ';
    out += RandomCase(rng, sp.word);
    out += ' ';
  } else {
    std::string sym(sp.symbol);
    if (op == Op::kEq && rng.Chance(0.3)) sym = "==";
    out += (rng.Chance(0.3) ? " " : "") + sym + (rng.Chance(0.3) ? " " : "");
  }
  return out + ValueText(rng, type, RandomValue(rng, field, rows));
}

std::string OrderText(Rng& rng) {
  if (rng.Chance(0.25)) return rng.Chance(0.8) ? "" : " ";
  int keys = static_cast<int>(rng.Uniform(1, 3));
  std::string out;
  for (int i = 0; i < keys; ++i) {
    if (i) out += rng.Chance(0.8) ? "," : " , ";
    // Fields with few values (counts, booleans, countries) make ties, so
    // the later keys and the id tie-break decide.
    FieldId f = rng.Chance(0.5) ? kCommon[rng.Uniform(0, std::size(kCommon) - 1)] : RandomField(rng);
    out += FieldText(rng, f);
    double u = rng.UnitDouble();
    if (u < 0.4) out += "-";
    else if (u < 0.5) out += "+";
  }
  return out;
}

}  // namespace

std::string RandomSearch::Describe() const {
  return "q='" + query + "' order='" + order + "' limit=" + std::to_string(limit) +
         (with_defaults ? (dev ? " defaults=dev" : " defaults=on") : " defaults=off");
}

RandomSearch MakeRandomSearch(Rng& rng, std::span<const OfferRow> rows) {
  RandomSearch s;
  static constexpr double kClauseWeights[] = {8, 28, 30, 18, 9, 5, 2};
  size_t clauses = rng.Weighted(kClauseWeights);
  for (size_t i = 0; i < clauses; ++i) {
    if (i) s.query += rng.Chance(0.9) ? " " : "  \t";
    s.query += ClauseText(rng, rows);
  }
  if (rng.Chance(0.1)) s.query = " " + s.query + " ";
  s.order = OrderText(rng);
  static constexpr int64_t kLimits[] = {0, 1, 2, 5, 10, 64, 64, 64, 100, 1000, 10'000};
  s.limit = kLimits[rng.Uniform(0, std::size(kLimits) - 1)];
  s.with_defaults = rng.Chance(0.4);
  s.dev = s.with_defaults && rng.Chance(0.3);
  return s;
}

Result<ParsedSearch> ParseSearch(const RandomSearch& s) {
  ParsedSearch p;
  GRID_ASSIGN_OR_RETURN(p.query, query::Parse(s.query));
  if (s.with_defaults) p.query = query::WithDefaults(std::move(p.query), {.no_default = false, .dev = s.dev});
  GRID_ASSIGN_OR_RETURN(p.order, query::ParseOrder(s.order));
  p.limit = s.limit;
  return p;
}

}  // namespace grid::query_testing
