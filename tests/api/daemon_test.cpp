// Black-box tests of opendsrd: the built binary, started in --test-mode on an ephemeral loopback
// port in a temporary data directory, driven over real HTTP. Signatures are checked with an
// independent implementation (the openssl command) against the certificate the daemon serves.
// The daemon's path comes from the environment (OPENDSRD, OPENDSR), set by tests/api/meson.build.
#include "daemon_process.hpp"

#include "common/base64.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::daemon_client;
using testing::daemon_process;
using testing::env_path;
using testing::make_body;
using testing::make_temp_dir;
using testing::remove_temp_dir;
using testing::run;
using testing::uuid_v4;
using testing::value_after;
using testing::workspace;
using testing::write_file;
using wire::format_request;

const char* const test_start = "2026-01-05T10:00:00Z";  // a Monday

class Daemon : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_FALSE(env_path("OPENDSRD").empty()) << "OPENDSRD must name the opendsrd binary";
    dir_ = make_temp_dir();
    for (const char* id : {"3622", "4308", "limited"})
      ASSERT_NO_FATAL_FAILURE(testing::add_workspace(dir_ / "data", id, workspaces_[id]));
    daemon_ = std::make_unique<daemon_process>(
        dir_ / "data", std::vector<std::string>{"--test-mode", "--listen", "127.0.0.1:0", "--no-demo", "--test-start", test_start,
                                                "--read-timeout-ms", "500", "--threads", "2"});
    port_ = daemon_->wait_ready();
    ASSERT_NE(port_, 0) << daemon_->stdout_text() << daemon_->log();

    // The public key of the certificate the daemon serves, named by discovery.
    ASSERT_NO_FATAL_FAILURE(testing::save_served_certificate(daemon_client(port_), dir_));
  }

  static void TearDownTestSuite() {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
    }
    daemon_.reset();
    remove_temp_dir(dir_);
  }

  static wire::response exchange(std::string_view bytes) { return daemon_client(port_).exchange(bytes); }
  static wire::response get(std::string_view target, const workspace* w) { return daemon_client(port_).get(target, w); }
  static wire::response post(const std::string& body, const workspace& w, std::string content_type = "application/json") {
    return daemon_client(port_).post(body, w, std::move(content_type));
  }
  static wire::response cancel(const std::string& id, const workspace& w) { return daemon_client(port_).cancel(id, w); }
  static wire::response move_clock(const std::string& json) { return daemon_client(port_).move_clock(json); }

  // A fresh request id and a fresh e-mail identity, so tests never conflict with each other.
  static std::string body(std::string id, std::string type = "erasure", std::optional<std::string> group = {}) {
    return make_body({.id = std::move(id), .type = std::move(type), .identities = {{"email", "s" + std::to_string(++serial_) + "@example.com"}},
                      .group_id = std::move(group)});
  }
  static std::string next_id() { return uuid_v4(0x5eed0000 + ++serial_); }

  // The signature verifies with openssl against the served certificate, and fails after one
  // flipped body byte.
  static void expect_signed(const wire::response& r) {
    EXPECT_EQ(r.header("X-OpenDSR-Processor-Domain").value_or(""), "localhost");
    auto signature = r.header("X-OpenDSR-Signature");
    ASSERT_TRUE(signature) << r.status << " " << r.body;
    EXPECT_EQ(signature->size(), 344u);
    auto raw = detail::base64_decode(*signature);
    ASSERT_TRUE(raw);
    auto [ok, out] = testing::openssl_verify(dir_ / "pub.pem", r.body, *raw, dir_);
    EXPECT_EQ(ok, 0) << out;
    EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
    std::string flipped = r.body;
    flipped[flipped.size() / 2] ^= 0x01;
    auto [bad, bad_out] = testing::openssl_verify(dir_ / "pub.pem", flipped, *raw, dir_);
    EXPECT_NE(bad, 0) << bad_out;
  }

  // The OpenDSR error body for `status`, never HTML, with Cache-Control: no-store.
  static void expect_error(const wire::response& r, int status, std::string_view message_part = {}) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(r.header("Cache-Control").value_or(""), "no-store");
    EXPECT_NE(r.body.find("\"code\":" + std::to_string(status)), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"errors\":[{\"domain\":"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find(message_part), std::string::npos) << r.body;
    EXPECT_FALSE(r.header("X-OpenDSR-Signature"));
  }

  static std::string status_of(const std::string& id, const workspace& w) {
    auto r = get("/v3/requests/" + id, &w);
    EXPECT_EQ(r.status, 200) << r.body;
    expect_signed(r);
    const std::string marker = "\"request_status\":\"";
    auto at = r.body.find(marker);
    if (at == std::string::npos) return r.body;
    return r.body.substr(at + marker.size(), r.body.find('"', at + marker.size()) - at - marker.size());
  }

  static inline fs::path dir_;
  static inline std::unique_ptr<daemon_process> daemon_;
  static inline std::uint16_t port_ = 0;
  static inline std::map<std::string, workspace> workspaces_;
  static inline int serial_ = 0;
  const workspace& a_ = workspaces_["3622"];
  const workspace& b_ = workspaces_["4308"];
};

