// The engine's distribution (issue 10) on the memory adapter, with two pure test partners: the
// forwards an erasure writes, enrichment, batching by count and by age, every verdict (sent,
// retry with Retry-After, too large, bad credentials, failed), leases, dead letters and redrive,
// output management, callbacks carrying the entries, and the invariants after every step.
#include <opendsr/engine.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/subject_data.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"
#include "../support/test_partners.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::at;
using testing::body_spec;
using testing::make_body;
using testing::test_kind;
using testing::uuid_v4;

constexpr std::string_view ws = "3622";
const timestamp start = at("2026-11-30T10:00:00Z");

output_definition devices(std::string name = "Devices", std::string max_items = "3", std::string max_age_s = "3600") {
  return {std::move(name), "devices", true,
          {{{"max_items", std::move(max_items)}, {"max_age_s", std::move(max_age_s)}}, {{"key", "device-secret-0001"}}, {}}};
}

output_definition people(std::string name = "People") {
  return {std::move(name), "people", true, {{}, {{"key", "people-secret-0002"}}, {}}};
}

class DistributionTest : public ::testing::Test {
 protected:
  DistributionTest() {
    subjects_ = open_subject_store(subject_store_).value();
    options_.distribution.partners = {
        std::make_shared<test_kind>("devices", "devices.example",
                                    std::vector{identity_type::ios_advertising_id, identity_type::android_advertising_id}),
        std::make_shared<test_kind>("people", "people.example",
                                    std::vector{identity_type::controller_customer_id, identity_type::email})};
    options_.distribution.enrich_from = subjects_.get();
  }

  engine& e() {
    if (!engine_) engine_.emplace(engine::open(store_, options_).value());
    return *engine_;
  }

  void expect_consistent() {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }

  std::string submit(body_spec spec, timestamp when = start) {
    spec.id = uuid_v4(++ids_);
    auto r = e().submit(ws, make_body(spec), when);
    EXPECT_TRUE(r) << r.error().message();
    expect_consistent();
    return spec.id;
  }

  std::vector<distribution_entry> entries(const std::string& id) { return e().status(ws, id).value().distribution; }

  distribution_entry entry(const std::string& id, std::string_view output) {
    for (auto& d : entries(id))
      if (d.name == output) return d;
    ADD_FAILURE() << "no entry for " << output;
    return {};
  }

  std::vector<claimed_forward> claim(timestamp now, std::size_t max = 100) {
    auto c = e().claim_forwards(now, max, "node-a").value();
    expect_consistent();
    return c;
  }

  forward_record_report record(const claimed_forward& c, forward_verdict v, timestamp now) {
    auto r = e().record_forwards(std::vector{forward_outcome{c.batch_key, c.lease, std::move(v)}}, now).value();
    expect_consistent();
    return r;
  }

  memory_storage store_;
  memory_storage subject_store_;
  std::unique_ptr<subject_data> subjects_;
  engine_options options_ = testing::test_options();
  std::optional<engine> engine_;
  std::uint64_t ids_ = 0;
};

body_spec erasure(std::vector<std::pair<std::string, std::string>> ids) {
  body_spec s;
  s.identities = std::move(ids);
  return s;
}

TEST_F(DistributionTest, WithoutOutputsNothingIsForwardedAndExtensionsAreNull) {
  const std::string id = submit(erasure({{"email", "a@example.com"}}));
  EXPECT_TRUE(entries(id).empty());
  EXPECT_NE(e().status(ws, id)->body.find("\"extensions\":null"), std::string::npos);
  EXPECT_EQ(e().forward_queue()->queued, 0u);
}

TEST_F(DistributionTest, AnErasureGetsOneEntryPerActiveOutputInNameOrder) {
  ASSERT_TRUE(e().add_output(ws, people("Zeta people"), start));
  ASSERT_TRUE(e().add_output(ws, devices("Alpha devices"), start));
  auto inactive = people("Inactive");
  inactive.active = false;
  ASSERT_TRUE(e().add_output(ws, inactive, start));
  const std::string id = submit(erasure({{"email", "a@example.com"}, {"ios_advertising_id", "AEBE52E7-03EE-455A-B3C4-E57283966239"}}));
  const auto d = entries(id);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], (distribution_entry{"devices.example", "Alpha devices", distribution_state::pending, std::nullopt}));
  EXPECT_EQ(d[1], (distribution_entry{"people.example", "Zeta people", distribution_state::pending, std::nullopt}));
  const std::string body = e().status(ws, id)->body;
  EXPECT_NE(body.find(R"("extensions":{"opendsr.mparticle.com":{"distribution_status":[{"domain":"devices.example","name":"Alpha devices","status":"pending","status_message":null},{"domain":"people.example","name":"Zeta people","status":"pending","status_message":null}]}})"),
            std::string::npos)
      << body;
}

