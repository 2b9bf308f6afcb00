#include <opendsr/group_commit.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace opendsr {

struct group_committer::impl {
  struct queued {
    std::string workspace;
    std::string body;
    timestamp received;
    completion_handler done;
  };

  impl(engine& e, group_commit_options o) : engine_(e), options_(o) {}

  // Queues one submission, or refuses it with errc::unavailable.
  result<void> enqueue(queued q) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_)
        return error(errc::unavailable, "The intake is shutting down; the request was not taken.");
      if (queue_.size() >= options_.max_queued)
        return error(errc::unavailable, "The intake queue is full; retry later.");
      queue_.push_back(std::move(q));
    }
    work_.notify_one();
    return {};
  }

  // The writer thread: commits batches until stopping_ is set and the queue is empty.
  void run() {
    std::vector<queued> batch;
    std::vector<submission> inputs;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and everything queued was committed
        const auto n = static_cast<std::ptrdiff_t>(std::min(queue_.size(), options_.max_batch_size));
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
        queue_.erase(queue_.begin(), queue_.begin() + n);
      }
      // The views point into `batch`, which stays put until the handlers have run.
      inputs.clear();
      for (const queued& q : batch) inputs.push_back({q.workspace, q.body, q.received});
      std::vector<result<receipt>> results = engine_.submit_batch(inputs);
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
      batch.clear();
    }
  }

  engine& engine_;
  const group_commit_options options_;
  std::mutex mutex_;
  std::condition_variable work_;  // signalled when queue_ gains an entry or stopping_ is set
  std::deque<queued> queue_;      // waiting for the writer, in arrival order
  bool stopping_ = false;
  std::thread writer_;
  std::once_flag joined_;
};

result<std::unique_ptr<group_committer>> group_committer::start(engine& e, group_commit_options options) {
  if (options.max_batch_size < 1) return error(errc::invalid_argument, "max_batch_size must be at least 1.");
  if (options.max_queued < 1) return error(errc::invalid_argument, "max_queued must be at least 1.");
  auto p = std::make_unique<impl>(e, options);
  try {
    p->writer_ = std::thread([raw = p.get()] { raw->run(); });
  } catch (const std::system_error& failure) {
    return error(errc::internal, std::string("The group commit writer thread could not start: ") + failure.what());
  }
  return std::unique_ptr<group_committer>(new group_committer(std::move(p)));
}

group_committer::group_committer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

group_committer::~group_committer() { stop(); }

result<receipt> group_committer::submit(std::string_view workspace, std::string_view body, timestamp received) {
  // The handler notifies while it holds the mutex, so this frame (and the waiter in it) cannot
  // end before the writer thread is done with it.
  struct waiter {
    std::mutex mutex;
    std::condition_variable finished;
    std::optional<result<receipt>> outcome;
  } w;
  OPENDSR_TRY(impl_->enqueue({std::string(workspace), std::string(body), received, [&w](result<receipt> r) {
                                std::lock_guard lock(w.mutex);
                                w.outcome.emplace(std::move(r));
                                w.finished.notify_one();
                              }}));
  std::unique_lock lock(w.mutex);
  w.finished.wait(lock, [&] { return w.outcome.has_value(); });
  return std::move(*w.outcome);
}

result<void> group_committer::submit_async(std::string workspace, std::string body, timestamp received,
                                           completion_handler done) {
  return impl_->enqueue({std::move(workspace), std::move(body), received, std::move(done)});
}

void group_committer::stop() {
  {
    std::lock_guard lock(impl_->mutex_);
    impl_->stopping_ = true;
  }
  impl_->work_.notify_one();
  std::call_once(impl_->joined_, [&] { impl_->writer_.join(); });
}

}  // namespace opendsr
