// The podman runtime. See podman_runtime.h for the layout and the design.
//
// Every podman operation is a `podman` command run with posix_spawn (the
// agent has threads, so no fork without exec), its output captured, under a
// timeout. Metering and "does anything of the lease still run" come from the
// lease's cgroups directly: cheaper than a podman call, and true even while
// podman's own view lags behind the kernel.
#include "agent/runtime/podman_runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include "agent/runtime/sys_util.h"

extern char** environ;

namespace grid::agent {

using namespace runtime_internal;

namespace podman_internal {

namespace {

// One decoded k8s-file line: the raw bytes it carries.
bool DecodeLine(std::string_view line, std::string_view* content, bool* full) {
  // "<timestamp> <stream> <tags> <content>"; content may be empty, and the
  // space before it is then sometimes absent.
  size_t a = line.find(' ');
  if (a == std::string_view::npos) return false;
  size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  size_t c = line.find(' ', b + 1);
  std::string_view tags = line.substr(b + 1, c == std::string_view::npos ? line.npos : c - b - 1);
  *content = c == std::string_view::npos ? std::string_view() : line.substr(c + 1);
  // Tags are ':'-separated; "F" marks the end of a line, "P" a partial one.
  *full = false;
  size_t start = 0;
  while (start <= tags.size()) {
    size_t end = tags.find(':', start);
    if (end == std::string_view::npos) end = tags.size();
    if (tags.substr(start, end - start) == "F") *full = true;
    start = end + 1;
  }
  return true;
}

}  // namespace

// Where decoding stands: a file position at a line start, and the raw
// stream's offset there.
struct K8sCursor {
  int64_t file_pos = 0;
  int64_t raw_pos = 0;
};

// Decodes the complete lines of `data` (file bytes from cur.file_pos),
// appending the raw bytes in [offset, offset + max_bytes) to *out. *skip ends
// up past the last line whose raw bytes all lie before `offset` (a later read
// at this offset or beyond can start there); *end past the last line walked.
void DecodeChunk(std::string_view data, K8sCursor cur, int64_t offset, size_t max_bytes,
                 std::string* out, K8sCursor* skip, K8sCursor* end) {
  *skip = cur;
  size_t pos = 0;
  while (pos < data.size() && out->size() < max_bytes) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string_view::npos) break;  // still being written
    std::string_view content;
    bool full = false;
    int64_t raw_len = 0;
    if (DecodeLine(data.substr(pos, nl - pos), &content, &full)) {
      raw_len = static_cast<int64_t>(content.size()) + (full ? 1 : 0);
      int64_t line_end = cur.raw_pos + raw_len;
      if (line_end > offset) {
        int64_t from = std::max<int64_t>(0, offset - cur.raw_pos);
        std::string piece(content);
        if (full) piece.push_back('\n');
        size_t want = max_bytes - out->size();
        out->append(piece, static_cast<size_t>(from), want);
      }
    }
    cur.raw_pos += raw_len;
    cur.file_pos += static_cast<int64_t>(nl - pos + 1);
    pos = nl + 1;
    if (cur.raw_pos <= offset) *skip = cur;
  }
  *end = cur;
}

std::string DecodeK8sLog(const std::string& file, int64_t offset, size_t max_bytes) {
  std::string out;
  K8sCursor skip, end;
  DecodeChunk(file, K8sCursor{}, offset, max_bytes, &out, &skip, &end);
  return out;
}

Status CheckVisibleGpus(size_t requested, const std::vector<std::string>& dev_entries) {
  std::vector<std::string> gpus;
  for (const auto& e : dev_entries) {
    if (e.size() > 6 && e.compare(0, 6, "nvidia") == 0 &&
        std::all_of(e.begin() + 6, e.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      gpus.push_back("/dev/" + e);
    }
  }
  if (gpus.size() == requested) return Status::Ok();
  std::sort(gpus.begin(), gpus.end());
  std::string seen;
  for (const auto& g : gpus) seen += (seen.empty() ? "" : ", ") + g;
  return Unavailable("the container sees " + std::to_string(gpus.size()) + " GPU device(s)" +
                     (seen.empty() ? "" : " (" + seen + ")") + " but the lease has " +
                     std::to_string(requested) +
                     ": the CDI device request did not give exactly the lease's GPUs");
}

std::vector<PortMapping> ParsePodmanPorts(const std::string& text) {
  std::vector<PortMapping> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // "22/tcp -> 127.0.0.1:45003"
    auto slash = line.find('/');
    auto arrow = line.find("->");
    auto colon = line.rfind(':');
    if (slash == std::string::npos || arrow == std::string::npos || colon == std::string::npos ||
        colon < arrow) {
      continue;
    }
    PortMapping m;
    m.container_port = std::atoi(line.substr(0, slash).c_str());
    m.host_port = std::atoi(line.substr(colon + 1).c_str());
    if (m.container_port > 0 && m.host_port > 0) out.push_back(m);
  }
  return out;
}

void ExitReason(int exit_code, WorkloadStatus* status) {
  status->exit_code = exit_code;
  if (exit_code > 128 && exit_code < 160) {
    status->reason = "signal " + std::to_string(exit_code - 128);
  } else {
    status->reason = "exit " + std::to_string(exit_code);
  }
  status->state = exit_code == 0 ? WorkloadState::kExited : WorkloadState::kFailed;
}

}  // namespace podman_internal

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// ---------------------------------------------------------------------------
// Running a command.

struct CmdResult {
  int status = -1;  // wait status; -1 when it could not be started
  bool timed_out = false;
  std::string out, err;

