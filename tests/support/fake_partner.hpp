// A fake downstream partner (Kochava, Blueshift) for the distribution tests: a real HTTP server on
// 127.0.0.1 that records what opendsrd forwards and answers from a script.
//
// It shares its vocabulary with tests/support/loopback_receiver.hpp (received_request,
// scripted_response) and differs where a partner's far end differs from a callback receiver's:
// - one script for every path (a partner's URL carries account and app ids), consumed in FIFO
//   order, and a standing answer when the script is empty (a partner's 200 with its JSON body,
//   where the receiver answers an empty 202), which a test may change (every batch fails, every
//   batch hangs);
// - bodies up to max_body_bytes (default 16 MiB: a Kochava batch of 10,000 device ids is about
//   600 KB, over the server's 1 MiB default);
// - held() counts the exchanges it holds unanswered, so a test can wait until a batch hangs.
//
// Contract
// - start() listens on 127.0.0.1, port 0 (a free port), plain HTTP.
// - Every request that arrives whole is recorded, in arrival order, with a sequence number from
//   1: method, target, header fields, the exact body bytes.
// - The answer to a request is the front of the script, else the standing answer. An answer with
//   never_answer set holds the exchange open until the partner stops.
// - stop() (and the destructor) drops the held exchanges and stops the server; idempotent.
//
// Thread safety: every member may be called from any thread, except stop() and the destructor,
// which must not run on the server's threads.
// Waiting: wait_for() and wait_held() are bounded waits on a condition variable; nothing sleeps.
#pragma once

#include "loopback_receiver.hpp"

#include <opendsr/http.hpp>
#include <opendsr/http_server.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace opendsr::testing {

// An answer with `status`, optional extra header fields and a body (JSON when not empty).
inline scripted_response partner_answer(int status, std::string body = {}, http_headers headers = {}) {
  scripted_response r;
  r.status = status;
  r.headers = std::move(headers);
  if (!body.empty() && !r.headers.get("Content-Type")) r.headers.add("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

// 429 (or `status`) with Retry-After: seconds.
inline scripted_response retry_after_answer(unsigned seconds, int status = 429) {
  http_headers h;
  h.add("Retry-After", std::to_string(seconds));
  return partner_answer(status, R"({"error":"slow down"})", std::move(h));
}

// Kochava's documented success (partners.md §3.1).
inline scripted_response kochava_ok(std::string_view job_id = "job-fake-1") {
  return partner_answer(200, R"({"status":"OK","response":"200","job_status":"queued","job_id":")" + std::string(job_id) + "\"}");
}

// Blueshift's delete: a 200 (its body is not documented).
inline scripted_response blueshift_ok() { return partner_answer(200, R"({"status":"ok"})"); }

struct fake_partner_options {
  // The answer when the script is empty. Default: Kochava's success, which any 2xx-reading
  // partner also takes as sent.
  scripted_response standing = kochava_ok();
  // Largest request body accepted. Default: 16 MiB.
  std::size_t max_body_bytes = 16 * 1024 * 1024;
  // Server threads. Default: 4 (a held exchange must not stop the next one being served).
  std::size_t threads = 4;
};

class fake_partner {
 public:
  // Errors: whatever http_server::start() returns (no free port).
  static result<std::unique_ptr<fake_partner>> start(fake_partner_options options = {}) {
    std::unique_ptr<fake_partner> p(new fake_partner(std::move(options.standing)));
    http_server_options server;
    server.address = "127.0.0.1";
    server.port = 0;
    server.threads = options.threads;
    server.max_body_bytes = options.max_body_bytes;
    server.read_timeout = std::chrono::milliseconds(30'000);
    server.drain_timeout = std::chrono::milliseconds(2'000);
    auto s = http_server::start(p->handler_, server);
    if (!s) return std::move(s).error();
    p->server_ = std::move(*s);
    return p;
  }

  ~fake_partner() { stop(); }
  fake_partner(const fake_partner&) = delete;
  fake_partner& operator=(const fake_partner&) = delete;

  // Queues the answer to the next request (any path), after those already queued.
  void then(scripted_response response) {
    std::lock_guard lock(state_->mutex);
    state_->script.push_back(std::move(response));
  }

  // Replaces the answer given when the script is empty.
  void set_standing(scripted_response response) {
    std::lock_guard lock(state_->mutex);
    state_->standing = std::move(response);
  }

  // Every request received so far, in arrival order.
  std::vector<received_request> requests() const {
    std::lock_guard lock(state_->mutex);
    return state_->received;
  }
  std::size_t count() const {
    std::lock_guard lock(state_->mutex);
    return state_->received.size();
  }

  // Waits until at least `count` requests have been received or `timeout` passed; returns whether
  // they were.
  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(15)) const {
    std::unique_lock lock(state_->mutex);
    return state_->arrived.wait_for(lock, timeout, [&] { return state_->received.size() >= count; });
  }

  // Exchanges held unanswered now (never_answer).
  std::size_t held() const {
    std::lock_guard lock(state_->mutex);
    return state_->held.size();
  }
  bool wait_held(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(15)) const {
    std::unique_lock lock(state_->mutex);
    return state_->arrived.wait_for(lock, timeout, [&] { return state_->held.size() >= count; });
  }

  // "http://127.0.0.1:PORT": the base URL an output's endpoint override names.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  std::uint16_t port() const { return server_->port(); }

  // Drops the held exchanges and stops the server. Idempotent.
  // REQUIRES: not called from one of the server's threads.
  void stop() {
    std::vector<http_responder> held;
    {
      std::lock_guard lock(state_->mutex);
      state_->stopping = true;
      held.swap(state_->held);
    }
    held.clear();  // the server answers a dropped responder with its own error
    if (server_) server_->stop();
  }

 private:
  struct state {
    mutable std::mutex mutex;
    mutable std::condition_variable arrived;
    std::vector<received_request> received;
    std::deque<scripted_response> script;
    scripted_response standing;
    std::vector<http_responder> held;
    bool stopping = false;
  };

  class handler final : public http_handler {
   public:
    explicit handler(std::shared_ptr<state> s) : state_(std::move(s)) {}

    http_head_decision on_head(const http_request&) override {
      return http_body_handler([s = state_](http_request request, http_responder respond) {
        scripted_response answer;
        {
          std::lock_guard lock(s->mutex);
          received_request r;
          r.sequence = s->received.size() + 1;
          r.method = request.method;
          r.target = request.target;
          r.headers = request.headers;
          r.body = std::move(request.body);
          if (!s->script.empty()) {
            answer = std::move(s->script.front());
            s->script.pop_front();
          } else {
            answer = s->standing;
          }
          s->received.push_back(std::move(r));
          if (answer.never_answer && !s->stopping) s->held.push_back(std::move(respond));
          s->arrived.notify_all();
          if (answer.never_answer) return;  // held, or dropped when stopping
        }
        respond(http_response{answer.status, std::move(answer.headers), std::move(answer.body)});
      });
    }

    http_response on_error(const error& e) override {
      const int status = e == errc::payload_too_large ? 413 : e == errc::invalid_request ? 400 : 500;
      return http_response{status, {}, {}};
    }

   private:
    std::shared_ptr<state> state_;
  };

  explicit fake_partner(scripted_response standing) { state_->standing = std::move(standing); }

  std::shared_ptr<state> state_ = std::make_shared<state>();
  handler handler_{state_};
  std::unique_ptr<http_server> server_;
};

}  // namespace opendsr::testing
