// The OpenDSR v3 request validator: one focused test per rule of docs/protocol.md, each with the
// bodies it must accept and the bodies it must reject, and the canonical conflict key.
#include <opendsr/request.hpp>

#include "../fuzz/request_bodies.hpp"
#include "request/field_rules.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace opendsr {
namespace {

namespace json = boost::json;
using namespace std::chrono;

// Every identity value in these tests contains this text; no error message may.
constexpr std::string_view secret = "SECRET";

const std::string domain_path = "extensions.opendsr.mparticle.com";

json::value raw(std::string_view value) {
  return json::object{{"value", value}, {"encoding", "raw"}};
}

// The smallest valid body: the required fields and one identity.
json::object minimal() {
  return json::object{{"regulation", "gdpr"},
                      {"subject_request_id", "a7551968-d5d6-44b2-9831-815ac9017798"},
                      {"subject_request_type", "erasure"},
                      {"submitted_time", "2021-11-01T15:00:00Z"},
                      {"subject_identities", json::object{{"email", raw("SECRET-jd@example.com")}}}};
}

json::object& own_extension(json::object& body) {
  return body["extensions"].as_object()["opendsr.mparticle.com"].as_object();
}

// A minimal body whose identities live in the extension only.
json::object with_extension_identities(json::object identities) {
  json::object b = minimal();
  b.erase("subject_identities");
  b["extensions"] = json::object{{"opendsr.mparticle.com", json::object{{"subject_identities", std::move(identities)}}}};
  return b;
}

result<request> parse(std::string_view body, const parse_options& o = {}) { return parse_request(body, o); }
result<request> parse(const json::object& body, const parse_options& o = {}) {
  return parse_request(json::serialize(body), o);
}

::testing::AssertionResult accepted(const result<request>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "rejected: " << r.error().message();
}

::testing::AssertionResult rejected(const result<request>& r, errc code, std::string_view message) {
  if (r) return ::testing::AssertionFailure() << "accepted, expected: " << message;
  const std::string m = r.error().message();
  if (m.find(secret) != std::string::npos) return ::testing::AssertionFailure() << "echoes an identity value: " << m;
  if (r.error().code() != code)
    return ::testing::AssertionFailure() << "code " << static_cast<int>(r.error().code()) << ", message " << m;
  if (m != message) return ::testing::AssertionFailure() << "message \"" << m << "\", expected \"" << message << "\"";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult invalid(const result<request>& r, std::string_view message) {
  return rejected(r, errc::invalid_request, message);
}

timestamp utc(int y, unsigned mo, unsigned d, int h = 0) { return sys_days(year(y) / month(mo) / day(d)) + hours(h); }

// --- the seed and the model ---------------------------------------------------------------

TEST(ParseRequest, SeedExampleParsesToTheModel) {
  const result<request> r = parse(testing::seed_body);
  ASSERT_TRUE(accepted(r));
  EXPECT_EQ(r->regulation, regulation::gdpr);
  EXPECT_EQ(r->subject_request_id, "a7551968-d5d6-44b2-9831-815ac9017798");
  EXPECT_EQ(r->type, request_type::erasure);
  EXPECT_EQ(r->submitted_time, utc(2021, 11, 1, 15));
  const std::vector<identity> expected{
      {identity_type::email, "johndoe@example.com"},
      {identity_type::ios_advertising_id, "EA7583CD-A667-48BC-B806-42ECB2B48606"},
      {identity_type::other6, "EA7583CD-A667-48BC-B806-42ECB2B48606"},
  };
  EXPECT_EQ(r->identities, expected);
  EXPECT_FALSE(r->skip_waiting_period);
  EXPECT_EQ(r->status_callback_urls, std::vector<std::string>{"https://exampleurl.com/opendsr/callbacks"});
  EXPECT_EQ(r->group_id, "my-group");
}

TEST(ParseRequest, MinimalBodyTakesTheDefaults) {
  const result<request> r = parse(minimal());
  ASSERT_TRUE(accepted(r));
  EXPECT_FALSE(r->skip_waiting_period);
  EXPECT_TRUE(r->status_callback_urls.empty());
  EXPECT_FALSE(r->group_id);
  ASSERT_EQ(r->identities.size(), 1u);
}

TEST(ParseRequest, EveryIdentityTypeButMpidTogetherSortedByType) {
  const result<request> r = parse(testing::every_identity_but_mpid_body());
  ASSERT_TRUE(accepted(r));
  ASSERT_EQ(r->identities.size(), identity_type_count - 1);
  std::size_t i = 0;
  for (std::size_t t = 0; t < identity_type_count; ++t) {
    if (static_cast<identity_type>(t) == identity_type::mpid) continue;
    EXPECT_EQ(r->identities[i].type, static_cast<identity_type>(t));
    EXPECT_EQ(r->identities[i].value, testing::value_for(static_cast<identity_type>(t)));
    ++i;
  }
  EXPECT_EQ(r->type, request_type::access);
  EXPECT_TRUE(r->skip_waiting_period);
  EXPECT_EQ(r->group_id, "batch-7");
}

TEST(ParseRequest, IdentitiesAreSortedWhateverTheOrderWritten) {
  json::object b = minimal();
  b["subject_identities"] = json::object{{"roku_advertising_id", raw("r")}, {"email", raw("e")}, {"android_id", raw("a")}};
  const result<request> r = parse(b);
  ASSERT_TRUE(accepted(r));
  ASSERT_EQ(r->identities.size(), 3u);
  EXPECT_EQ(r->identities[0].type, identity_type::email);
  EXPECT_EQ(r->identities[1].type, identity_type::android_id);
  EXPECT_EQ(r->identities[2].type, identity_type::roku_advertising_id);
}

TEST(ParseRequest, EscapedKeysAndValuesAreDecoded) {
  const result<request> r = parse(
      R"({"regulation":"gd\u0070r","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798",)"
      R"("subject_request_type":"erasure","submitted_time":"2021-11-01T15:00:00Z",)"
      R"("subject\u005fidentities":{"em\u0061il":{"value":"jd\u0040example.com\n","enc\u006fding":"r\u0061w"}}})");
  ASSERT_TRUE(accepted(r));
  EXPECT_EQ(r->identities.at(0).value, "jd@example.com\n");
}

TEST(ParseRequest, UnknownTopLevelFieldsAreIgnored) {
  json::object b = minimal();
  b["controller_id"] = "3622";
  b["future_field"] = json::object{{"nested", json::array{1, "two", json::object{{"x", nullptr}}, true, 1.5}}};
  EXPECT_TRUE(accepted(parse(b)));
}

// --- strict JSON ----------------------------------------------------------------------------

TEST(ParseRequest, BodyMustBeAJsonObject) {
  for (std::string_view body : {"[]", "\"x\"", "null", "1", "true", "[{}]"})
    EXPECT_TRUE(invalid(parse(body), "body: must be a JSON object")) << body;
}

TEST(ParseRequest, EmptyBodyIsNotJson) {
  EXPECT_TRUE(rejected(parse(""), errc::invalid_json, "body: is empty (expected a JSON object)"));
}

TEST(ParseRequest, JsonExtensionsAreRejected) {
  const std::string good = json::serialize(minimal());
  for (std::string variant : {
           good.substr(0, good.size() - 1) + ",}",                    // trailing comma
           "/* c */" + good,                                           // comment
           good + "x",                                                 // trailing data
           good + good,                                                // two documents
           "\xEF\xBB\xBF" + good,                                      // byte order mark
           good.substr(0, good.size() - 1),                            // truncated
           good.substr(0, good.size() - 1) + R"(,"x":NaN})",           // NaN
           good.substr(0, good.size() - 1) + R"(,"x":'single'})",      // single quotes
           good.substr(0, good.size() - 1) + R"(,"x":01})",            // leading zero
           good.substr(0, good.size() - 1) + ",\"x\":\"tab\there\"}",  // raw control character
       }) {
    const result<request> r = parse(variant);
    ASSERT_FALSE(r) << variant;
    EXPECT_EQ(r.error().code(), errc::invalid_json) << variant;
    EXPECT_EQ(r.error().message().rfind("body: not valid JSON (", 0), 0u) << r.error().message();
  }
}

TEST(ParseRequest, InvalidUtf8IsRejectedWherEverItIs) {
  const std::string good = json::serialize(minimal());
  const std::string open = good.substr(0, good.size() - 1);
  for (std::string variant : {
           open + ",\"x\":\"\xff\"}",              // invalid byte in an ignored value
           open + ",\"\xc3\x28\":1}",              // bad continuation in a key
           open + ",\"x\":\"\xc0\xaf\"}",          // overlong '/'
           open + ",\"x\":\"\xed\xa0\x80\"}",      // UTF-16 surrogate encoded in UTF-8
           open + ",\"x\":\"\xf4\x90\x80\x80\"}",  // past U+10FFFF
           open + ",\"x\":\"\xe2\x82\"}",          // truncated sequence
       })
    EXPECT_TRUE(rejected(parse(variant), errc::invalid_json, "body: invalid UTF-8")) << variant;
  EXPECT_TRUE(accepted(parse(open + ",\"x\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}")));  // € and an emoji
}

TEST(ParseRequest, NestingDepthIsLimited) {
  const auto nested = [](std::size_t depth) {  // the body is depth 1
    json::object b = minimal();
    std::string text = json::serialize(b);
    text.pop_back();
    text += ",\"deep\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
    return text;
  };
  EXPECT_TRUE(accepted(parse(nested(32))));
  EXPECT_TRUE(rejected(parse(nested(33)), errc::invalid_json, "body: nested deeper than 32 levels"));
  parse_options shallow;
  shallow.max_depth = 8;
  EXPECT_TRUE(accepted(parse(nested(8), shallow)));
  EXPECT_TRUE(rejected(parse(nested(9), shallow), errc::invalid_json, "body: nested deeper than 8 levels"));
}

// --- duplicate keys -------------------------------------------------------------------------

constexpr std::string_view fixed_fields =
    R"("regulation":"gdpr","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798",)"
    R"("subject_request_type":"erasure","submitted_time":"2021-11-01T15:00:00Z")";
constexpr std::string_view email = R"("email":{"value":"SECRET-1","encoding":"raw"})";

std::string body_with(std::string_view more) { return "{" + std::string(fixed_fields) + "," + std::string(more) + "}"; }

// A repeated identity type key is not a JSON rule but distribution rule 2 or 3 (below).

TEST(ParseRequest, DuplicateKeyInsideAnIdentity) {
  EXPECT_TRUE(rejected(parse(body_with(R"("subject_identities":{"email":{"value":"SECRET-a","value":"SECRET-b","encoding":"raw"}})")),
                       errc::invalid_json, "subject_identities.email.value: duplicate key"));
}

TEST(ParseRequest, DuplicateKnownTopLevelField) {
  EXPECT_TRUE(rejected(parse(body_with(R"("regulation":"ccpa","subject_identities":{)" + std::string(email) + "}")),
                       errc::invalid_json, "regulation: duplicate key"));
}

TEST(ParseRequest, DuplicateUnknownKeysAnywhere) {
  const std::string ids = R"("subject_identities":{)" + std::string(email) + "}";
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"x":1,"x":2)")), errc::invalid_json, "body: duplicate key"));
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"x":[{"a":1,"b":{"c":1,"c":1}}])")), errc::invalid_json,
                       "body (in an ignored field): duplicate key"));
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"extensions":{"a.com":{},"a.com":{}})")), errc::invalid_json,
                       "extensions: duplicate key"));
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"extensions":{"a.com":{"k":{"d":1,"d":2}}})")), errc::invalid_json,
                       "extensions (in another processor's extension): duplicate key"));
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"extensions":{"opendsr.mparticle.com":{"note":1,"note":1}})")),
                       errc::invalid_json, domain_path + ": duplicate key"));
  EXPECT_TRUE(rejected(parse(body_with(ids + R"(,"extensions":{"opendsr.mparticle.com":{},"opendsr.mparticle.com":{}})")),
                       errc::invalid_json, domain_path + ": duplicate key"));
}