  bool ok() const { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  int exit_code() const {
    if (status >= 0 && WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
  }
  // The first line of what went wrong, for error messages.
  std::string Error() const {
    if (timed_out) return "timed out";
    std::string e = Trim(err.empty() ? out : err);
    // podman prints warnings before the error; the last line is the error.
    auto nl = e.rfind('\n');
    if (nl != std::string::npos) e = e.substr(nl + 1);
    if (e.empty()) e = status < 0 ? "could not be started" : "exit status " + std::to_string(exit_code());
    return e;
  }
};

// Runs argv[0] (PATH lookup) in dir `cwd` with stdin from /dev/null. Stops
// reading once the command has exited: a daemon it left behind (conmon,
// sshd) may still hold the pipes.
CmdResult RunCommand(const std::vector<std::string>& argv, int timeout_ms,
                     const std::string& cwd = "/") {
  CmdResult r;
  int outp[2] = {-1, -1}, errp[2] = {-1, -1};
  if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    r.err = "pipe: " + Errno(errno);
    for (int fd : {outp[0], outp[1]}) {
      if (fd >= 0) close(fd);
    }
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  // Its own process group: a Ctrl-C meant for the agent does not cut a podman
  // command in half.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(outp[1]);
  close(errp[1]);
  if (rc != 0) {
    close(outp[0]);
    close(errp[0]);
    r.err = argv[0] + ": " + Errno(rc);
    return r;
  }
  fcntl(outp[0], F_SETFL, O_NONBLOCK);
  fcntl(errp[0], F_SETFL, O_NONBLOCK);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool exited = false;
  int fds[2] = {outp[0], errp[0]};
  std::string* sinks[2] = {&r.out, &r.err};
  auto drain = [&](int i) {
    char buf[8192];
    for (;;) {
      ssize_t n = read(fds[i], buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        close(fds[i]);
        fds[i] = -1;
      }
      return;
    }
  };
  while (fds[0] >= 0 || fds[1] >= 0) {
    pollfd p[2];
    int np = 0;
    int idx[2];
    for (int i = 0; i < 2; ++i) {
      if (fds[i] >= 0) {
        p[np] = {fds[i], POLLIN, 0};
        idx[np++] = i;
      }
    }
    int n = poll(p, static_cast<nfds_t>(np), 20);
    for (int k = 0; n > 0 && k < np; ++k) {
      if (p[k].revents != 0) drain(idx[k]);
    }
    if (!exited) {
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        exited = true;
        r.status = st;
        for (int i = 0; i < 2; ++i) {
          if (fds[i] >= 0) drain(i);
        }
        break;
      }
      if (Clock::now() > deadline) {
        r.timed_out = true;
        kill(pid, SIGKILL);
      }
    }
  }
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
  if (!exited) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    r.status = st;
  }
  return r;
}

// ---------------------------------------------------------------------------
// cgroups

// The cgroup hierarchies of this host: where to read what.
struct Cgroups {
  bool v2 = false;                 // no v1 memory controller: the unified hierarchy
  std::string memory, cpuacct, pids;  // mount points used for metering
  std::vector<std::string> all;    // every cgroup mount (podman makes dirs in each)
};

Result<Cgroups> DetectCgroups() {
  GRID_ASSIGN_OR_RETURN(std::vector<CgroupMount> mounts, CgroupMounts());
  Cgroups cg;
  std::string unified;
  for (const auto& m : mounts) {
    cg.all.push_back(m.mountpoint);
    if (m.v2) {
      if (unified.empty()) unified = m.mountpoint;
      continue;
    }
    for (const auto& o : m.options) {
      if (o == "memory" && cg.memory.empty()) cg.memory = m.mountpoint;
      if (o == "cpuacct" && cg.cpuacct.empty()) cg.cpuacct = m.mountpoint;
      if (o == "pids" && cg.pids.empty()) cg.pids = m.mountpoint;
    }
  }
  if (cg.memory.empty() || cg.cpuacct.empty() || cg.pids.empty()) {
    if (unified.empty()) return Unavailable("the podman runtime needs cgroups: none mounted");
    cg.v2 = true;
    cg.memory = cg.cpuacct = cg.pids = unified;
  }
  return cg;
}

std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != ".." && e->d_type == DT_DIR) out.push_back(dir + "/" + n);
  }
  closedir(d);
  return out;
}

// Every process in the cgroup dir and below.
void TreePids(const std::string& dir, std::vector<pid_t>* pids) {
  if (!AppendCgroupPids(dir, pids)) return;
  for (const auto& sub : SubDirs(dir)) TreePids(sub, pids);
}

// Removes the cgroup dir and its descendants, deepest first.
bool RemoveTree(const std::string& dir) {
  for (const auto& sub : SubDirs(dir)) RemoveTree(sub);
  return rmdir(dir.c_str()) == 0 || errno == ENOENT;
}

// Kernel OOM-kill records ("oom-kill:...,task_memcg=/path,...") in the
// kernel log naming a cgroup under `prefix`, logged since since_us (µs of
// CLOCK_MONOTONIC, the clock of the records' timestamps, give or take: a
// second of slack). The log is a ring: very old records may be gone (EPIPE),
// which only makes the count a lower bound.
int64_t CountKmsgOomKills(const std::string& prefix, int64_t since_us) {
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  int64_t count = 0;
  std::string needle = "task_memcg=" + prefix;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0 && (errno == EPIPE || errno == EINTR)) continue;
    if (n <= 0) break;
    buf[n] = 0;
    // "<prio>,<seq>,<timestamp us>,<flags>;<message>"
    long long prio = 0, seq = 0, ts_us = 0;
    if (std::sscanf(buf, "%lld,%lld,%lld", &prio, &seq, &ts_us) != 3) continue;
    std::string_view rec(buf, static_cast<size_t>(n));
    if (ts_us + 1000000 >= since_us && rec.find("oom-kill:") != std::string_view::npos &&
        rec.find(needle) != std::string_view::npos) {
      ++count;
    }
  }
  close(fd);
  return count;
}

