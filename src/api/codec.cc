#include "api/codec.h"

#include <boost/json/detail/format.hpp>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/clock.h"
#include "market/channel_policy.h"
#include "market/offer_rows.h"

namespace grid::api {

Result<json::object> ParseObject(std::string_view body) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 32;
  json::value v = json::parse(body, ec, {}, opts);
  if (ec) return InvalidArgument("malformed JSON body: " + ec.message());
  if (!v.is_object()) return InvalidArgument("the JSON body must be an object");
  return std::move(v.as_object());
}

std::string Fields::Name(std::string_view key) const { return prefix_ + std::string(key); }

bool Fields::Has(std::string_view key) const {
  const json::value* v = obj_.if_contains(key);
  return v && !v->is_null();
}

Result<std::string> Fields::String(std::string_view key) const {
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return InvalidArgument(Name(key) + ": required");
  if (!v->is_string()) return InvalidArgument(Name(key) + ": expected a string");
  return std::string(v->get_string());
}

Result<std::string> Fields::OptString(std::string_view key, std::string fallback) const {
  if (!Has(key)) return fallback;
  return String(key);
}

Result<int64_t> Fields::Int(std::string_view key, int64_t min, int64_t max) const {
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return InvalidArgument(Name(key) + ": required");
  int64_t out;
  if (v->is_int64()) {
    out = v->get_int64();
  } else if (v->is_uint64()) {
    return InvalidArgument(Name(key) + ": out of range");
  } else {
    return InvalidArgument(Name(key) + ": expected an integer");
  }
  if (out < min || out > max)
    return InvalidArgument(Name(key) + ": must be between " + std::to_string(min) + " and " + std::to_string(max));
  return out;
}

Result<int64_t> Fields::OptInt(std::string_view key, int64_t fallback, int64_t min, int64_t max) const {
  if (!Has(key)) return fallback;
  return Int(key, min, max);
}

Result<double> Fields::Number(std::string_view key) const {
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return InvalidArgument(Name(key) + ": required");
  if (!v->is_number()) return InvalidArgument(Name(key) + ": expected a number");
  double d = v->to_number<double>();
  if (!std::isfinite(d)) return InvalidArgument(Name(key) + ": expected a finite number");
  return d;
}

Result<bool> Fields::Bool(std::string_view key) const {
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return InvalidArgument(Name(key) + ": required");
  if (!v->is_bool()) return InvalidArgument(Name(key) + ": expected true or false");
  return v->get_bool();
}

Result<Micros> Fields::Money(std::string_view key) const {
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return InvalidArgument(Name(key) + ": required");
  if (!v->is_string())
    return InvalidArgument(Name(key) + ": money is a decimal string such as \"2.50\", not a JSON number");
  return ParseMoney(v->get_string(), Name(key));
}

Result<std::vector<std::string>> Fields::StringList(std::string_view key) const {
  std::vector<std::string> out;
  const json::value* v = obj_.if_contains(key);
  if (!v || v->is_null()) return out;
  if (!v->is_array()) return InvalidArgument(Name(key) + ": expected an array of strings");
  for (const json::value& e : v->get_array()) {
    if (!e.is_string()) return InvalidArgument(Name(key) + ": expected an array of strings");
    out.emplace_back(e.get_string());
  }
  return out;
}

Status Fields::OnlyKnown(std::initializer_list<std::string_view> known) const {
  for (const auto& kv : obj_) {
    bool ok = false;
    for (std::string_view k : known) ok = ok || kv.key() == k;
    if (!ok) return InvalidArgument(Name(kv.key()) + ": unknown field");
  }
  return Status::Ok();
}

