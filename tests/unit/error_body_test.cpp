#include <opendsr/error_body.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>

namespace opendsr {
namespace {

namespace json = boost::json;

constexpr errc first_errc = errc::invalid_json;
constexpr errc last_errc = errc::internal;

TEST(ErrorBody, EveryErrcHasAStatusDomainAndReason) {
  for (int v = static_cast<int>(first_errc); v <= static_cast<int>(last_errc); ++v) {
    const auto e = static_cast<errc>(v);
    const int status = http_status(e);
    EXPECT_TRUE((status >= 400 && status <= 429) || (status >= 500 && status <= 507)) << v << " -> " << status;
    EXPECT_FALSE(error_domain(e).empty()) << v;
    EXPECT_FALSE(error_reason(e).empty()) << v;
    EXPECT_EQ(is_retryable(e), status == 429 || status == 503) << v << " -> " << status;
  }
}

TEST(ErrorBody, StatusesOfTheOpenDsrTable) {
  EXPECT_EQ(http_status(errc::invalid_json), 400);
  EXPECT_EQ(http_status(errc::invalid_request), 400);
  EXPECT_EQ(http_status(errc::duplicate_request_id), 400);
  EXPECT_EQ(http_status(errc::group_full), 400);
  EXPECT_EQ(http_status(errc::invalid_operation), 400);
  EXPECT_EQ(http_status(errc::unauthorized), 401);
  EXPECT_EQ(http_status(errc::not_found), 404);
  EXPECT_EQ(http_status(errc::method_not_allowed), 405);
  EXPECT_EQ(http_status(errc::identity_conflict), 409);
  EXPECT_EQ(http_status(errc::payload_too_large), 413);
  EXPECT_EQ(http_status(errc::unsupported_media_type), 415);
  EXPECT_EQ(http_status(errc::rate_limited), 429);
  EXPECT_EQ(http_status(errc::internal), 500);
  EXPECT_EQ(http_status(errc::storage_conflict), 503);
  EXPECT_EQ(http_status(errc::unavailable), 503);
  EXPECT_EQ(http_status(errc::storage_full), 507);
  EXPECT_EQ(http_status(errc::network_error), 502);
  EXPECT_EQ(http_status(errc::destination_refused), 502);
  EXPECT_EQ(http_status(errc::gone), 410);
}

TEST(ErrorBody, DuplicateRequestIsTheMParticleExampleByteForByte) {
  EXPECT_EQ(error_body(error(errc::duplicate_request_id)),
            R"({"code":400,"message":"Subject request already exists.","errors":[{"domain":"Validation",)"
            R"("reason":"InvalidOperationException","message":"Subject request already exists."}]})");
}

TEST(ErrorBody, TopLevelMessageIsTheCategoryAndTheErrorCarriesTheSpecificMessage) {
  const json::value v = json::parse(error_body(error(errc::invalid_request, "regulation: must be \"gdpr\" or \"ccpa\"")));
  EXPECT_EQ(v.at("code"), 400);
  EXPECT_EQ(v.at("message"), "Invalid data was detected.");
  const json::array& errors = v.at("errors").as_array();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].at("domain"), "Validation");
  EXPECT_EQ(errors[0].at("reason"), "InvalidOperationException");
  EXPECT_EQ(errors[0].at("message"), "regulation: must be \"gdpr\" or \"ccpa\"");
}

TEST(ErrorBody, MpidRuleUsesTheMParticleReason) {
  const json::value v =
      json::parse(error_body(error(errc::invalid_request, "If an MPID is provided, it must be the only identity in the request.")));
  EXPECT_EQ(v.at("errors").at(0).at("reason"), "InvalidOperationException");
  EXPECT_EQ(v.at("errors").at(0).at("message"), "If an MPID is provided, it must be the only identity in the request.");
}

TEST(ErrorBody, OtherStatusesNameTheirOwnReasonAndDomain) {
  const json::value conflict = json::parse(error_body(error(errc::identity_conflict)));
  EXPECT_EQ(conflict.at("code"), 409);
  EXPECT_EQ(conflict.at("errors").at(0).at("reason"), "ConflictException");
  EXPECT_EQ(conflict.at("errors").at(0).at("domain"), "Validation");
  EXPECT_EQ(json::parse(error_body(error(errc::unauthorized))).at("errors").at(0).at("domain"), "Authentication");
  EXPECT_EQ(json::parse(error_body(error(errc::rate_limited))).at("errors").at(0).at("domain"), "RateLimit");
}

TEST(ErrorBody, ServerFailuresHideTheSpecificMessage) {
  const json::value v = json::parse(error_body(error(errc::storage_io, "open /var/lib/opendsr/data.mdb: Permission denied")));
  EXPECT_EQ(v.at("code"), 500);
  EXPECT_EQ(v.at("errors").at(0).at("domain"), "Server");
  EXPECT_EQ(v.at("errors").at(0).at("message"), "The storage could not be read or written.");
}

TEST(ErrorBody, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string message = "a \"quoted\" \\ path\n\ttab \x01 é";
  const std::string body = error_body(error(errc::invalid_request, message));
  EXPECT_NE(body.find(R"(a \"quoted\" \\ path\n\ttab \u0001 é)"), std::string::npos) << body;
  EXPECT_EQ(json::parse(body).at("errors").at(0).at("message"), message.c_str());
}

TEST(ErrorBody, MessageThatIsNotUtf8IsReplacedByTheSummary) {
  const std::string body = error_body(error(errc::invalid_request, "bad \xff byte"));
  EXPECT_EQ(json::parse(body).at("errors").at(0).at("message"), "Invalid data was detected.");
}

TEST(ErrorBody, WrappedFormNestsTheSameObjectUnderError) {
  const error e(errc::not_found, "subject_request_id: no such request");
  const std::string top = error_body(e);
  EXPECT_EQ(error_body(e, error_body_form::wrapped), "{\"error\":" + top + "}");
  EXPECT_EQ(json::parse(error_body(e, error_body_form::wrapped)).at("error").at("code"), 404);
}

TEST(ErrorBody, EveryErrcRendersValidJsonInBothForms) {
  for (int v = static_cast<int>(first_errc); v <= static_cast<int>(last_errc); ++v) {
    const auto e = static_cast<errc>(v);
    for (auto form : {error_body_form::top_level, error_body_form::wrapped}) {
      json::error_code ec;
      const json::value parsed = json::parse(error_body(error(e, "specific"), form), ec);
      ASSERT_FALSE(ec) << v;
      const json::value& body = form == error_body_form::wrapped ? parsed.at("error") : parsed;
      EXPECT_EQ(body.at("code"), http_status(e));
      EXPECT_EQ(body.at("message"), make_error_code(e).message().c_str());
    }
  }
}

}  // namespace
}  // namespace opendsr
