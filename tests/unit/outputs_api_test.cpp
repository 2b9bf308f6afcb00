// The /v3/outputs routes (engine/api/outputs_route.hpp) driven through api::handle, on the memory
// adapter with a manual clock and the pure test partner (tests/support/test_partners.hpp): what
// each route answers, that a credential's value appears in no response (success or error) while
// its mask does, the strict body rules with the field named, 404 and 405, the workspace boundary,
// and that a PATCH closes an output's open circuit.
#include <opendsr/api.hpp>
#include <opendsr/memory_storage.hpp>

#include "api/outputs_route.hpp"
#include "../support/api_doubles.hpp"
#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"
#include "../support/test_partners.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace opendsr {
namespace {

using testing::basic;

const std::string key_a = "key-a", secret_a = "secret-of-workspace-a";
const std::string key_b = "key-b", secret_b = "secret-of-workspace-b";

// Credentials the tests send; none of them may ever come back whole.
const std::string api_key = "sk-live-0123456789abcdef";      // masked "****cdef"
const std::string new_api_key = "sk-live-fedcba9876543210";  // masked "****3210"
const std::string short_key = "tiny-secret";                 // under 12: masked "****"

engine_options options_with_partner() {
  engine_options o = testing::test_options();
  o.distribution.partners.push_back(
      std::make_shared<testing::test_kind>("testpartner", "partner.example.com", std::vector{identity_type::email}));
  return o;
}

// A POST body adding `name` with the given credential.
std::string add_body(std::string_view name, std::string_view key = api_key) {
  std::string out = "{\"name\":";
  detail::append_json_string(out, name);
  out += R"(,"partner":"testpartner","settings":{"max_items":"1"},"credentials":{"key":)";
  detail::append_json_string(out, key);
  out += "}}";
  return out;
}

class OutputsApi : public ::testing::Test {
 protected:
  OutputsApi() {
    EXPECT_TRUE(workspaces_.add("3622", key_a, secret_a));
    EXPECT_TRUE(workspaces_.add("4308", key_b, secret_b));
    auto a = api::open(engine_, signer_, workspaces_, clock_, {});
    EXPECT_TRUE(a) << a.error().message();
    if (a) api_ = std::move(*a);
  }

  // Every response is kept, so that a test can check none of them holds a credential.
  http_response call(std::string method, std::string target, std::string body = {},
                     std::optional<std::string> authorization = basic(key_a, secret_a),
                     std::string content_type = "application/json") {
    http_request r{std::move(method), std::move(target), {}, std::move(body)};
    if (authorization) r.headers.set("Authorization", *authorization);
    if (!r.body.empty() || r.method == "POST" || r.method == "PATCH") {
      r.headers.set("Content-Type", content_type);
      r.headers.set("Content-Length", std::to_string(r.body.size()));
    }
    http_response out = api_->handle(std::move(r));
    answers_.push_back(out.body);
    for (const auto& [name, value] : out.headers) answers_.push_back(value);
    return out;
  }

  static std::string header(const http_response& r, std::string_view name) {
    return std::string(r.headers.get(name).value_or("<none>"));
  }

  void expect_signed(const http_response& r) {
    EXPECT_EQ(header(r, "X-OpenDSR-Signature"), *signer_.sign(r.body));
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(header(r, "Cache-Control"), "no-store");
    EXPECT_TRUE(r.headers.contains("X-mp-rate-limit-percentage-used"));
  }

  // A 4xx with the OpenDSR error body naming `message_part`, unsigned.
  void expect_error(const http_response& r, int status, std::string_view message_part) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_TRUE(r.body.starts_with("{\"code\":" + std::to_string(status) + ",")) << r.body;
    EXPECT_FALSE(r.headers.contains("X-OpenDSR-Signature"));
    EXPECT_NE(r.body.find(message_part), std::string::npos) << "wanted \"" << message_part << "\" in " << r.body;
  }

  // No response so far holds any of the credentials whole (nor its distinctive middle).
  void expect_no_credential_shown() {
    for (const std::string& answer : answers_)
      for (const std::string& secret : {api_key, new_api_key, short_key, std::string("0123456789ab"),
                                        std::string("fedcba987654")})
        EXPECT_EQ(answer.find(secret), std::string::npos) << "a credential in: " << answer;
  }

  memory_storage store_;
  memory_storage directory_store_;
  engine engine_ = engine::open(store_, options_with_partner()).value();
  testing::recording_signer signer_;
  testing::counting_hasher hasher_;
  workspace_directory workspaces_{directory_store_, hasher_};
  manual_clock clock_{testing::at("2021-11-29T18:16:24Z")};
  std::unique_ptr<api> api_;
  std::vector<std::string> answers_;
};

