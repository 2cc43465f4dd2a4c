// Test-only helpers of the runtime tests (process_runtime_test.cc,
// podman_runtime_test.cc, runtime_conformance_test.cc): whether this host
// can run a runtime, the podman test image, the per-test cgroups, and
// RuntimeHarness, the runtime under test with the leases a test started.
//
// Header-only, and included only by those *_test.cc files (GRID_SOURCE_DIR
// is defined for agent_runtime_test alone).
#pragma once

#include <dirent.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/runtime/runtime.h"

namespace grid::agent::runtime_test {

// The whole file; "" when it cannot be read.
inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Root, and a user+pid namespace can be made: what the process runtime
// needs.
inline bool CanRunProcessRuntime() {
  if (geteuid() != 0) return false;
  pid_t p = fork();
  if (p == 0) {
    _exit(unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET) == 0 ? 0 : 1);
  }
  int st = 0;
  if (p < 0 || waitpid(p, &st, 0) != p) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// The podman runtime's test image (busybox + sshd, imported: no registry).
inline constexpr char kTestImage[] = "localhost/grid-test:1";

inline bool PodmanInstalled() { return system("command -v podman >/dev/null 2>&1") == 0; }

// The command that builds kTestImage; idempotent, a no-op when the image is
// up to date.
inline std::string MakeTestImageCommand() {
  return std::string(GRID_SOURCE_DIR) + "/scripts/make-test-image.sh " + kTestImage;
}

// The cgroup path (relative to the hierarchy's mount) of `controller` for
// a process, from /proc/<pid>/cgroup; "" when absent.
inline std::string CgroupOf(pid_t pid, const std::string& controller) {
  std::istringstream in(ReadAll("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::stringstream ls(line.substr(a + 1, b - a - 1));
    std::string c;
    while (std::getline(ls, c, ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "";
}

// Removes the per-test parent cgroups named `name` in every hierarchy: the
// process runtime's under this process's own cgroup, podman's at each
// hierarchy's root.
inline void RemoveTestCgroups(const std::string& name) {
  DIR* d = opendir("/sys/fs/cgroup");
  if (d == nullptr) return;
  std::vector<std::string> hierarchies = {""};  // a pure v2 mount
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") hierarchies.push_back(n);
  }
  closedir(d);
  for (const auto& h : hierarchies) {
    std::string base = "/sys/fs/cgroup/" + h;
    std::string own = CgroupOf(getpid(), h == "unified" ? "" : h);
    if (own == "/") own.clear();
    rmdir((base + own + "/" + name).c_str());
    rmdir((base + "/" + name).c_str());
  }
}

// The runtime under test (rt_, on the state dir dir_) and the leases a test
// started on it, which TearDownRuntime() stops and removes. A fixture
// derives from it beside its ::testing::Test, sets image_, dir_ and
// cgroup_name_ and makes rt_ in SetUp, and calls TearDownRuntime() in
// TearDown.
class RuntimeHarness {
 protected:
  // A lease named `name` (made unique to this test process) running cmd in
  // image_, with the limits every test uses.
  WorkloadSpec Spec(const std::string& name, std::vector<std::string> cmd) {
    WorkloadSpec s;
    s.lease_id = name + "-" + std::to_string(getpid());
    s.image = image_;
    s.command = std::move(cmd);
    s.memory_limit_bytes = 256 << 20;
    s.pids_limit = 128;
    return s;
  }

  // rt_->Start, remembering the lease for TearDownRuntime().
  Status Start(const WorkloadSpec& s) {
    Status st = rt_->Start(s);
    if (st.ok()) started_.push_back(s.lease_id);
    return st;
  }

  // Polls until the workload ends (or wait_timeout_ passes).
  WorkloadStatus Wait(const std::string& id) {
    using namespace std::chrono_literals;
    auto deadline = std::chrono::steady_clock::now() + wait_timeout_;
    for (;;) {
      auto st = rt_->Poll(id);
      EXPECT_TRUE(st.ok()) << st.status().ToString();
      if (!st.ok()) return {};
      if (st->state != WorkloadState::kRunning || std::chrono::steady_clock::now() > deadline) {
        return *st;
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  // The lease's whole log (up to 1 MiB).
  std::string Logs(const std::string& id) {
    auto l = rt_->ReadLogs(id, 0, 1 << 20);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? *l : "";
  }

  // Stops and removes the started leases, drops the runtime, removes the
  // test's parent cgroups and its state dir.
  void TearDownRuntime() {
    if (rt_) {
      for (const auto& id : started_) {
        (void)rt_->Stop(id, 0);
        (void)rt_->Remove(id);
      }
      rt_.reset();
    }
    if (!cgroup_name_.empty()) RemoveTestCgroups(cgroup_name_);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  std::string image_;
  std::string dir_;
  std::string cgroup_name_;  // "grid-test-<pid>": the runtime's parent cgroup
  std::chrono::milliseconds wait_timeout_ = std::chrono::seconds(20);
  std::unique_ptr<Runtime> rt_;
  std::vector<std::string> started_;
};

}  // namespace grid::agent::runtime_test
