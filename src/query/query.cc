#include "query/query.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>

namespace grid::query {
namespace {

constexpr std::array<FieldInfo, kFieldCount> kFields = {{
#define GRID_QUERY_INFO(e, n, t) {FieldId::e, #n, FieldType::t},
    GRID_QUERY_FIELDS(GRID_QUERY_INFO)
#undef GRID_QUERY_INFO
}};

struct Alias {
  std::string_view name;
  FieldId id;
};
constexpr Alias kAliases[] = {
    {"dph", FieldId::kDphTotal},
    {"dlperf_usd", FieldId::kDlperfPerDphtotal},
    {"flops_usd", FieldId::kFlopsPerDphtotal},
};

// Messages quote user text; keep them one short printable line whatever the
// input was.
constexpr size_t kMaxQuoted = 60;

std::string Printable(std::string_view s) {
  std::string out;
  size_t n = std::min(s.size(), kMaxQuoted);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > n) out += "...";
  return out;
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualFold(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

// <0, 0, >0 as a is below, equal to or above b, ignoring ASCII case.
int CompareFold(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = static_cast<unsigned char>(Lower(a[i]));
    unsigned char y = static_cast<unsigned char>(Lower(b[i]));
    if (x != y) return x < y ? -1 : 1;
  }
  return a.size() == b.size() ? 0 : (a.size() < b.size() ? -1 : 1);
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsAlpha(c) || IsDigit(c) || c == '_'; }

// Optimal string alignment distance (edits plus adjacent transpositions), so
// `gpu_nmae` is one step from `gpu_name`, like a typo is. Three rolling rows:
// names are short, and this runs on every unknown name a client sends.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && Lower(a[i - 1]) == Lower(b[j - 2]) && Lower(a[i - 2]) == Lower(b[j - 1])) {
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
      }
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// "gpu_nme: unknown field; did you mean gpu_name? (column 3)". A suggestion
// is offered only when it is plausibly a typo of the name: at most
// max(2, len/3) edits away.
Status UnknownField(std::string_view name, size_t column) {
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  std::string_view best;
  size_t best_d = limit + 1;
  auto consider = [&](std::string_view candidate) {
    // The length difference bounds the distance from below: skip cheaply,
    // which also keeps a long garbage name from costing much.
    size_t gap = name.size() > candidate.size() ? name.size() - candidate.size() : candidate.size() - name.size();
    if (gap >= best_d) return;
    size_t d = EditDistance(name, candidate);
    if (d < best_d) {
      best_d = d;
      best = candidate;
    }
  };
  for (const FieldInfo& f : kFields) consider(f.name);
  for (const Alias& a : kAliases) consider(a.name);
  std::string m = Printable(name) + ": unknown field";
  if (!best.empty()) m += "; did you mean " + std::string(best) + "?";
  m += " (column " + std::to_string(column) + ")";
  return InvalidArgument(std::move(m));
}

// Numbers in millionths: digits[.digits] with an optional '-', at most six
// decimals. A leading '.' (".98") is accepted since users write it so.
std::optional<int64_t> ParseMillionths(std::string_view text) {
  std::string s(text);
  if (!s.empty() && s[0] == '.') s.insert(0, "0");
  if (s.size() >= 2 && s[0] == '-' && s[1] == '.') s.insert(1, "0");
  auto r = ParseMoney(s, "value", /*allow_negative=*/true);
  if (!r.ok()) return std::nullopt;
  return *r;
}

std::string FormatMillionths(int64_t v) {
  std::string s = FormatMoney(v);  // always six decimals
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// A raw value as it appeared: its text (unescaped if quoted) and where.
struct RawValue {
  std::string text;
  bool quoted = false;
};

class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in) {}

  Result<Query> Run() {
    Query q;
    while (true) {
      SkipSpace();
      if (AtEnd()) break;
      GRID_RETURN_IF_ERROR(ParseClause(&q));
    }
    return q;
  }

 private:
  bool AtEnd() const { return pos_ >= in_.size(); }
  char Peek() const { return AtEnd() ? '\0' : in_[pos_]; }
  void SkipSpace() {
    while (!AtEnd() && IsSpace(in_[pos_])) ++pos_;
  }

  // "<clause text> (column N): message". The clause text runs from the
  // clause's start to the first whitespace at or after `end`.
  Status ClauseError(size_t end, const std::string& message) const {
    end = std::max(end, clause_start_);
    while (end < in_.size() && !IsSpace(in_[end])) ++end;
    std::string_view clause = in_.substr(clause_start_, end - clause_start_);
    return InvalidArgument(Printable(clause) + " (column " + std::to_string(clause_start_ + 1) + "): " +
                           message);
  }

