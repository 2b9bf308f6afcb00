// The engine on the memory adapter: lifecycles across 21 simulated days, intake boundaries
// (duplicate, conflict, group), cancellation, the documents' exact bytes, restart, fault
// injection and fulfilment tasks.
#include <opendsr/engine.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/faulty_storage.hpp"
#include "../support/request_bodies.hpp"
#include "common/base64.hpp"

#include <gtest/gtest.h>

#include <map>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::at;
using testing::body_spec;
using testing::make_body;
using testing::uuid_v4;

constexpr std::string_view ws = "3622";
const std::string seed_id = "a7551968-d5d6-44b2-9831-815ac9017798";
const timestamp seed_received = at("2021-11-29T18:16:24.5568051Z");  // a Monday

class EngineTest : public ::testing::Test {
 protected:
  engine open(engine_options o = testing::test_options()) { return engine::open(store_, std::move(o)).value(); }

  void expect_consistent() {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }

  struct delivery {
    std::string url;
    std::string body;
    timestamp at;
  };

  // Drives time like a host does: whenever next_due() has come, ticks and delivers the due
  // callbacks (to receivers that answer 2xx, recorded in `delivered`), else moves the clock to
  // the next due time or by one hour, whichever is sooner, until `until`. Records each status
  // change of (ws, id) with the time it was observed.
  std::vector<std::pair<request_status, timestamp>> run_until(engine& e, timestamp until, std::string_view id,
                                                              std::vector<delivery>* delivered = nullptr) {
    std::vector<std::pair<request_status, timestamp>> seen{{e.status(ws, id)->status, clock_.now()}};
    while (clock_.now() < until) {
      auto due = e.next_due().value();
      if (due && *due <= clock_.now()) {
        const auto report = e.tick(clock_.now()).value();
        EXPECT_EQ(report.next_due, e.next_due().value());
        std::vector<callback_outcome> outcomes;
        const auto claimed = e.claim_callbacks(clock_.now(), 1000, "host").value();
        for (const auto& c : claimed) {
          if (delivered) delivered->push_back({c.url, c.body, clock_.now()});
          outcomes.push_back({c.entry_key, c.lease, true, "signature", {}});
        }
        EXPECT_TRUE(e.record_callbacks(outcomes, clock_.now()));
        due = e.next_due().value();
        EXPECT_TRUE(!due || *due > clock_.now());
      }
      const request_status s = e.status(ws, id)->status;
      if (s != seen.back().first) seen.emplace_back(s, clock_.now());
      timestamp next = clock_.now() + 1h;
      if (due && *due > clock_.now()) next = std::min(next, *due);
      clock_.set(std::min(next, until));
    }
    return seen;
  }

  memory_storage store_;
  manual_clock clock_{seed_received};
};

TEST_F(EngineTest, SeedExampleReceiptIsExact) {
  engine e = open();
  const auto r = e.submit(ws, testing::seed_body, seed_received);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->subject_request_id, seed_id);
  EXPECT_EQ(r->received_time, seed_received);
  EXPECT_EQ(r->expected_completion_time, at("2021-12-09T00:00:00Z"));
  EXPECT_EQ(r->body, R"({"expected_completion_time":"2021-12-09T00:00:00Z","received_time":"2021-11-29T18:16:24.556805Z","encoded_request":")" +
                         detail::base64_encode(testing::seed_body) +
                         R"(","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798","controller_id":"3622"})");
  expect_consistent();
}

TEST_F(EngineTest, StatusObjectCarriesEveryKey) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, testing::seed_body, seed_received));
  const auto s = e.status(ws, seed_id);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, request_status::pending);
  EXPECT_EQ(s->type, request_type::erasure);
  EXPECT_EQ(s->group_id, "my-group");
  EXPECT_EQ(s->body,
            R"({"controller_id":"3622","expected_completion_time":"2021-12-09T00:00:00Z","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798","group_id":"my-group","request_status":"pending","api_version":"3.0","results_url":null,"extensions":null})");
  // The same state renders the same bytes.
  EXPECT_EQ(e.status(ws, seed_id)->body, s->body);
  const auto no_group = e.submit(ws, make_body({.id = uuid_v4(1)}), seed_received);
  ASSERT_TRUE(no_group);
  EXPECT_NE(e.status(ws, uuid_v4(1))->body.find(R"("group_id":null)"), std::string::npos);
}

TEST_F(EngineTest, CreationCallbackIsQueuedForTheNextFlush) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, testing::seed_body, seed_received));
  const auto queued = testing::queued_callbacks(store_, ws, seed_id);
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].entry.first_due, at("2021-11-29T18:30:00Z"));
  EXPECT_EQ(queued[0].url, "https://exampleurl.com/opendsr/callbacks");
  EXPECT_EQ(queued[0].body,
            R"({"controller_id":"3622","expected_completion_time":"2021-12-09T00:00:00Z","status_callback_url":"https://exampleurl.com/opendsr/callbacks","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798","request_status":"pending","results_url":null,"extensions":null,"api_version":"3.0","group_id":"my-group"})");
}

