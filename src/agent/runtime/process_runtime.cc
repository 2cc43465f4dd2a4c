// The process runtime. See process_runtime.h for the layout and the design.
//
// Start: the agent clone()s the lease's init straight into new namespaces.
// The init blocks on a pipe while the agent writes its uid/gid maps, puts it
// into the lease's cgroups and saves the state file; then it builds its root,
// forks the command and waits. Errors from the init or from exec come back on
// a close-on-exec pipe, so Start knows the command runs when that pipe reaches
// EOF with nothing in it. The child side only makes system calls on buffers
// prepared by the parent (no allocation after clone: the agent may have
// threads).
#include "agent/runtime/process_runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "agent/runtime/sys_util.h"

namespace grid::agent {

using namespace runtime_internal;

namespace {

namespace fs = std::filesystem;

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): with
// the pid it names one process for the whole uptime of the host.
int64_t ProcStartTime(pid_t pid) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return -1;
  auto close_paren = text->rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream in(text->substr(close_paren + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(in >> field)) return -1;
    if (i == 22) return ToInt(field, -1);
  }
  return -1;
}

// ---------------------------------------------------------------------------
// cgroups

// Where the leases' cgroups live: one parent dir per v1 controller, or one
// unified v2 dir.
struct CgroupLayout {
  bool v2 = false;
  std::string unified;  // v2 parent
  std::map<std::string, std::string> v1;  // controller -> parent dir
};

const char* const kV1Controllers[] = {"memory", "cpu", "cpuacct", "pids", "devices", "freezer"};

// A lease's cgroup dirs, by role.
struct LeaseCgroups {
  bool v2 = false;
  std::string memory, cpu, cpuacct, pids, devices, freezer;
  std::vector<std::string> All() const {
    std::set<std::string> s = {memory, cpu, cpuacct, pids, devices, freezer};
    s.erase("");
    return {s.begin(), s.end()};
  }
};

std::string OwnCgroup(const std::string& controller) {
  auto text = ReadFile("/proc/self/cgroup");
  if (!text.ok()) return "/";
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string list = line.substr(a + 1, b - a - 1);
    std::istringstream ls(list);
    std::string c;
    while (std::getline(ls, c, ',')) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "/";
}

Result<CgroupLayout> DetectCgroups(const std::string& name) {
  GRID_ASSIGN_OR_RETURN(std::vector<CgroupMount> mounts, CgroupMounts());
  std::map<std::string, std::string> v1_mounts;
  std::string v2_mount;
  for (const auto& m : mounts) {
    if (m.v2) {
      if (v2_mount.empty()) v2_mount = m.mountpoint;
      continue;
    }
    for (const auto& o : m.options) {
      for (const char* c : kV1Controllers) {
        if (o == c && !v1_mounts.count(c)) v1_mounts[c] = m.mountpoint;
      }
    }
  }
  CgroupLayout layout;
  if (!v2_mount.empty()) {
    auto ctl = ReadFile(v2_mount + "/cgroup.controllers");
    if (ctl.ok()) {
      std::set<std::string> have;
      std::istringstream cs(*ctl);
      std::string c;
      while (cs >> c) have.insert(c);
      if (have.count("memory") && have.count("cpu") && have.count("pids")) {
        layout.v2 = true;
        layout.unified = v2_mount + "/" + name;
        return layout;
      }
    }
  }
  std::string missing;
  for (const char* c : kV1Controllers) {
    auto it = v1_mounts.find(c);
    if (it == v1_mounts.end()) {
      missing += std::string(missing.empty() ? "" : ", ") + c;
      continue;
    }
    std::string own = OwnCgroup(c);
    if (own == "/") own.clear();
    layout.v1[c] = it->second + own + "/" + name;
  }
  if (!missing.empty()) {
    return Unavailable("the process runtime needs the cgroup controllers memory, cpu, cpuacct, "
                       "pids, devices and freezer (v1) or memory, cpu and pids (v2); missing: " +
                       missing);
  }
  return layout;
}

Status MkdirIfMissing(const std::string& dir, mode_t mode) {
  if (mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return Unavailable("mkdir " + dir + ": " + Errno(errno));
  }
  return Status::Ok();
}

LeaseCgroups LeaseCgroupsFor(const CgroupLayout& layout, const std::string& id) {
  LeaseCgroups cg;
  cg.v2 = layout.v2;
  if (layout.v2) {
    std::string d = layout.unified + "/" + id;
    cg.memory = cg.cpu = cg.cpuacct = cg.pids = d;
    return cg;
  }
  auto at = [&](const char* c) { return layout.v1.at(c) + "/" + id; };
  cg.memory = at("memory");
  cg.cpu = at("cpu");
  cg.cpuacct = at("cpuacct");
  cg.pids = at("pids");
  cg.devices = at("devices");
  cg.freezer = at("freezer");
  return cg;
}

