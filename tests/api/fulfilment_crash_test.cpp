// Crash tests of fulfilment (issue 9): opendsrd SIGKILLed while the fulfilment runner builds
// packages and erases a profile, then restarted on the same data directory. Between runs the store
// is opened here to check that the erasure is all or nothing (identity index, profile and events
// together); at the end every request completes, every package downloads and verifies as a
// controller checks it (docs/packages.md), and no value of the erased subject is left in the LMDB
// files. The clock is moved from a thread of its own (the route answers only once the runner is
// idle), and the kill waits on what the daemon leaves in its data directory: bounded polls only.
#include "daemon_fixture.hpp"
#include "daemon_process.hpp"

#include "../support/fulfilment_daemon.hpp"

#include <opendsr/lmdb_storage.hpp>
#include <opendsr/subject_data.hpp>

#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace opendsr::testing {
namespace {

using namespace std::chrono_literals;

constexpr int big_events = 100'000;
constexpr int erased_events = 20'000;

std::string big_event(int n) { return "{\"n\":" + std::to_string(n) + ",\"kind\":\"big\",\"page\":\"/a/" + std::to_string(n % 97) + "\"}"; }
std::string small_event(int n) { return "{\"small\":" + std::to_string(n) + "}"; }

class FulfilmentCrash : public daemon_fixture {
 protected:
  // Starts (or restarts) the daemon with its clock at `at`.
  void start(const std::string& at = fulfilment_test_start) { ASSERT_NO_FATAL_FAILURE(start_daemon({"--no-demo"}, at)); }

  // Waits for `done`, then SIGKILLs the daemon; false if `done` never held (the daemon is killed
  // anyway).
  template <class F>
  bool kill_when(F done) {
    const bool seen = eventually(done, 30s);
    kill();
    return seen;
  }

  bool building() const {
    std::error_code ec;
    return fs::exists(data_ / "package-scratch", ec) && !fs::is_empty(data_ / "package-scratch", ec);
  }
  bool partial_exists() const { return !entries_starting(data_ / "results", ".partial-").empty(); }
  std::size_t fulfilled_logged() const {
    const std::string log = read_text(data_.string() + ".log");
    std::size_t n = 0;
    for (auto at = log.find("fulfilled"); at != std::string::npos; at = log.find("fulfilled", at + 1)) ++n;
    return n;
  }

  // With the daemon stopped: the erased profile is either whole (both identities resolve to it
  // and every record is there) or gone (neither resolves, no record). Returns true iff gone.
  bool erasure_all_or_nothing() {
    auto store = lmdb_storage::open({.path = data_ / "store"});
    EXPECT_TRUE(store) << store.error().message();
    if (!store) return false;
    auto data = open_subject_store(**store);
    EXPECT_TRUE(data) << data.error().message();
    if (!data) return false;
    // Both identities: an email alone does not reach a profile holding a customer ID.
    const std::vector<identity> email = {{identity_type::email, "erase-me-7f3a@example.com"},
                                         {identity_type::controller_customer_id, "cust-erase-7f3a"}};
    const std::vector<identity> customer = {{identity_type::controller_customer_id, "cust-erase-7f3a"}};
    auto by_email = (*data)->resolve("demo", email);
    auto by_customer = (*data)->resolve("demo", customer);
    EXPECT_TRUE(by_email && by_customer);
    if (!by_email || !by_customer) return false;
    std::size_t records = 0;
    auto walked = (*data)->records("demo", 502, [&](const subject_record&) {
      ++records;
      return true;
    });
    if (!walked) records = 0;  // an unknown profile
    if (*by_email) {
      EXPECT_EQ(*by_email, std::optional<profile_id>(502));
      EXPECT_EQ(*by_customer, std::optional<profile_id>(502));
      EXPECT_EQ(records, 1u + erase_count_) << "a half-done erasure";
      return false;
    }
    EXPECT_EQ(*by_customer, std::nullopt) << "a half-done erasure";
    EXPECT_EQ(records, 0u) << "a half-done erasure";
    return true;
  }

