// The I/O thread's loop: waiting calls first, then the producer's prefetch jobs.
#include "storage/io_thread.h"

#include "common/trace.h"

namespace dpt::storage {

IoThread::~IoThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IoThread::enqueue(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back(std::move(fn));
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  changed_.notify_all();
}

void IoThread::add_producer(IoProducer* producer) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    producers_.push_back(producer);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  changed_.notify_all();
}

void IoThread::remove_producer(IoProducer* producer) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return busy_ != producer; });
  std::erase(producers_, producer);
}

void IoThread::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    if (!calls_.empty()) {
      std::function<void()> fn = std::move(calls_.front());
      calls_.pop_front();
      lock.unlock();
      fn();  // a packaged_task: exceptions go to the caller's future
      lock.lock();
      continue;
    }
    IoProducer* p = nullptr;
    for (size_t i = 0; i < producers_.size() && !p; ++i) {
      IoProducer* q = producers_[(next_producer_ + i) % producers_.size()];
      if (q->claim_locked()) p = q;
    }
    if (p) {
      next_producer_ = (next_producer_ + 1) % producers_.size();
      busy_ = p;
      lock.unlock();
      {
        const trace::Span span("read ahead", trace::Track::io);
        p->run_claimed();  // the producer keeps its own exceptions for its consumer
      }
      lock.lock();
      p->publish_locked();
      busy_ = nullptr;
      changed_.notify_all();
      continue;
    }
    changed_.wait(lock);
  }
}

}  // namespace dpt::storage
