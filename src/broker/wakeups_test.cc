#include "broker/wakeups.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace grid::broker {
namespace {

using namespace std::chrono_literals;

struct Answer {
  std::atomic<int> calls{0};
  std::atomic<bool> changed{false};
  std::atomic<int64_t> version{0};
  MachineWakeups::Callback cb() {
    return [this](bool c, int64_t v) {
      changed = c;
      version = v;
      ++calls;
    };
  }
  bool WaitCalled(std::chrono::milliseconds limit = 2s) {
    for (auto t = std::chrono::steady_clock::now(); calls == 0;) {
      if (std::chrono::steady_clock::now() - t > limit) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }
};

TEST(MachineWakeupsTest, VersionsStartAtTheEpochAndMovePerMachine) {
  MachineWakeups w(1000);
  EXPECT_EQ(w.Version(7), 1000);
  w.Bump(7);
  w.Bump(7);
  EXPECT_EQ(w.Version(7), 1002);
  EXPECT_EQ(w.Version(8), 1000);
}

TEST(MachineWakeupsTest, StaleVersionAnswersAtOnce) {
  MachineWakeups w(1000);
  w.Bump(1);
  Answer a;
  w.Wait(1, 1000, 10'000, a.cb());
  EXPECT_EQ(a.calls, 1);
  EXPECT_TRUE(a.changed);
  EXPECT_EQ(a.version, 1001);
  EXPECT_EQ(w.waiting(), 0u);
}

TEST(MachineWakeupsTest, BumpWakesOnlyThatMachinesWaiters) {
  MachineWakeups w(0);
  Answer a, b;
  w.Wait(1, 0, 10'000, a.cb());
  w.Wait(2, 0, 10'000, b.cb());
  EXPECT_EQ(w.waiting(), 2u);
  w.Bump(1);
  EXPECT_EQ(a.calls, 1);
  EXPECT_TRUE(a.changed);
  EXPECT_EQ(a.version, 1);
  EXPECT_EQ(b.calls, 0);
  EXPECT_EQ(w.waiting(), 1u);
}

TEST(MachineWakeupsTest, TimeoutAnswersUnchangedOnce) {
  MachineWakeups w(5);
  Answer a, b;
  w.Wait(1, 5, 30, a.cb());
  w.Wait(1, 5, 0, b.cb());  // no wait at all
  EXPECT_EQ(b.calls, 1);
  EXPECT_FALSE(b.changed);
  ASSERT_TRUE(a.WaitCalled());
  EXPECT_FALSE(a.changed);
  EXPECT_EQ(a.version, 5);
  w.Bump(1);  // already answered: no second call
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(a.calls, 1);
}

TEST(MachineWakeupsTest, EarlierDeadlineWakesTheTimer) {
  MachineWakeups w(0);
  Answer slow, fast;
  w.Wait(1, 0, 50'000, slow.cb());
  w.Wait(2, 0, 20, fast.cb());
  ASSERT_TRUE(fast.WaitCalled(1s));
  EXPECT_EQ(slow.calls, 0);
}

TEST(MachineWakeupsTest, TooManyWaitersEvictTheOldest) {
  MachineWakeups w(0);
  Answer a[MachineWakeups::kMaxWaitersPerMachine + 1];
  for (auto& x : a) w.Wait(3, 0, 10'000, x.cb());
  EXPECT_EQ(a[0].calls, 1);
  EXPECT_FALSE(a[0].changed);
  EXPECT_EQ(w.waiting(), MachineWakeups::kMaxWaitersPerMachine);
}

TEST(MachineWakeupsTest, DestructorAnswersEveryWaiter) {
  Answer a;
  {
    MachineWakeups w(0);
    w.Wait(1, 0, 60'000, a.cb());
  }
  EXPECT_EQ(a.calls, 1);
  EXPECT_FALSE(a.changed);
}

// Bumps and waits from several threads: every wait is answered exactly once.
TEST(MachineWakeupsTest, ConcurrentBumpsAndWaits) {
  MachineWakeups w(0);
  constexpr int kWaits = 2000;
  std::atomic<int> answered{0};
  std::thread bumper([&] {
    for (int i = 0; i < 4000; ++i) w.Bump(i % 4);
  });
  std::thread waiter([&] {
    for (int i = 0; i < kWaits; ++i)
      w.Wait(i % 4, w.Version(i % 4), i % 3 == 0 ? 1 : 50, [&](bool, int64_t) { ++answered; });
  });
  bumper.join();
  waiter.join();
  for (int i = 0; i < 4; ++i) w.Bump(i);  // wakes whatever still waits
  for (int i = 0; i < 500 && answered < kWaits; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_EQ(answered, kWaits);
}

}  // namespace
}  // namespace grid::broker
