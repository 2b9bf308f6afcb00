// The callback dispatcher over the engine on the memory adapter, with a manual clock and a
// scripted http_client whose exchanges the test answers one by one (the Asio client and real
// receivers are covered by http_client_test and the black-box daemon tests).
#include <opendsr/callback_dispatcher.hpp>
#include <opendsr/memory_storage.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"
#include "../support/scripted_http_client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::at;
using testing::header;
using testing::make_body;
using testing::scripted_client;
using testing::uuid_v4;

// A deterministic stand-in for the RSA signer (the real ones are tested against openssl in
// openssl_signer_test and through the daemon); counts its calls.
class counting_signer final : public signer {
 public:
  result<std::string> sign(std::string_view bytes) const override {
    ++calls;
    return "sig-" + std::to_string(std::hash<std::string_view>{}(bytes));
  }
  std::string_view processor_domain() const override { return "opendsr.example.com"; }
  std::string_view certificate_url() const override { return "https://opendsr.example.com/opendsr_cert.pem"; }
  std::string_view certificate_pem() const override { return ""; }
  mutable std::atomic<int> calls{0};
};

std::string status_in(const http_client_request& r) {
  for (const char* s : {"pending", "in_progress", "completed", "cancelled"})
    if (r.body.find(std::string(R"("request_status":")") + s + '"') != std::string::npos) return s;
  return "?";
}

class DispatcherTest : public ::testing::Test {
 protected:
  static constexpr const char* ws = "3622";
  const timestamp received = at("2021-11-29T18:16:24.556805Z");
  const timestamp first_flush = at("2021-11-29T18:30:00Z");

  engine_options options() {
    engine_options o = testing::test_options();
    o.callbacks.max_attempts = 4;
    return o;
  }

  void SetUp() override { engine_.emplace(engine::open(store_, options()).value()); }

  using running = testing::running_dispatcher<callback_dispatcher>;

  running start(callback_dispatcher_options o = {}) {
    o.on_recorded = [this](const result<callback_record_report>& r) {
      ASSERT_TRUE(r) << r.error().message();
      std::lock_guard lock(mutex_);
      totals_.delivered += r->delivered;
      totals_.retried += r->retried;
      totals_.dead_lettered += r->dead_lettered;
      totals_.stale += r->stale;
    };
    return running(client_, callback_dispatcher::start(*engine_, client_, signer_, clock_, std::move(o)).value());
  }

  void submit(std::uint64_t n, std::vector<std::string> urls, std::string type = "erasure") {
    ASSERT_TRUE(engine_->submit(ws, make_body({.id = uuid_v4(n), .type = type,
                                               .identities = {{"email", std::to_string(n) + "@example.com"}},
                                               .skip_waiting_period = true, .callback_urls = std::move(urls)}),
                                received));
  }

  void poll_when_due(const running& d) { d.poll_when_due(*engine_, clock_); }

  void expect_consistent() {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }

  memory_storage store_;
  manual_clock clock_{at("2021-11-29T18:16:24.556805Z")};
  std::optional<engine> engine_;
  scripted_client client_;
  counting_signer signer_;
  std::mutex mutex_;
  callback_record_report totals_;
};

TEST_F(DispatcherTest, NothingIsSentBeforeTheFlushAndEachUrlGetsItsOwnSignedBody) {
  submit(1, {"https://a.example/cb", "https://b.example/cb?x=1"});
  auto d = start();
  d.poll();
  EXPECT_EQ(client_.waiting(), 0u);  // due at the next 15-minute flush
  clock_.set(first_flush);
  d.poll();
  ASSERT_EQ(client_.waiting(), 2u);
  const auto sent = client_.answer_all(202);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& r = sent[i];
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.url, i == 0 ? "https://a.example/cb" : "https://b.example/cb?x=1");
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(header(r, "X-OpenDSR-Processor-Domain"), "opendsr.example.com");
    EXPECT_EQ(header(r, "X-OpenDSR-Signature"), signer_.sign(r.body).value());
    EXPECT_NE(r.body.find(R"("status_callback_url":")" + r.url + '"'), std::string::npos);
    EXPECT_EQ(status_in(r), "pending");
  }
  EXPECT_EQ(totals_.delivered, 2u);
  EXPECT_EQ(engine_->callback_queue()->queued, 0u);
  expect_consistent();
}

TEST_F(DispatcherTest, RetriesResendIdenticalBytesAndDoNotHoldBackAnotherUrl) {
  submit(1, {"https://failing.example/cb", "https://fine.example/cb"});
  auto d = start();
  clock_.set(first_flush);
  d.poll();
  ASSERT_EQ(client_.waiting(), 2u);
  const auto first = client_.answer(500);
  EXPECT_EQ(client_.answer(202).url, "https://fine.example/cb");  // unaffected by the other's failure
  const int signatures = signer_.calls;
  // A cancellation queues a callback for both URLs at this same flush: the fine one goes, the
  // failing one waits behind its pending callback, whose retry is not due yet.
  ASSERT_TRUE(engine_->cancel(ws, uuid_v4(1), clock_.now()));
  d.poll();
  std::vector<http_client_request> attempts{first};
  const auto now_sent = client_.answer_all(202);
  ASSERT_EQ(now_sent.size(), 1u);
  EXPECT_EQ(now_sent[0].url, "https://fine.example/cb");
  EXPECT_EQ(status_in(now_sent[0]), "cancelled");
  // Move through the backoffs: 500 again, then 202.
  for (int answer : {500, 202}) {
    const auto due = engine_->next_due().value();
    ASSERT_TRUE(due);
    clock_.set(std::max(clock_.now(), *due));
    d.poll();
    ASSERT_EQ(client_.waiting(), 1u);
    attempts.push_back(client_.answer(answer));
  }
  ASSERT_EQ(attempts.size(), 3u);
  for (const auto& a : attempts) {
    EXPECT_EQ(a.url, "https://failing.example/cb");
    EXPECT_EQ(a.body, attempts[0].body);
    EXPECT_EQ(header(a, "X-OpenDSR-Signature"), header(attempts[0], "X-OpenDSR-Signature"));
    EXPECT_EQ(status_in(a), "pending");
  }
  // The retries reused the stored signature: the two new ones are the cancelled callbacks'.
  EXPECT_EQ(signer_.calls, signatures + 2);
  // Its cancelled callback was released when pending was delivered.
  ASSERT_EQ(client_.waiting(), 1u);
  const auto next = client_.answer(202);
  EXPECT_EQ(next.url, "https://failing.example/cb");
  EXPECT_EQ(status_in(next), "cancelled");
  expect_consistent();
}

TEST_F(DispatcherTest, RedirectsTimeoutsAndErrorsAreFailedAttemptsAndTheRequestStillCompletes) {
  submit(1, {"https://a.example/cb"}, "access");
  auto d = start();
  clock_.set(first_flush);
  d.poll();
  client_.answer(http_client_response{302, {}, {}});
  auto dead = engine_->dead_callbacks();
  EXPECT_TRUE(dead->empty());
  // The request moves on regardless of its callbacks.
  clock_.set(at("2021-12-10T00:00:00Z"));
  ASSERT_TRUE(engine_->tick(clock_.now()));
  EXPECT_EQ(engine_->status(ws, uuid_v4(1))->status, request_status::completed);
  const auto q = testing::queued_callbacks(store_, ws, uuid_v4(1));
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[0].entry.last_error, "HTTP 302 (redirects are not followed)");
  EXPECT_EQ(q[0].entry.attempts, 1u);
  poll_when_due(d);
  client_.answer(error(errc::network_error, "timed out after 10000 ms"));
  // It first fell due eleven days ago, past max_age (72 h): that failure was its last.
  const auto dead_now = engine_->dead_callbacks().value();
  ASSERT_EQ(dead_now.size(), 1u);
  EXPECT_EQ(dead_now[0].last_error, "timed out after 10000 ms");
  EXPECT_EQ(dead_now[0].attempts, 2u);
  // Which released the in_progress callback behind it: it went out at once.
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(status_in(client_.answer(401)), "in_progress");
  EXPECT_EQ(testing::queued_callbacks(store_, ws, uuid_v4(1))[1].entry.last_error, "HTTP 401");
  expect_consistent();
}