TEST(ParseRequest, EqualKeysInDifferentObjectsAreNotDuplicates) {
  const std::string ids = R"("subject_identities":{)" + std::string(email) + "}";
  EXPECT_TRUE(accepted(parse(body_with(ids + R"(,"x":[{"a":1},{"a":2}],"a":{"x":{"a":{"x":1}}},"b":{"a":1})"))));
}

TEST(ParseRequest, ManyUnknownKeysAreCheckedWithoutQuadraticCost) {
  std::string many = R"("subject_identities":{)" + std::string(email) + R"(},"x":{)";
  for (int i = 0; i < 20000; ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  EXPECT_TRUE(accepted(parse(body_with(many + "}"))));
  EXPECT_TRUE(rejected(parse(body_with(many + R"(,"k0":1})")), errc::invalid_json, "body (in an ignored field): duplicate key"));
}

// --- required scalar fields -----------------------------------------------------------------

TEST(ParseRequest, RequiredFieldsMustBePresent) {
  for (std::string_view field : {"regulation", "subject_request_id", "subject_request_type", "submitted_time"}) {
    json::object b = minimal();
    b.erase(field);
    EXPECT_TRUE(invalid(parse(b), std::string(field) + ": is required")) << field;
  }
}

TEST(ParseRequest, RegulationIsGdprOrCcpa) {
  json::object b = minimal();
  b["regulation"] = "ccpa";
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->regulation, regulation::ccpa);
  for (json::value v : {json::value("GDPR"), json::value("lgpd"), json::value(""), json::value(1), json::value(nullptr)}) {
    b["regulation"] = v;
    EXPECT_TRUE(invalid(parse(b), "regulation: must be \"gdpr\" or \"ccpa\"")) << v;
  }
}