  Status ParseClause(Query* q) {
    clause_start_ = pos_;
    if (!IsAlpha(Peek()) && Peek() != '_') {
      return ClauseError(pos_, "expected a field name");
    }
    size_t name_start = pos_;
    while (!AtEnd() && IsNameChar(in_[pos_])) ++pos_;
    field_text_ = in_.substr(name_start, pos_ - name_start);
    std::optional<FieldId> field = LookupField(field_text_);
    if (!field) return UnknownField(field_text_, name_start + 1);
    const FieldInfo& info = Info(*field);
    const std::string name(field_text_);

    SkipSpace();
    Op op = Op::kEq;
    GRID_RETURN_IF_ERROR(ParseOp(&op));
    SkipSpace();
    if (AtEnd()) return ClauseError(pos_, "expected a value after " + std::string(OpName(op)));

    Clause c{*field, op, {}};
    if (Peek() == '[') {
      if (op != Op::kIn && op != Op::kNotIn) {
        return ClauseError(pos_, name + " " + std::string(OpName(op)) +
                                     " takes one value; use in or notin for a list");
      }
      ++pos_;
      SkipSpace();
      if (Peek() == ']') {
        ++pos_;
      } else {
        while (true) {
          SkipSpace();
          size_t item_end;
          RawValue raw;
          GRID_RETURN_IF_ERROR(ReadListItem(&raw, &item_end));
          Value v;
          GRID_RETURN_IF_ERROR(Convert(info, name, raw, item_end, &v));
          c.values.push_back(std::move(v));
          SkipSpace();
          if (Peek() == ',') {
            ++pos_;
            continue;
          }
          if (Peek() == ']') {
            ++pos_;
            break;
          }
          return ClauseError(pos_, AtEnd() ? "unterminated list: expected ]"
                                           : "expected , or ] in the list, got \"" +
                                                 Printable(in_.substr(pos_, 1)) + "\"");
        }
      }
      if (!AtEnd() && !IsSpace(Peek())) {
        return ClauseError(pos_, "expected a space after the list");
      }
      q->clauses.push_back(std::move(c));
      return Status::Ok();
    }

    RawValue raw;
    GRID_RETURN_IF_ERROR(ReadScalar(&raw));
    if (!raw.quoted && (EqualFold(raw.text, "any") || raw.text == "*")) {
      if (std::find(q->any_fields.begin(), q->any_fields.end(), *field) == q->any_fields.end()) {
        q->any_fields.push_back(*field);
      }
      return Status::Ok();
    }
    Value v;
    GRID_RETURN_IF_ERROR(Convert(info, name, raw, pos_, &v));
    // `in x` is `in [x]`: lenient, and the meaning is plain.
    c.values.push_back(std::move(v));
    q->clauses.push_back(std::move(c));
    return Status::Ok();
  }

  Status ParseOp(Op* op) {
    if (AtEnd()) return ClauseError(pos_, "expected an operator after " + std::string(field_text_));
    size_t start = pos_;
    char c = Peek();
    auto next_is = [&](char want) { return pos_ + 1 < in_.size() && in_[pos_ + 1] == want; };
    if (c == '=') {
      pos_ += next_is('=') ? 2 : 1;
      *op = Op::kEq;
    } else if (c == '!' && next_is('=')) {
      pos_ += 2;
      *op = Op::kNe;
    } else if (c == '<') {
      *op = next_is('=') ? Op::kLe : Op::kLt;
      pos_ += next_is('=') ? 2 : 1;
    } else if (c == '>') {
      *op = next_is('=') ? Op::kGe : Op::kGt;
      pos_ += next_is('=') ? 2 : 1;
    } else if (IsAlpha(c)) {
      while (!AtEnd() && IsAlpha(in_[pos_])) ++pos_;
      std::string_view word = in_.substr(start, pos_ - start);
      static constexpr std::pair<std::string_view, Op> kWords[] = {
          {"in", Op::kIn}, {"notin", Op::kNotIn}, {"eq", Op::kEq}, {"neq", Op::kNe},
          {"gt", Op::kGt}, {"gte", Op::kGe},     {"lt", Op::kLt}, {"lte", Op::kLe},
      };
      bool found = false;
      for (const auto& [w, o] : kWords) {
        if (EqualFold(word, w)) {
          *op = o;
          found = true;
        }
      }
      // A word operator ends at a space, a list or a quote: `gte4` is a typo.
      char after = Peek();
      if (!found || !(AtEnd() || IsSpace(after) || after == '[' || after == '"' || after == '\'')) {
        return BadOp(start);
      }
    } else {
      return BadOp(start);
    }
    const FieldInfo& info = Info(*LookupField(field_text_));
    bool ordered = *op == Op::kLt || *op == Op::kLe || *op == Op::kGt || *op == Op::kGe;
    if (ordered && (info.type == FieldType::kString || info.type == FieldType::kBool)) {
      return ClauseError(pos_, std::string(field_text_) + " takes = != in notin, not " +
                                   std::string(OpName(*op)));
    }
    return Status::Ok();
  }

