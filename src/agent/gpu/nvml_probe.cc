// The NVML probe: the real GPUs through libnvidia-ml, loaded with dlopen.
//
// The few NVML types and functions used are declared here from the NVML API
// reference (nvml.h), so the build needs neither CUDA nor the driver. Every
// function is looked up with dlsym; one missing from an older driver only
// leaves its field empty.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "agent/gpu/gpu_probe.h"

namespace grid::agent {
namespace {

// ---- NVML declarations (nvml.h, API version 12) ----
using nvmlReturn_t = int;  // an enum in nvml.h: int-sized
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_GPU_IS_LOST = 15;
constexpr nvmlReturn_t NVML_ERROR_RESET_REQUIRED = 16;
using nvmlDevice_t = struct nvmlDevice_st*;
using nvmlEnableState_t = int;  // NVML_FEATURE_DISABLED 0, NVML_FEATURE_ENABLED 1
constexpr int NVML_TEMPERATURE_GPU = 0;  // nvmlTemperatureSensors_t

constexpr unsigned kNameBufferSize = 96;     // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned kUuidBufferSize = 96;     // NVML_DEVICE_UUID_V2_BUFFER_SIZE
constexpr unsigned kSerialBufferSize = 30;   // NVML_DEVICE_SERIAL_BUFFER_SIZE
constexpr unsigned kDriverBufferSize = 80;   // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
constexpr unsigned kMaxNvLinks = 18;         // NVML_NVLINK_MAX_LINKS

struct nvmlPciInfo_t {
  char busIdLegacy[16];     // NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;     // device << 16 | vendor
  unsigned int pciSubSystemId;
  char busId[32];           // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE
};

struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

extern "C" {
using InitFn = nvmlReturn_t (*)();
using ShutdownFn = nvmlReturn_t (*)();
using ErrorStringFn = const char* (*)(nvmlReturn_t);
using GetCountFn = nvmlReturn_t (*)(unsigned int*);
using GetHandleFn = nvmlReturn_t (*)(unsigned int, nvmlDevice_t*);
using GetStringFn = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int);
using GetMemoryFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*);
using GetCcFn = nvmlReturn_t (*)(nvmlDevice_t, int*, int*);
using GetPciFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlPciInfo_t*);
using GetUintFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*);
using GetNvLinkStateFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int, nvmlEnableState_t*);
using SystemStringFn = nvmlReturn_t (*)(char*, unsigned int);
using SystemIntFn = nvmlReturn_t (*)(int*);
using GetUtilizationFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlUtilization_t*);
using GetEnergyFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned long long*);
using GetTemperatureFn = nvmlReturn_t (*)(nvmlDevice_t, int, unsigned int*);
}

struct NvmlApi {
  InitFn init = nullptr;
  ShutdownFn shutdown = nullptr;
  ErrorStringFn error_string = nullptr;
  GetCountFn get_count = nullptr;
  GetHandleFn get_handle = nullptr;
  GetStringFn get_name = nullptr;
  GetStringFn get_uuid = nullptr;
  GetStringFn get_serial = nullptr;
  GetMemoryFn get_memory = nullptr;
  GetCcFn get_cc = nullptr;
  GetPciFn get_pci = nullptr;
  GetUintFn max_link_gen = nullptr;
  GetUintFn curr_link_gen = nullptr;
  GetUintFn max_link_width = nullptr;
  GetUintFn curr_link_width = nullptr;
  GetNvLinkStateFn nvlink_state = nullptr;
  GetUintFn power_limit = nullptr;
  SystemStringFn driver_version = nullptr;
  SystemIntFn cuda_version = nullptr;
  GetUtilizationFn utilization = nullptr;
  GetEnergyFn energy = nullptr;
  GetTemperatureFn temperature = nullptr;
  GetUintFn power_usage = nullptr;
};

// dlsym of the first name the library has.
template <typename Fn>
Fn Sym(void* lib, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (void* p = dlsym(lib, n)) return reinterpret_cast<Fn>(p);
  }
  return nullptr;
}