TEST(ParseRequest, SubjectRequestIdIsALowercaseUuidV4) {
  json::object b = minimal();
  for (std::string_view ok : {"a7551968-d5d6-44b2-9831-815ac9017798", "00000000-0000-4000-8000-000000000000",
                              "ffffffff-ffff-4fff-bfff-ffffffffffff", "cab0a1fc-cfcd-475a-a2a5-e93eb060332f"}) {
    b["subject_request_id"] = ok;
    ASSERT_TRUE(accepted(parse(b))) << ok;
    EXPECT_EQ(parse(b)->subject_request_id, ok);
  }
  for (json::value bad : {
           json::value("A7551968-D5D6-44B2-9831-815AC9017798"),   // upper case
           json::value("00000000-0000-0000-0000-000000000000"),   // nil
           json::value("a7551968-d5d6-14b2-9831-815ac9017798"),   // version 1
           json::value("a7551968-d5d6-54b2-9831-815ac9017798"),   // version 5
           json::value("a7551968-d5d6-44b2-c831-815ac9017798"),   // variant 110x (Microsoft)
           json::value("a7551968-d5d6-44b2-7831-815ac9017798"),   // variant 0xxx (NCS)
           json::value("a7551968d5d644b29831815ac9017798"),       // no dashes
           json::value("{a7551968-d5d6-44b2-9831-815ac9017798}"), // braces
           json::value("a7551968-d5d6-44b2-9831-815ac901779"),    // short
           json::value("a7551968-d5d6-44b2-9831-815ac90177988"),  // long
           json::value("a7551968-d5d6-44b2-9831_815ac9017798"),   // wrong separator
           json::value("g7551968-d5d6-44b2-9831-815ac9017798"),   // not hex
           json::value(42), json::value(nullptr)}) {
    b["subject_request_id"] = bad;
    EXPECT_TRUE(invalid(parse(b), "subject_request_id: must be a lowercase UUID v4")) << bad;
  }
}

TEST(ParseRequest, SubjectRequestTypeIsAccessPortabilityOrErasure) {
  json::object b = minimal();
  for (auto [text, type] : {std::pair{"access", request_type::access}, std::pair{"portability", request_type::portability},
                            std::pair{"erasure", request_type::erasure}}) {
    b["subject_request_type"] = text;
    ASSERT_TRUE(accepted(parse(b)));
    EXPECT_EQ(parse(b)->type, type);
  }
  for (json::value bad : {json::value("rectification"), json::value("Erasure"), json::value(""), json::value(true)}) {
    b["subject_request_type"] = bad;
    EXPECT_TRUE(invalid(parse(b), "subject_request_type: must be \"access\", \"portability\" or \"erasure\"")) << bad;
  }
}

TEST(ParseRequest, SubmittedTimeIsRfc3339OrADate) {
  json::object b = minimal();
  b["submitted_time"] = "2021-11-01T17:00:00.123456789+02:00";
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->submitted_time, utc(2021, 11, 1, 15) + microseconds(123456));
  b["submitted_time"] = "2022-01-05";
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->submitted_time, utc(2022, 1, 5));
  b["submitted_time"] = "1999-01-01T00:00:00Z";  // long past: accepted
  EXPECT_TRUE(accepted(parse(b)));

  const std::string rule = "submitted_time: must be an RFC 3339 date-time or a date (YYYY-MM-DD)";
  b["submitted_time"] = "2021-13-01";
  EXPECT_TRUE(invalid(parse(b), rule + " (month out of range)"));
  b["submitted_time"] = "2021-11-01T15:00:00";
  EXPECT_TRUE(invalid(parse(b), rule + " (expected a UTC offset ('Z' or +HH:MM))"));
  for (json::value bad : {json::value(1635778800), json::value(nullptr)}) {
    b["submitted_time"] = bad;
    EXPECT_TRUE(invalid(parse(b), rule)) << bad;
  }
}

// --- identities -------------------------------------------------------------------------------

