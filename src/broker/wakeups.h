// MachineWakeups: what lets an agent learn of a new or ended lease at once,
// without polling (the agent's long-poll, POST /v1/agent/wait).
//
// Each machine has a version that the broker bumps whenever one of its
// leases is created or changes state. An agent passes the version it last saw
// (from its heartbeat); Wait answers at once if the version moved, else on
// the next bump or at the timeout, whichever comes first. Versions start at
// an epoch (the broker's start time), so after a broker restart every agent's
// old version differs and it re-reads its leases.
//
// Costs: a waiting agent is a map entry and its callback; no thread waits
// (one timer thread serves every deadline). At most kMaxWaitersPerMachine
// wait on one machine: a further Wait answers the oldest one unchanged.
//
// Thread safety: every method may be called from any thread. Callbacks run
// outside the internal lock, on the caller's thread (an immediate answer or
// a bump) or on the timer thread (a timeout); they must not block long.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace grid::broker {

class MachineWakeups {
 public:
  // changed: the version differs from the one waited on; version: the current one.
  using Callback = std::function<void(bool changed, int64_t version)>;
  static constexpr size_t kMaxWaitersPerMachine = 4;
  static constexpr int64_t kMaxTimeoutMs = 60'000;

  explicit MachineWakeups(int64_t epoch);
  // Answers every waiter (unchanged) and joins the timer thread.
  ~MachineWakeups();
  MachineWakeups(const MachineWakeups&) = delete;
  MachineWakeups& operator=(const MachineWakeups&) = delete;

  int64_t Version(int64_t machine_id) const;
  // Moves the machine's version on and wakes its waiters.
  void Bump(int64_t machine_id);
  // Replicas: sets the machine's version to `version` (a change-log
  // sequence number, the same on every replica) and wakes its waiters,
  // unless the version is already there or past it.
  void AdvanceTo(int64_t machine_id, int64_t version);
  // Calls `done` exactly once (timeout_ms is clamped to [0, kMaxTimeoutMs]).
  void Wait(int64_t machine_id, int64_t version, int64_t timeout_ms, Callback done);
  size_t waiting() const;

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  struct Waiter {
    int64_t machine_id;
    Callback done;
    std::multimap<Deadline, uint64_t>::iterator deadline;
  };
  int64_t VersionLocked(int64_t machine_id) const;
  void MoveOn(int64_t machine_id, std::optional<int64_t> to);
  void TimerLoop();

  const int64_t epoch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<int64_t, int64_t> bumps_;                  // machine -> bumps since the epoch
  std::unordered_map<uint64_t, Waiter> waiters_;                // by waiter id
  std::unordered_map<int64_t, std::vector<uint64_t>> by_machine_;  // oldest first
  std::multimap<Deadline, uint64_t> deadlines_;
  std::thread timer_;
};

}  // namespace grid::broker
