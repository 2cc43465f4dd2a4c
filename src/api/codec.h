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
#include <string>
#include <string_view>

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
// min_chunk, end_date (RFC 3339 or null).
json::object EncodeOffer(const query::OfferRow& row, const market::Machine& m);
// explain=1: {"offers", "clauses":[{"clause","default","excludes","alone"}],
// "near_misses":[{"clause","offer"}], "summary"}. `machine_of` gives each
// near miss's machine (nullptr: the offer is rendered without it).
json::object EncodeExplain(const query::Explain& ex,
                           const std::function<const market::Machine*(int64_t machine_id)>& machine_of);
json::object EncodeLease(const market::Lease& l, int64_t running_ms);
json::object EncodeBalance(const ledger::Balance& b);
json::object EncodeTransfer(const ledger::Transfer& t);

// {"error":{"code":"…","message":"…"}}
std::string ErrorBody(const Status& status);
std::string Serialize(const json::value& v);

}  // namespace grid::api