TEST_F(EngineTest, DiscoveryIsExact) {
  engine e = open();
  EXPECT_EQ(e.discovery(),
            R"({"api_version":"3.0","supported_identities":[{"identity_type":"android_advertising_id","identity_format":"raw"},{"identity_type":"android_id","identity_format":"raw"},{"identity_type":"controller_customer_id","identity_format":"raw"},{"identity_type":"email","identity_format":"raw"},{"identity_type":"fire_advertising_id","identity_format":"raw"},{"identity_type":"ios_advertising_id","identity_format":"raw"},{"identity_type":"ios_vendor_id","identity_format":"raw"},{"identity_type":"microsoft_advertising_id","identity_format":"raw"},{"identity_type":"microsoft_publisher_id","identity_format":"raw"},{"identity_type":"roku_advertising_id","identity_format":"raw"},{"identity_type":"roku_publisher_id","identity_format":"raw"}],"supported_subject_request_types":["access","erasure","portability"],"processor_certificate":"https://opendsr.example.com/opendsr_cert.pem"})");
}

struct lifecycle_case {
  const char* type;
  bool skip_waiting_period;
  const char* processing_start;
  const char* completion;
};

class LifecycleTest : public EngineTest, public ::testing::WithParamInterface<lifecycle_case> {};

TEST_P(LifecycleTest, WalksTwentyOneDays) {
  const lifecycle_case& c = GetParam();
  engine e = open();
  const std::vector<std::string> urls = {"https://a.example/cb", "https://b.example/cb?x=1"};
  const std::string id = uuid_v4(7);
  const auto r = e.submit(ws, make_body({.id = id, .type = c.type, .skip_waiting_period = c.skip_waiting_period,
                                         .callback_urls = urls}),
                          seed_received);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->expected_completion_time, at(c.completion));
  EXPECT_EQ(e.next_due().value(), at("2021-11-29T18:30:00Z"));  // the creation's callbacks

  std::vector<delivery> delivered;
  const auto seen = run_until(e, seed_received + std::chrono::days(21), id, &delivered);
  const std::vector<std::pair<request_status, timestamp>> expected = {
      {request_status::pending, seed_received},
      {request_status::in_progress, at(c.processing_start)},
      {request_status::completed, at(c.completion)}};
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(e.next_due().value(), std::nullopt);

  const auto s = e.status(ws, id).value();
  EXPECT_EQ(s.expected_completion_time, at(c.completion));
  EXPECT_EQ(s.results_url, std::nullopt);

  // Every transition, creation included, sent one callback per URL, in order, at the flush that
  // followed it; none is left in the outbox.
  ASSERT_EQ(delivered.size(), 6u);
  const char* statuses[] = {"pending", "in_progress", "completed"};
  const timestamp dues[] = {at("2021-11-29T18:30:00Z"), at(c.processing_start), at(c.completion)};
  for (std::size_t i = 0; i < delivered.size(); ++i) {
    EXPECT_EQ(delivered[i].url, urls[i % 2]);
    EXPECT_EQ(delivered[i].at, dues[i / 2]);
    EXPECT_NE(delivered[i].body.find(std::string(R"("request_status":")") + statuses[i / 2] + '"'), std::string::npos);
    EXPECT_NE(delivered[i].body.find(R"("status_callback_url":")" + urls[i % 2] + '"'), std::string::npos);
  }
  EXPECT_TRUE(testing::queued_callbacks(store_, ws, id).empty());
  expect_consistent();
}

INSTANTIATE_TEST_SUITE_P(
    EveryType, LifecycleTest,
    ::testing::Values(
        lifecycle_case{"erasure", false, "2021-12-07T00:00:00Z", "2021-12-09T00:00:00Z"},
        lifecycle_case{"erasure", true, "2021-11-30T00:00:00Z", "2021-12-02T00:00:00Z"},
        lifecycle_case{"access", false, "2021-12-02T00:00:00Z", "2021-12-04T00:00:00Z"},
        lifecycle_case{"access", true, "2021-12-02T00:00:00Z", "2021-12-04T00:00:00Z"},
        lifecycle_case{"portability", false, "2021-12-02T00:00:00Z", "2021-12-04T00:00:00Z"},
        lifecycle_case{"portability", true, "2021-12-02T00:00:00Z", "2021-12-04T00:00:00Z"}),
    [](const auto& info) {
      return std::string(info.param.type) + (info.param.skip_waiting_period ? "_skip_waiting" : "");
    });

TEST_F(EngineTest, CancelInsideTheWindow) {
  engine e = open();
  const std::string id = uuid_v4(1);
  ASSERT_TRUE(e.submit(ws, make_body({.id = id, .callback_urls = {"https://a.example/cb"}}), seed_received));
  const timestamp when = at("2021-12-06T23:59:59.999999Z");  // the last instant of the window
  clock_.set(when);
  ASSERT_TRUE(e.tick(when));
  const auto c = e.cancel(ws, id, when);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->received_time, when);
  EXPECT_EQ(c->body, R"({"expected_completion_time":null,"received_time":"2021-12-06T23:59:59.999999Z","subject_request_id":")" +
                         id + R"(","controller_id":"3622"})");
  const auto s = e.status(ws, id).value();
  EXPECT_EQ(s.status, request_status::cancelled);
  EXPECT_EQ(s.expected_completion_time, std::nullopt);
  EXPECT_NE(s.body.find(R"("expected_completion_time":null)"), std::string::npos);
  // What is left to do is the callbacks: the creation's (past due), then the cancellation's.
  EXPECT_EQ(e.next_due().value(), at("2021-11-29T18:30:00Z"));
  EXPECT_EQ(testing::deliver_due(e, when), 1u);
  EXPECT_EQ(e.next_due().value(), at("2021-12-07T00:00:00Z"));
  const auto queued = testing::queued_callbacks(store_, ws, id);
  ASSERT_EQ(queued.size(), 1u);  // the creation's was delivered
  EXPECT_EQ(queued[0].entry.first_due, at("2021-12-07T00:00:00Z"));
  EXPECT_NE(queued[0].body.find(R"("request_status":"cancelled")"), std::string::npos);
  EXPECT_NE(queued[0].body.find(R"("expected_completion_time":null)"), std::string::npos);
  EXPECT_EQ(testing::deliver_due(e, at("2021-12-07T00:00:00Z")), 1u);
  EXPECT_EQ(e.next_due().value(), std::nullopt);
  // Nothing happens to it later.
  ASSERT_TRUE(e.tick(seed_received + std::chrono::days(30)));
  EXPECT_EQ(e.status(ws, id)->status, request_status::cancelled);
  expect_consistent();
}

