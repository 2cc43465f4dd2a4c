// Tests of what only the process runtime does: its namespaces, the host's
// file system read-only, no way out of its cgroups. What every runtime must
// do is in runtime_conformance_test.cc. They need root, user namespaces and
// the cgroup controllers; where those are missing every test is skipped.
#include "agent/runtime/process_runtime.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <gtest/gtest.h>

#include "agent/runtime/runtime_test_util.h"

namespace grid::agent {
namespace {

using namespace std::chrono_literals;

class ProcessRuntimeTest : public ::testing::Test, protected runtime_test::RuntimeHarness {
 protected:
  void SetUp() override {
    if (!runtime_test::CanRunProcessRuntime()) GTEST_SKIP() << "needs root and user namespaces";
    // Not under /tmp: the workload gets a private /tmp, and the isolation
    // test wants the state dir visible (read-only) inside.
    char tmpl[] = "/var/tmp/grid-rt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cgroup_name_ = "grid-test-" + std::to_string(getpid());
    image_ = "host";
    wait_timeout_ = 10s;
    ProcessRuntimeOptions o;
    o.state_dir = dir_;
    o.cgroup_name = cgroup_name_;
    auto rt = NewProcessRuntime(o);
    if (!rt.ok()) GTEST_SKIP() << rt.status().ToString();
    rt_ = std::move(rt).value();
  }

  void TearDown() override { TearDownRuntime(); }
};

TEST_F(ProcessRuntimeTest, NamespacesAndReadOnlyHost) {
  auto s = Spec("ns", {"sh", "-c",
                       "echo pid=$$; echo host=$(hostname); echo uid=$(id -u); "
                       "ls /proc | grep -c '^[0-9]' | sed 's/^/procs=/'; "
                       "grep -c : /proc/net/dev | sed 's/^/ifaces=/'; "
                       "touch /usr/grid-x 2>/dev/null && echo USR-WRITABLE; "
                       "touch /grid-x 2>/dev/null && echo ROOT-WRITABLE; "
                       "echo data > /work/f && cat /work/f; pwd"});
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kExited);
  std::string log = Logs(s.lease_id);
  EXPECT_NE(log.find("pid=2\n"), std::string::npos) << log;  // pid 1 is the lease's init
  EXPECT_NE(log.find("host=" + s.lease_id + "\n"), std::string::npos) << log;
  EXPECT_NE(log.find("uid=0\n"), std::string::npos) << log;
  // Just init, sh and the pipeline's processes.
  auto p = log.find("procs=");
  ASSERT_NE(p, std::string::npos) << log;
  EXPECT_LE(std::stoi(log.substr(p + 6)), 6) << log;
  EXPECT_NE(log.find("ifaces=1\n"), std::string::npos) << log;  // only lo
  EXPECT_EQ(log.find("WRITABLE"), std::string::npos) << log;
  EXPECT_NE(log.find("data\n/work\n"), std::string::npos) << log;
  // The work dir is on the host, owned by the lease's unprivileged uid.
  struct stat sb;
  ASSERT_EQ(stat((dir_ + "/leases/" + s.lease_id + "/work/f").c_str(), &sb), 0);
  EXPECT_GE(sb.st_uid, 100000u);
}

TEST_F(ProcessRuntimeTest, CannotLeaveItsCgroup) {
  auto s = Spec("escape", {"sh", "-c",
                           "for f in /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/cgroup.procs; do "
                           "echo $$ > $f 2>/dev/null && echo ESCAPED $f; done; "
                           "mount -t cgroup -o pids none /tmp 2>/dev/null && echo MOUNTED; "
                           "mount -t cgroup2 none /tmp 2>/dev/null && echo MOUNTED2; "
                           "sleep 0.2; echo done"});
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kExited);
  std::string log = Logs(s.lease_id);
  EXPECT_EQ(log.find("ESCAPED"), std::string::npos) << log;
  EXPECT_EQ(log.find("MOUNTED"), std::string::npos) << log;
  EXPECT_NE(log.find("done"), std::string::npos) << log;
}

// GPU isolation through the device cgroup, without a GPU: device nodes with
// NVIDIA's major (195) and the minors of GPUs 0 and 1 are made in the state
// dir (visible read-only inside). A lease given GPU 0 opens 195:0 as far as
// the kernel lets it (no driver here: "No such device or address"), while
// 195:1, another lease's GPU, is refused by the device cgroup ("Operation
// not permitted"); the lease given GPU 1 sees the reverse.
TEST_F(ProcessRuntimeTest, LeaseCannotOpenAnotherLeasesGpu) {
  for (int minor : {0, 1}) {
    std::string node = dir_ + "/nvidia" + std::to_string(minor);
    ASSERT_EQ(mknod(node.c_str(), S_IFCHR | 0666, makedev(195, minor)), 0) << strerror(errno);
  }
  // What the host itself gets (no cgroup in the way): the control value.
  int fd = open((dir_ + "/nvidia0").c_str(), O_RDONLY);
  int host_errno = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
  if (host_errno == EPERM || host_errno == EACCES)
    GTEST_SKIP() << "device nodes cannot be opened under " << dir_ << " on this host (" << strerror(host_errno)
                 << "): nothing to compare";
  auto probe = [&](const std::string& name, int gpu) {
    std::string cmd;
    for (int minor : {0, 1})
      cmd += "if cat " + dir_ + "/nvidia" + std::to_string(minor) + " </dev/null >/dev/null 2>/tmp/e; then echo gpu" +
             std::to_string(minor) + "=opened; else echo gpu" + std::to_string(minor) + "=$(cat /tmp/e); fi; ";
    auto s = Spec(name, {"sh", "-c", cmd});
    s.gpu_indices = {gpu};
    EXPECT_TRUE(Start(s).ok());
    EXPECT_EQ(Wait(s.lease_id).state, WorkloadState::kExited);
    return Logs(s.lease_id);
  };
  std::string a = probe("gpu-a", 0), b = probe("gpu-b", 1);
  auto line = [](const std::string& log, const std::string& key) {
    size_t at = log.find(key + "=");
    return at == std::string::npos ? std::string("(missing)") : log.substr(at, log.find('\n', at) - at);
  };
  // Its own GPU: whatever the host gets, never a permission error.
  EXPECT_EQ(line(a, "gpu0").find("Operation not permitted"), std::string::npos) << a;
  EXPECT_EQ(line(b, "gpu1").find("Operation not permitted"), std::string::npos) << b;
  // The other's GPU: refused by the device cgroup.
  EXPECT_NE(line(a, "gpu1").find("Operation not permitted"), std::string::npos) << a;
  EXPECT_NE(line(b, "gpu0").find("Operation not permitted"), std::string::npos) << b;
}

}  // namespace
}  // namespace grid::agent
