#include <opendsr/fulfilment_runner.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

// How many expired packages one coordinator pass deletes before it looks at new tasks again.
constexpr std::size_t expiry_batch = 256;

class runner final : public fulfilment_runner {
 public:
  runner(engine& e, fulfilment& f, const clock& c, fulfilment_runner_options o)
      : engine_(e), fulfil_(f), clock_(c), options_(std::move(o)) {
    coordinator_ = std::thread([this] { coordinate(); });
    for (std::size_t i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { work(); });
  }

  ~runner() override { stop(); }

  void poll() override {
    std::lock_guard lock(mutex_);
    wanted_ = true;
    changed_.notify_all();
  }

  void wait_idle() override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return stopping_ || (!wanted_ && !claiming_ && queue_.empty() && running_ == 0); });
  }

  void stop() override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      queue_.clear();  // claimed but not started: their leases expire, or the next start releases them
      changed_.notify_all();
    }
    coordinator_.join();
    for (std::thread& t : workers_) t.join();
  }

  std::size_t running() const override {
    std::lock_guard lock(mutex_);
    return running_;
  }

 private:
  void report_error(const error& e) {
    if (options_.on_error) options_.on_error(e);
  }

  void coordinate() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return stopping_ || (wanted_ && queue_.size() + running_ < options_.workers); });
      if (stopping_) return;
      wanted_ = false;
      claiming_ = true;
      const std::size_t room = options_.workers - queue_.size() - running_;
      lock.unlock();
      const timestamp now = clock_.now();
      auto claimed = engine_.claim_fulfilments(now, room, options_.owner);
      if (!claimed) report_error(claimed.error());
      if (options_.results) delete_expired(now);
      lock.lock();
      claiming_ = false;
      if (claimed) {
        for (claimed_fulfilment& c : *claimed) queue_.push_back(std::move(c));
        if (claimed->size() == room) wanted_ = true;  // more may be due: claim again when a worker frees
      }
      changed_.notify_all();
    }
  }

  void delete_expired(timestamp now) {
    auto tokens = engine_.expired_results(now, expiry_batch);
    if (!tokens) return report_error(tokens.error());
    std::vector<std::string> deleted;
    for (const std::string& token : *tokens) {
      auto removed = options_.results->remove(token);
      if (!removed) report_error(removed.error());
      else deleted.push_back(token);
    }
    if (deleted.empty()) return;
    if (auto forgotten = engine_.forget_expired_results(deleted); !forgotten) report_error(forgotten.error());
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      claimed_fulfilment job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      lock.unlock();
      run(job);
      lock.lock();
      --running_;
      wanted_ = true;  // a worker is free: whatever else is due can be claimed
      changed_.notify_all();
    }
  }

  void run(const claimed_fulfilment& c) {
    const auto start = std::chrono::steady_clock::now();
    result<fulfilment_done> done = fulfil_.fulfil(c.job);
    fulfilment_run report{c.job.controller_id, c.job.subject_request_id, c.job.type, c.job.attempt,
                          done ? std::string() : done.error().message(), fulfilment_recorded::stale,
                          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)};
    report.recorded = engine_.record_fulfilment({c.job.controller_id, c.job.subject_request_id, c.lease, std::move(done)},
                                                clock_.now());
    if (options_.on_run) options_.on_run(report);
  }

  engine& engine_;
  fulfilment& fulfil_;
  const clock& clock_;
  const fulfilment_runner_options options_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<claimed_fulfilment> queue_;  // claimed, waiting for a worker
  std::size_t running_ = 0;
  bool wanted_ = false;    // a claim pass is asked for
  bool claiming_ = false;  // the coordinator is claiming
  bool stopping_ = false;
  std::thread coordinator_;
  std::vector<std::thread> workers_;
};

}  // namespace

result<std::unique_ptr<fulfilment_runner>> fulfilment_runner::start(engine& e, fulfilment& f, const clock& c,
                                                                    fulfilment_runner_options options) {
  if (options.workers < 1 || options.workers > 256) return error(errc::invalid_argument, "workers must be between 1 and 256.");
  auto released = e.release_fulfilment_leases(options.owner, c.now());  // also checks the owner
  if (!released) return std::move(released).error();
  return std::unique_ptr<fulfilment_runner>(std::make_unique<runner>(e, f, c, std::move(options)));
}

}  // namespace opendsr
