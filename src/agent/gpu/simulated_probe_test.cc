#include <set>
#include <string>

#include <gtest/gtest.h>

#include "agent/gpu/gpu_models.h"
#include "agent/gpu/gpu_probe.h"

namespace grid::agent {
namespace {

TEST(SimulatedProbe, ParsesSpecs) {
  struct Case {
    const char* spec;
    int count;
    const char* key;
  } cases[] = {
      {"8xH100-SXM-80GB", 8, "H100-SXM-80GB"},
      {"1xRTX-4090", 1, "RTX-4090"},
      {"4xA100-SXM4-40GB", 4, "A100-SXM4-40GB"},
      {"2Xh100_sxm_80gb", 2, "H100-SXM-80GB"},
      {" 64x rtx 4090 ", 64, "RTX-4090"},
      {"L40S", 1, "L40S"},
  };
  for (const Case& c : cases) {
    Result<SimulatedSpec> s = ParseSimulatedSpec(c.spec);
    ASSERT_TRUE(s.ok()) << c.spec << ": " << s.status().ToString();
    EXPECT_EQ(s->count, c.count) << c.spec;
    EXPECT_EQ(s->model->key, c.key) << c.spec;
  }
}

TEST(SimulatedProbe, RejectsBadSpecs) {
  for (const char* bad : {"", "0xH100-SXM-80GB", "65xH100-SXM-80GB", "8x", "8H100-SXM-80GB",
                          "99999999999999999999xT4", "-1xT4", "8xH100"}) {
    Result<std::unique_ptr<GpuProbe>> p = NewSimulatedProbe(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(SimulatedProbe, UnknownModelListsKnownModels) {
  Result<std::unique_ptr<GpuProbe>> p = NewSimulatedProbe("8xGTX-480");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_NE(p.status().message().find("GTX-480"), std::string::npos);
  for (const std::string& name : SimulatedModelNames()) {
    EXPECT_NE(p.status().message().find(name), std::string::npos) << name;
  }
}

TEST(SimulatedProbe, TableIsSane) {
  std::vector<std::string> names = SimulatedModelNames();
  EXPECT_GE(names.size(), 10u);
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  size_t n = 0;
  const GpuModel* models = GpuModels(&n);
  std::set<uint32_t> ids;
  for (size_t i = 0; i < n; ++i) {
    const GpuModel& m = models[i];
    SCOPED_TRACE(std::string(m.key));
    EXPECT_EQ(m.pci_device_id & 0xFFFF, 0x10DEu);
    EXPECT_TRUE(ids.insert(m.pci_device_id).second);
    // NVML's total is a little under the size sold, never far.
    EXPECT_LE(m.memory_mib, static_cast<uint64_t>(m.memory_gb) * 1024 + 1024);
    EXPECT_GE(m.memory_mib, static_cast<uint64_t>(m.memory_gb) * 1024 * 93 / 100);  // ECC reserve
    EXPECT_EQ(GpuFamilyOf(m.cc_major, m.cc_minor), m.family);
    EXPECT_GT(m.mem_bw_gbps, 0);
    EXPECT_GT(m.fp32_tflops, 0);
    EXPECT_GE(m.fp16_tflops, m.fp32_tflops);
    EXPECT_GT(m.power_limit_w, 0u);
    EXPECT_GE(m.pcie_gen, 3);
    EXPECT_EQ(m.nvlink_links == 0, m.nvlink_bw_gbps == 0);
    EXPECT_EQ(FindGpuModelByKey(m.key), &m);
    EXPECT_EQ(FindGpuModel(m.nvml_name, 0), &m);
    EXPECT_EQ(FindGpuModel("whatever", m.pci_device_id), &m);
  }
  EXPECT_EQ(FindGpuModel("NVIDIA Unknown", 0x123410DE), nullptr);
}

TEST(SimulatedProbe, InventoryCarriesRealFiguresAndSimulatedFlag) {
  auto p = NewSimulatedProbe("8xH100-SXM-80GB");
  ASSERT_TRUE(p.ok());
  Result<GpuInventory> inv = (*p)->Inventory();
  ASSERT_TRUE(inv.ok());
  EXPECT_TRUE(inv->simulated);
  EXPECT_EQ(inv->source, "simulated");
  EXPECT_FALSE(inv->driver_version.empty());
  EXPECT_EQ(inv->cuda_version, "12.4");
  EXPECT_NE(inv->note.find("simulated"), std::string::npos);
  ASSERT_EQ(inv->gpus.size(), 8u);
  std::set<std::string> uuids, buses;
  for (int i = 0; i < 8; ++i) {
    const GpuInfo& g = inv->gpus[static_cast<size_t>(i)];
    EXPECT_EQ(g.index, i);
    EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(g.uuid.rfind("GPU-SIMULATED-", 0), 0u) << g.uuid;
    EXPECT_EQ(g.memory_bytes, 81559ull << 20);
    EXPECT_EQ(g.cc_major, 9);
    EXPECT_EQ(g.cc_minor, 0);
    EXPECT_EQ(g.pci_device_id, 0x233010DEu);
    EXPECT_EQ(g.pcie_gen, 5);
    EXPECT_EQ(g.pcie_width, 16);
    EXPECT_EQ(g.nvlink_active_links, 18);
    EXPECT_EQ(g.power_limit_mw, 700000u);
    EXPECT_FALSE(g.serial.empty());
    uuids.insert(g.uuid);
    buses.insert(g.pci_bus_id);
  }
  EXPECT_EQ(uuids.size(), 8u);
  EXPECT_EQ(buses.size(), 8u);
}

TEST(SimulatedProbe, UuidsAreDeterministicPerSeedAndIndex) {
  auto a = NewSimulatedProbe("4xA100-SXM4-40GB", 7);
  auto b = NewSimulatedProbe("4xa100-sxm4-40gb", 7);
  auto c = NewSimulatedProbe("4xA100-SXM4-40GB", 8);
  auto wide = NewSimulatedProbe("64xA100-SXM4-40GB", 7);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && wide.ok());
  GpuInventory ia = *(*a)->Inventory(), ib = *(*b)->Inventory(), ic = *(*c)->Inventory();
  GpuInventory iw = *(*wide)->Inventory();
  std::set<std::string> all, buses;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ia.gpus[i].uuid, ib.gpus[i].uuid);
    EXPECT_EQ(ia.gpus[i].uuid, iw.gpus[i].uuid);  // same (seed, index)
    EXPECT_NE(ia.gpus[i].uuid, ic.gpus[i].uuid);  // another host
  }
  for (const GpuInfo& g : iw.gpus) {
    all.insert(g.uuid);
    buses.insert(g.pci_bus_id);
  }
  EXPECT_EQ(all.size(), 64u);
  EXPECT_EQ(buses.size(), 64u);
}

TEST(SimulatedProbe, HealthIsPlausibleAndDeterministic) {
  auto p = NewSimulatedProbe("2xRTX-4090");
  auto q = NewSimulatedProbe("2xRTX-4090");
  ASSERT_TRUE(p.ok() && q.ok());
  Result<std::vector<GpuHealth>> h1 = (*p)->Health();
  ASSERT_TRUE(h1.ok());
  ASSERT_EQ(h1->size(), 2u);
  for (const GpuHealth& h : *h1) {
    EXPECT_TRUE(h.ok);
    EXPECT_TRUE(h.problem.empty());
    ASSERT_TRUE(h.utilization_pct && h.memory_used_pct && h.temperature_c && h.power_mw &&
                h.energy_mj);
    EXPECT_LE(*h.utilization_pct, 100u);
    EXPECT_LE(*h.memory_used_pct, 100u);
    EXPECT_GE(*h.temperature_c, 20u);
    EXPECT_LE(*h.temperature_c, 90u);
    EXPECT_GT(*h.power_mw, 0u);
    EXPECT_LE(*h.power_mw, 450000u);
  }
  Result<std::vector<GpuHealth>> h2 = (*p)->Health();
  ASSERT_TRUE(h2.ok());
  EXPECT_GT(*(*h2)[0].energy_mj, *(*h1)[0].energy_mj);  // a counter only grows
  Result<std::vector<GpuHealth>> other = (*q)->Health();
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)[1].temperature_c, (*h1)[1].temperature_c);
  EXPECT_EQ((*other)[1].energy_mj, (*h1)[1].energy_mj);
}

}  // namespace
}  // namespace grid::agent
