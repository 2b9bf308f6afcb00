// The engine's pure parts: key schema, value codecs, record encoding, timing policy and the
// state machine table.
#include "lifecycle/machine.hpp"
#include "lifecycle/timing.hpp"
#include "outbox/callbacks.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"
#include "store/record.hpp"

#include <opendsr/storage.hpp>

#include <gtest/gtest.h>

#include <string>

namespace opendsr::detail {
namespace {

using namespace std::chrono_literals;

timestamp at(std::string_view text) { return parse_rfc3339(text).value(); }

TEST(Keys, ComponentsAreSelfDelimitingAndHashedWhenLong) {
  const std::string short_ws = "3622";
  const std::string long_ws(1000, 'w');
  EXPECT_EQ(keys::request_ref(short_ws, "id"), std::string("\x04" "3622" "\x02" "id"));
  const std::string hashed = keys::request_ref(long_ws, "id");
  EXPECT_EQ(hashed.size(), 1 + 32 + 3u);
  EXPECT_EQ(static_cast<unsigned char>(hashed[0]), keys::hashed_component);
  EXPECT_TRUE(keys::is_request_ref(hashed));
  EXPECT_NE(hashed, keys::request_ref(std::string(999, 'w') + "x", "id"));
  // ("ab","c") and ("a","bc") never share a key.
  EXPECT_NE(keys::request_ref("ab", "c"), keys::request_ref("a", "bc"));
  EXPECT_FALSE(keys::is_request_ref(std::string("\x05" "ab", 3)));
  EXPECT_FALSE(keys::is_request_ref(std::string("\x02" "ab" "\x01" "c" "z", 6)));
  // 64 bytes inline, 65 hashed.
  EXPECT_EQ(keys::request_ref(std::string(64, 'a'), "").size(), 1 + 64 + 1u);
  EXPECT_EQ(keys::request_ref(std::string(65, 'a'), "").size(), 1 + 32 + 1u);
}

TEST(Keys, EveryKeyFitsTheStorageLimitForMaximalInputs) {
  const std::string ws(10'000, 'w');
  const std::string group(1024, 'g');  // 256 four-byte code points
  const std::string ref = keys::request_ref(ws, std::string(5000, 'i'));
  const timestamp t = at("2021-11-29T18:16:24Z");
  for (const std::string& key :
       {keys::request_key(ref), keys::conflict_key(ws, request_type::erasure, sha256("x")),
        keys::group_count_key(ws, group), keys::group_member_key(keys::group_members_prefix(ws, group), 149),
        keys::timer_key(t, ref), keys::callback_due_key(t, {ref, 9, 2}), keys::callback_key({ref, 9, 2}),
        keys::callback_dead_key({ref, 9, 2}), keys::outbox_v1_key(t, ref, 2, 9)})
    EXPECT_LE(key.size(), storage::max_key_size);
}

TEST(Keys, TimersOrderByDueTimeAcrossTheEpoch) {
  const std::string ref = keys::request_ref("w", "id");
  const timestamp times[] = {timestamp(-5s), timestamp(0s), timestamp(1us), at("2021-12-07T00:00:00Z"),
                             at("2021-12-09T00:00:00Z")};
  for (std::size_t i = 1; i < std::size(times); ++i)
    EXPECT_LT(keys::timer_key(times[i - 1], ref), keys::timer_key(times[i], ref));
  const std::string key = keys::timer_key(times[0], ref);  // parts view into it
  const auto parts = keys::parse_timer_key(key);
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->due, times[0]);
  EXPECT_EQ(parts->ref, ref);
  EXPECT_FALSE(keys::parse_timer_key("t123"));
}

TEST(Keys, CallbackKeysSplitBackAndChainsSortInStatusOrder) {
  const std::string ref = keys::request_ref("3622", "a7551968-d5d6-44b2-9831-815ac9017798");
  const timestamp due = at("2021-11-29T18:30:00Z");
  const std::string due_key = keys::callback_due_key(due, {ref, 7, 2});  // parts view into it
  const auto parts = keys::parse_callback_due_key(due_key);
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->due, due);
  EXPECT_EQ(parts->at.ref, ref);
  EXPECT_EQ(parts->at.url_index, 7);
  EXPECT_EQ(parts->at.history_index, 2);
  const std::string entry_key = keys::callback_key({ref, 7, 1});
  const auto at_entry = keys::parse_callback_key(entry_key);
  ASSERT_TRUE(at_entry);
  EXPECT_EQ(at_entry->ref, ref);
  EXPECT_EQ(at_entry->url_index, 7);
  EXPECT_EQ(at_entry->history_index, 1);
  EXPECT_TRUE(entry_key.starts_with(keys::callback_chain_prefix(ref, 7)));
  EXPECT_LT(keys::callback_key({ref, 7, 0}), keys::callback_key({ref, 7, 1}));
  EXPECT_LT(keys::callback_key({ref, 7, 2}), keys::callback_key({ref, 8, 0}));
  const std::string dead_key = keys::callback_dead_key({ref, 3, 0});
  ASSERT_TRUE(keys::parse_callback_dead_key(dead_key));
  EXPECT_EQ(keys::parse_callback_dead_key(dead_key)->url_index, 3);
  EXPECT_FALSE(keys::parse_callback_due_key(keys::timer_key(due, ref)));
  EXPECT_FALSE(keys::parse_callback_key(dead_key));
  EXPECT_FALSE(keys::parse_callback_key("b\x01"));
  const std::string v1 = keys::outbox_v1_key(due, ref, 2, 7);
  const auto v1_parts = keys::parse_outbox_v1_key(v1);
  ASSERT_TRUE(v1_parts);
  EXPECT_EQ(v1_parts->due, due);
  EXPECT_EQ(v1_parts->history_index, 2);
  EXPECT_EQ(v1_parts->url_index, 7);
}

TEST(Keys, GroupMembersOrderBySequence) {
  const std::string prefix = keys::group_members_prefix("w", "g");
  EXPECT_LT(keys::group_member_key(prefix, 9), keys::group_member_key(prefix, 10));
  EXPECT_LT(keys::group_member_key(prefix, 255), keys::group_member_key(prefix, 256));
  EXPECT_TRUE(keys::group_member_key(prefix, 3).starts_with(prefix));
  // Another group whose id extends this one's is not under its prefix.
  EXPECT_FALSE(keys::group_member_key(keys::group_members_prefix("w", "gg"), 0).starts_with(prefix));
}

TEST(Codec, RoundTripsVarintsAndDetectsTruncation) {
  std::string out;
  byte_writer w(out);
  w.varint(0);
  w.varint(300);
  w.varint(~std::uint64_t{0});
  w.signed_varint(-1);
  w.signed_varint(std::numeric_limits<std::int64_t>::min());
  w.bytes("abc");
  byte_reader in(out);
  EXPECT_EQ(in.varint(), 0u);
  EXPECT_EQ(in.varint(), 300u);
  EXPECT_EQ(in.varint(), ~std::uint64_t{0});
  EXPECT_EQ(in.signed_varint(), -1);
  EXPECT_EQ(in.signed_varint(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(in.bytes(), "abc");
  EXPECT_TRUE(in.ok());
  EXPECT_TRUE(in.at_end());
  byte_reader truncated(std::string_view(out).substr(0, out.size() - 1));
  for (int i = 0; i < 5; ++i) truncated.varint();
  EXPECT_EQ(truncated.bytes(), "");
  EXPECT_FALSE(truncated.ok());
  const std::string eleven_continuations(11, '\xff');  // outlives the reader's view
  byte_reader endless(eleven_continuations);
  endless.varint();
  EXPECT_FALSE(endless.ok());
}

request_record sample_record() {
  request_record r;
  r.workspace = "3622";
  r.subject_request_id = "a7551968-d5d6-44b2-9831-815ac9017798";
  r.type = request_type::portability;
  r.status = request_status::in_progress;
  r.received_time = at("2021-11-29T18:16:24.556805Z");
  r.processing_start = at("2021-12-02T00:00:00Z");
  r.expected_completion = at("2021-12-04T00:00:00Z");
  r.status_time = at("2021-12-02T00:00:01Z");
  r.group_id = "my-group";
  r.results_url = "https://example.com/r/1";
  r.conflict_digest = sha256("key");
  r.callback_urls = {"https://a.example/cb", "https://b.example/cb"};
  r.body = R"({"x":1})";
  return r;
}

TEST(Record, RoundTrips) {
  const request_record r = sample_record();
  EXPECT_EQ(decode_record(encode_record(r)).value(), r);
  request_record bare = r;
  bare.group_id.reset();
  bare.results_url.reset();
  bare.callback_urls.clear();
  bare.body.clear();
  EXPECT_EQ(decode_record(encode_record(bare)).value(), bare);
}

TEST(Record, DamageIsStorageCorrupt) {
  const std::string bytes = encode_record(sample_record());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_record(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), errc::storage_corrupt);
  }
  EXPECT_EQ(decode_record(bytes + "x").error().code(), errc::storage_corrupt);
  std::string other_format = bytes;
  other_format[0] = 2;
  EXPECT_EQ(decode_record(other_format).error().code(), errc::storage_corrupt);
  std::string bad_status = bytes;
  bad_status[2] = 9;
  EXPECT_EQ(decode_record(bad_status).error().code(), errc::storage_corrupt);
}

TEST(Outbox, EntriesRoundTripAndDamageIsCorrupt) {
  callback_entry e;
  e.url = "https://a.example/cb";
  e.body = R"({"k":"v"})";
  e.first_due = at("2021-11-29T18:30:00Z");
  const std::string fresh = encode_callback_entry(e);
  EXPECT_EQ(decode_callback_entry(fresh).value(), e);
  e.scheduled = at("2021-11-29T18:31:00Z");
  e.retry_at = at("2021-11-29T18:31:00Z");
  e.attempts = 3;
  e.lease = "node-a\n42";
  e.signature = "c2ln";
  e.last_error = "HTTP 500";
  e.last_attempt = at("2021-11-29T18:30:30Z");
  const std::string value = encode_callback_entry(e);
  EXPECT_EQ(decode_callback_entry(value).value(), e);
  e.scheduled.reset();
  e.dead = true;
  EXPECT_EQ(decode_callback_entry(encode_callback_entry(e)).value(), e);
  EXPECT_EQ(decode_callback_entry(value.substr(0, 5)).error().code(), errc::storage_corrupt);
  EXPECT_EQ(decode_callback_entry("").error().code(), errc::storage_corrupt);
  std::string other_format = value;
  other_format[0] = 1;
  EXPECT_EQ(decode_callback_entry(other_format).error().code(), errc::storage_corrupt);
}

TEST(Timing, ErasureWaitsSevenDaysToMidnightPlusMargin) {
  const timing_policy policy;
  // The seed's example: received 2021-11-29T18:16:24.5568051Z -> expected 2021-12-09T00:00:00Z.
  const schedule s = plan_schedule(policy, request_type::erasure, false, at("2021-11-29T18:16:24.5568051Z"));
  EXPECT_EQ(s.processing_start, at("2021-12-07T00:00:00Z"));
  EXPECT_EQ(s.expected_completion, at("2021-12-09T00:00:00Z"));
  // Exactly at midnight: the waiting period ends at a midnight, which is the start.
  EXPECT_EQ(plan_schedule(policy, request_type::erasure, false, at("2021-11-29T00:00:00Z")).processing_start,
            at("2021-12-06T00:00:00Z"));
}

TEST(Timing, SkipWaitingPeriodStartsAtTheNextMidnight) {
  const timing_policy policy;
  const schedule s = plan_schedule(policy, request_type::erasure, true, at("2021-11-29T18:16:24Z"));
  EXPECT_EQ(s.processing_start, at("2021-11-30T00:00:00Z"));
  EXPECT_EQ(s.expected_completion, at("2021-12-02T00:00:00Z"));
  EXPECT_EQ(plan_schedule(policy, request_type::erasure, true, at("2021-11-30T00:00:00Z")).processing_start,
            at("2021-11-30T00:00:00Z"));
}

TEST(Timing, AccessRunsOnMondaysAndThursdays) {
  const timing_policy policy;
  struct case_ {
    const char* received;
    const char* start;
  } cases[] = {
      {"2021-11-29T18:16:24Z", "2021-12-02T00:00:00Z"},  // Monday evening -> Thursday
      {"2021-12-02T00:00:00Z", "2021-12-02T00:00:00Z"},  // Thursday 00:00 exactly -> that run
      {"2021-12-02T00:00:00.000001Z", "2021-12-06T00:00:00Z"},  // just after -> Monday
      {"2021-12-05T23:59:59Z", "2021-12-06T00:00:00Z"},  // Sunday -> Monday
      {"2021-11-30T12:00:00Z", "2021-12-02T00:00:00Z"},  // Tuesday -> Thursday
  };
  for (const auto& c : cases) {
    for (request_type type : {request_type::access, request_type::portability}) {
      const schedule s = plan_schedule(policy, type, true, at(c.received));  // skip flag is ignored
      EXPECT_EQ(s.processing_start, at(c.start)) << c.received;
      EXPECT_EQ(s.expected_completion, at(c.start) + 48h) << c.received;
    }
  }
}

TEST(Timing, PolicyIsConfigurable) {
  timing_policy policy;
  policy.erasure_waiting_period = 24h;
  policy.completion_margin = 1h;
  policy.access_run_days = {std::chrono::Sunday};
  EXPECT_EQ(plan_schedule(policy, request_type::erasure, false, at("2021-11-29T18:00:00Z")).expected_completion,
            at("2021-12-01T01:00:00Z"));
  EXPECT_EQ(plan_schedule(policy, request_type::access, false, at("2021-11-29T18:00:00Z")).processing_start,
            at("2021-12-05T00:00:00Z"));
}

TEST(Timing, CallbacksFlushOnIntervalBoundaries) {
  timing_policy policy;
  EXPECT_EQ(next_flush(policy, at("2021-11-29T18:16:24.5Z")), at("2021-11-29T18:30:00Z"));
  EXPECT_EQ(next_flush(policy, at("2021-11-29T18:30:00Z")), at("2021-11-29T18:30:00Z"));
  EXPECT_EQ(next_flush(policy, timestamp(-1s)), timestamp(0s));
  policy.callback_flush_interval = 1s;
  EXPECT_EQ(next_flush(policy, at("2021-11-29T18:16:24.5Z")), at("2021-11-29T18:16:25Z"));
}

TEST(Timing, ValidationNamesTheField) {
  auto message = [](timing_policy p) { return validate_timing(p).error().message(); };
  timing_policy p;
  EXPECT_TRUE(validate_timing(p));
  p.erasure_waiting_period = -1us;
  EXPECT_NE(message(p).find("erasure_waiting_period"), std::string::npos);
  p = {};
  p.completion_margin = std::chrono::days(4000);
  EXPECT_NE(message(p).find("completion_margin"), std::string::npos);
  p = {};
  p.access_run_days.clear();
  EXPECT_NE(message(p).find("access_run_days"), std::string::npos);
  p = {};
  p.access_run_days = {std::chrono::weekday(9)};
  EXPECT_NE(message(p).find("access_run_days"), std::string::npos);
  p = {};
  p.callback_flush_interval = 0us;
  EXPECT_NE(message(p).find("callback_flush_interval"), std::string::npos);
}

TEST(Machine, TableAllowsExactlyTheDocumentedEdges) {
  using enum request_status;
  using enum lifecycle_event;
  EXPECT_EQ(guard("r", pending, start_processing).value(), in_progress);
  EXPECT_EQ(guard("r", in_progress, complete).value(), completed);
  EXPECT_EQ(guard("r", pending, cancel).value(), cancelled);
  for (request_status from : {pending, in_progress, completed, cancelled})
    for (lifecycle_event e : {start_processing, complete, cancel}) {
      const bool allowed = (from == pending && e != complete) || (from == in_progress && e == complete);
      EXPECT_EQ(guard("r", from, e).has_value(), allowed) << to_string(from) << " " << static_cast<int>(e);
    }
}

TEST(Machine, GuardMessageNamesRequestStatusAndWhatIsAllowed) {
  const auto e = guard("a7551968-d5d6-44b2-9831-815ac9017798", request_status::in_progress, lifecycle_event::cancel);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), errc::invalid_operation);
  EXPECT_EQ(e.error().message(),
            "The request a7551968-d5d6-44b2-9831-815ac9017798 cannot be cancelled: its status is in_progress, "
            "and only a pending request can.");
}

TEST(Machine, TimersHistoryAndTerminalStatuses) {
  using enum request_status;
  request_record r = sample_record();
  r.status = pending;
  EXPECT_EQ(timer_due(r), r.processing_start);
  r.status = in_progress;
  EXPECT_EQ(timer_due(r), r.expected_completion);
  for (request_status s : {completed, cancelled}) {
    r.status = s;
    EXPECT_FALSE(timer_due(r));
    EXPECT_TRUE(is_terminal(s));
  }
  EXPECT_EQ(history_index(pending), 0);
  EXPECT_EQ(history_index(in_progress), 1);
  EXPECT_EQ(history_index(cancelled), 1);
  EXPECT_EQ(history_index(completed), 2);
  EXPECT_EQ(previous_status(completed), in_progress);
  EXPECT_EQ(previous_status(cancelled), pending);
}

}  // namespace
}  // namespace opendsr::detail
