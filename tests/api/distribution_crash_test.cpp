// Crash test of distribution (issue 10): opendsrd SIGKILLed while a fake Kochava holds a batch
// unanswered and a fake Blueshift holds one erasure unanswered (both mid-send), then restarted on
// the same data directory. Afterwards every forward reaches `sent`, and what the partners
// received shows that nothing was lost and nothing was sent twice except what was in flight at
// the kill (its 2xx was never recorded, so it must go again). The clock is moved from a thread of
// its own (the route answers only once the dispatchers are idle, which a held exchange delays),
// and the kill waits on what the fakes hold: bounded polls only.
#include "daemon_fixture.hpp"
#include "distribution_daemon.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace opendsr::testing {
namespace {

using namespace std::chrono_literals;

std::string idfa(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "C0FFEE00-0000-4000-8000-%012d", n);
  return buf;
}
std::string customer(int n) { return "cust-crash-" + std::to_string(n); }

class DistributionCrash : public daemon_fixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(daemon_fixture::SetUp());
    for (auto* p : {&kochava_, &blueshift_}) {
      auto started = fake_partner::start({.standing = p == &kochava_ ? kochava_ok() : blueshift_ok()});
      ASSERT_TRUE(started) << started.error().message();
      *p = std::move(*started);
    }
  }
  void TearDown() override {
    join_mover();
    daemon_.reset();
    kochava_.reset();
    blueshift_.reset();
    daemon_fixture::TearDown();
  }

  // Starts (or restarts) the daemon with its clock at `at`.
  void start(const std::string& at = fulfilment_test_start) {
    ASSERT_NO_FATAL_FAILURE(start_daemon({"--no-demo", "--calls-per-minute", "0"}, at));
  }

  std::string submit(int n, std::vector<std::pair<std::string, std::string>> identities) {
    const std::string id = request_id(0xc4a5, static_cast<std::uint64_t>(n));
    auto r = daemon_->api().post(make_body({.id = id, .identities = std::move(identities)}), demo_);
    EXPECT_EQ(r.status, 201) << r.body;
    return id;
  }
  std::string status(const std::string& id, std::string_view output) { return entry_status(daemon_->api(), id, demo_, output); }

  std::unique_ptr<fake_partner> kochava_, blueshift_;
};

