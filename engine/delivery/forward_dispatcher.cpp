// The forward dispatcher: a client of the engine's public distribution methods (claim, record),
// driving partners (pure) over an http_client. See <opendsr/forward_dispatcher.hpp>.
//
// One batch per output at a time: a claim may return a batch of an output whose earlier batch is
// still being sent (the halves of a split, a queue longer than one batch). It is held here,
// taking a slot, and sent once the earlier batch's outcome is recorded, in the order claimed.
// A held batch keeps its lease; stop() sends no held batch (its lease expires, or is released
// when the owner starts again).
#include <opendsr/forward_dispatcher.hpp>

#include "delivery/dispatch_loop.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace opendsr {
namespace {

using output_key = std::pair<std::string, std::string>;  // workspace, output name

output_key key_of(const claimed_forward& c) { return {c.workspace, c.output}; }

// A batch whose send started (or that failed before it could).
struct sending {
  claimed_forward claim;
  std::shared_ptr<const partner> configured;  // null when it could not be configured
  std::optional<forward_verdict> verdict;  // set when nothing was sent
};

// What the client hands the worker.
struct completion {
  std::shared_ptr<sending> batch;
  std::optional<result<http_client_response>> response;  // nullopt when nothing was sent
  std::chrono::microseconds latency{0};
};

// What a transport error means: retried, unless the outbound policy refused the destination,
// which no retry changes.
forward_verdict transport_verdict(const error& e) {
  if (e.code() == errc::destination_refused) return {forward_verdict_kind::failed, std::nullopt, "destination refused: " + e.message(), {}};
  return {forward_verdict_kind::retry, std::nullopt, e.message(), {}};
}

std::size_t items_of(const claimed_forward& c) {
  std::size_t n = 0;
  for (const forward_subject& s : c.subjects) n += s.identities.size();
  return n;
}

class dispatcher final : public forward_dispatcher, detail::dispatch_loop<claimed_forward, completion> {
 public:
  dispatcher(engine& e, http_client& client, const clock& c, forward_dispatcher_options o)
      : dispatch_loop(o.max_in_flight, o.claim_batch), engine_(e), client_(client), clock_(c), options_(std::move(o)) {
    start_worker();
  }

  ~dispatcher() override { stop(); }

  void poll() override { request_poll(); }
  void wait_idle() override { wait_until_idle(); }
  void stop() override { stop_worker(); }
  std::size_t in_flight() const override { return slots_taken() - held_count_.load(); }

 private:
  std::vector<claimed_forward> claim(std::size_t max) override {
    auto claimed = engine_.claim_forwards(clock_.now(), max, options_.owner);
    if (claimed) return std::move(*claimed);
    if (options_.on_claim_error) options_.on_claim_error(claimed.error());
    return {};
  }

  void send(std::vector<claimed_forward> claimed) override {
    for (claimed_forward& c : claimed) {
      const output_key k = key_of(c);
      if (!busy_.contains(k)) {
        busy_.insert(k);
        start(std::move(c));
        continue;
      }
      // Its output is busy. A batch already held under the same key was claimed again after
      // its lease expired: only the new lease counts.
      std::deque<claimed_forward>& queue = held_[k];
      auto same = std::find_if(queue.begin(), queue.end(), [&](const claimed_forward& h) { return h.batch_key == c.batch_key; });
      if (same != queue.end()) {
        *same = std::move(c);
        release(1);
      } else {
        queue.push_back(std::move(c));
        ++held_count_;
      }
    }
  }

