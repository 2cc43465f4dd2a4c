// OfferRowsOf: one machine's offers as the query language sees them (every
// field of query::OfferRow), for the live offer index (query/index.h).
//
// A listed, non-removed machine offers every chunk size n in {min_chunk,
// 2·min_chunk, …, num_gpus}, free or not, with id = machine_id·kOfferIdBase +
// n, so `rented=true` and `-n` searches see the whole machine:
//   rentable = n ≤ free GPUs, the host is online, and the end date (if any)
//              is after now;
//   rented   = n > free GPUs (some of the chunk's GPUs are leased).
// An unlisted or removed machine has no rows.
//
// Field by field (numbers in millionths, money in micro-USD, as query.h):
//   id, machine_id, num_gpus=n, gpu_name, geolocation, datacenter,
//   simulated, cpu_cores, cpu_ram, disk_space, inet_up, inet_down, gpu_ram
//                        from the spec (decimals rounded to millionths)
//   gpu_total_ram        gpu_ram × n
//   cpu_cores_effective  cpu_cores × n / num_gpus
//   total_flops, dlperf  the machine's figure (spec `extra`) × n / num_gpus:
//                        the chunk's share of the whole machine
//   gpu_arch, compute_cap, cuda_vers, driver_version, gpu_mem_bw, bw_nvlink,
//   pcie_bw, pci_gen, disk_bw
//                        from the spec's `extra` map (what the agent sends,
//                        agent/gpu/spec_fields.h), coerced to the field's
//                        type: an int where a number is wanted is taken
//                        exactly, an integral double where an int is wanted
//                        too; any other type is null
//   dph_total            n × price_per_gpu_hour;  dph_per_gpu the price
//   storage_cost         the listing's; min_bid null (no bids yet)
//   dlperf_per_dphtotal, flops_per_dphtotal
//                        dlperf (total_flops) per USD/h of dph_total, in
//                        millionths, rounded down: value·10^6 / dph_micro
//                        millionths; null when either is null or dph is 0
//   reliability          the host's (an agent's machine); null for a machine
//                        registered by hand, which nothing measures
//   verified             the machine's (Machine::verified: false, nothing is
//                        verified yet)
//   host_id              HostIdOf(provider)
//   duration, end_date_ms  query::DurationMillionths(end date, now)
//
// Pure: no I/O, no clock (now_ms comes in). Thread-safe.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "market/types.h"
#include "query/query.h"

namespace grid::market {

// What the broker knows of the machine's host at the time of the rows.
struct OfferHostInfo {
  bool online = true;                 // an agent's host that missed heartbeats is offline
  std::optional<double> reliability;  // nullopt: not measured (hand-registered)
};

std::vector<query::OfferRow> OfferRowsOf(const Machine& machine, int free_gpus, const OfferHostInfo& host,
                                         UnixMs now_ms);

// A stable integer per provider for the `host_id` field: the first 13 hex
// digits (52 bits) of its 0x address, so it is exact in JSON and JavaScript.
// nullopt if the provider is not a 0x address.
std::optional<int64_t> HostIdOf(std::string_view provider);

// Spec fields that machines carry only in MachineSpec::extra, with the query
// type each must have. DecodeMachineSpec rejects a spec whose value for one
// of these has the wrong type.
struct ExtraSpecField {
  std::string_view name;
  query::FieldType type;
};
std::span<const ExtraSpecField> ExtraSpecFields();

// Query fields the broker derives, which a spec may not set (also the
// aliases dph, dlperf_usd, flops_usd).
bool IsDerivedOfferField(std::string_view name);

// A decimal (GB, Mbps, …) in millionths, llround; nullopt when not finite
// or outside ±9.2e12.
std::optional<int64_t> ToMillionths(double value);

}  // namespace grid::market