TEST_F(DispatcherTest, TheLastFailureDeadLettersAndReleasesTheNextThenRedriveDelivers) {
  submit(1, {"https://a.example/cb"});
  auto d = start();
  clock_.set(first_flush);
  for (int attempt = 1; attempt <= 4; ++attempt) {
    const auto due = engine_->next_due().value();
    ASSERT_TRUE(due);
    clock_.set(std::max(clock_.now(), *due));
    d.poll();
    ASSERT_EQ(client_.waiting(), 1u) << attempt;
    EXPECT_EQ(status_in(client_.answer(503)), "pending");
  }
  EXPECT_EQ(totals_.dead_lettered, 1u);
  const auto dead = engine_->dead_callbacks().value();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].workspace, ws);
  EXPECT_EQ(dead[0].subject_request_id, uuid_v4(1));
  EXPECT_EQ(dead[0].request_status, "pending");
  EXPECT_EQ(dead[0].url, "https://a.example/cb");
  EXPECT_EQ(dead[0].attempts, 4u);
  EXPECT_EQ(dead[0].last_error, "HTTP 503");
  EXPECT_TRUE(engine_->dead_callbacks("other")->empty());
  // The in_progress callback was waiting behind it, and goes now.
  clock_.set(at("2021-11-30T00:00:00Z"));
  ASSERT_TRUE(engine_->tick(clock_.now()));
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(status_in(client_.answer(202)), "in_progress");
  // Redriven, the dead one is delivered.
  EXPECT_EQ(engine_->redrive_callbacks(clock_.now(), std::string_view(ws)).value(), 1u);
  EXPECT_TRUE(engine_->dead_callbacks()->empty());
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(status_in(client_.answer(202)), "pending");
  EXPECT_EQ(engine_->callback_queue()->queued, 0u);
  expect_consistent();
}

