// A child process for the bench/ programs that drive the real `grid` binary
// (a broker, an agent): started with its stdout and stderr in a log file,
// waited for by a line in that log, stopped by its PID (SIGTERM, then SIGKILL).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace grid::bench {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Stop(); }

  // argv[0] is the program's path (no PATH lookup). Extra environment
  // variables are inherited from this process.
  Status Start(const std::vector<std::string>& argv, const std::string& log_path);
  // The first log line containing `needle`, waiting up to timeout_s;
  // Unavailable (with the log's tail) if the child exits or time runs out.
  Result<std::string> WaitForLine(const std::string& needle, double timeout_s) const;
  // SIGTERM, up to 5 s, then SIGKILL; reaps it. Idempotent.
  void Stop();
  bool Running() const;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// On SIGINT/SIGTERM, sends SIGTERM to every running ChildProcess, then exits.
void StopChildrenOnSignal();

// SIGKILLs every process whose command line contains `needle` (e.g. a
// workload init the agent forked under its state dir, which outlives the
// agent by design). Returns how many.
int KillProcessesMatching(const std::string& needle);

// "grid broker listening on http://127.0.0.1:PORT" -> "http://127.0.0.1:PORT".
Result<std::string> StartBroker(ChildProcess& child, const std::string& grid, const std::string& db,
                                double heartbeat_s, int threads, const std::string& log_path);

}  // namespace grid::bench
