// The Kochava and Blueshift partners (adapters/kochava, adapters/blueshift): configuration, the
// requests they build and what they make of answers. Pure: no socket, no clock.
#include <opendsr/blueshift.hpp>
#include <opendsr/kochava.hpp>
#include <opendsr/partner.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using kind = forward_verdict_kind;
using header_list = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kochava_key = "SECRET-KOCHAVA-KEY-7f3a9c";
constexpr std::string_view blueshift_key = "0123456789abcdef0123456789abcdef";

partner_settings kochava_settings() {
  partner_settings s;
  s.settings = {{"account_id", "1234"}, {"app_id", "56"}};
  s.credentials = {{"api_key", std::string(kochava_key)}};
  return s;
}

partner_settings blueshift_settings() {
  partner_settings s;
  s.credentials = {{"user_api_key", std::string(blueshift_key)}};
  return s;
}

std::unique_ptr<partner> kochava(const partner_settings& s = kochava_settings()) {
  auto p = kochava_partner_kind()->configure(s);
  EXPECT_TRUE(p.has_value()) << p.error().message();
  return p ? std::move(p).value() : nullptr;
}

std::unique_ptr<partner> blueshift(const partner_settings& s = blueshift_settings()) {
  auto p = blueshift_partner_kind()->configure(s);
  EXPECT_TRUE(p.has_value()) << p.error().message();
  return p ? std::move(p).value() : nullptr;
}

// The configure() error for `s`: invalid_argument whose message holds `expected` and no
// credential value of `s`.
testing::AssertionResult refused(const partner_kind& k, const partner_settings& s, std::string_view expected) {
  auto p = k.configure(s);
  if (p) return testing::AssertionFailure() << "configured";
  const std::string message = p.error().message();
  if (p.error().code() != errc::invalid_argument) return testing::AssertionFailure() << "code, message: " << message;
  if (message.find(expected) == std::string::npos)
    return testing::AssertionFailure() << "\"" << message << "\" lacks \"" << expected << "\"";
  for (const auto& [name, value] : s.credentials)
    if (!value.empty() && message.find(value) != std::string::npos)
      return testing::AssertionFailure() << "\"" << message << "\" holds credential " << name;
  return testing::AssertionSuccess();
}

forward_subject subject(std::initializer_list<identity> ids) { return forward_subject{std::vector<identity>(ids)}; }
identity idfa(std::string v) { return {identity_type::ios_advertising_id, std::move(v)}; }
identity adid(std::string v) { return {identity_type::android_advertising_id, std::move(v)}; }
identity customer(std::string v) { return {identity_type::controller_customer_id, std::move(v)}; }
identity email(std::string v) { return {identity_type::email, std::move(v)}; }

header_list headers_of(const http_client_request& r) { return header_list(r.headers.begin(), r.headers.end()); }

boost::json::value body_of(const http_client_request& r) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r.body, ec);
  EXPECT_FALSE(ec) << r.body;
  return v;
}

http_client_response answer(int status, std::string body = {}, std::optional<std::string> retry_after = {}) {
  http_client_response r;
  r.status = status;
  r.body = std::move(body);
  if (retry_after) r.headers.add("Retry-After", *retry_after);
  return r;
}

std::vector<identity_type> all_identity_types() {
  std::vector<identity_type> out;
  for (std::size_t i = 0; i < identity_type_count; ++i) out.push_back(static_cast<identity_type>(i));
  return out;
}

// --- Kochava: configuration ---------------------------------------------------------------------

TEST(Kochava, NameDomainAndDescription) {
  auto k = kochava_partner_kind();
  EXPECT_EQ(k->name(), "kochava");
  EXPECT_EQ(kochava()->domain(), "kochava.com");
  for (std::string_view name : {"account_id:", "scope:", "app_id:", "app_guid:", "batch_max:",
                                "flush_interval_seconds:", "notify_email:", "api_key:"})
    EXPECT_NE(k->describe().find(name), std::string_view::npos) << name;
}

