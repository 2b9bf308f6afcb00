// The OpenDSR HTTP API layer, driven as a server would drive it, on the memory adapter with a
// manual clock, a recording signer and a plain-text secret hasher (the Botan ones are tested in
// botan_test; here what matters is when they are called).
#include <opendsr/api.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/results_files_store.hpp>
#include <opendsr/subject_data.hpp>

#include "api/signature_cache.hpp"
#include "common/base64.hpp"
#include "../support/api_doubles.hpp"
#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::basic;
using testing::counting_hasher;
using testing::make_body;
using testing::recording_signer;
using testing::seed_body;
using testing::uuid_v4;

const std::string seed_id = "a7551968-d5d6-44b2-9831-815ac9017798";

const std::string key_a = "key-a", secret_a = "secret-of-workspace-a";
const std::string key_b = "key-b", secret_b = "secret-of-workspace-b";

class Api : public ::testing::Test {
 protected:
  Api() {
    EXPECT_TRUE(workspaces_.add("3622", key_a, secret_a));
    EXPECT_TRUE(workspaces_.add("4308", key_b, secret_b));
  }
  void SetUp() override { open({}); }

  void open(api_options options) {
    api_.reset();
    auto a = api::open(engine_, signer_, workspaces_, clock_, std::move(options));
    ASSERT_TRUE(a) << a.error().message();
    api_ = std::move(*a);
  }

  http_response call(std::string method, std::string target, std::string body = {},
                     std::optional<std::string> authorization = basic(key_a, secret_a),
                     std::string content_type = "application/json") {
    http_request r{std::move(method), std::move(target), {}, std::move(body)};
    if (authorization) r.headers.set("Authorization", *authorization);
    if (r.method == "POST") {
      r.headers.set("Content-Type", content_type);
      r.headers.set("Content-Length", std::to_string(r.body.size()));
    }
    return api_->handle(std::move(r));
  }

  static std::string header(const http_response& r, std::string_view name) {
    return std::string(r.headers.get(name).value_or("<none>"));
  }

  void expect_error(const http_response& r, int status, std::string_view message_part = {}) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_TRUE(r.body.starts_with("{\"code\":" + std::to_string(status) + ",")) << r.body;
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(header(r, "Cache-Control"), "no-store");
    EXPECT_FALSE(r.headers.contains("X-OpenDSR-Signature"));
    if (!message_part.empty()) {
      EXPECT_NE(r.body.find(message_part), std::string::npos) << r.body;
    }
  }

  void expect_signed(const http_response& r) {
    EXPECT_EQ(header(r, "X-OpenDSR-Processor-Domain"), "opendsr.example.com");
    EXPECT_EQ(header(r, "X-OpenDSR-Signature"), *signer_.sign(r.body));
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
  }

  memory_storage store_;
  memory_storage directory_store_;
  engine engine_ = engine::open(store_, testing::test_options()).value();
  recording_signer signer_;
  counting_hasher hasher_;
  workspace_directory workspaces_{directory_store_, hasher_};
  manual_clock clock_{testing::at("2021-11-29T18:16:24Z")};
  std::unique_ptr<api> api_;
};

TEST_F(Api, SubmitsTheSeedRequestAndSignsThe201) {
  http_response r = call("POST", "/v3/requests/", seed_body);
  ASSERT_EQ(r.status, 201) << r.body;
  expect_signed(r);
  EXPECT_NE(r.body.find("\"subject_request_id\":\"" + seed_id + "\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"controller_id\":\"3622\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"received_time\":\"2021-11-29T18:16:24Z\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"expected_completion_time\":\"2021-12-09T00:00:00Z\""), std::string::npos) << r.body;
  EXPECT_EQ(header(r, "X-mp-rate-limit-percentage-used"), "0");
}

TEST_F(Api, ReadsStatusAndReusesTheSignatureOfUnchangedBytes) {
  ASSERT_EQ(call("POST", "/v3/requests", seed_body).status, 201);
  http_response first = call("GET", "/v3/requests/" + seed_id);
  ASSERT_EQ(first.status, 200) << first.body;
  expect_signed(first);
  EXPECT_NE(first.body.find("\"request_status\":\"pending\""), std::string::npos) << first.body;
  const int calls = signer_.calls;
  http_response second = call("GET", "/v3/requests/" + seed_id);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(header(second, "X-OpenDSR-Signature"), header(first, "X-OpenDSR-Signature"));
  EXPECT_EQ(signer_.calls, calls) << "the second read signed again";
}

