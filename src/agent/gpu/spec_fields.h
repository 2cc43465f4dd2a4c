// BuildSpecFields: the machine spec a grid agent registers, as search-field
// name -> value pairs (Vast.ai's search names), ready for
// market::MachineSpec (gpu_name … simulated) and its `extra` map (the rest).
// The value type is exactly MachineSpec::Extra, so no conversion is needed,
// yet this layer does not depend on market/.
//
// Pure: reads only its arguments. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "agent/gpu/gpu_probe.h"
#include "agent/gpu/host_facts.h"

namespace grid::agent {

using SpecValue = std::variant<bool, int64_t, double, std::string>;
using SpecFields = std::vector<std::pair<std::string, SpecValue>>;

// What only the operator knows, from the agent's configuration.
struct AgentSiteConfig {
  std::string geolocation;     // ISO 3166-1 alpha-2, e.g. "DE"
  bool datacenter = false;
  double inet_up_mbps = 0;
  double inet_down_mbps = 0;
};

// Fields, in this order; sizes in GiB (2^30 bytes) rounded to 0.1 unless said:
//   gpu_name     string  display name of GPU 0: "H100 SXM 80GB" for a known
//                        model, else NVML's name without "NVIDIA "/"GeForce "/"Tesla "
//   num_gpus     int
//   gpu_ram      double  per GPU, the least of all GPUs: a known model's sold
//                        size (80), else its memory in GiB
//   cpu_cores    int     logical CPUs
//   cpu_ram      double
//   disk_space   double  free under the state dir
//   inet_up, inet_down  double  Mbps (site)
//   geolocation  string (site, upper-cased)
//   datacenter   bool   (site)
//   simulated    bool    true for a simulated inventory: never verifiable
//   driver_version string
//   cuda_vers    double  12.4 (absent when unknown)
// and, when there is at least one GPU (each the least over all GPUs):
//   compute_cap  int     major*100 + minor*10: 900
//   gpu_arch     string  "nvidia" (Vast's meaning: the GPU vendor)
//   gpu_family   string  "hopper", "ampere", "ada", … ("" unknown)
//   pci_gen      int
//   pcie_bw      double  GB/s, one direction, from gen and width (theoretical)
//   bw_nvlink    double  GB/s per GPU, both directions, over active links
//   power_limit  int     W per GPU
// and, only for a known model (gpu_models.h):
//   gpu_mem_bw   double  GB/s
//   total_flops  double  FP32 TFLOPS summed over all GPUs (Vast's meaning)
//   fp16_tflops, tf32_tflops  double  dense tensor TFLOPS per GPU
SpecFields BuildSpecFields(const GpuInventory& inv, const HostFacts& host,
                           const AgentSiteConfig& site);

// The display name for a GPU: "H100 SXM 80GB" for NVML's
// "NVIDIA H100 80GB HBM3", "RTX 6000 Ada Generation" for an unknown
// "NVIDIA RTX 6000 Ada Generation".
std::string GpuDisplayName(std::string_view nvml_name, uint32_t pci_device_id);

// The field named, or nullopt. A convenience for callers and tests.
std::optional<SpecValue> FindSpecField(const SpecFields& fields, std::string_view name);

}  // namespace grid::agent