TEST(Kochava, AccountIdIsARequiredPositiveInteger) {
  auto k = kochava_partner_kind();
  partner_settings s = kochava_settings();
  s.settings.erase("account_id");
  EXPECT_TRUE(refused(*k, s, "kochava: setting account_id is required (a positive integer)"));
  for (std::string bad : {"", "0", "-1", "+3", " 12", "12 ", "12a", "1.5", "0x10", "99999999999999999999"}) {
    s.settings["account_id"] = bad;
    EXPECT_TRUE(refused(*k, s, "kochava: setting account_id must be a positive integer")) << bad;
  }
  s.settings["account_id"] = "007";  // leading zeros: the same number
  EXPECT_EQ(kochava(s)->build(std::vector{subject({idfa("A")})})->url,
            "https://nng.kochava.com/accounts/7/apps/56/privacy/scrub");
}

TEST(Kochava, AppIdIsRequiredInAppScopeAndAppGuidDoesNotReplaceIt) {
  auto k = kochava_partner_kind();
  partner_settings s = kochava_settings();
  s.settings.erase("app_id");
  EXPECT_TRUE(refused(*k, s, "kochava: setting app_id is required when scope is app"));
  s.settings["app_guid"] = "koexample-app-5f2b1c";
  EXPECT_TRUE(refused(*k, s, "app_guid cannot replace it"));
  s.settings["scope"] = "account";  // the account call needs no app
  EXPECT_TRUE(k->configure(s).has_value());
  s.settings["app_id"] = "0";
  EXPECT_TRUE(refused(*k, s, "kochava: setting app_id must be a positive integer"));
  s.settings["app_id"] = "56";
  s.settings["app_guid"] = "not a guid";
  EXPECT_TRUE(refused(*k, s, "kochava: setting app_guid must be"));
  s.settings["scope"] = "apps";
  s.settings.erase("app_guid");
  EXPECT_TRUE(refused(*k, s, "kochava: setting scope must be one of \"app\", \"account\""));
}

TEST(Kochava, UnknownNamesAreRefusedByName) {
  auto k = kochava_partner_kind();
  partner_settings s = kochava_settings();
  s.settings["flush_interval"] = "60";  // the spec's spelling; ours says its unit
  EXPECT_TRUE(refused(*k, s, "kochava: unknown setting \"flush_interval\""));
  s = kochava_settings();
  s.credentials["apikey"] = "SECRET-OTHER-VALUE";
  EXPECT_TRUE(refused(*k, s, "kochava: unknown credential \"apikey\""));
  s = kochava_settings();
  s.settings[std::string("bad\nname\"") + std::string(80, 'x')] = "1";
  EXPECT_TRUE(refused(*k, s, "kochava: unknown setting \"bad?name?xxx"));
  EXPECT_TRUE(refused(*k, s, "xxx...\""));
}

TEST(Kochava, ApiKeyIsRequiredAndNeverShown) {
  auto k = kochava_partner_kind();
  partner_settings s = kochava_settings();
  s.credentials.clear();
  EXPECT_TRUE(refused(*k, s, "kochava: credential api_key is required"));
  s.credentials["api_key"] = "";
  EXPECT_TRUE(refused(*k, s, "kochava: credential api_key is required"));
  s.credentials["api_key"] = "SECRET-KEY\r\nX-Injected: 1";
  EXPECT_TRUE(refused(*k, s, "kochava: credential api_key must be visible ASCII"));
  // Every other error of a configuration holding a key leaves the key out (refused() checks).
  s = kochava_settings();
  s.settings["batch_max"] = std::string(kochava_key);
  EXPECT_TRUE(refused(*k, s, "batch_max"));
}

