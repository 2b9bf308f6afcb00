// The callback dispatcher: a client of the engine's public delivery methods (claim, record),
// driving an http_client. See <opendsr/callback_dispatcher.hpp>.
#include <opendsr/callback_dispatcher.hpp>

#include "delivery/dispatch_loop.hpp"

#include <chrono>
#include <memory>
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

class dispatcher final : public callback_dispatcher, detail::dispatch_loop<claimed_callback, callback_outcome> {
 public:
  dispatcher(engine& e, http_client& client, const signer& s, const clock& c, callback_dispatcher_options o)
      : dispatch_loop(o.max_in_flight, o.claim_batch), engine_(e), client_(client), signer_(s), clock_(c), options_(std::move(o)) {
    start_worker();
  }

  ~dispatcher() override { stop(); }

  void poll() override { request_poll(); }
  void wait_idle() override { wait_until_idle(); }
  void stop() override { stop_worker(); }
  std::size_t in_flight() const override { return slots_taken(); }

 private:
  std::vector<claimed_callback> claim(std::size_t max) override {
    auto claimed = engine_.claim_callbacks(clock_.now(), max, options_.owner);
    if (claimed) return std::move(*claimed);
    if (options_.on_claim_error) options_.on_claim_error(claimed.error());
    return {};
  }

  void record(std::vector<callback_outcome> group) override {
    auto report = engine_.record_callbacks(group, clock_.now());
    if (options_.on_recorded) options_.on_recorded(report);
  }

  void send(std::vector<claimed_callback> claimed) override {
    for (claimed_callback& c : claimed) send_one(std::move(c));
  }

  void send_one(claimed_callback c) {
    if (c.signature.empty()) {
      auto signature = signer_.sign(c.body);
      if (!signature) {
        // Nothing was sent: a failed attempt, retried with backoff like any other.
        completed(c, {}, std::chrono::steady_clock::now(), error(errc::internal, "signing failed: " + signature.error().message()));
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
      completed(*shared, shared->signature, started, std::move(r));
    });
  }

  // On the client's thread: hands the outcome to the worker.
  void completed(const claimed_callback& c, std::string signature, std::chrono::steady_clock::time_point started,
                 result<http_client_response> r) {
    const bool delivered = r && r->status >= 200 && r->status < 300;
    callback_outcome outcome{c.entry_key, c.lease, delivered, std::move(signature), delivered ? std::string() : describe(r)};
    if (options_.on_attempt)
      options_.on_attempt({c.workspace, c.url, c.attempt, delivered, outcome.error,
                           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started)});
    complete(std::move(outcome));
  }

  engine& engine_;
  http_client& client_;
  const signer& signer_;
  const clock& clock_;
  const callback_dispatcher_options options_;
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
