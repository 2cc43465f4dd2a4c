#include "bench_util.h"

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace grid::bench {

int NumCpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  }
  return "unknown";
}

std::string MachineLine() { return "nproc=" + std::to_string(NumCpus()) + " cpu=\"" + CpuModel() + "\""; }

Rss ReadRss() {
  Rss r;
  std::ifstream in("/proc/self/status");
  std::string line;
  auto value = [](const std::string& l) {
    std::istringstream is(l.substr(l.find(':') + 1));
    int64_t kb = 0;
    is >> kb;
    return kb;
  };
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) r.total_kb = value(line);
    else if (line.rfind("RssAnon:", 0) == 0) r.anon_kb = value(line);
    else if (line.rfind("RssFile:", 0) == 0) r.file_kb = value(line);
    else if (line.rfind("RssShmem:", 0) == 0) r.shmem_kb = value(line);
  }
  return r;
}

std::string FormatRss(const Rss& r) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "RSS %.1f MiB (anon %.1f, file %.1f, shmem %.1f)", r.total_kb / 1024.0,
                r.anon_kb / 1024.0, r.file_kb / 1024.0, r.shmem_kb / 1024.0);
  return buf;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void ParseNumberFlags(int argc, char** argv, const char* usage, std::initializer_list<NumberFlag> flags) {
  auto fail = [&] {
    std::fprintf(stderr, "%s\n", usage);
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const NumberFlag* f = nullptr;
    for (const NumberFlag& x : flags)
      if (a == x.name) f = &x;
    if (!f || i + 1 >= argc) fail();
    const char* v = argv[++i];
    char* end = nullptr;
    if (f->as_int) {
      long n = std::strtol(v, &end, 10);
      if (*end != '\0' || n <= 0 || n > INT32_MAX) fail();
      *f->as_int = static_cast<int>(n);
    } else {
      double d = std::strtod(v, &end);
      if (*end != '\0' || !(d > 0)) fail();
      *f->as_double = d;
    }
  }
}

int RunCapture(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

}  // namespace grid::bench