TEST_F(EngineTest, CancelOutsideTheWindowIsRefusedEvenBeforeTheTick) {
  engine e = open();
  const std::string id = uuid_v4(1);
  ASSERT_TRUE(e.submit(ws, make_body({.id = id}), seed_received));
  // The window closed at 2021-12-07T00:00Z; no tick has run since.
  const auto c = e.cancel(ws, id, at("2021-12-07T00:00:00Z"));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), errc::invalid_operation);
  EXPECT_EQ(c.error().message(), "The request " + id +
                                     " cannot be cancelled: its status is in_progress, and only a pending request can.");
  // A refused cancel changes nothing; the tick moves it on.
  EXPECT_EQ(e.status(ws, id)->status, request_status::pending);
  ASSERT_TRUE(e.tick(at("2021-12-07T00:00:00Z")));
  EXPECT_EQ(e.status(ws, id)->status, request_status::in_progress);
  EXPECT_EQ(e.cancel(ws, id, at("2021-12-08T00:00:00Z")).error().code(), errc::invalid_operation);
  ASSERT_TRUE(e.tick(at("2021-12-09T00:00:00Z")));
  const auto done = e.cancel(ws, id, at("2021-12-10T00:00:00Z"));
  EXPECT_EQ(done.error().code(), errc::invalid_operation);
  EXPECT_NE(done.error().message().find("its status is completed"), std::string::npos);
  expect_consistent();
}

TEST_F(EngineTest, SkipWaitingPeriodWindowClosesAtTheNextMidnight) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .skip_waiting_period = true}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2), .identities = {{"email", "b@example.com"}},
                                      .skip_waiting_period = true}),
                       seed_received));
  EXPECT_TRUE(e.cancel(ws, uuid_v4(1), at("2021-11-29T23:59:59Z")));
  EXPECT_EQ(e.cancel(ws, uuid_v4(2), at("2021-11-30T00:00:00Z")).error().code(), errc::invalid_operation);
}

TEST_F(EngineTest, CancelTwiceIsRefused) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1)}), seed_received));
  ASSERT_TRUE(e.cancel(ws, uuid_v4(1), seed_received + 1h));
  const auto again = e.cancel(ws, uuid_v4(1), seed_received + 2h);
  EXPECT_EQ(again.error().code(), errc::invalid_operation);
  EXPECT_NE(again.error().message().find("its status is cancelled"), std::string::npos);
}

TEST_F(EngineTest, UnknownIdsAndOtherWorkspacesAreNotFound) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .group_id = "g"}), seed_received));
  for (std::string_view other : {"3623", "362", "36222"}) {
    EXPECT_EQ(e.status(other, uuid_v4(1)).error().code(), errc::not_found);
    EXPECT_EQ(e.cancel(other, uuid_v4(1), seed_received).error().code(), errc::not_found);
    EXPECT_EQ(e.group(other, "g")->body, "[]");
  }
  EXPECT_EQ(e.status(ws, uuid_v4(2)).error().code(), errc::not_found);
  EXPECT_EQ(e.status(ws, "").error().code(), errc::not_found);
  EXPECT_EQ(e.status(ws, std::string(5000, 'x')).error().code(), errc::not_found);
  EXPECT_EQ(e.cancel(ws, uuid_v4(2), seed_received).error().code(), errc::not_found);
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::pending);
  EXPECT_EQ(e.status(ws, uuid_v4(2)).error().message(), "The specified subject request id could not be found.");
}

TEST_F(EngineTest, DuplicateIdIsRefusedInEveryStatusAndCheckedFirst) {
  engine e = open();
  // One request per status: pending, in_progress, completed, cancelled.
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .identities = {{"email", "1@x"}}}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2), .identities = {{"email", "2@x"}}}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(3), .identities = {{"email", "3@x"}}, .skip_waiting_period = true}),
                       seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(4), .identities = {{"email", "4@x"}}, .skip_waiting_period = true}),
                       seed_received));
  ASSERT_TRUE(e.cancel(ws, uuid_v4(2), seed_received));
  ASSERT_TRUE(e.tick(at("2021-11-30T00:00:00Z")));
  ASSERT_TRUE(e.tick(at("2021-12-02T00:00:00Z")));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(5), .identities = {{"email", "5@x"}}, .skip_waiting_period = true}),
                       at("2021-12-02T12:00:00Z")));
  ASSERT_TRUE(e.tick(at("2021-12-03T00:00:00Z")));
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::pending);
  EXPECT_EQ(e.status(ws, uuid_v4(2))->status, request_status::cancelled);
  EXPECT_EQ(e.status(ws, uuid_v4(3))->status, request_status::completed);
  EXPECT_EQ(e.status(ws, uuid_v4(5))->status, request_status::in_progress);
  for (int n : {1, 2, 3, 5}) {
    // Same identities as the original (which would also conflict while it is in flight), and
    // a group: the duplicate check wins.
    const auto again = e.submit(ws, make_body({.id = uuid_v4(n), .identities = {{"email", std::to_string(n) + "@x"}}}),
                                at("2021-12-03T00:00:00Z"));
    ASSERT_FALSE(again) << n;
    EXPECT_EQ(again.error().code(), errc::duplicate_request_id);
    EXPECT_EQ(again.error().message(), "Subject request already exists.");
  }
  // Another workspace may use the same id.
  EXPECT_TRUE(e.submit("other", make_body({.id = uuid_v4(1), .identities = {{"email", "1@x"}}}), seed_received));
  expect_consistent();
}

