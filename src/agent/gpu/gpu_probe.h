// GpuProbe: how the grid agent learns which NVIDIA GPUs its host has and how
// they are doing.
//
// Two implementations sit behind the one interface:
//  - NewNvmlProbe() reads the real GPUs through NVML, loaded at run time with
//    dlopen("libnvidia-ml.so.1"); nothing of CUDA or NVML is needed to build.
//    A host without the driver is a normal state, not an error: Inventory()
//    answers OK with no GPUs, source "none" and a note that says why
//    ("no NVIDIA driver found (...)"), so the agent runs on.
//  - NewSimulatedProbe("8xH100-SXM-80GB") invents GPUs from a table of real
//    models with their real figures (gpu_models.h), for hosts without GPUs,
//    demos and tests. Its inventory says simulated = true; everything built
//    from it must carry that flag on, and such a machine can never be
//    verified.
//
// Contract: no exception leaves this module; failures come back as Status.
// Thread safety: every GpuProbe may be called from any number of threads at
// once (each implementation serialises its own state with a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grid::agent {

// What a GPU is: fixed for as long as the host runs. A field NVML could not
// read (not supported on this board, no permission, function missing from an
// old driver) is left empty or zero.
struct GpuInfo {
  int index = 0;                  // NVML index, 0-based
  std::string name;               // as NVML reports it: "NVIDIA H100 80GB HBM3"
  std::string uuid;               // "GPU-…"; simulated: "GPU-SIMULATED-…"
  std::string serial;             // board serial; often unreadable on GeForce
  uint64_t memory_bytes = 0;      // total framebuffer memory
  int cc_major = 0, cc_minor = 0; // CUDA compute capability
  std::string pci_bus_id;         // "00000000:18:00.0"
  uint32_t pci_device_id = 0;     // NVML's combined id: device << 16 | vendor (0x233010DE)
  uint32_t pci_subsystem_id = 0;
  int pcie_gen = 0;               // the fastest link this GPU and slot allow
  int pcie_width = 0;             // lanes
  int nvlink_active_links = 0;
  uint32_t power_limit_mw = 0;    // the enforced power management limit
};

// How a GPU is doing now. An empty optional: not readable on this GPU.
// ok = false when the GPU is lost or needs a reset; problem says which.
struct GpuHealth {
  int index = 0;
  std::optional<uint32_t> utilization_pct;  // GPU busy over the last sample period
  std::optional<uint32_t> memory_used_pct;  // framebuffer used / total
  std::optional<uint32_t> temperature_c;
  std::optional<uint64_t> energy_mj;        // since the driver loaded; monotonic
  std::optional<uint32_t> power_mw;
  bool ok = true;
  std::string problem;
};

struct GpuInventory {
  std::vector<GpuInfo> gpus;
  std::string driver_version;  // "550.54.15"
  std::string cuda_version;    // highest CUDA the driver supports: "12.4"
  bool simulated = false;
  std::string source;          // "nvml", "simulated" or "none"
  // Why there are no (or fewer) GPUs, for the operator:
  // "no NVIDIA driver found (libnvidia-ml.so.1: cannot open shared object file…)".
  std::string note;
};

class GpuProbe {
 public:
  virtual ~GpuProbe();
  // The GPUs and the driver. OK with no GPUs when there is no driver.
  virtual Result<GpuInventory> Inventory() = 0;
  // One entry per GPU of Inventory(), in index order; empty without a driver.
  virtual Result<std::vector<GpuHealth>> Health() = 0;
};

// NVML through dlopen(library). Nothing is loaded until the first call; a
// library that is absent or fails to initialise is tried again on the next
// call (a driver installed later is found without a restart). Once NVML is
// up it stays loaded until the probe is destroyed (nvmlShutdown, dlclose).
// Functions missing from an older library are tolerated: their fields stay
// empty. Only nvmlInit, nvmlDeviceGetCount and nvmlDeviceGetHandleByIndex
// (either version) are required.
std::unique_ptr<GpuProbe> NewNvmlProbe(std::string library = "libnvidia-ml.so.1");

// "8xH100-SXM-80GB", "1xRTX-4090", "4xA100-SXM4-40GB": count 1..64, then a
// model key from SimulatedModelNames(); case-insensitive, '_' or ' ' may stand
// for '-', and a bare model means one GPU. Unknown model or bad count:
// InvalidArgument naming the known models. host_seed makes the fake UUIDs
// and serials differ between simulated hosts; the same (seed, index) always
// gives the same UUID. Health() is deterministic: idle GPUs at plausible
// temperature and power, whose energy counter grows by one second of that
// power per call.
Result<std::unique_ptr<GpuProbe>> NewSimulatedProbe(std::string_view spec,
                                                    uint64_t host_seed = 0);

// The model keys --simulate-gpus accepts, in table order: "H100-SXM-80GB", …
std::vector<std::string> SimulatedModelNames();

}  // namespace grid::agent
