// A scripted HTTP(S) receiver on 127.0.0.1 for tests: the far end of status callbacks (and of
// anything else opendsr sends), as a real server on a real socket.
//
// Contract
// - start() listens on 127.0.0.1, port 0 (a free port), plain HTTP, or HTTPS when options.tls is
//   set (opendsr::http_server, whose TLS is Botan's: an independent peer for our OpenSSL client).
// - Every request that arrives whole is recorded, in arrival order, with a sequence number from
//   1: method, target (path and query as sent), header fields, the exact body bytes. Requests the
//   server refuses before they are whole (malformed, over its limits) are not recorded.
// - Answers come from a script: per path (the target without its query), a FIFO of responses
//   queued with respond(); when that is empty, a FIFO for any path queued with respond_any(); when
//   that is empty too, the standing answer (options.standing, by default
//   202 with an empty body; set_standing() changes it). A response with never_answer set holds the
//   exchange open without answering until the receiver stops; held() counts those exchanges.
// - stop() (and the destructor) drops the held exchanges and stops the server; idempotent.
//
// Thread safety: every member may be called from any thread, except stop() and the destructor,
// which must not run on the server's threads (never from inside a request).
// Waiting: wait_for() and wait_held() are bounded waits on a condition variable; nothing here sleeps.
#pragma once

#include <opendsr/http.hpp>
#include <opendsr/http_server.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace opendsr::testing {

struct received_request {
  std::uint64_t sequence = 0;  // 1 for the first request received, then 2, ...
  std::string method;
  std::string target;
  http_headers headers;
  std::string body;
};

struct scripted_response {
  int status = 202;
  http_headers headers;
  std::string body;
  // Never answer: hold the exchange until the receiver stops.
  bool never_answer = false;

  static scripted_response never() {
    scripted_response r;
    r.never_answer = true;
    return r;
  }
};

struct loopback_receiver_options {
  // Serve HTTPS with this identity (leaf first, then chain; unencrypted PKCS#8 key). Default: HTTP.
  std::optional<http_server_tls> tls = std::nullopt;
  // Server threads. Default: 2.
  std::size_t threads = 2;
  // How long the receiver keeps an idle kept-alive connection open (to test a client's handling
  // of connections closed under it). Default: 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  // The answer when the scripts are empty. Default: 202 with an empty body.
  scripted_response standing = {};
  // Largest request body accepted; a larger one is refused with 413 and not recorded.
  // Default: the server's (1 MiB).
  std::size_t max_body_bytes = http_server_options{}.max_body_bytes;
  // How long a connection may take to send a whole request. Default: the server's (10 s).
  std::chrono::milliseconds read_timeout = http_server_options{}.read_timeout;
};

class loopback_receiver {
 public:
  // Errors: whatever http_server::start() returns (a TLS identity it cannot use, no free port).
  static result<std::unique_ptr<loopback_receiver>> start(loopback_receiver_options options = {}) {
    std::unique_ptr<loopback_receiver> r(new loopback_receiver());
    if (auto s = r->listen(std::move(options)); !s) return std::move(s).error();
    return r;
  }

  ~loopback_receiver() { stop(); }
  loopback_receiver(const loopback_receiver&) = delete;
  loopback_receiver& operator=(const loopback_receiver&) = delete;

  // Queues the answer to the next request for `path` (e.g. "/cb"), after those already queued.
  void respond(std::string path, scripted_response response) {
    std::lock_guard lock(state_->mutex);
    state_->script[std::move(path)].push_back(std::move(response));
  }

  // Queues the answer to the next request for any path (e.g. a partner's, whose URL carries
  // account ids) that has none queued with respond(), after those already queued here.
  void respond_any(scripted_response response) {
    std::lock_guard lock(state_->mutex);
    state_->any_path.push_back(std::move(response));
  }

  // Replaces the answer given when both scripts are empty.
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

  // Waits until at least `count` requests have been received or `timeout` passed. Returns
  // whether they were.
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

  // "http://127.0.0.1:PORT" + path ("https://..." when serving TLS). REQUIRES: path is empty or
  // starts with '/'.
  std::string url(std::string_view path = "/") const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port()) + std::string(path);
  }

  std::uint16_t port() const { return server_->port(); }

  // TCP connections open to the server now (to observe connection reuse and leaks).
  std::size_t open_connections() const { return server_->connections(); }

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

 protected:
  loopback_receiver() = default;

  // Starts the server. REQUIRES: called once, before the receiver is shared.
  result<void> listen(loopback_receiver_options options) {
    tls_ = options.tls.has_value();
    state_->standing = std::move(options.standing);
    http_server_options server;
    server.address = "127.0.0.1";
    server.port = 0;
    server.threads = options.threads;
    server.max_body_bytes = options.max_body_bytes;
    server.read_timeout = options.read_timeout;
    server.idle_timeout = options.idle_timeout;
    server.drain_timeout = std::chrono::milliseconds(2'000);
    server.tls = std::move(options.tls);
    auto s = http_server::start(handler_, server);
    if (!s) return std::move(s).error();
    server_ = std::move(*s);
    return {};
  }

 private:
  struct state {
    mutable std::mutex mutex;
    mutable std::condition_variable arrived;
    std::vector<received_request> received;
    std::map<std::string, std::deque<scripted_response>, std::less<>> script;
    std::deque<scripted_response> any_path;
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
          const std::string_view path = std::string_view(r.target).substr(0, r.target.find('?'));
          if (auto it = s->script.find(path); it != s->script.end() && !it->second.empty()) {
            answer = std::move(it->second.front());
            it->second.pop_front();
          } else if (!s->any_path.empty()) {
            answer = std::move(s->any_path.front());
            s->any_path.pop_front();
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

  bool tls_ = false;
  std::shared_ptr<state> state_ = std::make_shared<state>();
  handler handler_{state_};
  std::unique_ptr<http_server> server_;
};

}  // namespace opendsr::testing