TEST(Kochava, BatchingDefaultsAndOverrides) {
  EXPECT_EQ(kochava()->batching().max_items, 10'000u);
  EXPECT_EQ(kochava()->batching().max_age, std::chrono::microseconds(1h));

  partner_settings s = kochava_settings();
  s.settings["batch_max"] = "500";
  s.settings["flush_interval_seconds"] = "60";
  EXPECT_EQ(kochava(s)->batching().max_items, 500u);
  EXPECT_EQ(kochava(s)->batching().max_age, std::chrono::microseconds(60s));
  s.settings["batch_max"] = "1";
  s.settings["flush_interval_seconds"] = "0";
  EXPECT_EQ(kochava(s)->batching().max_items, 1u);
  EXPECT_EQ(kochava(s)->batching().max_age, std::chrono::microseconds(0));
  s.settings["batch_max"] = "100000";
  s.settings["flush_interval_seconds"] = "86400";
  EXPECT_EQ(kochava(s)->batching().max_items, 100'000u);
  EXPECT_EQ(kochava(s)->batching().max_age, std::chrono::microseconds(24h));

  auto k = kochava_partner_kind();
  for (std::string bad : {"0", "100001", "", "ten"}) {
    s = kochava_settings();
    s.settings["batch_max"] = bad;
    EXPECT_TRUE(refused(*k, s, "kochava: setting batch_max must be an integer from 1 to 100000")) << bad;
  }
  for (std::string bad : {"86401", "-1", "1h"}) {
    s = kochava_settings();
    s.settings["flush_interval_seconds"] = bad;
    EXPECT_TRUE(refused(*k, s, "kochava: setting flush_interval_seconds must be an integer from 0 to 86400")) << bad;
  }
}

TEST(Kochava, NotifyEmailMustBeOneAddress) {
  auto k = kochava_partner_kind();
  partner_settings s = kochava_settings();
  for (std::string bad : {"", "ops", "@example.com", "ops@", "ops@a@b", "o ps@example.com", "ops@example.com\n"}) {
    s.settings["notify_email"] = bad;
    EXPECT_TRUE(refused(*k, s, "kochava: setting notify_email must be one address")) << bad;
  }
}

TEST(Kochava, EndpointOverrideIsSchemeHostAndPortOnly) {
  partner_settings s = kochava_settings();
  const std::vector batch{subject({idfa("A")})};
  s.endpoint = "http://127.0.0.1:8080";
  EXPECT_EQ(kochava(s)->build(batch)->url, "http://127.0.0.1:8080/accounts/1234/apps/56/privacy/scrub");
  s.endpoint = "HTTPS://[::1]:9443/";
  EXPECT_EQ(kochava(s)->build(batch)->url, "https://[::1]:9443/accounts/1234/apps/56/privacy/scrub");

  auto k = kochava_partner_kind();
  for (std::string bad : {"http://127.0.0.1:8080/base", "http://127.0.0.1/?x=1", "http://127.0.0.1#f",
                          "https://127.0.0.1//"}) {
    s.endpoint = bad;
    EXPECT_TRUE(refused(*k, s, "kochava: endpoint must be scheme://host[:port], with no path, query or fragment"))
        << bad;
  }
  s.endpoint = "ftp://example.com";
  EXPECT_TRUE(refused(*k, s, "kochava: endpoint: the URL does not use http or https"));
  s.endpoint = "https://user:SECRET-PASS@example.com";
  EXPECT_TRUE(refused(*k, s, "kochava: endpoint: the URL has userinfo"));
  s.endpoint = "";
  EXPECT_TRUE(refused(*k, s, "kochava: endpoint: the URL is not absolute"));
}

// --- Kochava: requests --------------------------------------------------------------------------

TEST(Kochava, AcceptsIdfaAndAdidOnly) {
  auto p = kochava();
  for (identity_type t : all_identity_types())
    EXPECT_EQ(p->accepts(t), t == identity_type::ios_advertising_id || t == identity_type::android_advertising_id)
        << opendsr_name(t);
}

TEST(Kochava, BuildsTheAppScrubCall) {
  auto r = kochava()->build(std::vector{subject({idfa("6D92078A-8246-4BA4-AE5B-76104861E7DC"), adid("a1b2-c3")})});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->url, "https://nng.kochava.com/accounts/1234/apps/56/privacy/scrub");
  EXPECT_EQ(headers_of(*r), (header_list{{"Content-Type", "application/json"},
                                         {"Accept", "application/json"},
                                         {"Authentication-Key", std::string(kochava_key)}}));
  EXPECT_EQ(body_of(*r), boost::json::parse(R"({"device_ids":[
      {"id_type":"idfa","id_value":"6D92078A-8246-4BA4-AE5B-76104861E7DC"},
      {"id_type":"adid","id_value":"a1b2-c3"}]})"));
}