TEST_F(EngineTest, ConflictNamesTheBlockingRequestRegardlessOfIdentityOrder) {
  engine e = open();
  const body_spec first{.id = uuid_v4(1),
                        .identities = {{"email", "a@example.com"}, {"ios_advertising_id", "IDFA"}},
                        .extension_identities = {{"other", "o1"}, {"mobile_number", "+1555"}}};
  ASSERT_TRUE(e.submit(ws, make_body(first), seed_received));
  body_spec reordered = first;
  reordered.id = uuid_v4(2);
  std::reverse(reordered.identities.begin(), reordered.identities.end());
  std::reverse(reordered.extension_identities.begin(), reordered.extension_identities.end());
  reordered.skip_waiting_period = true;      // not part of the comparison
  reordered.group_id = "some-group";         // neither
  const auto conflict = e.submit(ws, make_body(reordered), seed_received + 1h);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code(), errc::identity_conflict);
  EXPECT_EQ(conflict.error().message(),
            "There is an in-progress request with the same identities, extensions and type: " + uuid_v4(1) + ".");
  // Nothing of the refused request was kept, not even its group.
  EXPECT_EQ(e.group(ws, "some-group")->body, "[]");
  expect_consistent();

  // Different type, different workspace, or a different identity set: accepted.
  body_spec other_type = reordered;
  other_type.id = uuid_v4(3);
  other_type.type = "access";
  EXPECT_TRUE(e.submit(ws, make_body(other_type), seed_received + 1h));
  EXPECT_TRUE(e.submit("other-workspace", make_body(reordered), seed_received + 1h));
  body_spec subset = first;
  subset.id = uuid_v4(4);
  subset.extension_identities.pop_back();
  EXPECT_TRUE(e.submit(ws, make_body(subset), seed_received + 1h));
  body_spec other_value = first;
  other_value.id = uuid_v4(5);
  other_value.identities[0].second = "A@example.com";  // values compare exactly
  EXPECT_TRUE(e.submit(ws, make_body(other_value), seed_received + 1h));

  // Still refused while the first is in progress; accepted once it completed.
  reordered.id = uuid_v4(6);
  ASSERT_TRUE(e.tick(at("2021-12-07T00:00:00Z")));
  EXPECT_EQ(e.submit(ws, make_body(reordered), at("2021-12-07T00:00:00Z")).error().code(), errc::identity_conflict);
  ASSERT_TRUE(e.tick(at("2021-12-09T00:00:00Z")));
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::completed);
  EXPECT_TRUE(e.submit(ws, make_body(reordered), at("2021-12-09T00:00:00Z")));
  expect_consistent();
}

TEST_F(EngineTest, ConflictEndsWithCancellation) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1)}), seed_received));
  EXPECT_EQ(e.submit(ws, make_body({.id = uuid_v4(2)}), seed_received).error().code(), errc::identity_conflict);
  ASSERT_TRUE(e.cancel(ws, uuid_v4(1), seed_received + 1h));
  EXPECT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2)}), seed_received + 1h));
  EXPECT_EQ(e.submit(ws, make_body({.id = uuid_v4(3)}), seed_received).error().message(),
            "There is an in-progress request with the same identities, extensions and type: " + uuid_v4(2) + ".");
  expect_consistent();
}

TEST_F(EngineTest, GroupHoldsAtMost150InSubmissionOrder) {
  engine e = open();
  auto member = [](int n, std::string group) {
    return make_body({.id = uuid_v4(n), .identities = {{"email", std::to_string(n) + "@x"}}, .group_id = group});
  };
  for (int n = 1; n <= 150; ++n) ASSERT_TRUE(e.submit(ws, member(1000 - n, "g"), seed_received)) << n;
  const auto full = e.submit(ws, member(5000, "g"), seed_received);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), errc::group_full);
  EXPECT_EQ(full.error().message(), "The group already holds the maximum of 150 requests.");
  // The duplicate check still comes first; the group check before the conflict check.
  EXPECT_EQ(e.submit(ws, member(999, "g"), seed_received).error().code(), errc::duplicate_request_id);
  EXPECT_EQ(e.submit(ws, make_body({.id = uuid_v4(5001), .identities = {{"email", "999@x"}}, .group_id = "g"}),
                     seed_received)
                .error()
                .code(),
            errc::group_full);
  // A cancelled member still counts.
  ASSERT_TRUE(e.cancel(ws, uuid_v4(999), seed_received + 1h));
  EXPECT_EQ(e.submit(ws, member(5002, "g"), seed_received).error().code(), errc::group_full);

  const auto g = e.group(ws, "g").value();
  ASSERT_EQ(g.members.size(), 150u);
  for (int n = 1; n <= 150; ++n) EXPECT_EQ(g.members[n - 1].subject_request_id, uuid_v4(1000 - n));
  EXPECT_EQ(g.members[0].status, request_status::cancelled);
  EXPECT_EQ(g.body.front(), '[');
  EXPECT_EQ(g.body.substr(1, g.members[0].body.size()), g.members[0].body);
  EXPECT_EQ(g.body.size(), 2 + 149 + [&] {
    std::size_t n = 0;
    for (const auto& m : g.members) n += m.body.size();
    return n;
  }());
  // Groups are per workspace; another group is unaffected; an unknown group is empty.
  EXPECT_TRUE(e.submit("other", member(1, "g"), seed_received));
  EXPECT_TRUE(e.submit(ws, member(2, "g2"), seed_received));
  EXPECT_EQ(e.group(ws, "unknown")->body, "[]");
  EXPECT_TRUE(e.group(ws, "unknown")->members.empty());
  expect_consistent();
}

TEST_F(EngineTest, LongWorkspaceAndGroupIdsFitTheKeyLimit) {
  engine e = open();
  std::string group;
  for (int i = 0; i < 256; ++i) group += "\xf0\x9f\x98\x80";  // 256 code points, 1024 bytes
  const std::string workspace(3000, 'w');
  const auto r = e.submit(workspace, make_body({.id = uuid_v4(1), .callback_urls = {"https://a.example/cb"},
                                                .group_id = group}),
                          seed_received);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(e.group(workspace, group)->members.size(), 1u);
  EXPECT_EQ(e.status(workspace, uuid_v4(1))->group_id, group);
  EXPECT_EQ(e.status(std::string(2999, 'w') + "x", uuid_v4(1)).error().code(), errc::not_found);
  ASSERT_TRUE(e.tick(seed_received + std::chrono::days(21)));
  EXPECT_EQ(e.status(workspace, uuid_v4(1))->status, request_status::completed);
  expect_consistent();
}

TEST_F(EngineTest, WorkspaceMustBeNonEmptyUtf8) {
  engine e = open();
  for (std::string_view bad : {std::string_view(), std::string_view("\xff")}) {
    EXPECT_EQ(e.submit(bad, make_body({.id = uuid_v4(1)}), seed_received).error().code(), errc::invalid_argument);
    EXPECT_EQ(e.status(bad, uuid_v4(1)).error().code(), errc::invalid_argument);
    EXPECT_EQ(e.group(bad, "g").error().code(), errc::invalid_argument);
    EXPECT_EQ(e.cancel(bad, uuid_v4(1), seed_received).error().code(), errc::invalid_argument);
  }
  EXPECT_EQ(testing::key_count(store_), 2u);  // the schema entry and the results key only
}

