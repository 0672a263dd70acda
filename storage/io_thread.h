// [I/O thread] The one thread of a process that makes HDF5 calls ([HDF5 thread]). It runs two
// kinds of work: calls that a caller waits for (opening and checking shards, loading the
// validation set) and, between them, the registered producers' prefetch jobs (reading the next
// micro-batches), taken round-robin. One mutex guards both; a producer keeps its queue state under
// that mutex (mutex() / notify()) so that consumers and the thread wake each other without a second
// lock. The thread starts with the first use, so nothing is opened before a fork.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace dpt::storage {

// Work the I/O thread does in the background whenever no call is waiting.
class IoProducer {
 public:
  virtual ~IoProducer() = default;
  // With the I/O mutex held: claims the next job, or returns false when there is none now.
  virtual bool claim_locked() = 0;
  // Without the mutex: does the claimed job (the HDF5 reads).
  virtual void run_claimed() = 0;
  // With the mutex held: publishes the job's result; the thread then notifies all waiters.
  virtual void publish_locked() = 0;
};

class IoThread {
 public:
  IoThread() = default;
  ~IoThread();  // stops the thread; queued calls that never ran are abandoned
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // Runs fn on the I/O thread and waits for it; rethrows what fn threw.
  template <typename F>
  auto call(F&& fn) -> decltype(fn()) {
    using R = decltype(fn());
    std::packaged_task<R()> task(std::forward<F>(fn));
    std::future<R> result = task.get_future();
    enqueue([&task] { task(); });
    return result.get();
  }

  void add_producer(IoProducer* producer);
  // Waits until a job of producer in progress has been published, so that the producer may be
  // destroyed right after.
  void remove_producer(IoProducer* producer);

  std::mutex& mutex() { return mutex_; }
  std::condition_variable& changed() { return changed_; }
  // Wakes the thread and all waiters; call after changing producer state under mutex().
  void notify() { changed_.notify_all(); }

 private:
  void enqueue(std::function<void()> fn);
  void loop();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> calls_;
  std::vector<IoProducer*> producers_;
  size_t next_producer_ = 0;    // round-robin start
  IoProducer* busy_ = nullptr;  // the producer whose job runs now
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dpt::storage
