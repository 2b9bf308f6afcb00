// The forward dispatcher over the engine on the memory adapter, with a manual clock, a scripted
// http_client whose exchanges the test answers one by one, and a small partner kind defined
// here (the Kochava and Blueshift partners have their own tests; real HTTP to fake partners is
// covered by the black-box daemon tests).
#include <opendsr/forward_dispatcher.hpp>
#include <opendsr/memory_storage.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"
#include "../support/scripted_http_client.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <map>
#include <mutex>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::at;
using testing::header;
using testing::make_body;
using testing::scripted_client;
using testing::uuid_v4;

// A partner as small as the seam allows: it takes emails and customer ids, batches up to the
// setting max_items (immediately when 1, else within an hour), POSTs the values one per line to
// <endpoint>/delete with the api_key as a bearer token, and reads statuses the common way.
class test_partner final : public partner {
 public:
  test_partner(std::string base, std::string key, std::size_t max_items)
      : base_(std::move(base)), key_(std::move(key)), max_items_(max_items) {}

  std::string_view domain() const noexcept override { return "partner.example"; }
  bool accepts(identity_type t) const noexcept override {
    return t == identity_type::email || t == identity_type::controller_customer_id;
  }
  partner_batching batching() const noexcept override {
    return {max_items_, max_items_ == 1 ? std::chrono::microseconds(0) : std::chrono::microseconds(1h)};
  }

  result<http_client_request> build(std::span<const forward_subject> batch) const override {
    http_client_request r;
    r.url = base_ + "/delete";
    r.headers.add("Authorization", "Bearer " + key_);
    for (const forward_subject& s : batch)
      for (const identity& i : s.identities) {
        if (i.value == "unbuildable@example.com") return error(errc::invalid_argument, "the test partner cannot build this batch");
        r.body += i.value + '\n';
      }
    return r;
  }

  forward_verdict classify(const http_client_response& r, unsigned) const override {
    const std::string status = "HTTP " + std::to_string(r.status);
    if (r.status >= 200 && r.status < 300) return {forward_verdict_kind::sent, std::nullopt, {}, "job-1"};
    if (r.status == 413) return {forward_verdict_kind::too_large, std::nullopt, status, {}};
    if (r.status == 401 || r.status == 403) return {forward_verdict_kind::bad_credentials, std::nullopt, status, {}};
    if (r.status == 429 || r.status >= 500) {
      forward_verdict v{forward_verdict_kind::retry, std::nullopt, status, {}};
      if (auto after = r.headers.get("Retry-After")) {
        long seconds = 0;
        if (std::from_chars(after->data(), after->data() + after->size(), seconds).ec == std::errc()) v.retry_after = std::chrono::seconds(seconds);
      }
      return v;
    }
    return {forward_verdict_kind::failed, std::nullopt, status, {}};
  }

 private:
  std::string base_;
  std::string key_;
  std::size_t max_items_;
};

class test_kind final : public partner_kind {
 public:
  std::string_view name() const noexcept override { return "test"; }
  std::string_view describe() const noexcept override { return "max_items: the batch size\napi_key: a bearer token"; }
  result<std::unique_ptr<partner>> configure(const partner_settings& s) const override {
    ++configured;
    auto key = s.credentials.find("api_key");
    if (key == s.credentials.end() || key->second.empty()) return error(errc::invalid_argument, "api_key is required");
    std::size_t max_items = 1;
    if (auto m = s.settings.find("max_items"); m != s.settings.end()) max_items = std::stoul(m->second);
    return std::unique_ptr<partner>(new test_partner(s.endpoint.value_or("https://partner.example"), key->second, max_items));
  }
  mutable std::atomic<int> configured{0};
};

output_change new_key(std::string api_key) {
  output_change c;
  c.credentials = std::map<std::string, std::string>{{"api_key", std::move(api_key)}};
  return c;
}

std::string email(std::uint64_t n) { return std::to_string(n) + "@example.com"; }

class ForwardDispatcherTest : public ::testing::Test {
 protected:
  static constexpr const char* ws = "ws";
  static constexpr const char* key = "secret-api-key-0001";
  using running = testing::running_dispatcher<forward_dispatcher>;

  engine_options options(bool with_kind = true) {
    engine_options o = testing::test_options();
    if (with_kind) o.distribution.partners = {kind_};
    return o;
  }

