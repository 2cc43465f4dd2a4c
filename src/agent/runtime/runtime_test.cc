#include "agent/runtime/runtime.h"

#include <gtest/gtest.h>

namespace grid::agent {
namespace {

TEST(ParseNetDevTest, SumsEveryInterfaceButLoopback) {
  const std::string text =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
      "    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0\n"
      "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
      "  eth1: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
  int64_t rx = -1, tx = -1;
  ASSERT_TRUE(ParseNetDev(text, &rx, &tx));
  EXPECT_EQ(rx, 1005);
  EXPECT_EQ(tx, 2007);
}

TEST(ParseNetDevTest, LoopbackOnlyIsZeroAndGarbageIsRefused) {
  int64_t rx = -1, tx = -1;
  ASSERT_TRUE(ParseNetDev("Inter-|\n face |\n    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", &rx, &tx));
  EXPECT_EQ(rx, 0);
  EXPECT_EQ(tx, 0);
  EXPECT_FALSE(ParseNetDev("", &rx, &tx));
  EXPECT_FALSE(ParseNetDev("eth0: 1 2 x\n", &rx, &tx));
}

}  // namespace
}  // namespace grid::agent