TEST_F(DistributionTest, AccessAndPortabilityAreNeverForwarded) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  body_spec access = erasure({{"email", "a@example.com"}});
  access.type = "access";
  const std::string id = submit(access);
  EXPECT_TRUE(entries(id).empty());
  EXPECT_TRUE(claim(start + 24h).empty());
}

TEST_F(DistributionTest, NoSupportedIdentityIsSkippedWithAMessage) {
  ASSERT_TRUE(e().add_output(ws, devices(), start));
  const std::string id = submit(erasure({{"email", "a@example.com"}}));
  const auto d = entry(id, "Devices");
  EXPECT_EQ(d.status, distribution_state::skipped);
  EXPECT_EQ(d.status_message,
            "No identity of a type this output takes (android_advertising_id, ios_advertising_id) is on the request or its profile.");
  EXPECT_TRUE(claim(start + 24h).empty());
}

TEST_F(DistributionTest, EnrichmentAddsTheProfilesIdentitiesAndTheRequestWins) {
  profile_write w;
  w.id = 42;
  w.attributes = "{}";
  w.identities = {{identity_type::controller_customer_id, "cust-1"},
                  {identity_type::email, "old@example.com"},
                  {identity_type::ios_advertising_id, "IDFA-1"},
                  {identity_type::android_advertising_id, "adid-1"}};
  ASSERT_TRUE(subjects_->write(ws, std::vector{w}));
  ASSERT_TRUE(e().add_output(ws, people(), start));
  ASSERT_TRUE(e().add_output(ws, devices("Devices", "10", "3600"), start));
  submit(erasure({{"controller_customer_id", "cust-1"}, {"email", "new@example.com"}}));
  const auto now = claim(start);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].output, "People");
  EXPECT_EQ(now[0].subjects.at(0).identities,
            (std::vector<identity>{{identity_type::controller_customer_id, "cust-1"}, {identity_type::email, "new@example.com"}}));
  EXPECT_EQ(now[0].config.credentials.at("key"), "people-secret-0002");
  record(now[0], {forward_verdict_kind::sent, {}, {}, {}}, start);
  const auto later = claim(start + 1h);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].output, "Devices");
  EXPECT_EQ(later[0].subjects.at(0).identities,
            (std::vector<identity>{{identity_type::android_advertising_id, "adid-1"}, {identity_type::ios_advertising_id, "IDFA-1"}}));
}

TEST_F(DistributionTest, AnMpidThatResolvesToNothingForwardsNothing) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  body_spec s = erasure({});
  s.extension_identities = {{"mpid", "123"}};
  const std::string id = submit(s);
  const auto d = entry(id, "People");
  EXPECT_EQ(d.status, distribution_state::skipped);
  EXPECT_EQ(d.status_message, "The mpid resolves to no profile, so nothing is forwarded.");
}

TEST_F(DistributionTest, BatchesFlushAtTheCountOrAfterTheAge) {
  ASSERT_TRUE(e().add_output(ws, devices("Devices", "3", "3600"), start));
  for (int i = 0; i < 2; ++i) submit(erasure({{"ios_advertising_id", "IDFA-" + std::to_string(i)}}));
  EXPECT_TRUE(claim(start).empty());
  EXPECT_EQ(e().next_due().value(), start + 1h);
  submit(erasure({{"ios_advertising_id", "IDFA-2"}}));  // the third id fills the batch
  EXPECT_EQ(e().next_due().value(), start);
  auto full = claim(start);
  ASSERT_EQ(full.size(), 1u);
  EXPECT_EQ(full[0].subjects.size(), 3u);
  EXPECT_EQ(full[0].requests, 3u);
  EXPECT_EQ(full[0].attempt, 1u);
  record(full[0], {forward_verdict_kind::sent, {}, {}, {}}, start);
  const std::string late = submit(erasure({{"android_advertising_id", "adid-9"}}), start + 10min);
  EXPECT_TRUE(claim(start + 69min).empty());
  auto aged = claim(start + 70min);
  ASSERT_EQ(aged.size(), 1u);
  EXPECT_EQ(aged[0].subjects.size(), 1u);
  const auto report = record(aged[0], {forward_verdict_kind::sent, {}, {}, "job-1"}, start + 71min);
  EXPECT_EQ(report.sent, 1u);
  EXPECT_EQ(entry(late, "Devices").status, distribution_state::sent);
}