  void record(std::vector<completion> group) override {
    std::vector<forward_outcome> outcomes;
    outcomes.reserve(group.size());
    for (completion& done : group) {
      sending& b = *done.batch;
      forward_verdict verdict = b.verdict            ? std::move(*b.verdict)
                                : !*done.response ? transport_verdict(done.response->error())
                                                  : b.configured->classify(**done.response, b.claim.attempt);
      if (options_.on_attempt)
        options_.on_attempt({b.claim.workspace, b.claim.output, b.claim.partner, b.claim.attempt, b.claim.requests,
                             items_of(b.claim), verdict.kind, verdict.message, done.latency});
      outcomes.push_back({b.claim.batch_key, b.claim.lease, std::move(verdict)});
    }
    auto report = engine_.record_forwards(outcomes, clock_.now());
    if (options_.on_recorded) options_.on_recorded(report);
    // Each output whose batch was recorded sends its next held batch, if any; stopping, none.
    const bool ending = stopping();
    for (const completion& done : group) {
      const output_key k = key_of(done.batch->claim);
      auto held = held_.find(k);
      if (held == held_.end()) {
        busy_.erase(k);
        continue;
      }
      if (ending) {
        held_count_ -= held->second.size();
        release(held->second.size());
        held_.erase(held);
        busy_.erase(k);
        continue;
      }
      claimed_forward next = std::move(held->second.front());
      held->second.pop_front();
      --held_count_;
      if (held->second.empty()) held_.erase(held);
      start(std::move(next));
    }
  }

  // Configures the batch's partner, builds its request and sends it; what fails before the send
  // completes at once with its verdict.
  void start(claimed_forward c) {
    auto b = std::make_shared<sending>();
    b->claim = std::move(c);
    auto configured = partner_for(b->claim);
    if (!configured) return not_sent(std::move(b), configured.error().message());
    b->configured = std::move(*configured);
    auto request = b->configured->build(b->claim.subjects);
    if (!request) return not_sent(std::move(b), request.error().message());
    const auto started = std::chrono::steady_clock::now();
    client_.send(std::move(*request), [this, b, started](result<http_client_response> r) {
      complete({b, std::move(r), std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started)});
    });
  }

  void not_sent(std::shared_ptr<sending> b, std::string message) {
    b->verdict = forward_verdict{forward_verdict_kind::failed, std::nullopt, std::move(message), {}};
    complete({std::move(b), std::nullopt, {}});
  }

  // The output's configured partner, cached per output and configuration generation.
  result<std::shared_ptr<const partner>> partner_for(const claimed_forward& c) {
    cached& entry = partners_[key_of(c)];
    if (entry.configured && entry.generation == c.generation) return entry.configured;
    const partner_kind* kind = nullptr;
    for (const auto& k : engine_.options().distribution.partners)
      if (k && k->name() == c.partner) kind = k.get();
    if (!kind) return error(errc::invalid_argument, "the partner kind \"" + c.partner + "\" is not available in this build");
    auto configured = kind->configure(c.config);
    if (!configured) return std::move(configured).error();
    entry = {c.generation, std::shared_ptr<const partner>(std::move(*configured))};
    return entry.configured;
  }

  struct cached {
    std::uint64_t generation = 0;
    std::shared_ptr<const partner> configured;
  };

  engine& engine_;
  http_client& client_;
  const clock& clock_;
  const forward_dispatcher_options options_;

  // The worker's alone.
  std::set<output_key> busy_;                                 // outputs with a batch being sent
  std::map<output_key, std::deque<claimed_forward>> held_;    // claimed, waiting for their output
  std::map<output_key, cached> partners_;
  std::atomic<std::size_t> held_count_{0};                    // for in_flight()
};

}  // namespace

result<std::unique_ptr<forward_dispatcher>> forward_dispatcher::start(engine& e, http_client& client, const clock& c,
                                                                      forward_dispatcher_options options) {
  if (options.max_in_flight < 1) return error(errc::invalid_argument, "max_in_flight must be at least 1.");
  if (options.claim_batch < 1) return error(errc::invalid_argument, "claim_batch must be at least 1.");
  auto released = e.release_forward_leases(options.owner, c.now());
  if (!released) return std::move(released).error();
  return std::unique_ptr<forward_dispatcher>(new dispatcher(e, client, c, std::move(options)));
}

}  // namespace opendsr