Status CreateCgroups(const CgroupLayout& layout, const LeaseCgroups& cg, const WorkloadSpec& spec) {
  if (layout.v2) {
    std::string root = fs::path(layout.unified).parent_path().string();
    (void)WriteFile(root + "/cgroup.subtree_control", "+memory +cpu +pids");
    GRID_RETURN_IF_ERROR(MkdirIfMissing(layout.unified, 0755));
    GRID_RETURN_IF_ERROR(WriteFile(layout.unified + "/cgroup.subtree_control", "+memory +cpu +pids"));
    GRID_RETURN_IF_ERROR(MkdirIfMissing(cg.memory, 0755));
    if (spec.memory_limit_bytes > 0) {
      GRID_RETURN_IF_ERROR(WriteFile(cg.memory + "/memory.max", std::to_string(spec.memory_limit_bytes)));
      (void)WriteFile(cg.memory + "/memory.swap.max", "0");
    }
    if (spec.cpu_millicores > 0) {
      GRID_RETURN_IF_ERROR(
          WriteFile(cg.cpu + "/cpu.max",
                    std::to_string(std::max<int64_t>(1000, spec.cpu_millicores * 100)) + " 100000"));
    }
    if (spec.pids_limit > 0) {
      GRID_RETURN_IF_ERROR(WriteFile(cg.pids + "/pids.max", std::to_string(spec.pids_limit)));
    }
    return Status::Ok();
  }
  for (const auto& [c, parent] : layout.v1) {
    GRID_RETURN_IF_ERROR(MkdirIfMissing(parent, 0755));
  }
  for (const auto& d : cg.All()) GRID_RETURN_IF_ERROR(MkdirIfMissing(d, 0755));
  if (spec.memory_limit_bytes > 0) {
    GRID_RETURN_IF_ERROR(
        WriteFile(cg.memory + "/memory.limit_in_bytes", std::to_string(spec.memory_limit_bytes)));
    // No swap either, where swap accounting exists.
    (void)WriteFile(cg.memory + "/memory.memsw.limit_in_bytes",
                    std::to_string(spec.memory_limit_bytes));
  }
  if (spec.cpu_millicores > 0) {
    GRID_RETURN_IF_ERROR(WriteFile(cg.cpu + "/cpu.cfs_period_us", "100000"));
    // The kernel's smallest quota is 1 ms per 100 ms period (10 millicores).
    GRID_RETURN_IF_ERROR(WriteFile(cg.cpu + "/cpu.cfs_quota_us",
                                   std::to_string(std::max<int64_t>(1000, spec.cpu_millicores * 100))));
  }
  if (spec.pids_limit > 0) {
    GRID_RETURN_IF_ERROR(WriteFile(cg.pids + "/pids.max", std::to_string(spec.pids_limit)));
  }
  // NVIDIA GPUs are char major 195, minor = index; 255 (nvidiactl) and 254
  // (modeset) stay allowed. Deny every GPU minor not assigned to the lease.
  std::set<int> mine(spec.gpu_indices.begin(), spec.gpu_indices.end());
  for (int minor = 0; minor < 64; ++minor) {
    if (mine.count(minor)) continue;
    GRID_RETURN_IF_ERROR(
        WriteFile(cg.devices + "/devices.deny", "c 195:" + std::to_string(minor) + " rwm"));
  }
  return Status::Ok();
}