TEST_F(DistributionTest, SentQueuesACallbackCarryingTheEntries) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  body_spec s = erasure({{"email", "a@example.com"}});
  s.callback_urls = {"https://controller.example.com/cb"};
  const std::string id = submit(s);
  auto c = claim(start);
  ASSERT_EQ(c.size(), 1u);
  record(c[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 1s);
  const auto callbacks = testing::queued_callbacks(store_, ws, id);
  ASSERT_EQ(callbacks.size(), 2u);  // pending (with the entry pending), then the entry sent
  EXPECT_NE(callbacks[0].body.find(R"("status":"pending")"), std::string::npos);
  EXPECT_NE(callbacks[1].body.find(R"("status":"sent")"), std::string::npos);
  const std::string get = e().status(ws, id)->body;
  const auto ext = [](const std::string& body) {
    return boost::json::serialize(boost::json::parse(body).at("extensions"));
  };
  EXPECT_EQ(ext(callbacks[1].body), ext(get));
}

TEST_F(DistributionTest, RetryHonoursRetryAfterAndLostLeasesAreStale) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  const std::string id = submit(erasure({{"email", "a@example.com"}}));
  auto c = claim(start);
  ASSERT_EQ(c.size(), 1u);
  auto r = record(c[0], {forward_verdict_kind::retry, 120s, "HTTP 429", {}}, start + 1s);
  EXPECT_EQ(r.retried, 1u);
  EXPECT_EQ(entry(id, "People").status, distribution_state::pending);
  EXPECT_EQ(e().next_due().value(), start + 121s);
  EXPECT_TRUE(claim(start + 120s).empty());
  auto again = claim(start + 121s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempt, 2u);
  // Its lease expires: claimed anew; the first claim's outcome is stale.
  auto third = claim(start + 121s + options_.distribution.lease);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(record(again[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 200s).stale, 1u);
  EXPECT_EQ(entry(id, "People").status, distribution_state::pending);
  EXPECT_EQ(record(third[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 200s).sent, 1u);
  EXPECT_EQ(entry(id, "People").status, distribution_state::sent);
}

TEST_F(DistributionTest, TooLargeSplitsTheBatchAndRemembersTheSize) {
  ASSERT_TRUE(e().add_output(ws, devices("Devices", "4", "3600"), start));
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(submit(erasure({{"ios_advertising_id", "IDFA-" + std::to_string(i)}})));
  auto c = claim(start);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(record(c[0], {forward_verdict_kind::too_large, {}, "HTTP 413", {}}, start).split, 1u);
  auto halves = claim(start);
  ASSERT_EQ(halves.size(), 2u);
  EXPECT_EQ(halves[0].subjects.size(), 2u);
  EXPECT_EQ(halves[1].subjects.size(), 2u);
  EXPECT_EQ(e().outputs(ws)->at(0).max_items, 2u);
  for (const auto& h : halves) record(h, {forward_verdict_kind::sent, {}, {}, {}}, start);
  for (const auto& id : ids) EXPECT_EQ(entry(id, "Devices").status, distribution_state::sent);
  // A 413 with forwards queued behind the batch: the smaller size sends them without waiting
  // for the window.
  for (int i = 0; i < 5; ++i) submit(erasure({{"ios_advertising_id", "IDFA-q" + std::to_string(i)}}));
  auto queued = claim(start);
  ASSERT_EQ(queued.size(), 2u);  // 2 + 2 at the learned size; the fifth waits for the window
  for (const auto& q : queued) record(q, {forward_verdict_kind::sent, {}, {}, {}}, start);
  ASSERT_TRUE(e().update_output(
      ws, "Devices", {.settings = std::map<std::string, std::string>{{"max_items", "4"}, {"max_age_s", "3600"}}}, start));
  for (int i = 0; i < 3; ++i) submit(erasure({{"ios_advertising_id", "IDFA-r" + std::to_string(i)}}));
  auto four = claim(start);  // the fifth and three more fill a batch of 4
  ASSERT_EQ(four.size(), 1u);
  for (int i = 0; i < 3; ++i) submit(erasure({{"ios_advertising_id", "IDFA-s" + std::to_string(i)}}));
  record(four[0], {forward_verdict_kind::too_large, {}, "HTTP 413", {}}, start);
  auto after_split = claim(start);
  EXPECT_EQ(after_split.size(), 3u);  // two halves, and two of the three queued at the size of 2
  for (const auto& c : after_split) record(c, {forward_verdict_kind::sent, {}, {}, {}}, start);
  auto leftover = claim(start + 1h);  // the last one, when its window closes
  ASSERT_EQ(leftover.size(), 1u);
  record(leftover[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 1h);
  // A single request too large fails for good.
  ASSERT_TRUE(e().update_output(ws, "Devices", {.settings = std::map<std::string, std::string>{{"max_items", "1"}}}, start));
  const std::string one = submit(erasure({{"ios_advertising_id", "IDFA-x"}}));
  auto single = claim(start);
  ASSERT_EQ(single.size(), 1u);
  record(single[0], {forward_verdict_kind::too_large, {}, {}, {}}, start);
  EXPECT_EQ(entry(one, "Devices"), (distribution_entry{"devices.example", "Devices", distribution_state::failed,
                                                       "The partner refused a single request as too large."}));
}

TEST_F(DistributionTest, BadCredentialsFailTheBatchAndOpenTheCircuitUntilTheOutputChanges) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  ASSERT_TRUE(e().add_output(ws, devices("Devices", "1", "0"), start));
  const std::string first = submit(erasure({{"email", "a@example.com"}, {"ios_advertising_id", "IDFA-1"}}));
  auto c = claim(start);
  ASSERT_EQ(c.size(), 2u);
  const auto& people_batch = c[0].output == "People" ? c[0] : c[1];
  const auto& device_batch = c[0].output == "People" ? c[1] : c[0];
  record(people_batch, {forward_verdict_kind::bad_credentials, {}, "invalid credentials (HTTP 401)", {}}, start);
  record(device_batch, {forward_verdict_kind::sent, {}, {}, {}}, start);
  EXPECT_EQ(entry(first, "People"), (distribution_entry{"people.example", "People", distribution_state::failed,
                                                        "invalid credentials (HTTP 401)"}));
  EXPECT_EQ(entry(first, "Devices").status, distribution_state::sent);
  auto listed = e().outputs(ws).value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_FALSE(listed[0].circuit_open);  // Devices
  EXPECT_TRUE(listed[1].circuit_open);
  EXPECT_EQ(listed[1].circuit_reason, "invalid credentials (HTTP 401)");
  EXPECT_EQ(listed[1].dead_batches, 1u);
  EXPECT_EQ(e().forward_queue()->circuits_open, 1u);
  // Held while open: a new erasure waits (pending) for People, Devices goes on.
  const std::string second = submit(erasure({{"email", "b@example.com"}, {"ios_advertising_id", "IDFA-2"}}));
  auto during = claim(start + 1h);
  ASSERT_EQ(during.size(), 1u);
  EXPECT_EQ(during[0].output, "Devices");
  record(during[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 1h);
  EXPECT_EQ(entry(second, "People").status, distribution_state::pending);
  // A new key closes the circuit; the queue falls due; the dead batch waits for a redrive.
  auto fixed = e().update_output(ws, "People", {.credentials = std::map<std::string, std::string>{{"key", "people-secret-0003"}}},
                                 start + 2h);
  ASSERT_TRUE(fixed);
  EXPECT_FALSE(fixed->circuit_open);
  EXPECT_EQ(fixed->masked_credentials.at("key"), "****0003");
  auto after = claim(start + 2h);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].config.credentials.at("key"), "people-secret-0003");
  record(after[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 2h);
  EXPECT_EQ(entry(second, "People").status, distribution_state::sent);
  const auto dead = e().dead_forwards(ws).value();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].subject_request_ids, std::vector{first});
  EXPECT_EQ(dead[0].last_error, "invalid credentials (HTTP 401)");
  EXPECT_EQ(e().redrive_forwards(start + 3h, ws).value(), 1u);
  expect_consistent();
  EXPECT_EQ(entry(first, "People").status, distribution_state::pending);
  auto redriven = claim(start + 3h);
  ASSERT_EQ(redriven.size(), 1u);
  record(redriven[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 3h);
  EXPECT_EQ(entry(first, "People").status, distribution_state::sent);
}

