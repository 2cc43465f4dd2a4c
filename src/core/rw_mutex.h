// WriterPreferringMutex: a reader-writer mutex (SharedMutex: works with
// std::lock_guard, std::unique_lock and std::shared_lock) that prefers
// writers: once a writer waits, new readers queue behind it.
//
// Why not std::shared_mutex: libstdc++ builds it on a default glibc
// pthread_rwlock, which lets new readers in while a writer waits, so a
// steady stream of overlapping readers (offer searches on several HTTP
// threads) could hold off a writer (a lease, a heartbeat) without bound.
//
// Not recursive: a thread must not take the shared lock again while it holds
// it (with a writer waiting, that deadlocks).
#pragma once

#include <pthread.h>

namespace grid {

class WriterPreferringMutex {
 public:
  WriterPreferringMutex();
  ~WriterPreferringMutex();
  WriterPreferringMutex(const WriterPreferringMutex&) = delete;
  WriterPreferringMutex& operator=(const WriterPreferringMutex&) = delete;

  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t rw_;
};

}  // namespace grid
