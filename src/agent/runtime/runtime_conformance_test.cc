// One suite, every Runtime: what a lease's workload may rely on whichever
// runtime the provider chose. Each test runs once per runtime ("process",
// "podman"); a runtime that cannot run on this host (not root, no user
// namespaces, podman missing) is skipped with the reason. The fixture gives
// each runtime its image ("host" for process, the imported busybox+sshd test
// image for podman, built by scripts/make-test-image.sh).
//
// Both runtimes keep a lease's files under <state_dir>/leases/<id>/ with its
// work dir at work/ (mounted at /work), which the tests use to watch a
// workload from outside.
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "agent/runtime/podman_runtime.h"
#include "agent/runtime/process_runtime.h"
#include "agent/runtime/runtime_test_util.h"

namespace grid::agent {
namespace {

using namespace std::chrono_literals;

using runtime_test::CgroupOf;
using runtime_test::kTestImage;
using runtime_test::ReadAll;

// Pids of processes (host-wide) in a cgroup named for the lease: the
// process runtime's <...>/<id>, podman's <parent>/<id>/libpod-<container>.
std::vector<pid_t> ProcessesOfLease(const std::string& id) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::string cg = ReadAll("/proc/" + std::string(e->d_name) + "/cgroup");
    if (cg.find("/" + id + "\n") != std::string::npos || cg.find("/" + id + "/") != std::string::npos) {
      out.push_back(pid);
    }
  }
  closedir(d);
  return out;
}