TEST(ParseRequest, IdentityValueIsANonEmptyString) {
  json::object b = minimal();
  for (json::value bad : {json::value(""), json::value(5), json::value(nullptr), json::value(json::array{"SECRET"})}) {
    b["subject_identities"] = json::object{{"email", json::object{{"value", bad}, {"encoding", "raw"}}}};
    EXPECT_TRUE(invalid(parse(b), "subject_identities.email.value: must be a non-empty string")) << bad;
  }
  b["subject_identities"] = json::object{{"email", json::object{{"encoding", "raw"}}}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities.email.value: is required"));
  b["subject_identities"] = json::object{{"email", json::object{{"value", " "}, {"encoding", "raw"}}}};
  EXPECT_TRUE(accepted(parse(b)));
}

TEST(ParseRequest, IdentityEncodingIsRequiredAndRaw) {
  json::object b = minimal();
  b["subject_identities"] = json::object{{"email", json::object{{"value", "SECRET"}}}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities.email.encoding: is required (\"raw\")"));
  for (json::value bad : {json::value("sha256"), json::value("md5"), json::value("sha1"), json::value("RAW"),
                          json::value(nullptr), json::value(0)}) {
    b["subject_identities"] = json::object{{"email", json::object{{"value", "SECRET"}, {"encoding", bad}}}};
    EXPECT_TRUE(invalid(parse(b), "subject_identities.email.encoding: must be \"raw\"")) << bad;
  }
}

TEST(ParseRequest, IdentityHasNoOtherKeys) {
  json::object b = minimal();
  b["subject_identities"] = json::object{{"email", json::object{{"value", "SECRET"}, {"encoding", "raw"}, {"SECRET", 1}}}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities.email: unknown key (an identity has only value and encoding)"));
}

TEST(ParseRequest, IdentityIsAnObject) {
  json::object b = minimal();
  for (json::value bad : {json::value("SECRET"), json::value(json::array{"SECRET", "raw"}), json::value(nullptr)}) {
    b["subject_identities"] = json::object{{"email", bad}};
    EXPECT_TRUE(invalid(parse(b), "subject_identities.email: must be an object with value and encoding")) << bad;
  }
}

TEST(ParseRequest, SubjectIdentitiesAreObjects) {
  json::object b = minimal();
  b["subject_identities"] = json::array{json::object{{"identity_type", "email"}, {"identity_value", "SECRET"}}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities: must be an object"));
  json::object e = with_extension_identities({});
  own_extension(e)["subject_identities"] = "SECRET";
  EXPECT_TRUE(invalid(parse(e), domain_path + ".subject_identities: must be an object"));
}

TEST(ParseRequest, UnknownIdentityTypeIsRejectedWithoutEchoingIt) {
  json::object b = minimal();
  b["subject_identities"] = json::object{{"SECRET@example.com", raw("x")}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities: unknown identity type (see GET /v3/discovery)"));
  b["subject_identities"] = json::object{{"customer_id", raw("x")}};  // the internal name is not a wire name
  EXPECT_TRUE(invalid(parse(b), "subject_identities: unknown identity type (see GET /v3/discovery)"));
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"other11", raw("x")}})),
                      domain_path + ".subject_identities: unknown identity type (see GET /v3/discovery)"));
}

TEST(ParseRequest, ExtensionOnlyTypeAtTopLevelIsRejected) {
  json::object b = minimal();
  b["subject_identities"].as_object()["other"] = raw("SECRET");
  EXPECT_TRUE(invalid(parse(b), "subject_identities.other: only allowed in " + domain_path + ".subject_identities"));
  b["subject_identities"] = json::object{{"mpid", raw("1")}};
  EXPECT_TRUE(invalid(parse(b), "subject_identities.mpid: only allowed in " + domain_path + ".subject_identities"));
}

// A standard type in the extension is distribution rule 5 (below).

TEST(ParseRequest, RokuPublishingIdIsAnAliasOfRokuPublisherId) {
  json::object b = minimal();
  b["subject_identities"] = json::object{{"roku_publishing_id", raw("SECRET-r")}};
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->identities.at(0).type, identity_type::roku_publisher_id);
  for (auto [first, second] : {std::pair{"roku_publishing_id", "roku_publisher_id"},
                               std::pair{"roku_publisher_id", "roku_publishing_id"}}) {
    // Distribution rule 2: both spellings give the type twice.
    EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{")" + std::string(first) +
                                        R"(":{"value":"SECRET-1","encoding":"raw"},")" + second +
                                        R"(":{"value":"SECRET-2","encoding":"raw"}})")),
                        "Only one identity of each type per request is allowed, and roku_publishing_id is an alias of "
                        "roku_publisher_id. Please check 'roku_publisher_id' and 'roku_publishing_id' in subject_identities."));
  }
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{"roku_publishing_id":{"value":"SECRET-1","encoding":"raw"},)"
                                      R"("email":{"value":"SECRET-3","encoding":"raw"},)"
                                      R"("roku_publishing_id":{"value":"SECRET-2","encoding":"raw"}})")),
                      "Only one identity of each type per request is allowed. "
                      "Please check 'roku_publishing_id' in subject_identities."));
  // Once the alias was used, a repeated key of another type is still rule 2 for that type.
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{"roku_publishing_id":{"value":"SECRET-1","encoding":"raw"},)" +
                                      std::string(email) + "," + std::string(email) + "}")),
                      "Only one identity of each type per request is allowed. Please check 'email' in subject_identities."));
}

TEST(ParseRequest, AtLeastOneIdentity) {
  const std::string message =
      "subject_identities: at least one identity is required (here or in " + domain_path + ".subject_identities)";
  json::object b = minimal();
  b["subject_identities"] = json::object{};
  EXPECT_TRUE(invalid(parse(b), message));
  b.erase("subject_identities");
  EXPECT_TRUE(invalid(parse(b), message));
  EXPECT_TRUE(invalid(parse(with_extension_identities({})), message));
  EXPECT_TRUE(accepted(parse(with_extension_identities({{"other", raw("o")}}))));
}

TEST(ParseRequest, FiftyIdentityLimitIsReachedOnlyThroughBrokenRules) {
  // Keys are identity types and each may appear once, so 51 entries always break the unknown-type
  // or one-identity-per-type rule first; the parser never builds more than 25 identities.
  std::string ids;
  for (int i = 0; i < 51; ++i) ids += (i ? "," : "") + std::string(R"("email":{"value":"SECRET","encoding":"raw"})");
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{)" + ids + "}")),
                      "Only one identity of each type per request is allowed. Please check 'email' in subject_identities."));
}