// Removes the lease's cgroup dirs; retries a little because a just-killed
// tree may take a moment to leave.
Status RemoveCgroups(const LeaseCgroups& cg) {
  std::string failed;
  for (const auto& d : cg.All()) {
    bool ok = false;
    for (int i = 0; i < 100; ++i) {
      if (rmdir(d.c_str()) == 0 || errno == ENOENT) {
        ok = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!ok) failed += " " + d + " (" + Errno(errno) + ")";
  }
  if (!failed.empty()) return Unavailable("rmdir cgroups:" + failed);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// The child side: runs after clone(), in the new namespaces.

struct MountEntry {
  std::string target;       // inside the new root (host path of the mount point)
  std::string source;       // host path to bind, or "" for symlinks
  std::string link;         // symlink target when a symlink
  bool symlink = false;
};

struct ChildArgs {
  // fds in the parent; the child moves them to 3..6.
  int go_fd, err_fd, log_fd, exit_fd;
  std::string root, work_dir, hostname;
  std::vector<MountEntry> entries;  // host top-level dirs and symlinks
  std::vector<std::string> mkdirs;  // extra mount points inside root
  std::string proc_dir, sys_dir, dev_dir, tmp_dir, work_mnt, shm_dir;
  std::vector<std::string> exec_paths;  // candidates for argv[0]
  std::vector<const char*> argv, envp;
};

// Error report from the child: what failed, and errno.
struct ChildError {
  int err;
  char what[256];
};

void ChildFail(int fd, const char* what, const char* detail, int err) {
  ChildError e;
  std::memset(&e, 0, sizeof e);
  e.err = err;
  size_t n = 0;
  for (const char* p = what; *p && n + 1 < sizeof e.what; ++p) e.what[n++] = *p;
  if (detail != nullptr) {
    if (n + 1 < sizeof e.what) e.what[n++] = ' ';
    for (const char* p = detail; *p && n + 1 < sizeof e.what; ++p) e.what[n++] = *p;
  }
  ssize_t w = write(fd, &e, sizeof e);
  (void)w;
  _exit(127);
}

size_t FormatInt(char* buf, int64_t v) {
  char tmp[24];
  size_t n = 0;
  bool neg = v < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  size_t o = 0;
  if (neg) buf[o++] = '-';
  while (n > 0) buf[o++] = tmp[--n];
  return o;
}

constexpr int kGoFd = 3, kErrFd = 4, kLogFd = 5, kExitFd = 6;

int ChildMain(void* raw) {
  ChildArgs* a = static_cast<ChildArgs*>(raw);
  // Move the four fds to 3..6 and close everything else the agent had open.
  int src[4] = {a->go_fd, a->err_fd, a->log_fd, a->exit_fd};
  int tmp[4];
  for (int i = 0; i < 4; ++i) {
    tmp[i] = fcntl(src[i], F_DUPFD, 100);
    if (tmp[i] < 0) _exit(127);
  }
  for (int i = 0; i < 4; ++i) {
    if (dup2(tmp[i], 3 + i) < 0) _exit(127);
  }
  syscall(SYS_close_range, 7u, ~0u, 0u);
  fcntl(kGoFd, F_SETFD, FD_CLOEXEC);
  fcntl(kErrFd, F_SETFD, FD_CLOEXEC);
  fcntl(kExitFd, F_SETFD, FD_CLOEXEC);

  char go = 0;
  ssize_t r;
  do {
    r = read(kGoFd, &go, 1);
  } while (r < 0 && errno == EINTR);
  if (r != 1) _exit(127);  // the agent died before letting us run
  close(kGoFd);

  if (setsid() < 0) ChildFail(kErrFd, "setsid", nullptr, errno);
  if (setgroups(0, nullptr) != 0) ChildFail(kErrFd, "setgroups", nullptr, errno);
  if (setresgid(0, 0, 0) != 0) ChildFail(kErrFd, "setresgid", nullptr, errno);
  if (setresuid(0, 0, 0) != 0) ChildFail(kErrFd, "setresuid", nullptr, errno);

  // The new root: a tmpfs with read-only binds of the host's top-level dirs.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    ChildFail(kErrFd, "make / private", nullptr, errno);
  }
  if (mount("tmpfs", a->root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) {
    ChildFail(kErrFd, "mount tmpfs root", nullptr, errno);
  }
  struct mount_attr ro;
  std::memset(&ro, 0, sizeof ro);
  ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
  for (const auto& e : a->entries) {
    if (e.symlink) {
      if (symlink(e.link.c_str(), e.target.c_str()) != 0) {
        ChildFail(kErrFd, "symlink", e.target.c_str(), errno);
      }
      continue;
    }
    if (mkdir(e.target.c_str(), 0755) != 0) ChildFail(kErrFd, "mkdir", e.target.c_str(), errno);
    if (mount(e.source.c_str(), e.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      ChildFail(kErrFd, "bind", e.source.c_str(), errno);
    }
    if (syscall(SYS_mount_setattr, AT_FDCWD, e.target.c_str(), AT_RECURSIVE, &ro, sizeof ro) != 0) {
      ChildFail(kErrFd, "mount_setattr read-only", e.target.c_str(), errno);
    }
  }
  for (const auto& d : a->mkdirs) {
    if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) ChildFail(kErrFd, "mkdir", d.c_str(), errno);
  }
  // /dev: the host's, read-only (device nodes stay usable; the device cgroup
  // decides which), with a private /dev/shm.
  if (mount("/dev", a->dev_dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    ChildFail(kErrFd, "bind /dev", nullptr, errno);
  }
  if (syscall(SYS_mount_setattr, AT_FDCWD, a->dev_dir.c_str(), AT_RECURSIVE, &ro, sizeof ro) != 0) {
    ChildFail(kErrFd, "mount_setattr read-only /dev", nullptr, errno);
  }
  (void)mount("tmpfs", a->shm_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m");
  if (mount("proc", a->proc_dir.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    ChildFail(kErrFd, "mount /proc", nullptr, errno);
  }
  // A fresh sysfs shows this network namespace; fall back to the host's.
  if (mount("sysfs", a->sys_dir.c_str(), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            nullptr) != 0) {
    if (mount("/sys", a->sys_dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        syscall(SYS_mount_setattr, AT_FDCWD, a->sys_dir.c_str(), AT_RECURSIVE, &ro, sizeof ro) != 0) {
      ChildFail(kErrFd, "mount /sys", nullptr, errno);
    }
  }
  if (mount("tmpfs", a->tmp_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m") != 0) {
    ChildFail(kErrFd, "mount /tmp", nullptr, errno);
  }
  if (mount(a->work_dir.c_str(), a->work_mnt.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    ChildFail(kErrFd, "bind /work", nullptr, errno);
  }
  if (mount(nullptr, a->root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0) {
    ChildFail(kErrFd, "remount root read-only", nullptr, errno);
  }
  if (chdir(a->root.c_str()) != 0) ChildFail(kErrFd, "chdir root", nullptr, errno);
  if (syscall(SYS_pivot_root, ".", ".") != 0) ChildFail(kErrFd, "pivot_root", nullptr, errno);
  if (umount2(".", MNT_DETACH) != 0) ChildFail(kErrFd, "detach old root", nullptr, errno);
  if (chdir("/work") != 0) ChildFail(kErrFd, "chdir /work", nullptr, errno);
  if (sethostname(a->hostname.data(), a->hostname.size()) != 0) {
    ChildFail(kErrFd, "sethostname", nullptr, errno);
  }

  pid_t cmd = fork();
  if (cmd < 0) ChildFail(kErrFd, "fork", nullptr, errno);
  if (cmd == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    // The init is exempt from the OOM killer; the command must not be.
    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
      ssize_t w = write(adj, "0", 1);
      (void)w;
      close(adj);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && null_fd != 0) {
      dup2(null_fd, 0);
      close(null_fd);
    }
    dup2(kLogFd, 1);
    dup2(kLogFd, 2);
    close(kLogFd);
    int err = ENOENT;
    for (const auto& p : a->exec_paths) {
      execve(p.c_str(), const_cast<char* const*>(a->argv.data()),
             const_cast<char* const*>(a->envp.data()));
      if (errno != ENOENT && errno != ENOTDIR) err = errno;
    }
    ChildFail(kErrFd, "exec", a->argv[0], err);
  }
  // The init: only the command holds the error pipe now (close-on-exec).
  close(kErrFd);
  close(kLogFd);
  int status = 0;
  bool got = false;
  for (;;) {
    int st = 0;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p == cmd) {
      status = st;
      got = true;
      break;
    }
  }
  if (got) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[96];
    size_t n = 0;
    const char k1[] = "status=";
    std::memcpy(buf + n, k1, sizeof k1 - 1);
    n += sizeof k1 - 1;
    n += FormatInt(buf + n, status);
    const char k2[] = "\nend_ms=";
    std::memcpy(buf + n, k2, sizeof k2 - 1);
    n += sizeof k2 - 1;
    n += FormatInt(buf + n, static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000);
    buf[n++] = '\n';
    ssize_t w = write(kExitFd, buf, n);
    (void)w;
    fsync(kExitFd);
  }
  // Exiting kills whatever the command left in the namespace.
  _exit(0);
}

// ---------------------------------------------------------------------------
// The runtime.

struct Lease {
  std::mutex mu;  // serialises operations on this lease
  std::string id;
  std::string dir;
  pid_t init_pid = 0;
  int64_t init_start_time = -1;
  bool our_child = false;  // started by this object: reap with waitpid
  bool reaped = false;
  int uid = 0;
  int64_t start_ms = 0;
  int64_t end_ms = 0;      // 0 while running / not yet observed
  bool stopped = false;
  LeaseCgroups cg;
  int64_t net_rx = 0, net_tx = 0;  // last seen while running (memory only)
};

class ProcessRuntime final : public Runtime {
 public:
  ProcessRuntime(ProcessRuntimeOptions opts, CgroupLayout layout)
      : opts_(std::move(opts)), layout_(std::move(layout)) {}

  ~ProcessRuntime() override {
    // Never kill workloads here; only reap those that already ended.
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, lease] : leases_) {
      if (lease->our_child && !lease->reaped) waitpid(lease->init_pid, nullptr, WNOHANG);
    }
  }

  std::string Name() const override { return "process"; }

  Status Start(const WorkloadSpec& spec) override;
  Result<WorkloadStatus> Poll(const std::string& lease_id) override;
  Status Stop(const std::string& lease_id, int grace_ms) override;
  Result<std::string> ReadLogs(const std::string& lease_id, int64_t offset,
                               size_t max_bytes) override;
  Result<std::vector<std::string>> Adopt() override;
  Status Remove(const std::string& lease_id) override;

 private:
  std::string LeasesDir() const { return opts_.state_dir + "/leases"; }
  Result<std::shared_ptr<Lease>> Find(const std::string& id);
  Result<std::shared_ptr<Lease>> Load(const std::string& id);
  Status SaveState(const Lease& l);
  Result<int> AllocateUidIndex();
  bool Running(Lease& l);
  Status KillAll(Lease& l);
  void Cleanup(Lease& l);

  const ProcessRuntimeOptions opts_;
  const CgroupLayout layout_;
  std::mutex mu_;  // guards leases_ and uid allocation
  std::map<std::string, std::shared_ptr<Lease>> leases_;
};

Status ProcessRuntime::SaveState(const Lease& l) {
  std::ostringstream o;
  o << "lease_id=" << l.id << "\n"
    << "init_pid=" << l.init_pid << "\n"
    << "init_start_time=" << l.init_start_time << "\n"
    << "uid=" << l.uid << "\n"
    << "start_ms=" << l.start_ms << "\n"
    << "end_ms=" << l.end_ms << "\n"
    << "stopped=" << (l.stopped ? 1 : 0) << "\n"
    << "cgroup_v2=" << (l.cg.v2 ? 1 : 0) << "\n"
    << "cg_memory=" << l.cg.memory << "\n"
    << "cg_cpu=" << l.cg.cpu << "\n"
    << "cg_cpuacct=" << l.cg.cpuacct << "\n"
    << "cg_pids=" << l.cg.pids << "\n"
    << "cg_devices=" << l.cg.devices << "\n"
    << "cg_freezer=" << l.cg.freezer << "\n";
  return WriteFileAtomic(l.dir + "/state", o.str());
}

Result<std::shared_ptr<Lease>> ProcessRuntime::Load(const std::string& id) {
  auto text = ReadFile(LeasesDir() + "/" + id + "/state");
  if (!text.ok()) return NotFound("lease " + id + ": no state");
  auto kv = ParseKeyValues(*text);
  if (kv["lease_id"] != id || kv["cg_pids"].empty()) {
    return Internal("lease " + id + ": corrupt state file");
  }
  auto l = std::make_shared<Lease>();
  l->id = id;
  l->dir = LeasesDir() + "/" + id;
  l->init_pid = static_cast<pid_t>(ToInt(kv["init_pid"]));
  l->init_start_time = ToInt(kv["init_start_time"], -1);
  l->uid = static_cast<int>(ToInt(kv["uid"]));
  l->start_ms = ToInt(kv["start_ms"]);
  l->end_ms = ToInt(kv["end_ms"]);
  l->stopped = kv["stopped"] == "1";
  l->cg.v2 = kv["cgroup_v2"] == "1";
  l->cg.memory = kv["cg_memory"];
  l->cg.cpu = kv["cg_cpu"];
  l->cg.cpuacct = kv["cg_cpuacct"];
  l->cg.pids = kv["cg_pids"];
  l->cg.devices = kv["cg_devices"];
  l->cg.freezer = kv["cg_freezer"];
  return l;
}

Result<std::shared_ptr<Lease>> ProcessRuntime::Find(const std::string& id) {
  std::shared_ptr<Lease> l;
  if (ValidLeaseId(id)) l = CachedOrLoad(mu_, leases_, id, [&](const std::string& i) { return Load(i); });
  if (l == nullptr) return NotFound("lease " + id + ": unknown");
  return l;
}

Result<int> ProcessRuntime::AllocateUidIndex() {
  std::set<int> used;
  DIR* d = opendir(LeasesDir().c_str());
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      struct stat st;
      std::string work = LeasesDir() + "/" + name + "/work";
      if (stat(work.c_str(), &st) == 0) used.insert(static_cast<int>(st.st_uid));
    }
    closedir(d);
  }
  for (int i = 0; i < 65536; ++i) {
    if (!used.count(opts_.unprivileged_uid_base + i)) return i;
  }
  return Unavailable("no free lease uid");
}

// True while some process of the lease is in its cgroup. Reaps our own
// child first so a zombie init does not linger.
bool ProcessRuntime::Running(Lease& l) {
  if (l.our_child && !l.reaped) {
    if (waitpid(l.init_pid, nullptr, WNOHANG) == l.init_pid) l.reaped = true;
  }
  return !CgroupPids(l.cg.pids).empty();
}

Status ProcessRuntime::KillAll(Lease& l) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  if (l.cg.v2) {
    (void)WriteFile(l.cg.pids + "/cgroup.kill", "1");
  }
  // Killing the namespace's init kills the whole namespace; the freezer stops
  // anything from forking while the rest is killed.
  if (l.init_pid > 0 && ProcStartTime(l.init_pid) == l.init_start_time) kill(l.init_pid, SIGKILL);
  while (Running(l)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Internal("lease " + l.id + ": processes survive SIGKILL");
    }
    bool frozen = false;
    if (!l.cg.freezer.empty() && WriteFile(l.cg.freezer + "/freezer.state", "FROZEN").ok()) {
      for (int i = 0; i < 100; ++i) {
        auto st = ReadFile(l.cg.freezer + "/freezer.state");
        if (st.ok() && st->rfind("FROZEN", 0) == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      frozen = true;
    }
    for (pid_t p : CgroupPids(l.cg.pids)) kill(p, SIGKILL);
    if (frozen) (void)WriteFile(l.cg.freezer + "/freezer.state", "THAWED");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::Ok();
}

void ProcessRuntime::Cleanup(Lease& l) {
  (void)RemoveCgroups(l.cg);
  (void)RemoveAll(l.dir);
}

Status ProcessRuntime::Start(const WorkloadSpec& spec) {
  GRID_RETURN_IF_ERROR(CheckLeaseId(spec.lease_id));
  if (spec.image != "host") {
    return InvalidArgument("image \"" + spec.image +
                           "\": the process runtime runs only --image host; use --runtime podman");
  }
  GRID_RETURN_IF_ERROR(CheckCommand(spec));
  if (!spec.ports.empty() || !spec.ssh_public_key.empty()) {
    // Its workloads share no network with the host: nothing to publish.
    return InvalidArgument("ports and --ssh-key need --runtime podman; the process runtime has no network");
  }
  GRID_RETURN_IF_ERROR(CheckEnv(spec));

  auto lease = std::make_shared<Lease>();
  lease->id = spec.lease_id;
  lease->dir = LeasesDir() + "/" + spec.lease_id;
  std::unique_lock<std::mutex> lease_lock(lease->mu);
  {
    std::lock_guard<std::mutex> g(mu_);
    struct stat st;
    if (leases_.count(spec.lease_id) || stat(lease->dir.c_str(), &st) == 0) {
      return Conflict("lease " + spec.lease_id + ": already exists");
    }
    GRID_ASSIGN_OR_RETURN(int index, AllocateUidIndex());
    lease->uid = opts_.unprivileged_uid_base + index;
    // The dir is made inside the lock, so the uid is ours.
    if (mkdir(lease->dir.c_str(), 0711) != 0) {
      return Unavailable("mkdir " + lease->dir + ": " + Errno(errno));
    }
    std::string work = lease->dir + "/work";
    if (mkdir(work.c_str(), 0700) != 0 || chown(work.c_str(), lease->uid, lease->uid) != 0) {
      Status s = Unavailable("mkdir " + work + ": " + Errno(errno));
      Cleanup(*lease);
      return s;
    }
    leases_[spec.lease_id] = lease;
  }
  auto fail = [&](Status s) {
    Cleanup(*lease);
    std::lock_guard<std::mutex> g(mu_);
    leases_.erase(spec.lease_id);
    return s;
  };

  std::string root = lease->dir + "/root";
  if (mkdir(root.c_str(), 0755) != 0) return fail(Unavailable("mkdir " + root + ": " + Errno(errno)));
  lease->cg = LeaseCgroupsFor(layout_, spec.lease_id);
  if (Status s = CreateCgroups(layout_, lease->cg, spec); !s.ok()) return fail(s);

  // Everything the child needs, prepared here.
  ChildArgs args;
  args.root = root;
  args.work_dir = lease->dir + "/work";
  args.hostname = spec.lease_id;
  DIR* d = opendir("/");
  if (d == nullptr) return fail(Unavailable("opendir /: " + Errno(errno)));
  static const std::set<std::string> kSkip = {".", "..", "proc", "sys", "dev", "tmp", "work", "lost+found"};
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (kSkip.count(name)) continue;
    std::string host = "/" + name;
    struct stat st;
    if (lstat(host.c_str(), &st) != 0) continue;
    MountEntry m;
    m.target = root + "/" + name;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(host.c_str(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      m.symlink = true;
      m.link.assign(buf, static_cast<size_t>(n));
    } else if (S_ISDIR(st.st_mode)) {
      m.source = host;
    } else {
      continue;
    }
    args.entries.push_back(std::move(m));
  }
  closedir(d);
  args.proc_dir = root + "/proc";
  args.sys_dir = root + "/sys";
  args.dev_dir = root + "/dev";
  args.shm_dir = root + "/dev/shm";
  args.tmp_dir = root + "/tmp";
  args.work_mnt = root + "/work";
  args.mkdirs = {args.proc_dir, args.sys_dir, args.dev_dir, args.tmp_dir, args.work_mnt};

  // Environment: the spec's, plus defaults and the GPUs.
  std::vector<std::string> env;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  bool have_home = false;
  for (const auto& e : spec.env) {
    if (e.rfind("PATH=", 0) == 0) {
      path = e.substr(5);
      continue;
    }
    if (e.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) continue;
    if (e.rfind("HOME=", 0) == 0) have_home = true;
    env.push_back(e);
  }
  env.push_back("PATH=" + path);
  if (!have_home) env.push_back("HOME=/work");
  std::string cuda;
  if (!spec.gpu_uuids.empty()) {
    for (const auto& u : spec.gpu_uuids) cuda += (cuda.empty() ? "" : ",") + u;
  } else {
    for (int i : spec.gpu_indices) cuda += (cuda.empty() ? "" : ",") + std::to_string(i);
  }
  // No GPUs: an empty list hides every GPU from CUDA.
  env.push_back("CUDA_VISIBLE_DEVICES=" + cuda);
  for (const auto& e : env) args.envp.push_back(e.c_str());
  args.envp.push_back(nullptr);
  for (const auto& a : spec.command) args.argv.push_back(a.c_str());
  args.argv.push_back(nullptr);
  if (spec.command[0].find('/') != std::string::npos) {
    args.exec_paths.push_back(spec.command[0]);
  } else {
    std::istringstream ps(path);
    std::string dir;
    while (std::getline(ps, dir, ':')) {
      args.exec_paths.push_back((dir.empty() ? "." : dir) + "/" + spec.command[0]);
    }
  }

  // Files and pipes.
  std::string log = lease->dir + "/output.log";
  std::string exit_file = lease->dir + "/exit";
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int exit_fd = open(exit_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int go[2] = {-1, -1}, err[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {log_fd, exit_fd, go[0], go[1], err[0], err[1]}) {
      if (fd >= 0) close(fd);
    }
  };
  if (log_fd < 0 || exit_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    Status s = Unavailable("lease files: " + Errno(errno));
    close_all();
    return fail(s);
  }
  args.go_fd = go[0];
  args.err_fd = err[1];
  args.log_fd = log_fd;
  args.exit_fd = exit_fd;

  const size_t kStack = 1 << 20;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    close_all();
    return fail(Unavailable("mmap stack: " + Errno(errno)));
  }
  int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
              CLONE_NEWUTS | SIGCHLD;
  pid_t pid = clone(ChildMain, static_cast<char*>(stack) + kStack, flags, &args);
  int clone_errno = errno;
  munmap(stack, kStack);  // the child has its own copy of the mapping
  close(go[0]);
  go[0] = -1;
  close(err[1]);
  err[1] = -1;
  close(log_fd);
  log_fd = -1;
  close(exit_fd);
  exit_fd = -1;
  if (pid < 0) {
    close_all();
    return fail(Unavailable("clone: " + Errno(clone_errno)));
  }
  lease->init_pid = pid;
  lease->our_child = true;
  auto abort_child = [&](Status s) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    lease->reaped = true;
    close_all();
    (void)KillAll(*lease);
    return fail(s);
  };

  std::string proc = "/proc/" + std::to_string(pid);
  std::string map = "0 " + std::to_string(lease->uid) + " 1\n";
  if (Status s = WriteFile(proc + "/uid_map", map); !s.ok()) return abort_child(s);
  if (Status s = WriteFile(proc + "/gid_map", map); !s.ok()) return abort_child(s);
  for (const auto& dir : lease->cg.All()) {
    if (Status s = WriteFile(dir + "/cgroup.procs", std::to_string(pid)); !s.ok()) {
      return abort_child(s);
    }
  }
  // The init never runs user code; keep the OOM killer on the command.
  (void)WriteFile(proc + "/oom_score_adj", "-1000");
  lease->init_start_time = ProcStartTime(pid);
  lease->start_ms = NowUnixMs();
  if (Status s = SaveState(*lease); !s.ok()) return abort_child(s);

  char one = 1;
  if (send(go[1], &one, 1, MSG_NOSIGNAL) != 1) return abort_child(Internal("lease start pipe: " + Errno(errno)));
  close(go[1]);
  go[1] = -1;
  ChildError ce;
  size_t got = 0;
  for (;;) {
    ssize_t n = read(err[0], reinterpret_cast<char*>(&ce) + got, sizeof ce - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
    if (got == sizeof ce) break;
  }
  close(err[0]);
  err[0] = -1;
  if (got > 0) {
    ce.what[sizeof ce.what - 1] = 0;
    std::string msg = "start: " + std::string(ce.what) + ": " + Errno(ce.err);
    if (std::string(ce.what).rfind("exec", 0) == 0) return abort_child(InvalidArgument(msg));
    return abort_child(Unavailable(msg));
  }
  return Status::Ok();
}

Result<WorkloadStatus> ProcessRuntime::Poll(const std::string& lease_id) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  Lease& l = *lease;
  std::lock_guard<std::mutex> g(l.mu);
  WorkloadStatus ws;
  bool running = Running(l);

  // Metering from the cgroups: they stay until Remove.
  MeterCgroupUsage(l.cg.v2, l.cg.v2 ? l.cg.cpu : l.cg.cpuacct, l.cg.memory, &ws);
  auto oom = ReadFile(l.cg.memory + (l.cg.v2 ? "/memory.events" : "/memory.oom_control"));
  if (oom.ok()) ws.oom_kills = std::max<int64_t>(0, KeyedValue(*oom, "oom_kill"));

  if (running) {
    // The workload's own network namespace has only loopback: anything else
    // would show here.
    if (auto dev = ReadFile("/proc/" + std::to_string(l.init_pid) + "/net/dev"); dev.ok())
      ParseNetDev(*dev, &l.net_rx, &l.net_tx);
  }
  ws.net_rx_bytes = l.net_rx;
  ws.net_tx_bytes = l.net_tx;
  if (running) {
    ws.state = WorkloadState::kRunning;
    ws.wall_seconds = (NowUnixMs() - l.start_ms) / 1e3;
    return ws;
  }
  auto exit_text = ReadFile(l.dir + "/exit");
  auto kv = ParseKeyValues(exit_text.ok() ? *exit_text : "");
  bool have_status = kv.count("status") > 0;
  if (l.end_ms == 0) {
    l.end_ms = have_status ? ToInt(kv["end_ms"], NowUnixMs()) : NowUnixMs();
    (void)SaveState(l);
  }
  ws.wall_seconds = std::max<int64_t>(0, l.end_ms - l.start_ms) / 1e3;
  if (have_status) {
    int st = static_cast<int>(ToInt(kv["status"]));
    if (WIFEXITED(st)) {
      ws.exit_code = WEXITSTATUS(st);
      ws.reason = "exit " + std::to_string(ws.exit_code);
    } else if (WIFSIGNALED(st)) {
      ws.exit_code = 128 + WTERMSIG(st);
      ws.reason = "signal " + std::to_string(WTERMSIG(st));
    }
  } else {
    // The init itself was killed (Stop, or something outside).
    ws.exit_code = 128 + SIGKILL;
    ws.reason = "signal 9";
  }
  ws.state = ws.exit_code == 0 && have_status ? WorkloadState::kExited : WorkloadState::kFailed;
  if (ws.state == WorkloadState::kFailed && ws.oom_kills > 0) ws.reason = "oom";
  return ws;
}

Status ProcessRuntime::Stop(const std::string& lease_id, int grace_ms) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  Lease& l = *lease;
  std::lock_guard<std::mutex> g(l.mu);
  if (!Running(l)) return Status::Ok();
  l.stopped = true;
  (void)SaveState(l);
  // The namespace's init has no SIGTERM handler, so only the workload's own
  // processes see it.
  for (pid_t p : CgroupPids(l.cg.pids)) kill(p, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, grace_ms));
  while (Running(l) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return KillAll(l);
}