  Status BadOp(size_t start) {
    size_t end = start;
    while (end < in_.size() && !IsSpace(in_[end])) ++end;
    std::string_view got = in_.substr(start, end - start);
    return ClauseError(end, "bad operator \"" + Printable(got) +
                                "\"; expected one of = == != < <= > >= in notin eq neq gt gte lt lte");
  }

  // A quoted string: the opening quote at pos_. Backslash escapes the next
  // character, whatever it is.
  Status ReadQuoted(RawValue* raw) {
    char quote = in_[pos_++];
    raw->quoted = true;
    while (true) {
      if (AtEnd()) return ClauseError(pos_, "unterminated string: expected " + std::string(1, quote));
      char c = in_[pos_++];
      if (c == quote) return Status::Ok();
      if (c == '\\') {
        if (AtEnd()) return ClauseError(pos_, "unterminated string: expected " + std::string(1, quote));
        c = in_[pos_++];
      }
      raw->text += c;
    }
  }

  Status ReadScalar(RawValue* raw) {
    if (Peek() == '"' || Peek() == '\'') {
      GRID_RETURN_IF_ERROR(ReadQuoted(raw));
      if (!AtEnd() && !IsSpace(Peek())) return ClauseError(pos_, "expected a space after the string");
      return Status::Ok();
    }
    size_t start = pos_;
    while (!AtEnd() && !IsSpace(in_[pos_])) ++pos_;
    raw->text = in_.substr(start, pos_ - start);
    return Status::Ok();
  }

  // A list item runs to the next , or ]; spaces inside are kept (there is no
  // ambiguity between brackets), spaces around it are not.
  Status ReadListItem(RawValue* raw, size_t* end) {
    if (Peek() == '"' || Peek() == '\'') {
      GRID_RETURN_IF_ERROR(ReadQuoted(raw));
      *end = pos_;
      return Status::Ok();
    }
    size_t start = pos_;
    while (!AtEnd() && in_[pos_] != ',' && in_[pos_] != ']') ++pos_;
    size_t stop = pos_;
    while (stop > start && IsSpace(in_[stop - 1])) --stop;
    raw->text = in_.substr(start, stop - start);
    *end = stop;
    if (raw->text.empty()) {
      return ClauseError(pos_, AtEnd() ? "unterminated list: expected ]" : "empty item in the list");
    }
    return Status::Ok();
  }

  // Turns a raw value into the field's type. `end` is where the value ends,
  // for the clause text in an error.
  Status Convert(const FieldInfo& info, const std::string& name, const RawValue& raw, size_t end,
                 Value* out) const {
    const std::string got = " got \"" + Printable(raw.text) + "\"";
    switch (info.type) {
      case FieldType::kInt: {
        int64_t v = 0;
        const char* b = raw.text.data();
        const char* e = b + raw.text.size();
        auto [p, ec] = std::from_chars(b, e, v);
        if (ec == std::errc() && p == e) {
          *out = v;
          return Status::Ok();
        }
        if (ec == std::errc::result_out_of_range) return ClauseError(end, name + " is out of range," + got);
        if (ParseMillionths(raw.text)) return ClauseError(end, name + " takes a whole number," + got);
        return ClauseError(end, name + " takes a number," + got);
      }
      case FieldType::kNumber:
      case FieldType::kMoney: {
        std::optional<int64_t> v = ParseMillionths(raw.text);
        if (!v) {
          const char* what = info.type == FieldType::kMoney ? " takes an amount in USD" : " takes a number";
          return ClauseError(end, name + what + " (at most 6 decimals)," + got);
        }
        *out = *v;
        return Status::Ok();
      }
      case FieldType::kBool:
        if (EqualFold(raw.text, "true")) {
          *out = true;
        } else if (EqualFold(raw.text, "false")) {
          *out = false;
        } else {
          return ClauseError(end, name + " takes true or false," + got);
        }
        return Status::Ok();
      case FieldType::kString: {
        std::string s = raw.text;
        if (!raw.quoted) std::replace(s.begin(), s.end(), '_', ' ');
        *out = std::move(s);
        return Status::Ok();
      }
    }
    return Internal("unknown field type");
  }