TEST_F(DispatcherTest, ARestartedOwnerSendsWhatWasInFlightAtOnceAndALateOutcomeIsStale) {
  submit(1, {"https://a.example/cb"});
  clock_.set(first_flush);
  auto claimed = engine_->claim_callbacks(clock_.now(), 10, "node-1").value();  // then "crashed"
  ASSERT_EQ(claimed.size(), 1u);
  auto again = testing::restart_owner(client_, [&](const char* owner) { return start({.owner = owner}); });
  ASSERT_EQ(client_.waiting(), 1u);
  client_.answer(202);
  callback_outcome late{claimed[0].entry_key, claimed[0].lease, true, "x", {}};
  EXPECT_EQ(engine_->record_callbacks({&late, 1}, clock_.now())->stale, 1u);
  expect_consistent();
}

TEST_F(DispatcherTest, ALeaseThatExpiresIsClaimedAgain) {
  submit(1, {"https://a.example/cb"});
  clock_.set(first_flush);
  ASSERT_EQ(engine_->claim_callbacks(clock_.now(), 10, "node-1")->size(), 1u);
  EXPECT_EQ(engine_->next_due().value(), first_flush + options().callbacks.lease);
  EXPECT_TRUE(engine_->claim_callbacks(clock_.now() + 59s, 10, "node-2")->empty());
  EXPECT_EQ(engine_->claim_callbacks(clock_.now() + 60s, 10, "node-2")->size(), 1u);
}

TEST_F(DispatcherTest, ManyInFlightAtOnceUpToTheLimitRefilledInBatchesAndStopWaitsForThem) {
  for (std::uint64_t n = 1; n <= 40; ++n) submit(n, {"https://a.example/cb/" + std::to_string(n)});
  auto d = start({.max_in_flight = 16, .claim_batch = 5});
  clock_.set(first_flush);
  d.poll();
  EXPECT_EQ(client_.waiting(), 16u);
  EXPECT_EQ(d->in_flight(), 16u);
  // Freed slots are refilled once a claim batch's worth is free: one claim transaction for five.
  for (int i = 0; i < 4; ++i) client_.answer(202);
  EXPECT_EQ(client_.waiting(), 12u);
  client_.answer(202);
  EXPECT_EQ(client_.waiting(), 16u);
  std::size_t answered = 5;
  while (client_.waiting() > 0) client_.answer(202), ++answered;
  EXPECT_EQ(answered, 40u);
  EXPECT_EQ(totals_.delivered, 40u);
  d->stop();
  EXPECT_EQ(d->in_flight(), 0u);
  expect_consistent();
}

TEST_F(DispatcherTest, StopWaitsForAnExchangeInFlight) {
  submit(1, {"https://a.example/cb"});
  auto d = start();
  clock_.set(first_flush);
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  d.stop_while_answering(202);
  EXPECT_EQ(totals_.delivered, 1u);
}

TEST_F(DispatcherTest, OptionsAreValidated) {
  EXPECT_EQ(callback_dispatcher::start(*engine_, client_, signer_, clock_, {.max_in_flight = 0}).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(callback_dispatcher::start(*engine_, client_, signer_, clock_, {.claim_batch = 0}).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(callback_dispatcher::start(*engine_, client_, signer_, clock_, {.owner = "a\nb"}).error().code(),
            errc::invalid_argument);
}

}  // namespace
}  // namespace opendsr
