#include "child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench_util.h"

namespace grid::bench {
namespace {

constexpr int kMaxChildren = 16;
volatile sig_atomic_t g_children[kMaxChildren] = {};

void Register(pid_t pid) {
  for (auto& c : g_children)
    if (c == 0) {
      c = pid;
      return;
    }
}
void Unregister(pid_t pid) {
  for (auto& c : g_children)
    if (c == pid) c = 0;
}

void OnSignal(int sig) {
  for (auto& c : g_children)
    if (c > 0) kill(c, SIGTERM);
  _exit(128 + sig);
}

}  // namespace

void StopChildrenOnSignal() {
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
}

int KillProcessesMatching(const std::string& needle) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == getpid()) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(needle) != std::string::npos && kill(pid, SIGKILL) == 0) ++n;
  }
  return n;
}

Status ChildProcess::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return InvalidArgument("no program");
  log_ = log_path;
  int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Unavailable("cannot write " + log_path);
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    ::close(fd);
    return Unavailable("fork failed");
  }
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execv(cargs[0], cargs.data());
    std::fprintf(stderr, "cannot run %s: %s\n", cargs[0], std::strerror(errno));
    _exit(127);
  }
  ::close(fd);
  pid_ = pid;
  Register(pid);
  return Status::Ok();
}

bool ChildProcess::Running() const {
  if (pid_ <= 0) return false;
  // WNOWAIT: look without reaping, so Stop() still finds it.
  siginfo_t info{};
  info.si_pid = 0;
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

Result<std::string> ChildProcess::WaitForLine(const std::string& needle, double timeout_s) const {
  const double deadline = NowSeconds() + timeout_s;
  std::string text;
  for (;;) {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
    size_t at = text.find(needle);
    if (at != std::string::npos) {
      size_t b = text.rfind('\n', at);
      b = b == std::string::npos ? 0 : b + 1;
      size_t e = text.find('\n', at);
      if (e != std::string::npos) return text.substr(b, e - b);
    }
    if (!Running() || NowSeconds() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Unavailable("no \"" + needle + "\" from pid " + std::to_string(pid_) + "; its log ends: " +
                     text.substr(text.size() > 600 ? text.size() - 600 : 0));
}

void ChildProcess::Stop() {
  if (pid_ <= 0) return;
  Unregister(pid_);
  kill(pid_, SIGTERM);
  int st = 0;
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &st, 0);
  pid_ = -1;
}

Result<std::string> StartBroker(ChildProcess& child, const std::string& grid, const std::string& db,
                                double heartbeat_s, int threads, const std::string& log_path) {
  char hb[32];
  std::snprintf(hb, sizeof hb, "%g", heartbeat_s);
  GRID_RETURN_IF_ERROR(child.Start({grid, "broker", "--db", db, "--listen", "127.0.0.1:0", "--dev", "--heartbeat", hb,
                                    "--threads", std::to_string(threads)},
                                   log_path));
  GRID_ASSIGN_OR_RETURN(std::string line, child.WaitForLine("listening on ", 30));
  return line.substr(line.find("listening on ") + 13);
}

}  // namespace grid::bench