// Whether `path` names an executable regular file inside the container
// whose root dir is root_fd. RESOLVE_IN_ROOT resolves absolute symlinks in
// the image (/bin/sh -> /bin/busybox) inside it, not on the host.
bool ExecutableIn(int root_fd, const std::string& path) {
  open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  int fd = static_cast<int>(syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
  if (fd < 0) return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
  close(fd);
  return ok;
}

std::vector<std::string> DirEntriesIn(int root_fd, const std::string& path) {
  std::vector<std::string> out;
  open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  int fd = static_cast<int>(syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
  if (fd < 0) return out;
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return out;
  }
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

// ---------------------------------------------------------------------------
// The runtime.

struct Lease {
  std::mutex mu;  // serialises operations on this lease
  std::string id;
  std::string dir;
  std::string container;   // podman's full id; "" until created
  int64_t start_ms = 0;
  bool started = false;    // `podman start` succeeded: the command ran
  int64_t created_mono_us = 0;  // CLOCK_MONOTONIC before `podman create`
  std::vector<PortMapping> ports;
  int64_t oom_seen = 0;    // the container cgroup's oom_kill, last read while it ran
  int64_t net_rx = 0, net_tx = 0;  // its network namespace's bytes, last read while it ran
  bool ended = false;      // final_status is recorded
  WorkloadStatus final_status;
  podman_internal::K8sCursor log_cursor;
};

std::string PortsToString(const std::vector<PortMapping>& ports) {
  std::string s;
  for (const auto& p : ports) {
    s += (s.empty() ? "" : ",") + std::to_string(p.container_port) + ":" + std::to_string(p.host_port);
  }
  return s;
}

std::vector<PortMapping> PortsFromString(const std::string& s) {
  std::vector<PortMapping> out;
  std::istringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto c = item.find(':');
    if (c == std::string::npos) continue;
    out.push_back({static_cast<int>(ToInt(item.substr(0, c))), static_cast<int>(ToInt(item.substr(c + 1)))});
  }
  return out;
}

class PodmanRuntime final : public Runtime {
 public:
  PodmanRuntime(PodmanRuntimeOptions opts, Cgroups cgroups, std::string bundles)
      : opts_(std::move(opts)), cgroups_(std::move(cgroups)), bundles_(std::move(bundles)) {}

  std::string Name() const override { return "podman"; }

  Status Start(const WorkloadSpec& spec) override;
  Result<WorkloadStatus> Poll(const std::string& lease_id) override;
  Status Stop(const std::string& lease_id, int grace_ms) override;
  Result<std::string> ReadLogs(const std::string& lease_id, int64_t offset,
                               size_t max_bytes) override;
  Result<std::vector<std::string>> Adopt() override;
  Status Remove(const std::string& lease_id) override;

 private:
  std::string LeasesDir() const { return opts_.state_dir + "/leases"; }
  // The lease's cgroup path below each hierarchy's mount point.
  std::string CgroupPath(const std::string& id) const { return opts_.cgroup_parent + "/" + id; }
  // Runs podman in `cwd`: conmon, which podman starts, inherits it and
  // drops an "oom" file there on an OOM event, so a lease's commands run in
  // its own dir.
  CmdResult Podman(std::vector<std::string> args, const std::string& cwd = "") const;
  Status SaveState(const Lease& l);
  Result<std::shared_ptr<Lease>> Load(const std::string& id);
  Result<std::shared_ptr<Lease>> Find(const std::string& id);
  std::vector<pid_t> LeasePids(const Lease& l) const;
  void Meter(Lease& l, const std::vector<pid_t>& pids, WorkloadStatus* ws);
  Result<WorkloadStatus> Inspect(Lease& l);
  Status WaitForNoProcesses(const Lease& l, std::chrono::milliseconds timeout);
  Status VerifyCreated(const Lease& l, const WorkloadSpec& spec);
  bool CreatedProcess(const Lease& l, pid_t* pid, std::string* path) const;
  void Discard(Lease& l);

  const PodmanRuntimeOptions opts_;
  const Cgroups cgroups_;
  const std::string bundles_;  // <graph root>/<driver>-containers: podman's OCI bundles
  std::mutex mu_;  // guards leases_
  std::map<std::string, std::shared_ptr<Lease>> leases_;
};

CmdResult PodmanRuntime::Podman(std::vector<std::string> args, const std::string& cwd) const {
  // Global flags first: runc (crun fails on v1/v2 hybrid hosts) and the
  // cgroupfs manager (no systemd here; the lease cgroup paths assume it).
  std::vector<std::string> argv = {opts_.podman, "--runtime", opts_.oci_runtime,
                                   "--cgroup-manager", "cgroupfs"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, opts_.command_timeout_ms, cwd.empty() ? opts_.state_dir : cwd);
}

Status PodmanRuntime::SaveState(const Lease& l) {
  std::ostringstream o;
  o << "lease_id=" << l.id << "\n"
    << "container=" << l.container << "\n"
    << "start_ms=" << l.start_ms << "\n"
    << "started=" << (l.started ? 1 : 0) << "\n"
    << "created_mono_us=" << l.created_mono_us << "\n"
    << "ports=" << PortsToString(l.ports) << "\n"
    << "oom_seen=" << l.oom_seen << "\n"
    << "net_rx=" << l.net_rx << "\n"
    << "net_tx=" << l.net_tx << "\n"
    << "ended=" << (l.ended ? 1 : 0) << "\n";
  if (l.ended) {
    const WorkloadStatus& f = l.final_status;
    o << "exit_code=" << f.exit_code << "\n"
      << "reason=" << f.reason << "\n"
      << "state=" << (f.state == WorkloadState::kExited ? "exited" : "failed") << "\n"
      << "wall_ms=" << static_cast<int64_t>(f.wall_seconds * 1e3 + 0.5) << "\n"
      << "cpu_us=" << static_cast<int64_t>(f.cpu_seconds * 1e6 + 0.5) << "\n"
      << "peak_memory=" << f.peak_memory_bytes << "\n"
      << "oom_kills=" << f.oom_kills << "\n";
  }
  return WriteFileAtomic(l.dir + "/state", o.str());
}

Result<std::shared_ptr<Lease>> PodmanRuntime::Load(const std::string& id) {
  auto text = ReadFile(LeasesDir() + "/" + id + "/state");
  if (!text.ok()) return NotFound("lease " + id + ": no state");
  auto kv = ParseKeyValues(*text);
  if (kv["lease_id"] != id) return Internal("lease " + id + ": corrupt state file");
  auto l = std::make_shared<Lease>();
  l->id = id;
  l->dir = LeasesDir() + "/" + id;
  l->container = kv["container"];
  l->start_ms = ToInt(kv["start_ms"]);
  l->started = kv["started"] == "1";
  l->created_mono_us = ToInt(kv["created_mono_us"]);
  l->ports = PortsFromString(kv["ports"]);
  l->oom_seen = ToInt(kv["oom_seen"]);
  l->net_rx = ToInt(kv["net_rx"]);
  l->net_tx = ToInt(kv["net_tx"]);
  l->ended = kv["ended"] == "1";
  if (l->ended) {
    WorkloadStatus& f = l->final_status;
    f.exit_code = static_cast<int>(ToInt(kv["exit_code"]));
    f.reason = kv["reason"];
    f.state = kv["state"] == "exited" ? WorkloadState::kExited : WorkloadState::kFailed;
    f.wall_seconds = ToInt(kv["wall_ms"]) / 1e3;
    f.cpu_seconds = ToInt(kv["cpu_us"]) / 1e6;
    f.peak_memory_bytes = ToInt(kv["peak_memory"]);
    f.oom_kills = ToInt(kv["oom_kills"]);
    f.net_rx_bytes = l->net_rx;
    f.net_tx_bytes = l->net_tx;
    f.ports = l->ports;
  }
  return l;
}

Result<std::shared_ptr<Lease>> PodmanRuntime::Find(const std::string& id) {
  std::shared_ptr<Lease> l;
  if (ValidLeaseId(id)) l = CachedOrLoad(mu_, leases_, id, [&](const std::string& i) { return Load(i); });
  if (l == nullptr) return NotFound("lease " + id + ": unknown");
  return l;
}

std::vector<pid_t> PodmanRuntime::LeasePids(const Lease& l) const {
  std::vector<pid_t> pids;
  TreePids(cgroups_.pids + CgroupPath(l.id), &pids);
  return pids;
}

Status PodmanRuntime::WaitForNoProcesses(const Lease& l, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::vector<pid_t> pids = LeasePids(l);
    if (pids.empty()) return Status::Ok();
    if (Clock::now() > deadline) {
      return Internal("lease " + l.id + ": " + std::to_string(pids.size()) +
                      " process(es) survive SIGKILL");
    }
    for (pid_t p : pids) kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// CPU time and peak memory of the lease's parent cgroup (hierarchical, and it
// outlives the container's own cgroup); OOM kills of the container's cgroup;
// network bytes of the container's namespace (through one of its processes,
// `pids`) while it runs, the last seen after.
void PodmanRuntime::Meter(Lease& l, const std::vector<pid_t>& pids, WorkloadStatus* ws) {
  std::string path = CgroupPath(l.id);
  MeterCgroupUsage(cgroups_.v2, cgroups_.cpuacct + path, cgroups_.memory + path, ws);
  if (cgroups_.v2) {
    // v2 events are hierarchical: the parent counts its children's kills.
    auto ev = ReadFile(cgroups_.memory + path + "/memory.events");
    if (ev.ok()) l.oom_seen = std::max(l.oom_seen, KeyedValue(*ev, "oom_kill"));
  } else {
    // v1's oom_kill counts only the cgroup itself: the container's.
    int64_t kills = 0;
    for (const auto& sub : SubDirs(cgroups_.memory + path)) {
      auto oom = ReadFile(sub + "/memory.oom_control");
      if (oom.ok()) kills += std::max<int64_t>(0, KeyedValue(*oom, "oom_kill"));
    }
    l.oom_seen = std::max(l.oom_seen, kills);
  }
  ws->oom_kills = l.oom_seen;
  if (!pids.empty()) {
    if (auto dev = ReadFile("/proc/" + std::to_string(pids[0]) + "/net/dev"); dev.ok()) {
      ParseNetDev(*dev, &l.net_rx, &l.net_tx);
    }
  }
  ws->net_rx_bytes = l.net_rx;
  ws->net_tx_bytes = l.net_tx;
}

// The lease's status with metering; records the final status once it
// ended. While the started container's cgroup has processes it runs: no
// podman call (the agent polls often, a podman call costs ~0.1 CPU-s).
// Otherwise podman says how it ended.
Result<WorkloadStatus> PodmanRuntime::Inspect(Lease& l) {
  if (l.ended) return l.final_status;
  WorkloadStatus ws;
  ws.ports = l.ports;
  std::vector<pid_t> pids = LeasePids(l);
  if (l.started && !pids.empty()) {
    ws.state = WorkloadState::kRunning;
    ws.wall_seconds = std::max<int64_t>(0, NowUnixMs() - l.start_ms) / 1e3;
    Meter(l, pids, &ws);
    return ws;
  }
  if (l.container.empty()) {
    // A Start interrupted before the container was made.
    ws.state = WorkloadState::kFailed;
    ws.exit_code = -1;
    ws.reason = "start: interrupted before the container was created";
    return ws;
  }
  CmdResult r = Podman({"container", "inspect", "--format",
                        "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}} "
                        "{{.State.StartedAt.UnixNano}} {{.State.FinishedAt.UnixNano}}",
                        l.container});
  Meter(l, pids, &ws);
  if (!r.ok()) {
    if (r.err.find("no such container") == std::string::npos) {
      return Unavailable("podman inspect " + l.container + ": " + r.Error());
    }
    // Removed behind the agent's back: it does not run.
    if (!LeasePids(l).empty()) return Unavailable("lease " + l.id + ": container gone, processes remain");
    ws.state = WorkloadState::kFailed;
    ws.exit_code = -1;
    ws.reason = "container removed outside the agent";
    ws.wall_seconds = std::max<int64_t>(0, NowUnixMs() - l.start_ms) / 1e3;
  } else {
    std::istringstream in(r.out);
    std::string status, oom_killed;
    int exit_code = 0;
    int64_t started_ns = 0, finished_ns = 0;
    in >> status >> exit_code >> oom_killed >> started_ns >> finished_ns;
    if (status == "running" || status == "paused" || status == "stopping") {
      ws.state = WorkloadState::kRunning;
      int64_t from_ms = started_ns > 0 ? started_ns / 1000000 : l.start_ms;
      ws.wall_seconds = std::max<int64_t>(0, NowUnixMs() - from_ms) / 1e3;
      return ws;
    }
    if (status != "exited" && status != "stopped") {
      // created/initialized: never started (an agent crash inside Start).
      ws.state = WorkloadState::kFailed;
      ws.exit_code = -1;
      ws.reason = "start: interrupted (container " + status + ")";
    } else {
      podman_internal::ExitReason(exit_code, &ws);
      if (started_ns > 0 && finished_ns > 0) {
        // FinishedAt is the exit file's mtime, a coarse clock (a jiffy), and
        // can precede the precise StartedAt of a command that ended at once:
        // such a run counts as 1 ms.
        ws.wall_seconds = std::max<int64_t>(finished_ns - started_ns, 1000000) / 1e9;
      }
      if (!cgroups_.v2) {
        // The container's cgroup, and its counter, died with it: the
        // kernel's log still names the cgroup of every OOM victim.
        l.oom_seen = std::max(l.oom_seen, CountKmsgOomKills(CgroupPath(l.id) + "/", l.created_mono_us));
      }
      // conmon drops an "oom" file in its cwd (the lease dir) on an OOM event.
      struct stat oom_file;
      if (oom_killed == "true" || stat((l.dir + "/oom").c_str(), &oom_file) == 0) {
        l.oom_seen = std::max<int64_t>(l.oom_seen, 1);
      }
      ws.oom_kills = l.oom_seen;
      if (ws.state == WorkloadState::kFailed && ws.oom_kills > 0) ws.reason = "oom";
    }
  }
  // Ended. Record it only once nothing of the lease runs, so the figures
  // are final.
  if (LeasePids(l).empty()) {
    l.ended = true;
    l.final_status = ws;
    (void)SaveState(l);
  }
  return ws;
}

// The created container's one process (runc's init, waiting to exec) and
// the PATH it will run with, without a podman call (~0.1 s of Start): the
// pid from the lease's cgroup, PATH from the OCI config podman wrote for
// runc. False when either is not plainly there.
bool PodmanRuntime::CreatedProcess(const Lease& l, pid_t* pid, std::string* path) const {
  std::vector<pid_t> pids = LeasePids(l);
  if (pids.size() != 1) return false;
  auto config = ReadFile(bundles_ + "/" + l.container + "/userdata/config.json");
  if (!config.ok()) return false;
  // process.env, an array of JSON strings; the first "env" key is it (in
  // strings before it, such as the command's args, quotes are escaped).
  size_t i = config->find("\"env\":[");
  if (i == std::string::npos) return false;
  i += 7;
  std::string value;
  bool found = false;
  while (i < config->size() && (*config)[i] == '"') {
    size_t end = config->find('"', i + 1);
    if (end == std::string::npos) return false;
    std::string item = config->substr(i + 1, end - i - 1);
    if (item.find('\\') != std::string::npos) {
      // An escape: the quote found may not end the string. Let podman say.
      return false;
    }
    if (item.rfind("PATH=", 0) == 0) {
      value = item.substr(5);
      found = true;
    }
    i = end + 1;
    if (i < config->size() && (*config)[i] == ',') ++i;
  }
  if (!found || i >= config->size() || (*config)[i] != ']') return false;
  *pid = pids[0];
  *path = value;
  return true;
}

// Between `podman init` and `podman start`: the container's mounts and
// devices exist, its command has not run.
Status PodmanRuntime::VerifyCreated(const Lease& l, const WorkloadSpec& spec) {
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  pid_t pid = 0;
  if (!CreatedProcess(l, &pid, &path)) {
    CmdResult r = Podman({"container", "inspect", "--format",
                          "{{.State.Pid}}{{range .Config.Env}}{{\"\\n\"}}{{.}}{{end}}", l.container});
    if (!r.ok()) return Unavailable("podman inspect: " + r.Error());
    std::istringstream in(r.out);
    std::string line;
    if (std::getline(in, line)) pid = static_cast<pid_t>(ToInt(line));
    while (std::getline(in, line)) {
      if (line.rfind("PATH=", 0) == 0) path = line.substr(5);
    }
  }
  if (pid <= 0) return Unavailable("podman init: the container has no process");
  std::string root = "/proc/" + std::to_string(pid) + "/root";
  int root_fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return Unavailable("open " + root + ": " + Errno(errno));
  Status result = Status::Ok();
  const std::string& cmd = spec.command[0];
  bool found = false;
  if (cmd.find('/') != std::string::npos) {
    found = ExecutableIn(root_fd, cmd[0] == '/' ? cmd : "/work/" + cmd);
  } else {
    std::istringstream ps(path);
    std::string dir;
    while (!found && std::getline(ps, dir, ':')) {
      if (!dir.empty()) found = ExecutableIn(root_fd, dir + "/" + cmd);
    }
  }
  if (!found) {
    result = InvalidArgument("start: exec " + cmd + ": no such executable in image " + spec.image +
                             (cmd.find('/') == std::string::npos ? " (PATH=" + path + ")" : ""));
  } else if (!spec.ssh_public_key.empty() && !ExecutableIn(root_fd, opts_.sshd_path)) {
    result = InvalidArgument("start: --ssh-key needs an sshd in the image: " + opts_.sshd_path +
                             " not found in " + spec.image);
  } else {
    // Exactly the lease's GPUs: none when it has none (a hook or the image's
    // NVIDIA_VISIBLE_DEVICES=all must not hand it the host's).
    size_t requested = spec.gpus_simulated ? 0 : !spec.gpu_uuids.empty() ? spec.gpu_uuids.size() : spec.gpu_indices.size();
    Status gpus = podman_internal::CheckVisibleGpus(requested, DirEntriesIn(root_fd, "/dev"));
    if (!gpus.ok()) result = Unavailable("start: " + gpus.message());
  }
  close(root_fd);
  return result;
}

// Undoes a Start that failed: the container, its cgroups, the lease dir.
void PodmanRuntime::Discard(Lease& l) {
  if (!l.container.empty()) {
    (void)Podman({"rm", "--force", "--ignore", "--time", "0", l.container});
  }
  (void)WaitForNoProcesses(l, std::chrono::seconds(10));
  for (const auto& m : cgroups_.all) RemoveTree(m + CgroupPath(l.id));
  (void)RemoveAll(l.dir);
}

Status PodmanRuntime::Start(const WorkloadSpec& spec) {
  GRID_RETURN_IF_ERROR(CheckLeaseId(spec.lease_id));
  if (spec.image.empty()) return InvalidArgument("lease " + spec.lease_id + ": no image");
  if (spec.image == "host") {
    return InvalidArgument("image \"host\" is the process runtime's; the podman runtime runs container "
                           "images");
  }
  GRID_RETURN_IF_ERROR(CheckCommand(spec));
  GRID_RETURN_IF_ERROR(CheckEnv(spec));
  std::set<int> ports;
  for (int p : spec.ports) {
    if (p < 1 || p > 65535) return InvalidArgument("port " + std::to_string(p) + ": want 1-65535");
    ports.insert(p);
  }
  std::string ssh_key = Trim(spec.ssh_public_key);
  if (!ssh_key.empty()) {
    if (ssh_key.find_first_of("\r\n") != std::string::npos || ssh_key.find(' ') == std::string::npos) {
      return InvalidArgument("ssh key: want one OpenSSH public key line (\"ssh-ed25519 AAAA... comment\")");
    }
    ports.insert(22);
  }

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
    if (mkdir(lease->dir.c_str(), 0700) != 0) return Unavailable("mkdir " + lease->dir + ": " + Errno(errno));
    leases_[spec.lease_id] = lease;
  }
  auto fail = [&](Status s) {
    Discard(*lease);
    std::lock_guard<std::mutex> g(mu_);
    leases_.erase(spec.lease_id);
    return s;
  };
  std::string work = lease->dir + "/work";
  if (mkdir(work.c_str(), 0700) != 0) return fail(Unavailable("mkdir " + work + ": " + Errno(errno)));
  std::string keys = lease->dir + "/authorized_keys";
  if (!ssh_key.empty()) {
    if (Status s = WriteFileAtomic(keys, ssh_key + "\n", 0600); !s.ok()) return fail(s);
  }
  lease->start_ms = NowUnixMs();
  lease->created_mono_us = MonotonicUs();
  if (Status s = SaveState(*lease); !s.ok()) return fail(s);

  std::vector<std::string> args = {
      "create", "--pull", "never", "--init", "--cgroups", "no-conmon",
      "--cgroup-parent", CgroupPath(spec.lease_id),
      "--label", "grid.lease=" + spec.lease_id, "--label", "grid.state_dir=" + opts_.state_dir,
      "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
      "--log-driver", "k8s-file", "--log-opt", "path=" + lease->dir + "/container.log",
      "--volume", work + ":/work", "--workdir", "/work"};
  if (spec.memory_limit_bytes > 0) {
    std::string m = std::to_string(spec.memory_limit_bytes);
    args.insert(args.end(), {"--memory", m, "--memory-swap", m});  // no swap either
  }
  if (spec.cpu_millicores > 0) {
    char cpus[32];
    std::snprintf(cpus, sizeof cpus, "%.3f", spec.cpu_millicores / 1000.0);
    args.insert(args.end(), {"--cpus", cpus});
  }
  args.insert(args.end(), {"--pids-limit", spec.pids_limit > 0 ? std::to_string(spec.pids_limit) : "-1"});
  std::string cuda;
  if (spec.gpus_simulated) {
    // Simulated GPUs (a test fixture) have no device to hand over.
    for (size_t i = 0; i < spec.gpu_indices.size(); ++i) cuda += (cuda.empty() ? "" : ",") + std::to_string(i);
  } else if (!spec.gpu_uuids.empty()) {
    for (const auto& u : spec.gpu_uuids) {
      args.insert(args.end(), {"--device", "nvidia.com/gpu=" + u});
      cuda += (cuda.empty() ? "" : ",") + u;
    }
  } else {
    // CDI also names GPUs by index; inside they are renumbered from 0.
    for (size_t i = 0; i < spec.gpu_indices.size(); ++i) {
      args.insert(args.end(), {"--device", "nvidia.com/gpu=" + std::to_string(spec.gpu_indices[i])});
      cuda += (cuda.empty() ? "" : ",") + std::to_string(i);
    }
  }
  for (const auto& e : spec.env) {
    if (e.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) continue;
    args.insert(args.end(), {"--env", e});
  }
  args.insert(args.end(), {"--env", "CUDA_VISIBLE_DEVICES=" + cuda});
  for (int p : ports) {
    args.insert(args.end(), {"--publish", opts_.publish_address + "::" + std::to_string(p) + "/tcp"});
  }
  if (!ssh_key.empty()) {
    args.insert(args.end(), {"--volume", keys + ":/root/.ssh/authorized_keys:ro"});
  }
  args.push_back(spec.image);
  args.insert(args.end(), spec.command.begin(), spec.command.end());

  CmdResult created = Podman(args, lease->dir);
  if (!created.ok()) {
    CmdResult exists = Podman({"image", "exists", spec.image});
    if (exists.exit_code() == 1) {
      return fail(InvalidArgument("image \"" + spec.image +
                                  "\": not in podman's local storage on this host (no registry is "
                                  "contacted: load it with podman load or podman import)"));
    }
    return fail(Unavailable("podman create: " + created.Error()));
  }
  lease->container = Trim(created.out);
  auto nl = lease->container.rfind('\n');
  if (nl != std::string::npos) lease->container = lease->container.substr(nl + 1);
  if (Status s = SaveState(*lease); !s.ok()) return fail(s);

  CmdResult init = Podman({"init", lease->container}, lease->dir);
  if (!init.ok()) return fail(Unavailable("podman init: " + init.Error()));
  if (Status s = VerifyCreated(*lease, spec); !s.ok()) return fail(s);
  CmdResult started = Podman({"start", lease->container}, lease->dir);
  if (!started.ok()) return fail(Unavailable("podman start: " + started.Error()));
  lease->started = true;
  lease->start_ms = NowUnixMs();

  if (!ssh_key.empty()) {
    // sshd checks its config and host keys, then daemonizes: exit 0 means
    // it listens.
    CmdResult sshd = Podman({"exec", lease->container, opts_.sshd_path});
    if (!sshd.ok()) return fail(Unavailable("start: sshd in the container: " + sshd.Error()));
  }
  if (!ports.empty()) {
    CmdResult port = Podman({"port", lease->container});
    if (!port.ok()) return fail(Unavailable("podman port: " + port.Error()));
    lease->ports = podman_internal::ParsePodmanPorts(port.out);
    if (lease->ports.size() != ports.size()) {
      return fail(Unavailable("podman port: " + std::to_string(lease->ports.size()) + " of " +
                              std::to_string(ports.size()) + " ports published"));
    }
  }
  if (Status s = SaveState(*lease); !s.ok()) return fail(s);
  return Status::Ok();
}

Result<WorkloadStatus> PodmanRuntime::Poll(const std::string& lease_id) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  std::lock_guard<std::mutex> g(lease->mu);
  return Inspect(*lease);
}

