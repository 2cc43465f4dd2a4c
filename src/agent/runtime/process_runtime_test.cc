// Tests of the process runtime. They need root, user namespaces and the
// cgroup controllers; where those are missing every test is skipped.
#include "agent/runtime/process_runtime.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace grid::agent {
namespace {

using namespace std::chrono_literals;

// Whether this host can run the tests: root, and a user+pid namespace can be
// made.
bool CanRun() {
  if (geteuid() != 0) return false;
  pid_t p = fork();
  if (p == 0) {
    _exit(unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET) == 0 ? 0 : 1);
  }
  int st = 0;
  if (p < 0 || waitpid(p, &st, 0) != p) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ProcessRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanRun()) GTEST_SKIP() << "needs root and user namespaces";
    // Not under /tmp: the workload gets a private /tmp, and the isolation
    // test wants the state dir visible (read-only) inside.
    char tmpl[] = "/var/tmp/grid-rt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cgroup_name_ = "grid-test-" + std::to_string(getpid());
    auto rt = NewProcessRuntime(Options());
    if (!rt.ok()) GTEST_SKIP() << rt.status().ToString();
    rt_ = std::move(rt).value();
  }

  void TearDown() override {
    if (rt_) {
      for (const auto& id : started_) {
        (void)rt_->Stop(id, 0);
        (void)rt_->Remove(id);
      }
      rt_.reset();
    }
    if (!cgroup_name_.empty()) {
      // The per-test parent cgroups.
      for (const char* c : {"memory", "cpu", "cpuacct", "pids", "devices", "freezer"}) {
        DIR* d = opendir(("/sys/fs/cgroup/" + std::string(c)).c_str());
        if (d == nullptr) continue;
        closedir(d);
        std::string own;
        std::ifstream in("/proc/self/cgroup");
        std::string line;
        while (std::getline(in, line)) {
          auto a = line.find(':'), b = line.find(':', a + 1);
          std::string list = line.substr(a + 1, b - a - 1);
          std::stringstream ls(list);
          std::string x;
          while (std::getline(ls, x, ',')) {
            if (x == c) own = line.substr(b + 1);
          }
        }
        if (own == "/") own.clear();
        rmdir(("/sys/fs/cgroup/" + std::string(c) + own + "/" + cgroup_name_).c_str());
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  ProcessRuntimeOptions Options() {
    ProcessRuntimeOptions o;
    o.state_dir = dir_;
    o.cgroup_name = cgroup_name_;
    return o;
  }

  WorkloadSpec Spec(const std::string& name, std::vector<std::string> cmd) {
    WorkloadSpec s;
    s.lease_id = name + "-" + std::to_string(getpid());
    s.image = "host";
    s.command = std::move(cmd);
    s.memory_limit_bytes = 256 << 20;
    s.pids_limit = 128;
    return s;
  }

  Status Start(const WorkloadSpec& s) {
    Status st = rt_->Start(s);
    if (st.ok()) started_.push_back(s.lease_id);
    return st;
  }

  // Polls until the workload ends (or the timeout passes).
  WorkloadStatus Wait(const std::string& id, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
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

  std::string Logs(const std::string& id) {
    auto l = rt_->ReadLogs(id, 0, 1 << 20);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? *l : "";
  }


  std::string dir_;
  std::string cgroup_name_;
  std::unique_ptr<Runtime> rt_;
  std::vector<std::string> started_;
};

TEST_F(ProcessRuntimeTest, EchoExitCodeEnvAndGpus) {
  auto s = Spec("echo", {"sh", "-c", "echo hello; echo oops >&2; echo FOO=$FOO; "
                                     "echo CUDA=$CUDA_VISIBLE_DEVICES; exit 3"});
  s.env = {"FOO=bar"};
  s.gpu_indices = {1, 3};
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kFailed);
  EXPECT_EQ(st.exit_code, 3);
  EXPECT_EQ(st.reason, "exit 3");
  std::string log = Logs(s.lease_id);
  EXPECT_NE(log.find("hello\n"), std::string::npos) << log;
  EXPECT_NE(log.find("oops\n"), std::string::npos) << log;
  EXPECT_NE(log.find("FOO=bar\n"), std::string::npos) << log;
  EXPECT_NE(log.find("CUDA=1,3\n"), std::string::npos) << log;
  EXPECT_GT(st.wall_seconds, 0);

  auto ok = Spec("ok", {"true"});
  ASSERT_TRUE(Start(ok).ok());
  auto st2 = Wait(ok.lease_id);
  EXPECT_EQ(st2.state, WorkloadState::kExited);
  EXPECT_EQ(st2.exit_code, 0);
  EXPECT_EQ(st2.reason, "exit 0");
}

TEST_F(ProcessRuntimeTest, RefusesOtherImagesAndBadCommands) {
  auto s = Spec("img", {"true"});
  s.image = "ubuntu";
  Status st = rt_->Start(s);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "image \"ubuntu\": the process runtime runs only --image host; use --runtime podman");

  auto missing = Spec("missing", {"/no/such/program"});
  st = rt_->Start(missing);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("start: exec"), std::string::npos) << st.ToString();
  // A failed start leaves nothing behind.
  EXPECT_EQ(rt_->Poll(missing.lease_id).status().code(), Code::kNotFound);
}

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