TEST_F(Api, ListsAGroupAndRequiresTheGroupId) {
  ASSERT_EQ(call("POST", "/v3/requests", seed_body).status, 201);
  http_response group = call("GET", "/v3/requests?group_id=my-group");
  ASSERT_EQ(group.status, 200) << group.body;
  expect_signed(group);
  EXPECT_TRUE(group.body.starts_with("[{")) << group.body;
  EXPECT_EQ(call("GET", "/v3/requests?group_id=no%20such%20group").body, "[]");
  expect_error(call("GET", "/v3/requests"), 400, "group_id");
  expect_error(call("GET", "/v3/requests?group_id=%zz"), 400, "percent-encoding");
}

TEST_F(Api, CancelsAPendingRequestOnceAndSignsThe202) {
  ASSERT_EQ(call("POST", "/v3/requests", seed_body).status, 201);
  http_response r = call("DELETE", "/v3/requests/" + seed_id);
  ASSERT_EQ(r.status, 202) << r.body;
  expect_signed(r);
  EXPECT_NE(r.body.find("\"expected_completion_time\":null"), std::string::npos) << r.body;
  expect_error(call("DELETE", "/v3/requests/" + seed_id), 400);
}

TEST_F(Api, DiscoveryAndTheCertificateArePublicAndUnsigned) {
  for (const char* target : {"/v3/discovery", "/v3/discovery/"}) {
    http_response r = call("GET", target, {}, std::nullopt);
    ASSERT_EQ(r.status, 200) << target;
    EXPECT_EQ(r.body, engine_.discovery());
    EXPECT_FALSE(r.headers.contains("X-OpenDSR-Signature"));
  }
  EXPECT_EQ(call("GET", "/v3/discovery", {}, basic(key_a, "wrong-secret-but-ignored")).status, 200);
  http_response cert = call("GET", "/opendsr_cert.pem", {}, std::nullopt);
  EXPECT_EQ(cert.status, 200);
  EXPECT_EQ(cert.body, signer_.certificate_pem());
  EXPECT_EQ(header(cert, "Content-Type"), "application/x-pem-file");
}

TEST_F(Api, UnknownPathsAre404AndWrongMethods405WithAllow) {
  for (const char* target : {"/", "/v2/requests", "/v3/request", "/v3/requests/a/b", "/v3/status", "/v3/requestsX"})
    expect_error(call("GET", target), 404);
  http_response put = call("PUT", "/v3/requests/" + seed_id, "{}");
  expect_error(put, 405);
  EXPECT_EQ(header(put, "Allow"), "GET, DELETE");
  EXPECT_EQ(header(call("DELETE", "/v3/requests"), "Allow"), "GET, POST");
  EXPECT_EQ(header(call("POST", "/v3/discovery", "{}"), "Allow"), "GET");
  EXPECT_EQ(call("PATCH", "/v3/requests/x", {}, std::nullopt).status, 405) << "405 comes before 401";
}

TEST_F(Api, MissingMalformedOrWrongCredentialsAre401WithAChallenge) {
  const std::optional<std::string> bad[] = {
      std::nullopt,
      "Bearer abc",
      "Basic !!!notbase64",
      "Basic " + detail::base64_encode("no-colon"),
      basic(key_a, secret_b),
      basic("no-such-key", secret_a),
  };
  for (const auto& authorization : bad) {
    http_response r = call("GET", "/v3/requests/" + seed_id, {}, authorization);
    expect_error(r, 401);
    EXPECT_EQ(header(r, "WWW-Authenticate"), "Basic realm=\"opendsr\"");
    EXPECT_EQ(r.body.find(secret_a), std::string::npos);
    EXPECT_EQ(r.body.find(secret_b), std::string::npos);
  }
}

