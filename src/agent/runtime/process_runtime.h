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
//
// Ending: when the command exits, the init writes its wait status to `exit`
// and exits, which kills the rest of the namespace. Poll works without being
// the parent: the lease runs while its pids cgroup has a member. A Stop that
// had to SIGKILL the init reports "signal 9"; an unsuccessful end of a lease
// that saw an OOM kill reports "oom".
//
// Not yet done: v2 device control (needs BPF; on a pure v2 host GPUs are
// limited only through CUDA_VISIBLE_DEVICES); the v2 paths are untested (the
// machines here are v1/v2 hybrids: v1 is used whenever v2 lacks memory, cpu
// or pids); the device cgroup is proven with device nodes of NVIDIA's major
// made by the test, not with a real GPU (none here); an init
// orphaned by a dead agent is reaped by the host's PID 1 (a zombie remains
// where PID 1 does not reap); a Start interrupted by an agent crash before
// its state file is written leaves a dir that blocks that lease id.
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
