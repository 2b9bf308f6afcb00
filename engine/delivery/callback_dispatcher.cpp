// The callback dispatcher: a client of the engine's public delivery methods (claim, record),
// driving an http_client. See <opendsr/callback_dispatcher.hpp>.
#include <opendsr/callback_dispatcher.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

// Why an attempt failed, as recorded and listed (never the body).
std::string describe(const result<http_client_response>& r) {
  if (!r) return r.error().message();
  std::string e = "HTTP " + std::to_string(r->status);
  if (r->status >= 300 && r->status < 400) e += " (redirects are not followed)";
  return e;
}

class dispatcher final : public callback_dispatcher {
 public:
  dispatcher(engine& e, http_client& client, const signer& s, const clock& c, callback_dispatcher_options o)
      : engine_(e), client_(client), signer_(s), clock_(c), options_(std::move(o)), worker_([this] { run(); }) {}

  ~dispatcher() override { stop(); }

  void poll() override {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    ++polls_requested_;
    wake_.notify_one();
  }

  void wait_idle() override {
    std::unique_lock lock(mutex_);
    const std::uint64_t polls = polls_requested_;
    idle_.wait(lock, [&] { return exited_ || (!busy_ && pending_.empty() && polls_served_ >= polls); });
  }

  void stop() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    std::call_once(joined_, [this] { worker_.join(); });
  }

  std::size_t in_flight() const override {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }

 private:
  // The worker: records what arrived, in one transaction, then claims and sends, until stopped
  // with nothing in flight.
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !pending_.empty() || polls_served_ < polls_requested_ || (stopping_ && in_flight_ == 0); });
      if (pending_.empty() && polls_served_ >= polls_requested_ && stopping_ && in_flight_ == 0) break;
      busy_ = true;
      std::vector<callback_outcome> group;
      group.swap(pending_);
      const std::uint64_t polls = polls_requested_;
      const bool asked = polls_served_ < polls;
      lock.unlock();
      if (!group.empty()) record(group);
      pump(asked);
      lock.lock();
      polls_served_ = polls;
      busy_ = false;
      idle_.notify_all();
    }
    exited_ = true;
    idle_.notify_all();
  }

  void record(const std::vector<callback_outcome>& group) {
    auto report = engine_.record_callbacks(group, clock_.now());
    {
      std::lock_guard lock(mutex_);
      in_flight_ -= group.size();
    }
    if (options_.on_recorded) options_.on_recorded(report);
  }

  // Claims and sends batches until nothing is due or the slots are taken. Unless asked (a poll),
  // it waits for enough free slots to fill a batch, so that a durable store commits claims in
  // batches too rather than one per answer.
  void pump(bool asked) {
    const std::size_t batch_room = std::min(options_.claim_batch, std::max<std::size_t>(1, options_.max_in_flight / 2));
    for (;;) {
      std::size_t room;
      {
        std::lock_guard lock(mutex_);
        if (stopping_ || in_flight_ >= options_.max_in_flight) return;
        room = std::min(options_.max_in_flight - in_flight_, options_.claim_batch);
        if (!asked && in_flight_ > 0 && room < batch_room) return;
      }
      auto claimed = engine_.claim_callbacks(clock_.now(), room, options_.owner);
      if (!claimed) {
        if (options_.on_claim_error) options_.on_claim_error(claimed.error());
        return;
      }
      if (claimed->empty()) return;
      {
        std::lock_guard lock(mutex_);
        in_flight_ += claimed->size();
      }
      for (claimed_callback& c : *claimed) send(std::move(c));
      if (claimed->size() < room) return;
    }
  }

  void send(claimed_callback c) {
    if (c.signature.empty()) {
      auto signature = signer_.sign(c.body);
      if (!signature) {
        // Nothing was sent: a failed attempt, retried with backoff like any other.
        complete(c, {}, std::chrono::steady_clock::now(), error(errc::internal, "signing failed: " + signature.error().message()));
        return;
      }
      c.signature = std::move(*signature);
    }
    http_client_request request;
    request.url = c.url;
    request.headers.add("Content-Type", "application/json");
    request.headers.add("X-OpenDSR-Processor-Domain", std::string(signer_.processor_domain()));
    request.headers.add("X-OpenDSR-Signature", c.signature);
    request.body = c.body;
    const auto started = std::chrono::steady_clock::now();
    auto shared = std::make_shared<claimed_callback>(std::move(c));
    client_.send(std::move(request), [this, shared, started](result<http_client_response> r) {
      complete(*shared, shared->signature, started, std::move(r));
    });
  }

  // On the client's thread: hands the outcome to the worker.
  void complete(const claimed_callback& c, std::string signature, std::chrono::steady_clock::time_point started,
                result<http_client_response> r) {
    const bool delivered = r && r->status >= 200 && r->status < 300;
    callback_outcome outcome{c.entry_key, c.lease, delivered, std::move(signature), delivered ? std::string() : describe(r)};
    if (options_.on_attempt)
      options_.on_attempt({c.workspace, c.url, c.attempt, delivered, outcome.error,
                           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started)});
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(outcome));
    wake_.notify_one();
  }

  engine& engine_;
  http_client& client_;
  const signer& signer_;
  const clock& clock_;
  const callback_dispatcher_options options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // the worker: outcomes, polls, stop
  std::condition_variable idle_;  // wait_idle()
  bool stopping_ = false;
  bool busy_ = false;
  bool exited_ = false;
  std::uint64_t polls_requested_ = 0;
  std::uint64_t polls_served_ = 0;
  std::size_t in_flight_ = 0;
  std::vector<callback_outcome> pending_;
  std::once_flag joined_;
  std::thread worker_;  // last: it starts once everything above is built
};

}  // namespace

result<std::unique_ptr<callback_dispatcher>> callback_dispatcher::start(engine& e, http_client& client, const signer& s,
                                                                        const clock& c, callback_dispatcher_options options) {
  if (options.max_in_flight < 1) return error(errc::invalid_argument, "max_in_flight must be at least 1.");
  if (options.claim_batch < 1) return error(errc::invalid_argument, "claim_batch must be at least 1.");
  auto released = e.release_callback_leases(options.owner, c.now());
  if (!released) return std::move(released).error();
  return std::unique_ptr<callback_dispatcher>(new dispatcher(e, client, s, c, std::move(options)));
}

}  // namespace opendsr
