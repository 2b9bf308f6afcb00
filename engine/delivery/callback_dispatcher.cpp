// The callback dispatcher: a client of the engine's public delivery methods (claim, record),
// driving an http_client. See <opendsr/callback_dispatcher.hpp>.
#include <opendsr/callback_dispatcher.hpp>

#include <condition_variable>
#include <mutex>
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
      : engine_(e), client_(client), signer_(s), clock_(c), options_(std::move(o)) {}

  ~dispatcher() override { stop(); }

  void poll() override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (pumping_) {
        poll_again_ = true;  // the pumping thread runs another round
        return;
      }
      pumping_ = true;
    }
    for (;;) {
      pump();
      std::lock_guard lock(mutex_);
      if (!poll_again_ || stopping_) {
        pumping_ = false;
        idle_.notify_all();
        return;
      }
      poll_again_ = false;
    }
  }

  void stop() override {
    std::unique_lock lock(mutex_);
    stopping_ = true;
    idle_.wait(lock, [this] { return !pumping_ && in_flight_ == 0 && !recording_; });
  }

  std::size_t in_flight() const override {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }

 private:
  // Claims and sends batches until nothing is due or every slot is taken.
  void pump() {
    for (;;) {
      std::size_t room;
      {
        std::lock_guard lock(mutex_);
        if (stopping_ || in_flight_ >= options_.max_in_flight) return;
        room = std::min(options_.max_in_flight - in_flight_, options_.claim_batch);
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

  void complete(const claimed_callback& c, std::string signature, std::chrono::steady_clock::time_point started,
                result<http_client_response> r) {
    const bool delivered = r && r->status >= 200 && r->status < 300;
    callback_outcome outcome{c.entry_key, c.lease, delivered, std::move(signature), delivered ? std::string() : describe(r)};
    if (options_.on_attempt)
      options_.on_attempt({c.workspace, c.url, c.attempt, delivered, outcome.error,
                           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started)});
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(std::move(outcome));
      if (recording_) return;  // the recording thread takes it with its next group
      recording_ = true;
    }
    record_pending();
  }

  // Records every pending outcome, in groups, until none is left; then fills the freed slots.
  void record_pending() {
    for (;;) {
      std::vector<callback_outcome> group;
      {
        std::lock_guard lock(mutex_);
        if (pending_.empty()) {
          recording_ = false;
          break;
        }
        group.swap(pending_);
      }
      auto report = engine_.record_callbacks(group, clock_.now());
      {
        std::lock_guard lock(mutex_);
        in_flight_ -= group.size();
      }
      if (options_.on_recorded) options_.on_recorded(report);
    }
    bool stopping;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
      idle_.notify_all();
    }
    if (!stopping) poll();  // slots are free, and the next callbacks of delivered chains may be due
  }

  engine& engine_;
  http_client& client_;
  const signer& signer_;
  const clock& clock_;
  const callback_dispatcher_options options_;

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  bool stopping_ = false;
  bool pumping_ = false;
  bool poll_again_ = false;
  bool recording_ = false;
  std::size_t in_flight_ = 0;
  std::vector<callback_outcome> pending_;
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