TEST_F(EngineTest, InvalidBodiesAreRefusedBeforeStorage) {
  engine e = open();
  EXPECT_EQ(e.submit(ws, "{", seed_received).error().code(), errc::invalid_json);
  EXPECT_EQ(e.submit(ws, R"({"regulation":"gdpr"})", seed_received).error().code(), errc::invalid_request);
  EXPECT_EQ(testing::key_count(store_), 2u);  // the schema entry and the results key
}

TEST_F(EngineTest, BatchRunsInOneTransactionWithOneResultEach) {
  testing::faulty_storage faulty(store_);
  engine e = engine::open(faulty, testing::test_options()).value();
  const std::size_t writes_before = faulty.write_transactions();
  const std::string a = make_body({.id = uuid_v4(1)});
  const std::string a_again = make_body({.id = uuid_v4(1), .identities = {{"email", "x@x"}}});
  const std::string conflicting = make_body({.id = uuid_v4(2)});
  const std::string b = make_body({.id = uuid_v4(3), .identities = {{"email", "b@x"}}});
  const submission batch[] = {{ws, a, seed_received},
                              {ws, a_again, seed_received},
                              {ws, "not json", seed_received},
                              {ws, conflicting, seed_received},
                              {"", b, seed_received},
                              {ws, b, seed_received + 1s}};
  const auto results = e.submit_batch(batch);
  ASSERT_EQ(results.size(), 6u);
  EXPECT_TRUE(results[0]);
  EXPECT_EQ(results[1].error().code(), errc::duplicate_request_id);
  EXPECT_EQ(results[2].error().code(), errc::invalid_json);
  EXPECT_EQ(results[3].error().code(), errc::identity_conflict);
  EXPECT_EQ(results[4].error().code(), errc::invalid_argument);
  ASSERT_TRUE(results[5]);
  EXPECT_EQ(results[5]->received_time, seed_received + 1s);
  EXPECT_EQ(faulty.write_transactions() - writes_before, 1u);
  EXPECT_TRUE(e.submit_batch({}).empty());
  expect_consistent();
}

TEST_F(EngineTest, CommitConflictsAreRetried) {
  testing::faulty_storage faulty(store_);
  engine_options o = testing::test_options();
  o.max_transaction_attempts = 3;
  engine e = engine::open(faulty, o).value();
  faulty.fail_next_commits(2, errc::storage_conflict);
  const std::size_t writes_before = faulty.write_transactions();
  const auto r = e.submit(ws, make_body({.id = uuid_v4(1), .callback_urls = {"https://a.example/cb"}}), seed_received);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(faulty.write_transactions() - writes_before, 3u);
  EXPECT_EQ(testing::queued_callbacks(store_, ws, uuid_v4(1)).size(), 1u);  // written once
  expect_consistent();

  // Once the attempts run out, the conflict is the answer and nothing is kept.
  faulty.fail_next_commits(3, errc::storage_conflict);
  const std::size_t keys_before = testing::key_count(store_);
  EXPECT_EQ(e.submit(ws, make_body({.id = uuid_v4(2), .identities = {{"email", "2@x"}}}), seed_received)
                .error()
                .code(),
            errc::storage_conflict);
  EXPECT_EQ(testing::key_count(store_), keys_before);

  // Cancel and tick retry too.
  faulty.fail_next_commits(2, errc::storage_conflict);
  EXPECT_TRUE(e.cancel(ws, uuid_v4(1), seed_received + 1h));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(3), .identities = {{"email", "3@x"}}}), seed_received));
  faulty.fail_next_commits(2, errc::storage_conflict);
  EXPECT_EQ(e.tick(at("2021-12-07T00:00:00Z"))->transitions, 1u);
  expect_consistent();
}

TEST_F(EngineTest, FailedCommitLeavesNothing) {
  testing::faulty_storage faulty(store_);
  engine e = engine::open(faulty, testing::test_options()).value();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .group_id = "g"}), seed_received));
  const std::size_t keys_before = testing::key_count(store_);

  faulty.fail_next_commits(1, errc::storage_io);
  const std::string b2 = make_body({.id = uuid_v4(2), .identities = {{"email", "2@x"}}, .group_id = "g"});
  const std::string b3 = make_body({.id = uuid_v4(3), .identities = {{"email", "3@x"}}});
  const submission batch[] = {{ws, b2, seed_received}, {ws, "{}", seed_received}, {ws, b3, seed_received}};
  const auto results = e.submit_batch(batch);
  EXPECT_EQ(results[0].error().code(), errc::storage_io);
  EXPECT_EQ(results[1].error().code(), errc::invalid_request);  // its own error, not the storage's
  EXPECT_EQ(results[2].error().code(), errc::storage_io);
  EXPECT_EQ(testing::key_count(store_), keys_before);

  faulty.fail_next_commits(1, errc::storage_io);
  EXPECT_EQ(e.cancel(ws, uuid_v4(1), seed_received).error().code(), errc::storage_io);
  faulty.fail_next_commits(1, errc::storage_full);
  EXPECT_EQ(e.tick(at("2021-12-07T00:00:00Z")).error().code(), errc::storage_full);
  EXPECT_EQ(testing::key_count(store_), keys_before);
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::pending);
  EXPECT_EQ(e.group(ws, "g")->members.size(), 1u);

  // The same operations succeed once the store works again.
  EXPECT_TRUE(e.submit(ws, b2, seed_received));
  EXPECT_EQ(e.tick(at("2021-12-07T00:00:00Z"))->transitions, 2u);
  expect_consistent();
}

