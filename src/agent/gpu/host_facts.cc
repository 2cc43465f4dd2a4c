#include "agent/gpu/host_facts.h"

#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>

namespace grid::agent {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The value of the first "key<spaces>: value" line of a /proc file.
std::string ProcValue(const std::string& path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (Trim(std::string_view(line).substr(0, colon)) == key) {
      return std::string(Trim(std::string_view(line).substr(colon + 1)));
    }
  }
  return "";
}

// PRETTY_NAME="Debian GNU/Linux 12 (bookworm)" -> Debian GNU/Linux 12 (bookworm)
std::string OsReleaseValue(const std::string& path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = Trim(line);
    if (l.size() <= key.size() || l.substr(0, key.size()) != key || l[key.size()] != '=') {
      continue;
    }
    std::string_view v = l.substr(key.size() + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
      v = v.substr(1, v.size() - 2);
    }
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '\\' && i + 1 < v.size()) ++i;  // shell-style escapes
      out += v[i];
    }
    return out;
  }
  return "";
}

bool FreeBytes(std::string dir, uint64_t* out) {
  if (dir.empty()) dir = ".";
  for (int depth = 0; depth < 64; ++depth) {
    struct statvfs st {};
    if (statvfs(dir.c_str(), &st) == 0) {
      *out = static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
      return true;
    }
    // Not created yet: measure the file system it will live on.
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    size_t slash = dir.rfind('/');
    if (slash == std::string::npos) {
      dir = ".";
    } else if (slash == 0) {
      if (dir == "/") return false;
      dir = "/";
    } else {
      dir.resize(slash);
    }
  }
  return false;
}

}  // namespace

Result<HostFacts> ProbeHost(const std::string& state_dir, const HostFactSources& sources) {
  HostFacts f;

  f.cpu_model = ProcValue(sources.cpuinfo, "model name");
  if (f.cpu_model.empty()) f.cpu_model = ProcValue(sources.cpuinfo, "Model");      // ARM boards
  if (f.cpu_model.empty()) f.cpu_model = ProcValue(sources.cpuinfo, "Hardware");
  if (f.cpu_model.empty()) f.cpu_model = "unknown";

  long online = sysconf(_SC_NPROCESSORS_ONLN);
  f.cpu_cores = online > 0 ? static_cast<int>(online)
                           : static_cast<int>(std::thread::hardware_concurrency());

  // "MemTotal:       131891996 kB"
  std::string mem = ProcValue(sources.meminfo, "MemTotal");
  unsigned long long kb = 0;
  if (!mem.empty() && std::sscanf(mem.c_str(), "%llu", &kb) == 1) f.ram_bytes = kb * 1024;

  bool have_disk = FreeBytes(state_dir, &f.disk_free_bytes);
  if (f.ram_bytes == 0 && !have_disk) {
    return Unavailable("cannot read " + sources.meminfo + " nor the file system under " +
                       state_dir);
  }

  struct utsname u {};
  std::string kernel;
  if (uname(&u) == 0) {
    kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
    f.hostname = u.nodename;
  }
  std::string pretty = OsReleaseValue(sources.os_release, "PRETTY_NAME");
  if (!pretty.empty() && !kernel.empty()) {
    f.os = pretty + "; " + kernel;
  } else {
    f.os = !pretty.empty() ? pretty : (!kernel.empty() ? kernel : "unknown");
  }
  if (f.hostname.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) == 0) f.hostname = buf;
  }
  return f;
}

}  // namespace grid::agent