TEST_F(DistributionCrash, KilledMidBatchNeitherLosesNorDuplicatesBeyondTheBatchInFlight) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    outputs_client outputs(daemon_->port(), demo_);
    auto k = outputs.add(kochava_output("kochava-main", kochava_->url()));
    ASSERT_EQ(k.status, 201) << k.body;
    auto b = outputs.add(blueshift_output("blueshift-main", blueshift_->url()));
    ASSERT_EQ(b.status, 201) << b.body;
  }

  // Wave A: ten erasures. Blueshift has them at once; Kochava queues their IDFAs.
  std::map<std::string, int> subject_of;  // request id -> n
  for (int n = 1; n <= 10; ++n) subject_of[submit(n, {{"controller_customer_id", customer(n)}, {"ios_advertising_id", idfa(n)}})] = n;
  daemon_->advance(1);
  ASSERT_TRUE(blueshift_->wait_for(10)) << blueshift_->count() << "\n" << daemon_->process().log();
  for (const auto& [id, n] : subject_of) ASSERT_TRUE(eventually([&] { return status(id, "blueshift-main") == "sent"; }, 10s)) << n;

  // Wave B: five more. Blueshift holds the first it receives unanswered; Kochava will hold its
  // batch (the IDFAs of A and B) unanswered.
  blueshift_->respond_any(scripted_response::never());
  kochava_->set_standing(scripted_response::never());
  for (int n = 11; n <= 15; ++n) subject_of[submit(n, {{"controller_customer_id", customer(n)}, {"ios_advertising_id", idfa(n)}})] = n;

  // The hour passes: the Kochava batch goes out and hangs. Killed while both fakes hold a send.
  move_clock_async("{\"advance_seconds\":3600}");
  const bool both_held = kochava_->wait_held(1, 30s) && blueshift_->wait_held(1, 30s);
  // Then until every answered send is recorded, so that what is in flight at the kill is exactly
  // what the fakes hold (an answered send not yet recorded would rightly go again too).
  const bool recorded = both_held && eventually([&] {
    return recorded_forward_outcomes(daemon_->api()) ==
           static_cast<double>(kochava_->count() + blueshift_->count() - kochava_->held() - blueshift_->held());
  });
  const std::string killed_at_log = daemon_->process().log();
  kill();
  ASSERT_TRUE(both_held) << "kochava held " << kochava_->held() << ", blueshift held " << blueshift_->held() << "\n" << killed_at_log;
  ASSERT_TRUE(recorded) << "answered sends were not recorded\n" << killed_at_log;
  ASSERT_EQ(kochava_->held(), 1u);
  ASSERT_EQ(blueshift_->held(), 1u);
  const std::size_t kochava_before = kochava_->count(), blueshift_before = blueshift_->count();
  ASSERT_EQ(kochava_before, 1u);
  const auto in_flight_batch = device_ids(kochava_->requests()[0].body);
  const std::string in_flight_customer = blueshift_body(blueshift_->requests()[10].body).customer_id;

  // Restarted at the time the last run reached; the fakes answer 2xx from now on.
  kochava_->set_standing(kochava_ok("job-after-restart"));
  ASSERT_NO_FATAL_FAILURE(start("2021-11-29T19:00:01Z"));
  // The held sends' leases (2 minutes) run out; everything due goes out. Bounded: at most an hour
  // of test clock in minute steps, stopping once every entry is sent.
  const auto all_sent = [&] {
    for (const auto& [id, n] : subject_of)
      if (status(id, "kochava-main") != "sent" || status(id, "blueshift-main") != "sent") return false;
    return true;
  };
  // Between steps, a bounded wait until no send is in flight and every one the fakes received
  // since the restart is recorded: the clock must not jump past the lease of an unrecorded send.
  const std::size_t received_at_restart = kochava_->count() + blueshift_->count();
  const auto settle = [&] {
    return eventually([&] {
      const auto api = daemon_->api();
      return metric(api, "opendsr_forwards_in_flight") == 0 &&
             recorded_forward_outcomes(api) == static_cast<double>(kochava_->count() + blueshift_->count() - received_at_restart);
    });
  };
  for (int minute = 0; minute < 60 && !all_sent(); ++minute) {
    daemon_->advance(60);
    ASSERT_TRUE(settle()) << "minute " << minute << "\n" << daemon_->process().log();
  }
  EXPECT_TRUE(all_sent()) << daemon_->process().log();
  for (const auto& [id, n] : subject_of) {
    auto e = entries_of(daemon_->api(), id, demo_);
    ASSERT_TRUE(e.has_value());
    for (const auto& entry : *e) EXPECT_EQ(entry.status, "sent") << n << describe(*e);
  }

  // What each fake received, for failure messages.
  const auto trace = [](const fake_partner& p) {
    std::string out;
    for (const auto& r : p.requests()) out += "\n#" + std::to_string(r.sequence) + " " + r.body.substr(0, 300);
    return out;
  };

  // Kochava: the batch in flight at the kill (its 2xx never came, so never recorded) exactly
  // twice, and with it every IDFA: the restart lost nothing and sent nothing else again.
  std::map<std::string, int> idfa_count;
  for (const auto& r : kochava_->requests())
    for (const auto& [type, value] : device_ids(r.body)) {
      EXPECT_EQ(type, "idfa");
      ++idfa_count[value];
    }
  std::set<std::string> in_flight_ids;
  for (const auto& [type, value] : in_flight_batch) in_flight_ids.insert(value);
  EXPECT_EQ(in_flight_ids.size(), 15u) << "the held batch had every queued IDFA" << trace(*kochava_);
  for (int n = 1; n <= 15; ++n)
    EXPECT_EQ(idfa_count[idfa(n)], in_flight_ids.count(idfa(n)) ? 2 : 1) << "IDFA of subject " << n << trace(*kochava_);
  EXPECT_EQ(idfa_count.size(), 15u) << trace(*kochava_);

  // Blueshift: the erasure in flight at the kill exactly twice, every other one once (wave A's
  // sends and B's answered ones were recorded before the kill).
  std::map<std::string, int> customer_count;
  for (const auto& r : blueshift_->requests()) ++customer_count[blueshift_body(r.body).customer_id];
  for (int n = 1; n <= 15; ++n)
    EXPECT_EQ(customer_count[customer(n)], customer(n) == in_flight_customer ? 2 : 1)
        << customer(n) << " (in flight at the kill: " << in_flight_customer << ", " << blueshift_before
        << " received before it)" << trace(*blueshift_);
  EXPECT_EQ(customer_count.size(), 15u) << trace(*blueshift_);
}

