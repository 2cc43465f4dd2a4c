#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/gpu/host_facts.h"

namespace grid::agent {
namespace {

namespace fs = std::filesystem;

TEST(HostFacts, ProbesThisHost) {
  Result<HostFacts> f = ProbeHost("/tmp");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_FALSE(f->cpu_model.empty());
  EXPECT_GE(f->cpu_cores, 1);
  EXPECT_GT(f->ram_bytes, 64ull << 20);
  EXPECT_GT(f->disk_free_bytes, 0u);
  EXPECT_NE(f->os.find("Linux"), std::string::npos) << f->os;
  EXPECT_FALSE(f->hostname.empty());
}

TEST(HostFacts, StateDirNotYetCreatedMeasuresItsParent) {
  Result<HostFacts> f = ProbeHost("/tmp/grid-does-not-exist-" + std::to_string(getpid()) + "/a/b/");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_GT(f->disk_free_bytes, 0u);
  Result<HostFacts> rel = ProbeHost("relative/not/there");
  ASSERT_TRUE(rel.ok());
  EXPECT_GT(rel->disk_free_bytes, 0u);
}

TEST(HostFacts, ParsesGivenFiles) {
  fs::path dir = fs::temp_directory_path() / ("grid_host_facts_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "cpuinfo") << "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                                    "model name\t: AMD EPYC 9654 96-Core Processor\n\n"
                                    "processor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\n";
  std::ofstream(dir / "meminfo") << "MemTotal:       131891996 kB\nMemFree:         1000 kB\n";
  std::ofstream(dir / "os-release") << "NAME=\"Debian GNU/Linux\"\n"
                                       "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
  HostFactSources src{(dir / "cpuinfo").string(), (dir / "meminfo").string(),
                      (dir / "os-release").string()};
  Result<HostFacts> f = ProbeHost(dir.string(), src);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->cpu_model, "AMD EPYC 9654 96-Core Processor");
  EXPECT_EQ(f->ram_bytes, 131891996ull * 1024);
  EXPECT_EQ(f->os.rfind("Debian GNU/Linux 12 (bookworm); Linux ", 0), 0u) << f->os;

  HostFactSources missing{(dir / "nope").string(), (dir / "nope").string(),
                          (dir / "nope").string()};
  Result<HostFacts> g = ProbeHost(dir.string(), missing);
  ASSERT_TRUE(g.ok());  // disk still readable
  EXPECT_EQ(g->cpu_model, "unknown");
  EXPECT_EQ(g->ram_bytes, 0u);
  EXPECT_EQ(g->os.rfind("Linux ", 0), 0u) << g->os;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace grid::agent