  void SetUp() override { engine_.emplace(engine::open(store_, options()).value()); }

  running start(forward_dispatcher_options o = {}, engine* e = nullptr) {
    o.on_recorded = [this](const result<forward_record_report>& r) {
      ASSERT_TRUE(r) << r.error().message();
      std::lock_guard lock(mutex_);
      totals_.sent += r->sent;
      totals_.requests_sent += r->requests_sent;
      totals_.retried += r->retried;
      totals_.split += r->split;
      totals_.failed += r->failed;
      totals_.stale += r->stale;
    };
    o.on_attempt = [this](const forward_attempt& a) {
      std::lock_guard lock(mutex_);
      attempts_.push_back(a);
    };
    return running(client_, forward_dispatcher::start(e ? *e : *engine_, client_, clock_, std::move(o)).value());
  }

  void add_output(std::string name, std::map<std::string, std::string> settings = {}, std::optional<std::string> endpoint = {}) {
    auto added = engine_->add_output(ws, {std::move(name), "test", true, {std::move(settings), {{"api_key", key}}, std::move(endpoint)}},
                                     clock_.now());
    ASSERT_TRUE(added) << added.error().message();
  }

  void submit(std::uint64_t n, std::string value = {}) {
    auto r = engine_->submit(ws, make_body({.id = uuid_v4(n), .identities = {{"email", value.empty() ? email(n) : value}}}), clock_.now());
    ASSERT_TRUE(r) << r.error().message();
  }

  // Request n's distribution entry for `output`.
  distribution_entry entry(std::uint64_t n, std::string_view output) {
    const auto s = engine_->status(ws, uuid_v4(n));
    EXPECT_TRUE(s) << s.error().message();
    if (s)
      for (const distribution_entry& e : s->distribution)
        if (e.name == output) return e;
    ADD_FAILURE() << "no entry for " << output;
    return {};
  }

  output_info output(std::string_view name) {
    const auto listed = engine_->outputs(ws);
    EXPECT_TRUE(listed) << listed.error().message();
    if (listed)
      for (const output_info& o : *listed)
        if (o.name == name) return o;
    ADD_FAILURE() << "no output " << name;
    return {};
  }

  // Answers every waiting exchange (and those they release) with what `answer` says for it.
  std::vector<http_client_request> answer_each(const std::function<result<http_client_response>(const http_client_request&)>& answer) {
    std::vector<http_client_request> out;
    while (auto next = client_.oldest()) out.push_back(client_.answer(answer(*next)));
    return out;
  }

  void poll_when_due(const running& d) { d.poll_when_due(*engine_, clock_); }

  void expect_consistent() {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }

  std::shared_ptr<test_kind> kind_ = std::make_shared<test_kind>();
  memory_storage store_;
  manual_clock clock_{at("2026-12-03T12:00:00Z")};
  std::optional<engine> engine_;
  scripted_client client_;
  std::mutex mutex_;
  forward_record_report totals_;
  std::vector<forward_attempt> attempts_;
};

http_client_response response(int status, http_headers headers = {}) { return {status, std::move(headers), {}}; }

