// Small helpers shared by the bench/ programs: the machine's description,
// resident memory, medians, a monotonic clock, running shell commands.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace grid::bench {

// "nproc=2 cpu=AMD EPYC" from sysconf and /proc/cpuinfo.
std::string MachineLine();
int NumCpus();
std::string CpuModel();

// VmRSS and its parts (RssAnon, RssFile, RssShmem) from /proc/self/status, in kB.
struct Rss {
  int64_t total_kb = 0, anon_kb = 0, file_kb = 0, shmem_kb = 0;
};
Rss ReadRss();
std::string FormatRss(const Rss& r);  // "RSS 123.4 MiB (anon 120.0, file 3.4, shmem 0.0)"

double Median(std::vector<double> v);
double NowSeconds();        // CLOCK_MONOTONIC
double ThreadCpuSeconds();  // CLOCK_THREAD_CPUTIME_ID: this thread's CPU time

// Numeric options `--name VALUE`, each stored into its variable. An unknown
// option or a missing value prints `usage` on stderr and exits 2; so does a
// value that is not positive.
struct NumberFlag {
  const char* name;  // "--rounds"
  int* as_int = nullptr;
  double* as_double = nullptr;
};
void ParseNumberFlags(int argc, char** argv, const char* usage, std::initializer_list<NumberFlag> flags);

// Runs `cmd` with /bin/sh; returns its exit status, stdout+stderr in *out.
int RunCapture(const std::string& cmd, std::string* out);

// Quotes for /bin/sh.
std::string ShellQuote(const std::string& s);

}  // namespace grid::bench