TEST(ParseRequest, MpidIsASigned64BitInteger) {
  for (std::string_view ok : {"0", "1", "-1", "9223372036854775807", "-9223372036854775808", "4294967296"}) {
    const result<request> r = parse(with_extension_identities({{"mpid", raw(ok)}}));
    ASSERT_TRUE(accepted(r)) << ok;
    EXPECT_EQ(r->identities, (std::vector<identity>{{identity_type::mpid, std::string(ok)}}));
  }
  const std::string rule = domain_path + ".subject_identities.mpid.value: must be a signed 64-bit integer in decimal";
  for (std::string_view bad : {"9223372036854775808", "-9223372036854775809", "+1", "01", "-0", "1.0", "1e3", " 1", "1 ",
                               "0x10", "-", "SECRET"})
    EXPECT_TRUE(invalid(parse(with_extension_identities({{"mpid", raw(bad)}})), rule)) << bad;
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"mpid", json::object{{"value", 12}, {"encoding", "raw"}}}})),
                      domain_path + ".subject_identities.mpid.value: must be a non-empty string"));
}

// --- the five distribution rules of seed 004 ---------------------------------------------------
// Seed 004 enforces them only when distribution is enabled; v3's dictionary shape makes them hold
// for every valid body, so they are enforced for every request (docs/protocol.md, "Decisions").
// Each is invalid_request (400 InvalidOperationException) with a message naming the rule.

// `n` identities of `type` as members of a subject_identities object, each with its own valid
// value (an mpid's is a number, the others hold the secret).
std::string repeated(std::string_view type, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const std::string value = type == "mpid" ? std::to_string(42 + i) : "SECRET-" + std::to_string(i);
    out += (i ? ",\"" : "\"") + std::string(type) + R"(":{"value":")" + value + R"(","encoding":"raw"})";
  }
  return out;
}

std::string in_extension(std::string_view members, std::string_view domain = "opendsr.mparticle.com") {
  return R"("extensions":{")" + std::string(domain) + R"(":{"subject_identities":{)" + std::string(members) + "}}}";
}

TEST(ParseRequest, DistributionRule1OnlyOneMpid) {
  const std::string message =
      "Only one mpid per request is allowed. Please check 'mpid' in " + domain_path + ".subject_identities.";
  EXPECT_TRUE(invalid(parse(body_with(in_extension(repeated("mpid", 2)))), message));
  EXPECT_TRUE(invalid(parse(body_with(in_extension(repeated("mpid", 3)))), message));
  // Reported at the second key, so before rule 4, which waits for the whole body.
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{)" + std::string(email) + "}," +
                                      in_extension(repeated("mpid", 2)))),
                      message));
  // The message names the configured processor domain.
  parse_options options;
  options.processor_domain = "opendsr.example.com";
  EXPECT_TRUE(invalid(parse(body_with(in_extension(repeated("mpid", 2), "opendsr.example.com")), options),
                      "Only one mpid per request is allowed. Please check 'mpid' in "
                      "extensions.opendsr.example.com.subject_identities."));
  // In another processor's extension the mpids are not ours: only the JSON rules apply there.
  EXPECT_TRUE(rejected(parse(body_with(R"("subject_identities":{)" + std::string(email) + "}," +
                                       in_extension(repeated("mpid", 2), "opendsr.example.com"))),
                       errc::invalid_json, "extensions (in another processor's extension): duplicate key"));
}

TEST(ParseRequest, DistributionRule2OneIdentityOfEachTypeInSubjectIdentities) {
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{)" + std::string(email) + "," + std::string(email) + "}")),
                      "Only one identity of each type per request is allowed. Please check 'email' in subject_identities."));
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{)" + repeated("ios_advertising_id", 2) + "}")),
                      "Only one identity of each type per request is allowed. Please check 'ios_advertising_id' in subject_identities."));
  // The top level is read first here, so its repetition is reported before the extension's.
  EXPECT_TRUE(invalid(parse(body_with(R"("subject_identities":{)" + repeated("email", 2) + "}," +
                                      in_extension(repeated("mpid", 2)))),
                      "Only one identity of each type per request is allowed. Please check 'email' in subject_identities."));
}

TEST(ParseRequest, DistributionRule3OneIdentityOfEachTypeInTheExtension) {
  EXPECT_TRUE(invalid(parse(body_with(in_extension(repeated("other", 2)))),
                      "Only one identity of each type per request is allowed. Please check 'other' in " + domain_path +
                          ".subject_identities."));
  EXPECT_TRUE(invalid(parse(body_with(in_extension(repeated("other", 1) + "," + repeated("mobile_number", 2)))),
                      "Only one identity of each type per request is allowed. Please check 'mobile_number' in " +
                          domain_path + ".subject_identities."));
}

TEST(ParseRequest, DistributionRule4MpidMustBeTheOnlyIdentity) {
  // Exactly [MP]'s own text (seed 000).
  const std::string message = "If an MPID is provided, it must be the only identity in the request.";
  json::object b = minimal();
  b["extensions"] =
      json::object{{"opendsr.mparticle.com", json::object{{"subject_identities", json::object{{"mpid", raw("42")}}}}}};
  EXPECT_TRUE(invalid(parse(b), message));  // with a top-level identity
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"mpid", raw("42")}, {"other", raw("SECRET")}})), message));
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"other", raw("SECRET")}, {"mpid", raw("42")}})), message));
  EXPECT_TRUE(accepted(parse(with_extension_identities({{"mpid", raw("42")}}))));
}

TEST(ParseRequest, DistributionRule5SameTypeNotAlsoInTheExtension) {
  const std::string message = "The same identity type may not be provided in both subject_identities and the extensions; "
                              "'email' belongs in subject_identities only. Please check 'email' in " +
                              domain_path + ".subject_identities.";
  // Also at the top level, before or after the extension in the body.
  json::object b = minimal();
  b["extensions"] = json::object{
      {"opendsr.mparticle.com", json::object{{"subject_identities", json::object{{"email", raw("SECRET")}}}}}};
  EXPECT_TRUE(invalid(parse(b), message));
  EXPECT_TRUE(invalid(parse(body_with(in_extension(email) + R"(,"subject_identities":{)" + std::string(email) + "}")),
                      message));
  // A standard type in the extension is refused whether or not it is also at the top level, so
  // the rule holds for every type without waiting for the other object.
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"email", raw("SECRET")}})), message));
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"other", raw("o")}, {"controller_customer_id", raw("SECRET")}})),
                      "The same identity type may not be provided in both subject_identities and the extensions; "
                      "'controller_customer_id' belongs in subject_identities only. Please check 'controller_customer_id' in " +
                          domain_path + ".subject_identities."));
  // Reported at the key, so before rule 4 (an mpid with another identity).
  EXPECT_TRUE(invalid(parse(with_extension_identities({{"mpid", raw("42")}, {"email", raw("SECRET")}})), message));
}