TEST_F(Daemon, SubmitReadGroupAndCancelAreSignedAndVerifyWithOpenssl) {
  const std::string id = next_id(), second = next_id();
  auto created = post(body(id, "erasure", "g-1"), a_);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.body.find("\"controller_id\":\"3622\""), std::string::npos);
  EXPECT_NE(created.body.find("\"received_time\":\"2026-01-05T10:00:00Z\""), std::string::npos) << created.body;
  EXPECT_TRUE(created.header("X-mp-rate-limit-percentage-used"));
  expect_signed(created);

  // The trailing slash of mParticle's example is tolerated.
  auto with_slash = exchange(format_request("POST", "/v3/requests/", {a_.authorization(), "Content-Type: application/json"},
                                            body(second, "access", "g-1")));
  ASSERT_EQ(with_slash.status, 201) << with_slash.body;
  expect_signed(with_slash);

  EXPECT_EQ(status_of(id, a_), "pending");
  auto group = get("/v3/requests?group_id=g-1", &a_);
  ASSERT_EQ(group.status, 200);
  EXPECT_EQ(group.body.front(), '[');
  EXPECT_LT(group.body.find(id), group.body.find(second)) << group.body;
  expect_signed(group);

  auto cancelled = cancel(second, a_);
  ASSERT_EQ(cancelled.status, 202) << cancelled.body;
  EXPECT_NE(cancelled.body.find("\"expected_completion_time\":null"), std::string::npos);
  expect_signed(cancelled);
  EXPECT_EQ(status_of(second, a_), "cancelled");
}

TEST_F(Daemon, DiscoveryAndTheCertificateArePublicAndUnsigned) {
  for (const char* target : {"/v3/discovery", "/v3/discovery/"}) {
    auto r = get(target, nullptr);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\"api_version\":\"3.0\""), std::string::npos);
    EXPECT_FALSE(r.header("X-OpenDSR-Signature"));
  }
  EXPECT_EQ(get("/v3/discovery", &a_).status, 200);  // credentials are accepted too
}

TEST_F(Daemon, EveryErrorStatusHasItsJsonBody) {
  const std::string id = next_id();
  ASSERT_EQ(post(body(id), a_).status, 201);

  expect_error(post("{\"regulation\":", a_), 400);
  expect_error(post(make_body({.id = "not-a-uuid"}), a_), 400, "subject_request_id");
  expect_error(post(body(id), a_), 400, "Subject request already exists.");

  auto anonymous = exchange(format_request("GET", "/v3/requests/" + id, {}));
  expect_error(anonymous, 401);
  EXPECT_EQ(anonymous.header("WWW-Authenticate").value_or(""), "Basic realm=\"opendsr\"");
  workspace wrong = a_;
  wrong.secret += "x";
  auto refused = get("/v3/requests/" + id, &wrong);
  expect_error(refused, 401);
  EXPECT_EQ(refused.header("WWW-Authenticate").value_or(""), "Basic realm=\"opendsr\"");
  EXPECT_EQ(refused.body.find(wrong.secret), std::string::npos);

  expect_error(get("/v3/requests/" + next_id(), &a_), 404);
  expect_error(get("/v3/nothing-here", &a_), 404);
  expect_error(get("/index.html", nullptr), 404);

  auto put = exchange(format_request("PUT", "/v3/requests/" + id, {a_.authorization()}, "{}"));
  expect_error(put, 405);
  EXPECT_EQ(put.header("Allow").value_or(""), "GET, DELETE");
  auto delete_all = exchange(format_request("DELETE", "/v3/requests", {a_.authorization()}));
  expect_error(delete_all, 405);
  EXPECT_EQ(delete_all.header("Allow").value_or(""), "GET, POST");

  // 409 names the request that blocks: same identities and type, still pending.
  const std::string first = next_id();
  std::string same = make_body({.id = first, .identities = {{"email", "conflict@example.com"}}});
  ASSERT_EQ(post(same, a_).status, 201);
  auto conflict = post(make_body({.id = next_id(), .identities = {{"email", "conflict@example.com"}}}), a_);
  expect_error(conflict, 409, first);

  expect_error(post(body(next_id()), a_, "text/plain"), 415);

  // Cancelling what is not pending is 400 (InvalidOperationException).
  const std::string done = next_id();
  ASSERT_EQ(post(body(done), a_).status, 201);
  ASSERT_EQ(cancel(done, a_).status, 202);
  expect_error(cancel(done, a_), 400, "cancel");
}