TEST_F(Api, TheSlowSecretCheckRunsOncePerKey) {
  for (int i = 0; i < 5; ++i) EXPECT_EQ(call("GET", "/v3/requests/" + seed_id).status, 404);
  EXPECT_EQ(hasher_.checks, 1);
  expect_error(call("GET", "/v3/requests/" + seed_id, {}, basic(key_a, "another-secret-entirely")), 401);
  EXPECT_EQ(hasher_.checks, 1) << "a wrong secret for a remembered key needs no slow check";
  ASSERT_TRUE(workspaces_.remove(key_a));
  expect_error(call("GET", "/v3/requests/" + seed_id), 401);
}

TEST_F(Api, ARequestOfAnotherWorkspaceIsNotFound) {
  ASSERT_EQ(call("POST", "/v3/requests", seed_body).status, 201);
  expect_error(call("GET", "/v3/requests/" + seed_id, {}, basic(key_b, secret_b)), 404);
  expect_error(call("DELETE", "/v3/requests/" + seed_id, {}, basic(key_b, secret_b)), 404);
  EXPECT_EQ(call("GET", "/v3/requests?group_id=my-group", {}, basic(key_b, secret_b)).body, "[]");
  EXPECT_EQ(call("POST", "/v3/requests", seed_body, basic(key_b, secret_b)).status, 201) << "ids are per workspace";
}

TEST_F(Api, EngineRefusalsKeepTheirStatusAndNeverEchoIdentityValues) {
  ASSERT_EQ(call("POST", "/v3/requests", seed_body).status, 201);
  expect_error(call("POST", "/v3/requests", seed_body), 400, "Subject request already exists.");
  std::string again = seed_body;
  again.replace(again.find(seed_id), seed_id.size(), uuid_v4(7));
  expect_error(call("POST", "/v3/requests", again), 409);
  http_response bad = call("POST", "/v3/requests", make_body({.id = uuid_v4(8), .identities = {{"email", ""}, {"fax", "555-0100"}}}));
  expect_error(bad, 400);
  EXPECT_EQ(bad.body.find("555-0100"), std::string::npos) << bad.body;
  expect_error(call("POST", "/v3/requests", "{not json"), 400);
}

TEST_F(Api, ChecksRunInTheSpecifiedOrder) {
  // body size before credentials: a 413 needs no credentials
  http_request big{"POST", "/v3/requests", {}, {}};
  big.headers.set("Content-Length", "300000");
  auto decision = api_->on_head(big);
  ASSERT_TRUE(std::holds_alternative<http_response>(decision)) << "refused before the body is read";
  expect_error(std::get<http_response>(decision), 413);
  // credentials before the content type
  http_request text{"POST", "/v3/requests", {}, {}};
  text.headers.set("Content-Type", "text/plain");
  expect_error(api_->handle(text), 401);
  text.headers.set("Authorization", basic(key_a, secret_a));
  expect_error(api_->handle(text), 415);
  text.headers.set("Content-Type", "Application/JSON; charset=utf-8");
  text.body = seed_body;
  EXPECT_EQ(api_->handle(text).status, 201);
}

TEST_F(Api, APostWithAcceptableHeadersWaitsForItsBody) {
  http_request head{"POST", "/v3/requests", {}, {}};
  head.headers.set("Authorization", basic(key_a, secret_a));
  head.headers.set("Content-Type", "application/json");
  auto decision = api_->on_head(head);
  ASSERT_TRUE(std::holds_alternative<http_body_handler>(decision));
  http_response out;
  head.body = std::string(256 * 1024 + 1, ' ');  // a chunked body has no Content-Length to refuse early
  std::get<http_body_handler>(decision)(head, [&](http_response r) { out = std::move(r); });
  expect_error(out, 413);
}

TEST_F(Api, AThousandCallsAMinuteThenA429UntilRetryAfter) {
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(call("GET", "/v3/requests/" + seed_id).status, 404) << i;
  http_response refused = call("GET", "/v3/requests/" + seed_id);
  expect_error(refused, 429);
  EXPECT_EQ(header(refused, "Retry-After"), "60");
  EXPECT_EQ(header(refused, "X-mp-rate-limit-exceeded"), "workspace");
  EXPECT_EQ(call("GET", "/v3/requests/" + seed_id, {}, basic(key_b, secret_b)).status, 404) << "another workspace";
  EXPECT_EQ(call("GET", "/v3/discovery", {}, std::nullopt).status, 200) << "discovery is not limited";
  clock_.advance(std::chrono::seconds(std::stoi(header(refused, "Retry-After"))));
  http_response again = call("POST", "/v3/requests", seed_body);
  EXPECT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(header(again, "X-mp-rate-limit-percentage-used"), "0");
}