// --- optional fields --------------------------------------------------------------------------

TEST(ParseRequest, SkipWaitingPeriodIsBoolean) {
  json::object b = with_extension_identities({{"other", raw("o")}});
  own_extension(b)["skip_waiting_period"] = true;
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_TRUE(parse(b)->skip_waiting_period);
  for (json::value bad : {json::value("true"), json::value(1), json::value(json::object{})}) {
    own_extension(b)["skip_waiting_period"] = bad;
    EXPECT_TRUE(invalid(parse(b), domain_path + ".skip_waiting_period: must be true or false")) << bad;
  }
}

TEST(ParseRequest, ApiVersionIsAbsentOr3_0) {
  json::object b = minimal();
  b["api_version"] = "3.0";
  EXPECT_TRUE(accepted(parse(b)));
  for (json::value bad : {json::value("2.0"), json::value("3"), json::value("3.0.0"), json::value(3.0)}) {
    b["api_version"] = bad;
    EXPECT_TRUE(invalid(parse(b), "api_version: must be \"3.0\"")) << bad;
  }
}

TEST(ParseRequest, StatusCallbackUrlsAreDistinctHttpUrls) {
  json::object b = minimal();
  json::array urls;
  for (int i = 0; i < 10; ++i) urls.emplace_back("https://controller.example.com/cb/" + std::to_string(i));
  b["status_callback_urls"] = urls;
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->status_callback_urls.size(), 10u);
  EXPECT_EQ(parse(b)->status_callback_urls[3], "https://controller.example.com/cb/3");

  urls.emplace_back("https://controller.example.com/cb/10");
  b["status_callback_urls"] = urls;
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls: at most 10 URLs"));

  b["status_callback_urls"] = json::array{"https://a.example/cb", "https://b.example/cb", "https://a.example/cb"};
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls[2]: repeats an earlier URL"));

  b["status_callback_urls"] = json::array{};
  EXPECT_TRUE(accepted(parse(b)));
  b["status_callback_urls"] = "https://a.example/cb";
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls: must be an array of URLs"));
  b["status_callback_urls"] = json::array{"https://a.example/cb", 7};
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls[1]: must be an absolute http or https URL"));
  b["status_callback_urls"] = json::array{json::array{"https://a.example/cb"}};
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls[0]: must be an absolute http or https URL"));
}

TEST(ParseRequest, StatusCallbackUrlIsAtMost2048Characters) {
  json::object b = minimal();
  const std::string prefix = "https://controller.example.com/";
  b["status_callback_urls"] = json::array{prefix + std::string(2048 - prefix.size(), 'a')};
  EXPECT_TRUE(accepted(parse(b)));
  b["status_callback_urls"] = json::array{prefix + std::string(2049 - prefix.size(), 'a')};
  EXPECT_TRUE(invalid(parse(b), "status_callback_urls[0]: longer than 2048 characters"));
}

TEST(ParseRequest, StatusCallbackUrlMustBeAbsoluteHttp) {
  json::object b = minimal();
  parse_options anywhere;  // the syntax alone: every destination allowed
  anywhere.callback_destinations.allow_http = anywhere.callback_destinations.allow_loopback = true;
  for (std::string_view ok : {"http://localhost:8080/cb", "HTTPS://Example.COM/cb?x=1&y=%20#frag", "https://[::1]:443/cb",
                              "https://example.com"}) {
    b["status_callback_urls"] = json::array{ok};
    EXPECT_TRUE(accepted(parse(b, anywhere))) << ok;
  }
  // Credentials in a URL are refused: they would be sent to the receiver in the clear, and
  // "https://trusted.example@attacker.example/" misleads whoever reads it.
  b["status_callback_urls"] = json::array{"https://user@example.com/cb"};
  EXPECT_EQ(parse(b, anywhere).error().code(), errc::invalid_request);
  for (std::string_view bad : {"ftp://example.com/cb", "/opendsr/callbacks", "example.com/cb", "https://", "https:///cb",
                               "https://example.com:/cb", "https://example.com:70000/cb", "https://example.com:8o/cb",
                               "https://exa mple.com/cb", "https://example.com/c%zz", "https://ex\xc3\xa4mple.com/cb",
                               "https://[::1/cb", "https://ex[a]mple.com/", "javascript:alert(1)", "mailto:a@b.c"}) {
    b["status_callback_urls"] = json::array{bad};
    EXPECT_TRUE(invalid(parse(b), "status_callback_urls[0]: must be an absolute http or https URL")) << bad;
  }
}

