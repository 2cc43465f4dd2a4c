#include "agent/gpu/spec_fields.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "agent/gpu/gpu_models.h"

namespace grid::agent {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double Round1(double x) { return std::round(x * 10.0) / 10.0; }

// GB/s per lane, one direction, after line coding (128b/130b from gen 3).
double PcieLaneGBps(int gen) {
  switch (gen) {
    case 1: return 0.25;
    case 2: return 0.5;
    case 3: return 0.985;
    case 4: return 1.969;
    case 5: return 3.938;
    case 6: return 7.563;
    default: return 0;
  }
}

std::string Upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

}  // namespace

std::string GpuDisplayName(std::string_view nvml_name, uint32_t pci_device_id) {
  if (const GpuModel* m = FindGpuModel(nvml_name, pci_device_id)) {
    return std::string(m->display_name);
  }
  std::string_view n = nvml_name;
  for (std::string_view prefix : {"NVIDIA ", "GeForce ", "Tesla "}) {
    if (n.substr(0, prefix.size()) == prefix) n.remove_prefix(prefix.size());
  }
  std::string out(n);
  std::replace(out.begin(), out.end(), '-', ' ');
  return out;
}

std::optional<SpecValue> FindSpecField(const SpecFields& fields, std::string_view name) {
  for (const auto& [k, v] : fields) {
    if (k == name) return v;
  }
  return std::nullopt;
}

SpecFields BuildSpecFields(const GpuInventory& inv, const HostFacts& host,
                           const AgentSiteConfig& site) {
  SpecFields f;
  const std::vector<GpuInfo>& gpus = inv.gpus;
  const GpuInfo* first = gpus.empty() ? nullptr : &gpus.front();
  const GpuModel* model =
      first ? FindGpuModel(first->name, first->pci_device_id) : nullptr;
  // A known model only counts when every GPU is that model.
  for (const GpuInfo& g : gpus) {
    if (model && FindGpuModel(g.name, g.pci_device_id) != model) model = nullptr;
  }

  f.emplace_back("gpu_name", first ? GpuDisplayName(first->name, first->pci_device_id)
                                   : std::string());
  f.emplace_back("num_gpus", static_cast<int64_t>(gpus.size()));
  double gpu_ram = 0;
  if (model) {
    gpu_ram = model->memory_gb;
  } else if (first) {
    uint64_t least = first->memory_bytes;
    for (const GpuInfo& g : gpus) least = std::min(least, g.memory_bytes);
    gpu_ram = Round1(static_cast<double>(least) / kGiB);
  }
  f.emplace_back("gpu_ram", gpu_ram);
  f.emplace_back("cpu_cores", static_cast<int64_t>(host.cpu_cores));
  f.emplace_back("cpu_ram", Round1(static_cast<double>(host.ram_bytes) / kGiB));
  f.emplace_back("disk_space", Round1(static_cast<double>(host.disk_free_bytes) / kGiB));
  f.emplace_back("inet_up", site.inet_up_mbps);
  f.emplace_back("inet_down", site.inet_down_mbps);
  f.emplace_back("geolocation", Upper(site.geolocation));
  f.emplace_back("datacenter", site.datacenter);
  f.emplace_back("simulated", inv.simulated);
  f.emplace_back("driver_version", inv.driver_version);
  if (!inv.cuda_version.empty()) {
    double v = 0;
    const char* b = inv.cuda_version.data();
    const char* e = b + inv.cuda_version.size();
    auto [ptr, ec] = std::from_chars(b, e, v);
    if (ec == std::errc() && v > 0) f.emplace_back("cuda_vers", v);
  }
  if (first == nullptr) return f;

  int cc = 100000, pci_gen = 100, pci_width = 1000, links = 1000;
  uint32_t power_mw = UINT32_MAX;
  for (const GpuInfo& g : gpus) {
    cc = std::min(cc, g.cc_major * 100 + g.cc_minor * 10);
    pci_gen = std::min(pci_gen, g.pcie_gen);
    pci_width = std::min(pci_width, g.pcie_width);
    links = std::min(links, g.nvlink_active_links);
    power_mw = std::min(power_mw, g.power_limit_mw);
  }
  f.emplace_back("compute_cap", static_cast<int64_t>(cc));
  f.emplace_back("gpu_arch", std::string("nvidia"));
  std::string family(model ? model->family : GpuFamilyOf(cc / 100, (cc % 100) / 10));
  f.emplace_back("gpu_family", family);
  f.emplace_back("pci_gen", static_cast<int64_t>(pci_gen));
  f.emplace_back("pcie_bw", Round1(PcieLaneGBps(pci_gen) * pci_width));
  // Per-link rate: the model's own where known (NVLink 3 on GA102 boards is
  // narrower), else 50 GB/s (NVLink 2-4), 100 GB/s for Blackwell's NVLink 5.
  double per_link = family == "blackwell" ? 100.0 : 50.0;
  if (model && model->nvlink_links > 0) per_link = model->nvlink_bw_gbps / model->nvlink_links;
  f.emplace_back("bw_nvlink", Round1(per_link * links));
  f.emplace_back("power_limit", static_cast<int64_t>((power_mw + 500) / 1000));
  if (model) {
    f.emplace_back("gpu_mem_bw", model->mem_bw_gbps);
    f.emplace_back("total_flops", Round1(model->fp32_tflops * static_cast<double>(gpus.size())));
    f.emplace_back("fp16_tflops", model->fp16_tflops);
    f.emplace_back("tf32_tflops", model->tf32_tflops);
  }
  return f;
}

}  // namespace grid::agent