TEST(Kochava, BuildsTheAccountScrubCall) {
  partner_settings s = kochava_settings();
  s.settings = {{"account_id", "1234"}, {"scope", "account"}};
  auto r = kochava(s)->build(std::vector{subject({adid("x")})});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->url, "https://nng.kochava.com/accounts/1234/privacy/scrub");
  // An app_id in account scope is checked, not used: the scope says which call is made.
  s.settings["app_id"] = "56";
  EXPECT_EQ(kochava(s)->build(std::vector{subject({adid("x")})})->url,
            "https://nng.kochava.com/accounts/1234/privacy/scrub");
}

TEST(Kochava, DeduplicatesPairsAcrossTheBatchInFirstSeenOrderAndKeepsValuesAsGiven) {
  const std::vector batch{
      subject({idfa("AAAA-1111"), adid("bbbb-2222")}),
      subject({adid("bbbb-2222"), idfa("aaaa-1111")}),   // the same ADID; an IDFA differing in case
      subject({idfa("AAAA-1111")}),                      // the first IDFA again
      subject({adid("AAAA-1111"), idfa("cccc-3333")}),   // the first IDFA's value as an ADID
  };
  auto r = kochava()->build(batch);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(body_of(*r), boost::json::parse(R"({"device_ids":[
      {"id_type":"idfa","id_value":"AAAA-1111"},
      {"id_type":"adid","id_value":"bbbb-2222"},
      {"id_type":"idfa","id_value":"aaaa-1111"},
      {"id_type":"adid","id_value":"AAAA-1111"},
      {"id_type":"idfa","id_value":"cccc-3333"}]})"));
}

TEST(Kochava, NotifyEmailIsSentAsEmail) {
  partner_settings s = kochava_settings();
  s.settings["notify_email"] = "privacy-ops@example.com";
  auto r = kochava(s)->build(std::vector{subject({idfa("A")})});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(body_of(*r), boost::json::parse(R"({"device_ids":[{"id_type":"idfa","id_value":"A"}],
                                                "email":"privacy-ops@example.com"})"));
  // Without it, no email key at all.
  EXPECT_FALSE(body_of(*kochava()->build(std::vector{subject({idfa("A")})})).as_object().contains("email"));
}

TEST(Kochava, BuildRefusesWhatTheContractExcludes) {
  auto p = kochava();
  EXPECT_EQ(p->build(std::vector<forward_subject>{}).error().code(), errc::invalid_argument);
  auto r = p->build(std::vector{subject({idfa("A"), email("SECRET@example.com")})});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "kochava: identity type email is not accepted");
}

// --- Kochava: answers ---------------------------------------------------------------------------

TEST(Kochava, OkIsSentWithTheJobId) {
  auto p = kochava();
  auto v = p->classify(answer(200, R"({"status":"OK","response":"200","job_status":"queued","job_id":"4f1c-77ab"})"), 1);
  EXPECT_EQ(v.kind, kind::sent);
  EXPECT_EQ(v.reference, "4f1c-77ab");
  EXPECT_EQ(v.message, "");
  EXPECT_EQ(p->classify(answer(202, R"({"status":"OK","job_id":987})"), 3).reference, "987");
  // No job id, or one unfit to show: sent without a reference.
  v = p->classify(answer(200, R"({"status":"OK"})"), 1);
  EXPECT_EQ(v.kind, kind::sent);
  EXPECT_EQ(v.reference, "");
  v = p->classify(answer(200, R"({"status":"OK","job_id":"device 6D92078A <x@example.com>"})"), 1);
  EXPECT_EQ(v.kind, kind::sent);
  EXPECT_EQ(v.reference, "");
}

TEST(Kochava, AnUnexpected2xxIsRetriedOnceThenFailed) {
  auto p = kochava();
  for (std::string body : {"", "not json", "[]", R"({"status":"ERROR"})", R"({"status":"ok"})", R"({"job_id":"1"})"}) {
    auto first = p->classify(answer(200, body), 1);
    EXPECT_EQ(first.kind, kind::retry) << body;
    EXPECT_EQ(first.message, "unexpected 2xx answer from Kochava (HTTP 200 without status \"OK\")");
    EXPECT_EQ(p->classify(answer(200, body), 2).kind, kind::failed) << body;
  }
}