Status PodmanRuntime::Stop(const std::string& lease_id, int grace_ms) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  Lease& l = *lease;
  std::lock_guard<std::mutex> g(l.mu);
  if (l.ended) return Status::Ok();
  std::vector<pid_t> pids = LeasePids(l);
  if (!pids.empty()) {
    // SIGTERM to every process, as the process runtime does: catatonit
    // forwards it to the command too, and a command run as PID 1 would
    // otherwise ignore it.
    for (pid_t p : pids) kill(p, SIGTERM);
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(0, grace_ms));
    while (!LeasePids(l).empty() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // SIGKILL to every process left, straight from the cgroup (no podman
    // call in the way): the death of PID 1 (catatonit) ends the container's
    // pid namespace, and repeating catches anything forked meanwhile.
    GRID_RETURN_IF_ERROR(WaitForNoProcesses(l, std::chrono::seconds(10)));
  }
  // Until conmon has recorded the exit, podman may still call it running.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto st = Inspect(l);
    if (!st.ok()) return st.status();
    if (st->state != WorkloadState::kRunning) return Status::Ok();
    if (Clock::now() > deadline) return Internal("lease " + lease_id + ": podman still reports it running");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::string> PodmanRuntime::ReadLogs(const std::string& lease_id, int64_t offset,
                                            size_t max_bytes) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  if (offset < 0) return InvalidArgument("log offset < 0");
  std::lock_guard<std::mutex> g(lease->mu);
  max_bytes = std::min<size_t>(max_bytes, 16 << 20);
  std::string path = lease->dir + "/container.log";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();  // nothing written yet
    return Unavailable("open " + path + ": " + Errno(errno));
  }
  // Resume from the last line known to lie before the offset: reading a log
  // forward stays linear in what is new.
  podman_internal::K8sCursor cur = lease->log_cursor.raw_pos <= offset ? lease->log_cursor
                                                                       : podman_internal::K8sCursor{};
  std::string out;
  // Small reads: the cursor puts the wanted bytes near the start. A chunk
  // without a complete line (a line longer than it) is read again larger.
  std::string buf(std::min<size_t>(std::max<size_t>(max_bytes * 2, 16 << 10), 1 << 20), '\0');
  while (out.size() < max_bytes) {
    ssize_t n = pread(fd, buf.data(), buf.size(), cur.file_pos);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    podman_internal::K8sCursor skip, end;
    podman_internal::DecodeChunk(std::string_view(buf.data(), static_cast<size_t>(n)), cur, offset,
                                 max_bytes, &out, &skip, &end);
    if (skip.raw_pos <= offset) lease->log_cursor = skip;
    if (end.file_pos == cur.file_pos) {
      if (static_cast<size_t>(n) < buf.size() || buf.size() >= (64u << 20)) break;  // being written
      buf.resize(buf.size() * 2);
      continue;
    }
    cur = end;
  }
  close(fd);
  return out;
}