// Many small batches (batch_max 5): two answered, the third held at the kill, the rest claimed
// behind it or still queued. After the restart every forward is sent, the held batch's ids come
// exactly twice and every other id once.
TEST_F(DistributionCrash, KilledBehindAHeldBatchTheQueuedAndClaimedBatchesAreSentOnce) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    outputs_client outputs(daemon_->port(), demo_);
    auto k = outputs.add(kochava_output("kochava-small", kochava_->url(), {{"batch_max", "5"}}));
    ASSERT_EQ(k.status, 201) << k.body;
  }
  kochava_->respond_any(kochava_ok("job-1"));
  kochava_->respond_any(kochava_ok("job-2"));
  kochava_->set_standing(scripted_response::never());
  std::vector<std::string> ids;
  for (int n = 101; n <= 150; ++n) ids.push_back(submit(n, {{"ios_advertising_id", idfa(n)}}));

  move_clock_async("{\"advance_seconds\":1}");
  const bool held = kochava_->wait_held(1, 30s);
  const bool recorded = held && eventually([&] {
    return recorded_forward_outcomes(daemon_->api()) == static_cast<double>(kochava_->count() - kochava_->held());
  });
  const std::string killed_at_log = daemon_->process().log();
  kill();
  ASSERT_TRUE(held && recorded) << kochava_->count() << " received, " << kochava_->held() << " held\n" << killed_at_log;
  ASSERT_EQ(kochava_->count(), 3u) << "one batch in flight per output";
  std::set<std::string> in_flight;
  for (const auto& [type, value] : device_ids(kochava_->requests()[2].body)) in_flight.insert(value);
  ASSERT_EQ(in_flight.size(), 5u);

  kochava_->set_standing(kochava_ok("job-after-restart"));
  ASSERT_NO_FATAL_FAILURE(start("2021-11-29T18:00:01Z"));
  const std::size_t received_at_restart = kochava_->count();
  const auto all_sent = [&] {
    for (const auto& id : ids)
      if (status(id, "kochava-small") != "sent") return false;
    return true;
  };
  for (int minute = 0; minute < 60 && !all_sent(); ++minute) {
    daemon_->advance(60);
    ASSERT_TRUE(eventually([&] {
      const auto api = daemon_->api();
      return metric(api, "opendsr_forwards_in_flight") == 0 &&
             recorded_forward_outcomes(api) == static_cast<double>(kochava_->count() - received_at_restart);
    })) << "minute " << minute << "\n" << daemon_->process().log();
  }
  EXPECT_TRUE(all_sent()) << daemon_->process().log();

  std::map<std::string, int> times;
  std::string trace;
  for (const auto& r : kochava_->requests()) {
    trace += "\n#" + std::to_string(r.sequence) + " " + r.body.substr(0, 200);
    const auto batch = device_ids(r.body);
    EXPECT_LE(batch.size(), 5u) << r.body;
    for (const auto& [type, value] : batch) ++times[value];
  }
  for (int n = 101; n <= 150; ++n)
    EXPECT_EQ(times[idfa(n)], in_flight.count(idfa(n)) ? 2 : 1) << "IDFA of subject " << n << trace;
  EXPECT_EQ(times.size(), 50u) << trace;
}

}  // namespace
}  // namespace opendsr::testing