TEST(Kochava, ErrorAnswers) {
  auto p = kochava();
  // A body echoing the ids it was sent is never copied into a message.
  const std::string echo = R"({"error":"bad id_value 6D92078A-8246-4BA4-AE5B-76104861E7DC"})";
  struct row {
    int status;
    kind expected;
    std::string message;
  };
  for (const row& r : std::vector<row>{
           {400, kind::failed, "HTTP 400 from Kochava (request refused)"},
           {422, kind::failed, "HTTP 422 from Kochava (request refused)"},
           {404, kind::failed, "HTTP 404 from Kochava (check account_id and app_id)"},
           {401, kind::bad_credentials, "invalid credentials (HTTP 401)"},
           {403, kind::bad_credentials, "invalid credentials (HTTP 403)"},
           {413, kind::too_large, "HTTP 413 from Kochava (batch too large)"},
           {408, kind::retry, "HTTP 408 from Kochava"},
           {429, kind::retry, "HTTP 429 from Kochava"},
           {500, kind::retry, "HTTP 500 from Kochava"},
           {503, kind::retry, "HTTP 503 from Kochava"},
           {599, kind::retry, "HTTP 599 from Kochava"},
           {302, kind::failed, "HTTP 302 from Kochava (unexpected status)"},
           {418, kind::failed, "HTTP 418 from Kochava (unexpected status)"},
           {100, kind::failed, "HTTP 100 from Kochava (unexpected status)"},
       }) {
    auto v = p->classify(answer(r.status, echo, "30"), 1);
    EXPECT_EQ(v.kind, r.expected) << r.status;
    EXPECT_EQ(v.message, r.message);
    EXPECT_EQ(v.reference, "");
    // Retry-After belongs to retries only.
    EXPECT_EQ(v.retry_after.has_value(), r.expected == kind::retry) << r.status;
  }
}

