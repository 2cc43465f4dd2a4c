// A synthetic GPU market for tests and benchmarks of offer search: real GPU
// models with their real specs, per-model price ranges, ~45 weighted
// countries, providers owning several machines, a realistic reliability
// distribution, and machines chunked into offers the way the market does it
// (market/offer_rows.h):
//
//   a machine with num_gpus G and min_chunk c offers every n in
//   {c, 2c, …, G}, id = machine_id·1000 + n; dph_total = n·price,
//   gpu_total_ram = n·gpu_ram, total_flops, dlperf and cpu_cores_effective
//   are the machine's figure × n / G; dlperf_per_dphtotal and
//   flops_per_dphtotal are value·10^6 / dph_total (null when dph is 0);
//   rented = n > free GPUs; rentable = online, not rented and the end date
//   (if any) after now; duration = DurationMillionths(end_date_ms, now).
//
// Values are in OfferRow's units (query.h): kNumber and kMoney in
// millionths, strings as display strings ("RTX 4090", "H100 SXM 80GB",
// "DE"). Generation uses its own PRNG and integer arithmetic for every
// stored value, so a seed gives the same market on every platform.
//
// Two flavours: the default is a market as it looks (for benchmarks);
// `messy` adds what a differential test needs to be searching: nulls in
// every optional field, strings in other cases ("rtx 4090", "de"), names
// with `_` and quotes, zero prices, end dates in the past, simulated
// machines, extreme reliabilities.
//
// Pure: no I/O, no clock (now_ms comes in). Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "query/query.h"

namespace grid::query_testing {

// A small, fast, portable PRNG (xoshiro256** seeded by splitmix64), so a
// seed means the same values everywhere (std:: distributions do not).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [lo, hi] (inclusive); lo <= hi.
  int64_t Uniform(int64_t lo, int64_t hi);
  double UnitDouble();  // [0, 1)
  bool Chance(double p) { return UnitDouble() < p; }
  // An index drawn with probability weights[i] / sum(weights).
  size_t Weighted(std::span<const double> weights);
  template <typename T>
  const T& Pick(std::span<const T> items) {
    return items[static_cast<size_t>(Uniform(0, static_cast<int64_t>(items.size()) - 1))];
  }

 private:
  uint64_t s_[4];
};

struct MarketGenOptions {
  uint64_t seed = 1;
  // Offers to generate: machines are added until there are this many, and
  // the last machine's largest chunks are dropped to land exactly on it.
  int64_t offers = 10'000;
  // "Now" for end dates, durations and rentable. 2026-06-01T00:00:00Z.
  int64_t now_ms = 1'780'272'000'000;
  // The first machine id; ids run up from it.
  int64_t first_machine_id = 1;
  // Nulls, odd strings, zero prices, past end dates: see the top comment.
  bool messy = false;
};

// A machine as the generator made it: what its offers derive from. Tests
// change free_gpus, online, price, min_chunk or end_date_ms and call
// OffersOf again, like leases and listings change a real market.
struct GenMachine {
  int64_t machine_id = 0;
  int num_gpus = 1;
  int min_chunk = 1;    // divides num_gpus
  int free_gpus = 1;    // 0..num_gpus; chunks above it are rented
  bool online = true;
  int64_t end_date_ms = 0;  // 0: none
  // Every field of the whole machine (id, num_gpus and the per-chunk
  // fields are set per offer by OffersOf). dph_per_gpu is the price;
  // gpu_total_ram, total_flops, dlperf and cpu_cores_effective hold the
  // whole machine's figures; min_bid, when set, is per GPU.
  query::OfferRow base;
};

// The machines of a market (options.offers is a target for their offers;
// the last machine may offer fewer chunks than it has, see GenerateMarket).
std::vector<GenMachine> GenerateMachines(const MarketGenOptions& options);

// A new machine, as GenerateMachines would make it, with its own host.
GenMachine RandomMachine(Rng& rng, int64_t machine_id, const MarketGenOptions& options);

// One machine's offers at now_ms, in chunk order (n ascending).
std::vector<query::OfferRow> OffersOf(const GenMachine& machine, int64_t now_ms);

// Exactly options.offers offers: OffersOf every machine of
// GenerateMachines, the last one cut to fit. Deterministic for a seed.
std::vector<query::OfferRow> GenerateMarket(const MarketGenOptions& options);

// The GPU models the generator uses, by display name, for queries.
std::vector<std::string_view> GpuModelNames();
// The countries it uses (ISO 3166-1 alpha-2, upper case).
std::vector<std::string_view> CountryCodes();

}  // namespace grid::query_testing
