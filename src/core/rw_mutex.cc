#include "core/rw_mutex.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace grid {

namespace {
// A failing pthread_rwlock call means misuse (unlocking what is not held)
// or a broken system: there is no state to recover to.
void Check(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "WriterPreferringMutex: %s failed (%d)\n", what, rc);
    std::abort();
  }
}
}  // namespace

WriterPreferringMutex::WriterPreferringMutex() {
  pthread_rwlockattr_t attr;
  Check(pthread_rwlockattr_init(&attr), "pthread_rwlockattr_init");
  Check(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP), "setkind");
  Check(pthread_rwlock_init(&rw_, &attr), "pthread_rwlock_init");
  pthread_rwlockattr_destroy(&attr);
}

WriterPreferringMutex::~WriterPreferringMutex() { pthread_rwlock_destroy(&rw_); }

void WriterPreferringMutex::lock() { Check(pthread_rwlock_wrlock(&rw_), "wrlock"); }
bool WriterPreferringMutex::try_lock() { return pthread_rwlock_trywrlock(&rw_) == 0; }
void WriterPreferringMutex::unlock() { Check(pthread_rwlock_unlock(&rw_), "unlock"); }
void WriterPreferringMutex::lock_shared() {
  int rc;
  // EAGAIN: the (very large) maximum number of readers; wait for one to leave.
  while ((rc = pthread_rwlock_rdlock(&rw_)) == EAGAIN) {
  }
  Check(rc, "rdlock");
}
bool WriterPreferringMutex::try_lock_shared() { return pthread_rwlock_tryrdlock(&rw_) == 0; }
void WriterPreferringMutex::unlock_shared() { Check(pthread_rwlock_unlock(&rw_), "unlock"); }

}  // namespace grid