TEST(Kochava, RetryAfterIsReadAsDeltaSeconds) {
  auto p = kochava();
  EXPECT_EQ(p->classify(answer(429, {}, "120"), 1).retry_after, std::chrono::microseconds(120s));
  EXPECT_EQ(p->classify(answer(503, {}, " 7 "), 4).retry_after, std::chrono::microseconds(7s));
  EXPECT_EQ(p->classify(answer(503, {}, "0"), 1).retry_after, std::chrono::microseconds(0));
  EXPECT_EQ(p->classify(answer(503, {}, "99999999999999999999"), 1).retry_after,
            std::chrono::microseconds(std::chrono::seconds(9'999'999'999)));
  // An HTTP-date, or anything else, is no Retry-After: the dispatcher backs off on its own.
  for (std::string ignored : {"Wed, 21 Oct 2026 07:28:00 GMT", "", "-5", "1.5", "10s"})
    EXPECT_EQ(p->classify(answer(429, {}, ignored), 1).retry_after, std::nullopt) << ignored;
  EXPECT_EQ(p->classify(answer(429), 1).retry_after, std::nullopt);
}

// --- Blueshift: configuration -------------------------------------------------------------------

TEST(Blueshift, NameDomainDescriptionAndBatching) {
  auto k = blueshift_partner_kind();
  EXPECT_EQ(k->name(), "blueshift");
  auto p = blueshift();
  EXPECT_EQ(p->domain(), "blueshift.com");
  EXPECT_EQ(p->batching().max_items, 1u);
  EXPECT_EQ(p->batching().max_age, std::chrono::microseconds(0));
  for (std::string_view name : {"region:", "mode:", "user_api_key:"})
    EXPECT_NE(k->describe().find(name), std::string_view::npos) << name;
}

TEST(Blueshift, RegionModeAndEndpointChooseTheUrl) {
  const std::vector batch{subject({email("a@example.com")})};
  struct row {
    std::map<std::string, std::string> settings;
    std::optional<std::string> endpoint;
    std::string url;
  };
  for (const row& r : std::vector<row>{
           {{}, {}, "https://api.getblueshift.com/api/v1/customers/delete"},
           {{{"region", "us"}, {"mode", "delete"}}, {}, "https://api.getblueshift.com/api/v1/customers/delete"},
           {{{"region", "eu"}}, {}, "https://api.eu.getblueshift.com/api/v1/customers/delete"},
           {{{"mode", "forget"}}, {}, "https://api.getblueshift.com/api/v1/customers/forget"},
           {{{"region", "eu"}, {"mode", "delete_all_matching"}},
            {},
            "https://api.eu.getblueshift.com/api/v1/customers/delete?delete_all_matching_customers=true"},
           // The endpoint replaces the region's base.
           {{{"region", "eu"}}, "http://127.0.0.1:9000", "http://127.0.0.1:9000/api/v1/customers/delete"},
       }) {
    partner_settings s = blueshift_settings();
    s.settings = r.settings;
    s.endpoint = r.endpoint;
    auto p = blueshift(s);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->build(batch)->url, r.url);
  }
}

TEST(Blueshift, ConfigurationErrors) {
  auto k = blueshift_partner_kind();
  partner_settings s = blueshift_settings();
  s.settings["region"] = "ap";
  EXPECT_TRUE(refused(*k, s, "blueshift: setting region must be one of \"us\", \"eu\""));
  s = blueshift_settings();
  s.settings["mode"] = "unforget";
  EXPECT_TRUE(refused(*k, s, "blueshift: setting mode must be one of \"delete\", \"delete_all_matching\", \"forget\""));
  s = blueshift_settings();
  s.settings["rps"] = "5";  // the spec's throttle: not a partner's to keep (docs/partners.md)
  EXPECT_TRUE(refused(*k, s, "blueshift: unknown setting \"rps\""));
  s = blueshift_settings();
  s.credentials["api_key"] = "SECRET-WRONG-NAME";
  EXPECT_TRUE(refused(*k, s, "blueshift: unknown credential \"api_key\""));
  s.credentials.clear();
  EXPECT_TRUE(refused(*k, s, "blueshift: credential user_api_key is required"));
  s.credentials["user_api_key"] = "SECRET:PART";
  EXPECT_TRUE(refused(*k, s, "blueshift: credential user_api_key must not contain ':'"));
  s.credentials["user_api_key"] = "SECRET PART";
  EXPECT_TRUE(refused(*k, s, "blueshift: credential user_api_key must be visible ASCII"));
  s = blueshift_settings();
  s.endpoint = "https://api.example.com/v2";
  EXPECT_TRUE(refused(*k, s, "blueshift: endpoint must be scheme://host[:port]"));
}

// --- Blueshift: requests ------------------------------------------------------------------------

TEST(Blueshift, AcceptsCustomerIdAndEmailOnly) {
  auto p = blueshift();
  for (identity_type t : all_identity_types())
    EXPECT_EQ(p->accepts(t), t == identity_type::controller_customer_id || t == identity_type::email)
        << opendsr_name(t);
}

TEST(Blueshift, BuildsOneDeleteCallWithBasicAuth) {
  auto r = blueshift()->build(std::vector{subject({email("Jane.Doe@Example.com"), customer("C-0042")})});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->url, "https://api.getblueshift.com/api/v1/customers/delete");
  // base64("0123456789abcdef0123456789abcdef:"): the key as user name, an empty password.
  EXPECT_EQ(headers_of(*r), (header_list{{"Authorization", "Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY6"},
                                         {"Content-Type", "application/json"},
                                         {"Accept", "application/json"}}));
  EXPECT_EQ(body_of(*r), boost::json::parse(R"({"customer_id":"C-0042","email":"Jane.Doe@Example.com"})"));
  EXPECT_EQ(r->body, R"({"customer_id":"C-0042","email":"Jane.Doe@Example.com"})");

  EXPECT_EQ(body_of(*blueshift()->build(std::vector{subject({email("a@example.com")})})),
            boost::json::parse(R"({"email":"a@example.com"})"));
  EXPECT_EQ(body_of(*blueshift()->build(std::vector{subject({customer("42")})})),
            boost::json::parse(R"({"customer_id":"42"})"));

  partner_settings s = blueshift_settings();
  s.credentials["user_api_key"] = "k";
  EXPECT_EQ(blueshift(s)->build(std::vector{subject({customer("42")})})->headers.get("Authorization"), "Basic azo=");
}

TEST(Blueshift, BuildRefusesWhatTheContractExcludes) {
  auto p = blueshift();
  EXPECT_EQ(p->build(std::vector<forward_subject>{}).error().code(), errc::invalid_argument);
  auto two = p->build(std::vector{subject({email("SECRET-1@example.com")}), subject({email("SECRET-2@example.com")})});
  ASSERT_FALSE(two.has_value());
  EXPECT_EQ(two.error().message(), "blueshift: a batch holds exactly one subject");
  auto twice = p->build(std::vector{subject({email("SECRET-1@example.com"), email("SECRET-2@example.com")})});
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().message(), "blueshift: the subject holds two identities of type email");
  auto other = p->build(std::vector{subject({email("SECRET-1@example.com"), idfa("SECRET-IDFA")})});
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().message(), "blueshift: identity type ios_advertising_id is not accepted");
  EXPECT_EQ(p->build(std::vector{subject({})}).error().message(), "blueshift: the subject holds no identity");
}

