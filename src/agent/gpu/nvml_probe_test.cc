// The NVML probe against an absent library and against fake libnvidia-ml
// builds compiled here at test time with the system C compiler (skipped when
// there is none).
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/gpu/gpu_probe.h"
#include "agent/gpu/spec_fields.h"

namespace grid::agent {
namespace {

namespace fs = std::filesystem;

// Two GPUs with canned values. Deliberately missing: nvmlDeviceGetSerial,
// the PCIe width functions, nvmlDeviceGetPowerUsage and the energy counter,
// which the probe must tolerate. GPU 1 is "lost" for temperature.
// -DFAIL_INIT makes nvmlInit_v2 fail as without a loaded kernel driver;
// -DNO_INIT leaves nvmlInit out altogether.
constexpr char kFakeNvml[] = R"C(
#include <string.h>
typedef struct { char legacy[16]; unsigned domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]; } Pci;
typedef struct { unsigned long long total, free, used; } Mem;
typedef struct { unsigned gpu, memory; } Util;
static int devs[2];
static int inited;
#ifndef NO_INIT
int nvmlInit_v2(void) {
#ifdef FAIL_INIT
  return 9;
#else
  inited = 1; return 0;
#endif
}
#endif
int nvmlShutdown(void) { inited = 0; return 0; }
const char* nvmlErrorString(int rc) {
  if (rc == 9) return "Driver Not Loaded";
  if (rc == 15) return "GPU is lost";
  return "Unknown Error";
}
int nvmlDeviceGetCount_v2(unsigned* n) { if (!inited) return 1; *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void** h) {
  if (i >= 2) return 2; *h = &devs[i]; return 0;
}
static int idx(void* h) { return h == &devs[1] ? 1 : 0; }
int nvmlDeviceGetName(void* h, char* b, unsigned n) {
  strncpy(b, "NVIDIA H100 80GB HBM3", n); return 0;
}
int nvmlDeviceGetUUID(void* h, char* b, unsigned n) {
  strncpy(b, idx(h) ? "GPU-11111111-2222-3333-4444-555555555555"
                    : "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", n);
  return 0;
}
int nvmlDeviceGetMemoryInfo(void* h, Mem* m) {
  m->total = 85520809984ULL; m->used = 85520809984ULL / 4; m->free = m->total - m->used; return 0;
}
int nvmlDeviceGetCudaComputeCapability(void* h, int* a, int* b) { *a = 9; *b = 0; return 0; }
int nvmlDeviceGetPciInfo_v3(void* h, Pci* p) {
  memset(p, 0, sizeof *p);
  strcpy(p->busId, idx(h) ? "00000000:2A:00.0" : "00000000:18:00.0");
  p->bus = idx(h) ? 0x2a : 0x18;
  p->pciDeviceId = 0x233010DE; p->pciSubSystemId = 0x16C110DE; return 0;
}
int nvmlDeviceGetMaxPcieLinkGeneration(void* h, unsigned* g) { *g = 5; return 0; }
int nvmlDeviceGetNvLinkState(void* h, unsigned link, int* on) {
  if (link >= 18) return 2; *on = link < 18 ? 1 : 0; return 0;
}
int nvmlDeviceGetPowerManagementLimit(void* h, unsigned* mw) { *mw = 700000; return 0; }
int nvmlSystemGetDriverVersion(char* b, unsigned n) { strncpy(b, "550.54.15", n); return 0; }
int nvmlSystemGetCudaDriverVersion_v2(int* v) { *v = 12040; return 0; }
int nvmlDeviceGetUtilizationRates(void* h, Util* u) { u->gpu = 42; u->memory = 7; return 0; }
int nvmlDeviceGetTemperature(void* h, int sensor, unsigned* t) {
  if (idx(h)) return 15; *t = 55; return 0;
}
)C";

