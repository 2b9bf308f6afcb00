// An http_client for dispatcher tests (callbacks, forwards): it holds every exchange until the
// test answers it, so a test decides each response and when it arrives.
//
// Answers run the completion on the test's thread, never inside send(), then call after_answer
// (a test sets it to the dispatcher's wait_idle(), so that an answer returns once the dispatcher
// has recorded it). Nothing sleeps.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/http_client.hpp>
#include <opendsr/result.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace opendsr::testing {

// The value of the header field `name` of `r`, or "<none>".
inline std::string header(const http_client_request& r, std::string_view name) {
  return std::string(r.headers.get(name).value_or("<none>"));
}

class scripted_client final : public http_client {
 public:
  struct exchange {
    http_client_request request;
    http_client_completion done;
  };

  void send(http_client_request request, http_client_completion done) override {
    std::lock_guard lock(mutex_);
    waiting_.push_back({std::move(request), std::move(done)});
    sent_.push_back(waiting_.back().request);
  }

  std::size_t waiting() {
    std::lock_guard lock(mutex_);
    return waiting_.size();
  }

  // The oldest waiting exchange's request, if any.
  std::optional<http_client_request> oldest() {
    std::lock_guard lock(mutex_);
    if (waiting_.empty()) return std::nullopt;
    return waiting_.front().request;
  }

  // Answers the oldest waiting exchange; returns its request.
  http_client_request answer(result<http_client_response> r) {
    exchange x;
    {
      std::lock_guard lock(mutex_);
      EXPECT_FALSE(waiting_.empty());
      if (waiting_.empty()) return {};
      x = std::move(waiting_.front());
      waiting_.pop_front();
    }
    x.done(std::move(r));
    if (after_answer) after_answer();
    return x.request;
  }

  std::function<void()> after_answer;
  http_client_request answer(int status) { return answer(http_client_response{status, {}, {}}); }

  // Answers every waiting exchange with `status`; returns their requests in order.
  std::vector<http_client_request> answer_all(int status) {
    std::vector<http_client_request> out;
    while (waiting() > 0) out.push_back(answer(status));
    return out;
  }

  std::vector<http_client_request> sent() {
    std::lock_guard lock(mutex_);
    return sent_;
  }

 private:
  std::mutex mutex_;
  std::deque<exchange> waiting_;
  std::vector<http_client_request> sent_;
};

// A started dispatcher (callback_dispatcher, forward_dispatcher) answered by a scripted_client.
// Each answer waits until the dispatcher has recorded it. When the test ends (passed or not), it
// fails whatever is still open, so that stopping the dispatcher does not wait for answers that
// will never come.
template <class Dispatcher>
class running_dispatcher {
 public:
  running_dispatcher(scripted_client& client, std::unique_ptr<Dispatcher> started) : client_(&client), d_(std::move(started)) {
    client_->after_answer = [d = d_.get()] { d->wait_idle(); };
  }
  running_dispatcher(running_dispatcher&&) = default;
  ~running_dispatcher() { reset(); }

  void reset() {
    while (d_ && client_->waiting() > 0) client_->answer(error(errc::network_error, "test over"));
    if (d_) client_->after_answer = nullptr;
    d_.reset();
  }
  Dispatcher* operator->() const { return d_.get(); }
  // Polls and waits until the dispatcher has claimed and sent what was due.
  void poll() const {
    d_->poll();
    d_->wait_idle();
  }

  // Moves `clock` to the engine's next due time (if it is later) and polls.
  void poll_when_due(const engine& e, manual_clock& clock) const {
    const auto due = e.next_due().value();
    ASSERT_TRUE(due);
    clock.set(std::max(clock.now(), *due));
    poll();
  }

  // Stops the dispatcher on another thread, checks that stop() is still waiting while the oldest
  // exchange is open, answers it (and any the dispatcher started before it saw the stop) with
  // `status`, and waits for stop() to return.
  void stop_while_answering(int status) {
    std::atomic<bool> stopped{false};
    std::thread stopper([&] {
      d_->stop();
      stopped = true;
    });
    // Bounded readiness poll: stop() must still be waiting while the exchange is open.
    for (int i = 0; i < 100 && !stopped; ++i) std::this_thread::yield();
    EXPECT_FALSE(stopped) << "stop() returned while an exchange was open";
    // Each answer returns once it is recorded, and with it anything that recording started.
    while (client_->waiting() > 0) client_->answer(status);
    stopper.join();
    EXPECT_TRUE(stopped);
  }

 private:
  scripted_client* client_;
  std::unique_ptr<Dispatcher> d_;
};

// The restart of an owner: "node-1" has claimed work and crashed. A dispatcher of "node-2" sends
// none of it (node-1's lease holds until it expires); then node-1 restarts, which releases its
// leases, and its first poll sends the work at once. `start(owner)` starts a dispatcher of
// `owner`, a running_dispatcher; returns node-1's, polled once (the test checks what it sent).
template <class Start>
auto restart_owner(scripted_client& client, Start start) {
  auto d = start("node-2");
  d.poll();
  EXPECT_EQ(client.waiting(), 0u);  // another owner's lease holds until it expires
  d.reset();
  auto again = start("node-1");  // node-1 restarts: its leases are released
  again.poll();
  return again;
}

}  // namespace opendsr::testing
