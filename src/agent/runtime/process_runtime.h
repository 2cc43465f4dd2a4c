// The `process` runtime: a workload as a namespaced process tree in cgroups.
//
// Each lease gets, under <state_dir>/leases/<id>/:
//   work/       its work dir, owned by the lease's own unprivileged host uid
//               (unprivileged_uid_base + a small index), mounted at /work
//   output.log  the combined stdout and stderr of the workload
//   exit        the wait status, written by the namespace's init at the end
//   state       key=value: init pid, its start time, uid, cgroup dirs, ...
//   root/       an empty mount point for the workload's root
// and one cgroup per controller, <mount>/<own cgroup>/<cgroup_name>/<id>
// (v1: memory, cpu, cpuacct, pids, devices, freezer; v2 when the unified
// hierarchy has the memory, cpu and pids controllers: <mount>/<name>/<id>).
//
// The workload runs in new user, pid, mount, network, ipc and uts namespaces:
// root inside maps to the lease's uid outside (no capability on the host);
// its pid 1 is a small init (a fork of the agent that never execs) that waits
// for the command, records its exit status and exits, which kills whatever
// the command left behind. Its root is a tmpfs holding read-only recursive
// binds of the host's top-level directories (the `--image host`), a fresh
// /proc and /sys, the host /dev (read-only; GPUs not assigned are denied by
// the device cgroup), a private tmpfs /tmp and the work dir at /work.
// CUDA_VISIBLE_DEVICES lists the lease's GPUs. Workloads run in their own
// session with no parent-death signal: an agent that dies leaves them running.
//
// Requires root on the host and kernel >= 5.12 (mount_setattr).
// Not yet done: v2 device control (needs BPF; GPUs are then exposed to the
// lease only through CUDA_VISIBLE_DEVICES), v2 paths are untested here.
//
// Thread safety: as Runtime.
#pragma once

#include <memory>
#include <string>

#include "agent/runtime/runtime.h"
#include "core/status.h"

namespace grid::agent {

struct ProcessRuntimeOptions {
  std::string state_dir;               // per-lease dirs, logs, pid files; made 0711
  int unprivileged_uid_base = 100000;  // lease i runs as host uid base + i
  std::string cgroup_name = "grid";    // the parent cgroup of the leases' cgroups
};

// Unavailable when the host lacks what the runtime needs (not root, a missing
// cgroup controller, the state dir cannot be made).
Result<std::unique_ptr<Runtime>> NewProcessRuntime(ProcessRuntimeOptions options);

}  // namespace grid::agent
