#include <opendsr/group_commit.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
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
  // Where a blocking submit() finds its result. It lives in submit()'s frame: the writer stores
  // the outcome, then sets `ready`, and touches it no more, so the frame may end as soon as
  // submit() sees `ready`.
  struct waiter {
    std::optional<result<receipt>> outcome;
    std::atomic<bool> ready{false};
    std::size_t wake_word = 0;  // the index into wake_words_ it sleeps on; set by enqueue()
  };

  struct queued {
    prepared_submission prepared;
    completion_handler done;     // submit_async()
    waiter* blocked = nullptr;   // submit(), instead of done
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
      // Usually taken by the next batch: it sleeps on that batch's word.
      if (q.blocked) q.blocked->wake_word = (batches_taken_ + 1) % 2;
      queue_.push_back(std::move(q));
    }
    work_.notify_one();
    return {};
  }

  // The writer thread: commits batches until stopping_ is set and the queue is empty.
  void run() {
    std::vector<queued> batch;
    std::vector<prepared_submission> inputs;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and everything queued was committed
        const auto n = static_cast<std::ptrdiff_t>(std::min(queue_.size(), options_.max_batch_size));
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
        queue_.erase(queue_.begin(), queue_.begin() + n);
        ++batches_taken_;
      }
      inputs.clear();
      for (queued& q : batch) inputs.push_back(std::move(q.prepared));
      std::vector<result<receipt>> results = engine_.submit_prepared(inputs);
      bool released[2] = {false, false};
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (waiter* w = batch[i].blocked) {
          released[w->wake_word] = true;
          w->outcome.emplace(std::move(results[i]));
          w->ready.store(true, std::memory_order_release);
        } else {
          batch[i].done(std::move(results[i]));
        }
      }
      // One wake for all the blocked submitters of the batch, instead of one each.
      for (std::size_t word = 0; word < 2; ++word)
        if (released[word]) {
          wake_words_[word].fetch_add(1);  // seq_cst: ordered before notify's look for sleepers
          wake_words_[word].notify_all();
        }
      // The submitters just released are the ones the next batch is for: a yield lets those on
      // this CPU queue again before the queue is taken. Not a timer: a writer with nothing
      // queued still starts the moment a submission arrives.
      if (released[0] || released[1]) std::this_thread::yield();
      batch.clear();
    }
  }

  engine& engine_;
  const group_commit_options options_;
  std::mutex mutex_;
  std::condition_variable work_;  // signalled when queue_ gains an entry or stopping_ is set
  std::deque<queued> queue_;      // waiting for the writer, in arrival order
  bool stopping_ = false;
  std::uint64_t batches_taken_ = 0;  // guarded by mutex_
  // Blocked submitters sleep (a futex) until their word changes, then check their own waiter.
  // A batch bumps the word of each of its waiters once it has released them. Waiters sleep on
  // the word of the batch after the one in progress when they queued (by its parity), so a
  // batch does not wake those queued behind it; one queued further back (the queue was longer
  // than a batch) is woken early once and sleeps again.
  std::atomic<std::uint32_t> wake_words_[2] = {0, 0};
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
  auto prepared = impl_->engine_.prepare(workspace, body, received);
  if (!prepared) return std::move(prepared).error();
  impl::waiter w;
  OPENDSR_TRY(impl_->enqueue({std::move(*prepared), nullptr, &w}));
  std::atomic<std::uint32_t>& word = impl_->wake_words_[w.wake_word];
  for (auto seen = word.load(std::memory_order_acquire); !w.ready.load(std::memory_order_acquire);
       seen = word.load(std::memory_order_acquire))
    word.wait(seen, std::memory_order_acquire);
  return std::move(*w.outcome);
}

result<void> group_committer::submit_async(std::string_view workspace, std::string_view body, timestamp received,
                                           completion_handler done) {
  auto prepared = impl_->engine_.prepare(workspace, body, received);
  if (!prepared) return std::move(prepared).error();
  return impl_->enqueue({std::move(*prepared), std::move(done)});
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