class FakeNvml : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("command -v cc >/dev/null 2>&1") != 0) return;
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("grid_fake_nvml_" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    fs::path src = *dir_ / "fake_nvml.c";
    std::ofstream(src) << kFakeNvml;
    for (const char* variant : {"ok", "FAIL_INIT", "NO_INIT"}) {
      std::string def = std::string(variant) == "ok" ? "" : std::string(" -D") + variant;
      std::string out = (*dir_ / ("libfake_" + std::string(variant) + ".so")).string();
      std::string cmd = "cc -shared -fPIC -o '" + out + "'" + def + " '" + src.string() +
                        "' 2>'" + (*dir_ / "cc.log").string() + "'";
      if (std::system(cmd.c_str()) != 0) {
        ADD_FAILURE() << "cc failed: " << cmd;
        return;
      }
    }
    built_ = true;
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) {
      std::error_code ec;
      fs::remove_all(*dir_, ec);
      delete dir_;
      dir_ = nullptr;
    }
  }
  void SetUp() override {
    if (!built_) GTEST_SKIP() << "no C compiler to build a fake libnvidia-ml";
  }
  static std::string Lib(const char* variant) {
    return (*dir_ / ("libfake_" + std::string(variant) + ".so")).string();
  }

  static inline fs::path* dir_ = nullptr;
  static inline bool built_ = false;
};

TEST(NvmlProbe, AbsentLibraryIsNoDriverNotAnError) {
  auto probe = NewNvmlProbe("/nonexistent/libnvidia-ml.so.1");
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_TRUE(inv->gpus.empty());
  EXPECT_EQ(inv->source, "none");
  EXPECT_FALSE(inv->simulated);
  EXPECT_EQ(inv->note.rfind("no NVIDIA driver found (", 0), 0u) << inv->note;
  EXPECT_NE(inv->note.find("/nonexistent/libnvidia-ml.so.1"), std::string::npos) << inv->note;
  Result<std::vector<GpuHealth>> health = probe->Health();
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->empty());
  // Asking again is as calm.
  EXPECT_TRUE(probe->Inventory().ok());
}

TEST(NvmlProbe, DefaultLibraryNeverFails) {
  // On a host with the driver this finds real GPUs; without, none. Either way OK.
  auto probe = NewNvmlProbe();
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  if (inv->source == "none") {
    EXPECT_TRUE(inv->gpus.empty());
    EXPECT_NE(inv->note.find("no NVIDIA driver found"), std::string::npos);
  } else {
    EXPECT_EQ(inv->source, "nvml");
    for (const GpuInfo& g : inv->gpus) {
      EXPECT_FALSE(g.name.empty());
      EXPECT_EQ(g.uuid.rfind("GPU-", 0), 0u);
      EXPECT_GT(g.memory_bytes, 0u);
      EXPECT_GT(g.cc_major, 0);
    }
    EXPECT_TRUE(probe->Health().ok());
  }
}

