// libFuzzer target for request decoding: everything the broker's routes do to
// a request body or query value before it reaches the Broker.
//
//   - grid::ParseMoney / grid::FormatMoney (src/core/money.h)
//   - grid::ParseTime / grid::FormatTime (src/core/clock.h)
//   - grid::api::ParseObject, api::Fields getters, api::DecodeMachineSpec
//     (src/api/codec.h)
//
// The raw bytes go to every parser; when they are a JSON object, each field
// is also read with every getter the routes use, and every string value is
// fed to ParseMoney and ParseTime too (so the fuzzer reaches them from JSON
// seeds as well as from bare money strings).
//
// Invariants checked (a violation prints the reason and aborts):
//   money  ParseMoney ok => value >= 0 (unless negatives allowed), and
//          ParseMoney(FormatMoney(v)) == v; FormatMoney(v) matches
//          ^-?[0-9]+\.[0-9]{6}$. A string of the API's money pattern
//          ^[0-9]+(\.[0-9]{1,6})?$ parses to exactly its decimal value, or
//          fails only as "too large" when it exceeds int64 micro-units.
//          Accepting a non-negative amount does not depend on allow_negative.
//   time   ParseTime fails => *out untouched; ok and inside years 0000..9999
//          => ParseTime(FormatTime(t)) == t.
//   json   ParseObject ok and every number finite => Serialize() re-parses
//          to an equal object, doubles within a few ULPs (1e400 parses as
//          infinity, see AllFinite; Boost parses imprecisely, see
//          NearlyEqual).
//   fields Int within [min, max]; Money == ParseMoney of the string; errors
//          are invalid_argument and name the field ("order.gpus: ...");
//          absent/null fields give the Opt* fallback; OnlyKnown fails iff a
//          key is outside the list.
//   spec   DecodeMachineSpec ok => decoding its canonical_json gives the same
//          canonical_json, and the spec passes ValidateSpec.
//   channel api::DecodeLeaseChannel (what an agent and `grid pay` read of a
//          channel lease) of the object and of its "channel" member: ok =>
//          EncodeLeaseChannel of a lease carrying it (started at the
//          object's "start_ms", if an integer) decodes to the same
//          ChannelPayment; errors are invalid_argument naming "channel".
//   ssh    market::CheckSshPublicKey (a lease's ssh_key) ok => one line of
//          printable ASCII of at most 8 KiB, starting with a known key type
//          and a space; errors are invalid_argument naming ssh_key.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "api/codec.h"
#include "core/clock.h"
#include "core/money.h"
#include "core/status.h"
#include "market/market.h"

namespace {

namespace json = boost::json;
using grid::Code;
using grid::Micros;

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "request_fuzz invariant violated: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void Check(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) Fail(what, detail);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ^[0-9]+(\.[0-9]{1,6})?$ : the money pattern the OpenAPI document promises.
bool MatchesMoneyPattern(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsDigit(s[i])) ++i;
  if (i == 0) return false;
  if (i == s.size()) return true;
  if (s[i] != '.') return false;
  size_t frac = s.size() - i - 1;
  if (frac < 1 || frac > 6) return false;
  for (size_t j = i + 1; j < s.size(); ++j)
    if (!IsDigit(s[j])) return false;
  return true;
}

// ^-?[0-9]+\.[0-9]{6}$ : what FormatMoney writes.
bool MatchesFormatted(std::string_view s) {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  size_t dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || s.size() - dot - 1 != 6) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (i != dot && !IsDigit(s[i])) return false;
  return true;
}

// Reference value of a string matching MatchesMoneyPattern, in micro-units;
// -1 when it exceeds INT64_MAX.
typedef grid::Int128 Wide;
Wide ReferenceMicros(std::string_view s) {
  Wide v = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] != '.'; ++i) {
    v = v * 10 + (s[i] - '0');
    if (v > INT64_MAX) return -1;
  }
  v *= 1'000'000;
  Wide scale = 100'000;
  if (i < s.size())
    for (++i; i < s.size(); ++i, scale /= 10) v += (s[i] - '0') * scale;
  return v > INT64_MAX ? -1 : v;
}