std::string CString(const char* buf, size_t size) {
  return std::string(buf, strnlen(buf, size));
}

class NvmlProbe final : public GpuProbe {
 public:
  explicit NvmlProbe(std::string library) : library_(std::move(library)) {}

  ~NvmlProbe() override {
    std::lock_guard<std::mutex> lock(mu_);
    Unload();
  }

  Result<GpuInventory> Inventory() override {
    std::lock_guard<std::mutex> lock(mu_);
    GpuInventory inv;
    inv.simulated = false;
    if (!EnsureLoaded()) {
      inv.source = "none";
      inv.note = load_error_;
      return inv;
    }
    inv.source = "nvml";
    if (api_.driver_version) {
      char buf[kDriverBufferSize] = {};
      if (api_.driver_version(buf, sizeof buf) == NVML_SUCCESS) {
        inv.driver_version = CString(buf, sizeof buf);
      }
    }
    if (api_.cuda_version) {
      int v = 0;
      if (api_.cuda_version(&v) == NVML_SUCCESS && v > 0) {
        // 12040 -> "12.4" (NVML_CUDA_DRIVER_VERSION_MAJOR/MINOR).
        inv.cuda_version = std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
      }
    }
    unsigned int count = 0;
    nvmlReturn_t rc = api_.get_count(&count);
    if (rc != NVML_SUCCESS) {
      return Unavailable("NVML: cannot count GPUs: " + ErrorString(rc));
    }
    for (unsigned int i = 0; i < count; ++i) {
      nvmlDevice_t dev = nullptr;
      rc = api_.get_handle(i, &dev);
      if (rc != NVML_SUCCESS) {
        // One bad GPU must not hide the others; the operator learns of it.
        if (!inv.note.empty()) inv.note += "; ";
        inv.note += "GPU " + std::to_string(i) + ": " + ErrorString(rc);
        continue;
      }
      inv.gpus.push_back(ReadInfo(static_cast<int>(i), dev));
    }
    return inv;
  }