// Waits until the file exists and is not empty (the workload got going).
bool WaitForFile(const std::string& path) {
  for (int i = 0; i < 1000; ++i) {
    if (!ReadAll(path).empty()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

class RuntimeConformanceTest : public ::testing::TestWithParam<std::string>,
                               protected runtime_test::RuntimeHarness {
 protected:
  bool IsProcess() const { return GetParam() == "process"; }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << GetParam() << " runtime: needs root";
    if (IsProcess()) {
      if (!runtime_test::CanRunProcessRuntime()) GTEST_SKIP() << "process runtime: needs user namespaces";
      image_ = "host";
    } else {
      if (!runtime_test::PodmanInstalled()) {
        GTEST_SKIP() << "podman runtime: podman is not installed (scripts/install-deps.sh)";
      }
      std::string build = runtime_test::MakeTestImageCommand();
      ASSERT_EQ(system(build.c_str()), 0) << build;
      image_ = kTestImage;
    }
    // Not under /tmp: the process runtime's workloads get a private /tmp,
    // and the isolation test wants the state dir's path visible inside.
    char tmpl[] = "/var/tmp/grid-rt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cgroup_name_ = "grid-test-" + std::to_string(getpid());
    auto rt = NewRuntime();
    if (!rt.ok()) GTEST_SKIP() << GetParam() << " runtime: " << rt.status().ToString();
    rt_ = std::move(rt).value();
  }

  // A runtime on the test's state dir: a second one is the restarted agent.
  Result<std::unique_ptr<Runtime>> NewRuntime() {
    if (IsProcess()) {
      ProcessRuntimeOptions o;
      o.state_dir = dir_;
      o.cgroup_name = cgroup_name_;
      return NewProcessRuntime(o);
    }
    PodmanRuntimeOptions o;
    o.state_dir = dir_;
    o.cgroup_parent = "/" + cgroup_name_;
    o.publish_address = "127.0.0.1";
    return NewPodmanRuntime(o);
  }

  void TearDown() override { TearDownRuntime(); }

  std::string WorkFile(const std::string& id, const std::string& name) {
    return dir_ + "/leases/" + id + "/work/" + name;
  }
};

TEST_P(RuntimeConformanceTest, EchoExitCodeEnvAndGpus) {
  auto s = Spec("echo", {"sh", "-c", "echo hello; echo oops >&2; echo FOO=$FOO; "
                                     "echo CUDA=$CUDA_VISIBLE_DEVICES; exit 3"});
  s.env = {"FOO=bar"};
  // The process runtime lists the host's GPU indices; in a container the
  // GPUs are renumbered from 0. Simulated: this host has none for CDI to
  // hand over (podman_runtime_test covers that path with stand-ins).
  s.gpu_indices = {1, 3};
  s.gpus_simulated = true;
  ASSERT_TRUE(Start(s).ok());
  auto st = Wait(s.lease_id);
  EXPECT_EQ(st.state, WorkloadState::kFailed);
  EXPECT_EQ(st.exit_code, 3);
  EXPECT_EQ(st.reason, "exit 3");
  std::string log = Logs(s.lease_id);
  EXPECT_NE(log.find("hello\n"), std::string::npos) << log;
  EXPECT_NE(log.find("oops\n"), std::string::npos) << log;
  EXPECT_NE(log.find("FOO=bar\n"), std::string::npos) << log;
  EXPECT_NE(log.find(IsProcess() ? "CUDA=1,3\n" : "CUDA=0,1\n"), std::string::npos) << log;
  EXPECT_GT(st.wall_seconds, 0);

  // No GPUs: an empty list hides every GPU from CUDA.
  auto ok = Spec("ok", {"sh", "-c", "echo CUDA=$CUDA_VISIBLE_DEVICES"});
  ASSERT_TRUE(Start(ok).ok());
  auto st2 = Wait(ok.lease_id);
  EXPECT_EQ(st2.state, WorkloadState::kExited);
  EXPECT_EQ(st2.exit_code, 0);
  EXPECT_EQ(st2.reason, "exit 0");
  EXPECT_EQ(Logs(ok.lease_id), "CUDA=\n");
}

TEST_P(RuntimeConformanceTest, RefusesUnknownImagesAndBadCommands) {
  auto s = Spec("img", {"true"});
  s.image = IsProcess() ? "ubuntu" : "localhost/grid-no-such-image:1";
  Status st = rt_->Start(s);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  if (IsProcess()) {
    EXPECT_EQ(st.message(),
              "image \"ubuntu\": the process runtime runs only --image host; use --runtime podman");
  } else {
    EXPECT_NE(st.message().find("not in podman's local storage"), std::string::npos) << st.ToString();
    s.image = "host";
    EXPECT_EQ(rt_->Start(s).code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(rt_->Poll(s.lease_id).status().code(), Code::kNotFound);

  auto missing = Spec("missing", {"/no/such/program"});
  st = rt_->Start(missing);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("start: exec"), std::string::npos) << st.ToString();
  // A failed start leaves nothing behind.
  EXPECT_EQ(rt_->Poll(missing.lease_id).status().code(), Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/leases/" + missing.lease_id));

  auto empty = Spec("empty", {});
  EXPECT_EQ(rt_->Start(empty).code(), Code::kInvalidArgument);
  auto bad_id = Spec("x", {"true"});
  bad_id.lease_id = "../x";
  EXPECT_EQ(rt_->Start(bad_id).code(), Code::kInvalidArgument);
}

TEST_P(RuntimeConformanceTest, LeaseCannotReadAnotherLeasesFiles) {
  auto a = Spec("a", {"sh", "-c", "echo secret > /work/secret"});
  ASSERT_TRUE(Start(a).ok());
  EXPECT_EQ(Wait(a.lease_id).state, WorkloadState::kExited);
  ASSERT_EQ(ReadAll(WorkFile(a.lease_id, "secret")), "secret\n");
  std::string other = WorkFile(a.lease_id, "secret");
  auto b = Spec("b", {"sh", "-c", "ls -d " + dir_ + "/leases && echo SEEN; cat " + other +
                                      " && echo LEAKED; ls " + dir_ +
                                      "/leases/ && echo LISTED; echo done; exit 0"});
  ASSERT_TRUE(Start(b).ok());
  EXPECT_EQ(Wait(b.lease_id).state, WorkloadState::kExited);
  std::string log = Logs(b.lease_id);
  // The process runtime shows the host's files read-only: the path is
  // there but not readable. A container does not see the host at all.
  if (IsProcess()) {
    EXPECT_NE(log.find("SEEN"), std::string::npos) << log;
  }
  EXPECT_EQ(log.find("LEAKED"), std::string::npos) << log;
  EXPECT_EQ(log.find("secret\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("LISTED"), std::string::npos) << log;
  EXPECT_NE(log.find("done\n"), std::string::npos) << log;
}

TEST_P(RuntimeConformanceTest, OomKilledOverMemoryLimit) {
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

TEST_P(RuntimeConformanceTest, HalfCoreLimit) {
  auto s = Spec("cpu", {"sh", "-c", "while :; do :; done"});
  s.cpu_millicores = 500;
  ASSERT_TRUE(Start(s).ok());
  // Measured over a window once the loop runs (a container's start would
  // otherwise count as wall time without CPU).
  std::this_thread::sleep_for(500ms);
  auto a = rt_->Poll(s.lease_id);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::this_thread::sleep_for(2s);
  auto b = rt_->Poll(s.lease_id);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_TRUE(rt_->Stop(s.lease_id, 0).ok());
  EXPECT_EQ(Wait(s.lease_id).state, WorkloadState::kFailed);
  double wall = b->wall_seconds - a->wall_seconds, cpu = b->cpu_seconds - a->cpu_seconds;
  ASSERT_GT(wall, 1.5);
  double ratio = cpu / wall;
  // The limit: never more than half a core (with some slack for the
  // accounting). The lower bound only shows the loop ran: a busy shared
  // machine may give it less than its limit, so it is kept loose.
  EXPECT_LT(ratio, 0.65) << cpu << " / " << wall;
  EXPECT_GT(ratio, 0.1) << cpu << " / " << wall;
}

TEST_P(RuntimeConformanceTest, ForkBombStopsAtPidsLimit) {
  auto s = Spec("bomb", {"sh", "-c", "b() { b & b & }; b 2>/dev/null; sleep 30"});
  s.pids_limit = 32;
  ASSERT_TRUE(Start(s).ok());
  std::this_thread::sleep_for(1s);
  auto pids = ProcessesOfLease(s.lease_id);
  ASSERT_FALSE(pids.empty());
  // The pids cgroup the workload's processes are in.
  std::string cg = "/sys/fs/cgroup/pids" + CgroupOf(pids[0], "pids");
  std::string current = ReadAll(cg + "/pids.current");
  ASSERT_FALSE(current.empty()) << cg;
  EXPECT_LE(std::stoi(current), 32) << current;
  EXPECT_EQ(ReadAll(cg + "/pids.max"), "32\n");
  std::string events = ReadAll(cg + "/pids.events");
  EXPECT_NE(events.find("max "), std::string::npos);
  EXPECT_EQ(events.find("max 0"), std::string::npos) << events;  // the limit was hit
  ASSERT_TRUE(rt_->Stop(s.lease_id, 0).ok());
  EXPECT_TRUE(ProcessesOfLease(s.lease_id).empty());
}

TEST_P(RuntimeConformanceTest, StopKillsEverythingAfterGrace) {
  auto s = Spec("stop", {"sh", "-c", "trap '' TERM; sleep 100 & sleep 100 & "
                                     "echo ready > /work/ready; while :; do sleep 1; done"});
  ASSERT_TRUE(Start(s).ok());
  ASSERT_TRUE(WaitForFile(WorkFile(s.lease_id, "ready")));  // the trap is set by then
  EXPECT_GE(ProcessesOfLease(s.lease_id).size(), 4u);  // init, sh, the two sleeps
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
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_TRUE(ProcessesOfLease(t.lease_id).empty());
  auto st2 = rt_->Poll(t.lease_id);
  ASSERT_TRUE(st2.ok());
  EXPECT_EQ(st2->reason, "signal 15");
  EXPECT_TRUE(rt_->Remove(t.lease_id).ok());
  EXPECT_EQ(rt_->Poll(t.lease_id).status().code(), Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/leases/" + t.lease_id));
}

TEST_P(RuntimeConformanceTest, WorkloadOutlivesAgentProcessAndIsAdopted) {
  auto s = Spec("orphan", {"sh", "-c", "echo start >> /work/count; sleep 100"});
  // The "agent" is a child process that starts the workload and dies.
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    auto rt = NewRuntime();
    _exit(rt.ok() && (*rt)->Start(s).ok() ? 0 : 1);
  }
  int wst = 0;
  ASSERT_EQ(waitpid(agent, &wst, 0), agent);
  ASSERT_TRUE(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
  started_.push_back(s.lease_id);
  ASSERT_TRUE(WaitForFile(WorkFile(s.lease_id, "count")));
  auto adopted = rt_->Adopt();
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_EQ(*adopted, std::vector<std::string>{s.lease_id});
  auto st = rt_->Poll(s.lease_id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, WorkloadState::kRunning);
  EXPECT_FALSE(ProcessesOfLease(s.lease_id).empty());
  ASSERT_TRUE(rt_->Stop(s.lease_id, 1000).ok());
  EXPECT_TRUE(ProcessesOfLease(s.lease_id).empty());
  EXPECT_EQ(ReadAll(WorkFile(s.lease_id, "count")), "start\n");
}

TEST_P(RuntimeConformanceTest, AdoptAfterAgentRestart) {
  auto s = Spec("adopt", {"sh", "-c", "echo start >> /work/count; sleep 100"});
  ASSERT_TRUE(Start(s).ok());
  EXPECT_EQ(rt_->Remove(s.lease_id).code(), Code::kConflict);
  ASSERT_TRUE(WaitForFile(WorkFile(s.lease_id, "count")));

  // A second runtime on the same state dir: the restarted agent.
  auto rt2 = NewRuntime();
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
  EXPECT_EQ(ReadAll(WorkFile(s.lease_id, "count")), "start\n");
  // Ended leases are not adopted as running.
  auto again = (*rt2)->Adopt();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_TRUE((*rt2)->Remove(s.lease_id).ok());
}

TEST_P(RuntimeConformanceTest, LogOffsetsAreThoseOfTheOutputStream) {
  // Partial lines, stderr, an empty line, a long line: the log is the bytes
  // the workload wrote, and offsets index those bytes.
  auto s = Spec("logs", {"sh", "-c", "printf 'ab'; printf 'cd\\n'; echo; echo err >&2; "
                                     "printf '%020000d' 0 | tr 0 x; echo; echo end"});
  ASSERT_TRUE(Start(s).ok());
  EXPECT_EQ(Wait(s.lease_id).state, WorkloadState::kExited);
  std::string all = Logs(s.lease_id);
  std::string xs(20000, 'x');
  // stdout and stderr are separate pipes: "err" may come anywhere between
  // lines, not inside one.
  std::string without_err = all;
  auto e = without_err.find("err\n");
  ASSERT_NE(e, std::string::npos) << all;
  without_err.erase(e, 4);
  EXPECT_TRUE(without_err == "abcd\n\n" + xs + "\nend\n") << without_err.substr(0, 100);
  // Any split into pieces reads back the same bytes.
  for (size_t chunk : {7, 1000, 1 << 20}) {
    std::string joined;
    for (int64_t off = 0;;) {
      auto piece = rt_->ReadLogs(s.lease_id, off, chunk);
      ASSERT_TRUE(piece.ok());
      if (piece->empty()) break;
      ASSERT_LE(piece->size(), chunk);
      joined += *piece;
      off += static_cast<int64_t>(piece->size());
    }
    EXPECT_TRUE(joined == all) << "chunk " << chunk;
  }
  auto tail = rt_->ReadLogs(s.lease_id, static_cast<int64_t>(all.size()) - 4, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "end\n");
  auto past = rt_->ReadLogs(s.lease_id, static_cast<int64_t>(all.size()) + 10, 100);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(*past, "");
  EXPECT_EQ(rt_->ReadLogs(s.lease_id, -1, 10).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(rt_->ReadLogs("no-such-lease", 0, 10).status().code(), Code::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Runtimes, RuntimeConformanceTest, ::testing::Values("process", "podman"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace grid::agent
