// Black-box tests of signed status callbacks (issue 8): the built opendsrd in --test-mode, each
// test with its own daemon and data directory, delivering to real receivers on loopback
// (tests/support/loopback_receiver.hpp). Time passes only when a test moves the daemon's manual
// clock (POST /admin/clock); every wait is a bounded poll for the receiver, the daemon's metrics
// or a process. Signatures are checked with the openssl command against the served certificate.
#include "daemon_process.hpp"

#include "../support/loopback_receiver.hpp"
#include "../support/request_bodies.hpp"
#include "common/base64.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace testing;  // opendsr::testing: the daemon, the receiver, request bodies

// A Monday, seven seconds past the minute (callbacks are due at the next whole minute by default).
const char* const test_start = "2026-01-05T10:00:07Z";

// Flags under which Callbacks::settle() can tell that failed attempts are recorded: one callback
// in flight at a time, flushed at the next whole second.
const std::vector<std::string> one_at_a_time = {"--callback-max-in-flight", "1", "--callback-flush-seconds", "1"};

// The backoff's upper bound after failure n (callback_delivery_policy defaults): min(6 h, 1 min *
// 2^(n-1)). Advancing the clock by this plus one second makes the next attempt due.
std::uint64_t max_backoff_seconds(unsigned n) { return std::min<std::uint64_t>(6 * 3600, 60ull << std::min(n - 1, 20u)); }

// The string value of "key" in a flat JSON body ("" if absent or not a string).
std::string json_string(const std::string& body, std::string_view key) {
  const std::string marker = "\"" + std::string(key) + "\":\"";
  auto at = body.find(marker);
  if (at == std::string::npos) return {};
  at += marker.size();
  return body.substr(at, body.find('"', at) - at);
}

std::string header(const received_request& r, std::string_view name) { return std::string(r.headers.get(name).value_or("")); }

// The requests a receiver got for one path, in arrival order.
std::vector<received_request> at_path(const loopback_receiver& r, std::string_view path) {
  std::vector<received_request> out;
  for (auto& q : r.requests())
    if (q.target == path) out.push_back(q);
  return out;
}

std::vector<std::string> statuses(const std::vector<received_request>& callbacks) {
  std::vector<std::string> out;
  for (const auto& c : callbacks) out.push_back(json_string(c.body, "request_status"));
  return out;
}

using strings = std::vector<std::string>;

scripted_response answer(int status, http_headers headers = {}) {
  scripted_response r;
  r.status = status;
  r.headers = std::move(headers);
  return r;
}

// Waits (bounded) until `done()` holds, polling every few milliseconds.
template <class F>
bool eventually(F done, std::chrono::milliseconds timeout = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    ::poll(nullptr, 0, 5);  // a readiness poll of the daemon, not a wait for simulated time
  }
}

