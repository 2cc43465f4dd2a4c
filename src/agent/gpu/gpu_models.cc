#include "agent/gpu/gpu_models.h"

#include <charconv>
#include <string>
#include <vector>

#include "agent/gpu/gpu_probe.h"

namespace grid::agent {
namespace {

constexpr uint32_t Pci(uint32_t device) { return device << 16 | 0x10DE; }

// Sources: NVIDIA datasheets (H100, H200, A100, L40S, L4, A10, T4, V100,
// RTX A6000) and the Ada/Ampere GeForce whitepapers (RTX 4090, RTX 3090).
// NVLink bandwidth counts both directions, as NVIDIA quotes it.
constexpr GpuModel kModels[] = {
    // key, nvml name, display, family, pci id, MiB, GB, cc, pcie gen/width,
    // nvlink links/GBps, power W, mem GB/s, fp32, tf32, fp16 TFLOPS
    {"H100-SXM-80GB", "NVIDIA H100 80GB HBM3", "H100 SXM 80GB", "hopper", Pci(0x2330),
     81559, 80, 9, 0, 5, 16, 18, 900, 700, 3350, 66.9, 494.7, 989.4},
    {"H100-PCIE-80GB", "NVIDIA H100 PCIe", "H100 PCIe 80GB", "hopper", Pci(0x2331),
     81559, 80, 9, 0, 5, 16, 0, 0, 350, 2000, 51.2, 378.0, 756.0},
    {"H200-SXM-141GB", "NVIDIA H200", "H200 SXM 141GB", "hopper", Pci(0x2335),
     143771, 141, 9, 0, 5, 16, 18, 900, 700, 4800, 66.9, 494.7, 989.4},
    {"A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB", "ampere", Pci(0x20B2),
     81920, 80, 8, 0, 4, 16, 12, 600, 400, 2039, 19.5, 156.0, 312.0},
    {"A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB", "ampere", Pci(0x20B0),
     40960, 40, 8, 0, 4, 16, 12, 600, 400, 1555, 19.5, 156.0, 312.0},
    {"A100-PCIE-80GB", "NVIDIA A100 80GB PCIe", "A100 PCIe 80GB", "ampere", Pci(0x20B5),
     81920, 80, 8, 0, 4, 16, 0, 0, 300, 1935, 19.5, 156.0, 312.0},
    {"L40S", "NVIDIA L40S", "L40S 48GB", "ada", Pci(0x26B9),
     46068, 48, 8, 9, 4, 16, 0, 0, 350, 864, 91.6, 183.0, 362.1},
    {"L4", "NVIDIA L4", "L4 24GB", "ada", Pci(0x27B8),
     23034, 24, 8, 9, 4, 16, 0, 0, 72, 300, 30.3, 60.0, 121.0},
    {"RTX-4090", "NVIDIA GeForce RTX 4090", "RTX 4090", "ada", Pci(0x2684),
     24564, 24, 8, 9, 4, 16, 0, 0, 450, 1008, 82.6, 82.6, 165.2},
    {"RTX-3090", "NVIDIA GeForce RTX 3090", "RTX 3090", "ampere", Pci(0x2204),
     24576, 24, 8, 6, 4, 16, 4, 112.5, 350, 936, 35.6, 35.6, 71.0},
    {"RTX-A6000", "NVIDIA RTX A6000", "RTX A6000", "ampere", Pci(0x2230),
     49140, 48, 8, 6, 4, 16, 4, 112.5, 300, 768, 38.7, 77.4, 154.8},
    {"A10", "NVIDIA A10", "A10 24GB", "ampere", Pci(0x2236),
     23028, 24, 8, 6, 4, 16, 0, 0, 150, 600, 31.2, 62.5, 125.0},
    {"V100-SXM2-32GB", "Tesla V100-SXM2-32GB", "V100 SXM2 32GB", "volta", Pci(0x1DB5),
     32768, 32, 7, 0, 3, 16, 6, 300, 300, 900, 15.7, 0.0, 125.0},
    {"T4", "Tesla T4", "T4 16GB", "turing", Pci(0x1EB8),
     15360, 16, 7, 5, 3, 16, 0, 0, 70, 320, 8.1, 0.0, 65.0},
};

char Fold(char c) {
  if (c >= 'a' && c <= 'z') return static_cast<char>(c - 'a' + 'A');
  if (c == '_' || c == ' ') return '-';
  return c;
}

bool KeyEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Fold(a[i]) != Fold(b[i])) return false;
  }
  return true;
}

bool NameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

std::string KnownModels() {
  std::string out;
  for (const GpuModel& m : kModels) {
    if (!out.empty()) out += ", ";
    out += m.key;
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const GpuModel* GpuModels(size_t* count) {
  *count = std::size(kModels);
  return kModels;
}

std::vector<std::string> SimulatedModelNames() {
  std::vector<std::string> out;
  for (const GpuModel& m : kModels) out.emplace_back(m.key);
  return out;
}

const GpuModel* FindGpuModelByKey(std::string_view key) {
  for (const GpuModel& m : kModels) {
    if (KeyEquals(m.key, key)) return &m;
  }
  return nullptr;
}

const GpuModel* FindGpuModel(std::string_view nvml_name, uint32_t pci_device_id) {
  if (pci_device_id != 0) {
    for (const GpuModel& m : kModels) {
      if (m.pci_device_id == pci_device_id) return &m;
    }
  }
  for (const GpuModel& m : kModels) {
    if (NameEquals(m.nvml_name, nvml_name)) return &m;
  }
  return nullptr;
}

Result<SimulatedSpec> ParseSimulatedSpec(std::string_view spec) {
  std::string_view s = Trim(spec);
  SimulatedSpec out;
  out.count = 1;
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits > 0) {
    // "8xH100…": the count, then 'x'. A model key never starts with a digit.
    if (digits >= s.size() || (s[digits] != 'x' && s[digits] != 'X')) {
      return InvalidArgument("simulated GPUs \"" + std::string(spec) +
                             "\": expected COUNTxMODEL, e.g. 8xH100-SXM-80GB");
    }
    int count = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + digits, count);
    if (ec != std::errc() || ptr != s.data() + digits || count < 1 || count > 64) {
      return InvalidArgument("simulated GPUs \"" + std::string(spec) +
                             "\": the count must be 1 to 64");
    }
    out.count = count;
    s = Trim(s.substr(digits + 1));
  }
  if (s.empty()) {
    return InvalidArgument("simulated GPUs \"" + std::string(spec) +
                           "\": no model; known models: " + KnownModels());
  }
  out.model = FindGpuModelByKey(s);
  if (out.model == nullptr) {
    return InvalidArgument("simulated GPUs \"" + std::string(spec) + "\": unknown model \"" +
                           std::string(s) + "\"; known models: " + KnownModels());
  }
  return out;
}

std::string_view GpuFamilyOf(int cc_major, int cc_minor) {
  switch (cc_major) {
    case 3: return "kepler";
    case 5: return "maxwell";
    case 6: return "pascal";
    case 7: return cc_minor >= 5 ? "turing" : "volta";
    case 8: return cc_minor == 9 ? "ada" : "ampere";
    case 9: return "hopper";
    case 10:
    case 12: return "blackwell";
    default: return "";
  }
}

}  // namespace grid::agent