TEST_F(Api, TransportErrorsGetTheOpenDsrBody) {
  expect_error(api_->on_error(error(errc::invalid_request, "malformed HTTP request: bad method")), 400, "bad method");
  expect_error(api_->on_error(error(errc::payload_too_large)), 413);
}

TEST_F(Api, OpenRefusesUnusableOptions) {
  auto refused = [&](auto change) {
    api_options o;
    change(o);
    return !api::open(engine_, signer_, workspaces_, clock_, o);
  };
  EXPECT_TRUE(refused([](api_options& o) { o.base_path = "v3"; }));
  EXPECT_TRUE(refused([](api_options& o) { o.base_path = "/v3/"; }));
  EXPECT_TRUE(refused([](api_options& o) { o.max_body_bytes = 0; }));
  EXPECT_TRUE(refused([](api_options& o) { o.limits.window = 0s; }));
  EXPECT_FALSE(refused([](api_options&) {}));
}

// The fulfilment routes, over an engine in fulfilment_mode::tasks whose jobs the test runs by
// hand (the runner and the data fulfilment have their own tests).
class ApiFulfilment : public Api {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("api_test." + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    results_ = results_files_store::open_directory({dir_}).value();
    subjects_ = open_subject_store(tasks_store_).value();
    open_tasks({});
  }
  void TearDown() override {
    api_.reset();
    std::filesystem::remove_all(dir_);
  }

  void open_tasks(api_options options) {
    options.results = results_.get();
    options.subjects = subjects_.get();
    api_.reset();
    auto a = api::open(tasks_engine_, signer_, workspaces_, clock_, std::move(options));
    ASSERT_TRUE(a) << a.error().message();
    api_ = std::move(*a);
  }

  http_response import(std::string lines, std::string key = key_a, std::string secret = secret_a) {
    return call("POST", "/v3/subject-data", std::move(lines), basic(key, secret), "application/x-ndjson");
  }

  // Starts processing of every due request and completes each claimed job with a link; `package`
  // is written under the token of those whose package it returns.
  std::map<std::string, std::string> fulfil(const std::function<std::optional<std::string>(const fulfilment_job&)>& package) {
    EXPECT_TRUE(tasks_engine_.tick(clock_.now()));
    std::map<std::string, std::string> tokens;
    const std::vector<claimed_fulfilment> claimed = tasks_engine_.claim_fulfilments(clock_.now(), 100, "test").value();
    for (const claimed_fulfilment& c : claimed) {
      if (auto bytes = package(c.job)) {
        auto out = results_->begin(c.job.results_token).value();
        EXPECT_TRUE(out->append(*bytes));
        EXPECT_TRUE(out->commit());
      }
      EXPECT_EQ(tasks_engine_.record_fulfilment({c.job.controller_id, c.job.subject_request_id, c.lease,
                                                 fulfilment_done{"https://dsr.example/v3/results/" + c.job.results_token}},
                                                clock_.now()).value(),
                fulfilment_recorded::completed);
      tokens[c.job.subject_request_id] = c.job.results_token;
    }
    return tokens;
  }

  static std::string drain(http_body_reader& reader) {
    std::string out;
    std::array<char, 7> chunk;  // small chunks: the reader is read as a server reads it
    for (;;) {
      const std::size_t n = reader.read(chunk).value();
      if (n == 0) return out;
      out.append(chunk.data(), n);
    }
  }

  memory_storage tasks_store_;
  engine tasks_engine_ = [this] {
    engine_options o = testing::test_options();
    o.fulfilment.mode = fulfilment_mode::tasks;
    return engine::open(tasks_store_, o).value();
  }();
  std::filesystem::path dir_;
  std::unique_ptr<results_files_store> results_;
  std::unique_ptr<subject_data> subjects_;
};