TEST_F(FakeNvml, ReadsInventory) {
  auto probe = NewNvmlProbe(Lib("ok"));
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->source, "nvml");
  EXPECT_FALSE(inv->simulated);
  EXPECT_EQ(inv->driver_version, "550.54.15");
  EXPECT_EQ(inv->cuda_version, "12.4");
  ASSERT_EQ(inv->gpus.size(), 2u);
  const GpuInfo& g = inv->gpus[0];
  EXPECT_EQ(g.index, 0);
  EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(g.uuid, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
  EXPECT_EQ(inv->gpus[1].uuid, "GPU-11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(g.serial, "");  // nvmlDeviceGetSerial missing: tolerated
  EXPECT_EQ(g.memory_bytes, 85520809984ull);
  EXPECT_EQ(g.cc_major, 9);
  EXPECT_EQ(g.cc_minor, 0);
  EXPECT_EQ(g.pci_bus_id, "00000000:18:00.0");
  EXPECT_EQ(inv->gpus[1].pci_bus_id, "00000000:2A:00.0");
  EXPECT_EQ(g.pci_device_id, 0x233010DEu);
  EXPECT_EQ(g.pci_subsystem_id, 0x16C110DEu);
  EXPECT_EQ(g.pcie_gen, 5);
  EXPECT_EQ(g.pcie_width, 0);  // no width function in the fake
  EXPECT_EQ(g.nvlink_active_links, 18);
  EXPECT_EQ(g.power_limit_mw, 700000u);
}

TEST_F(FakeNvml, ReadsHealthAndMarksLostGpu) {
  auto probe = NewNvmlProbe(Lib("ok"));
  Result<std::vector<GpuHealth>> health = probe->Health();
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  ASSERT_EQ(health->size(), 2u);
  const GpuHealth& h = (*health)[0];
  EXPECT_TRUE(h.ok);
  EXPECT_EQ(h.utilization_pct, 42u);
  EXPECT_EQ(h.memory_used_pct, 25u);
  EXPECT_EQ(h.temperature_c, 55u);
  EXPECT_FALSE(h.energy_mj.has_value());  // missing from the fake
  EXPECT_FALSE(h.power_mw.has_value());
  const GpuHealth& lost = (*health)[1];
  EXPECT_EQ(lost.index, 1);
  EXPECT_FALSE(lost.ok);
  EXPECT_EQ(lost.problem, "GPU is lost");
  EXPECT_FALSE(lost.temperature_c.has_value());
  EXPECT_EQ(lost.utilization_pct, 42u);
}

TEST_F(FakeNvml, InitFailureIsNoDriverWithNvmlError) {
  auto probe = NewNvmlProbe(Lib("FAIL_INIT"));
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok());
  EXPECT_TRUE(inv->gpus.empty());
  EXPECT_EQ(inv->source, "none");
  EXPECT_EQ(inv->note, "no NVIDIA driver found (NVML init: Driver Not Loaded)");
  ASSERT_TRUE(probe->Health().ok());
  EXPECT_TRUE(probe->Health()->empty());
}

TEST_F(FakeNvml, LibraryWithoutInitIsNoDriver) {
  auto probe = NewNvmlProbe(Lib("NO_INIT"));
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->source, "none");
  EXPECT_NE(inv->note.find("lacks nvmlInit"), std::string::npos) << inv->note;
}

TEST_F(FakeNvml, ConcurrentCallsAreSafe) {
  auto probe = NewNvmlProbe(Lib("ok"));
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        Result<GpuInventory> inv = probe->Inventory();
        Result<std::vector<GpuHealth>> h = probe->Health();
        if (inv.ok() && inv->gpus.size() == 2 && h.ok() && h->size() == 2) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 200);
}

TEST_F(FakeNvml, SpecFieldsFromRealInventory) {
  auto probe = NewNvmlProbe(Lib("ok"));
  Result<GpuInventory> inv = probe->Inventory();
  ASSERT_TRUE(inv.ok());
  HostFacts host{"Test CPU", 32, 256ull << 30, 1000ull << 30, "Linux", "h"};
  SpecFields f = BuildSpecFields(*inv, host, AgentSiteConfig{"de", true, 1000, 1000});
  EXPECT_EQ(std::get<std::string>(*FindSpecField(f, "gpu_name")), "H100 SXM 80GB");
  EXPECT_EQ(std::get<int64_t>(*FindSpecField(f, "num_gpus")), 2);
  EXPECT_EQ(std::get<double>(*FindSpecField(f, "gpu_ram")), 80.0);
  EXPECT_EQ(std::get<bool>(*FindSpecField(f, "simulated")), false);
  EXPECT_EQ(std::get<double>(*FindSpecField(f, "cuda_vers")), 12.4);
  EXPECT_EQ(std::get<int64_t>(*FindSpecField(f, "pci_gen")), 5);
  EXPECT_EQ(std::get<double>(*FindSpecField(f, "pcie_bw")), 0.0);  // width unknown
  EXPECT_EQ(std::get<double>(*FindSpecField(f, "bw_nvlink")), 900.0);
}

}  // namespace
}  // namespace grid::agent
