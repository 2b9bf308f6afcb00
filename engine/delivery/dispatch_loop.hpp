// The worker both dispatchers run (callback_dispatcher.cpp, forward_dispatcher.cpp): one thread
// does every claim and every record; the client's threads only hand it what completed.
//
// The worker waits for a poll, completions or stop. It records every completion that arrived
// meanwhile in one call (group commit: one write transaction, which a durable store needs), then
// claims and starts sends until nothing is due or the slots are taken. Unless a poll asked, it
// waits for enough free slots to fill a claim batch, so that claims are batched too rather than
// one transaction per answer.
//
// A slot is taken by each claimed item from its claim until its completion is recorded (or the
// derived class gives it back with release()). stop() stops claiming and returns once every
// slot is free.
//
// The derived class implements three hooks, all called on the worker thread, and calls
// start_worker() last in its constructor and stop() in its destructor (the worker calls the
// hooks, so it must end before the derived part is destroyed).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace opendsr::detail {

template <class Claimed, class Completion>
class dispatch_loop {
 public:
  dispatch_loop(const dispatch_loop&) = delete;
  dispatch_loop& operator=(const dispatch_loop&) = delete;

 protected:
  dispatch_loop(std::size_t max_in_flight, std::size_t claim_batch)
      : max_in_flight_(max_in_flight), claim_batch_(claim_batch) {}

  // REQUIRES: stop() was called, or the worker never started.
  virtual ~dispatch_loop() = default;

  // Claims up to `max` items (on a storage error: reports it and returns none).
  virtual std::vector<Claimed> claim(std::size_t max) = 0;
  // Starts the sends of what claim() returned (each ends in one complete(), or a release()).
  virtual void send(std::vector<Claimed> claimed) = 0;
  // Records a group of completions. Their slots are freed when it returns.
  virtual void record(std::vector<Completion> group) = 0;

  void start_worker() { worker_ = std::thread([this] { run(); }); }

  // Any thread: asks the worker to claim what is due now.
  void request_poll() {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    ++polls_requested_;
    wake_.notify_one();
  }

  // Any thread: returns once every completion that has arrived is recorded and every poll made
  // before the call was served.
  void wait_until_idle() {
    std::unique_lock lock(mutex_);
    const std::uint64_t polls = polls_requested_;
    idle_.wait(lock, [&] { return exited_ || (!busy_ && pending_.empty() && polls_served_ >= polls); });
  }

  // Any thread: stops claiming, then waits until every slot is free and the worker has ended.
  void stop_worker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    std::call_once(joined_, [this] {
      if (worker_.joinable()) worker_.join();
    });
  }

  // Any thread (the client's, or the worker's for an item it never sent): hands a completion to
  // the worker.
  void complete(Completion c) {
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(c));
    wake_.notify_one();
  }

  // The worker: gives back the slots of `n` claimed items that will never complete.
  void release(std::size_t n) {
    std::lock_guard lock(mutex_);
    in_flight_ -= n;
  }

  bool stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  // Items claimed and not yet recorded (or released).
  std::size_t slots_taken() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !pending_.empty() || polls_served_ < polls_requested_ || (stopping_ && in_flight_ == 0); });
      if (pending_.empty() && polls_served_ >= polls_requested_ && stopping_ && in_flight_ == 0) break;
      busy_ = true;
      std::vector<Completion> group;
      group.swap(pending_);
      const std::uint64_t polls = polls_requested_;
      const bool asked = polls_served_ < polls;
      lock.unlock();
      if (!group.empty()) {
        const std::size_t n = group.size();
        record(std::move(group));
        release(n);
      }
      pump(asked);
      lock.lock();
      polls_served_ = polls;
      busy_ = false;
      idle_.notify_all();
    }
    exited_ = true;
    idle_.notify_all();
  }

  // Claims and sends until nothing is due or the slots are taken.
  void pump(bool asked) {
    const std::size_t batch_room = std::min(claim_batch_, std::max<std::size_t>(1, max_in_flight_ / 2));
    for (;;) {
      std::size_t room;
      {
        std::lock_guard lock(mutex_);
        if (stopping_ || in_flight_ >= max_in_flight_) return;
        room = std::min(max_in_flight_ - in_flight_, claim_batch_);
        if (!asked && in_flight_ > 0 && room < batch_room) return;
      }
      std::vector<Claimed> claimed = claim(room);
      if (claimed.empty()) return;
      const std::size_t n = claimed.size();
      {
        std::lock_guard lock(mutex_);
        in_flight_ += n;
      }
      send(std::move(claimed));
      if (n < room) return;
    }
  }

  const std::size_t max_in_flight_;
  const std::size_t claim_batch_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // the worker: completions, polls, stop
  std::condition_variable idle_;  // wait_until_idle()
  bool stopping_ = false;
  bool busy_ = false;
  bool exited_ = false;
  std::uint64_t polls_requested_ = 0;
  std::uint64_t polls_served_ = 0;
  std::size_t in_flight_ = 0;
  std::vector<Completion> pending_;
  std::once_flag joined_;
  std::thread worker_;
};

}  // namespace opendsr::detail