TEST_F(ForwardDispatcherTest, ABatchIsBuiltByItsPartnerAndItsTwoHundredIsShownAsSent) {
  add_output("crm");
  submit(1);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::pending);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(d->in_flight(), 1u);
  const auto sent = client_.answer(200);
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.url, "https://partner.example/delete");
  EXPECT_EQ(header(sent, "Authorization"), std::string("Bearer ") + key);
  EXPECT_EQ(sent.body, email(1) + "\n");
  const auto e = entry(1, "crm");
  EXPECT_EQ(e.domain, "partner.example");
  EXPECT_EQ(e.status, distribution_state::sent);
  EXPECT_EQ(totals_.sent, 1u);
  EXPECT_EQ(totals_.requests_sent, 1u);
  EXPECT_EQ(d->in_flight(), 0u);
  EXPECT_EQ(engine_->forward_queue()->batches, 0u);
  // What the host logs and counts: no credential, no identity.
  ASSERT_EQ(attempts_.size(), 1u);
  const forward_attempt& a = attempts_[0];
  EXPECT_EQ(a.workspace, ws);
  EXPECT_EQ(a.output, "crm");
  EXPECT_EQ(a.partner, "test");
  EXPECT_EQ(a.attempt, 1u);
  EXPECT_EQ(a.requests, 1u);
  EXPECT_EQ(a.items, 1u);
  EXPECT_EQ(a.verdict, forward_verdict_kind::sent);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, RetryAfterIsHonouredAndTheSameBatchGoesAgain) {
  add_output("crm");
  submit(1);
  auto d = start();
  d.poll();
  http_headers later;
  later.add("Retry-After", "120");
  const timestamp answered = clock_.now();
  const auto first = client_.answer(response(429, later));
  EXPECT_EQ(totals_.retried, 1u);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::pending);
  EXPECT_GE(engine_->next_due().value().value(), answered + 120s);
  clock_.set(answered + 119s);
  d.poll();
  EXPECT_EQ(client_.waiting(), 0u);
  clock_.set(answered + 120s);
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(client_.answer(200).body, first.body);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::sent);
  ASSERT_EQ(attempts_.size(), 2u);
  EXPECT_EQ(attempts_[0].verdict, forward_verdict_kind::retry);
  EXPECT_EQ(attempts_[0].message, "HTTP 429");
  EXPECT_EQ(attempts_[1].attempt, 2u);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, ATransportErrorIsRetriedAndARefusedDestinationFailsForGood) {
  add_output("a", {}, "https://a.partner.example");
  add_output("b", {}, "https://b.partner.example");
  submit(1);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 2u);  // one batch per output, both at once
  answer_each([](const http_client_request& r) -> result<http_client_response> {
    if (r.url.starts_with("https://a.")) return error(errc::network_error, "timed out after 10000 ms");
    return error(errc::destination_refused, "the destination resolves to a private address");
  });
  EXPECT_EQ(entry(1, "a").status, distribution_state::pending);
  const auto refused = entry(1, "b");
  EXPECT_EQ(refused.status, distribution_state::failed);
  EXPECT_EQ(refused.status_message, "destination refused: the destination resolves to a private address");
  ASSERT_EQ(engine_->dead_forwards(ws, "b")->size(), 1u);
  EXPECT_TRUE(engine_->dead_forwards(ws, "a")->empty());
  poll_when_due(d);
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(client_.answer(200).url, "https://a.partner.example/delete");
  EXPECT_EQ(entry(1, "a").status, distribution_state::sent);
  std::map<std::string, forward_attempt> first;
  for (const forward_attempt& a : attempts_)
    if (a.attempt == 1) first[a.output] = a;
  EXPECT_EQ(first["a"].verdict, forward_verdict_kind::retry);
  EXPECT_EQ(first["a"].message, "timed out after 10000 ms");
  EXPECT_EQ(first["b"].verdict, forward_verdict_kind::failed);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, OneBatchPerOutputIsInFlightAndTheNextGoesWhenItsOutcomeIsRecorded) {
  add_output("crm");
  for (std::uint64_t n = 1; n <= 3; ++n) submit(n);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(d->in_flight(), 1u);
  std::vector<std::string> bodies;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(client_.waiting(), 1u) << i;  // the next was claimed and held, not sent alongside
    bodies.push_back(client_.answer(200).body);
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{email(1) + "\n", email(2) + "\n", email(3) + "\n"}));  // in queue order
  for (std::uint64_t n = 1; n <= 3; ++n) EXPECT_EQ(entry(n, "crm").status, distribution_state::sent) << n;
  EXPECT_EQ(d->in_flight(), 0u);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, APartnerIsConfiguredOncePerGenerationOfItsOutput) {
  add_output("crm");
  auto d = start();
  const int after_add = kind_->configured;
  for (std::uint64_t n = 1; n <= 3; ++n) {
    submit(n);
    d.poll();
    client_.answer(200);
  }
  EXPECT_EQ(kind_->configured - after_add, 1);
  ASSERT_TRUE(engine_->update_output(ws, "crm", new_key("rotated-key-0002"), clock_.now()));
  const int after_update = kind_->configured;
  submit(4);
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(header(client_.answer(200), "Authorization"), "Bearer rotated-key-0002");
  EXPECT_EQ(kind_->configured - after_update, 1);
}