// --- Blueshift: answers -------------------------------------------------------------------------

TEST(Blueshift, SuccessIsSent) {
  auto p = blueshift();
  for (int status : {200, 201, 202, 204}) {
    auto v = p->classify(answer(status, R"({"status":"ok"})"), 1);
    EXPECT_EQ(v.kind, kind::sent) << status;
    EXPECT_EQ(v.message, "");
  }
  // delete_all_matching: up to 50 profiles per call, and no count to tell whether more remain.
  partner_settings s = blueshift_settings();
  s.settings["mode"] = "delete_all_matching";
  auto v = blueshift(s)->classify(answer(200), 1);
  EXPECT_EQ(v.kind, kind::sent);
  EXPECT_EQ(v.message, "cap unknown: Blueshift deletes at most 50 matching profiles per call and reports no count");
}

TEST(Blueshift, ErrorAnswers) {
  auto p = blueshift();
  const std::string echo = R"({"message":"no customer with email SECRET@example.com"})";
  struct row {
    int status;
    kind expected;
    std::string message;
  };
  for (const row& r : std::vector<row>{
           {400, kind::failed, "HTTP 400 from Blueshift"},
           {413, kind::failed, "HTTP 413 from Blueshift"},
           {422, kind::failed, "HTTP 422 from Blueshift"},
           {401, kind::bad_credentials, "invalid credentials (HTTP 401)"},
           {403, kind::bad_credentials, "invalid credentials (HTTP 403)"},
           {408, kind::retry, "HTTP 408 from Blueshift"},
           {409, kind::retry, "HTTP 409 from Blueshift"},
           {429, kind::retry, "HTTP 429 from Blueshift"},
           {500, kind::retry, "HTTP 500 from Blueshift"},
           {502, kind::retry, "HTTP 502 from Blueshift"},
           {503, kind::retry, "HTTP 503 from Blueshift"},
           {504, kind::retry, "HTTP 504 from Blueshift"},
           {501, kind::failed, "HTTP 501 from Blueshift (unexpected status)"},
           {505, kind::failed, "HTTP 505 from Blueshift (unexpected status)"},
           {301, kind::failed, "HTTP 301 from Blueshift (unexpected status)"},
           {410, kind::failed, "HTTP 410 from Blueshift (unexpected status)"},
       }) {
    auto v = p->classify(answer(r.status, echo, "45"), 2);
    EXPECT_EQ(v.kind, r.expected) << r.status;
    EXPECT_EQ(v.message, r.message);
    if (r.expected == kind::retry)
      EXPECT_EQ(v.retry_after, std::chrono::microseconds(45s)) << r.status;
    else
      EXPECT_EQ(v.retry_after, std::nullopt) << r.status;
  }
  EXPECT_EQ(p->classify(answer(429), 1).retry_after, std::nullopt);
}

TEST(Blueshift, NotFoundIsRetriedThreeTimesThenCountsAsDone) {
  auto p = blueshift();
  for (unsigned attempt : {1u, 2u, 3u}) {
    auto v = p->classify(answer(404, {}, "10"), attempt);
    EXPECT_EQ(v.kind, kind::retry) << attempt;
    EXPECT_EQ(v.message, "HTTP 404 from Blueshift (no matching customer yet)");
    EXPECT_EQ(v.retry_after, std::chrono::microseconds(10s));
  }
  for (unsigned attempt : {4u, 5u, 12u}) {
    auto v = p->classify(answer(404), attempt);
    EXPECT_EQ(v.kind, kind::sent) << attempt;
    EXPECT_EQ(v.message, "no matching customer");
    EXPECT_EQ(v.retry_after, std::nullopt);
  }
}

}  // namespace
}  // namespace opendsr