Result<std::vector<std::string>> PodmanRuntime::Adopt() {
  // One podman call for all: this state dir's containers, and which run.
  // (`podman ps` has no machine-readable state field in 4.3: its .State is
  // "Up 3 seconds"; the status=running filter is exact.)
  auto list = [&](bool only_running) -> Result<std::map<std::string, std::string>> {
    std::vector<std::string> args = {"ps", "--all", "--no-trunc", "--filter",
                                     "label=grid.state_dir=" + opts_.state_dir};
    if (only_running) args.insert(args.end(), {"--filter", "status=running"});
    args.insert(args.end(), {"--format", "{{.ID}} {{index .Labels \"grid.lease\"}}"});
    CmdResult ps = Podman(args);
    if (!ps.ok()) return Unavailable("podman ps: " + ps.Error());
    std::map<std::string, std::string> by_lease;  // lease id -> container id
    std::istringstream in(ps.out);
    std::string cid, lease;
    while (in >> cid >> lease) by_lease[lease] = cid;
    return by_lease;
  };
  GRID_ASSIGN_OR_RETURN(auto all, list(false));
  GRID_ASSIGN_OR_RETURN(auto up, list(true));
  std::vector<std::string> running;
  std::vector<std::string> names = LeaseIdsIn(LeasesDir());
  std::sort(names.begin(), names.end());
  for (const auto& id : names) {
    auto lease = CachedOrLoad(mu_, leases_, id, [&](const std::string& i) { return Load(i); });
    if (lease == nullptr) continue;  // a half-made dir: nothing ran
    std::lock_guard<std::mutex> g(lease->mu);
    auto it = all.find(id);
    if (lease->container.empty() && it != all.end()) {
      // The agent died between `podman create` and saving its id.
      lease->container = it->second;
      (void)SaveState(*lease);
    }
    // Running: podman says so and the lease's cgroup has processes.
    auto run = up.find(id);
    if (!lease->ended && run != up.end() && run->second == lease->container &&
        !LeasePids(*lease).empty()) {
      if (!lease->started) {
        // The agent died between `podman start` and saving that it ran.
        lease->started = true;
        (void)SaveState(*lease);
      }
      running.push_back(id);
    }
  }
  return running;
}

