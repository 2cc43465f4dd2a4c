// The table of real NVIDIA GPU models the agent knows by name: what
// --simulate-gpus can invent, and where the search figures NVML cannot give
// (memory bandwidth, TFLOPS, the nominal memory size) come from for real GPUs.
//
// Figures are NVIDIA's published datasheet values for the stock board:
// TFLOPS are dense (no structured sparsity); fp16 and tf32 are tensor-core
// rates (fp16 with FP32 accumulate on GeForce/RTX boards), fp32 is the plain
// CUDA-core rate. memory_mib is the total NVML reports on a real board, which
// is a little under the size it is sold as (memory_gb).
//
// Thread safety: the table is immutable; every function here is pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grid::agent {

struct GpuModel {
  std::string_view key;           // the --simulate-gpus name: "H100-SXM-80GB"
  std::string_view nvml_name;     // what NVML reports: "NVIDIA H100 80GB HBM3"
  std::string_view display_name;  // gpu_name in search: "H100 SXM 80GB"
  std::string_view family;        // architecture: "hopper", "ampere", …
  uint32_t pci_device_id;         // NVML's combined id, device << 16 | 0x10DE
  uint64_t memory_mib;            // total as NVML reports it
  int memory_gb;                  // the size it is sold as
  int cc_major, cc_minor;
  int pcie_gen, pcie_width;
  int nvlink_links;               // NVLink links per GPU; 0: none
  double nvlink_bw_gbps;          // all links, both directions, GB/s
  uint32_t power_limit_w;         // default board power (TDP)
  double mem_bw_gbps;             // GB/s
  double fp32_tflops, tf32_tflops, fp16_tflops;
};

// All models, in the order SimulatedModelNames() lists them.
const GpuModel* GpuModels(size_t* count);

// By --simulate-gpus key, case-insensitive, '_' and ' ' read as '-'.
const GpuModel* FindGpuModelByKey(std::string_view key);

// The model of a real GPU: by PCI device id first (exact), then by the NVML
// name (case-insensitive). nullptr when unknown.
const GpuModel* FindGpuModel(std::string_view nvml_name, uint32_t pci_device_id);

struct SimulatedSpec {
  int count = 0;
  const GpuModel* model = nullptr;
};

// Parses "8xH100-SXM-80GB" (see NewSimulatedProbe for the grammar).
Result<SimulatedSpec> ParseSimulatedSpec(std::string_view spec);

// "hopper" from compute capability 9.0, … ; "" when unknown.
std::string_view GpuFamilyOf(int cc_major, int cc_minor);

}  // namespace grid::agent
