#include "query/testing/market_gen.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdint>

namespace grid::query_testing {
namespace {

using query::OfferRow;

constexpr int64_t kM = 1'000'000;  // one unit in millionths
constexpr int64_t kDayMs = 86'400'000;

uint64_t SplitMix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// A GPU model as sold. Sources: NVIDIA and AMD datasheets (memory, bandwidth,
// NVLink both directions, FP32 TFLOPS), compute capability from NVIDIA's
// CUDA GPU list; the same display names as agent/gpu/gpu_models.cc.
// dlperf is a Vast-style per-GPU deep-learning score; prices are per
// GPU-hour as seen on public GPU markets in 2025, in micro-USD.
struct GpuModel {
  std::string_view name;
  std::string_view arch;  // the vendor, as Vast uses gpu_arch
  int compute_cap;        // 890 = 8.9; 0: not CUDA (null)
  int64_t ram_gb;
  int64_t mem_bw_gbps;
  int64_t nvlink_gbps;    // per GPU, both directions; 0: none (null)
  int64_t fp32_milli;     // FP32 TFLOPS × 1000
  int64_t dlperf_milli;   // per GPU × 1000
  int pci_gen;            // the model's PCIe generation
  int64_t price_lo, price_hi;  // micro-USD per GPU-hour
  double weight;          // share of machines
  double datacenter_p;    // chance a machine of it is in a datacenter
  int kind;               // GPU count profile: 0 consumer, 1 PCIe server, 2 SXM (8-way boards)
  int min_driver;         // index into kDrivers of the oldest driver that runs it
};

// clang-format off
constexpr GpuModel kModels[] = {
  // name               arch      cc    GB   GB/s  NVLink  FP32      dlperf  gen  price lo/hi            weight  dc    kind drv
  {"RTX 4090",          "nvidia", 890,  24, 1008,    0,  82'600,   34'000, 4,   250'000,   700'000, 22.0, 0.15, 0, 2},
  {"RTX 3090",          "nvidia", 860,  24,  936,  113,  35'600,   18'000, 4,   120'000,   350'000, 16.0, 0.10, 0, 0},
  {"RTX 5090",          "nvidia", 1200, 32, 1792,    0, 104'800,   48'000, 5,   400'000, 1'000'000,  6.0, 0.20, 0, 6},
  {"RTX 3080",          "nvidia", 860,  10,  760,    0,  29'800,   13'000, 4,    60'000,   180'000,  4.0, 0.05, 0, 0},
  {"RTX A4000",         "nvidia", 860,  16,  448,    0,  19'200,   10'000, 4,   100'000,   220'000,  4.0, 0.40, 1, 0},
  {"RTX A5000",         "nvidia", 860,  24,  768,  113,  27'800,   14'000, 4,   150'000,   350'000,  4.0, 0.45, 1, 0},
  {"RTX A6000",         "nvidia", 860,  48,  768,  113,  38'700,   20'000, 4,   350'000,   800'000,  5.0, 0.55, 1, 0},
  {"A100 PCIe 40GB",    "nvidia", 800,  40, 1555,    0,  19'500,   28'000, 4,   600'000, 1'300'000,  3.0, 0.90, 1, 0},
  {"A100 PCIe 80GB",    "nvidia", 800,  80, 1935,    0,  19'500,   30'000, 4,   800'000, 1'600'000,  3.0, 0.90, 1, 1},
  {"A100 SXM4 40GB",    "nvidia", 800,  40, 1555,  600,  19'500,   30'000, 4,   700'000, 1'400'000,  2.0, 0.95, 2, 0},
  {"A100 SXM4 80GB",    "nvidia", 800,  80, 2039,  600,  19'500,   32'000, 4,   900'000, 1'900'000,  5.0, 0.95, 2, 1},
  {"H100 PCIe 80GB",    "nvidia", 900,  80, 2000,    0,  51'200,   60'000, 5, 1'500'000, 2'800'000,  3.0, 0.95, 1, 1},
  {"H100 SXM 80GB",     "nvidia", 900,  80, 3350,  900,  66'900,   75'000, 5, 1'700'000, 3'500'000,  7.0, 0.98, 2, 1},
  {"H200 SXM 141GB",    "nvidia", 900, 141, 4800,  900,  66'900,   85'000, 5, 2'300'000, 4'500'000,  2.0, 0.99, 2, 3},
  {"L40S 48GB",         "nvidia", 890,  48,  864,    0,  91'600,   40'000, 4,   600'000, 1'200'000,  4.0, 0.85, 1, 2},
  {"L4 24GB",           "nvidia", 890,  24,  300,    0,  30'300,   12'000, 4,   250'000,   600'000,  2.0, 0.85, 1, 2},
  {"V100 SXM2 32GB",    "nvidia", 700,  32,  900,  300,  15'700,   14'000, 3,   200'000,   600'000,  2.0, 0.80, 2, 0},
  {"T4 16GB",           "nvidia", 750,  16,  320,    0,   8'100,    6'000, 3,    80'000,   250'000,  2.0, 0.80, 1, 0},
  {"MI300X 192GB",      "amd",      0, 192, 5300,    0, 163'400,   80'000, 5, 1'800'000, 3'500'000,  1.0, 1.00, 2, 0},
};
// clang-format on

// Drivers and the newest CUDA each supports (release notes), oldest first.
struct Driver {
  std::string_view version;
  int64_t cuda;  // millionths: 12.4 = 12'400'000
  double weight;
};
constexpr Driver kDrivers[] = {
    {"470.256.02", 11'400'000, 0.5}, {"515.105.01", 11'700'000, 0.5}, {"525.147.05", 12'000'000, 1.0},
    {"535.183.01", 12'200'000, 3.0}, {"545.29.06", 12'300'000, 1.5},  {"550.127.05", 12'400'000, 4.0},
    {"560.35.03", 12'600'000, 2.5},  {"570.133.07", 12'800'000, 3.0}, {"575.57.08", 12'900'000, 1.5},
};
constexpr std::string_view kAmdDrivers[] = {"6.3.6", "6.8.5", "6.10.5"};

// Where GPUs are listed, weighted roughly by public GPU-market supply.
struct Country {
  std::string_view code;
  double weight;
};
constexpr Country kCountries[] = {
    {"US", 22}, {"DE", 6},  {"GB", 4},   {"CA", 4},   {"FR", 3},   {"NL", 3},   {"SE", 2},   {"NO", 1.5},
    {"FI", 1.5}, {"PL", 2}, {"CZ", 1},   {"ES", 1.5}, {"IT", 1.5}, {"CH", 1},   {"AT", 1},   {"BE", 1},
    {"DK", 1},  {"IE", 1},  {"PT", 0.5}, {"RO", 1},   {"BG", 0.7}, {"UA", 1},   {"RU", 1.5}, {"TR", 1},
    {"IL", 0.7}, {"IN", 2}, {"SG", 2},   {"JP", 2},   {"KR", 2},   {"TW", 1.5}, {"HK", 1.5}, {"CN", 3},
    {"VN", 1.5}, {"TH", 0.7}, {"ID", 0.5}, {"AU", 2}, {"NZ", 0.5}, {"BR", 1.5}, {"AR", 0.5}, {"MX", 0.7},
    {"CL", 0.5}, {"ZA", 0.5}, {"AE", 0.7}, {"EE", 0.5}, {"LT", 0.5}, {"IS", 0.5},
};

// GPU counts per machine by profile, with weights.
struct CountProfile {
  std::array<int, 8> counts;
  std::array<double, 8> weights;
};
constexpr CountProfile kProfiles[] = {
    {{1, 2, 3, 4, 6, 8, 10, 12}, {45, 20, 2, 17, 3, 11, 1, 1}},  // consumer rigs
    {{1, 2, 4, 8, 8, 8, 8, 8}, {22, 22, 30, 26, 0, 0, 0, 0}},     // PCIe servers
    {{8, 4, 2, 1, 8, 8, 8, 8}, {84, 10, 4, 2, 0, 0, 0, 0}},       // SXM boards
};

template <typename T, size_t N>
std::vector<double> WeightsOf(const T (&items)[N]) {
  std::vector<double> w;
  w.reserve(N);
  for (const T& x : items) w.push_back(x.weight);
  return w;
}

// Rounds v down to a multiple of step (v >= 0).
int64_t RoundDown(int64_t v, int64_t step) { return v / step * step; }

// value·10^6 / dph, floored; null when either is null or dph is 0 (the
// market's rule, market/offer_rows.h).
std::optional<int64_t> PerDph(const std::optional<int64_t>& value, const std::optional<int64_t>& dph) {
  if (!value || !dph || *dph == 0) return std::nullopt;
  Int128 q = static_cast<Int128>(*value) * kM / *dph;
  if (static_cast<Int128>(*value) * kM % *dph != 0 && (*value < 0) != (*dph < 0)) --q;
  return static_cast<int64_t>(q);
}

// a·n/g with 128-bit intermediates, floored (all inputs are non-negative).
int64_t Share(int64_t a, int n, int g) { return static_cast<int64_t>(static_cast<Int128>(a) * n / g); }

// What machines of one provider share: where, datacenter or not, verified,
// the network and how reliable the operator is.
struct Host {
  int64_t host_id = 0;
  std::string_view country;
  bool datacenter = false;
  bool verified = true;
  int64_t inet_up = 0, inet_down = 0;  // millionths of Mbps
  double reliability = 0.99;
  int machines_left = 0;  // how many more machines this host lists
};

class Generator {
 public:
  explicit Generator(const MarketGenOptions& o)
      : o_(o), rng_(o.seed), model_w_(WeightsOf(kModels)), country_w_(WeightsOf(kCountries)),
        driver_w_(WeightsOf(kDrivers)) {}

  Rng& rng() { return rng_; }

  GenMachine Machine(int64_t machine_id) {
    if (host_.machines_left <= 0) NewHost();
    --host_.machines_left;
    return MakeMachine(machine_id);
  }

  // A machine on a host of its own (the caller's Rng decides everything).
  GenMachine Standalone(int64_t machine_id) {
    NewHost();
    return MakeMachine(machine_id);
  }

 private:
  void NewHost() {
    host_ = Host{};
    host_.host_id = next_host_id_++;
    host_.country = kCountries[rng_.Weighted(country_w_)].code;
    // Few providers are datacenters, but they list many machines with many
    // GPUs each: about half the offers end up in datacenters. Models follow
    // the host's kind (PickModel).
    host_.datacenter = rng_.Chance(0.08);
    host_.verified = rng_.Chance(host_.datacenter ? 0.97 : 0.80);
    if (host_.datacenter) {
      static constexpr int64_t kLinks[] = {1000, 2500, 5000, 10000};
      int64_t link = kLinks[rng_.Uniform(0, 3)];
      host_.inet_down = RoundDown(link * kM / 100 * rng_.Uniform(55, 98), 100'000);
      host_.inet_up = RoundDown(link * kM / 100 * rng_.Uniform(50, 98), 100'000);
      host_.machines_left = static_cast<int>(rng_.Chance(0.25) ? rng_.Uniform(5, 60) : rng_.Uniform(1, 6));
    } else {
      host_.inet_down = rng_.Uniform(80, 1000) * kM + rng_.Uniform(0, 9) * 100'000;
      host_.inet_up = std::min<int64_t>(host_.inet_down, rng_.Uniform(15, 1000) * kM + rng_.Uniform(0, 9) * 100'000);
      host_.machines_left = static_cast<int>(rng_.Chance(0.8) ? 1 : rng_.Uniform(2, 6));
    }
    // Most operators are solid; a tail is not (flaky power, home links).
    double u = rng_.UnitDouble();
    if (u < 0.70) {
      host_.reliability = 0.98 + 0.0195 * std::sqrt(rng_.UnitDouble());
    } else if (u < 0.88) {
      host_.reliability = 0.95 + 0.03 * rng_.UnitDouble();
    } else {
      host_.reliability = 0.95 - 0.45 * rng_.UnitDouble() * rng_.UnitDouble();  // down to 0.5, mostly near 0.95
    }
    if (o_.messy && rng_.Chance(0.02)) host_.reliability = rng_.Chance(0.5) ? 0.0 : 1.0;
  }

  const GpuModel& PickModel() {
    // A datacenter host lists datacenter cards, a home host consumer ones:
    // redraw (a few times) a model whose datacenter share disagrees.
    for (int i = 0; i < 8; ++i) {
      const GpuModel& m = kModels[rng_.Weighted(model_w_)];
      double p = host_.datacenter ? m.datacenter_p : 1.0 - m.datacenter_p;
      if (rng_.Chance(p)) return m;
    }
    return kModels[rng_.Weighted(model_w_)];
  }

  GenMachine MakeMachine(int64_t machine_id) {
    const GpuModel& model = PickModel();
    const CountProfile& prof = kProfiles[model.kind];
    int g = prof.counts[rng_.Weighted(prof.weights)];

    GenMachine m;
    m.machine_id = machine_id;
    m.num_gpus = g;
    // Most list single GPUs; some only sell pairs, halves or the whole box.
    m.min_chunk = 1;
    if (g > 1 && rng_.Chance(0.3)) {
      int divisors[12], k = 0;
      for (int d = 2; d <= g; ++d)
        if (g % d == 0) divisors[k++] = d;
      m.min_chunk = divisors[rng_.Uniform(0, k - 1)];
    }
    double u = rng_.UnitDouble();
    m.free_gpus = u < 0.6 ? g : (u < 0.9 ? static_cast<int>(rng_.Uniform(0, g - 1)) : 0);
    m.online = rng_.Chance(0.97);
    if (rng_.Chance(0.5)) {
      // Listed until some date: hours to months ahead, on the minute.
      m.end_date_ms = RoundDown(o_.now_ms + rng_.Uniform(6 * 3'600'000, 120 * kDayMs), 60'000);
      if (o_.messy && rng_.Chance(0.08)) m.end_date_ms = o_.now_ms - rng_.Uniform(1, 10 * kDayMs);
    }

    OfferRow& r = m.base;
    r.machine_id = machine_id;
    r.host_id = host_.host_id;
    r.gpu_name = std::string(model.name);
    r.gpu_arch = std::string(model.arch);
    if (model.compute_cap) r.compute_cap = model.compute_cap;
    r.gpu_ram = model.ram_gb * kM;
    r.gpu_total_ram = model.ram_gb * kM * g;
    r.gpu_mem_bw = model.mem_bw_gbps * kM;
    if (model.nvlink_gbps) {
      // Consumer cards with a bridge only pair up.
      if (model.kind == 2 || (g >= 2 && rng_.Chance(0.3))) r.bw_nvlink = model.nvlink_gbps * kM;
    }
    if (model.arch == "nvidia") {
      size_t d;
      do {
        d = rng_.Weighted(driver_w_);
      } while (static_cast<int>(d) < model.min_driver);
      r.driver_version = std::string(kDrivers[d].version);
      r.cuda_vers = kDrivers[d].cuda;
    } else {
      r.driver_version = std::string(kAmdDrivers[rng_.Uniform(0, 2)]);
    }
    // Boards: a newer card in an older slot now and then; bandwidth as
    // measured (below the theoretical 16 lanes), sometimes 8 lanes.
    int gen = model.pci_gen;
    if (model.kind == 0 && gen > 3 && rng_.Chance(0.2)) --gen;
    r.pci_gen = gen * kM;
    static constexpr int64_t kLaneGbps[] = {0, 0, 0, 985'000, 1'969'000, 3'938'000};
    int64_t lanes = rng_.Chance(0.15) ? 8 : 16;
    r.pcie_bw = RoundDown(kLaneGbps[gen] * lanes / 100 * rng_.Uniform(70, 95), 100'000);
    r.total_flops = model.fp32_milli * 1000 * g;
    // Whole-machine DL score: the GPUs' sum, less for slow PCIe or CPUs.
    r.dlperf = RoundDown(model.dlperf_milli * 1000 * g / 100 * rng_.Uniform(82, 104), 1000);

    static constexpr int kCoresPerGpu[] = {4, 6, 8, 12, 16, 24, 32};
    int cores_per = kCoresPerGpu[rng_.Uniform(host_.datacenter ? 2 : 0, host_.datacenter ? 6 : 4)];
    r.cpu_cores = std::min(g * cores_per, 384);
    if (!host_.datacenter && g == 1) r.cpu_cores = kCoresPerGpu[rng_.Uniform(1, 5)];
    static constexpr int64_t kRamGb[] = {16, 32, 64, 128, 256, 512, 1024, 2048};
    int64_t ram = kRamGb[rng_.Uniform(host_.datacenter ? 4 : 1, host_.datacenter ? 7 : 4)];
    if (g >= 8 && host_.datacenter) ram = std::max<int64_t>(ram, 1024);
    r.cpu_ram = ram * kM - rng_.Uniform(0, 40) * 100'000;  // what the OS reports: a bit under
    r.cpu_cores_effective = r.cpu_cores.value() * kM;
    r.disk_space = static_cast<int64_t>(std::exp(std::log(100.0) + rng_.UnitDouble() * std::log(80.0))) * kM +
                   rng_.Uniform(0, 9) * 100'000;
    r.disk_bw = rng_.Uniform(400, 7000) * kM + rng_.Uniform(0, 9) * 100'000;
    r.inet_up = host_.inet_up;
    r.inet_down = host_.inet_down;
    r.geolocation = std::string(host_.country);
    r.datacenter = host_.datacenter;
    r.verified = host_.verified;
    double rel = std::clamp(host_.reliability - 0.01 * rng_.UnitDouble() * rng_.UnitDouble(), 0.0, 1.0);
    r.reliability = RoundDown(static_cast<int64_t>(rel * kM), 100);  // 4 decimals, as markets show it

    // Price per GPU-hour: log-uniform within the model's range, to 0.001 USD.
    double lo = std::log(static_cast<double>(model.price_lo)), hi = std::log(static_cast<double>(model.price_hi));
    int64_t price = RoundDown(static_cast<int64_t>(std::exp(lo + (hi - lo) * rng_.UnitDouble())), 1000);
    if (o_.messy && rng_.Chance(0.01)) price = 0;
    r.dph_per_gpu = price;
    r.storage_cost = rng_.Uniform(3, 30) * 10'000;  // 0.03-0.30 USD per GB-month
    if (rng_.Chance(0.12)) r.min_bid = RoundDown(price * rng_.Uniform(30, 70) / 100, 1000);
    r.rentable = true;
    r.rented = false;
    r.simulated = o_.messy && rng_.Chance(0.03);
    if (o_.messy) Mess(r);
    return m;
  }

  // Nulls in optional fields, other spellings of strings, odd names.
  void Mess(OfferRow& r) {
    auto maybe_null = [&](auto& field) {
      if (rng_.Chance(0.04)) field.reset();
    };
    maybe_null(r.host_id);
    maybe_null(r.gpu_name);
    maybe_null(r.gpu_ram);
    maybe_null(r.gpu_total_ram);
    maybe_null(r.gpu_arch);
    maybe_null(r.compute_cap);
    maybe_null(r.cuda_vers);
    maybe_null(r.driver_version);
    maybe_null(r.gpu_mem_bw);
    maybe_null(r.bw_nvlink);
    maybe_null(r.pcie_bw);
    maybe_null(r.pci_gen);
    maybe_null(r.total_flops);
    maybe_null(r.dlperf);
    maybe_null(r.cpu_cores);
    maybe_null(r.cpu_ram);
    maybe_null(r.disk_space);
    maybe_null(r.disk_bw);
    maybe_null(r.inet_up);
    maybe_null(r.inet_down);
    maybe_null(r.geolocation);
    maybe_null(r.datacenter);
    maybe_null(r.verified);
    maybe_null(r.reliability);
    maybe_null(r.dph_per_gpu);
    maybe_null(r.storage_cost);
    maybe_null(r.min_bid);
    maybe_null(r.simulated);
    if (rng_.Chance(0.01)) r.rentable.reset();
    if (rng_.Chance(0.01)) r.rented.reset();
    auto lower = [](std::string s) {
      for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return s;
    };
    if (r.gpu_name && rng_.Chance(0.05)) r.gpu_name = lower(*r.gpu_name);
    if (r.geolocation && rng_.Chance(0.05)) r.geolocation = lower(*r.geolocation);
    if (r.gpu_name && rng_.Chance(0.01)) {
      static constexpr std::string_view kOdd[] = {"GTX_1080 Ti", "Quadro \"P6000\"", "Tesla K80\\2", "any", "A100,SXM [x]"};
      r.gpu_name = std::string(kOdd[rng_.Uniform(0, 4)]);
    }
  }

  MarketGenOptions o_;
  Rng rng_;
  std::vector<double> model_w_, country_w_, driver_w_;
  Host host_;
  int64_t next_host_id_ = 1;
};

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = SplitMix(&x);
}

uint64_t Rng::Next() {
  uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

int64_t Rng::Uniform(int64_t lo, int64_t hi) {
  assert(lo <= hi);
  uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
  if (span == 0) return static_cast<int64_t>(Next());  // the whole range
  // Multiply-shift: bias below 2^-64 × span, irrelevant here.
  uint64_t r = static_cast<uint64_t>((static_cast<UInt128>(Next()) * span) >> 64);
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + r);
}

double Rng::UnitDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

size_t Rng::Weighted(std::span<const double> weights) {
  double total = 0;
  for (double w : weights) total += w;
  double x = UnitDouble() * total;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (x < weights[i]) return i;
    x -= weights[i];
  }
  // Rounding left x at the end: the last item with a weight.
  for (size_t i = weights.size(); i-- > 0;)
    if (weights[i] > 0) return i;
  return 0;
}

namespace {

// Appends the machine's offers to *out, at most `max` of them (the smallest
// chunks first).
void AppendOffers(const GenMachine& m, int64_t now_ms, size_t max, std::vector<OfferRow>* out) {
  const int g = m.num_gpus;
  const int c = std::max(1, m.min_chunk);
  const bool ended = m.end_date_ms != 0 && m.end_date_ms <= now_ms;
  for (int n = c; n <= g && max > 0; n += c, --max) {
    OfferRow& r = out->emplace_back(m.base);
    r.id = m.machine_id * 1000 + n;
    r.machine_id = m.machine_id;
    r.num_gpus = n;
    // Per chunk: null when what it derives from is null.
    auto times = [](const std::optional<int64_t>& v, int64_t k) -> std::optional<int64_t> {
      if (!v) return std::nullopt;
      return *v * k;
    };
    auto share = [&](const std::optional<int64_t>& v) -> std::optional<int64_t> {
      if (!v) return std::nullopt;
      return Share(*v, n, g);
    };
    r.gpu_total_ram = times(m.base.gpu_ram, n);
    r.total_flops = share(m.base.total_flops);
    r.dlperf = share(m.base.dlperf);
    r.cpu_cores_effective = share(times(m.base.cpu_cores, kM));
    r.dph_total = times(m.base.dph_per_gpu, n);
    r.min_bid = times(m.base.min_bid, n);
    r.dlperf_per_dphtotal = PerDph(r.dlperf, r.dph_total);
    r.flops_per_dphtotal = PerDph(r.total_flops, r.dph_total);
    bool rented = n > m.free_gpus;
    // A messy base may hold null rentable/rented: keep them null.
    if (m.base.rented) r.rented = rented;
    if (m.base.rentable) r.rentable = m.online && !rented && !ended;
    r.end_date_ms = m.end_date_ms;
    r.duration = query::DurationMillionths(m.end_date_ms, now_ms);
  }
}

// A million rows are ~650 MB written once: with 4 KiB pages half the time
// goes to page faults. Where transparent huge pages are on `madvise`, ask
// for them on the fresh buffer (best effort: nothing changes if refused).
void AskForHugePages(void* p, size_t bytes) {
  constexpr uintptr_t kHuge = 2u << 20;
  if (bytes < 32 * kHuge) return;
  uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (e > b) (void)madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
}

}  // namespace

std::vector<OfferRow> OffersOf(const GenMachine& m, int64_t now_ms) {
  std::vector<OfferRow> out;
  out.reserve(static_cast<size_t>(m.num_gpus / std::max(1, m.min_chunk)));
  AppendOffers(m, now_ms, SIZE_MAX, &out);
  return out;
}

std::vector<GenMachine> GenerateMachines(const MarketGenOptions& options) {
  Generator gen(options);
  std::vector<GenMachine> machines;
  int64_t offers = 0;
  int64_t id = options.first_machine_id;
  while (offers < options.offers) {
    GenMachine m = gen.Machine(id++);
    offers += m.num_gpus / m.min_chunk;
    machines.push_back(std::move(m));
  }
  return machines;
}

GenMachine RandomMachine(Rng& rng, int64_t machine_id, const MarketGenOptions& options) {
  MarketGenOptions o = options;
  o.seed = rng.Next();
  Generator gen(o);
  GenMachine m = gen.Standalone(machine_id);
  // Its own provider, apart from GenerateMachines' (numbered from 1).
  if (m.base.host_id) m.base.host_id = 1'000'000'000 + machine_id;
  return m;
}

std::vector<OfferRow> GenerateMarket(const MarketGenOptions& options) {
  // Machine by machine straight into the rows: the same machines as
  // GenerateMachines, without holding them all.
  Generator gen(options);
  std::vector<OfferRow> rows;
  const size_t want = static_cast<size_t>(std::max<int64_t>(0, options.offers));
  rows.reserve(want);
  AskForHugePages(rows.data(), want * sizeof(OfferRow));
  int64_t id = options.first_machine_id;
  while (rows.size() < want) AppendOffers(gen.Machine(id++), options.now_ms, want - rows.size(), &rows);
  return rows;
}

std::vector<std::string_view> GpuModelNames() {
  std::vector<std::string_view> out;
  for (const GpuModel& m : kModels) out.push_back(m.name);
  return out;
}

std::vector<std::string_view> CountryCodes() {
  std::vector<std::string_view> out;
  for (const Country& c : kCountries) out.push_back(c.code);
  return out;
}

}  // namespace grid::query_testing
