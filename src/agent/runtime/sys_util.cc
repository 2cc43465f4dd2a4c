// See sys_util.h: internal to the workload runtimes.
#include "agent/runtime/sys_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

namespace grid::agent::runtime_internal {

std::string Errno(int err) { return std::strerror(err); }

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Unavailable("open " + path + ": " + Errno(errno));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return Unavailable("read " + path + ": " + Errno(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

Status WriteFile(const std::string& path, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Unavailable("open " + path + ": " + Errno(errno));
  ssize_t n = write(fd, content.data(), content.size());
  int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(content.size())) {
    return Unavailable("write " + path + " (" + content + "): " + Errno(n < 0 ? e : EIO));
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Unavailable("open " + tmp + ": " + Errno(errno));
  ssize_t n = write(fd, content.data(), content.size());
  int e = errno;
  bool synced = fsync(fd) == 0;
  close(fd);
  if (n != static_cast<ssize_t>(content.size()) || !synced) {
    return Unavailable("write " + tmp + ": " + Errno(n < 0 ? e : EIO));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return Unavailable("rename " + tmp + ": " + Errno(errno));
  }
  return Status::Ok();
}

Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Unavailable("remove " + path + ": " + ec.message());
  return Status::Ok();
}

std::map<std::string, std::string> ParseKeyValues(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

int64_t ToInt(const std::string& s, int64_t fallback) {
  if (s.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str()) return fallback;
  return v;
}

int64_t KeyedValue(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  int64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return -1;
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool ValidLeaseId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

Status CheckLeaseId(const std::string& id) {
  if (!ValidLeaseId(id)) {
    return InvalidArgument("lease id \"" + id + "\": use 1-64 characters of [A-Za-z0-9._-]");
  }
  return Status::Ok();
}

Status CheckCommand(const WorkloadSpec& spec) {
  if (spec.command.empty() || spec.command[0].empty()) {
    return InvalidArgument("lease " + spec.lease_id + ": empty command");
  }
  return Status::Ok();
}

Status CheckEnv(const WorkloadSpec& spec) {
  for (const auto& e : spec.env) {
    if (e.find('=') == std::string::npos || e[0] == '=') return InvalidArgument("env \"" + e + "\": want K=V");
  }
  return Status::Ok();
}

std::vector<std::string> LeaseIdsIn(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (ValidLeaseId(name)) names.push_back(name);
  }
  closedir(d);
  return names;
}

// ---------------------------------------------------------------------------
// cgroups

Result<std::vector<CgroupMount>> CgroupMounts() {
  GRID_ASSIGN_OR_RETURN(std::string mounts, ReadFile("/proc/self/mountinfo"));
  std::vector<CgroupMount> out;
  std::istringstream in(mounts);
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superopts
    std::istringstream ls(line);
    std::string id, parent, dev, root, mountpoint, opts, tok;
    ls >> id >> parent >> dev >> root >> mountpoint >> opts;
    while (ls >> tok && tok != "-") {
    }
    std::string fstype, source, superopts;
    ls >> fstype >> source >> superopts;
    // root != "/": a bind of a sub-cgroup, not a hierarchy root.
    if (root != "/" || (fstype != "cgroup" && fstype != "cgroup2")) continue;
    CgroupMount m;
    m.mountpoint = mountpoint;
    m.v2 = fstype == "cgroup2";
    std::istringstream os(superopts);
    std::string o;
    while (std::getline(os, o, ',')) m.options.push_back(o);
    out.push_back(std::move(m));
  }
  return out;
}

bool AppendCgroupPids(const std::string& dir, std::vector<pid_t>* pids) {
  auto text = ReadFile(dir + "/cgroup.procs");
  if (!text.ok()) return false;
  std::istringstream in(*text);
  pid_t p;
  while (in >> p) pids->push_back(p);
  return true;
}

std::vector<pid_t> CgroupPids(const std::string& dir) {
  std::vector<pid_t> pids;
  AppendCgroupPids(dir, &pids);
  return pids;
}

void MeterCgroupUsage(bool v2, const std::string& cpu_dir, const std::string& memory_dir,
                      WorkloadStatus* ws) {
  if (v2) {
    auto cpu = ReadFile(cpu_dir + "/cpu.stat");
    if (cpu.ok()) ws->cpu_seconds = std::max<int64_t>(0, KeyedValue(*cpu, "usage_usec")) / 1e6;
    auto peak = ReadFile(memory_dir + "/memory.peak");
    if (peak.ok()) ws->peak_memory_bytes = ToInt(*peak);
  } else {
    auto cpu = ReadFile(cpu_dir + "/cpuacct.usage");
    if (cpu.ok()) ws->cpu_seconds = ToInt(*cpu) / 1e9;
    auto peak = ReadFile(memory_dir + "/memory.max_usage_in_bytes");
    if (peak.ok()) ws->peak_memory_bytes = ToInt(*peak);
  }
}

}  // namespace grid::agent::runtime_internal