TEST_F(ApiFulfilment, AResultsLinkIsTheWorkspacesOnlyStreamedAsZipAndGoneAfterSevenDays) {
  ASSERT_EQ(call("POST", "/v3/requests", make_body({.id = uuid_v4(1), .type = "access"})).status, 201);
  ASSERT_EQ(call("POST", "/v3/requests", make_body({.id = uuid_v4(2), .type = "access", .identities = {{"email", "x@example.com"}}})).status, 201);
  clock_.set(testing::at("2021-12-02T00:00:00Z"));
  const std::string zip(100'000, 'z');
  auto tokens = fulfil([&](const fulfilment_job& job) -> std::optional<std::string> {
    if (job.subject_request_id == uuid_v4(1)) return zip;
    return std::nullopt;  // nothing matched
  });
  const std::string link = "/v3/results/" + tokens[uuid_v4(1)];

  expect_error(call("GET", link, {}, std::nullopt), 401);
  expect_error(call("GET", link, {}, basic(key_b, secret_b)), 404, "no results");
  expect_error(call("GET", "/v3/results/" + tokens[uuid_v4(2)]), 404, "no results");  // nothing matched
  expect_error(call("GET", "/v3/results/not-a-token"), 404);
  expect_error(call("GET", "/v3/results/" + std::string(32, 'A')), 404);
  expect_error(call("POST", link, "{}"), 405);

  clock_.advance(std::chrono::days(6));
  http_response ok = call("GET", link);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(header(ok, "Content-Type"), "application/zip");
  EXPECT_EQ(header(ok, "Content-Disposition"), "attachment; filename=\"" + uuid_v4(1) + ".zip\"");
  EXPECT_EQ(header(ok, "Cache-Control"), "no-store");
  EXPECT_TRUE(ok.body.empty());
  ASSERT_TRUE(ok.stream);
  EXPECT_EQ(ok.stream->size(), zip.size());
  EXPECT_EQ(drain(*ok.stream), zip);

  clock_.advance(std::chrono::days(1));
  expect_error(call("GET", link), 410, "expired at 2021-12-09T00:00:00Z");
  EXPECT_NE(call("GET", link).body.find("GoneException"), std::string::npos);
  expect_error(call("GET", link, {}, basic(key_b, secret_b)), 404);  // still nothing to another workspace
}

TEST_F(ApiFulfilment, ImportTakesJsonLinesAsACallNotANewRequest) {
  api_options limited;
  limited.limits.new_requests_per_day = 1;
  open_tasks(limited);
  expect_error(call("POST", "/v3/subject-data", R"({"mpid":"1","identities":{},"attributes":{}})"), 415, "x-ndjson");
  expect_error(import("{}", key_a, "wrong"), 401);
  for (int i = 0; i < 3; ++i) {
    const http_response r = import(R"({"mpid":"1","identities":{"email":"a@example.com"},"attributes":{}})" "\n"
                                   R"({"mpid":"1","event":{"n":1}})" "\n" R"({"mpid":"2","event":{}})" "\n");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(r.body.substr(0, r.body.find("\"refused\"")), R"({"lines":3,"imported":2,"profiles":1,"events":1,)");
  }
  EXPECT_EQ(subjects_->resolve("3622", std::vector<identity>{{identity_type::email, "a@example.com"}}).value(), 1);
  EXPECT_EQ(subjects_->resolve("4308", std::vector<identity>{{identity_type::email, "a@example.com"}}).value(), std::nullopt);
  // The day's one new request is still there to take.
  EXPECT_EQ(call("POST", "/v3/requests", make_body({.id = uuid_v4(1)})).status, 201);
  expect_error(call("POST", "/v3/requests", make_body({.id = uuid_v4(2), .identities = {{"email", "b@example.com"}}})), 429);

  api_options small;
  small.max_import_bytes = 10;
  open_tasks(small);
  expect_error(import(std::string(11, '\n')), 413, "10 bytes");
}

TEST_F(Api, WithoutAResultsStoreOrSubjectDataTheirRoutesDoNotExist) {
  expect_error(call("GET", "/v3/results/" + std::string(32, 'A')), 404);
  expect_error(call("POST", "/v3/subject-data", "{}", basic(key_a, secret_a), "application/x-ndjson"), 404);
}

TEST(WorkspaceDirectory, AddsListsAndRemovesKeys) {
  memory_storage store;
  counting_hasher hasher;
  workspace_directory d(store, hasher);
  ASSERT_TRUE(d.add("3622", "k1", "0123456789abcdef"));
  ASSERT_TRUE(d.add("3622", "k2", "0123456789abcdefg"));
  auto taken = d.add("9999", "k1", "0123456789abcdef");
  ASSERT_FALSE(taken);
  EXPECT_NE(taken.error().message().find("already in use"), std::string::npos);
  EXPECT_FALSE(d.add("", "k3", "0123456789abcdef"));
  EXPECT_FALSE(d.add("bad\nid", "k3", "0123456789abcdef"));
  EXPECT_FALSE(d.add("3622", "has:colon", "0123456789abcdef"));
  EXPECT_FALSE(d.add("3622", "k3", "short"));
  auto listed = d.list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].api_key, "k2");
  EXPECT_EQ((*listed)[1].workspace_id, "3622");
  EXPECT_EQ(d.authenticate("k2", "0123456789abcdefg").value(), "3622");
  EXPECT_EQ(d.remove("k2").value(), true);
  EXPECT_EQ(d.remove("k2").value(), false);
  EXPECT_EQ(d.authenticate("k2", "0123456789abcdefg").error(), errc::unauthorized);
}