TEST_F(DistributionTest, RetriesRunOutIntoADeadLetter) {
  options_.distribution.max_attempts = 3;
  ASSERT_TRUE(e().add_output(ws, people(), start));
  const std::string id = submit(erasure({{"email", "a@example.com"}}));
  timestamp now = start;
  for (int i = 0; i < 3; ++i) {
    auto due = e().next_due().value();
    ASSERT_TRUE(due);
    now = std::max(now, *due);
    auto c = claim(now);
    ASSERT_EQ(c.size(), 1u);
    record(c[0], {forward_verdict_kind::retry, {}, "HTTP 503", {}}, now);
  }
  EXPECT_EQ(entry(id, "People"), (distribution_entry{"people.example", "People", distribution_state::failed,
                                                     "Gave up after 3 attempts: HTTP 503"}));
  EXPECT_EQ(e().forward_queue()->dead_batches, 1u);
  EXPECT_TRUE(claim(start + 24h).empty());
}

TEST_F(DistributionTest, CancellingRecallsNothing) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  ASSERT_TRUE(e().add_output(ws, devices(), start));
  const std::string id = submit(erasure({{"email", "a@example.com"}, {"ios_advertising_id", "IDFA-1"}}));
  auto c = claim(start);
  ASSERT_EQ(c.size(), 1u);
  record(c[0], {forward_verdict_kind::sent, {}, {}, {}}, start);
  ASSERT_TRUE(e().cancel(ws, id, start + 1min));
  expect_consistent();
  EXPECT_EQ(entry(id, "People").status, distribution_state::sent);
  auto devices_batch = claim(start + 1h);  // the Kochava-like queue still goes out
  ASSERT_EQ(devices_batch.size(), 1u);
  record(devices_batch[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 1h);
  EXPECT_EQ(entry(id, "Devices").status, distribution_state::sent);
  EXPECT_EQ(e().status(ws, id)->status, request_status::cancelled);
}

