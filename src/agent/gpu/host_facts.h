// HostFacts: the non-GPU half of what a provider's machine is — CPU, RAM,
// free disk where the agent keeps its state, operating system.
//
// Read from Linux's own files (/proc/cpuinfo, /proc/meminfo, /etc/os-release)
// and uname/statvfs/sysconf; no exception leaves here. Thread safety: the
// functions keep no state and may be called from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace grid::agent {

struct HostFacts {
  std::string cpu_model;        // "AMD EPYC 9654 96-Core Processor"; "unknown" if unreadable
  int cpu_cores = 0;            // logical CPUs online (hardware threads)
  uint64_t ram_bytes = 0;       // MemTotal
  uint64_t disk_free_bytes = 0; // available to an unprivileged user under state_dir
  std::string os;               // "Debian GNU/Linux 12 (bookworm); Linux 6.1.0-18-amd64 x86_64"
  std::string hostname;
};

// Where ProbeHost reads; tests point these at files of their own.
struct HostFactSources {
  std::string cpuinfo = "/proc/cpuinfo";
  std::string meminfo = "/proc/meminfo";
  std::string os_release = "/etc/os-release";
};

// Free disk is measured at state_dir, or at its nearest existing ancestor
// when the agent has not created it yet. Unavailable when neither MemTotal
// nor the file system can be read; other facts missing are left "unknown"/0.
Result<HostFacts> ProbeHost(const std::string& state_dir,
                            const HostFactSources& sources = HostFactSources());

}  // namespace grid::agent
