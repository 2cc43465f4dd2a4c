// The simulated GPU probe: GPUs invented from the model table, for hosts
// without GPUs. Everything it returns says simulated.
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "agent/gpu/gpu_models.h"
#include "agent/gpu/gpu_probe.h"

namespace grid::agent {

GpuProbe::~GpuProbe() = default;

namespace {

// SplitMix64: a fixed, well-mixed function of (seed, index), so fake ids are
// stable across runs and differ between hosts.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

constexpr char kSimDriverVersion[] = "550.54.15";
constexpr char kSimCudaVersion[] = "12.4";

class SimulatedProbe final : public GpuProbe {
 public:
  SimulatedProbe(SimulatedSpec spec, uint64_t seed) : spec_(spec), seed_(seed) {
    energy_mj_.assign(static_cast<size_t>(spec_.count), 0);
  }

  Result<GpuInventory> Inventory() override {
    const GpuModel& m = *spec_.model;
    GpuInventory inv;
    inv.simulated = true;
    inv.source = "simulated";
    inv.driver_version = kSimDriverVersion;
    inv.cuda_version = kSimCudaVersion;
    inv.note = "simulated " + std::to_string(spec_.count) + "x " + std::string(m.display_name) +
               ": not real hardware, never verifiable";
    for (int i = 0; i < spec_.count; ++i) {
      GpuInfo g;
      g.index = i;
      g.name = std::string(m.nvml_name);
      uint64_t h = Mix(seed_ ^ Mix(static_cast<uint64_t>(i)));
      char buf[64];
      std::snprintf(buf, sizeof buf, "GPU-SIMULATED-%016llx-%04d",
                    static_cast<unsigned long long>(h), i);
      g.uuid = buf;
      std::snprintf(buf, sizeof buf, "SIM%013llu",
                    static_cast<unsigned long long>(h % 10000000000000ull));
      g.serial = buf;
      g.memory_bytes = m.memory_mib * 1024 * 1024;
      g.cc_major = m.cc_major;
      g.cc_minor = m.cc_minor;
      std::snprintf(buf, sizeof buf, "%08X:%02X:00.0", static_cast<unsigned>(i / 16),
                    static_cast<unsigned>(0x18 + (i % 16) * 0x0E));
      g.pci_bus_id = buf;
      g.pci_device_id = m.pci_device_id;
      g.pci_subsystem_id = (m.pci_device_id & 0xFFFF0000u) | 0x10DE;
      g.pcie_gen = m.pcie_gen;
      g.pcie_width = m.pcie_width;
      g.nvlink_active_links = m.nvlink_links;
      g.power_limit_mw = m.power_limit_w * 1000;
      inv.gpus.push_back(std::move(g));
    }
    return inv;
  }

  Result<std::vector<GpuHealth>> Health() override {
    const GpuModel& m = *spec_.model;
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<GpuHealth> out;
    for (int i = 0; i < spec_.count; ++i) {
      GpuHealth h;
      h.index = i;
      // An idle board: a few % busy, ~1% of memory (the driver's own),
      // in the low 30s °C, drawing about a tenth of its limit.
      h.utilization_pct = 0;
      h.memory_used_pct = 1;
      h.temperature_c = 31 + static_cast<uint32_t>(i % 4);
      uint32_t power_mw = m.power_limit_w * 100 + static_cast<uint32_t>(i % 4) * 1000;
      h.power_mw = power_mw;
      energy_mj_[static_cast<size_t>(i)] += power_mw;  // one second at that power
      h.energy_mj = energy_mj_[static_cast<size_t>(i)];
      h.ok = true;
      out.push_back(std::move(h));
    }
    return out;
  }

 private:
  const SimulatedSpec spec_;
  const uint64_t seed_;
  std::mutex mu_;
  std::vector<uint64_t> energy_mj_;  // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<GpuProbe>> NewSimulatedProbe(std::string_view spec, uint64_t host_seed) {
  GRID_ASSIGN_OR_RETURN(SimulatedSpec parsed, ParseSimulatedSpec(spec));
  return std::unique_ptr<GpuProbe>(new SimulatedProbe(parsed, host_seed));
}

}  // namespace grid::agent
