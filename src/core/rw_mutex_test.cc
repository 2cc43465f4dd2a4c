#include "core/rw_mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

namespace grid {
namespace {

TEST(WriterPreferringMutex, ExcludesWritersAndSharesReaders) {
  WriterPreferringMutex mu;
  {
    std::shared_lock a(mu);
    EXPECT_TRUE(mu.try_lock_shared()) << "readers share";
    mu.unlock_shared();
    EXPECT_FALSE(mu.try_lock()) << "no writer while a reader holds it";
  }
  {
    std::lock_guard w(mu);
    EXPECT_FALSE(mu.try_lock_shared());
  }
  // Counting under the lock from several writers loses nothing.
  int64_t n = 0;
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int j = 0; j < 20000; ++j) {
        std::lock_guard w(mu);
        ++n;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(n, 80000);
}

// Readers that always overlap (each takes the lock before the previous one
// leaves) would starve a writer under glibc's default rwlock; here the
// writer gets in while they keep coming.
TEST(WriterPreferringMutex, AWaitingWriterIsNotStarvedByOverlappingReaders) {
  WriterPreferringMutex mu;
  std::atomic<bool> stop{false}, wrote{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i)
    readers.emplace_back([&] {
      while (!stop) {
        std::shared_lock r(mu);
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::thread writer([&] {
    std::lock_guard w(mu);
    wrote = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!wrote && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(wrote.load()) << "the writer waited 10 s behind readers";
  stop = true;
  writer.join();
  for (auto& t : readers) t.join();
}

}  // namespace
}  // namespace grid