TEST_F(OutputsApi, AddsAnOutputAndAnswersItWithCredentialsMasked) {
  http_response r = call("POST", "/v3/outputs", add_body("Kochava DSR Federation"));
  ASSERT_EQ(r.status, 201) << r.body;
  expect_signed(r);
  EXPECT_EQ(r.body,
            R"({"name":"Kochava DSR Federation","partner":"testpartner","domain":"partner.example.com","active":true,)"
            R"("endpoint":null,"settings":{"max_items":"1"},"credentials":{"key":"****cdef"},"circuit_open":false,)"
            R"("circuit_reason":null,"queued":0,"queued_items":0,"batches":0,"dead_batches":0,"max_items":1,)"
            R"("updated":"2021-11-29T18:16:24Z"})");

  http_response list = call("GET", "/v3/outputs");
  ASSERT_EQ(list.status, 200) << list.body;
  expect_signed(list);
  EXPECT_EQ(list.body, "{\"outputs\":[" + r.body + "]}");
  expect_no_credential_shown();
}

TEST_F(OutputsApi, TakesActiveEndpointAndAShortCredentialMaskedWhole) {
  http_response r = call("POST", "/v3/outputs/",
                         R"({"name":"eu","partner":"testpartner","active":false,"endpoint":"https://eu.partner.example.com",)"
                         R"("credentials":{"key":")" + short_key + R"("}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_NE(r.body.find(R"("active":false,"endpoint":"https://eu.partner.example.com","settings":{},)"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"("credentials":{"key":"****"})"), std::string::npos) << r.body;
  expect_no_credential_shown();
}

TEST_F(OutputsApi, ListsOnlyTheCallersWorkspace) {
  ASSERT_EQ(call("POST", "/v3/outputs", add_body("mine")).status, 201);
  EXPECT_EQ(call("GET", "/v3/outputs", {}, basic(key_b, secret_b)).body, "{\"outputs\":[]}");
  expect_error(call("DELETE", "/v3/outputs/mine", {}, basic(key_b, secret_b)), 404, "");
  expect_error(call("PATCH", "/v3/outputs/mine", R"({"active":false})", basic(key_b, secret_b)), 404, "");
  EXPECT_NE(call("GET", "/v3/outputs").body.find("\"name\":\"mine\""), std::string::npos);
  // The same name in another workspace is another output.
  EXPECT_EQ(call("POST", "/v3/outputs", add_body("mine"), basic(key_b, secret_b)).status, 201);
}

TEST_F(OutputsApi, UpdatesByAPercentDecodedNameAndReplacesWholeMaps) {
  ASSERT_EQ(call("POST", "/v3/outputs", add_body("Kochava DSR Federation")).status, 201);
  clock_.advance(std::chrono::minutes(5));
  http_response r = call("PATCH", "/v3/outputs/Kochava%20DSR%20Federation",
                         R"({"settings":{},"credentials":{"key":")" + new_api_key + R"("},"endpoint":"https://eu.partner.example.com:8443"})");
  ASSERT_EQ(r.status, 200) << r.body;
  expect_signed(r);
  EXPECT_NE(r.body.find(R"("endpoint":"https://eu.partner.example.com:8443","settings":{},"credentials":{"key":"****3210"})"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"("updated":"2021-11-29T18:21:24Z")"), std::string::npos) << r.body;

  r = call("PATCH", "/v3/outputs/Kochava%20DSR%20Federation", R"({"active":false,"endpoint":null})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("active":false,"endpoint":null,)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("key":"****3210")"), std::string::npos) << "credentials left out stay" << r.body;
  expect_no_credential_shown();
}

TEST_F(OutputsApi, RemovesOnceThen404) {
  ASSERT_EQ(call("POST", "/v3/outputs", add_body("Kochava DSR Federation")).status, 201);
  http_response r = call("DELETE", "/v3/outputs/Kochava%20DSR%20Federation");
  ASSERT_EQ(r.status, 200) << r.body;
  expect_signed(r);
  EXPECT_EQ(r.body, R"({"removed":"Kochava DSR Federation"})");
  expect_error(call("DELETE", "/v3/outputs/Kochava%20DSR%20Federation"), 404, "");
  expect_error(call("PATCH", "/v3/outputs/nothing", R"({"active":true})"), 404, "");
  EXPECT_EQ(call("GET", "/v3/outputs").body, "{\"outputs\":[]}");
}

TEST_F(OutputsApi, RefusesAUsedNameWith400) {
  ASSERT_EQ(call("POST", "/v3/outputs", add_body("dup")).status, 201);
  http_response again = call("POST", "/v3/outputs", add_body("dup", new_api_key));
  EXPECT_EQ(again.status, 400) << again.body;
  expect_no_credential_shown();
}

// Each broken rule: 400, the field named, the value never quoted.
TEST_F(OutputsApi, RefusesBodiesBreakingARuleNamingTheField) {
  const std::string creds = R"("credentials":{"key":")" + api_key + R"("})";
  struct bad_body {
    std::string body;
    std::string message;
  };
  const bad_body cases[] = {
      {"", "body: is empty"},
      {"[]", "body: must be a JSON object"},
      {"{\"name\":\"x\",", "body: not valid JSON"},
      {"{} {}", "body: not valid JSON"},
      {"{\"name\":\"\xff\"}", "body: invalid UTF-8"},
      {R"({"partner":"testpartner",)" + creds + "}", "name: is required"},
      {R"({"name":"x",)" + creds + "}", "partner: is required"},
      {R"({"name":"x","partner":"testpartner"})", "credentials: is required"},
      {R"({"name":7,"partner":"testpartner",)" + creds + "}", "name: must be a string"},
      {R"({"name":"x","partner":"testpartner","active":"yes",)" + creds + "}", "active: must be true or false"},
      {R"({"name":"x","partner":"testpartner","endpoint":1,)" + creds + "}", "endpoint: must be a string"},
      {R"({"name":"x","partner":"testpartner","settings":[],)" + creds + "}", "settings: must be an object of strings"},
      {R"({"name":"x","partner":"testpartner","settings":{"region":1},)" + creds + "}", "settings.region: must be a string"},
      {R"({"name":"x","partner":"testpartner","settings":{"region":{}},)" + creds + "}", "settings.region: must be a string"},
      {R"({"name":"x","partner":"testpartner","credentials":{"key":null}})", "credentials.key: must be a string"},
      {R"({"name":"x","name":"y","partner":"testpartner",)" + creds + "}", "name: duplicate key"},
      {R"({"name":"x","partner":"testpartner","credentials":{"key":"a","key":")" + api_key + R"("}})",
       "credentials.key: duplicate key"},
      {R"({"name":"x","partner":"testpartner","settings":{"region":"a","re\u0067ion":"b"},)" + creds + "}",
       "settings.region: duplicate key"},
      {R"({"name":"x","partner":"testpartner","colour":"red",)" + creds + "}", R"(unknown field \"colour\")"},
      // A secret pasted as a key is not echoed.
      {R"({"name":"x","partner":"testpartner",")" + api_key + R"(":"",)" + creds + "}", "unknown field (name not shown)"},
      {R"({"name":"x","partner":"testpartner","credentials":{")" + api_key + R"(":1}})",
       "credentials.(a key not shown): must be a string"},
      // The partner's own validation, through the engine.
      {R"({"name":"x","partner":"testpartner","settings":{"colour":"red"},)" + creds + "}",
       "unknown setting colour"},
      {R"({"name":"x","partner":"testpartner","credentials":{"token":")" + api_key + R"("}})",
       "credentials: key is required"},
  };
  for (const bad_body& c : cases) {
    SCOPED_TRACE(c.body);
    expect_error(call("POST", "/v3/outputs", c.body), 400, c.message);
  }
  EXPECT_EQ(call("GET", "/v3/outputs").body, "{\"outputs\":[]}") << "nothing was added";

  ASSERT_EQ(call("POST", "/v3/outputs", add_body("o")).status, 201);
  const bad_body changes[] = {
      {"{}", "body: names no change"},
      {R"({"name":"p"})", "name: cannot be changed"},
      {R"({"partner":"other"})", "partner: cannot be changed"},
      {R"({"active":1})", "active: must be true or false"},
      {R"({"active":true,"active":false})", "active: duplicate key"},
      {R"({"credentials":{"token":"t"}})", "credentials: key is required"},
  };
  for (const bad_body& c : changes) {
    SCOPED_TRACE(c.body);
    expect_error(call("PATCH", "/v3/outputs/o", c.body), 400, c.message);
  }
  expect_no_credential_shown();
}

TEST_F(OutputsApi, ChecksRouteMethodCredentialsAndContentTypeFirst) {
  http_response put = call("PUT", "/v3/outputs", "{}");
  expect_error(put, 405, "Allowed: GET, POST.");
  EXPECT_EQ(header(put, "Allow"), "GET, POST");
  http_response get_one = call("GET", "/v3/outputs/x");
  expect_error(get_one, 405, "Allowed: PATCH, DELETE.");
  EXPECT_EQ(header(get_one, "Allow"), "PATCH, DELETE");
  expect_error(call("GET", "/v3/outputs/a/b"), 404, "");
  expect_error(call("DELETE", "/v3/outputs/%zz"), 404, "");
  expect_error(call("GET", "/v3/outputs", {}, std::nullopt), 401, "");
  expect_error(call("POST", "/v3/outputs", add_body("x"), basic(key_a, secret_b)), 401, "");
  expect_error(call("POST", "/v3/outputs", add_body("x"), basic(key_a, secret_a), "text/plain"), 415, "");
  expect_error(call("PATCH", "/v3/outputs/x", R"({"active":true})", basic(key_a, secret_a), "text/plain"), 415, "");
  expect_no_credential_shown();
}

TEST_F(OutputsApi, RefusesABodyOverTheLimitBeforeReadingIt) {
  api_options small;
  small.max_body_bytes = 64;
  auto a = api::open(engine_, signer_, workspaces_, clock_, small);
  ASSERT_TRUE(a);
  api_ = std::move(*a);
  expect_error(call("POST", "/v3/outputs", add_body(std::string(100, 'n'))), 413, "64 bytes");
  expect_error(call("PATCH", "/v3/outputs/x", R"({"settings":{"region":")" + std::string(100, 'r') + "\"}}"), 413,
               "64 bytes");
}

// A partner's 401 opens the output's circuit (shown with its reason); any change closes it.
TEST_F(OutputsApi, APatchClosesAnOpenCircuit) {
  ASSERT_EQ(call("POST", "/v3/outputs", add_body("Kochava DSR Federation")).status, 201);
  ASSERT_EQ(call("POST", "/v3/requests", testing::make_body({.id = testing::uuid_v4(1)})).status, 201);
  const auto claimed = engine_.claim_forwards(clock_.now(), 10, "test").value();
  ASSERT_EQ(claimed.size(), 1u);
  const forward_outcome refused{claimed[0].batch_key, claimed[0].lease,
                                {forward_verdict_kind::bad_credentials, {}, "HTTP 401: the API key was refused", {}}};
  ASSERT_TRUE(engine_.record_forwards({&refused, 1}, clock_.now()));

  http_response open = call("GET", "/v3/outputs");
  ASSERT_EQ(open.status, 200) << open.body;
  EXPECT_NE(open.body.find(R"("circuit_open":true,"circuit_reason":")"), std::string::npos) << open.body;
  EXPECT_NE(open.body.find("HTTP 401"), std::string::npos) << open.body;
  EXPECT_NE(open.body.find(R"("dead_batches":1)"), std::string::npos) << open.body;

  http_response fixed = call("PATCH", "/v3/outputs/Kochava%20DSR%20Federation",
                             R"({"credentials":{"key":")" + new_api_key + R"("}})");
  ASSERT_EQ(fixed.status, 200) << fixed.body;
  EXPECT_NE(fixed.body.find(R"("circuit_open":false,"circuit_reason":null)"), std::string::npos) << fixed.body;
  expect_no_credential_shown();
}

// The parsers alone: what a valid body becomes.
TEST(OutputBodies, ParseIntoTheDefinitionAndTheChange) {
  auto d = detail::parse_output_definition(
      R"({"name":"n","partner":"p","credentials":{"k":"v","k2":"\u00e9"},"settings":{},"endpoint":null})");
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->name, "n");
  EXPECT_EQ(d->partner, "p");
  EXPECT_TRUE(d->active);
  EXPECT_EQ(d->config.credentials, (std::map<std::string, std::string>{{"k", "v"}, {"k2", "\xc3\xa9"}}));
  EXPECT_FALSE(d->config.endpoint);

  auto c = detail::parse_output_change(R"({"endpoint":null})");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(c->endpoint);
  EXPECT_FALSE(*c->endpoint) << "null means the partner's own endpoint";
  EXPECT_FALSE(c->active);
  EXPECT_FALSE(c->settings);
  EXPECT_FALSE(c->credentials);

  c = detail::parse_output_change(R"({"active":false,"settings":{"a":"1"}})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->active, false);
  EXPECT_EQ(c->settings, (std::map<std::string, std::string>{{"a", "1"}}));
}

}  // namespace
}  // namespace opendsr