TEST_F(EngineTest, RestartContinuesTheTimers) {
  {
    engine first = open();
    ASSERT_TRUE(first.submit(ws, make_body({.id = uuid_v4(1)}), seed_received));
    ASSERT_TRUE(first.submit(ws, make_body({.id = uuid_v4(2), .type = "access"}), seed_received));
    ASSERT_TRUE(first.tick(at("2021-12-02T00:00:00Z")));
  }
  engine second = open();
  EXPECT_EQ(second.status(ws, uuid_v4(2))->status, request_status::in_progress);
  EXPECT_EQ(second.next_due().value(), at("2021-12-04T00:00:00Z"));
  const auto report = second.tick(at("2021-12-10T00:00:00Z")).value();
  EXPECT_EQ(report.transitions, 3u);  // access completes; erasure starts and completes
  EXPECT_EQ(report.next_due, std::nullopt);
  EXPECT_EQ(second.status(ws, uuid_v4(1))->status, request_status::completed);
  EXPECT_EQ(second.status(ws, uuid_v4(2))->status, request_status::completed);
  expect_consistent();
}

TEST_F(EngineTest, TickWorksInBoundedBatches) {
  testing::faulty_storage faulty(store_);
  engine_options o = testing::test_options();
  o.tick_batch_size = 3;
  engine e = engine::open(faulty, o).value();
  for (int n = 0; n < 10; ++n)
    ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(n), .identities = {{"email", std::to_string(n) + "@x"}},
                                        .skip_waiting_period = true}),
                         seed_received + std::chrono::minutes(n)));
  EXPECT_EQ(e.tick(at("2021-11-29T23:59:59Z"))->transitions, 0u);
  const std::size_t writes_before = faulty.write_transactions();
  const auto report = e.tick(at("2021-11-30T00:00:00Z")).value();
  EXPECT_EQ(report.transitions, 10u);
  EXPECT_EQ(faulty.write_transactions() - writes_before, 4u);  // 3 + 3 + 3 + 1
  EXPECT_EQ(report.next_due, at("2021-12-02T00:00:00Z"));
  EXPECT_EQ(e.tick(at("2021-12-02T00:00:00Z"))->transitions, 10u);
  expect_consistent();
}

TEST_F(EngineTest, NextDueIsTheEarliestTimer) {
  engine e = open();
  EXPECT_EQ(e.next_due().value(), std::nullopt);
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1)}), seed_received));
  EXPECT_EQ(e.next_due().value(), at("2021-12-07T00:00:00Z"));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2), .type = "access"}), seed_received));
  EXPECT_EQ(e.next_due().value(), at("2021-12-02T00:00:00Z"));
  ASSERT_TRUE(e.cancel(ws, uuid_v4(2), seed_received));
  EXPECT_EQ(e.next_due().value(), at("2021-12-07T00:00:00Z"));
  const auto report = e.tick(at("2021-12-07T00:00:00Z")).value();
  EXPECT_EQ(report.transitions, 1u);
  EXPECT_EQ(report.next_due, at("2021-12-09T00:00:00Z"));
}

TEST_F(EngineTest, LateTickCatchesUpEveryDueTransition) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .callback_urls = {"https://a.example/cb"}}), seed_received));
  const timestamp late = at("2021-12-20T10:07:00Z");
  EXPECT_EQ(e.tick(late)->transitions, 2u);
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::completed);
  const auto queued = testing::queued_callbacks(store_, ws, uuid_v4(1));
  ASSERT_EQ(queued.size(), 3u);
  EXPECT_EQ(queued[1].entry.first_due, at("2021-12-20T10:15:00Z"));  // the next flush after the tick
  EXPECT_EQ(queued[2].entry.first_due, at("2021-12-20T10:15:00Z"));
  expect_consistent();
}

engine_options task_options() {
  engine_options o = testing::test_options();
  o.fulfilment.mode = fulfilment_mode::tasks;
  return o;
}

TEST_F(EngineTest, ScheduledModeCompletesWithoutTasks) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .type = "access"}), seed_received));
  ASSERT_TRUE(e.tick(at("2021-12-02T00:00:00Z")));
  EXPECT_EQ(e.status(ws, uuid_v4(1))->status, request_status::in_progress);
  EXPECT_TRUE(e.fulfilment_tasks()->empty());
  EXPECT_TRUE(e.claim_fulfilments(at("2021-12-02T00:00:00Z"), 10, "host")->empty());
  ASSERT_TRUE(e.tick(at("2021-12-04T00:00:00Z")));
  const auto s = e.status(ws, uuid_v4(1)).value();
  EXPECT_EQ(s.status, request_status::completed);
  EXPECT_EQ(s.results_url, std::nullopt);
  expect_consistent();  // includes: the ended request keeps no body
}