// One opendsrd in test mode on 127.0.0.1:0. Its first start in a data directory makes the demo
// workspace, whose credentials it prints.
class test_daemon {
 public:
  test_daemon(const fs::path& data_dir, std::vector<std::string> flags, std::string start = test_start) {
    std::vector<std::string> args = {"--test-mode", "--listen", "127.0.0.1:0", "--test-start", start, "--threads", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    process_ = std::make_unique<daemon_process>(data_dir, args);
    port_ = process_->wait_ready();
    demo_ = testing::demo_workspace(process_->stdout_text());
  }

  bool ready() const { return port_ != 0; }
  daemon_client api() const { return daemon_client(port_); }
  daemon_process& process() { return *process_; }
  const workspace& demo() const { return demo_; }

  // Moves the clock (the engine ticks, the dispatcher sends what is due); returns the new time.
  std::string advance(std::uint64_t seconds) { return move("{\"advance_seconds\":" + std::to_string(seconds) + "}"); }
  std::string set(const std::string& rfc3339) { return move("{\"set\":\"" + rfc3339 + "\"}"); }

  // A sample of /metrics ("name" exactly, no labels); -1 if absent.
  double metric(std::string_view name) const {
    auto m = api().get("/metrics", nullptr);
    const std::string marker = "\n" + std::string(name) + " ";
    auto at = m.body.find(marker);
    return at == std::string::npos ? -1 : std::stod(m.body.substr(at + marker.size()));
  }

  // Waits until `n` callbacks are queued (not delivered nor dead). A delivery leaves the queue when
  // its outcome is recorded, so this is the barrier after steps whose attempts all succeed: the
  // clock must not move while a delivery is unrecorded (a jump past its lease sends it again).
  bool wait_queued(double n) const {
    return eventually([&] { return metric("opendsr_callbacks_queued") == n; });
  }

 private:
  std::string move(const std::string& json) {
    auto r = api().move_clock(json);
    EXPECT_EQ(r.status, 200) << r.body;
    return json_string(r.body, "now");
  }

  std::unique_ptr<daemon_process> process_;
  std::uint16_t port_ = 0;
  workspace demo_;
};

class Callbacks : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(testing::env_path("OPENDSRD").empty()) << "OPENDSRD must name the opendsrd binary";
    dir_ = testing::make_temp_dir();
  }
  void TearDown() override {
    daemon_.reset();  // SIGKILL, if still running
    testing::remove_temp_dir(dir_);
  }

  // Returns once every callback attempt started so far has been recorded, with `queued` callbacks
  // left in the queue; moves the clock by 1 s. REQUIRES: the daemon runs with one_at_a_time.
  // No metric tells that a failed attempt is recorded (a claimed callback's due time is its lease
  // expiry, so the oldest-due age reads 0 while it is in flight), and the next retry is scheduled
  // from the clock at recording. So a probe: a new request whose one callback (answered 202) falls
  // due after everything already due; with one callback in flight at a time it is claimed only
  // once every earlier outcome is recorded, and its own delivery leaves the queue when recorded.
  void settle(double queued) {
    if (!probe_) probe_ = start_receiver();
    submit({probe_->url("/probe")});
    daemon_->advance(1);
    ASSERT_TRUE(probe_->wait_for(++probes_, 10s)) << "probe " << probes_;
    ASSERT_TRUE(daemon_->wait_queued(queued)) << daemon_->metric("opendsr_callbacks_queued");
  }

  // Starts (or restarts) the daemon on dir_/data.
  test_daemon& start_daemon(std::vector<std::string> flags = {}, std::string start = test_start) {
    daemon_ = std::make_unique<test_daemon>(dir_ / "data", std::move(flags), std::move(start));
    EXPECT_TRUE(daemon_->ready()) << daemon_->process().stdout_text() << daemon_->process().log();
    if (!daemon_->demo().secret.empty()) demo_ = daemon_->demo();
    return *daemon_;
  }

  static std::unique_ptr<loopback_receiver> start_receiver(testing::loopback_receiver_options options = {}) {
    auto r = loopback_receiver::start(std::move(options));
    EXPECT_TRUE(r) << r.error().message();
    return r ? std::move(*r) : nullptr;
  }

  // Sets the clock to `time` (the engine ticks), then moves it past the next flush so that what
  // the tick changed is sent; waits until `receiver` has had `count` requests and every delivery
  // is recorded.
  void walk_to(const std::string& time, const loopback_receiver& receiver, std::size_t count) {
    daemon_->set(time);
    daemon_->advance(60);
    ASSERT_TRUE(receiver.wait_for(count, 10s)) << time << ": " << receiver.requests().size();
    ASSERT_TRUE(daemon_->wait_queued(0)) << time;
  }

  // Submits a request of the demo workspace; returns its id.
  std::string submit(strings urls, std::string type = "erasure", std::optional<bool> skip_waiting_period = std::nullopt) {
    const std::string id = uuid_v4(0xca11bac0000ull + ++serial_);
    auto r = daemon_->api().post(make_body({.id = id, .type = std::move(type), .identities = {{"email", email(serial_)}},
                                            .skip_waiting_period = skip_waiting_period, .callback_urls = std::move(urls)}),
                                 demo_);
    EXPECT_EQ(r.status, 201) << r.body;
    return id;
  }
  static std::string email(int n) { return "subject" + std::to_string(n) + "@example.com"; }

  std::string status_of(const std::string& id) {
    return json_string(daemon_->api().get("/v3/requests/" + id, &demo_).body, "request_status");
  }

  // The daemon's certificate, from the URL its discovery names: dir_/pub.pem.
  void save_certificate() { ASSERT_NO_FATAL_FAILURE(testing::save_served_certificate(daemon_->api(), dir_)); }

  // The callback verifies as PKCS#1 v1.5 SHA-256 with the served certificate's key; not as PSS,
  // nor after one flipped body byte.
  void expect_verifies(const received_request& c, bool also_negative = false) {
    auto raw = detail::base64_decode(header(c, "X-OpenDSR-Signature"));
    ASSERT_TRUE(raw) << header(c, "X-OpenDSR-Signature");
    auto [ok, out] = testing::openssl_verify(dir_ / "pub.pem", c.body, *raw, dir_);
    EXPECT_EQ(ok, 0) << out << c.body;
    EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
    if (!also_negative) return;
    auto [pss, pss_out] = testing::openssl_verify(dir_ / "pub.pem", c.body, *raw, dir_, "-sigopt rsa_padding_mode:pss");
    EXPECT_NE(pss, 0) << pss_out;
    std::string flipped = c.body;
    flipped[flipped.size() / 2] ^= 0x01;
    auto [bad, bad_out] = testing::openssl_verify(dir_ / "pub.pem", flipped, *raw, dir_);
    EXPECT_NE(bad, 0) << bad_out;
  }

  fs::path dir_;
  std::unique_ptr<test_daemon> daemon_;
  workspace demo_;
  int serial_ = 0;
  std::unique_ptr<loopback_receiver> probe_;
  std::size_t probes_ = 0;
};

