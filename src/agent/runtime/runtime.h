// Runtime: how the grid agent runs a lease's workload on its host.
//
// Two implementations sit behind the one interface, chosen with
// `grid agent --runtime process|podman`:
//  - NewProcessRuntime() (process_runtime.h) runs the lease's command from
//    the host's own file system, mounted read-only, as a process tree in its
//    own user, pid, mount, network, ipc and uts namespaces, inside per-lease
//    cgroups that limit memory, CPU, pids and devices.
//  - the podman runtime (separate file) runs an image through podman.
//
// Life of a workload: Start() -> Poll()* -> Stop() -> Remove(). A workload
// outlives the agent process: when the agent restarts, a new Runtime on the
// same state dir calls Adopt() to re-attach to the leases that still run
// (they are neither killed nor started twice).
//
// Contract: no exception leaves this module; failures come back as Status.
// Thread safety: every Runtime may be called from any number of threads at
// once; calls on different leases proceed in parallel, calls on the same
// lease are serialised.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace grid::agent {

// What to run for one lease.
struct WorkloadSpec {
  std::string lease_id;               // [A-Za-z0-9._-], 1..64 characters
  std::string image;                  // "host" is the only image of the process runtime
  std::vector<std::string> command;   // argv; argv[0] is looked up in PATH
  std::vector<std::string> env;       // "K=V"; PATH defaults to the usual one
  std::vector<int> gpu_indices;       // exposed via CUDA_VISIBLE_DEVICES + device cgroup
  std::vector<std::string> gpu_uuids; // when set, CUDA_VISIBLE_DEVICES lists these instead
  bool gpus_simulated = false;        // test fixture: the indices name no device; only
                                      // CUDA_VISIBLE_DEVICES is set (no CDI request, no check)
  int64_t memory_limit_bytes = 0;     // <= 0: no limit
  int64_t cpu_millicores = 0;         // 500 = half a core; <= 0: no limit
  int64_t pids_limit = 0;             // <= 0: no limit
  int grace_ms = 10000;               // default grace for Stop (SIGTERM -> SIGKILL)
  // podman only (the process runtime refuses a spec that sets them):
  std::vector<int> ports;             // container TCP ports published on free host ports
  std::string ssh_public_key;         // one OpenSSH public key line: an sshd is started in
                                      // the container and port 22 is published
};

// A container port published on the host.
struct PortMapping {
  int container_port = 0;
  int host_port = 0;
};

// kRunning: some process of the lease still runs.
// kExited:  the command ended with exit status 0.
// kFailed:  anything else: a non-zero exit, a signal, an OOM kill, a start
//           that failed, or a tree killed by Stop.
enum class WorkloadState { kRunning, kExited, kFailed };

// A point-in-time view of one lease, with the metering evidence.
struct WorkloadStatus {
  WorkloadState state = WorkloadState::kRunning;
  int exit_code = 0;           // the exit status; 128+N for signal N; 0 while running
  std::string reason;          // "" while running; "exit 0", "exit 3", "signal 9", "oom", "start: ..."
  double wall_seconds = 0;     // from start to end (or to now while running)
  double cpu_seconds = 0;      // user+system CPU of every process of the lease
  int64_t peak_memory_bytes = 0;
  int64_t oom_kills = 0;       // processes of the lease killed by the OOM killer
  // Bytes through the workload's network namespace, loopback excluded (the
  // last values seen while it ran; 0 where it has no network).
  int64_t net_rx_bytes = 0, net_tx_bytes = 0;
  std::vector<PortMapping> ports;  // published ports (podman), empty otherwise
};

// The bytes received and sent on every interface but loopback, from
// /proc/<pid>/net/dev of a process in the network namespace (its text given).
// False if the text has no interface table.
bool ParseNetDev(const std::string& net_dev, int64_t* rx_bytes, int64_t* tx_bytes);

class Runtime {
 public:
  virtual ~Runtime();

  // "process" or "podman".
  virtual std::string Name() const = 0;

  // Starts the workload and returns once its process tree runs (the command
  // has been exec'd). InvalidArgument for a spec this runtime cannot run (an
  // image it does not know, an empty command, a bad lease id, a command that
  // cannot be executed); Conflict when the lease id is already known.
  virtual Status Start(const WorkloadSpec& spec) = 0;

  // The lease's state and metering. Works without being the parent of the
  // workload (after Adopt). NotFound for an unknown lease.
  virtual Result<WorkloadStatus> Poll(const std::string& lease_id) = 0;

  // SIGTERM to every process of the lease, up to grace_ms for them to end,
  // then SIGKILL to everything in the lease's cgroup, and waits until the
  // cgroup is empty: when it returns OK nothing of the lease runs.
  // Idempotent: stopping an ended lease is OK. NotFound for an unknown lease.
  virtual Status Stop(const std::string& lease_id, int grace_ms) = 0;

  // Up to max_bytes of the combined stdout+stderr of the workload, from
  // offset. An empty string at the end of the log.
  virtual Result<std::string> ReadLogs(const std::string& lease_id, int64_t offset,
                                       size_t max_bytes) = 0;

  // After an agent restart: scans the state dir, re-attaches to the leases
  // whose processes still run (verified by their cgroup membership, so a
  // reused pid is not mistaken for a workload) and returns their ids. Ended
  // leases found there are loaded too (Poll reports their end) but are not
  // returned. Never starts or kills anything.
  virtual Result<std::vector<std::string>> Adopt() = 0;

  // After the workload ended: deletes its cgroups, work dir, logs and state.
  // Conflict while it still runs; NotFound for an unknown lease.
  virtual Status Remove(const std::string& lease_id) = 0;
};

}  // namespace grid::agent
