#include "market/offer_rows.h"

#include <cmath>

namespace grid::market {
namespace {

using query::FieldType;
using query::OfferRow;

constexpr ExtraSpecField kExtraFields[] = {
    {"gpu_arch", FieldType::kString},  {"compute_cap", FieldType::kInt},    {"cuda_vers", FieldType::kNumber},
    {"driver_version", FieldType::kString}, {"gpu_mem_bw", FieldType::kNumber}, {"bw_nvlink", FieldType::kNumber},
    {"pcie_bw", FieldType::kNumber},   {"pci_gen", FieldType::kNumber},     {"total_flops", FieldType::kNumber},
    {"dlperf", FieldType::kNumber},    {"disk_bw", FieldType::kNumber},
};

constexpr std::string_view kDerived[] = {
    "id", "machine_id", "host_id", "gpu_total_ram", "cpu_cores_effective", "verified", "reliability",
    "dph_total", "dph", "dph_per_gpu", "storage_cost", "min_bid", "duration", "dlperf_per_dphtotal", "dlperf_usd",
    "flops_per_dphtotal", "flops_usd", "rentable", "rented"};

const MachineSpec::Extra* FindExtra(const MachineSpec& spec, std::string_view name) {
  auto it = spec.extra.find(std::string(name));
  return it == spec.extra.end() ? nullptr : &it->second;
}

std::optional<int64_t> ExtraInt(const MachineSpec& spec, std::string_view name) {
  const MachineSpec::Extra* v = FindExtra(spec, name);
  if (!v) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  if (const auto* d = std::get_if<double>(v)) {
    if (std::isfinite(*d) && std::trunc(*d) == *d && std::fabs(*d) < 9.0e18) return static_cast<int64_t>(*d);
  }
  return std::nullopt;
}

std::optional<int64_t> ExtraNumber(const MachineSpec& spec, std::string_view name) {
  const MachineSpec::Extra* v = FindExtra(spec, name);
  if (!v) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(v)) {
    if (*i > INT64_MAX / 1'000'000 || *i < INT64_MIN / 1'000'000) return std::nullopt;
    return *i * 1'000'000;
  }
  if (const auto* d = std::get_if<double>(v)) return ToMillionths(*d);
  return std::nullopt;
}

std::optional<std::string> ExtraString(const MachineSpec& spec, std::string_view name) {
  const MachineSpec::Extra* v = FindExtra(spec, name);
  if (!v) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  return std::nullopt;
}

// x * n / d, rounded down, exact in 128 bits; nullopt if it does not fit.
std::optional<int64_t> Share(std::optional<int64_t> x, int64_t n, int64_t d) {
  if (!x || d <= 0) return std::nullopt;
  Int128 v = static_cast<Int128>(*x) * n;
  // Floor division (x may be negative for an odd spec).
  Int128 q = v / d;
  if (v % d != 0 && (v < 0)) --q;
  if (q > INT64_MAX || q < INT64_MIN) return std::nullopt;
  return static_cast<int64_t>(q);
}

// value (millionths) per USD/h of dph (micro-USD), in millionths, rounded down.
std::optional<int64_t> PerDph(std::optional<int64_t> value, Micros dph) {
  if (!value || dph <= 0) return std::nullopt;
  return Share(value, 1'000'000, dph);
}

}  // namespace

std::optional<int64_t> ToMillionths(double value) {
  if (!std::isfinite(value) || std::fabs(value) > 9.2e12) return std::nullopt;
  return static_cast<int64_t>(std::llround(value * 1e6));
}

std::span<const ExtraSpecField> ExtraSpecFields() { return kExtraFields; }

bool IsDerivedOfferField(std::string_view name) {
  for (auto d : kDerived)
    if (d == name) return true;
  return false;
}

std::optional<int64_t> HostIdOf(std::string_view provider) {
  if (provider.size() != 42 || !(provider.starts_with("0x") || provider.starts_with("0X"))) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 2; i < provider.size(); ++i) {
    char c = provider[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return std::nullopt;
    if (i < 2 + 13) v = v * 16 + d;
  }
  return v;
}

std::vector<OfferRow> OfferRowsOf(const Machine& m, int free_gpus, const OfferHostInfo& host, UnixMs now_ms) {
  std::vector<OfferRow> out;
  const Listing& l = m.listing;
  const MachineSpec& s = m.spec;
  if (!l.listed || m.removed || l.min_chunk < 1 || s.num_gpus < 1) return out;

  // What every chunk shares.
  OfferRow base;
  base.machine_id = m.id;
  base.host_id = HostIdOf(m.provider);
  base.gpu_name = s.gpu_name;
  base.gpu_ram = ToMillionths(s.gpu_ram);
  base.gpu_arch = ExtraString(s, "gpu_arch");
  base.compute_cap = ExtraInt(s, "compute_cap");
  base.cuda_vers = ExtraNumber(s, "cuda_vers");
  base.driver_version = ExtraString(s, "driver_version");
  base.gpu_mem_bw = ExtraNumber(s, "gpu_mem_bw");
  base.bw_nvlink = ExtraNumber(s, "bw_nvlink");
  base.pcie_bw = ExtraNumber(s, "pcie_bw");
  base.pci_gen = ExtraNumber(s, "pci_gen");
  base.cpu_cores = s.cpu_cores;
  base.cpu_ram = ToMillionths(s.cpu_ram);
  base.disk_space = ToMillionths(s.disk_space);
  base.disk_bw = ExtraNumber(s, "disk_bw");
  base.inet_up = ToMillionths(s.inet_up);
  base.inet_down = ToMillionths(s.inet_down);
  base.geolocation = s.geolocation;
  base.datacenter = s.datacenter;
  base.verified = m.verified;
  if (host.reliability) base.reliability = ToMillionths(*host.reliability);
  base.dph_per_gpu = l.price_per_gpu_hour;
  base.storage_cost = l.storage_cost;
  base.min_bid = std::nullopt;
  base.end_date_ms = l.end_date_ms;
  base.duration = query::DurationMillionths(l.end_date_ms, now_ms);
  base.simulated = s.simulated;
  const std::optional<int64_t> machine_flops = ExtraNumber(s, "total_flops");
  const std::optional<int64_t> machine_dlperf = ExtraNumber(s, "dlperf");
  const bool available = host.online && (l.end_date_ms == 0 || l.end_date_ms > now_ms);

  for (int n = l.min_chunk; n <= s.num_gpus; n += l.min_chunk) {
    OfferRow r = base;
    r.id = m.id * kOfferIdBase + n;
    r.num_gpus = n;
    r.gpu_total_ram = Share(base.gpu_ram, n, 1);
    r.cpu_cores_effective = Share(static_cast<int64_t>(s.cpu_cores) * 1'000'000, n, s.num_gpus);
    r.total_flops = Share(machine_flops, n, s.num_gpus);
    r.dlperf = Share(machine_dlperf, n, s.num_gpus);
    auto dph = CheckedMul(l.price_per_gpu_hour, n);
    r.dph_total = dph;
    if (dph) {
      r.dlperf_per_dphtotal = PerDph(r.dlperf, *dph);
      r.flops_per_dphtotal = PerDph(r.total_flops, *dph);
    }
    r.rentable = available && n <= free_gpus;
    r.rented = n > free_gpus;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace grid::market