TEST_F(ForwardDispatcherTest, TooLargeSplitsTheBatchAndTheHalvesGoOneAtATime) {
  add_output("kochava-like", {{"max_items", "4"}});
  for (std::uint64_t n = 1; n <= 4; ++n) submit(n);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(client_.answer(413).body, email(1) + "\n" + email(2) + "\n" + email(3) + "\n" + email(4) + "\n");
  EXPECT_EQ(totals_.split, 1u);
  EXPECT_EQ(output("kochava-like").max_items, 2u);
  for (std::uint64_t n = 1; n <= 4; ++n) EXPECT_EQ(entry(n, "kochava-like").status, distribution_state::pending);
  // Both halves fell due at once and were claimed as the 413 was recorded; the second is held
  // until the first's outcome is recorded, then sent without a poll.
  d.poll();
  std::vector<std::string> halves;
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(d->in_flight(), 1u);
  halves.push_back(client_.answer(200).body);
  ASSERT_EQ(client_.waiting(), 1u);
  halves.push_back(client_.answer(200).body);
  EXPECT_EQ(client_.waiting(), 0u);
  EXPECT_EQ(halves, (std::vector<std::string>{email(1) + "\n" + email(2) + "\n", email(3) + "\n" + email(4) + "\n"}));
  for (std::uint64_t n = 1; n <= 4; ++n) EXPECT_EQ(entry(n, "kochava-like").status, distribution_state::sent) << n;
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, ABatchClaimedAgainAfterItsLeaseExpiredReplacesTheHeldCopyAndOnlyItsNewLeaseCounts) {
  add_output("crm");
  submit(1);
  submit(2);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);  // 1 sent, 2 held
  // The send outlasts the lease: both are claimed again, 1 behind itself, 2 in place of its copy.
  clock_.advance(options().distribution.lease);
  d.poll();
  EXPECT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(d->in_flight(), 1u);
  std::vector<std::string> bodies;
  while (client_.waiting() > 0) bodies.push_back(client_.answer(200).body);
  // 1's first 2xx came under a lost lease (stale, not recorded), so 1 went again: only its
  // second 2xx made it sent. 2 went once.
  EXPECT_EQ(bodies, (std::vector<std::string>{email(1) + "\n", email(2) + "\n", email(1) + "\n"}));
  EXPECT_EQ(totals_.stale, 1u);
  EXPECT_EQ(totals_.sent, 2u);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::sent);
  EXPECT_EQ(entry(2, "crm").status, distribution_state::sent);
  EXPECT_EQ(d->in_flight(), 0u);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, BadCredentialsFailTheBatchAndOpenTheCircuitWhileAnotherOutputSends) {
  add_output("a", {}, "https://a.partner.example");
  add_output("b", {}, "https://b.partner.example");
  submit(1);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 2u);
  answer_each([](const http_client_request& r) { return response(r.url.starts_with("https://a.") ? 401 : 200); });
  const auto failed = entry(1, "a");
  EXPECT_EQ(failed.status, distribution_state::failed);
  ASSERT_TRUE(failed.status_message);
  EXPECT_EQ(failed.status_message->find(key), std::string::npos);
  EXPECT_EQ(entry(1, "b").status, distribution_state::sent);
  EXPECT_TRUE(output("a").circuit_open);
  EXPECT_FALSE(output("a").circuit_reason.empty());
  EXPECT_FALSE(output("b").circuit_open);
  // The open circuit holds a's queue; b goes on.
  submit(2);
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  EXPECT_EQ(client_.answer(200).url, "https://b.partner.example/delete");
  EXPECT_EQ(entry(2, "a").status, distribution_state::pending);
  EXPECT_EQ(entry(2, "b").status, distribution_state::sent);
  // New credentials close it, and the queue goes with them.
  ASSERT_TRUE(engine_->update_output(ws, "a", new_key("fixed-key-0003"), clock_.now()));
  EXPECT_FALSE(output("a").circuit_open);
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);
  const auto resent = client_.answer(200);
  EXPECT_EQ(resent.url, "https://a.partner.example/delete");
  EXPECT_EQ(header(resent, "Authorization"), "Bearer fixed-key-0003");
  EXPECT_EQ(entry(2, "a").status, distribution_state::sent);
  EXPECT_EQ(entry(1, "a").status, distribution_state::failed);  // failed stays failed until redriven
  for (const forward_attempt& a : attempts_) EXPECT_EQ(a.message.find(key), std::string::npos);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, ABatchItsPartnerCannotBuildFailsForGoodWithTheReason) {
  add_output("crm");
  submit(1, "unbuildable@example.com");
  auto d = start();
  d.poll();
  EXPECT_EQ(client_.waiting(), 0u);
  const auto e = entry(1, "crm");
  EXPECT_EQ(e.status, distribution_state::failed);
  EXPECT_EQ(e.status_message, "the test partner cannot build this batch");
  const auto dead = engine_->dead_forwards(ws).value();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].last_error, "the test partner cannot build this batch");
  ASSERT_EQ(attempts_.size(), 1u);
  EXPECT_EQ(attempts_[0].verdict, forward_verdict_kind::failed);
  EXPECT_EQ(attempts_[0].latency, 0us);
}