  std::string_view in_;
  size_t pos_ = 0;
  size_t clause_start_ = 0;
  std::string_view field_text_;
};

// Characters a string may hold and still print unquoted: none of them ends a
// bare value, starts a list or a quote, or reads as an operator.
bool PlainChar(char c) {
  return IsAlpha(c) || IsDigit(c) || c == ' ' || c == '.' || c == '-' || c == '+' || c == '/' || c == ':' ||
         c == '@' || c == '#' || c == '%' || c == '&' || c == '(' || c == ')';
}

std::string FormatValue(FieldType type, const Value& v) {
  switch (type) {
    case FieldType::kInt:
      return std::to_string(std::get<int64_t>(v));
    case FieldType::kNumber:
    case FieldType::kMoney:
      return FormatMillionths(std::get<int64_t>(v));
    case FieldType::kBool:
      return std::get<bool>(v) ? "true" : "false";
    case FieldType::kString: {
      const std::string& s = std::get<std::string>(v);
      bool plain = !s.empty() && !EqualFold(s, "any") &&
                   std::all_of(s.begin(), s.end(), PlainChar);
      if (plain) {
        std::string out = s;
        std::replace(out.begin(), out.end(), ' ', '_');
        return out;
      }
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      return out;
    }
  }
  return "";
}

// Orders two non-null values of one field (same alternative).
int CompareValues(const Value& a, const Value& b) {
  if (const auto* x = std::get_if<int64_t>(&a)) {
    int64_t y = std::get<int64_t>(b);
    return *x < y ? -1 : (*x > y ? 1 : 0);
  }
  if (const auto* x = std::get_if<bool>(&a)) {
    bool y = std::get<bool>(b);
    return *x == y ? 0 : (*x ? 1 : -1);
  }
  return CompareFold(std::get<std::string>(a), std::get<std::string>(b));
}

// A clause value of the wrong alternative (a hand-built Clause) never
// matches, rather than throwing bad_variant_access.
bool SameKind(const Value& a, const Value& b) { return a.index() == b.index(); }

}  // namespace

std::span<const FieldInfo> Fields() { return kFields; }

const FieldInfo& Info(FieldId id) {
  size_t i = static_cast<size_t>(id);
  assert(i < kFields.size());
  return kFields[i];
}

std::optional<FieldId> LookupField(std::string_view name) {
  for (const FieldInfo& f : kFields) {
    if (EqualFold(name, f.name)) return f.id;
  }
  for (const Alias& a : kAliases) {
    if (EqualFold(name, a.name)) return a.id;
  }
  return std::nullopt;
}

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kEq: return "=";
    case Op::kNe: return "!=";
    case Op::kLt: return "<";
    case Op::kLe: return "<=";
    case Op::kGt: return ">";
    case Op::kGe: return ">=";
    case Op::kIn: return "in";
    case Op::kNotIn: return "notin";
  }
  return "?";
}

Result<Query> Parse(std::string_view text) { return Parser(text).Run(); }

std::string FormatClause(const Clause& c) {
  const FieldInfo& info = Info(c.field);
  std::string out(info.name);
  if (c.op == Op::kIn || c.op == Op::kNotIn) {
    out += " ";
    out += OpName(c.op);
    out += " [";
    for (size_t i = 0; i < c.values.size(); ++i) {
      if (i) out += ",";
      out += FormatValue(info.type, c.values[i]);
    }
    out += "]";
    return out;
  }
  out += OpName(c.op);
  if (!c.values.empty()) out += FormatValue(info.type, c.values[0]);
  return out;
}

std::string Format(const Query& q) {
  std::string out;
  for (const Clause& c : q.clauses) {
    if (!out.empty()) out += " ";
    out += FormatClause(c);
  }
  for (FieldId f : q.any_fields) {
    if (!out.empty()) out += " ";
    out += Info(f).name;
    out += "=any";
  }
  return out;
}

bool Constrains(const Query& q, FieldId field) {
  return std::any_of(q.clauses.begin(), q.clauses.end(), [&](const Clause& c) { return c.field == field; }) ||
         std::find(q.any_fields.begin(), q.any_fields.end(), field) != q.any_fields.end();
}

Query WithDefaults(Query q, const DefaultOptions& options) {
  if (options.no_default) return q;
  auto add = [&](FieldId f, bool v) {
    if (!Constrains(q, f)) q.clauses.push_back(Clause{f, Op::kEq, {Value(v)}});
  };
  if (!options.dev) add(FieldId::kVerified, true);
  add(FieldId::kRentable, true);
  add(FieldId::kRented, false);
  return q;
}