// A well-formed callback of request `id` to `url` announcing `status`.
void expect_callback(const received_request& c, const std::string& id, const std::string& url, const std::string& status) {
  EXPECT_EQ(c.method, "POST");
  EXPECT_EQ(header(c, "Content-Type"), "application/json");
  EXPECT_EQ(header(c, "X-OpenDSR-Processor-Domain"), "localhost");
  EXPECT_EQ(header(c, "X-OpenDSR-Signature").size(), 344u);  // base64 of an RSA-2048 signature
  EXPECT_EQ(json_string(c.body, "subject_request_id"), id) << c.body;
  EXPECT_EQ(json_string(c.body, "status_callback_url"), url) << c.body;
  EXPECT_EQ(json_string(c.body, "request_status"), status) << c.body;
  EXPECT_EQ(json_string(c.body, "controller_id"), "demo") << c.body;
  EXPECT_EQ(json_string(c.body, "api_version"), "3.0") << c.body;
  for (const char* key : {"expected_completion_time", "results_url", "extensions", "group_id"})
    EXPECT_NE(c.body.find("\"" + std::string(key) + "\":"), std::string::npos) << key << " in " << c.body;
}

TEST_F(Callbacks, TwoUrlsEachReceivePendingInProgressCompletedInOrder) {
  auto first = start_receiver(), second = start_receiver();
  test_daemon& d = start_daemon();
  save_certificate();
  const std::string a = first->url("/opendsr/callbacks"), b = second->url("/cb?token=x");
  const std::string id = submit({a, b}, "erasure", true);  // runs at the next midnight, done 48 h later

  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-05T10:00:07Z", *first, 1));  // the flush after creation
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-06T00:00:07Z", *first, 2));  // processing starts at midnight
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-08T00:00:07Z", *first, 3));  // 48 h later: completed
  EXPECT_EQ(status_of(id), "completed");

  for (auto [receiver, url] : {std::pair{first.get(), a}, std::pair{second.get(), b}}) {
    auto got = receiver->requests();
    ASSERT_EQ(statuses(got), (strings{"pending", "in_progress", "completed"})) << url;
    EXPECT_EQ(got[0].target, url.substr(url.find('/', 8)));
    for (std::size_t i = 0; i < got.size(); ++i) {
      expect_callback(got[i], id, url, statuses(got)[i]);
      expect_verifies(got[i]);
    }
  }
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 6);
}

TEST_F(Callbacks, ACancelledRequestSendsItsCancelledCallbackAfterPending) {
  auto receiver = start_receiver();
  test_daemon& d = start_daemon();
  save_certificate();
  const std::string url = receiver->url("/cb");
  const std::string id = submit({url});
  ASSERT_EQ(d.api().cancel(id, demo_).status, 202);
  d.advance(61);
  ASSERT_TRUE(receiver->wait_for(2, 10s));
  ASSERT_TRUE(d.wait_queued(0));
  auto got = receiver->requests();
  ASSERT_EQ(statuses(got), (strings{"pending", "cancelled"}));
  for (std::size_t i = 0; i < got.size(); ++i) {
    expect_callback(got[i], id, url, statuses(got)[i]);
    expect_verifies(got[i]);
  }
}

TEST_F(Callbacks, ARePostOfAnExistingIdQueuesNothing) {
  auto receiver = start_receiver();
  test_daemon& d = start_daemon();
  const std::string id = uuid_v4(0xdead);
  const std::string original = make_body({.id = id, .callback_urls = {receiver->url("/original")}});
  ASSERT_EQ(d.api().post(original, demo_).status, 201);
  d.advance(61);
  ASSERT_TRUE(receiver->wait_for(1, 10s));
  ASSERT_TRUE(d.wait_queued(0));

  auto again = d.api().post(original, demo_);
  EXPECT_EQ(again.status, 400) << again.body;
  auto other_url = d.api().post(make_body({.id = id, .callback_urls = {receiver->url("/resubmitted")}}), demo_);
  EXPECT_EQ(other_url.status, 400) << other_url.body;
  EXPECT_EQ(d.metric("opendsr_callbacks_queued"), 0);  // nothing new was queued, so nothing can be sent
  d.advance(60);
  d.advance(3600);
  EXPECT_EQ(statuses(receiver->requests()), (strings{"pending"}));
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 1);
  EXPECT_EQ(d.metric("opendsr_callback_failures_total"), 0);
}