TEST_F(ProcessRuntimeTest, LeaseCannotReadAnotherLeasesFiles) {
  auto a = Spec("a", {"sh", "-c", "echo secret > /work/secret"});
  ASSERT_TRUE(Start(a).ok());
  EXPECT_EQ(Wait(a.lease_id).state, WorkloadState::kExited);
  std::string other = dir_ + "/leases/" + a.lease_id + "/work/secret";
  auto b = Spec("b", {"sh", "-c", "ls -d " + dir_ + "/leases && echo SEEN; cat " + other +
                                      " && echo LEAKED; ls " + dir_ +
                                      "/leases/ && echo LISTED; exit 0"});
  ASSERT_TRUE(Start(b).ok());
  EXPECT_EQ(Wait(b.lease_id).state, WorkloadState::kExited);
  std::string log = Logs(b.lease_id);
  EXPECT_NE(log.find("SEEN"), std::string::npos) << log;  // the path is there...
  EXPECT_EQ(log.find("LEAKED"), std::string::npos) << log;  // ...but not readable
  EXPECT_EQ(log.find("secret\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("LISTED"), std::string::npos) << log;
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

TEST_F(ProcessRuntimeTest, OomKilledOverMemoryLimit) {
  auto s = Spec("oom", {"sh", "-c", "head -c 200000000 /dev/zero | tail"});
  s.memory_limit_bytes = 32 << 20;
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kFailed);
  EXPECT_EQ(st.reason, "oom");
  EXPECT_GE(st.oom_kills, 1);
  EXPECT_GT(st.peak_memory_bytes, 16 << 20);
  EXPECT_LE(st.peak_memory_bytes, 33 << 20);
}

TEST_F(ProcessRuntimeTest, HalfCoreLimit) {
  auto s = Spec("cpu", {"timeout", "2", "sh", "-c", "while :; do :; done"});
  s.cpu_millicores = 500;
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kFailed);  // timeout exits 124
  EXPECT_EQ(st.exit_code, 124);
  ASSERT_GT(st.wall_seconds, 1.5);
  double ratio = st.cpu_seconds / st.wall_seconds;
  EXPECT_GT(ratio, 0.3) << st.cpu_seconds << " / " << st.wall_seconds;
  EXPECT_LT(ratio, 0.7) << st.cpu_seconds << " / " << st.wall_seconds;
}

TEST_F(ProcessRuntimeTest, ForkBombStopsAtPidsLimit) {
  auto s = Spec("bomb", {"sh", "-c", "b() { b & b & }; b 2>/dev/null; sleep 30"});
  s.pids_limit = 32;
  ASSERT_TRUE(Start(s).ok());
  std::this_thread::sleep_for(1s);
  std::string dir = "/sys/fs/cgroup/pids";
  // Find the lease's pids cgroup from the init's membership.
  auto state = ReadAll(dir_ + "/leases/" + s.lease_id + "/state");
  auto p = state.find("cg_pids=");
  ASSERT_NE(p, std::string::npos);
  std::string cg = state.substr(p + 8, state.find('\n', p) - p - 8);
  std::string current = ReadAll(cg + "/pids.current");
  EXPECT_LE(std::stoi(current), 32) << current;
  std::string events = ReadAll(cg + "/pids.events");
  EXPECT_NE(events.find("max "), std::string::npos);
  EXPECT_EQ(events.find("max 0"), std::string::npos) << events;  // the limit was hit
  ASSERT_TRUE(rt_->Stop(s.lease_id, 0).ok());
  EXPECT_EQ(ReadAll(cg + "/cgroup.procs"), "");
}

// Waits until the file exists and is not empty (the workload got going).
bool WaitForFile(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    if (!ReadAll(path).empty()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// Pids of processes (host-wide) whose cgroup names the lease.
std::vector<pid_t> ProcessesOfLease(const std::string& id) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::string cg = ReadAll("/proc/" + std::string(e->d_name) + "/cgroup");
    if (cg.find("/" + id + "\n") != std::string::npos) out.push_back(pid);
  }
  closedir(d);
  return out;
}

TEST_F(ProcessRuntimeTest, StopKillsEverythingAfterGrace) {
  auto s = Spec("stop", {"sh", "-c", "trap '' TERM; sleep 100 & sleep 100 & "
                                     "while :; do sleep 1; done"});
  ASSERT_TRUE(Start(s).ok());
  // init, sh and the two sleeps: the trap is set by then.
  for (int i = 0; i < 500 && ProcessesOfLease(s.lease_id).size() < 4; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(ProcessesOfLease(s.lease_id).size(), 4u);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt_->Stop(s.lease_id, 500).ok());
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(ProcessesOfLease(s.lease_id).empty());
  auto st = rt_->Poll(s.lease_id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, WorkloadState::kFailed);
  EXPECT_EQ(st->reason, "signal 9");
  // Idempotent.
  EXPECT_TRUE(rt_->Stop(s.lease_id, 500).ok());

  // A workload that honours SIGTERM ends within the grace.
  auto t = Spec("term", {"sleep", "100"});
  ASSERT_TRUE(Start(t).ok());
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt_->Stop(t.lease_id, 5000).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  auto st2 = rt_->Poll(t.lease_id);
  ASSERT_TRUE(st2.ok());
  EXPECT_EQ(st2->reason, "signal 15");
  EXPECT_TRUE(rt_->Remove(t.lease_id).ok());
  EXPECT_EQ(rt_->Poll(t.lease_id).status().code(), Code::kNotFound);
}

TEST_F(ProcessRuntimeTest, WorkloadOutlivesAgentProcessAndIsAdopted) {
  auto s = Spec("orphan", {"sh", "-c", "echo start >> /work/count; sleep 100"});
  // The "agent" is a child process that starts the workload and dies.
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    auto rt = NewProcessRuntime(Options());
    _exit(rt.ok() && (*rt)->Start(s).ok() ? 0 : 1);
  }
  int wst = 0;
  ASSERT_EQ(waitpid(agent, &wst, 0), agent);
  ASSERT_TRUE(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
  started_.push_back(s.lease_id);
  ASSERT_TRUE(WaitForFile(dir_ + "/leases/" + s.lease_id + "/work/count"));
  auto adopted = rt_->Adopt();
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(*adopted, std::vector<std::string>{s.lease_id});
  auto st = rt_->Poll(s.lease_id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, WorkloadState::kRunning);
  EXPECT_FALSE(ProcessesOfLease(s.lease_id).empty());
  ASSERT_TRUE(rt_->Stop(s.lease_id, 1000).ok());
  EXPECT_TRUE(ProcessesOfLease(s.lease_id).empty());
  EXPECT_EQ(ReadAll(dir_ + "/leases/" + s.lease_id + "/work/count"), "start\n");
}

TEST_F(ProcessRuntimeTest, AdoptAfterAgentRestart) {
  auto s = Spec("adopt", {"sh", "-c", "echo start >> /work/count; sleep 100"});
  ASSERT_TRUE(Start(s).ok());
  EXPECT_EQ(rt_->Remove(s.lease_id).code(), Code::kConflict);
  ASSERT_TRUE(WaitForFile(dir_ + "/leases/" + s.lease_id + "/work/count"));

  // A second runtime on the same state dir: the restarted agent.
  auto rt2 = NewProcessRuntime(Options());
  ASSERT_TRUE(rt2.ok());
  auto adopted = (*rt2)->Adopt();
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(*adopted, std::vector<std::string>{s.lease_id});
  auto st = (*rt2)->Poll(s.lease_id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, WorkloadState::kRunning);
  ASSERT_TRUE((*rt2)->Stop(s.lease_id, 1000).ok());
  EXPECT_TRUE(ProcessesOfLease(s.lease_id).empty());
  st = (*rt2)->Poll(s.lease_id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, WorkloadState::kFailed);
  EXPECT_EQ(ReadAll(dir_ + "/leases/" + s.lease_id + "/work/count"), "start\n");
  // Ended leases are not adopted as running.
  auto again = (*rt2)->Adopt();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_TRUE((*rt2)->Remove(s.lease_id).ok());
}

}  // namespace
}  // namespace grid::agent
