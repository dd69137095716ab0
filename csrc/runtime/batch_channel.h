// A bounded single-producer / single-consumer channel of finished patch
// batches. The bound keeps the embeddings in memory to about two batches;
// either side can close it so the other stops waiting (cancel or error).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <vector>

namespace bluelm {

struct EmbeddingBatch {
  std::vector<float> rows;  // n_rows x d
  int64_t n_rows = 0;
};

class BatchChannel {
 public:
  explicit BatchChannel(size_t capacity) : capacity_(capacity) {}

  // Blocks while full; returns false when the channel was closed.
  bool push(EmbeddingBatch&& b) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return closed_ || capacity_ == 0 || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(b));
    not_empty_.notify_one();
    return true;
  }

  // Blocks until a batch, the producer's error, close, or *cancel. Returns
  // false when closed or cancelled with nothing left; rethrows the producer's exception.
  bool pop(EmbeddingBatch& out, const std::atomic<bool>& cancel) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (items_.empty() && !error_ && !closed_) {
      if (cancel.load()) return false;
      // cancel is set without the lock, so poll it rather than rely on a notify
      not_empty_.wait_for(lock, std::chrono::milliseconds(5));
    }
    if (!items_.empty()) {
      out = std::move(items_.front());
      items_.pop_front();
      not_full_.notify_one();
      return true;
    }
    if (error_) std::rethrow_exception(error_);
    return false;
  }

  // The producer failed: the consumer gets the exception after what is queued.
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = e;
    not_empty_.notify_all();
  }

  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
  }

 private:
  size_t capacity_;  // 0: unbounded (the sequential path queues everything)
  mutable std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<EmbeddingBatch> items_;
  std::exception_ptr error_;
  bool closed_ = false;
};

}  // namespace bluelm