TEST_F(Callbacks, RetriesAreByteIdenticalAndAnotherReceiverIsUnaffected) {
  auto failing = start_receiver(), healthy = start_receiver();
  failing->respond("/cb", answer(500));
  failing->respond("/cb", answer(500));
  failing->respond("/cb", answer(202));
  test_daemon& d = start_daemon(one_at_a_time);
  save_certificate();
  const std::string id = submit({failing->url("/cb"), healthy->url("/cb")});

  d.advance(1);  // the first flush: the healthy receiver has its callback now
  ASSERT_TRUE(failing->wait_for(1, 10s) && healthy->wait_for(1, 10s));
  ASSERT_NO_FATAL_FAILURE(settle(1));
  d.advance(max_backoff_seconds(1) + 1);
  ASSERT_TRUE(failing->wait_for(2, 10s));
  ASSERT_NO_FATAL_FAILURE(settle(1));
  d.advance(max_backoff_seconds(2) + 1);
  ASSERT_TRUE(failing->wait_for(3, 10s));
  ASSERT_TRUE(d.wait_queued(0));  // the third attempt succeeded: nothing more comes
  d.advance(6 * 3600 + 1);

  auto attempts = failing->requests();
  ASSERT_EQ(attempts.size(), 3u);
  expect_callback(attempts[0], id, failing->url("/cb"), "pending");
  expect_verifies(attempts[0]);
  for (const auto& retry : attempts) {
    EXPECT_EQ(retry.body, attempts[0].body);
    EXPECT_EQ(header(retry, "X-OpenDSR-Signature"), header(attempts[0], "X-OpenDSR-Signature"));
  }
  auto other = healthy->requests();
  ASSERT_EQ(other.size(), 1u);
  expect_callback(other[0], id, healthy->url("/cb"), "pending");
  expect_verifies(other[0]);
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 2 + probes_);
  EXPECT_EQ(d.metric("opendsr_callback_failures_total"), 2);
}

TEST_F(Callbacks, RedirectsUnauthorizedAndSilenceAreRetriedNotFollowedAndTheRequestCompletes) {
  auto receiver = start_receiver(), elsewhere = start_receiver();
  http_headers location;
  location.add("Location", elsewhere->url("/moved"));
  receiver->respond("/redirect", answer(302, location));
  receiver->respond("/unauthorized", answer(401));
  receiver->respond("/silent", scripted_response::never());
  auto flags = one_at_a_time;
  flags.insert(flags.end(), {"--callback-timeout-ms", "300"});
  test_daemon& d = start_daemon(flags);
  const strings urls = {receiver->url("/redirect"), receiver->url("/unauthorized"), receiver->url("/silent")};
  const std::string id = submit(urls, "erasure", true);

  d.advance(1);
  ASSERT_TRUE(receiver->wait_for(3, 10s));
  ASSERT_NO_FATAL_FAILURE(settle(3));  // the silent one timed out
  EXPECT_EQ(d.metric("opendsr_callback_failures_total"), 3);
  d.advance(max_backoff_seconds(1) + 1);  // each is retried once, and answered 202 this time
  ASSERT_TRUE(receiver->wait_for(6, 10s));
  ASSERT_TRUE(d.wait_queued(0));
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-06T00:00:07Z", *receiver, 9));
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-08T00:00:07Z", *receiver, 12));

  EXPECT_EQ(status_of(id), "completed");
  for (const auto& url : urls) {
    auto got = at_path(*receiver, url.substr(url.find('/', 8)));
    ASSERT_EQ(statuses(got), (strings{"pending", "pending", "in_progress", "completed"})) << url;
    EXPECT_EQ(got[1].body, got[0].body) << url;
    EXPECT_EQ(header(got[1], "X-OpenDSR-Signature"), header(got[0], "X-OpenDSR-Signature")) << url;
    expect_callback(got[3], id, url, "completed");
  }
  EXPECT_TRUE(elsewhere->requests().empty()) << "a redirect was followed";
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 9 + probes_);
  EXPECT_EQ(d.metric("opendsr_callback_failures_total"), 3);
}

