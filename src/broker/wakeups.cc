#include "broker/wakeups.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace grid::broker {

MachineWakeups::MachineWakeups(int64_t epoch) : epoch_(epoch), timer_([this] { TimerLoop(); }) {}

MachineWakeups::~MachineWakeups() {
  std::vector<std::pair<Callback, int64_t>> answers;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [id, w] : waiters_) answers.emplace_back(std::move(w.done), VersionLocked(w.machine_id));
    waiters_.clear();
    by_machine_.clear();
    deadlines_.clear();
  }
  cv_.notify_all();
  timer_.join();
  for (auto& [done, version] : answers) done(false, version);
}

int64_t MachineWakeups::VersionLocked(int64_t machine_id) const {
  auto it = bumps_.find(machine_id);
  return epoch_ + (it == bumps_.end() ? 0 : it->second);
}

int64_t MachineWakeups::Version(int64_t machine_id) const {
  std::lock_guard lock(mu_);
  return VersionLocked(machine_id);
}

size_t MachineWakeups::waiting() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

void MachineWakeups::Bump(int64_t machine_id) { MoveOn(machine_id, std::nullopt); }

void MachineWakeups::AdvanceTo(int64_t machine_id, int64_t version) { MoveOn(machine_id, version); }

void MachineWakeups::MoveOn(int64_t machine_id, std::optional<int64_t> to) {
  std::vector<Callback> wake;
  int64_t version;
  {
    std::lock_guard lock(mu_);
    if (to) {
      if (*to <= VersionLocked(machine_id)) return;  // not newer: nothing to tell
      bumps_[machine_id] = *to - epoch_;
    } else {
      ++bumps_[machine_id];
    }
    version = VersionLocked(machine_id);
    auto it = by_machine_.find(machine_id);
    if (it != by_machine_.end()) {
      for (uint64_t id : it->second) {
        auto w = waiters_.find(id);
        deadlines_.erase(w->second.deadline);
        wake.push_back(std::move(w->second.done));
        waiters_.erase(w);
      }
      by_machine_.erase(it);
    }
  }
  for (auto& done : wake) done(true, version);
}

void MachineWakeups::Wait(int64_t machine_id, int64_t version, int64_t timeout_ms, Callback done) {
  timeout_ms = std::clamp<int64_t>(timeout_ms, 0, kMaxTimeoutMs);
  Callback evicted;
  int64_t current;
  {
    std::lock_guard lock(mu_);
    current = VersionLocked(machine_id);
    if (current == version && timeout_ms > 0 && !stopping_) {
      std::vector<uint64_t>& mine = by_machine_[machine_id];
      if (mine.size() >= kMaxWaitersPerMachine) {
        auto w = waiters_.find(mine.front());
        deadlines_.erase(w->second.deadline);
        evicted = std::move(w->second.done);
        waiters_.erase(w);
        mine.erase(mine.begin());
      }
      uint64_t id = next_id_++;
      auto deadline = deadlines_.emplace(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms), id);
      waiters_.emplace(id, Waiter{machine_id, std::move(done), deadline});
      mine.push_back(id);
      if (deadline == deadlines_.begin()) cv_.notify_all();  // an earlier deadline than the timer sleeps to
      done = nullptr;
    }
  }
  if (evicted) evicted(false, current);
  if (done) done(current != version, current);
}

void MachineWakeups::TimerLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (deadlines_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = deadlines_.begin()->first;
    if (std::chrono::steady_clock::now() < first) {
      cv_.wait_until(lock, first);
      continue;
    }
    std::vector<std::pair<Callback, int64_t>> expired;
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      uint64_t id = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      auto w = waiters_.find(id);
      auto& mine = by_machine_[w->second.machine_id];
      std::erase(mine, id);
      if (mine.empty()) by_machine_.erase(w->second.machine_id);
      expired.emplace_back(std::move(w->second.done), VersionLocked(w->second.machine_id));
      waiters_.erase(w);
    }
    lock.unlock();
    for (auto& [done, version] : expired) done(false, version);
    lock.lock();
  }
}

}  // namespace grid::broker