void CheckMoney(std::string_view text) {
  auto strict = grid::ParseMoney(text, "amount");
  auto loose = grid::ParseMoney(text, "amount", /*allow_negative=*/true);
  if (strict.ok()) {
    Check(*strict >= 0, "ParseMoney accepted a negative amount", text);
    Check(loose.ok() && *loose == *strict, "ParseMoney depends on allow_negative for a non-negative amount", text);
  } else {
    Check(strict.status().code() == Code::kInvalidArgument, "ParseMoney error is not invalid_argument", text);
    Check(strict.status().message().starts_with("amount: "), "ParseMoney error does not name the field",
          strict.status().message());
  }
  if (loose.ok()) {
    std::string formatted = grid::FormatMoney(*loose);
    Check(MatchesFormatted(formatted), "FormatMoney output is not -?D+.DDDDDD", formatted);
    auto again = grid::ParseMoney(formatted, "amount", true);
    Check(again.ok() && *again == *loose, "ParseMoney(FormatMoney(v)) != v", formatted);
    if (*loose >= 0) {
      auto again_strict = grid::ParseMoney(formatted, "amount");
      Check(again_strict.ok() && *again_strict == *loose, "FormatMoney(v >= 0) not accepted as money", formatted);
    }
  }
  if (MatchesMoneyPattern(text)) {
    Wide want = ReferenceMicros(text);
    if (want < 0) {
      Check(!strict.ok() && strict.status().message().find("too large") != std::string::npos,
            "ParseMoney accepted an amount beyond int64 micro-units", text);
    } else {
      Check(strict.ok(), "ParseMoney rejected a string of the documented money pattern", text);
      Check(static_cast<Wide>(*strict) == want, "ParseMoney value differs from the decimal value", text);
    }
  }
}

void CheckTime(std::string_view text) {
  constexpr grid::UnixMs kSentinel = 0x5EED5EED5EEDLL;
  grid::UnixMs t = kSentinel;
  if (!grid::ParseTime(text, &t)) {
    Check(t == kSentinel, "ParseTime changed *out on failure", text);
    return;
  }
  // FormatTime writes a four-digit year only for 0000..9999.
  grid::UnixMs lo = 0, hi = 0;
  Check(grid::ParseTime("0000-01-01", &lo) && grid::ParseTime("9999-12-31T23:59:59.999Z", &hi),
        "ParseTime rejects its own range bounds");
  if (t < lo || t > hi) return;
  std::string formatted = grid::FormatTime(t);
  grid::UnixMs back = kSentinel;
  Check(grid::ParseTime(formatted, &back), "ParseTime rejects FormatTime output", formatted);
  Check(back == t, "ParseTime(FormatTime(t)) != t", formatted);
}

void CheckError(const grid::Status& s, std::string_view name, const char* getter) {
  Check(s.code() == Code::kInvalidArgument, getter, "error code is not invalid_argument");
  Check(s.message().starts_with(std::string(name) + ": "), getter, s.message());
}

// Reads one field with every getter the routes use and checks the answers
// agree with the JSON value itself.
void CheckField(const json::object& obj, const grid::api::Fields& f, std::string_view prefix, std::string_view key) {
  const std::string name = std::string(prefix) + std::string(key);
  const json::value* v = obj.if_contains(key);
  const bool present = v && !v->is_null();
  Check(f.Has(key) == present, "Fields::Has disagrees with the object", name);

  auto s = f.String(key);
  if (s.ok()) Check(present && v->is_string() && *s == std::string_view(v->get_string()), "Fields::String", name);
  else {
    Check(!present || !v->is_string(), "Fields::String rejected a string", name);
    CheckError(s.status(), name, "Fields::String");
  }
  auto os = f.OptString(key, "fallback\x01");
  if (!present) Check(os.ok() && *os == "fallback\x01", "Fields::OptString ignored its fallback", name);
  else Check(os.ok() == s.ok() && (!os.ok() || *os == *s), "Fields::OptString differs from String", name);

  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{1, INT64_MAX}, {0, grid::market::kMaxGpusPerMachine},
                        {1, INT64_MAX / 1000}, {INT64_MIN, INT64_MAX}}) {
    auto i = f.Int(key, lo, hi);
    if (i.ok()) {
      Check(*i >= lo && *i <= hi, "Fields::Int out of its range", name);
      Check(present && v->is_int64() && v->get_int64() == *i, "Fields::Int value differs", name);
    } else {
      CheckError(i.status(), name, "Fields::Int");
    }
    auto oi = f.OptInt(key, 7, lo, hi);
    if (!present) Check(oi.ok() && *oi == 7, "Fields::OptInt ignored its fallback", name);
    else Check(oi.ok() == i.ok() && (!oi.ok() || *oi == *i), "Fields::OptInt differs from Int", name);
  }

  auto d = f.Number(key);
  if (d.ok()) Check(present && v->is_number() && std::isfinite(*d), "Fields::Number", name);
  else CheckError(d.status(), name, "Fields::Number");

  auto b = f.Bool(key);
  if (b.ok()) Check(present && v->is_bool() && v->get_bool() == *b, "Fields::Bool", name);
  else CheckError(b.status(), name, "Fields::Bool");

  auto m = f.Money(key);
  if (m.ok()) {
    Check(present && v->is_string(), "Fields::Money accepted a non-string", name);
    auto direct = grid::ParseMoney(v->get_string(), name);
    Check(direct.ok() && *direct == *m && *m >= 0, "Fields::Money differs from ParseMoney", name);
  } else {
    CheckError(m.status(), name, "Fields::Money");
  }

  auto l = f.StringList(key);
  if (l.ok()) {
    if (!present) {
      Check(l->empty(), "Fields::StringList of an absent field is not empty", name);
    } else {
      Check(v->is_array() && v->get_array().size() == l->size(), "Fields::StringList size", name);
      for (size_t j = 0; j < l->size(); ++j)
        Check(std::string_view(v->get_array()[j].get_string()) == (*l)[j], "Fields::StringList element", name);
    }
  } else {
    CheckError(l.status(), name, "Fields::StringList");
  }

  if (v && v->is_string()) {
    CheckMoney(v->get_string());
    CheckTime(v->get_string());
  }
}