TEST_F(Daemon, TwoMebibyteBodiesAre413BeforeAndWithoutContentLength) {
  const std::string big(2 << 20, 'x');
  {
    wire::connection c(port_);
    c.send("POST /v3/requests HTTP/1.1\r\nHost: x\r\n" + a_.authorization() +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n");
    auto r = c.read();  // answered on the header, before any of the body is sent
    ASSERT_TRUE(r);
    expect_error(*r, 413);
  }
  {
    wire::connection c(port_);
    std::string chunked = "POST /v3/requests HTTP/1.1\r\nHost: x\r\n" + a_.authorization() +
                          "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", big.size());
    chunked += size + big + "\r\n0\r\n\r\n";
    c.send(chunked);  // the server may stop reading and answer early
    auto r = c.read();
    ASSERT_TRUE(r);
    expect_error(*r, 413);
  }
}

TEST_F(Daemon, WorkspacesAreIsolated) {
  const std::string id = next_id();
  ASSERT_EQ(post(body(id, "erasure", "shared-group"), a_).status, 201);
  expect_error(get("/v3/requests/" + id, &b_), 404);
  expect_error(cancel(id, b_), 404);
  auto group = get("/v3/requests?group_id=shared-group", &b_);
  EXPECT_EQ(group.status, 200);
  EXPECT_EQ(group.body, "[]");
  expect_signed(group);
  auto same_id = post(body(id), b_);  // ids are scoped to the workspace
  EXPECT_EQ(same_id.status, 201) << same_id.body;
  EXPECT_NE(same_id.body.find("\"controller_id\":\"4308\""), std::string::npos);
  EXPECT_EQ(status_of(id, a_), "pending");
}

TEST_F(Daemon, ThousandCallsAMinuteThenRetryAfterThenRecovery) {
  const workspace& w = workspaces_["limited"];
  wire::connection c(port_);  // one kept-alive connection
  const std::string request = format_request("GET", "/v3/requests?group_id=none", {w.authorization()});
  std::optional<wire::response> last;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(c.send(request));
    last = c.read();
    ASSERT_TRUE(last) << "call " << i;
    ASSERT_EQ(last->status, 200) << "call " << i << ": " << last->body;
    if (i == 0) expect_signed(*last);
  }
  EXPECT_EQ(last->header("X-mp-rate-limit-percentage-used").value_or(""), "100");
  expect_signed(*last);

  ASSERT_TRUE(c.send(request));
  auto limited = c.read();
  ASSERT_TRUE(limited);
  expect_error(*limited, 429);
  EXPECT_EQ(limited->header("X-mp-rate-limit-exceeded").value_or(""), "workspace");
  const std::string retry_after = limited->header("Retry-After").value_or("");
  ASSERT_FALSE(retry_after.empty());
  ASSERT_EQ(retry_after.find_first_not_of("0123456789"), std::string::npos) << retry_after;
  EXPECT_EQ(get("/v3/requests?group_id=none", &a_).status, 200);  // other workspaces are not limited

  ASSERT_EQ(move_clock("{\"advance_seconds\":" + retry_after + "}").status, 200);
  ASSERT_TRUE(c.send(request));
  auto recovered = c.read();
  ASSERT_TRUE(recovered);
  EXPECT_EQ(recovered->status, 200) << recovered->body;
  expect_signed(*recovered);
}

TEST_F(Daemon, AMalformedRequestLineGets400AndTheConnectionCloses) {
  wire::connection c(port_);
  c.send("THIS IS NOT HTTP\r\n\r\n");
  auto r = c.read();
  ASSERT_TRUE(r);
  expect_error(*r, 400);
  EXPECT_TRUE(c.closed_within(5s));
}

