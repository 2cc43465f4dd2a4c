#include "core/clock.h"

#include <gtest/gtest.h>

namespace grid {
namespace {

TEST(Time, FormatsAndParsesRfc3339) {
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000Z");
  UnixMs t = 0;
  ASSERT_TRUE(ParseTime("2026-11-29T15:33:38.123Z", &t));
  EXPECT_EQ(FormatTime(t), "2026-11-29T15:33:38.123Z");
  ASSERT_TRUE(ParseTime("2027-06-30", &t));
  EXPECT_EQ(FormatTime(t), "2027-06-30T00:00:00.000Z");
  ASSERT_TRUE(ParseTime("2026-11-29T17:33:38+02:00", &t));
  EXPECT_EQ(FormatTime(t), "2026-11-29T15:33:38.000Z");
  for (const char* bad : {"", "2026-13-01", "2026-11-29T15:33", "2026-11-29T15:33:38", "2026-11-29Tx",
                          "2026-11-29T15:33:38Zjunk", "20261129"}) {
    EXPECT_FALSE(ParseTime(bad, &t)) << bad;
  }
}

}  // namespace
}  // namespace grid