TEST_F(Callbacks, ARequestWithoutUrlsCausesNoTraffic) {
  auto receiver = start_receiver();
  test_daemon& d = start_daemon();
  const std::string quiet = submit({}, "erasure", true);
  for (const char* day : {"2026-01-05T10:01:07Z", "2026-01-06T00:00:07Z", "2026-01-06T00:01:07Z", "2026-01-08T00:00:07Z",
                          "2026-01-08T00:01:07Z"}) {
    d.set(day);
    EXPECT_EQ(d.metric("opendsr_callbacks_queued"), 0) << day;
  }
  EXPECT_EQ(status_of(quiet), "completed");
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 0);
  EXPECT_EQ(d.metric("opendsr_callback_failures_total"), 0);

  // A request with a URL, walked the same way, shows the delivery path works: the receiver gets
  // its callbacks and nothing of the first request's.
  const std::string sentinel = submit({receiver->url("/cb")}, "erasure", true);
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-08T00:01:07Z", *receiver, 1));
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-09T00:00:07Z", *receiver, 2));
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-11T00:00:07Z", *receiver, 3));
  auto got = receiver->requests();
  ASSERT_EQ(statuses(got), (strings{"pending", "in_progress", "completed"}));
  for (const auto& c : got) EXPECT_EQ(json_string(c.body, "subject_request_id"), sentinel);
}

TEST_F(Callbacks, TwentyFailuresDeadLetterThenCallbacksDeadListsAndRedriveDelivers) {
  auto receiver = start_receiver();
  for (int i = 0; i < 20; ++i) receiver->respond("/cb", answer(500));
  test_daemon& d = start_daemon(one_at_a_time);  // and the defaults: 20 attempts, 72 h
  const std::string url = receiver->url("/cb?t=1");
  const std::string id = submit({url});

  d.advance(1);
  ASSERT_TRUE(receiver->wait_for(1, 10s));
  ASSERT_NO_FATAL_FAILURE(settle(1));
  // Each step waits the longest possible backoff: 19 steps take 68.5 h, within the 72 h max age,
  // so the entry dies of its 20th failed attempt.
  for (unsigned failure = 1; failure < 20; ++failure) {
    d.advance(max_backoff_seconds(failure) + 1);
    ASSERT_TRUE(receiver->wait_for(failure + 1, 10s)) << "attempt " << failure + 1;
    if (failure < 19) {
      ASSERT_NO_FATAL_FAILURE(settle(1)) << "attempt " << failure + 1;
    }
  }
  ASSERT_TRUE(eventually([&] { return d.metric("opendsr_callbacks_dead") == 1; }));
  EXPECT_EQ(d.metric("opendsr_callbacks_queued"), 0);
  EXPECT_EQ(d.metric("opendsr_callbacks_dead_lettered_total"), 1);
  const std::string now = d.advance(6 * 3600 + 1);
  EXPECT_EQ(receiver->requests().size(), 20u);  // dead: no 21st attempt
  ASSERT_EQ(d.process().stop(SIGTERM), 0) << d.process().log();

  const std::string tool = testing::env_path("OPENDSR") + " callbacks ";
  const std::string data = " --data-dir " + (dir_ / "data").string();
  auto [listed, dead] = run(tool + "dead" + data + " 2>&1");
  ASSERT_EQ(listed, 0) << dead;
  const std::string line = "demo\t" + id + "\tpending\t20\t";
  EXPECT_EQ(dead.rfind("workspace\trequest\tstatus\tattempts\tlast_attempt\turl\tlast_error\n", 0), 0u) << dead;
  auto at = dead.find(line);
  ASSERT_NE(at, std::string::npos) << dead;
  EXPECT_NE(dead.find("\t" + url + "\tHTTP 500\n", at), std::string::npos) << dead;
  EXPECT_EQ(std::count(dead.begin(), dead.end(), '\n'), 2) << dead;
  EXPECT_EQ(dead.find("@example.com"), std::string::npos) << dead;  // no identity values
  EXPECT_EQ(dead.find(demo_.secret), std::string::npos);
  auto [filtered, only] = run(tool + "dead --workspace demo --request " + id + data + " 2>&1");
  EXPECT_EQ(filtered, 0);
  EXPECT_EQ(only, dead);
  auto [none_status, none] = run(tool + "dead --workspace demo --request " + uuid_v4(1) + data + " 2>&1");
  EXPECT_EQ(none_status, 0);
  EXPECT_EQ(std::count(none.begin(), none.end(), '\n'), 1) << none;

  auto [redriven, requeued] = run(tool + "redrive --at " + now + data + " 2>&1");
  ASSERT_EQ(redriven, 0) << requeued;
  EXPECT_EQ(requeued, "requeued 1 dead-lettered callback, due " + now + "\n");

  test_daemon& restarted = start_daemon(one_at_a_time, now);
  restarted.advance(1);
  ASSERT_TRUE(receiver->wait_for(21, 10s));
  ASSERT_TRUE(restarted.wait_queued(0));
  auto got = receiver->requests();
  EXPECT_EQ(got[20].body, got[0].body);  // the same bytes and signature as the first attempt
  EXPECT_EQ(header(got[20], "X-OpenDSR-Signature"), header(got[0], "X-OpenDSR-Signature"));
  EXPECT_EQ(restarted.metric("opendsr_callbacks_dead"), 0);
  EXPECT_EQ(restarted.metric("opendsr_callbacks_delivered_total"), 1);
}

