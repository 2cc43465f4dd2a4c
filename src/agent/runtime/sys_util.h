// What the workload runtimes (process_runtime.cc, podman_runtime.cc) share:
// files read and written the way /proc and cgroup files want, the key=value
// state files of their leases, lease ids and spec checks, the cgroup
// hierarchies of the host and the figures read from a cgroup.
//
// Internal to src/agent/runtime/: only the runtimes' .cc files include it;
// everything else goes through runtime.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "core/status.h"

namespace grid::agent::runtime_internal {

// strerror(err).
std::string Errno(int err);

// Milliseconds since the Unix epoch (the wall clock).
int64_t NowUnixMs();

// The whole file; Unavailable("open|read <path>: <errno>") when it cannot be.
Result<std::string> ReadFile(const std::string& path);

// Writes content with one write() (cgroup and /proc files want that), no
// creation and no truncation of files that do not support it.
Status WriteFile(const std::string& path, const std::string& content);

// Replaces path atomically with content (write to <path>.tmp, fsync,
// rename); a new file gets `mode`.
Status WriteFileAtomic(const std::string& path, const std::string& content, mode_t mode = 0600);

// Removes path and everything below it; OK when it is not there.
Status RemoveAll(const std::string& path);

// "key=value" lines; lines without '=' are skipped.
std::map<std::string, std::string> ParseKeyValues(const std::string& text);

// The decimal integer at the start of s; `fallback` when there is none.
int64_t ToInt(const std::string& s, int64_t fallback = 0);

// The value of "key N" in a file of such lines (memory.oom_control, cpu.stat,
// memory.events); -1 when absent.
int64_t KeyedValue(const std::string& text, const std::string& key);

// s without leading and trailing white space.
std::string Trim(std::string s);

// 1-64 characters of [A-Za-z0-9._-], not "." or "..": safe as a file name.
bool ValidLeaseId(const std::string& id);

// The checks of a spec both runtimes make, with the same messages.
Status CheckLeaseId(const std::string& id);    // ValidLeaseId
Status CheckCommand(const WorkloadSpec& spec);  // a non-empty argv[0]
Status CheckEnv(const WorkloadSpec& spec);      // every entry K=V

// The entries of `dir` that are valid lease ids, in directory order; none
// when it cannot be read.
std::vector<std::string> LeaseIdsIn(const std::string& dir);

// The lease `id` from `leases`, or else loaded with load() and kept there;
// nullptr when it is in neither. `mu` guards `leases`.
template <class Lease, class LoadFn>
std::shared_ptr<Lease> CachedOrLoad(std::mutex& mu, std::map<std::string, std::shared_ptr<Lease>>& leases,
                                    const std::string& id, LoadFn load) {
  std::lock_guard<std::mutex> g(mu);
  auto it = leases.find(id);
  if (it != leases.end()) return it->second;
  auto loaded = load(id);
  if (!loaded.ok()) return nullptr;
  leases[id] = *loaded;
  return *loaded;
}

// ---------------------------------------------------------------------------
// cgroups

// A cgroup hierarchy's root mount: v1 ("cgroup") or the unified v2
// ("cgroup2") one.
struct CgroupMount {
  std::string mountpoint;
  bool v2 = false;
  std::vector<std::string> options;  // the superblock options (v1: the controllers among them)
};

// The hierarchy roots mounted in this mount namespace, in
// /proc/self/mountinfo order (binds of a sub-cgroup are left out).
Result<std::vector<CgroupMount>> CgroupMounts();

// Appends the pids in <dir>/cgroup.procs to *pids; false when it cannot be
// read.
bool AppendCgroupPids(const std::string& dir, std::vector<pid_t>* pids);

// The pids in <dir>/cgroup.procs; none when it cannot be read.
std::vector<pid_t> CgroupPids(const std::string& dir);

// CPU time and peak memory of a cgroup into *ws: v2 from <cpu_dir>/cpu.stat
// and <memory_dir>/memory.peak, v1 from <cpu_dir>/cpuacct.usage (the
// cpuacct controller's dir) and <memory_dir>/memory.max_usage_in_bytes.
// Files that cannot be read leave their fields as they were.
void MeterCgroupUsage(bool v2, const std::string& cpu_dir, const std::string& memory_dir,
                      WorkloadStatus* ws);

}  // namespace grid::agent::runtime_internal
