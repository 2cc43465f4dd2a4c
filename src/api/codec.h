// JSON encoding and decoding of the API's bodies (Boost.JSON). The only place
// the wire format is defined; the broker's routes and the CLI both use it, so
// their field names cannot drift apart.
//
// Decoders never throw and never crash on arbitrary bytes: bad input becomes
// kInvalidArgument naming the field ("gpu_ram: expected a number"). Money is a
// decimal string with at most six decimals, never a JSON number.
#pragma once

#include <boost/json.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/status.h"
#include "ledger/ledger.h"
#include "market/market.h"
#include "market/types.h"
#include "query/index.h"
#include "query/query.h"

namespace grid::api {

namespace json = boost::json;

// Parses a request body that must be a JSON object.
Result<json::object> ParseObject(std::string_view body);

// Reads fields of an object with precise errors. Each getter returns the
// value or a Status naming the field.
class Fields {
 public:
  explicit Fields(const json::object& obj, std::string prefix = "") : obj_(obj), prefix_(std::move(prefix)) {}
  bool Has(std::string_view key) const;
  Result<std::string> String(std::string_view key) const;
  Result<std::string> OptString(std::string_view key, std::string fallback) const;
  Result<int64_t> Int(std::string_view key, int64_t min, int64_t max) const;
  Result<int64_t> OptInt(std::string_view key, int64_t fallback, int64_t min, int64_t max) const;
  Result<double> Number(std::string_view key) const;
  Result<bool> Bool(std::string_view key) const;
  Result<Micros> Money(std::string_view key) const;
  Result<std::vector<std::string>> StringList(std::string_view key) const;  // absent -> empty
  // Fails naming the first key not in `known`.
  Status OnlyKnown(std::initializer_list<std::string_view> known) const;

 private:
  std::string Name(std::string_view key) const;
  const json::object& obj_;
  std::string prefix_;
};

// A machine spec file / body: keys are search-language field names. Unknown
// scalar keys are kept in spec.extra; the canonical JSON is returned too.
// Search fields machines carry only in `extra` (market::ExtraSpecFields():
// compute_cap, cuda_vers, gpu_arch, …) must have their query type
// ("compute_cap: expected an integer …"), and fields the broker derives
// (dph_total, reliability, gpu_total_ram, …) are refused. `stored`: a spec
// read back from the store, accepted under older rules; those two checks
// are skipped (a value of the wrong type is null in search).
struct DecodedSpec {
  market::MachineSpec spec;
  std::string canonical_json;
};
Result<DecodedSpec> DecodeMachineSpec(std::string_view body, bool stored = false);

json::object EncodeSpec(const market::MachineSpec& spec);
json::object EncodeMachine(const market::Machine& m, int free_gpus);
// An offer: every field of the query language under its name, typed as
//   kInt    JSON integer;
//   kNumber JSON number: the exact value, an integer when whole (80), else
//           the nearest double to the millionths (0.987654);
//   kMoney  decimal string with six decimals ("2.500000");
//   kBool, kString as themselves;
// null when unknown; `duration` (days) is null when the machine has no end
// date (unlimited). Then, from the machine: provider (0x address),
// min_chunk, end_date (RFC 3339 or null), channel_payee (the host's agent
// address a payment channel for a lease on it must pay, or null when its
// agent does not accept channel payments: docs/channels.md).
//
// EncodeOffer builds the JSON tree (explain's near misses). AppendOffer
// writes the same object's text straight to `out`, byte for byte what
// json::serialize(EncodeOffer(…)) gives (same key order, Boost.JSON's
// escapes and number formats; codec_test checks), with no tree and no
// allocation but out's growth: the search answer's hot path.
struct OfferMachine {  // what an offer's JSON takes from its machine
  std::string_view provider;
  int64_t min_chunk = 0;
  UnixMs end_date_ms = 0;  // 0: none
  std::string_view channel_payee;  // "": none
};
OfferMachine OfferMachineOf(const market::Machine& m);
void AppendOffer(std::string& out, const query::OfferRow& row, const OfferMachine& m);
json::object EncodeOffer(const query::OfferRow& row, const OfferMachine& m);
// explain=1: {"offers", "clauses":[{"clause","default","excludes","alone"}],
// "near_misses":[{"clause","offer"}], "summary"}. `machine_of` gives each
// near miss's machine (nullopt: the offer is rendered without it).
json::object EncodeExplain(const query::Explain& ex,
                           const std::function<std::optional<OfferMachine>(int64_t machine_id)>& machine_of);
// Appends s as a JSON string (quotes included), escaped as json::serialize
// does: \" \\ \b \f \n \r \t, other control characters as \u00xx, every
// other byte (UTF-8 included) as is.
void AppendJsonString(std::string& out, std::string_view s);
// A lease as the API shows it. `now_ms` gives a channel lease's "due"
// voucher and "paid_through" (docs/channels.md); 0 leaves "due" null.
json::object EncodeLease(const market::Lease& l, int64_t running_ms, UnixMs now_ms = 0);
// A channel lease's "channel" object (docs/channels.md, "The broker").
json::object EncodeLeaseChannel(const market::Lease& l, UnixMs now_ms);
// Reads a lease JSON's "channel" object back (the agent's and `grid pay`'s
// view of the terms): every stored field; "due" and "paid_through" are
// derived and ignored. Intervals, grace and expiry margin are at most a
// day. InvalidArgument naming the field.
Result<market::ChannelPayment> DecodeLeaseChannel(const json::value& channel);
json::object EncodeBalance(const ledger::Balance& b);
json::object EncodeTransfer(const ledger::Transfer& t);

// {"error":{"code":"…","message":"…"}}
std::string ErrorBody(const Status& status);
std::string Serialize(const json::value& v);

}  // namespace grid::api