Status PodmanRuntime::Remove(const std::string& lease_id) {
  GRID_ASSIGN_OR_RETURN(auto lease, Find(lease_id));
  Lease& l = *lease;
  {
    std::lock_guard<std::mutex> g(l.mu);
    auto st = Inspect(l);
    if (!st.ok()) return st.status();
    if (st->state == WorkloadState::kRunning || !LeasePids(l).empty()) {
      return Conflict("lease " + lease_id + ": still running; Stop it first");
    }
    if (!l.container.empty()) {
      CmdResult rm = Podman({"rm", "--ignore", "--volumes", l.container});
      if (!rm.ok()) return Unavailable("podman rm " + l.container + ": " + rm.Error());
    }
    std::string failed;
    for (const auto& m : cgroups_.all) {
      if (!RemoveTree(m + CgroupPath(l.id))) failed += " " + m + CgroupPath(l.id);
    }
    if (!failed.empty()) return Unavailable("rmdir cgroups:" + failed);
    GRID_RETURN_IF_ERROR(RemoveAll(l.dir));
  }
  std::lock_guard<std::mutex> g(mu_);
  leases_.erase(lease_id);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Runtime>> NewPodmanRuntime(PodmanRuntimeOptions options) {
  if (geteuid() != 0) return Unavailable("the podman runtime needs root (rootful podman)");
  if (options.state_dir.empty()) return InvalidArgument("podman runtime: empty state dir");
  if (options.cgroup_parent.empty() || options.cgroup_parent[0] != '/' ||
      options.cgroup_parent.find("..") != std::string::npos) {
    return InvalidArgument("podman runtime: cgroup parent \"" + options.cgroup_parent +
                           "\": want an absolute path");
  }
  while (options.cgroup_parent.size() > 1 && options.cgroup_parent.back() == '/') {
    options.cgroup_parent.pop_back();
  }
  // One call proves podman runs, its storage works and the OCI runtime is
  // there.
  CmdResult info = RunCommand({options.podman, "--runtime", options.oci_runtime, "--cgroup-manager",
                               "cgroupfs", "info", "--format",
                               "{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}} "
                               "{{.Store.GraphRoot}}"},
                              options.command_timeout_ms);
  if (info.status < 0) {
    return Unavailable("podman runtime: " + options.podman + " not found (apt-get install podman runc): " +
                       info.Error());
  }
  if (!info.ok()) return Unavailable("podman runtime: podman info failed: " + info.Error());
  std::istringstream in(info.out);
  std::string version, oci, driver, graph_root;
  in >> version >> oci >> driver >> graph_root;
  if (ToInt(version.substr(0, version.find('.'))) < 4) {
    return Unavailable("podman runtime: podman " + version + " is too old (want >= 4)");
  }
  GRID_ASSIGN_OR_RETURN(Cgroups cgroups, DetectCgroups());
  std::error_code ec;
  fs::create_directories(options.state_dir + "/leases", ec);
  if (ec) return Unavailable("state dir " + options.state_dir + ": " + ec.message());
  if (chmod(options.state_dir.c_str(), 0700) != 0) {
    return Unavailable("chmod " + options.state_dir + ": " + Errno(errno));
  }
  std::string bundles = graph_root + "/" + driver + "-containers";
  return std::unique_ptr<Runtime>(new PodmanRuntime(std::move(options), std::move(cgroups), std::move(bundles)));
}

}  // namespace grid::agent