TEST_F(EngineTest, TaskIsQueuedAtProcessingStartAndCompletesWhenRecorded) {
  engine e = open(task_options());
  const std::string body = make_body({.id = uuid_v4(1), .type = "access",
                                      .identities = {{"email", "a@example.com"}, {"controller_customer_id", "c-1"}},
                                      .callback_urls = {"https://a.example/cb"}});
  ASSERT_TRUE(e.submit(ws, body, seed_received));
  EXPECT_TRUE(e.claim_fulfilments(at("2021-11-30T00:00:00Z"), 10, "host")->empty());  // still pending
  const timestamp start = at("2021-12-02T00:00:00Z");  // Thursday: access runs
  ASSERT_TRUE(e.tick(start));
  auto tasks = e.fulfilment_tasks().value();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].subject_request_id, uuid_v4(1));
  EXPECT_EQ(tasks[0].due, start);
  EXPECT_FALSE(tasks[0].claimed);
  EXPECT_EQ(e.next_due().value(), at("2021-11-29T18:30:00Z"));  // the creation's callback comes first
  expect_consistent();

  auto claimed = e.claim_fulfilments(start + 1s, 10, "host").value();
  ASSERT_EQ(claimed.size(), 1u);
  const fulfilment_job& job = claimed[0].job;
  EXPECT_EQ(job.controller_id, ws);
  EXPECT_EQ(job.subject_request_id, uuid_v4(1));
  EXPECT_EQ(job.type, request_type::access);
  ASSERT_EQ(job.identities.size(), 2u);  // parsed: in parse_request's order
  EXPECT_EQ(job.identities[0].type, identity_type::controller_customer_id);
  EXPECT_EQ(job.identities[0].value, "c-1");
  EXPECT_EQ(job.identities[1].type, identity_type::email);
  EXPECT_EQ(job.identities[1].value, "a@example.com");
  EXPECT_EQ(job.received_time, seed_received);
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(job.results_token.size(), 32u);
  EXPECT_EQ(job.results_token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_TRUE(e.claim_fulfilments(start + 2s, 10, "host")->empty());  // leased
  EXPECT_TRUE(e.fulfilment_tasks().value()[0].claimed);
  expect_consistent();

  // A wrong lease records nothing.
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(1), "other\n1", fulfilment_done{}}, start + 3s).value(),
            fulfilment_recorded::stale);
  const timestamp done_at = start + 1h;
  const std::string url = "https://dsr.example/v3/results/" + job.results_token;
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(1), claimed[0].lease, fulfilment_done{url}}, done_at).value(),
            fulfilment_recorded::completed);
  auto s = e.status(ws, uuid_v4(1)).value();
  EXPECT_EQ(s.status, request_status::completed);
  EXPECT_EQ(s.results_url, url);
  EXPECT_TRUE(e.fulfilment_tasks()->empty());
  const auto queued = testing::queued_callbacks(store_, ws, uuid_v4(1));
  ASSERT_FALSE(queued.empty());
  EXPECT_NE(queued.back().body.find(R"("request_status":"completed")"), std::string::npos);
  EXPECT_NE(queued.back().body.find(job.results_token), std::string::npos);
  // Recording again (a duplicate report) is stale: the task is gone.
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(1), claimed[0].lease, fulfilment_done{url}}, done_at).value(),
            fulfilment_recorded::stale);
  expect_consistent();

  // The link: this workspace only, valid for 7 days after completion, then expired.
  const results_link link = e.results(ws, job.results_token, done_at + std::chrono::days(6)).value();
  EXPECT_EQ(link.subject_request_id, uuid_v4(1));
  EXPECT_EQ(link.expires, done_at + std::chrono::days(7));
  EXPECT_FALSE(link.expired);
  EXPECT_TRUE(e.results(ws, job.results_token, done_at + std::chrono::days(7))->expired);
  EXPECT_EQ(e.results("other", job.results_token, done_at).error().code(), errc::not_found);
  EXPECT_EQ(e.results(ws, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", done_at).error().code(), errc::not_found);
  // Expiry is a timer: next_due reaches it once the callbacks are out.
  EXPECT_TRUE(e.expired_results(done_at + std::chrono::days(7) - 1us, 10)->empty());
  testing::deliver_due(e, done_at + std::chrono::days(1));
  EXPECT_EQ(e.next_due().value(), done_at + std::chrono::days(7));
  const std::vector<std::string> due = e.expired_results(done_at + std::chrono::days(7), 10).value();
  ASSERT_EQ(due, std::vector<std::string>{job.results_token});
  EXPECT_EQ(e.forget_expired_results(due).value(), 1u);
  EXPECT_EQ(e.forget_expired_results(due).value(), 0u);
  EXPECT_TRUE(e.expired_results(done_at + std::chrono::days(8), 10)->empty());
  EXPECT_TRUE(e.results(ws, job.results_token, done_at + std::chrono::days(8))->expired);  // 410, not 404
  EXPECT_EQ(e.next_due().value(), std::nullopt);
  expect_consistent();
}

TEST_F(EngineTest, TokensAreStablePerRequestAndDistinctAcrossRequests) {
  engine e = open(task_options());
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .type = "access"}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2), .type = "portability", .identities = {{"email", "b@example.com"}}}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(3), .identities = {{"email", "c@example.com"}}, .skip_waiting_period = true}), seed_received));
  const timestamp start = at("2021-12-02T00:00:00Z");
  ASSERT_TRUE(e.tick(start));
  auto first = e.claim_fulfilments(start, 10, "host").value();
  ASSERT_EQ(first.size(), 3u);
  std::map<std::string, std::string> tokens;
  for (const auto& c : first) tokens[c.job.subject_request_id] = c.job.results_token;
  EXPECT_TRUE(tokens[uuid_v4(3)].empty());  // erasure: no results
  EXPECT_NE(tokens[uuid_v4(1)], tokens[uuid_v4(2)]);
  // The lease expires (the runner died): claimed again, attempt 2, the same token.
  auto again = e.claim_fulfilments(start + std::chrono::minutes(30), 10, "host").value();
  ASSERT_EQ(again.size(), 3u);
  for (const auto& c : again) {
    EXPECT_EQ(c.job.attempt, 2u);
    EXPECT_EQ(c.job.results_token, tokens[c.job.subject_request_id]);
  }
  // The old lease is stale; the new one counts.
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(3), first[2].lease, fulfilment_done{}}, start + 31min).value(),
            fulfilment_recorded::stale);
  // Tokens survive a restart (the key is in the store).
  engine reopened = open(task_options());
  EXPECT_EQ(reopened.release_fulfilment_leases("host", start + 32min).value(), 3u);
  const auto after_restart = reopened.claim_fulfilments(start + 32min, 10, "host").value();
  ASSERT_EQ(after_restart.size(), 3u);
  for (const auto& c : after_restart)
    EXPECT_EQ(c.job.results_token, tokens[c.job.subject_request_id]);
  expect_consistent();
}