void CheckOnlyKnown(const json::object& obj, const grid::api::Fields& f, std::string_view prefix,
                    std::initializer_list<std::string_view> known) {
  bool all_known = true;
  for (const auto& kv : obj) {
    bool k = false;
    for (std::string_view x : known) k = k || kv.key() == x;
    all_known = all_known && k;
  }
  grid::Status s = f.OnlyKnown(known);
  Check(s.ok() == all_known, "Fields::OnlyKnown disagrees with the key list");
  if (!s.ok()) {
    Check(s.code() == Code::kInvalidArgument && s.message().starts_with(prefix) &&
              s.message().ends_with(": unknown field"),
          "Fields::OnlyKnown error", s.message());
  }
}

// The key lists of the routes (routes.cc), plus the object's own keys.
void CheckObject(const json::object& obj, std::string_view prefix, int depth) {
  grid::api::Fields f(obj, std::string(prefix));
  CheckOnlyKnown(obj, f, prefix, {"message", "signature"});
  CheckOnlyKnown(obj, f, prefix, {"amount", "idempotency_key"});
  CheckOnlyKnown(obj, f, prefix, {"price_gpu", "min_chunk", "end_date", "price_disk"});
  CheckOnlyKnown(obj, f, prefix, {"state", "message"});
  CheckOnlyKnown(obj, f, prefix, {"offer_id", "gpus", "image", "env", "command", "order"});
  CheckOnlyKnown(obj, f, prefix, {"offer_id", "gpus", "price_per_hour", "nonce", "expiry", "signature"});
  for (std::string_view k : {"amount", "price_gpu", "min_chunk", "end_date", "offer_id", "gpus", "image", "env",
                             "command", "price_per_hour", "nonce", "expiry", "signature", "state", ""})
    CheckField(obj, f, prefix, k);
  int n = 0;
  for (const auto& kv : obj) {
    if (++n > 16) break;  // enough: keep each input cheap
    CheckField(obj, f, prefix, kv.key());
    if (depth < 2 && kv.value().is_object()) CheckObject(kv.value().get_object(), std::string(kv.key()) + ".", depth + 1);
  }
}

// Boost.JSON parses an out-of-range number such as 1e400 as an infinite
// double and serializes it as `Infinity`, which is not JSON. The API never
// echoes such a value (Number and the spec's extra fields reject non-finite
// numbers), so the round trip below is only required of finite documents.
bool AllFinite(const json::value& v) {
  if (v.is_double()) return std::isfinite(v.get_double());
  if (v.is_array()) {
    for (const auto& e : v.get_array())
      if (!AllFinite(e)) return false;
  }
  if (v.is_object()) {
    for (const auto& kv : v.get_object())
      if (!AllFinite(kv.value())) return false;
  }
  return true;
}