// Regression: opendsrd keeps its workspace directory in the engine's own store, whose invariant
// checker once reported the directory's keys as a table it did not know.
TEST(WorkspaceDirectory, SharesTheEngineStoreWithoutBreakingItsInvariants) {
  memory_storage store;
  counting_hasher hasher;
  workspace_directory d(store, hasher);
  engine e = engine::open(store, testing::test_options()).value();
  ASSERT_TRUE(d.add("3622", "k1", "0123456789abcdef"));
  ASSERT_TRUE(e.submit("3622", seed_body, testing::at("2021-11-29T18:16:24Z")));
  EXPECT_EQ(testing::store_problems(store), std::vector<std::string>{});
}


TEST_F(Api, PostsGoThroughTheGroupCommitterWhenGivenOne) {
  auto committer = group_committer::start(engine_);
  ASSERT_TRUE(committer);
  api_options o;
  o.committer = committer->get();
  open(o);
  std::vector<std::thread> threads;
  std::atomic<int> created = 0;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      std::string body = make_body({.id = uuid_v4(300 + i), .identities = {{"email", "c" + std::to_string(i) + "@example.com"}}});
      created += call("POST", "/v3/requests", body).status == 201;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(created, 8);
  (*committer)->stop();
  http_response refused = call("POST", "/v3/requests", make_body({.id = uuid_v4(400)}));
  expect_error(refused, 503);
  EXPECT_EQ(call("GET", "/v3/requests/" + uuid_v4(300)).status, 200) << "reads do not need the committer";
}

TEST(SignatureCache, SignsEachDistinctBodyOnceUntilEvicted) {
  recording_signer signer;
  detail::signature_cache cache(16);  // one entry per shard
  const std::string body = R"({"request_status":"pending"})";
  const std::string first = *cache.sign(signer, body);
  EXPECT_EQ(first, *signer.sign(body));
  signer.calls = 0;
  EXPECT_EQ(*cache.sign(signer, body), first);
  EXPECT_EQ(signer.calls, 0) << "the cached signature was not reused";
  for (int i = 0; i < 500; ++i) {
    const std::string other = body + std::to_string(i);
    EXPECT_EQ(*cache.sign(signer, other), *signer.sign(other));
  }
  signer.calls = 0;
  (void)cache.sign(signer, body);
  EXPECT_EQ(signer.calls, 1) << "500 newer bodies should have evicted the first";
}

TEST(SignatureCache, ZeroCapacitySignsEveryTime) {
  recording_signer signer;
  detail::signature_cache cache(0);
  (void)cache.sign(signer, "x");
  (void)cache.sign(signer, "x");
  EXPECT_EQ(signer.calls, 2);
}

}  // namespace
}  // namespace opendsr
