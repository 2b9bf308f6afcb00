// Black-box tests of the five distribution validation rules of seed 004 (docs/protocol.md, "The
// five distribution rules"): each POST breaking one rule gets 400 with mParticle's error body,
// {code, message, errors[{domain:"Validation", reason:"InvalidOperationException", message}]},
// whose message names the rule, and nothing is stored. The daemon interprets a configured
// extension domain, so the messages must name that one. The binaries' paths come from the
// environment (OPENDSRD, OPENDSR), set by tests/api/meson.build.
#include "daemon_process.hpp"

#include "../support/request_bodies.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <memory>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using testing::daemon_client;
using testing::daemon_process;
using testing::env_path;
using testing::make_body;
using testing::make_temp_dir;
using testing::remove_temp_dir;
using testing::uuid_v4;
using testing::workspace;

const std::string domain = "opendsr.example.com";  // the daemon's --extension-domain
const std::string extension_identities = "extensions." + domain + ".subject_identities";

// Every identity value in these tests contains this text; no response may.
const std::string secret = "SECRET";

class ValidationRules : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_FALSE(env_path("OPENDSRD").empty()) << "OPENDSRD must name the opendsrd binary";
    dir_ = make_temp_dir();
    ASSERT_NO_FATAL_FAILURE(testing::add_workspace(dir_ / "data", "3622", workspace_));
    daemon_ = std::make_unique<daemon_process>(
        dir_ / "data", std::vector<std::string>{"--test-mode", "--listen", "127.0.0.1:0", "--no-demo", "--test-start",
                                                "2026-01-05T10:00:00Z", "--extension-domain", domain, "--threads", "2"});
    port_ = daemon_->wait_ready();
    ASSERT_NE(port_, 0) << daemon_->stdout_text() << daemon_->log();
  }

  static void TearDownTestSuite() {
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
    }
    daemon_.reset();
    remove_temp_dir(dir_);
  }

  static std::string next_id() { return uuid_v4(0xa11de000 + ++serial_); }

  // make_body with its extension under the daemon's extension domain.
  static std::string body(testing::body_spec spec) {
    std::string b = make_body(spec);
    const std::string mparticle = "\"opendsr.mparticle.com\"";
    if (auto at = b.find(mparticle); at != std::string::npos) b.replace(at, mparticle.size(), "\"" + domain + "\"");
    return b;
  }

  // POSTs `spec` and expects exactly seed 004's 400 body with `message`, no signature, no echoed
  // identity value, and no request stored under the id.
  static void expect_refused(testing::body_spec spec, const std::string& message) {
    spec.id = next_id();
    const daemon_client daemon(port_);
    const wire::response r = daemon.post(body(spec), workspace_);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(r.header("Cache-Control").value_or(""), "no-store");
    EXPECT_FALSE(r.header("X-OpenDSR-Signature"));
    json::error_code ec;
    const json::value got = json::parse(r.body, ec);
    ASSERT_FALSE(ec) << r.body;
    const json::value expected = {
        {"code", 400},
        {"message", "Invalid data was detected."},
        {"errors", json::array{json::object{
                       {"domain", "Validation"}, {"reason", "InvalidOperationException"}, {"message", message}}}}};
    EXPECT_EQ(got, expected) << r.body;
    EXPECT_EQ(r.body.find(secret), std::string::npos) << r.body;
    EXPECT_EQ(daemon.get("/v3/requests/" + spec.id, &workspace_).status, 404);
  }

  static inline fs::path dir_;
  static inline std::unique_ptr<daemon_process> daemon_;
  static inline std::uint16_t port_ = 0;
  static inline workspace workspace_;
  static inline int serial_ = 0;
};

TEST_F(ValidationRules, Rule1OnlyOneMpid) {
  expect_refused({.identities = {}, .extension_identities = {{"mpid", "42"}, {"mpid", "43"}}},
                 "Only one mpid per request is allowed. Please check 'mpid' in " + extension_identities + ".");
}

TEST_F(ValidationRules, Rule2OneIdentityOfEachTypeInSubjectIdentities) {
  expect_refused({.identities = {{"email", "SECRET-1@example.com"}, {"email", "SECRET-2@example.com"}}},
                 "Only one identity of each type per request is allowed. Please check 'email' in subject_identities.");
}

TEST_F(ValidationRules, Rule3OneIdentityOfEachTypeInTheExtension) {
  expect_refused({.identities = {}, .extension_identities = {{"other", "SECRET-1"}, {"other", "SECRET-2"}}},
                 "Only one identity of each type per request is allowed. Please check 'other' in " +
                     extension_identities + ".");
}

TEST_F(ValidationRules, Rule4MpidMustBeTheOnlyIdentity) {
  expect_refused({.identities = {{"email", "SECRET@example.com"}}, .extension_identities = {{"mpid", "42"}}},
                 "If an MPID is provided, it must be the only identity in the request.");
  expect_refused({.identities = {}, .extension_identities = {{"mpid", "42"}, {"other", "SECRET"}}},
                 "If an MPID is provided, it must be the only identity in the request.");
}

TEST_F(ValidationRules, Rule5SameTypeNotAlsoInTheExtension) {
  const std::string message =
      "The same identity type may not be provided in both subject_identities and the extensions; 'email' belongs in "
      "subject_identities only. Please check 'email' in " + extension_identities + ".";
  expect_refused({.identities = {{"email", "SECRET-1@example.com"}}, .extension_identities = {{"email", "SECRET-2@example.com"}}},
                 message);
  expect_refused({.identities = {}, .extension_identities = {{"email", "SECRET@example.com"}}}, message);
}

TEST_F(ValidationRules, TheSameIdentitiesOncePerTypeAreAccepted) {
  // The control: the bodies above without the broken rule are created.
  const daemon_client daemon(port_);
  for (testing::body_spec spec : {testing::body_spec{.identities = {}, .extension_identities = {{"mpid", "42"}}},
                                  testing::body_spec{.identities = {{"email", "one@example.com"}},
                                                     .extension_identities = {{"other", "o-1"}}}}) {
    spec.id = next_id();
    const wire::response r = daemon.post(body(spec), workspace_);
    EXPECT_EQ(r.status, 201) << r.body;
  }
}

}  // namespace
}  // namespace opendsr