TEST_F(EngineTest, FailedJobIsRetriedAfterBackoffAndOverdueEstimateMoves) {
  engine_options o = task_options();
  engine e = open(o);
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .skip_waiting_period = true}), seed_received));
  const timestamp start = at("2021-11-30T00:00:00Z");
  ASSERT_TRUE(e.tick(start));
  auto claimed = e.claim_fulfilments(start, 10, "host").value();
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(1), claimed[0].lease, error(errc::storage_io, "disk full")}, start).value(),
            fulfilment_recorded::retrying);
  auto tasks = e.fulfilment_tasks().value();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].attempts, 1u);
  EXPECT_EQ(tasks[0].last_error, "disk full");
  EXPECT_FALSE(tasks[0].claimed);
  EXPECT_GE(tasks[0].due, start + o.fulfilment.min_retry_delay);
  EXPECT_LE(tasks[0].due, start + o.fulfilment.first_retry_delay);
  EXPECT_TRUE(e.claim_fulfilments(tasks[0].due - 1us, 10, "host")->empty());
  expect_consistent();

  // The estimate passes with the job not done: it moves a day on; the status stays.
  const timestamp estimate = e.status(ws, uuid_v4(1))->expected_completion_time.value();
  EXPECT_EQ(estimate, start + 48h);
  ASSERT_EQ(e.tick(estimate).value().transitions, 0u);
  auto s = e.status(ws, uuid_v4(1)).value();
  EXPECT_EQ(s.status, request_status::in_progress);
  EXPECT_EQ(s.expected_completion_time, estimate + 24h);
  expect_consistent();

  auto retried = e.claim_fulfilments(estimate, 10, "host").value();
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0].job.attempt, 2u);
  EXPECT_EQ(retried[0].job.identities.at(0).value, "subject@example.com");
  EXPECT_EQ(e.record_fulfilment({std::string(ws), uuid_v4(1), retried[0].lease, fulfilment_done{}}, estimate + 1h).value(),
            fulfilment_recorded::completed);
  s = e.status(ws, uuid_v4(1)).value();
  EXPECT_EQ(s.status, request_status::completed);
  EXPECT_EQ(s.results_url, std::nullopt);
  EXPECT_TRUE(e.expired_results(estimate + std::chrono::days(30), 10)->empty());  // an erasure has no results
  expect_consistent();
}

TEST_F(EngineTest, SwitchingToTasksQueuesTheRequestsAlreadyInProgress) {
  {
    engine scheduled = open();
    ASSERT_TRUE(scheduled.submit(ws, make_body({.id = uuid_v4(1), .skip_waiting_period = true}), seed_received));
    ASSERT_TRUE(scheduled.tick(at("2021-11-30T00:00:00Z")));
    EXPECT_TRUE(scheduled.fulfilment_tasks()->empty());
  }
  engine e = open(task_options());
  const auto tasks = e.fulfilment_tasks().value();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].subject_request_id, uuid_v4(1));
  EXPECT_EQ(tasks[0].due, at("2021-11-30T00:00:00Z"));
  expect_consistent();
}

TEST_F(EngineTest, OptionsAreValidated) {
  auto refused = [&](auto change, std::string_view field) {
    engine_options o = testing::test_options();
    change(o);
    auto e = engine::open(store_, o);
    ASSERT_FALSE(e) << field;
    EXPECT_EQ(e.error().code(), errc::invalid_argument);
    EXPECT_NE(e.error().message().find(field), std::string::npos) << e.error().message();
  };
  refused([](engine_options& o) { o.certificate_url.clear(); }, "certificate_url");
  refused([](engine_options& o) { o.certificate_url = "ftp://x/cert.pem"; }, "certificate_url");
  refused([](engine_options& o) { o.certificate_url = "https://"; }, "certificate_url");
  refused([](engine_options& o) { o.request.processor_domain.clear(); }, "processor_domain");
  refused([](engine_options& o) { o.max_group_size = 0; }, "max_group_size");
  refused([](engine_options& o) { o.max_group_size = 65536; }, "max_group_size");
  refused([](engine_options& o) { o.tick_batch_size = 0; }, "tick_batch_size");
  refused([](engine_options& o) { o.max_transaction_attempts = 0; }, "max_transaction_attempts");
  refused([](engine_options& o) { o.timing.callback_flush_interval = 0s; }, "callback_flush_interval");
  refused([](engine_options& o) { o.timing.access_run_days.clear(); }, "access_run_days");
  refused([](engine_options& o) { o.fulfilment.lease = 0s; }, "fulfilment.lease");
  refused([](engine_options& o) { o.fulfilment.min_retry_delay = 0s; }, "fulfilment retry delays");
  refused([](engine_options& o) { o.fulfilment.results_lifetime = 0s; }, "fulfilment.results_lifetime");
  refused([](engine_options& o) { o.fulfilment.overdue_extension = 0s; }, "fulfilment.overdue_extension");
  EXPECT_EQ(testing::key_count(store_), 0u);  // nothing written by a refused open
  engine_options small = testing::test_options();
  small.max_group_size = 2;
  engine e = open(small);
  EXPECT_EQ(e.options().max_group_size, 2u);
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1), .group_id = "g"}), seed_received));
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(2), .identities = {{"email", "2@x"}}, .group_id = "g"}), seed_received));
  EXPECT_EQ(e.submit(ws, make_body({.id = uuid_v4(3), .identities = {{"email", "3@x"}}, .group_id = "g"}), seed_received)
                .error()
                .message(),
            "The group already holds the maximum of 2 requests.");
}

TEST_F(EngineTest, ForeignSchemaAndDamagedRecordsAreStorageCorrupt) {
  engine e = open();
  ASSERT_TRUE(e.submit(ws, make_body({.id = uuid_v4(1)}), seed_received));
  {
    auto txn = store_.begin_write().value();
    ASSERT_TRUE(txn->put(detail::keys::request_key(detail::keys::request_ref(ws, uuid_v4(1))), "\x01garbage"));
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_EQ(e.status(ws, uuid_v4(1)).error().code(), errc::storage_corrupt);
  EXPECT_EQ(e.cancel(ws, uuid_v4(1), seed_received).error().code(), errc::storage_corrupt);
  EXPECT_EQ(e.tick(at("2021-12-07T00:00:00Z")).error().code(), errc::storage_corrupt);
  EXPECT_FALSE(testing::store_problems(store_).empty());
  {
    auto txn = store_.begin_write().value();
    ASSERT_TRUE(txn->put(detail::keys::schema_key(), "\x05"));  // a future schema
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_EQ(engine::open(store_, testing::test_options()).error().code(), errc::storage_corrupt);
}

}  // namespace
}  // namespace opendsr