TEST_F(Callbacks, EveryCallbackVerifiesAsPkcs1WithTheServedCertificateAndNotAsPssNorAltered) {
  auto receiver = start_receiver();
  test_daemon& d = start_daemon();
  save_certificate();
  const std::string cancelled = submit({receiver->url("/a"), receiver->url("/b")});
  ASSERT_EQ(d.api().cancel(cancelled, demo_).status, 202);
  const std::string access = submit({receiver->url("/c")}, "access");
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-05T10:00:07Z", *receiver, 5));
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-08T00:00:07Z", *receiver, 6));  // Thursday: access starts
  ASSERT_NO_FATAL_FAILURE(walk_to("2026-01-10T00:00:07Z", *receiver, 7));
  EXPECT_EQ(status_of(access), "completed");
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 7u);
  for (const auto& c : got) expect_verifies(c, true);

  // As a controller checks them: opendsr verify-callback, the certificate fetched through the
  // URL the processor's discovery names (here, the test daemon's self-signed one, trusted alone).
  const std::string discovery = "http://127.0.0.1:" + std::to_string(d.api().port()) + "/v3/discovery";
  const std::string tool = testing::env_path("OPENDSR") + " verify-callback --domain localhost --discovery-url " +
                           discovery + " --allow-local --ca-file " + (dir_ / "cert.pem").string() + " --no-system-trust";
  testing::write_file(dir_ / "body.json", got[0].body);
  testing::write_file(dir_ / "sig.txt", header(got[0], "X-OpenDSR-Signature"));
  const std::string one = " --processor-domain " + header(got[0], "X-OpenDSR-Processor-Domain") + " --signature-file " +
                          (dir_ / "sig.txt").string() + " --body " + (dir_ / "body.json").string() + " 2>&1";
  auto [accepted, accepted_out] = run(tool + one);
  EXPECT_EQ(accepted, 0) << accepted_out;
  EXPECT_EQ(accepted_out, "202 Accepted\n");
  std::string altered = got[0].body;
  altered[altered.size() / 2] ^= 0x01;
  testing::write_file(dir_ / "body.json", altered);
  auto [refused, refused_out] = run(tool + one);
  EXPECT_EQ(refused, 1) << refused_out;
  EXPECT_TRUE(refused_out.starts_with("401 ")) << refused_out;
}