TEST_F(Daemon, ASlowClientThatNeverFinishesItsBodyIsDisconnected) {
  wire::connection c(port_);
  c.send("POST /v3/requests HTTP/1.1\r\nHost: x\r\n" + a_.authorization() +
         "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"regulation\":");
  EXPECT_TRUE(c.closed_within(10s));  // --read-timeout-ms 500
  EXPECT_EQ(get("/v3/discovery", nullptr).status, 200);  // the daemon serves on
}

TEST_F(Daemon, ALifecycleAcross21SimulatedDays) {
  // From a Monday at 10:00: access runs on the next Monday or Thursday 00:00Z; erasure waits 7
  // days to the next midnight. Each completes as soon as its fulfilment is done (the test clock's
  // route runs it before answering), well before its 48 h estimate.
  ASSERT_EQ(move_clock("{\"set\":\"2026-03-02T10:00:00Z\"}").status, 200);
  const std::string erasure = next_id(), access = next_id(), cancelled = next_id();
  ASSERT_EQ(post(body(erasure, "erasure"), a_).status, 201);
  ASSERT_EQ(post(body(access, "access"), a_).status, 201);
  ASSERT_EQ(post(body(cancelled, "erasure"), a_).status, 201);
  ASSERT_EQ(cancel(cancelled, a_).status, 202);

  std::map<std::string, std::vector<std::pair<int, std::string>>> seen;  // id -> (day, status) changes
  for (int day = 0; day <= 21; ++day) {
    if (day > 0) {
      auto moved = move_clock("{\"advance_seconds\":86400}");
      ASSERT_EQ(moved.status, 200) << moved.body;
    }
    for (const auto& id : {erasure, access, cancelled}) {
      std::string s = status_of(id, a_);
      if (seen[id].empty() || seen[id].back().second != s) seen[id].emplace_back(day, s);
    }
  }
  using changes = std::vector<std::pair<int, std::string>>;
  // Thursday 5 March 00:00 starts the access request, and its fulfilment completes it.
  EXPECT_EQ(seen[access], (changes{{0, "pending"}, {3, "completed"}}));
  // 9 March 10:00 + the next midnight = 10 March 00:00.
  EXPECT_EQ(seen[erasure], (changes{{0, "pending"}, {8, "completed"}}));
  EXPECT_EQ(seen[cancelled], (changes{{0, "cancelled"}}));
  expect_error(cancel(erasure, a_), 400);

  auto clock = exchange(format_request("GET", "/admin/clock", {}));
  EXPECT_NE(clock.body.find("2026-03-23T10:00:00Z"), std::string::npos) << clock.body;
  expect_error(move_clock("{\"set\":\"2026-01-01T00:00:00Z\"}"), 400, "backwards");
  expect_error(move_clock("{\"advance\":1}"), 400);
}

TEST_F(Daemon, MetricsCountRequestsByRouteAndStatus) {
  ASSERT_EQ(post(body(next_id()), a_).status, 201);
  auto m = get("/metrics", nullptr);
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.header("Content-Type").value_or("").find("text/plain"), std::string::npos);
  EXPECT_NE(m.body.find("opendsr_http_requests_total{route=\"requests\",method=\"POST\",status=\"201\"}"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("opendsr_http_request_duration_seconds_bucket{route=\"requests\",le=\"+Inf\"}"), std::string::npos);
  EXPECT_NE(m.body.find("opendsr_storage_commits_total{outcome=\"ok\"}"), std::string::npos);
  EXPECT_NE(m.body.find("opendsr_posts_in_progress 0"), std::string::npos);
  // The log holds routes and statuses, never an identity value or a secret.
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("event=request method=POST route=requests status=201"), std::string::npos);
  EXPECT_EQ(log.find("@example.com"), std::string::npos);
  EXPECT_EQ(log.find(a_.secret), std::string::npos);
}

TEST_F(Daemon, TheOpendsrToolVerifiesSignaturesLikeAController) {
  auto created = post(body(next_id()), a_);
  ASSERT_EQ(created.status, 201);
  write_file(dir_ / "tool-body.json", created.body);
  const std::string verify = env_path("OPENDSR") + " verify --cert " + (dir_ / "cert.pem").string() + " --signature '" +
                             created.header("X-OpenDSR-Signature").value_or("") + "' --body " + (dir_ / "tool-body.json").string();
  auto [ok, out] = run(verify);
  EXPECT_EQ(ok, 0);
  EXPECT_EQ(out, "Verified OK\n");
  std::string flipped = created.body;
  flipped.back() ^= 0x01;
  write_file(dir_ / "tool-body.json", flipped);
  auto [bad, bad_out] = run(verify);
  EXPECT_EQ(bad, 1);
  EXPECT_EQ(bad_out, "Verification failure\n");
}