// Equal, except that doubles may differ in the last bits: Boost.JSON parses
// numbers in its fast, "imprecise" mode by default, so a double it prints
// with 17 digits can read back one ULP away (found by this fuzzer:
// 400666666666666666666666666666666666660 -> 4.006666666666666E38 -> !=).
bool NearlyEqual(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) {
    double x = a.get_double(), y = b.get_double();
    return x == y || std::fabs(x - y) <= 4 * 2.220446049250313e-16 * std::fmax(std::fabs(x), std::fabs(y));
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_array()) {
    const auto &x = a.get_array(), &y = b.get_array();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!NearlyEqual(x[i], y[i])) return false;
    return true;
  }
  if (a.is_object()) {
    const auto &x = a.get_object(), &y = b.get_object();
    if (x.size() != y.size()) return false;
    for (const auto& kv : x) {
      const json::value* other = y.if_contains(kv.key());
      if (!other || !NearlyEqual(kv.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

void CheckSpec(std::string_view body) {
  auto spec = grid::api::DecodeMachineSpec(body);
  if (!spec.ok()) {
    Check(spec.status().code() == Code::kInvalidArgument, "DecodeMachineSpec error is not invalid_argument",
          spec.status().ToString());
    return;
  }
  grid::Status valid = grid::market::ValidateSpec(spec->spec);
  Check(valid.ok(), "DecodeMachineSpec accepted a spec ValidateSpec rejects", valid.ToString());
  auto again = grid::api::DecodeMachineSpec(spec->canonical_json);
  if (!again.ok()) Fail("canonical_json does not decode again", again.status().ToString() + " in " + spec->canonical_json);
  // A fixed point up to the last bits of doubles (see NearlyEqual): the
  // broker re-decodes stored specs at start-up, so nothing else may change.
  Check(NearlyEqual(json::parse(again->canonical_json), json::parse(spec->canonical_json)),
        "canonical_json is not a fixed point", spec->canonical_json + " vs " + again->canonical_json);
  Check(NearlyEqual(json::parse(grid::api::Serialize(grid::api::EncodeSpec(again->spec))),
                    json::parse(spec->canonical_json)),
        "EncodeSpec of the re-decoded spec differs", spec->canonical_json);
}

}  // namespace

void CheckSshKey(std::string_view text) {
  grid::Status st = grid::market::CheckSshPublicKey(text);
  if (!st.ok()) {
    Check(st.code() == Code::kInvalidArgument && st.message().rfind("ssh_key", 0) == 0,
          "CheckSshPublicKey error is not invalid_argument naming ssh_key", st.message());
    return;
  }
  Check(text.size() <= 8192, "CheckSshPublicKey accepted more than 8 KiB");
  for (char c : text) Check(c >= 0x20 && c <= 0x7e, "CheckSshPublicKey accepted a control or non-ASCII byte");
  Check(text.rfind("ssh-", 0) == 0 || text.rfind("ecdsa-", 0) == 0 || text.rfind("sk-", 0) == 0,
        "CheckSshPublicKey accepted an unknown key type", std::string(text.substr(0, 40)));
}

void CheckLeaseChannel(const json::value& v, const json::object& outer) {
  auto c = grid::api::DecodeLeaseChannel(v);
  if (!c.ok()) {
    Check(c.status().code() == Code::kInvalidArgument, "DecodeLeaseChannel error is not invalid_argument");
    Check(c.status().message().find("channel") != std::string::npos, "DecodeLeaseChannel error names no field",
          c.status().message());
    return;
  }
  grid::market::Lease l;
  l.state = grid::market::LeaseState::kRunning;
  l.price_per_hour = 3'600'000;
  if (const json::value* s = outer.if_contains("start_ms"); s && s->is_int64()) l.started_ms = s->get_int64();
  l.channel = *c;
  auto back = grid::api::DecodeLeaseChannel(json::parse(grid::api::Serialize(grid::api::EncodeLeaseChannel(l, 0))));
  Check(back.ok() && *back == *c, "DecodeLeaseChannel(EncodeLeaseChannel(x)) != x",
        back.ok() ? std::string_view("differs") : std::string_view(back.status().message()));
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // the broker caps bodies at 1 MiB; small inputs find the same bugs faster
  std::string_view text(reinterpret_cast<const char*>(data), size);

  CheckMoney(text);
  CheckTime(text);
  CheckSpec(text);
  CheckSshKey(text);

  auto obj = grid::api::ParseObject(text);
  if (!obj.ok()) {
    Check(obj.status().code() == Code::kInvalidArgument, "ParseObject error is not invalid_argument");
    return 0;
  }
  if (AllFinite(*obj)) {
    std::string serialized = grid::api::Serialize(*obj);
    auto back = grid::api::ParseObject(serialized);
    Check(back.ok() && NearlyEqual(*back, *obj), "Serialize(ParseObject(x)) does not parse back to the same object",
          serialized);
  }
  CheckObject(*obj, "", 0);
  CheckLeaseChannel(*obj, *obj);
  if (const json::value* c = obj->if_contains("channel")) CheckLeaseChannel(*c, *obj);
  return 0;
}