TEST_F(DistributionTest, RemovingAnOutputFailsWhatItHadNotSent) {
  ASSERT_TRUE(e().add_output(ws, devices(), start));
  const std::string id = submit(erasure({{"ios_advertising_id", "IDFA-1"}}));
  ASSERT_TRUE(e().remove_output(ws, "Devices", start + 1min));
  expect_consistent();
  EXPECT_EQ(entry(id, "Devices"), (distribution_entry{"devices.example", "Devices", distribution_state::failed,
                                                      "The output was removed before this request was forwarded."}));
  EXPECT_TRUE(e().outputs(ws)->empty());
  EXPECT_EQ(e().remove_output(ws, "Devices", start).error(), errc::not_found);
}

TEST_F(DistributionTest, OutputsAreValidatedAndCredentialsAreNeverListed) {
  auto unknown = people();
  unknown.partner = "acme";
  EXPECT_EQ(e().add_output(ws, unknown, start).error().message(), "partner: unknown partner 'acme' (known: devices, people).");
  auto nameless = people("");
  EXPECT_EQ(e().add_output(ws, nameless, start).error(), errc::invalid_request);
  auto keyless = people();
  keyless.config.credentials.clear();
  EXPECT_EQ(e().add_output(ws, keyless, start).error().message(), "credentials: key is required.");
  auto public_only = people();
  public_only.config.endpoint = "http://127.0.0.1:9";
  EXPECT_EQ(e().add_output(ws, public_only, start).error(), errc::invalid_request);
  ASSERT_TRUE(e().add_output(ws, people(), start));
  EXPECT_EQ(e().add_output(ws, people(), start).error().message(),
            "name: an output named 'People' already exists in this workspace.");
  const auto listed = e().outputs().value();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].masked_credentials, (std::map<std::string, std::string>{{"key", "****0002"}}));
  EXPECT_EQ(listed[0].workspace, ws);
  EXPECT_EQ(e().update_output(ws, "Nope", {}, start).error(), errc::not_found);
}

TEST_F(DistributionTest, ALeaseHolderThatRestartsReleasesItsBatches) {
  ASSERT_TRUE(e().add_output(ws, people(), start));
  const std::string id = submit(erasure({{"email", "a@example.com"}}));
  ASSERT_EQ(claim(start).size(), 1u);
  EXPECT_TRUE(claim(start + 1s).empty());
  engine_.reset();  // a new engine over the same store: nothing is lost
  EXPECT_EQ(e().release_forward_leases("node-a", start + 2s).value(), 1u);
  auto again = claim(start + 2s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempt, 1u);
  record(again[0], {forward_verdict_kind::sent, {}, {}, {}}, start + 3s);
  EXPECT_EQ(entry(id, "People").status, distribution_state::sent);
}

}  // namespace
}  // namespace opendsr