TEST_F(Daemon, TheOpendsrToolIsRefusedWhileTheDaemonHoldsTheStore) {
  auto [status, out] = run(env_path("OPENDSR") + " workspace list --data-dir " + (dir_ / "data").string() + " 2>&1");
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("opendsr: "), std::string::npos) << out;
  EXPECT_EQ(out.find(a_.api_key), std::string::npos);
}

// Separate daemons, each in its own data directory.
TEST(DaemonProcess, FirstRunPrintsCredentialsAndACurlLineThatWorksAndSigtermKeepsEveryRequest) {
  const fs::path dir = make_temp_dir();
  std::string curl_line;
  {
    daemon_process d(dir / "data", {"--listen", "127.0.0.1:0"});
    ASSERT_NE(d.wait_ready(), 0) << d.log();
    const std::string& out = d.stdout_text();
    EXPECT_FALSE(value_after(out, "api key:").empty()) << out;
    EXPECT_FALSE(value_after(out, "secret:").empty()) << out;
    // Two curl lines: the example subject's data, then the example request.
    auto [imported, report] = run("curl " + value_after(out, "curl"));
    EXPECT_EQ(imported, 0);
    EXPECT_EQ(report, R"({"lines":4,"imported":4,"profiles":1,"events":3,"refused":[]})");
    const std::size_t submit = out.find("Submit the OpenDSR v3 example request");
    ASSERT_NE(submit, std::string::npos) << out;
    curl_line = "curl " + value_after(out.substr(submit), "curl");
    auto [status, answer] = run(curl_line);
    EXPECT_EQ(status, 0);
    EXPECT_NE(answer.find("\"subject_request_id\":\"a7551968-d5d6-44b2-9831-815ac9017798\""), std::string::npos) << answer;
    EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
    EXPECT_NE(d.log().find("event=stopped"), std::string::npos);
  }
  EXPECT_EQ(fs::status(dir / "data" / "processor.key").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  {
    daemon_process d(dir / "data", {"--listen", "127.0.0.1:0"});
    ASSERT_NE(d.wait_ready(), 0) << d.log();
    EXPECT_EQ(d.stdout_text().find("secret:"), std::string::npos);  // printed once only
    // The request committed before the 201 is there after the restart: the same POST is a duplicate.
    const std::uint16_t port = d.wait_ready();
    auto [status, answer] = run(curl_line.substr(0, curl_line.rfind("http://")) + "http://127.0.0.1:" + std::to_string(port) + "/v3/requests");
    EXPECT_EQ(status, 0);
    EXPECT_NE(answer.find("Subject request already exists."), std::string::npos) << answer;
    EXPECT_EQ(d.stop(SIGINT), 0);
  }
  remove_temp_dir(dir);
}

TEST(DaemonProcess, ServesHttpsWithTlsCertAndKey) {
  const fs::path dir = make_temp_dir();
  const std::string key = (dir / "tls.key").string(), cert = (dir / "tls.crt").string();
  auto [made, made_out] = run("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout " + key + " -out " +
                              cert + " 2>&1");
  ASSERT_EQ(made, 0) << made_out;
  daemon_process d(dir / "data", {"--listen", "127.0.0.1:0", "--no-demo", "--tls-cert", cert, "--tls-key", key});
  const std::uint16_t port = d.wait_ready();
  ASSERT_NE(port, 0) << d.log();
  EXPECT_NE(d.stdout_text().find("listening on https://127.0.0.1:"), std::string::npos) << d.stdout_text();
  auto [status, out] = run("curl -s --cacert " + cert + " --resolve localhost:" + std::to_string(port) +
                           ":127.0.0.1 https://localhost:" + std::to_string(port) + "/v3/discovery");
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("\"processor_certificate\":\"https://127.0.0.1:" + std::to_string(port) + "/opendsr_cert.pem\""),
            std::string::npos)
      << out;
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  remove_temp_dir(dir);
}

TEST(DaemonProcess, TestModeIsRefusedOffLoopback) {
  const fs::path dir = make_temp_dir();
  daemon_process d(dir / "data", {"--test-mode", "--listen", "0.0.0.0:0", "--no-demo"});
  EXPECT_EQ(d.wait_ready(), 0);
  EXPECT_EQ(d.stop(SIGTERM), 1);
  EXPECT_NE(d.log().find("loopback"), std::string::npos) << d.log();
  remove_temp_dir(dir);
}

}  // namespace
}  // namespace opendsr
