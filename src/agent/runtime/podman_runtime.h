// The `podman` runtime: a workload as a rootful podman container.
//
// Each lease is one container made from the lease's image (already in
// podman's local storage: `--pull never`, no registry is contacted) with
// runc (`--runtime runc`: crun cannot run on v1/v2 hybrid cgroup hosts), the
// cgroupfs manager, overlay storage, `--init` (catatonit as PID 1 forwards
// signals and reaps, so a command that installs no SIGTERM handler still ends
// on Stop's SIGTERM), explicit `--ulimit nofile=1024:1024 --ulimit
// nproc=1024:1024` (the default rlimits fail without CAP_SYS_RESOURCE), and
// the spec's memory (no swap), `--cpus` and pids limits. GPUs come through
// CDI (`--device nvidia.com/gpu=UUID`, or =INDEX without UUIDs);
// CUDA_VISIBLE_DEVICES lists the UUIDs (the renumbered 0..n-1 without; empty
// without GPUs).
//
// Start: `podman create`, then `podman init` (namespaces, mounts and CDI
// devices made, the command not yet run), then checks through
// /proc/<pid>/root that the command resolves to an executable file of the
// image and that exactly the requested GPUs' device nodes
// (/dev/nvidia[0-9]+) are there (a CDI request can fail silently), then
// `podman start`; with an SSH key also `podman exec <sshd_path>`. A failed
// check removes the container and fails Start with the reason.
//
// Per lease, under <state_dir>/leases/<id>/:
//   work/            bind-mounted at /work, the container's working dir
//   container.log    podman's k8s-file log; ReadLogs returns the raw
//                    combined stdout+stderr stream it records, with byte
//                    offsets of that stream (not of the file)
//   authorized_keys  the renter's key, bind-mounted read-only as
//                    /root/.ssh/authorized_keys
//   state            key=value: container id, cgroup, ports, and the final
//                    status once the container ended
// Containers are labelled grid.lease=<id> and grid.state_dir=<state_dir>.
// Their cgroups are <mount>/<cgroup_parent>/<id>/libpod-<container> (conmon,
// podman's monitor, stays outside: `--cgroups no-conmon`), so the lease's
// parent cgroup holds only the workload and keeps its CPU time and peak
// memory after the container ended, until Remove.
//
// Metering: wall seconds from podman's StartedAt/FinishedAt; CPU seconds and
// peak memory from the lease's parent cgroup (v1 cpuacct.usage and
// memory.max_usage_in_bytes, v2 cpu.stat and memory.peak); OOM kills from
// the container cgroup's memory.oom_control while it runs and, on v1 where
// the counter dies with the cgroup, from the kernel's "oom-kill:" records in
// /dev/kmsg naming the lease's cgroup (v2: the parent's memory.events), or at
// least 1 when podman's State.OOMKilled (or conmon's "oom" file) says so;
// network bytes from /proc/<pid>/net/dev of a container process (its own
// namespace, loopback excluded), the last values read while it ran.
//
// Exit status: podman reports 128+N for a command killed by signal N, so an
// exit code in 129..159 is reported as "signal N" (a command that itself
// exits with such a code is indistinguishable).
//
// Poll: while the started container's cgroup has processes the lease runs,
// answered from the cgroup files alone; once it is empty, `podman inspect`
// gives the exit status, and the final status is saved in the state file.
//
// Stop(grace): SIGTERM to every process in the lease's cgroups, up to grace
// for the container to end, then SIGKILL to every process left (the death of
// catatonit, PID 1, ends the whole pid namespace); returns when the lease's
// cgroups are empty and podman has recorded the exit.
//
// Requires root (rootful podman), podman >= 4 and the OCI runtime. The
// containers run as root without a user namespace (podman's rootful default,
// with its default capability set); conmon runs in the agent's cgroup, so a
// service manager that kills the agent's whole cgroup on restart (systemd's
// KillMode=control-group) also kills conmon (the containers keep running but
// their exit codes are lost): run the agent with KillMode=process.
//
// Not yet done: no user namespace (container root is host root with
// podman's default capabilities; `--userns=auto` needs /etc/subuid ranges);
// the cgroup v2 metering paths and CDI requests by
// index (no UUIDs) are untested (these hosts are v1/v2 hybrids without GPUs);
// the GPU check counts device nodes, it does not match them to the UUIDs; a
// crash inside Start leaves a container that Poll reports failed ("start:
// interrupted") until Stop and Remove.
//
// Thread safety: as Runtime.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "core/status.h"

namespace grid::agent {

struct PodmanRuntimeOptions {
  std::string state_dir;                  // per-lease dirs, logs, state; made 0700
  std::string podman = "podman";          // the podman binary (PATH lookup)
  std::string oci_runtime = "runc";       // passed as `podman --runtime`
  std::string cgroup_parent = "/grid-podman";  // leases' cgroups go under <parent>/<id>
  std::string publish_address = "0.0.0.0";     // host address of published ports
  std::string sshd_path = "/usr/sbin/sshd";    // inside the image, for ssh_public_key
  int command_timeout_ms = 60000;         // any single podman command
};

// Unavailable when podman cannot be used here (not root, podman or the OCI
// runtime missing, `podman info` failing) or the state dir cannot be made.
Result<std::unique_ptr<Runtime>> NewPodmanRuntime(PodmanRuntimeOptions options);

namespace podman_internal {
// Exposed for tests: the pure parts of the runtime.

// The raw stream recorded in a k8s-file log ("<time> <stream> <P|F> <data>"
// lines; F ends a line of output, P is a partial line), from byte offset
// `offset` of that stream, at most max_bytes. Incomplete trailing lines are
// ignored (still being written).
std::string DecodeK8sLog(const std::string& file, int64_t offset, size_t max_bytes);

// Whether the GPU device nodes seen in the container's /dev (names such as
// "nvidia0", "nvidiactl") match the number of GPUs requested: every
// nvidia<N> node is one GPU. A clear reason when not.
Status CheckVisibleGpus(size_t requested, const std::vector<std::string>& dev_entries);

// `podman port` output ("22/tcp -> 127.0.0.1:45003" lines) to mappings.
std::vector<PortMapping> ParsePodmanPorts(const std::string& text);

// "exit N", "signal N" (128+N for N in 1..31), and the state.
void ExitReason(int exit_code, WorkloadStatus* status);
}  // namespace podman_internal

}  // namespace grid::agent