TEST(ParseRequest, StatusCallbackUrlsTheOutboundPolicyRefusesAreInvalid) {
  json::object b = minimal();
  const std::pair<const char*, const char*> refused[] = {
      {"http://example.com/cb", "http"},
      {"https://127.0.0.1/cb", "loopback"},
      {"https://localhost:8443/cb", "loopback"},
      {"https://[::1]/cb", "loopback"},
      {"https://[::ffff:127.0.0.1]/cb", "loopback"},
      {"https://10.1.2.3/cb", "private"},
      {"https://192.168.0.10/cb", "private"},
      {"https://[fd00::1]/cb", "private"},
      {"https://169.254.169.254/latest/meta-data", "metadata"},
      {"https://100.64.0.1/cb", "shared"},
      {"https://[fe80::1]/cb", "link"},
      {"https://0.0.0.0/cb", "unspecified"},
      {"https://224.0.0.1/cb", "multicast"},
      {"https://2130706433/cb", "number"},
  };
  for (const auto& [url, rule] : refused) {
    b["status_callback_urls"] = json::array{"https://ok.example/cb", url};
    const auto r = parse(b);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code(), errc::invalid_request) << url;
    const std::string m = r.error().message();
    EXPECT_TRUE(m.starts_with("status_callback_urls[1]: ")) << m;
    EXPECT_NE(m.find(rule), std::string::npos) << url << ": " << m;
    EXPECT_EQ(m.find(url), std::string::npos) << "the message repeats the URL: " << m;
  }
  parse_options loopback;  // what opendsrd's test mode allows
  loopback.callback_destinations.allow_http = loopback.callback_destinations.allow_loopback = true;
  b["status_callback_urls"] = json::array{"http://127.0.0.1:9/cb"};
  EXPECT_TRUE(accepted(parse(b, loopback)));
  b["status_callback_urls"] = json::array{"http://10.0.0.1/cb"};
  EXPECT_FALSE(parse(b, loopback));
}

TEST(ParseRequest, GroupIdIsOneTo256CodePoints) {
  json::object b = minimal();
  b["group_id"] = "g";
  EXPECT_TRUE(accepted(parse(b)));
  std::string accented;
  for (int i = 0; i < 256; ++i) accented += "\xc3\xa9";  // 256 code points, 512 bytes
  b["group_id"] = accented;
  ASSERT_TRUE(accepted(parse(b)));
  EXPECT_EQ(parse(b)->group_id, accented);
  const std::string rule = "group_id: must be a string of 1 to 256 characters";
  b["group_id"] = accented + "e";
  EXPECT_TRUE(invalid(parse(b), rule));
  b["group_id"] = std::string(257, 'g');
  EXPECT_TRUE(invalid(parse(b), rule));
  for (json::value bad : {json::value(""), json::value(7), json::value(json::array{"g"})}) {
    b["group_id"] = bad;
    EXPECT_TRUE(invalid(parse(b), rule)) << bad;
  }
}

TEST(ParseRequest, NullMeansAbsentForOptionalFields) {
  json::object b = with_extension_identities({{"other", raw("o")}});
  b["subject_identities"] = nullptr;
  b["api_version"] = nullptr;
  b["status_callback_urls"] = nullptr;
  b["group_id"] = nullptr;
  own_extension(b)["skip_waiting_period"] = nullptr;
  const result<request> r = parse(b);
  ASSERT_TRUE(accepted(r));
  EXPECT_FALSE(r->group_id);
  EXPECT_FALSE(r->skip_waiting_period);

  json::object m = minimal();
  m["extensions"] = nullptr;
  EXPECT_TRUE(accepted(parse(m)));
  m["extensions"] = json::object{{"opendsr.mparticle.com", nullptr}};
  EXPECT_TRUE(accepted(parse(m)));
  m["extensions"] = json::object{{"opendsr.mparticle.com", json::object{{"subject_identities", nullptr}}}};
  EXPECT_TRUE(accepted(parse(m)));
}

// --- extensions -------------------------------------------------------------------------------

TEST(ParseRequest, OtherProcessorsExtensionsAreIgnored) {
  json::object b = minimal();
  b["extensions"] = json::object{
      {"opendsr.example.com", json::object{{"subject_identities", 5}, {"skip_waiting_period", "yes"}}},
      {"processor.example.org", json::array{1, 2, 3}},
      {"other.example.net", "anything"},
  };
  const result<request> r = parse(b);
  ASSERT_TRUE(accepted(r));
  EXPECT_EQ(r->identities.size(), 1u);
}

TEST(ParseRequest, ExtensionsIsAnObject) {
  json::object b = minimal();
  b["extensions"] = json::array{};
  EXPECT_TRUE(invalid(parse(b), "extensions: must be an object"));
  b["extensions"] = "opendsr.mparticle.com";
  EXPECT_TRUE(invalid(parse(b), "extensions: must be an object"));
}

TEST(ParseRequest, ProcessorExtensionIsAnObject) {
  json::object b = minimal();
  for (json::value bad : {json::value(json::array{}), json::value("x"), json::value(true)}) {
    b["extensions"] = json::object{{"opendsr.mparticle.com", bad}};
    EXPECT_TRUE(invalid(parse(b), domain_path + ": must be an object")) << bad;
  }
}

TEST(ParseRequest, UnknownKeysOfTheProcessorExtensionAreIgnored) {
  json::object b = with_extension_identities({{"other", raw("o")}});
  own_extension(b)["mpids"] = json::array{"1"};
  EXPECT_TRUE(accepted(parse(b)));
}

TEST(ParseRequest, ProcessorDomainIsConfigurable) {
  parse_options options;
  options.processor_domain = "opendsr.example.com";
  json::object b = minimal();
  b["extensions"] = json::object{
      {"opendsr.example.com", json::object{{"skip_waiting_period", true}, {"subject_identities", json::object{{"other2", raw("o")}}}}},
      {"opendsr.mparticle.com", json::object{{"subject_identities", json::object{{"bogus", 1}}}}},
  };
  const result<request> r = parse(b, options);
  ASSERT_TRUE(accepted(r));
  EXPECT_TRUE(r->skip_waiting_period);
  EXPECT_EQ(r->identities.size(), 2u);
  own_extension(b)["subject_identities"] = json::object{{"mpid", raw("1")}};  // the mParticle key
  EXPECT_TRUE(accepted(parse(b, options)));
  EXPECT_TRUE(invalid(parse(b), "If an MPID is provided, it must be the only identity in the request."));
}

// --- messages -----------------------------------------------------------------------------------

TEST(ParseRequest, FirstBrokenRuleInDocumentOrderIsReported) {
  json::object b = minimal();
  b["regulation"] = "lgpd";
  b["subject_request_type"] = "rectification";
  EXPECT_TRUE(invalid(parse(b), "regulation: must be \"gdpr\" or \"ccpa\""));
}

// --- field rules, directly --------------------------------------------------------------------

