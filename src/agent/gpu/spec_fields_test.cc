#include <string>

#include <gtest/gtest.h>

#include "agent/gpu/gpu_probe.h"
#include "agent/gpu/spec_fields.h"

namespace grid::agent {
namespace {

template <typename T>
T Get(const SpecFields& f, const char* name) {
  std::optional<SpecValue> v = FindSpecField(f, name);
  EXPECT_TRUE(v.has_value()) << name;
  if (!v) return T();
  EXPECT_TRUE(std::holds_alternative<T>(*v)) << name;
  return std::holds_alternative<T>(*v) ? std::get<T>(*v) : T();
}

HostFacts Host() {
  return HostFacts{"AMD EPYC 9654 96-Core Processor", 192, 1536ull << 30,
                   (2048ull << 30) + (512ull << 20), "Debian GNU/Linux 12 (bookworm)", "gpu01"};
}

TEST(SpecFields, SimulatedH100Machine) {
  auto p = NewSimulatedProbe("8xH100-SXM-80GB");
  ASSERT_TRUE(p.ok());
  GpuInventory inv = *(*p)->Inventory();
  SpecFields f = BuildSpecFields(inv, Host(), AgentSiteConfig{"de", true, 10000, 9000.5});
  EXPECT_EQ(Get<std::string>(f, "gpu_name"), "H100 SXM 80GB");
  EXPECT_EQ(Get<int64_t>(f, "num_gpus"), 8);
  EXPECT_EQ(Get<double>(f, "gpu_ram"), 80.0);
  EXPECT_EQ(Get<int64_t>(f, "cpu_cores"), 192);
  EXPECT_EQ(Get<double>(f, "cpu_ram"), 1536.0);
  EXPECT_EQ(Get<double>(f, "disk_space"), 2048.5);
  EXPECT_EQ(Get<double>(f, "inet_up"), 10000.0);
  EXPECT_EQ(Get<double>(f, "inet_down"), 9000.5);
  EXPECT_EQ(Get<std::string>(f, "geolocation"), "DE");
  EXPECT_EQ(Get<bool>(f, "datacenter"), true);
  EXPECT_EQ(Get<bool>(f, "simulated"), true);
  EXPECT_EQ(Get<std::string>(f, "driver_version"), inv.driver_version);
  EXPECT_DOUBLE_EQ(Get<double>(f, "cuda_vers"), 12.4);
  EXPECT_EQ(Get<int64_t>(f, "compute_cap"), 900);
  EXPECT_EQ(Get<std::string>(f, "gpu_arch"), "nvidia");
  EXPECT_EQ(Get<std::string>(f, "gpu_family"), "hopper");
  EXPECT_EQ(Get<int64_t>(f, "pci_gen"), 5);
  EXPECT_DOUBLE_EQ(Get<double>(f, "pcie_bw"), 63.0);
  EXPECT_DOUBLE_EQ(Get<double>(f, "bw_nvlink"), 900.0);
  EXPECT_EQ(Get<int64_t>(f, "power_limit"), 700);
  EXPECT_DOUBLE_EQ(Get<double>(f, "gpu_mem_bw"), 3350.0);
  EXPECT_DOUBLE_EQ(Get<double>(f, "total_flops"), 535.2);
  EXPECT_DOUBLE_EQ(Get<double>(f, "fp16_tflops"), 989.4);
  EXPECT_DOUBLE_EQ(Get<double>(f, "tf32_tflops"), 494.7);
  // Field names appear once each.
  for (size_t i = 0; i < f.size(); ++i) {
    for (size_t j = i + 1; j < f.size(); ++j) EXPECT_NE(f[i].first, f[j].first);
  }
}

TEST(SpecFields, ConsumerAndAmpereModels) {
  struct Case {
    const char* spec;
    const char* name;
    double ram;
    int64_t cc;
    double nvlink;
    double pcie_bw;
    double flops;
  } cases[] = {
      {"1xRTX-4090", "RTX 4090", 24, 890, 0, 31.5, 82.6},
      {"2xRTX-3090", "RTX 3090", 24, 860, 112.5, 31.5, 71.2},
      {"4xA100-SXM4-40GB", "A100 SXM4 40GB", 40, 800, 600, 31.5, 78.0},
      {"1xT4", "T4 16GB", 16, 750, 0, 15.8, 8.1},
  };
  for (const Case& c : cases) {
    auto p = NewSimulatedProbe(c.spec);
    ASSERT_TRUE(p.ok()) << c.spec;
    SpecFields f = BuildSpecFields(*(*p)->Inventory(), Host(), AgentSiteConfig{});
    SCOPED_TRACE(c.spec);
    EXPECT_EQ(Get<std::string>(f, "gpu_name"), c.name);
    EXPECT_EQ(Get<double>(f, "gpu_ram"), c.ram);
    EXPECT_EQ(Get<int64_t>(f, "compute_cap"), c.cc);
    EXPECT_DOUBLE_EQ(Get<double>(f, "bw_nvlink"), c.nvlink);
    EXPECT_DOUBLE_EQ(Get<double>(f, "pcie_bw"), c.pcie_bw);
    EXPECT_DOUBLE_EQ(Get<double>(f, "total_flops"), c.flops);
  }
}

TEST(SpecFields, NoGpus) {
  GpuInventory inv;
  inv.source = "none";
  SpecFields f = BuildSpecFields(inv, Host(), AgentSiteConfig{"us", false, 100, 500});
  EXPECT_EQ(Get<std::string>(f, "gpu_name"), "");
  EXPECT_EQ(Get<int64_t>(f, "num_gpus"), 0);
  EXPECT_EQ(Get<double>(f, "gpu_ram"), 0.0);
  EXPECT_EQ(Get<bool>(f, "simulated"), false);
  EXPECT_FALSE(FindSpecField(f, "compute_cap").has_value());
  EXPECT_FALSE(FindSpecField(f, "cuda_vers").has_value());
  EXPECT_FALSE(FindSpecField(f, "total_flops").has_value());
}

TEST(SpecFields, UnknownRealGpu) {
  GpuInventory inv;
  inv.source = "nvml";
  inv.cuda_version = "12.8";
  GpuInfo g;
  g.name = "NVIDIA RTX 6000 Ada Generation";
  g.pci_device_id = 0x26B110DE;
  g.memory_bytes = 51527024640ull;  // 49140 MiB
  g.cc_major = 8;
  g.cc_minor = 9;
  g.pcie_gen = 4;
  g.pcie_width = 8;
  g.power_limit_mw = 300000;
  inv.gpus = {g, g};
  inv.gpus[1].index = 1;
  SpecFields f = BuildSpecFields(inv, Host(), AgentSiteConfig{});
  EXPECT_EQ(Get<std::string>(f, "gpu_name"), "RTX 6000 Ada Generation");
  EXPECT_EQ(Get<int64_t>(f, "num_gpus"), 2);
  EXPECT_DOUBLE_EQ(Get<double>(f, "gpu_ram"), 48.0);
  EXPECT_EQ(Get<int64_t>(f, "compute_cap"), 890);
  EXPECT_EQ(Get<std::string>(f, "gpu_family"), "ada");
  EXPECT_DOUBLE_EQ(Get<double>(f, "cuda_vers"), 12.8);
  EXPECT_DOUBLE_EQ(Get<double>(f, "pcie_bw"), 15.8);
  EXPECT_DOUBLE_EQ(Get<double>(f, "bw_nvlink"), 0.0);
  EXPECT_FALSE(FindSpecField(f, "total_flops").has_value());
  EXPECT_FALSE(FindSpecField(f, "gpu_mem_bw").has_value());
}

TEST(SpecFields, DisplayNames) {
  EXPECT_EQ(GpuDisplayName("NVIDIA H100 80GB HBM3", 0), "H100 SXM 80GB");
  EXPECT_EQ(GpuDisplayName("nvidia geforce rtx 4090", 0), "RTX 4090");
  EXPECT_EQ(GpuDisplayName("NVIDIA GeForce RTX 5090", 0), "RTX 5090");
  EXPECT_EQ(GpuDisplayName("Tesla P100-PCIE-16GB", 0), "P100 PCIE 16GB");
  EXPECT_EQ(GpuDisplayName("Anything", 0x20B010DE), "A100 SXM4 40GB");
}

}  // namespace
}  // namespace grid::agent