  std::size_t erase_count_ = erased_events;  // the events of the profile to erase
};

TEST_F(FulfilmentCrash, KilledWhileBuildingAndErasingEveryRequestCompletesAndVerifies) {
  ASSERT_NO_FATAL_FAILURE(start());
  // Profile 501: many events (a build takes seconds); 502: erased; 503: small.
  const std::string big_attributes = R"({"name":"Big","plan":"max"})";
  const std::string small_attributes = R"({"name":"Small"})";
  {
    std::string head = R"({"mpid":"501","identities":{"email":"big-4e21@example.com","controller_customer_id":"cust-big-4e21"},"attributes":)" +
                       big_attributes + "}\n" +
                       R"({"mpid":"502","identities":{"email":"erase-me-7f3a@example.com","controller_customer_id":"cust-erase-7f3a"},"attributes":{"nick":"attr-erase-7f3a"}})" "\n" +
                       R"({"mpid":"503","identities":{"email":"small-4e21@example.com"},"attributes":)" + small_attributes + "}\n";
    for (int i = 0; i < 3; ++i) head += "{\"mpid\":\"503\",\"event\":" + small_event(i) + "}\n";
    auto r = daemon_->import(head, demo_);
    ASSERT_EQ(r.status, 200) << r.body;
    for (int chunk = 0; chunk < big_events / 1000; ++chunk) {
      std::string lines;
      for (int i = chunk * 1000; i < (chunk + 1) * 1000; ++i) lines += "{\"mpid\":\"501\",\"event\":" + big_event(i) + "}\n";
      r = daemon_->import(lines, demo_);
      ASSERT_EQ(r.status, 200) << r.body;
    }
    for (int chunk = 0; chunk < erased_events / 1000; ++chunk) {
      std::string lines;
      for (int i = chunk * 1000; i < (chunk + 1) * 1000; ++i)
        lines += "{\"mpid\":\"502\",\"event\":{\"secret\":\"payload-erase-7f3a\",\"i\":" + std::to_string(i) + "}}\n";
      r = daemon_->import(lines, demo_);
      ASSERT_EQ(r.status, 200) << r.body;
    }
  }
  std::uint64_t serial = 0;
  const std::string big_access = daemon_->submit(demo_, ++serial, "access",
                                                   {{"email", "big-4e21@example.com"}, {"controller_customer_id", "cust-big-4e21"}});
  const std::string big_portability = daemon_->submit(demo_, ++serial, "portability", {{"controller_customer_id", "cust-big-4e21"}});
  const std::string small_access = daemon_->submit(demo_, ++serial, "access", {{"email", "small-4e21@example.com"}});
  const std::string erasure = daemon_->submit(
      demo_, ++serial, "erasure", {{"email", "erase-me-7f3a@example.com"}, {"controller_customer_id", "cust-erase-7f3a"}}, true);

  // 1. Killed as soon as a build starts (Thursday 00:00Z: everything is due).
  move_clock_async("{\"set\":\"2021-12-02T00:00:00Z\"}");
  EXPECT_TRUE(kill_when([&] { return building(); })) << "no build started\n" << read_text(data_.string() + ".log");
  erasure_all_or_nothing();
  // 2. Restarted: the released jobs run again once the clock moves; killed while a package is
  //    being written to DIR/results.
  ASSERT_NO_FATAL_FAILURE(start("2021-12-02T00:00:00Z"));
  EXPECT_TRUE(entries_starting(data_ / "results", ".partial-").empty()) << "partials are removed at start";
  move_clock_async("{\"advance_seconds\":1}");
  EXPECT_TRUE(kill_when([&] { return partial_exists(); })) << "no package was written";
  erasure_all_or_nothing();
  // 3. Killed once one more fulfilment is recorded.
  ASSERT_NO_FATAL_FAILURE(start("2021-12-02T00:00:01Z"));
  const std::size_t before = fulfilled_logged();
  move_clock_async("{\"advance_seconds\":1}");
  EXPECT_TRUE(kill_when([&] { return fulfilled_logged() > before; })) << "nothing was fulfilled";
  erasure_all_or_nothing();
  // 4. Run to the end.
  ASSERT_NO_FATAL_FAILURE(start("2021-12-02T00:00:02Z"));
  daemon_->advance(1);
  for (const auto& id : {big_access, big_portability, small_access, erasure})
    EXPECT_EQ(daemon_->status_of(id, demo_), "completed") << daemon_->request(id, demo_) << daemon_->process().log();

  std::vector<std::string> big;
  for (int i = 0; i < big_events; ++i) big.push_back(big_event(i));
  std::vector<std::string> small;
  for (int i = 0; i < 3; ++i) small.push_back(small_event(i));
  const std::pair<std::string, expected_package> checks[] = {
      {big_access, {.attributes = big_attributes, .events = big}},
      {big_portability, {.attributes = big_attributes, .events = big}},
      {small_access, {.attributes = small_attributes, .events = small}},
  };
  int n = 0;
  for (const auto& [id, expected] : checks) {
    SCOPED_TRACE(id);
    // The link names the port of the run that completed the request; this run listens elsewhere.
    std::string url = daemon_->results_url_of(id, demo_);
    ASSERT_NE(url.find("/v3/results/"), std::string::npos) << url;
    url = "http://127.0.0.1:" + std::to_string(daemon_->port()) + url.substr(url.find("/v3/results/"));
    const fs::path zip = dir_ / ("p" + std::to_string(++n) + ".zip");
    auto d = fetch(url, &demo_, zip);
    ASSERT_EQ(d.status, 200) << url << " " << d.body.substr(0, 300);
    ASSERT_NO_FATAL_FAILURE(expect_valid_package(zip, dir_ / ("u" + std::to_string(n)), data_, expected));
    fs::remove_all(dir_ / ("u" + std::to_string(n)));
    fs::remove(zip);
  }
  EXPECT_EQ(file_count(data_ / "results"), 3u);
  EXPECT_TRUE(entries_starting(data_ / "results", ".partial-").empty());

  // The erased subject: nothing in the LMDB files (before any request names it again).
  for (auto& e : fs::recursive_directory_iterator(data_)) {
    const auto name = e.path().filename();
    if (name != "data.mdb" && name != "lock.mdb") continue;
    const std::vector<std::string> erased = {"erase-me-7f3a@example.com", "cust-erase-7f3a", "attr-erase-7f3a", "payload-erase-7f3a"};
    const auto found = found_in_file(e.path(), erased);
    for (std::size_t i = 0; i < erased.size(); ++i) EXPECT_FALSE(found[i]) << erased[i] << " remains in " << e.path();
  }
  // The kept profile's values are found by the same search.
  EXPECT_TRUE(file_contains(data_ / "store" / "data.mdb", "big-4e21@example.com"));

  // An access request for the erased identities finds nothing.
  const std::string after = daemon_->submit(demo_, ++serial, "access", {{"controller_customer_id", "cust-erase-7f3a"}});
  daemon_->set("2021-12-06T00:00:00Z");  // the next Monday
  EXPECT_EQ(daemon_->status_of(after, demo_), "completed");
  EXPECT_EQ(fetch(daemon_->results_url_of(after, demo_), &demo_, dir_ / "x").status, 404);
  daemon_.reset();
  EXPECT_TRUE(erasure_all_or_nothing()) << "the erasure did not happen";
}

// The erasure alone, of a profile with many events, killed as soon as the clock move that starts
// it is logged (the runner erases right after the tick): the kill usually lands inside the
// erasure's transaction; whatever it hits, the store holds the profile whole or not at all, and
// the restarted daemon finishes the job.
TEST_F(FulfilmentCrash, ErasureKilledMidwayIsAllOrNothing) {
  erase_count_ = 100'000;
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = daemon_->import(
      R"({"mpid":"502","identities":{"email":"erase-me-7f3a@example.com","controller_customer_id":"cust-erase-7f3a"},"attributes":{"nick":"attr-erase-7f3a"}})" "\n"
      R"({"mpid":"503","identities":{"controller_customer_id":"cust-keep-9b2c"},"attributes":{"nick":"attr-keep-9b2c"}})" "\n",
      demo_);
  ASSERT_EQ(r.status, 200) << r.body;
  for (std::size_t chunk = 0; chunk < erase_count_ / 1000; ++chunk) {
    std::string lines;
    for (std::size_t i = chunk * 1000; i < (chunk + 1) * 1000; ++i)
      lines += "{\"mpid\":\"502\",\"event\":{\"secret\":\"payload-erase-7f3a\",\"i\":" + std::to_string(i) + "}}\n";
    r = daemon_->import(lines, demo_);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  const std::string erasure = daemon_->submit(
      demo_, 1, "erasure", {{"email", "erase-me-7f3a@example.com"}, {"controller_customer_id", "cust-erase-7f3a"}}, true);
  move_clock_async("{\"set\":\"2021-11-30T00:00:00Z\"}");
  EXPECT_TRUE(kill_when([&] { return read_text(data_.string() + ".log").find("test_clock now=2021-11-30") != std::string::npos; }));
  const bool gone_at_kill = erasure_all_or_nothing();
  ASSERT_NO_FATAL_FAILURE(start("2021-11-30T00:00:00Z"));
  daemon_->advance(1);
  EXPECT_EQ(daemon_->status_of(erasure, demo_), "completed") << daemon_->process().log();
  const std::vector<std::string> erased = {"erase-me-7f3a@example.com", "cust-erase-7f3a", "attr-erase-7f3a", "payload-erase-7f3a"};
  for (const char* file : {"data.mdb", "lock.mdb"}) {
    const auto found = found_in_file(data_ / "store" / file, erased);
    for (std::size_t i = 0; i < erased.size(); ++i) EXPECT_FALSE(found[i]) << erased[i] << " remains in " << file;
  }
  EXPECT_TRUE(file_contains(data_ / "store" / "data.mdb", "attr-keep-9b2c"));
  daemon_.reset();
  EXPECT_TRUE(erasure_all_or_nothing()) << "the erasure did not happen";
  RecordProperty("erased_before_the_kill", gone_at_kill ? "yes" : "no");
}

}  // namespace
}  // namespace opendsr::testing