TEST(FieldRules, CodePointsCountUtf8Sequences) {
  EXPECT_EQ(detail::count_code_points(""), 0u);
  EXPECT_EQ(detail::count_code_points("abc"), 3u);
  EXPECT_EQ(detail::count_code_points("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), 3u);
}

TEST(FieldRules, CanonicalInt64) {
  EXPECT_TRUE(detail::is_canonical_int64("-42"));
  EXPECT_FALSE(detail::is_canonical_int64(""));
  EXPECT_FALSE(detail::is_canonical_int64("-00"));
  EXPECT_FALSE(detail::is_canonical_int64("1-"));
}

// --- to_string and canonical_key ------------------------------------------------------------

TEST(ToString, WireNames) {
  EXPECT_EQ(to_string(regulation::gdpr), "gdpr");
  EXPECT_EQ(to_string(regulation::ccpa), "ccpa");
  EXPECT_EQ(to_string(request_type::access), "access");
  EXPECT_EQ(to_string(request_type::portability), "portability");
  EXPECT_EQ(to_string(request_type::erasure), "erasure");
}

std::string key_of(std::string_view body) {
  const result<request> r = parse(body);
  EXPECT_TRUE(accepted(r)) << body;
  return r ? canonical_key(*r) : std::string{};
}

TEST(CanonicalKey, IndependentOfTheOrderWritten) {
  const std::string a = key_of(body_with(
      R"("subject_identities":{"email":{"value":"e","encoding":"raw"},"ios_vendor_id":{"value":"v","encoding":"raw"}},)"
      R"("extensions":{"opendsr.mparticle.com":{"subject_identities":{"other3":{"value":"o3","encoding":"raw"},"other":{"value":"o","encoding":"raw"}}}})"));
  const std::string b = key_of(
      R"({"extensions":{"opendsr.mparticle.com":{"subject_identities":{"other":{"value":"o","encoding":"raw"},"other3":{"encoding":"raw","value":"o3"}}}},)"
      R"("subject_identities":{"ios_vendor_id":{"value":"v","encoding":"raw"},"email":{"value":"e","encoding":"raw"}},)"
      R"("submitted_time":"2020-01-01","subject_request_type":"erasure","regulation":"ccpa",)"
      R"("subject_request_id":"cab0a1fc-cfcd-475a-a2a5-e93eb060332f","group_id":"g"})");
  EXPECT_EQ(a, b);
}

TEST(CanonicalKey, HandBuiltRequestsAreSortedToo) {
  request sorted;
  sorted.identities = {{identity_type::email, "e"}, {identity_type::other, "o"}};
  request reversed = sorted;
  std::swap(reversed.identities[0], reversed.identities[1]);
  EXPECT_EQ(canonical_key(sorted), canonical_key(reversed));
}

TEST(CanonicalKey, RequestTypeIsPartOfTheKey) {
  request r;
  r.identities = {{identity_type::email, "e"}};
  std::set<std::string> keys;
  for (request_type t : {request_type::access, request_type::portability, request_type::erasure}) {
    r.type = t;
    keys.insert(canonical_key(r));
  }
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(canonical_key(r)[0], static_cast<char>(request_type::erasure));  // the type comes first
}

TEST(CanonicalKey, IdentityTypeIsPartOfTheKey) {
  request a, b;
  a.identities = {{identity_type::email, "x"}};
  b.identities = {{identity_type::other, "x"}};
  EXPECT_NE(canonical_key(a), canonical_key(b));
}

TEST(CanonicalKey, AliasSpellingsGiveTheSameKey) {
  const std::string ids = R"(":{"value":"r","encoding":"raw"}})";
  EXPECT_EQ(key_of(body_with(R"("subject_identities":{"roku_publishing_id)" + ids)),
            key_of(body_with(R"("subject_identities":{"roku_publisher_id)" + ids)));
}

TEST(CanonicalKey, RegulationGroupAndWaitingPeriodAreNotPartOfTheKey) {
  request a;
  a.identities = {{identity_type::email, "e"}};
  request b = a;
  b.regulation = regulation::ccpa;
  b.group_id = "g";
  b.skip_waiting_period = true;
  b.status_callback_urls = {"https://a.example/cb"};
  b.subject_request_id = "cab0a1fc-cfcd-475a-a2a5-e93eb060332f";
  EXPECT_EQ(canonical_key(a), canonical_key(b));
}

TEST(CanonicalKey, ValueBoundariesAreUnambiguous) {
  request one, two;
  one.identities = {{identity_type::email, "xy"}};
  two.identities = {{identity_type::email, "x"}, {identity_type::android_advertising_id, "y"}};
  EXPECT_NE(canonical_key(one), canonical_key(two));
  // A value holding bytes that look like a following identity (type byte, length byte, value).
  request crafted, split;
  crafted.identities = {{identity_type::email, std::string("x") + static_cast<char>(identity_type::android_id) +
                                                   static_cast<char>(1) + "y"}};
  split.identities = {{identity_type::email, "x"}, {identity_type::android_id, "y"}};
  EXPECT_NE(canonical_key(crafted), canonical_key(split));
}

TEST(CanonicalKey, DistinctIdentitySetsGiveDistinctKeys) {
  // Exhaustive over small sets: every subset of three types, each with one of several values,
  // including lengths around the one-byte length limit (127/128).
  const std::string values[] = {"", "a", "ab", std::string(127, 'z'), std::string(128, 'z'), std::string(129, 'z')};
  const identity_type types[] = {identity_type::email, identity_type::android_id, identity_type::other};
  std::set<std::string> keys;
  std::size_t requests = 0;
  for (int mask = 0; mask < 8; ++mask)
    for (const std::string& v0 : values)
      for (const std::string& v1 : values) {
        // types[0] and types[2] take v0, types[1] takes v1; an unused value only takes values[0].
        if (!(mask & 5) && &v0 != &values[0]) continue;
        if (!(mask & 2) && &v1 != &values[0]) continue;
        request r;
        for (int i = 0; i < 3; ++i)
          if (mask & (1 << i)) r.identities.push_back({types[i], i == 1 ? v1 : v0});
        ++requests;
        keys.insert(canonical_key(r));
      }
  EXPECT_EQ(keys.size(), requests);
}

}  // namespace
}  // namespace opendsr