// A test CA and leaves for the receivers, made with the openssl command (EC P-256: quick).
class CallbacksTls : public Callbacks {
 protected:
  // Makes dir_/NAME.key and dir_/NAME.crt: a CA if `issuer` is empty, else a leaf with
  // subjectAltName `san` signed by dir_/ISSUER.
  void make_certificate(const std::string& name, const std::string& issuer, const std::string& san = {}) {
    const std::string key = (dir_ / (name + ".key")).string(), crt = (dir_ / (name + ".crt")).string();
    std::string command = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + key + " 2>&1 && ";
    if (issuer.empty()) {
      command += "openssl req -x509 -new -key " + key + " -subj /CN=" + name + " -days 2 -addext basicConstraints=critical,CA:TRUE" +
                 " -addext keyUsage=critical,keyCertSign -out " + crt + " 2>&1";
    } else {
      const std::string ext = (dir_ / (name + ".ext")).string();
      write_file(ext, "subjectAltName=" + san + "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
      command += "openssl req -new -key " + key + " -subj /CN=" + name + " 2>&1 | openssl x509 -req -CA " +
                 (dir_ / (issuer + ".crt")).string() + " -CAkey " + (dir_ / (issuer + ".key")).string() +
                 " -CAcreateserial -days 2 -extfile " + ext + " -out " + crt + " 2>&1";
    }
    auto [status, out] = run(command);
    ASSERT_EQ(status, 0) << command << "\n" << out;
  }

  std::unique_ptr<loopback_receiver> start_tls_receiver(const std::string& leaf) {
    testing::loopback_receiver_options options;
    options.tls = http_server_tls{testing::read_text(dir_ / (leaf + ".crt")), testing::read_text(dir_ / (leaf + ".key"))};
    return start_receiver(std::move(options));
  }
};

TEST_F(CallbacksTls, HttpsIsDeliveredToATrustedReceiverOnlyAndRefusedUntrustedOrMisnamed) {
  ASSERT_NO_FATAL_FAILURE(make_certificate("test-ca", ""));
  ASSERT_NO_FATAL_FAILURE(make_certificate("other-ca", ""));
  ASSERT_NO_FATAL_FAILURE(make_certificate("loopback", "test-ca", "IP:127.0.0.1,DNS:localhost"));
  ASSERT_NO_FATAL_FAILURE(make_certificate("untrusted", "other-ca", "IP:127.0.0.1,DNS:localhost"));
  ASSERT_NO_FATAL_FAILURE(make_certificate("misnamed", "test-ca", "DNS:controller.example"));
  auto trusted = start_tls_receiver("loopback"), untrusted = start_tls_receiver("untrusted"), misnamed = start_tls_receiver("misnamed");
  ASSERT_TRUE(trusted && untrusted && misnamed);
  ASSERT_EQ(trusted->url("/cb").rfind("https://127.0.0.1:", 0), 0u);

  {
    test_daemon& d = start_daemon({"--callback-ca-file", (dir_ / "test-ca.crt").string()});
    save_certificate();
    const std::string id = submit({trusted->url("/cb"), untrusted->url("/cb"), misnamed->url("/cb")});
    d.advance(61);
    ASSERT_TRUE(trusted->wait_for(1, 10s));
    // The two others failed their handshakes: nothing reached them.
    ASSERT_TRUE(eventually([&] { return d.metric("opendsr_callback_failures_total") == 2; }));
    ASSERT_TRUE(d.wait_queued(2));
    EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 1);
    auto got = trusted->requests();
    ASSERT_EQ(got.size(), 1u);
    expect_callback(got[0], id, trusted->url("/cb"), "pending");
    expect_verifies(got[0]);
    EXPECT_TRUE(untrusted->requests().empty());
    EXPECT_TRUE(misnamed->requests().empty());
    EXPECT_NE(d.process().log().find("event=callback_failed"), std::string::npos);
    EXPECT_EQ(d.process().stop(SIGTERM), 0);
  }
  {
    // Without --callback-ca-file the test CA is not trusted: the same receiver gets nothing.
    testing::remove_temp_dir(dir_ / "data");
    test_daemon& d = start_daemon();
    submit({trusted->url("/no-ca")});
    d.advance(61);
    ASSERT_TRUE(eventually([&] { return d.metric("opendsr_callback_failures_total") == 1; }));
    EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 0);
    EXPECT_EQ(trusted->requests().size(), 1u);
  }
}

TEST_F(Callbacks, IntakeRefusesCallbackUrlsThePolicyRefuses) {
  auto receiver = start_receiver();
  test_daemon& d = start_daemon();
  for (const char* refused : {"https://10.0.0.1/cb", "https://169.254.169.254/latest/meta-data/", "https://[fd00::1]/cb",
                              "https://2130706433/cb", "https://192.168.1.10/cb", "https://172.16.0.1/cb", "https://100.64.0.1/cb",
                              "https://0.0.0.0/cb", "https://[::ffff:10.0.0.1]/cb", "https://[fe80::1]/cb", "ftp://127.0.0.1/cb"}) {
    auto r = d.api().post(make_body({.id = uuid_v4(++serial_), .callback_urls = {receiver->url("/ok"), refused}}), demo_);
    EXPECT_EQ(r.status, 400) << refused << ": " << r.body;
    EXPECT_NE(r.body.find("status_callback_urls[1]"), std::string::npos) << refused << ": " << r.body;
    EXPECT_NE(r.body.find("\"code\":400"), std::string::npos) << r.body;
  }
  // Loopback over http is allowed in test mode.
  EXPECT_EQ(d.api().post(make_body({.id = uuid_v4(++serial_), .callback_urls = {receiver->url("/ok")}}), demo_).status, 201);
}

TEST_F(Callbacks, WithoutTestModeLoopbackAndHttpCallbackUrlsAreRefusedAtIntake) {
  auto receiver = start_receiver();
  daemon_process d(dir_ / "data", {"--listen", "127.0.0.1:0", "--deliver-to", "any"});
  const std::uint16_t port = d.wait_ready();
  ASSERT_NE(port, 0) << d.log();
  const workspace demo = testing::demo_workspace(d.stdout_text());
  ASSERT_FALSE(demo.secret.empty()) << d.stdout_text();
  const std::string https_loopback = "https://127.0.0.1:" + std::to_string(receiver->port()) + "/cb";
  for (const std::string& refused : {receiver->url("/cb"), https_loopback, std::string("http://controller.example/cb")}) {
    auto r = daemon_client(port).post(make_body({.id = uuid_v4(++serial_), .callback_urls = {refused}}), demo);
    EXPECT_EQ(r.status, 400) << refused << ": " << r.body;
    EXPECT_NE(r.body.find("status_callback_urls[0]"), std::string::npos) << r.body;
  }
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  EXPECT_TRUE(receiver->requests().empty());
}