Order DefaultOrder() { return Order{{SortKey{FieldId::kDphTotal, false}}}; }

Result<Order> ParseOrder(std::string_view text) {
  Order order;
  size_t pos = 0;
  bool all_space = std::all_of(text.begin(), text.end(), IsSpace);
  if (all_space) return DefaultOrder();
  while (true) {
    size_t comma = text.find(',', pos);
    size_t end = comma == std::string_view::npos ? text.size() : comma;
    size_t b = pos, e = end;
    while (b < e && IsSpace(text[b])) ++b;
    while (e > b && IsSpace(text[e - 1])) --e;
    std::string_view item = text.substr(b, e - b);
    const std::string where = " (column " + std::to_string(b + 1) + ")";
    if (item.empty()) return InvalidArgument("order \"" + Printable(text) + "\"" + where + ": empty sort field");
    SortKey key{FieldId::kId, false};
    if (item.back() == '-' || item.back() == '+') {
      key.descending = item.back() == '-';
      item.remove_suffix(1);
      while (!item.empty() && IsSpace(item.back())) item.remove_suffix(1);
      if (item.empty()) {
        return InvalidArgument("order \"" + Printable(text) + "\"" + where + ": a direction without a field");
      }
    }
    std::optional<FieldId> f = LookupField(item);
    if (!f) return UnknownField(item, b + 1);
    key.field = *f;
    order.keys.push_back(key);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return order;
}

std::string FormatOrder(const Order& order) {
  std::string out;
  for (const SortKey& k : order.keys) {
    if (!out.empty()) out += ",";
    out += Info(k.field).name;
    if (k.descending) out += "-";
  }
  return out;
}

int64_t DurationMillionths(int64_t end_date_ms, int64_t now_ms) {
  if (end_date_ms == 0) return kUnlimitedDuration;
  // ms * 1e6 / 86.4e6 = ms * 10 / 864, floored; 128-bit so nothing overflows.
  Int128 num = static_cast<Int128>(end_date_ms) - now_ms;
  num *= 10;
  Int128 q = num / 864;
  if (num % 864 != 0 && num < 0) --q;
  if (q >= INT64_MAX) return INT64_MAX - 1;
  if (q < INT64_MIN) return INT64_MIN;
  return static_cast<int64_t>(q);
}

std::optional<Value> OfferRow::Get(FieldId field) const {
  switch (field) {
#define GRID_QUERY_GET(e, n, t) \
  case FieldId::e:              \
    if (!n) return std::nullopt; \
    return Value(*n);
    GRID_QUERY_FIELDS(GRID_QUERY_GET)
#undef GRID_QUERY_GET
  }
  return std::nullopt;
}

bool MatchesClause(const Clause& c, const OfferRow& row) {
  std::optional<Value> v = row.Get(c.field);
  if (!v) return false;
  auto equal = [&](const Value& x) { return SameKind(*v, x) && CompareValues(*v, x) == 0; };
  if (c.op == Op::kIn) return std::any_of(c.values.begin(), c.values.end(), equal);
  if (c.op == Op::kNotIn) {
    return std::all_of(c.values.begin(), c.values.end(), [&](const Value& x) {
      return SameKind(*v, x) && CompareValues(*v, x) != 0;
    });
  }
  if (c.values.size() != 1 || !SameKind(*v, c.values[0])) return false;
  int cmp = CompareValues(*v, c.values[0]);
  switch (c.op) {
    case Op::kEq: return cmp == 0;
    case Op::kNe: return cmp != 0;
    case Op::kLt: return cmp < 0;
    case Op::kLe: return cmp <= 0;
    case Op::kGt: return cmp > 0;
    case Op::kGe: return cmp >= 0;
    default: return false;
  }
}

bool Matches(const Query& q, const OfferRow& row) {
  return std::all_of(q.clauses.begin(), q.clauses.end(),
                     [&](const Clause& c) { return MatchesClause(c, row); });
}

bool OrderLess(const Order& order, const OfferRow& a, const OfferRow& b) {
  auto keys = order.keys;
  keys.push_back(SortKey{FieldId::kId, false});
  for (const SortKey& k : keys) {
    std::optional<Value> x = a.Get(k.field);
    std::optional<Value> y = b.Get(k.field);
    if (!x && !y) continue;
    if (!x) return false;  // nulls last, whichever the direction
    if (!y) return true;
    int cmp = CompareValues(*x, *y);
    if (cmp != 0) return k.descending ? cmp > 0 : cmp < 0;
  }
  return false;
}

}  // namespace grid::query
