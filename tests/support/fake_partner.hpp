// A fake downstream partner (Kochava, Blueshift) for the distribution tests: a real HTTP server on
// 127.0.0.1 that records what opendsrd forwards and answers from a script.
//
// It is a tests/support/loopback_receiver.hpp (same recording, script, held exchanges, waits and
// stop) started with a partner's defaults, where a partner's far end differs from a callback
// receiver's:
// - scripted answers for any path, queued with respond_any() (a partner's URL carries account and
//   app ids), and a standing answer of a partner's 200 with its JSON body (where the receiver
//   answers an empty 202), which a test may change with set_standing() (every batch fails, every
//   batch hangs);
// - bodies up to max_body_bytes (default 16 MiB: a Kochava batch of 10,000 device ids is about
//   600 KB, over the server's 1 MiB default);
// - url() is the base URL without a path (a partner's URL carries account and app ids).
//
// Thread safety and waiting: as loopback_receiver's.
#pragma once

#include "loopback_receiver.hpp"

#include <opendsr/http.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

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
  // The answer when the script is empty (loopback_receiver_options::standing). Default: Kochava's success, which any 2xx-reading
  // partner also takes as sent.
  scripted_response standing = kochava_ok();
  // Largest request body accepted. Default: 16 MiB.
  std::size_t max_body_bytes = 16 * 1024 * 1024;
  // Server threads. Default: 4 (a held exchange must not stop the next one being served).
  std::size_t threads = 4;
};

class fake_partner final : public loopback_receiver {
 public:
  // Errors: whatever http_server::start() returns (no free port).
  static result<std::unique_ptr<fake_partner>> start(fake_partner_options options = {}) {
    std::unique_ptr<fake_partner> p(new fake_partner());
    loopback_receiver_options receiver;
    receiver.threads = options.threads;
    receiver.standing = std::move(options.standing);
    receiver.max_body_bytes = options.max_body_bytes;
    receiver.read_timeout = std::chrono::milliseconds(30'000);
    if (auto s = p->listen(std::move(receiver)); !s) return std::move(s).error();
    return p;
  }

  // "http://127.0.0.1:PORT": the base URL an output's endpoint override names.
  std::string url() const { return loopback_receiver::url(""); }

 private:
  fake_partner() = default;
};

}  // namespace opendsr::testing
