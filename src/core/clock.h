// Clock: the only way anything outside the pure core learns the time.
//
// The domain core never reads a clock; services read one of these and pass
// `now_ms` (milliseconds since the Unix epoch) in. ManualClock lets tests and
// the simulator move time by hand. Both implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grid {

using UnixMs = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual UnixMs NowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  UnixMs NowMs() const override;
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(UnixMs start_ms) : now_ms_(start_ms) {}
  UnixMs NowMs() const override { return now_ms_.load(); }
  void AdvanceMs(int64_t delta_ms) { now_ms_ += delta_ms; }
  void SetMs(UnixMs t) { now_ms_ = t; }

 private:
  std::atomic<UnixMs> now_ms_;
};

// RFC 3339 UTC with milliseconds: "2026-11-29T15:33:38.123Z".
std::string FormatTime(UnixMs t);
// The same characters written to buf (at least kMaxTimeChars bytes, no
// terminator); returns the end.
inline constexpr size_t kMaxTimeChars = 48;
char* FormatTimeTo(char* buf, UnixMs t);
// Parses RFC 3339 ("2026-11-29T15:33:38Z"; fractional seconds and a "Z" or
// "+hh:mm" offset) and plain dates ("2027-06-30", taken as 00:00Z).
// Returns false, leaving *out alone, on anything else.
bool ParseTime(std::string_view text, UnixMs* out);

}  // namespace grid