TEST_F(ForwardDispatcherTest, AnOutputWhosePartnerKindIsGoneFromTheBuildFailsItsBatches) {
  add_output("crm");
  submit(1);
  auto without = engine::open(store_, options(false)).value();
  auto d = start({}, &without);
  d.poll();
  EXPECT_EQ(client_.waiting(), 0u);
  const auto e = entry(1, "crm");
  EXPECT_EQ(e.status, distribution_state::failed);
  EXPECT_EQ(e.status_message, "the partner kind \"test\" is not available in this build");
}

TEST_F(ForwardDispatcherTest, ARestartedOwnerSendsWhatItHadClaimedAtOnceAndALateOutcomeIsStale) {
  add_output("crm");
  submit(1);
  auto claimed = engine_->claim_forwards(clock_.now(), 10, "node-1").value();  // then "crashed"
  ASSERT_EQ(claimed.size(), 1u);
  auto again = testing::restart_owner(client_, [&](const char* owner) { return start({.owner = owner}); });
  ASSERT_EQ(client_.waiting(), 1u);
  client_.answer(200);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::sent);
  forward_outcome late{claimed[0].batch_key, claimed[0].lease, {forward_verdict_kind::sent, std::nullopt, {}, {}}};
  EXPECT_EQ(engine_->record_forwards({&late, 1}, clock_.now())->stale, 1u);
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, OutputsSendAtOnceUpToTheLimit) {
  for (const char* name : {"o1", "o2", "o3", "o4", "o5"}) add_output(name, {}, std::string("https://") + name + ".example");
  submit(1);
  auto d = start({.max_in_flight = 3, .claim_batch = 3});
  d.poll();
  EXPECT_EQ(client_.waiting(), 3u);
  EXPECT_EQ(d->in_flight(), 3u);
  std::size_t answered = 0;
  while (client_.waiting() > 0) {
    client_.answer(200), ++answered;
    if (client_.waiting() == 0) d.poll();
  }
  EXPECT_EQ(answered, 5u);
  for (const char* name : {"o1", "o2", "o3", "o4", "o5"}) EXPECT_EQ(entry(1, name).status, distribution_state::sent) << name;
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, StopWaitsForTheSendInFlightAndLosesNoHeldBatch) {
  add_output("crm");
  submit(1);
  submit(2);
  auto d = start();
  d.poll();
  ASSERT_EQ(client_.waiting(), 1u);  // the second batch is held behind the first
  d.stop_while_answering(200);
  EXPECT_EQ(client_.waiting(), 0u);
  EXPECT_EQ(d->in_flight(), 0u);
  EXPECT_EQ(entry(1, "crm").status, distribution_state::sent);
  // Whether the held batch went depends on whether the stop came before the first answer was
  // recorded; a stopping dispatcher starts nothing new, and the batch it held then is sent at
  // once by the same owner started again (its lease is released).
  d.reset();
  auto again = start();
  again.poll();
  while (client_.waiting() > 0) client_.answer(200);
  EXPECT_EQ(entry(2, "crm").status, distribution_state::sent);
  EXPECT_EQ(client_.sent().size(), 2u);  // each batch once
  expect_consistent();
}

TEST_F(ForwardDispatcherTest, OptionsAreValidated) {
  EXPECT_EQ(forward_dispatcher::start(*engine_, client_, clock_, {.max_in_flight = 0}).error().code(), errc::invalid_argument);
  EXPECT_EQ(forward_dispatcher::start(*engine_, client_, clock_, {.claim_batch = 0}).error().code(), errc::invalid_argument);
  EXPECT_EQ(forward_dispatcher::start(*engine_, client_, clock_, {.owner = "a\nb"}).error().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace opendsr
