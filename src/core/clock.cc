#include "core/clock.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace grid {
namespace {

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
// days_from_civil), so no libc time zone state is touched.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

UnixMs SystemClock::NowMs() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

char* FormatTimeTo(char* buf, UnixMs t) {
  // Floor division without overflow, for any int64 (times can come from
  // outside, e.g. a channel's expiry).
  int64_t days = t / 86'400'000;
  int64_t rem = t % 86'400'000;
  if (rem < 0) {
    --days;
    rem += 86'400'000;
  }
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  if (y < 0 || y > 9999) {  // rare: printf's rules for the odd widths and signs
    int n = std::snprintf(buf, kMaxTimeChars, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
                          static_cast<long long>(y), m, d, static_cast<long long>(rem / 3'600'000),
                          static_cast<long long>(rem / 60'000 % 60), static_cast<long long>(rem / 1000 % 60),
                          static_cast<long long>(rem % 1000));
    return buf + std::min<int>(n, kMaxTimeChars - 1);
  }
  auto put = [&buf](uint64_t v, int width) {
    for (int i = width - 1; i >= 0; --i) {
      buf[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    buf += width;
  };
  put(static_cast<uint64_t>(y), 4);
  *buf++ = '-';
  put(m, 2);
  *buf++ = '-';
  put(d, 2);
  *buf++ = 'T';
  put(static_cast<uint64_t>(rem / 3'600'000), 2);
  *buf++ = ':';
  put(static_cast<uint64_t>(rem / 60'000 % 60), 2);
  *buf++ = ':';
  put(static_cast<uint64_t>(rem / 1000 % 60), 2);
  *buf++ = '.';
  put(static_cast<uint64_t>(rem % 1000), 3);
  *buf++ = 'Z';
  return buf;
}

std::string FormatTime(UnixMs t) {
  char buf[kMaxTimeChars];
  return std::string(buf, FormatTimeTo(buf, t));
}

bool ParseTime(std::string_view s, UnixMs* out) {
  int y, mo, d;
  if (!Digits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return false;
  int64_t days = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  if (s.size() == 10) {
    *out = days * 86'400'000;
    return true;
  }
  int h, mi, sec;
  if (s.size() < 20 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !Digits(s, 11, 2, &h) ||
      s[13] != ':' || !Digits(s, 14, 2, &mi) || s[16] != ':' || !Digits(s, 17, 2, &sec))
    return false;
  if (h > 23 || mi > 59 || sec > 60) return false;
  size_t pos = 19;
  int64_t ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int64_t scale = 100;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return false;
  }
  int64_t offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!Digits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &om))
      return false;
    offset_min = (oh * 60 + om) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  *out = days * 86'400'000 + (h * 3600LL + mi * 60 + sec) * 1000 + ms - offset_min * 60'000;
  return true;
}

}  // namespace grid