TEST_F(Callbacks, InTestModeAPublicUrlIsNeverDeliveredNorLookedUp) {
  test_daemon& d = start_daemon();
  const std::string id = submit({"https://exampleurl.com/opendsr/callbacks"});
  d.advance(61);
  ASSERT_TRUE(eventually([&] { return d.metric("opendsr_callback_failures_total") == 1; }));
  EXPECT_EQ(d.metric("opendsr_callbacks_delivered_total"), 0);
  const std::string log = d.process().log();
  EXPECT_NE(log.find("limited to this machine"), std::string::npos) << log;
  EXPECT_NE(log.find("host=exampleurl.com"), std::string::npos) << log;
  EXPECT_EQ(log.find("/opendsr/callbacks"), std::string::npos) << "the log names the host, never the path";
  EXPECT_EQ(status_of(id), "pending");
}

// SIGKILL while callbacks are in flight, then a restart on the same data directory: every
// callback arrives at least once; one not answered 2xx before the kill is sent again; and of
// those answered 2xx, only ones still in flight (answered, not yet recorded) may be sent again.
TEST_F(Callbacks, AfterSigkillEveryCallbackArrivesAndOnlyInFlightOnesAreResent) {
  // The held exchanges keep connections open: fewer than the daemon's 16 per origin.
  constexpr int requests = 200, answered_first = 100, held = 8, max_in_flight = 64;
  auto receiver = start_receiver();
  for (int i = 0; i < answered_first; ++i) receiver->respond("/cb", answer(202));
  for (int i = 0; i < held; ++i) receiver->respond("/cb", scripted_response::never());  // then 202 for all others
  test_daemon& d = start_daemon({"--callback-max-in-flight", std::to_string(max_in_flight), "--callback-timeout-ms", "30000"});
  std::set<std::string> ids;
  for (int i = 0; i < requests; ++i) ids.insert(submit({receiver->url("/cb")}));

  const std::string now = d.advance(61);
  ASSERT_TRUE(receiver->wait_for(requests, 20s)) << receiver->requests().size();
  d.process().stop(SIGKILL);  // held ones unanswered; some answered ones perhaps not yet recorded
  const auto before = receiver->requests();
  ASSERT_EQ(before.size(), static_cast<std::size_t>(requests));  // nothing arrives from a dead daemon

  // Arrivals answered 2xx before the kill: all but the held ones (the script runs in arrival order).
  std::set<std::string> answered, unanswered;
  for (const auto& c : before) {
    const bool was_held = c.sequence > answered_first && c.sequence <= answered_first + held;
    (was_held ? unanswered : answered).insert(json_string(c.body, "subject_request_id"));
  }
  ASSERT_EQ(unanswered.size(), static_cast<std::size_t>(held));
  ASSERT_EQ(answered.size() + unanswered.size(), ids.size());

  test_daemon& restarted = start_daemon({"--callback-max-in-flight", std::to_string(max_in_flight)}, now);
  restarted.advance(61);
  ASSERT_TRUE(receiver->wait_for(requests + held, 20s));
  ASSERT_TRUE(restarted.wait_queued(0)) << restarted.metric("opendsr_callbacks_queued");

  std::map<std::string, int> resent;
  for (const auto& c : receiver->requests())
    if (c.sequence > static_cast<std::uint64_t>(requests)) ++resent[json_string(c.body, "subject_request_id")];
  for (const auto& id : unanswered) EXPECT_EQ(resent[id], 1) << id << " was not answered 2xx, so it is sent again";
  int duplicates = 0;
  for (const auto& id : answered) duplicates += resent.count(id) ? resent[id] : 0;
  // Answered 2xx but not recorded at the kill: at most the in-flight slots the held ones left.
  EXPECT_LE(duplicates, max_in_flight - held);
  EXPECT_EQ(restarted.metric("opendsr_callbacks_delivered_total"), held + duplicates);
  std::printf("crash: %d callbacks, %d held at the kill and resent, %d answered 2xx and resent (bound %d)\n", requests, held,
              duplicates, max_in_flight - held);
  for (const auto& c : receiver->requests()) EXPECT_EQ(json_string(c.body, "request_status"), "pending");
}

}  // namespace
}  // namespace opendsr