  Result<std::vector<GpuHealth>> Health() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<GpuHealth> out;
    if (!EnsureLoaded()) return out;
    unsigned int count = 0;
    nvmlReturn_t rc = api_.get_count(&count);
    if (rc != NVML_SUCCESS) {
      return Unavailable("NVML: cannot count GPUs: " + ErrorString(rc));
    }
    for (unsigned int i = 0; i < count; ++i) {
      GpuHealth h;
      h.index = static_cast<int>(i);
      nvmlDevice_t dev = nullptr;
      rc = api_.get_handle(i, &dev);
      if (rc != NVML_SUCCESS) {
        h.ok = false;
        h.problem = ErrorString(rc);
        out.push_back(std::move(h));
        continue;
      }
      ReadHealth(dev, &h);
      out.push_back(std::move(h));
    }
    return out;
  }

 private:
  // Loads and initialises NVML unless it already is; on failure sets
  // load_error_ and leaves nothing loaded, so the next call tries again.
  bool EnsureLoaded() {
    if (initialized_) return true;
    dlerror();
    lib_ = dlopen(library_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) {
      const char* err = dlerror();
      load_error_ = "no NVIDIA driver found (" + std::string(err ? err : library_) + ")";
      return false;
    }
    NvmlApi a;
    a.init = Sym<InitFn>(lib_, {"nvmlInit_v2", "nvmlInit"});
    a.shutdown = Sym<ShutdownFn>(lib_, {"nvmlShutdown"});
    a.error_string = Sym<ErrorStringFn>(lib_, {"nvmlErrorString"});
    a.get_count = Sym<GetCountFn>(lib_, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
    a.get_handle = Sym<GetHandleFn>(lib_, {"nvmlDeviceGetHandleByIndex_v2",
                                           "nvmlDeviceGetHandleByIndex"});
    a.get_name = Sym<GetStringFn>(lib_, {"nvmlDeviceGetName"});
    a.get_uuid = Sym<GetStringFn>(lib_, {"nvmlDeviceGetUUID"});
    a.get_serial = Sym<GetStringFn>(lib_, {"nvmlDeviceGetSerial"});
    a.get_memory = Sym<GetMemoryFn>(lib_, {"nvmlDeviceGetMemoryInfo"});
    a.get_cc = Sym<GetCcFn>(lib_, {"nvmlDeviceGetCudaComputeCapability"});
    // v2 and v3 share the struct; v3 only fills busIdLegacy differently.
    a.get_pci = Sym<GetPciFn>(lib_, {"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2"});
    a.max_link_gen = Sym<GetUintFn>(lib_, {"nvmlDeviceGetMaxPcieLinkGeneration"});
    a.curr_link_gen = Sym<GetUintFn>(lib_, {"nvmlDeviceGetCurrPcieLinkGeneration"});
    a.max_link_width = Sym<GetUintFn>(lib_, {"nvmlDeviceGetMaxPcieLinkWidth"});
    a.curr_link_width = Sym<GetUintFn>(lib_, {"nvmlDeviceGetCurrPcieLinkWidth"});
    a.nvlink_state = Sym<GetNvLinkStateFn>(lib_, {"nvmlDeviceGetNvLinkState"});
    a.power_limit = Sym<GetUintFn>(lib_, {"nvmlDeviceGetPowerManagementLimit"});
    a.driver_version = Sym<SystemStringFn>(lib_, {"nvmlSystemGetDriverVersion"});
    a.cuda_version = Sym<SystemIntFn>(lib_, {"nvmlSystemGetCudaDriverVersion_v2",
                                             "nvmlSystemGetCudaDriverVersion"});
    a.utilization = Sym<GetUtilizationFn>(lib_, {"nvmlDeviceGetUtilizationRates"});
    a.energy = Sym<GetEnergyFn>(lib_, {"nvmlDeviceGetTotalEnergyConsumption"});
    a.temperature = Sym<GetTemperatureFn>(lib_, {"nvmlDeviceGetTemperature"});
    a.power_usage = Sym<GetUintFn>(lib_, {"nvmlDeviceGetPowerUsage"});
    if (a.init == nullptr || a.get_count == nullptr || a.get_handle == nullptr) {
      load_error_ = "no NVIDIA driver found (" + library_ +
                    " lacks nvmlInit, nvmlDeviceGetCount or nvmlDeviceGetHandleByIndex)";
      dlclose(lib_);
      lib_ = nullptr;
      return false;
    }
    api_ = a;
    nvmlReturn_t rc = api_.init();
    if (rc != NVML_SUCCESS) {
      load_error_ = "no NVIDIA driver found (NVML init: " + ErrorString(rc) + ")";
      api_ = NvmlApi();
      dlclose(lib_);
      lib_ = nullptr;
      return false;
    }
    initialized_ = true;
    load_error_.clear();
    return true;
  }

  void Unload() {
    if (initialized_ && api_.shutdown) api_.shutdown();
    initialized_ = false;
    api_ = NvmlApi();
    if (lib_ != nullptr) dlclose(lib_);
    lib_ = nullptr;
  }

  std::string ErrorString(nvmlReturn_t rc) const {
    if (api_.error_string) {
      if (const char* s = api_.error_string(rc)) return s;
    }
    return "NVML error " + std::to_string(rc);
  }

  GpuInfo ReadInfo(int index, nvmlDevice_t dev) {
    GpuInfo g;
    g.index = index;
    char buf[kNameBufferSize] = {};
    if (api_.get_name && api_.get_name(dev, buf, kNameBufferSize) == NVML_SUCCESS) {
      g.name = CString(buf, sizeof buf);
    }
    char ubuf[kUuidBufferSize] = {};
    if (api_.get_uuid && api_.get_uuid(dev, ubuf, kUuidBufferSize) == NVML_SUCCESS) {
      g.uuid = CString(ubuf, sizeof ubuf);
    }
    char sbuf[kSerialBufferSize] = {};
    if (api_.get_serial && api_.get_serial(dev, sbuf, kSerialBufferSize) == NVML_SUCCESS) {
      g.serial = CString(sbuf, sizeof sbuf);
    }
    nvmlMemory_t mem = {};
    if (api_.get_memory && api_.get_memory(dev, &mem) == NVML_SUCCESS) {
      g.memory_bytes = mem.total;
    }
    int major = 0, minor = 0;
    if (api_.get_cc && api_.get_cc(dev, &major, &minor) == NVML_SUCCESS) {
      g.cc_major = major;
      g.cc_minor = minor;
    }
    nvmlPciInfo_t pci = {};
    if (api_.get_pci && api_.get_pci(dev, &pci) == NVML_SUCCESS) {
      g.pci_bus_id = CString(pci.busId, sizeof pci.busId);
      if (g.pci_bus_id.empty()) g.pci_bus_id = CString(pci.busIdLegacy, sizeof pci.busIdLegacy);
      g.pci_device_id = pci.pciDeviceId;
      g.pci_subsystem_id = pci.pciSubSystemId;
    }
    // The Max variants give what device and slot together allow; the current
    // link drops to gen 1 when an idle GPU saves power, so it is a fallback.
    unsigned int v = 0;
    if (ReadUint(api_.max_link_gen, dev, &v) || ReadUint(api_.curr_link_gen, dev, &v)) {
      g.pcie_gen = static_cast<int>(v);
    }
    if (ReadUint(api_.max_link_width, dev, &v) || ReadUint(api_.curr_link_width, dev, &v)) {
      g.pcie_width = static_cast<int>(v);
    }
    if (api_.nvlink_state) {
      for (unsigned int link = 0; link < kMaxNvLinks; ++link) {
        nvmlEnableState_t active = 0;
        if (api_.nvlink_state(dev, link, &active) == NVML_SUCCESS && active == 1) {
          ++g.nvlink_active_links;
        }
      }
    }
    if (ReadUint(api_.power_limit, dev, &v)) g.power_limit_mw = v;
    return g;
  }

  static bool ReadUint(GetUintFn fn, nvmlDevice_t dev, unsigned int* out) {
    if (fn == nullptr) return false;
    unsigned int v = 0;
    if (fn(dev, &v) != NVML_SUCCESS) return false;
    *out = v;
    return true;
  }

  // Reads what it can; a lost GPU or one that needs a reset marks it not ok.
  void ReadHealth(nvmlDevice_t dev, GpuHealth* h) {
    auto check = [&](nvmlReturn_t rc) {
      if (rc == NVML_SUCCESS) return true;
      if ((rc == NVML_ERROR_GPU_IS_LOST || rc == NVML_ERROR_RESET_REQUIRED) && h->ok) {
        h->ok = false;
        h->problem = ErrorString(rc);
      }
      return false;
    };
    if (api_.utilization) {
      nvmlUtilization_t u = {};
      if (check(api_.utilization(dev, &u))) h->utilization_pct = u.gpu;
    }
    if (api_.get_memory) {
      nvmlMemory_t m = {};
      if (check(api_.get_memory(dev, &m)) && m.total > 0) {
        h->memory_used_pct = static_cast<uint32_t>((m.used * 100 + m.total / 2) / m.total);
      }
    }
    if (api_.temperature) {
      unsigned int t = 0;
      if (check(api_.temperature(dev, NVML_TEMPERATURE_GPU, &t))) h->temperature_c = t;
    }
    if (api_.energy) {
      unsigned long long e = 0;
      if (check(api_.energy(dev, &e))) h->energy_mj = e;
    }
    if (api_.power_usage) {
      unsigned int p = 0;
      if (check(api_.power_usage(dev, &p))) h->power_mw = p;
    }
  }

  const std::string library_;
  std::mutex mu_;
  // All below guarded by mu_.
  void* lib_ = nullptr;
  bool initialized_ = false;
  NvmlApi api_;
  std::string load_error_;
};

}  // namespace

std::unique_ptr<GpuProbe> NewNvmlProbe(std::string library) {
  return std::make_unique<NvmlProbe>(std::move(library));
}

}  // namespace grid::agent