Result<std::string> ProcessRuntime::ReadLogs(const std::string& lease_id, int64_t offset,
                                             size_t max_bytes) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  if (offset < 0) return InvalidArgument("log offset < 0");
  std::string path = lease->dir + "/output.log";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Unavailable("open " + path + ": " + Errno(errno));
  std::string out(std::min<size_t>(max_bytes, 16 << 20), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = pread(fd, out.data() + got, out.size() - got, offset + static_cast<int64_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  out.resize(got);
  return out;
}

Result<std::vector<std::string>> ProcessRuntime::Adopt() {
  std::vector<std::string> running;
  for (const auto& id : LeaseIdsIn(LeasesDir())) {
    auto lease = CachedOrLoad(mu_, leases_, id, [&](const std::string& i) { return Load(i); });
    if (lease == nullptr) continue;  // a half-made dir: nothing ran
    std::lock_guard<std::mutex> g(lease->mu);
    // Running means: some process is in the lease's cgroup. Membership, not
    // the saved pid, decides, so a reused pid is never mistaken for the
    // workload (and a zombie init no longer counts).
    if (!CgroupPids(lease->cg.pids).empty()) running.push_back(id);
  }
  return running;
}

Status ProcessRuntime::Remove(const std::string& lease_id) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  Lease& l = *lease;
  {
    std::lock_guard<std::mutex> g(l.mu);
    if (Running(l)) return Conflict("lease " + lease_id + ": still running; Stop it first");
    GRID_RETURN_IF_ERROR(RemoveCgroups(l.cg));
    GRID_RETURN_IF_ERROR(RemoveAll(l.dir));
  }
  std::lock_guard<std::mutex> g(mu_);
  leases_.erase(lease_id);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Runtime>> NewProcessRuntime(ProcessRuntimeOptions options) {
  if (geteuid() != 0) return Unavailable("the process runtime needs root");
  if (options.state_dir.empty()) return InvalidArgument("process runtime: empty state dir");
  if (options.cgroup_name.empty() || !ValidLeaseId(options.cgroup_name)) {
    return InvalidArgument("process runtime: bad cgroup name \"" + options.cgroup_name + "\"");
  }
  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (ec) return Unavailable("state dir " + options.state_dir + ": " + ec.message());
  // Lease users must traverse these to reach their own work dir.
  std::string leases = options.state_dir + "/leases";
  if (Status s = MkdirIfMissing(leases, 0711); !s.ok()) return s;
  if (chmod(options.state_dir.c_str(), 0711) != 0 || chmod(leases.c_str(), 0711) != 0) {
    return Unavailable("chmod " + options.state_dir + ": " + Errno(errno));
  }
  GRID_ASSIGN_OR_RETURN(CgroupLayout layout, DetectCgroups(options.cgroup_name));
  return std::unique_ptr<Runtime>(new ProcessRuntime(std::move(options), std::move(layout)));
}

}  // namespace grid::agent