namespace {

// A spec value for a search field machines carry in `extra` (compute_cap,
// cuda_vers, …) must have the field's type, or searches on it would quietly
// never match the machine.
Status CheckSearchFieldType(std::string_view key, const json::value& v) {
  for (const market::ExtraSpecField& f : market::ExtraSpecFields()) {
    if (f.name != key) continue;
    switch (f.type) {
      case query::FieldType::kInt:
        if (!v.is_int64() || v.get_int64() > int64_t{1'000'000'000'000} || v.get_int64() < -int64_t{1'000'000'000'000})
          return InvalidArgument(std::string(key) + ": expected an integer" +
                                 (key == "compute_cap" ? " (900 for compute capability 9.0)" : ""));
        return Status::Ok();
      case query::FieldType::kNumber: {
        bool ok = (v.is_int64() || v.is_double()) && std::isfinite(v.to_number<double>()) &&
                  market::ToMillionths(v.to_number<double>()).has_value();
        if (!ok) return InvalidArgument(std::string(key) + ": expected a number" +
                                        (key == "cuda_vers" ? " (the highest CUDA version supported, such as 12.4)" : ""));
        return Status::Ok();
      }
      case query::FieldType::kString:
        if (!v.is_string()) return InvalidArgument(std::string(key) + ": expected a string");
        return Status::Ok();
      case query::FieldType::kBool:
        if (!v.is_bool()) return InvalidArgument(std::string(key) + ": expected true or false");
        return Status::Ok();
      case query::FieldType::kMoney:
        return InvalidArgument(std::string(key) + ": set by the broker, not by the spec");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<DecodedSpec> DecodeMachineSpec(std::string_view body, bool stored) {
  GRID_ASSIGN_OR_RETURN(json::object obj, ParseObject(body));
  Fields f(obj);
  DecodedSpec out;
  market::MachineSpec& s = out.spec;
  GRID_ASSIGN_OR_RETURN(s.gpu_name, f.String("gpu_name"));
  GRID_ASSIGN_OR_RETURN(int64_t n, f.Int("num_gpus", 1, market::kMaxGpusPerMachine));
  s.num_gpus = static_cast<int>(n);
  GRID_ASSIGN_OR_RETURN(s.gpu_ram, f.Number("gpu_ram"));
  GRID_ASSIGN_OR_RETURN(int64_t cores, f.Int("cpu_cores", 0, 1'000'000));
  s.cpu_cores = static_cast<int>(cores);
  GRID_ASSIGN_OR_RETURN(s.cpu_ram, f.Number("cpu_ram"));
  GRID_ASSIGN_OR_RETURN(s.disk_space, f.Number("disk_space"));
  GRID_ASSIGN_OR_RETURN(s.inet_up, f.Number("inet_up"));
  GRID_ASSIGN_OR_RETURN(s.inet_down, f.Number("inet_down"));
  GRID_ASSIGN_OR_RETURN(s.geolocation, f.String("geolocation"));
  GRID_ASSIGN_OR_RETURN(s.datacenter, f.Bool("datacenter"));
  if (f.Has("simulated")) {
    GRID_ASSIGN_OR_RETURN(s.simulated, f.Bool("simulated"));
  }
  static constexpr std::string_view kCore[] = {"gpu_name", "num_gpus", "gpu_ram", "cpu_cores", "cpu_ram",
                                               "disk_space", "inet_up", "inet_down", "geolocation",
                                               "datacenter", "simulated"};
  // Fields the broker derives (ids, prices, availability, …); a provider
  // cannot set them. A stored spec is read back as it was accepted then.
  static constexpr std::string_view kDerivedBefore[] = {"id", "machine_id", "verified", "reliability", "rentable",
                                                        "rented", "dph_total", "dph", "host_id"};
  for (const auto& kv : obj) {
    std::string_view k = kv.key();
    bool core = false;
    for (auto c : kCore) core = core || c == k;
    if (core) continue;
    bool derived = false;
    for (auto d : kDerivedBefore) derived = derived || d == k;
    if (derived || (!stored && market::IsDerivedOfferField(k)))
      return InvalidArgument(std::string(k) + ": set by the broker, not by the spec");
    if (k.empty() || k.size() > 64) return InvalidArgument("spec: field names are 1 to 64 characters");
    const json::value& v = kv.value();
    if (!stored) GRID_RETURN_IF_ERROR(CheckSearchFieldType(k, v));
    if (v.is_bool()) s.extra[std::string(k)] = v.get_bool();
    else if (v.is_int64()) s.extra[std::string(k)] = v.get_int64();
    else if (v.is_double() && std::isfinite(v.get_double())) s.extra[std::string(k)] = v.get_double();
    else if (v.is_string() && v.get_string().size() <= 256) s.extra[std::string(k)] = std::string(v.get_string());
    else return InvalidArgument(std::string(k) + ": expected a number, a boolean or a short string");
  }
  GRID_RETURN_IF_ERROR(market::ValidateSpec(s));
  out.canonical_json = Serialize(EncodeSpec(s));
  return out;
}

json::object EncodeSpec(const market::MachineSpec& s) {
  json::object o;
  o["gpu_name"] = s.gpu_name;
  o["num_gpus"] = s.num_gpus;
  o["gpu_ram"] = s.gpu_ram;
  o["cpu_cores"] = s.cpu_cores;
  o["cpu_ram"] = s.cpu_ram;
  o["disk_space"] = s.disk_space;
  o["inet_up"] = s.inet_up;
  o["inet_down"] = s.inet_down;
  o["geolocation"] = s.geolocation;
  o["datacenter"] = s.datacenter;
  o["simulated"] = s.simulated;
  for (const auto& kv : s.extra) {
    // (No structured binding here: clang 14 cannot capture one in a lambda.)
    const std::string& key = kv.first;
    std::visit([&](const auto& x) { o[key] = x; }, kv.second);
  }
  return o;
}

json::object EncodeMachine(const market::Machine& m, int free_gpus) {
  json::object o;
  o["id"] = m.id;
  o["provider"] = m.provider;
  o["spec"] = EncodeSpec(m.spec);
  o["simulated"] = m.spec.simulated;
  o["verified"] = m.verified;
  o["listed"] = m.listing.listed;
  o["price_gpu"] = FormatMoney(m.listing.price_per_gpu_hour);
  o["min_chunk"] = m.listing.min_chunk;
  o["end_date"] = m.listing.end_date_ms ? json::value(FormatTime(m.listing.end_date_ms)) : json::value(nullptr);
  o["price_disk"] = FormatMoney(m.listing.storage_cost);
  o["free_gpus"] = free_gpus;
  o["channel_payee"] = market::ChannelPayeeOf(m).empty() ? json::value(nullptr) : json::value(market::ChannelPayeeOf(m));
  o["created_at"] = FormatTime(m.created_ms);
  return o;
}

namespace {

// The writers below put characters at a raw pointer inside a string already
// grown to an upper bound of what they write (see AppendOffer).

char* PutRaw(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// json::serialize's string escapes (boost/json/impl/serializer.ipp): the
// short forms for \b \t \n \f \r, \u00xx (lowercase hex) for the other
// control characters, \" and \\; every other byte as is. At most 6 bytes per
// byte of s, plus the quotes.
constexpr char kEsc[32] = {'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
                           'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u'};
size_t MaxEscaped(std::string_view s) { return 6 * s.size() + 2; }
char* PutString(char* p, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = '"';
  const char* run = s.data();
  const char* end = s.data() + s.size();
  for (const char* c = run; c != end; ++c) {
    const auto u = static_cast<unsigned char>(*c);
    if (u >= 0x20 && u != '"' && u != '\\') [[likely]]
      continue;
    p = PutRaw(p, std::string_view(run, static_cast<size_t>(c - run)));
    run = c + 1;
    *p++ = '\\';
    if (u == '"' || u == '\\') {
      *p++ = static_cast<char>(u);
    } else if (kEsc[u] != 'u') {
      *p++ = kEsc[u];
    } else {
      p = PutRaw(p, "u00");
      *p++ = kHex[u >> 4];
      *p++ = kHex[u & 15];
    }
  }
  p = PutRaw(p, std::string_view(run, static_cast<size_t>(end - run)));
  *p++ = '"';
  return p;
}

constexpr size_t kMaxNumberChars = 32;  // >= json::detail::max_number_chars (27)

char* PutInt(char* p, int64_t v) { return std::to_chars(p, p + kMaxNumberChars, v).ptr; }
char* PutBool(char* p, bool b) { return PutRaw(p, b ? std::string_view("true") : std::string_view("false")); }
char* PutNull(char* p) { return PutRaw(p, "null"); }
// A kNumber (millionths): an integer when whole, else the double, written as
// json::serialize writes a double ("9.87654E-1": Boost.JSON's own format,
// through its formatter, so the bytes stay those of a JSON tree).
char* PutNumber(char* p, int64_t x) {
  if (x % 1'000'000 == 0) return PutInt(p, x / 1'000'000);
  return p + json::detail::format_double(p, static_cast<double>(x) / 1e6);
}
char* PutMoney(char* p, Micros v) {
  *p++ = '"';
  p = FormatMoneyTo(p, v);
  *p++ = '"';
  return p;
}

template <query::FieldType T>
struct FieldWriter;
template <>
struct FieldWriter<query::FieldType::kInt> {
  static size_t Max(const std::optional<int64_t>&) { return kMaxNumberChars; }
  static char* Put(char* p, const std::optional<int64_t>& v, query::FieldId) { return v ? PutInt(p, *v) : PutNull(p); }
};
template <>
struct FieldWriter<query::FieldType::kNumber> {
  static size_t Max(const std::optional<int64_t>&) { return kMaxNumberChars; }
  static char* Put(char* p, const std::optional<int64_t>& v, query::FieldId id) {
    if (!v || (id == query::FieldId::kDuration && *v == query::kUnlimitedDuration)) return PutNull(p);
    return PutNumber(p, *v);
  }
};
template <>
struct FieldWriter<query::FieldType::kMoney> {
  static size_t Max(const std::optional<Micros>&) { return kMaxMoneyChars + 2; }
  static char* Put(char* p, const std::optional<Micros>& v, query::FieldId) { return v ? PutMoney(p, *v) : PutNull(p); }
};
template <>
struct FieldWriter<query::FieldType::kBool> {
  static size_t Max(const std::optional<bool>&) { return 5; }
  static char* Put(char* p, const std::optional<bool>& v, query::FieldId) { return v ? PutBool(p, *v) : PutNull(p); }
};
template <>
struct FieldWriter<query::FieldType::kString> {
  static size_t Max(const std::optional<std::string>& v) { return v ? MaxEscaped(*v) : 4; }
  static char* Put(char* p, const std::optional<std::string>& v, query::FieldId) {
    return v ? PutString(p, *v) : PutNull(p);
  }
};

// ,"name": for every field, and the bytes of them all.
#define GRID_OFFER_KEY(e, n, t) ",\"" #n "\":"
constexpr size_t kFieldKeyChars = sizeof(GRID_QUERY_FIELDS(GRID_OFFER_KEY)) - 1;
#undef GRID_OFFER_KEY
constexpr std::string_view kProviderKey = ",\"provider\":";
constexpr std::string_view kMinChunkKey = ",\"min_chunk\":";
constexpr std::string_view kEndDateKey = ",\"end_date\":";
constexpr std::string_view kChannelPayeeKey = ",\"channel_payee\":";

}  // namespace

OfferMachine OfferMachineOf(const market::Machine& m) {
  return OfferMachine{m.provider, m.listing.min_chunk, m.listing.end_date_ms, market::ChannelPayeeOf(m)};
}

void AppendOffer(std::string& out, const query::OfferRow& r, const OfferMachine& m) {
  // Grow once to an upper bound, write through a pointer, trim.
  size_t max = kFieldKeyChars + kProviderKey.size() + kMinChunkKey.size() + kEndDateKey.size() +
               kChannelPayeeKey.size() + 2 + MaxEscaped(m.provider) + kMaxNumberChars + kMaxTimeChars + 2 +
               MaxEscaped(m.channel_payee);
#define GRID_OFFER_MAX(e, n, t) max += FieldWriter<query::FieldType::t>::Max(r.n);
  GRID_QUERY_FIELDS(GRID_OFFER_MAX)
#undef GRID_OFFER_MAX
  const size_t start = out.size();
  out.resize(start + max);
  char* const first = out.data() + start;
  char* p = first;
  // Each field writes ,"name":value; the first comma becomes the brace.
#define GRID_OFFER_PUT(e, n, t)                                    \
  p = PutRaw(p, ",\"" #n "\":");                                   \
  p = FieldWriter<query::FieldType::t>::Put(p, r.n, query::FieldId::e);
  GRID_QUERY_FIELDS(GRID_OFFER_PUT)
#undef GRID_OFFER_PUT
  *first = '{';
  p = PutRaw(p, kProviderKey);
  p = PutString(p, m.provider);
  p = PutRaw(p, kMinChunkKey);
  p = PutInt(p, m.min_chunk);
  p = PutRaw(p, kEndDateKey);
  if (m.end_date_ms) {
    *p++ = '"';
    p = FormatTimeTo(p, m.end_date_ms);
    *p++ = '"';
  } else {
    p = PutNull(p);
  }
  p = PutRaw(p, kChannelPayeeKey);
  p = m.channel_payee.empty() ? PutNull(p) : PutString(p, m.channel_payee);
  *p++ = '}';
  out.resize(static_cast<size_t>(p - out.data()));
}

void AppendJsonString(std::string& out, std::string_view s) {
  const size_t start = out.size();
  out.resize(start + MaxEscaped(s));
  char* p = PutString(out.data() + start, s);
  out.resize(static_cast<size_t>(p - out.data()));
}

json::object EncodeOffer(const query::OfferRow& r, const OfferMachine& m) {
  json::object o;
  o.reserve(query::kFieldCount + 3);
  for (const query::FieldInfo& f : query::Fields()) {
    std::optional<query::Value> v = r.Get(f.id);
    json::value& out = o[f.name];
    if (!v || (f.id == query::FieldId::kDuration && std::get<int64_t>(*v) == query::kUnlimitedDuration)) {
      out = nullptr;
      continue;
    }
    switch (f.type) {
      case query::FieldType::kInt:
        out = std::get<int64_t>(*v);
        break;
      case query::FieldType::kNumber: {
        int64_t x = std::get<int64_t>(*v);
        if (x % 1'000'000 == 0) out = x / 1'000'000;
        else out = static_cast<double>(x) / 1e6;
        break;
      }
      case query::FieldType::kMoney:
        out = FormatMoney(std::get<int64_t>(*v));
        break;
      case query::FieldType::kBool:
        out = std::get<bool>(*v);
        break;
      case query::FieldType::kString:
        out = std::get<std::string>(*v);
        break;
    }
  }
  o["provider"] = m.provider;
  o["min_chunk"] = m.min_chunk;
  o["end_date"] = m.end_date_ms ? json::value(FormatTime(m.end_date_ms)) : json::value(nullptr);
  o["channel_payee"] = m.channel_payee.empty() ? json::value(nullptr) : json::value(m.channel_payee);
  return o;
}

json::object EncodeExplain(const query::Explain& ex,
                           const std::function<std::optional<OfferMachine>(int64_t machine_id)>& machine_of) {
  json::object o;
  o["offers"] = ex.offers;
  json::array clauses;
  for (const query::ClauseExplain& c : ex.clauses)
    clauses.push_back(json::object{{"clause", query::FormatClause(c.clause)},
                                   {"default", c.is_default},
                                   {"excludes", c.fails},
                                   {"alone", c.sole}});
  o["clauses"] = std::move(clauses);
  json::array near;
  for (const query::NearMiss& nm : ex.near_misses) {
    json::object n;
    n["clause"] = nm.clause < ex.clauses.size() ? query::FormatClause(ex.clauses[nm.clause].clause) : "";
    std::optional<OfferMachine> m = nm.row.machine_id ? machine_of(*nm.row.machine_id) : std::nullopt;
    if (m) n["offer"] = EncodeOffer(nm.row, *m);
    else n["offer"] = json::object{{"id", nm.row.id ? json::value(*nm.row.id) : json::value(nullptr)}};
    near.push_back(std::move(n));
  }
  o["near_misses"] = std::move(near);
  o["summary"] = ex.summary;
  return o;
}

json::object EncodeLeaseChannel(const market::Lease& l, UnixMs now_ms) {
  const market::ChannelPayment& c = *l.channel;
  json::object o;
  o["id"] = c.channel;
  o["contract"] = c.contract;
  o["chain_id"] = static_cast<int64_t>(c.chain_id);  // a JSON integer Fields::Int reads back
  o["token"] = c.token;
  o["signer"] = c.signer;
  o["payee"] = c.payee;
  o["deposit"] = FormatMoney(c.deposit);
  o["margin"] = FormatMoney(c.margin);
  o["expiry_s"] = c.expiry_ms / 1000;
  o["interval_ms"] = c.interval_ms;
  o["grace_ms"] = c.grace_ms;
  o["expiry_margin_ms"] = c.expiry_margin_ms;
  o["start_ms"] = l.started_ms;
  o["length_ms"] = c.length_ms;
  if (c.voucher > 0)
    o["voucher"] = json::object{{"amount", FormatMoney(c.voucher)},
                                {"signature", c.voucher_sig},
                                {"accepted_at", FormatTime(c.voucher_ms)}};
  else
    o["voucher"] = nullptr;
  market::ChannelTerms t = market::TermsOf(l);
  bool running = l.state == market::LeaseState::kRunning;
  o["paid_through"] = l.started_ms ? json::value(FormatTime(market::PaidThrough(t, c.voucher))) : json::value(nullptr);
  json::value due = nullptr;
  if (running && now_ms > 0) {
    int64_t k = market::DueIndex(t, now_ms);
    if (auto amount = market::VoucherAmount(t, k); amount.ok())
      due = json::object{{"index", k}, {"amount", FormatMoney(*amount)}};
  }
  o["due"] = std::move(due);
  o["redeemed"] = FormatMoney(c.redeemed);
  o["closed"] = c.closed;
  return o;
}

Result<market::ChannelPayment> DecodeLeaseChannel(const json::value& v) {
  if (!v.is_object()) return InvalidArgument("channel: expected an object");
  Fields f(v.get_object(), "channel.");
  market::ChannelPayment c;
  auto hex = [&](std::string_view key, size_t digits) -> Result<std::string> {
    GRID_ASSIGN_OR_RETURN(std::string s, f.String(key));
    if (s.size() != digits + 2 || s[0] != '0' || s[1] != 'x' ||
        s.find_first_not_of("0123456789abcdefABCDEF", 2) != std::string::npos)
      return InvalidArgument("channel." + std::string(key) + ": expected 0x and " + std::to_string(digits) +
                             " hex digits");
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  GRID_ASSIGN_OR_RETURN(c.channel, hex("id", 64));
  GRID_ASSIGN_OR_RETURN(c.contract, hex("contract", 40));
  GRID_ASSIGN_OR_RETURN(int64_t chain_id, f.Int("chain_id", 1, INT64_MAX));
  c.chain_id = static_cast<uint64_t>(chain_id);
  GRID_ASSIGN_OR_RETURN(c.token, hex("token", 40));
  GRID_ASSIGN_OR_RETURN(c.signer, hex("signer", 40));
  GRID_ASSIGN_OR_RETURN(c.payee, hex("payee", 40));
  GRID_ASSIGN_OR_RETURN(c.deposit, f.Money("deposit"));
  GRID_ASSIGN_OR_RETURN(c.margin, f.Money("margin"));
  GRID_ASSIGN_OR_RETURN(int64_t expiry_s, f.Int("expiry_s", 0, INT64_MAX / 1000));
  c.expiry_ms = expiry_s * 1000;
  // Durations a day at most: a broker's terms beyond that are nonsense, and
  // the bound keeps every sum of them with a time well inside int64.
  constexpr int64_t kDayMs = 86'400'000;
  GRID_ASSIGN_OR_RETURN(c.interval_ms, f.Int("interval_ms", 1, kDayMs));
  GRID_ASSIGN_OR_RETURN(c.grace_ms, f.Int("grace_ms", 0, kDayMs));
  GRID_ASSIGN_OR_RETURN(c.expiry_margin_ms, f.Int("expiry_margin_ms", 0, kDayMs));
  GRID_ASSIGN_OR_RETURN(c.length_ms, f.Int("length_ms", 0, INT64_MAX));
  if (const json::value* vv = v.get_object().if_contains("voucher"); vv && !vv->is_null()) {
    if (!vv->is_object()) return InvalidArgument("channel.voucher: expected an object or null");
    Fields vf(vv->get_object(), "channel.voucher.");
    GRID_ASSIGN_OR_RETURN(c.voucher, vf.Money("amount"));
    if (c.voucher <= 0) return InvalidArgument("channel.voucher.amount: an accepted voucher is positive");
    GRID_ASSIGN_OR_RETURN(c.voucher_sig, vf.String("signature"));
    if (c.voucher_sig.size() != 132 || c.voucher_sig.compare(0, 2, "0x") != 0 ||
        c.voucher_sig.find_first_not_of("0123456789abcdef", 2) != std::string::npos)
      return InvalidArgument("channel.voucher.signature: expected 0x and 130 lowercase hex digits");
    GRID_ASSIGN_OR_RETURN(std::string at, vf.String("accepted_at"));
    if (!ParseTime(at, &c.voucher_ms))
      return InvalidArgument("channel.voucher.accepted_at: expected an RFC 3339 time");
  }
  GRID_ASSIGN_OR_RETURN(c.redeemed, f.Money("redeemed"));
  GRID_ASSIGN_OR_RETURN(c.closed, f.Bool("closed"));
  return c;
}

json::object EncodeLease(const market::Lease& l, int64_t running_ms, UnixMs now_ms) {
  json::object o;
  o["id"] = l.id;
  o["state"] = market::LeaseStateName(l.state);
  o["end_reason"] = l.end_reason == market::EndReason::kNone ? json::value(nullptr)
                                                              : json::value(market::EndReasonName(l.end_reason));
  o["renter"] = l.renter;
  o["provider"] = l.provider;
  o["machine_id"] = l.machine_id;
  o["offer_id"] = l.order.offer_id;
  json::array gpus;
  for (int g : l.gpus) gpus.push_back(g);
  o["gpus"] = std::move(gpus);
  o["num_gpus"] = static_cast<int64_t>(l.gpus.size());
  o["price_per_hour"] = FormatMoney(l.price_per_hour);
  o["fee_bps"] = l.fee_bps;
  o["charged"] = FormatMoney(l.charged);
  o["fee"] = FormatMoney(l.fee);
  o["provider_earned"] = FormatMoney(l.charged - l.fee);
  o["held"] = FormatMoney(l.held);
  o["billed_seconds"] = static_cast<double>(l.billed_ms) / 1000.0;
  o["running_seconds"] = static_cast<double>(running_ms) / 1000.0;
  o["image"] = l.image;
  json::array env, cmd;
  for (const auto& e : l.env) env.push_back(json::string(e));
  for (const auto& c : l.command) cmd.push_back(json::string(c));
  o["env"] = std::move(env);
  o["command"] = std::move(cmd);
  json::array ports, endpoints;
  for (int p : l.ports) ports.push_back(p);
  o["ports"] = std::move(ports);
  o["ssh_key"] = l.ssh_key.empty() ? json::value(nullptr) : json::value(l.ssh_key);
  json::value ssh = nullptr;
  for (const auto& e : l.endpoints) {
    endpoints.push_back(json::object{{"container_port", e.container_port}, {"host", l.endpoint_host}, {"host_port", e.host_port}});
    if (e.container_port == 22 && !l.ssh_key.empty() && !l.endpoint_host.empty())
      ssh = json::object{{"host", l.endpoint_host},
                         {"port", e.host_port},
                         {"command", "ssh -p " + std::to_string(e.host_port) + " root@" + l.endpoint_host}};
  }
  o["endpoints"] = std::move(endpoints);
  o["ssh"] = std::move(ssh);
  o["created_at"] = FormatTime(l.created_ms);
  o["started_at"] = l.started_ms ? json::value(FormatTime(l.started_ms)) : json::value(nullptr);
  o["ended_at"] = l.ended_ms ? json::value(FormatTime(l.ended_ms)) : json::value(nullptr);
  o["message"] = l.message;
  json::object order;
  order["offer_id"] = l.order.offer_id;
  order["gpus"] = l.order.gpus;
  order["price_per_hour"] = FormatMoney(l.order.price_per_hour);
  order["nonce"] = std::to_string(l.order.nonce);
  order["expiry"] = l.order.expiry_s;
  order["signature"] = l.order.signature;
  o["order"] = std::move(order);
  o["payment"] = l.channel ? "channel" : "escrow";
  o["channel"] = l.channel ? json::value(EncodeLeaseChannel(l, now_ms)) : json::value(nullptr);
  return o;
}

json::object EncodeBalance(const ledger::Balance& b) {
  json::object o;
  o["available"] = FormatMoney(b.available);
  o["held"] = FormatMoney(b.held);
  o["earned"] = FormatMoney(b.earned);
  return o;
}

json::object EncodeTransfer(const ledger::Transfer& t) {
  json::object o;
  o["id"] = t.id;
  o["debit"] = t.debit;
  o["credit"] = t.credit;
  o["amount"] = FormatMoney(t.amount);
  o["kind"] = ledger::TransferKindName(t.kind);
  o["lease_id"] = t.lease_id ? json::value(t.lease_id) : json::value(nullptr);
  o["at"] = FormatTime(t.at_ms);
  o["memo"] = t.memo;
  return o;
}

std::string ErrorBody(const Status& status) {
  json::object e;
  e["code"] = CodeName(status.code());
  e["message"] = status.message();
  json::object o;
  o["error"] = std::move(e);
  return json::serialize(o);
}

std::string Serialize(const json::value& v) { return json::serialize(v); }

}  // namespace grid::api
