// Black-box tests of distribution (issue 10): the built opendsrd in --test-mode forwards erasures
// to fake Kochava and Blueshift servers on loopback (tests/support/fake_partner.hpp), real HTTP
// both ways. Outputs are managed over /v3/outputs and with the opendsr tool; what the fakes
// received is parsed back and compared with what the request and the subject's profile hold, and
// the distribution_status entries are read from GET /v3/requests/{id}, the group listing and the
// callbacks. Time passes only when a test moves the daemon's clock. POST /admin/clock answers once
// the due batches are claimed and their requests started, so each move is followed by a bounded
// wait until their outcomes are recorded (Distribution::tick); every other wait is a bounded poll.
#include "daemon_fixture.hpp"
#include "distribution_daemon.hpp"

#include "../support/loopback_receiver.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace opendsr::testing {
namespace {

using namespace std::chrono_literals;
using id_set = std::set<std::pair<std::string, std::string>>;

const std::string kochava_key = "kochava-key-6f1e2d3c4b5a";
const std::string blueshift_key = "blueshift-user-9a8b7c6d5e4f";
const std::string scrub_target = "/accounts/1234/apps/5678/privacy/scrub";
const std::string delete_target = "/api/v1/customers/delete";

// Device ids of test subject n: an IDFA as iOS writes it (upper case) and an ADID (lower case).
std::string idfa(std::uint64_t n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "EA7583CD-A667-48BC-%04X-%012llX", static_cast<unsigned>(n >> 48 & 0xffff),
                static_cast<unsigned long long>(n & 0xffffffffffffULL));
  return buf;
}
std::string adid(std::uint64_t n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "38400000-8cf0-11bd-%04x-%012llx", static_cast<unsigned>(n >> 48 & 0xffff),
                static_cast<unsigned long long>(n & 0xffffffffffffULL));
  return buf;
}

class Distribution : public daemon_fixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(daemon_fixture::SetUp());
    kochava_ = start_partner(kochava_ok());
    blueshift_ = start_partner(blueshift_ok());
    ASSERT_TRUE(kochava_ && blueshift_);
  }
  void TearDown() override {
    daemon_.reset();  // SIGKILL, if still running
    kochava_.reset();
    blueshift_.reset();
    daemon_fixture::TearDown();
  }

  static std::unique_ptr<fake_partner> start_partner(scripted_response standing) {
    auto p = fake_partner::start({.standing = std::move(standing)});
    EXPECT_TRUE(p) << p.error().message();
    return p ? std::move(*p) : nullptr;
  }

  // Starts opendsrd (test mode, no demo workspace, no rate limit: the tests poll). Its clock
  // starts at fulfilment_test_start, a Monday evening.
  void start(std::vector<std::string> flags = {}, std::string at = fulfilment_test_start) {
    flags.insert(flags.begin(), {"--no-demo", "--calls-per-minute", "0"});
    ASSERT_NO_FATAL_FAILURE(start_daemon(std::move(flags), std::move(at)));
    outputs_ = std::make_unique<outputs_client>(daemon_->port(), demo_);
    received_at_start_ = kochava_->count() + blueshift_->count();  // the daemon's counters start at 0
  }
  // Both outputs, each at its fake.
  void start_with_both_outputs(std::vector<std::string> flags = {}) {
    ASSERT_NO_FATAL_FAILURE(start(std::move(flags)));
    ASSERT_NO_FATAL_FAILURE(add(kochava_output("kochava-main", kochava_->url())));
    ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url())));
  }
  void add(const output_spec& s) {
    auto r = outputs_->add(s);
    ASSERT_EQ(r.status, 201) << r.body;
  }
  void import(const std::string& lines) {
    auto r = daemon_->import(lines, demo_);
    ASSERT_EQ(r.status, 200) << r.body;
  }

  // Submits a request of the demo workspace; returns its id ("" and a failure if refused).
  std::string submit(body_spec spec) {
    if (spec.id.empty()) spec.id = request_id(0xd157, ++serial_);
    auto r = daemon_->api().post(make_body(spec), demo_);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? spec.id : std::string();
  }
  std::string erasure(std::vector<std::pair<std::string, std::string>> identities) {
    return submit({.type = "erasure", .identities = std::move(identities)});
  }

  // Moves the daemon's clock by `seconds` and settles: due work runs (the route answers once the
  // due partner batches are claimed and their requests started), then a bounded wait until no
  // batch is in flight and every request the fakes received has its outcome recorded. The clock
  // must not move while a send is unrecorded: a jump past its lease would send it again.
  void tick(std::uint64_t seconds) {
    daemon_->advance(seconds);
    settle();
  }
  void settle() {
    const auto api = daemon_->api();
    const bool settled = eventually(
        [&] {
          return metric(api, "opendsr_forwards_in_flight") == 0 &&
                 recorded_forward_outcomes(api) ==
                     static_cast<double>(kochava_->count() + blueshift_->count() - received_at_start_);
        },
        15s);
    EXPECT_TRUE(settled) << "in flight " << metric(api, "opendsr_forwards_in_flight") << ", recorded "
                         << recorded_forward_outcomes(api) << ", received " << kochava_->count() + blueshift_->count();
  }

  daemon_client api() const { return daemon_->api(); }
  std::vector<entry_view> entries(const std::string& id) {
    auto e = entries_of(api(), id, demo_);
    EXPECT_TRUE(e.has_value()) << "extensions is null for erasure " << id;
    return e.value_or(std::vector<entry_view>{});
  }
  std::string status(const std::string& id, std::string_view output) { return entry_status(api(), id, demo_, output); }
  // Bounded poll: output's entry for `id` reaches `expected`.
  bool reaches(const std::string& id, std::string_view output, std::string_view expected) {
    return eventually([&] { return status(id, output) == expected; }, 10s);
  }

  std::unique_ptr<outputs_client> outputs_;
  std::unique_ptr<fake_partner> kochava_, blueshift_;
  std::uint64_t serial_ = 0;
  std::size_t received_at_start_ = 0;
};

// Every request a fake received: target and body, one a line (for failure messages).
std::string sent_bodies(const fake_partner& p) {
  std::string out;
  for (const auto& r : p.requests()) out += "\n#" + std::to_string(r.sequence) + " " + r.method + " " + r.target + " " + r.body;
  return out;
}

// A profile line of the subject store (docs/import.md).
std::string profile_line(int mpid, const std::vector<std::pair<std::string, std::string>>& identities) {
  json::object ids;
  for (const auto& [type, value] : identities) ids[type] = value;
  json::object line;
  line["mpid"] = std::to_string(mpid);
  line["identities"] = ids;
  line["attributes"] = json::object{{"note", "profile " + std::to_string(mpid)}};
  return json::serialize(line) + "\n";
}

TEST_F(Distribution, EnrichmentSendsBlueshiftTheCustomerIdAndEmailAndKochavaOnlyTheDeviceIds) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  const std::string email = "ana.enrich-5d1f@example.com", customer = "cust-enrich-5d1f";
  const std::string ios = "EA7583CD-A667-48BC-B806-42ECB2B48606", android = "38400000-8cf0-11bd-b23e-10b96e40000d";
  ASSERT_NO_FATAL_FAILURE(import(profile_line(901, {{"email", email},
                                                    {"controller_customer_id", customer},
                                                    {"ios_advertising_id", ios},
                                                    {"android_advertising_id", android}}) +
                                 profile_line(902, {{"email", "bo-other-5d1f@example.com"},
                                                    {"controller_customer_id", "cust-other-5d1f"},
                                                    {"ios_advertising_id", "FFFFFFFF-0000-48BC-B806-000000000902"}})));

  // The request names the customer id only (an email alone does not reach a profile that holds
  // a customer id): the profile adds the email and both device ids.
  const std::string id = submit({.identities = {{"controller_customer_id", customer}}, .group_id = "enrich-5d1f"});
  {
    auto at_receipt = entries(id);
    ASSERT_EQ(at_receipt.size(), 2u) << describe(at_receipt);
    // One entry per output, in name order.
    EXPECT_EQ(at_receipt[0].name, "blueshift-main");
    EXPECT_EQ(at_receipt[0].domain, "blueshift.com");
    EXPECT_EQ(at_receipt[1].name, "kochava-main");
    EXPECT_EQ(at_receipt[1].domain, "kochava.com");
    EXPECT_EQ(at_receipt[1].status, "pending") << describe(at_receipt);
  }

  // Blueshift: at once.
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "blueshift-main", "sent")) << describe(entries(id));
  EXPECT_EQ(status(id, "kochava-main"), "pending");
  EXPECT_EQ(kochava_->count(), 0u) << "Kochava batches for an hour";
  {
    auto got = blueshift_->requests();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].method, "POST");
    EXPECT_EQ(got[0].target, delete_target);
    EXPECT_EQ(header_of(got[0], "Authorization"), blueshift_authorization(blueshift_key));
    EXPECT_NE(header_of(got[0], "Content-Type").find("application/json"), std::string::npos);
    auto body = blueshift_body(got[0].body);
    EXPECT_EQ(body.customer_id, customer) << got[0].body;
    EXPECT_EQ(body.email, email) << got[0].body;
    for (const auto& v : {ios, android, std::string("5d1f@example.com\"x")})
      EXPECT_EQ(got[0].body.find(v), std::string::npos) << v << " sent to Blueshift: " << got[0].body;
    EXPECT_EQ(got[0].body.find("other-5d1f"), std::string::npos) << "another profile's identity: " << got[0].body;
  }

  // Kochava: one hour after the forward was queued.
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "kochava-main", "sent")) << describe(entries(id));
  {
    auto got = kochava_->requests();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].method, "POST");
    EXPECT_EQ(got[0].target, scrub_target);
    EXPECT_EQ(header_of(got[0], "Authentication-Key"), kochava_key);
    EXPECT_NE(header_of(got[0], "Content-Type").find("application/json"), std::string::npos);
    auto ids = device_ids(got[0].body);
    EXPECT_EQ(id_set(ids.begin(), ids.end()), (id_set{{"idfa", ios}, {"adid", android}})) << got[0].body;
    EXPECT_EQ(ids.size(), 2u) << got[0].body;
    // Never the email or the customer id (partners.md §3.1).
    for (const auto& v : {email, customer, std::string("cust-"), std::string("@example.com")})
      EXPECT_EQ(got[0].body.find(v), std::string::npos) << v << " sent to Kochava: " << got[0].body;
    EXPECT_EQ(got[0].body.find("FFFFFFFF-0000"), std::string::npos) << "another profile's IDFA: " << got[0].body;
  }
  EXPECT_EQ(blueshift_->count(), 1u);

  // GET and the group listing agree.
  const json::value doc = status_document(api(), id, demo_);
  auto listing = api().get("/v3/requests?group_id=enrich-5d1f", &demo_);
  ASSERT_EQ(listing.status, 200) << listing.body;
  const json::value group = parse_json(listing.body);
  ASSERT_TRUE(group.is_array() && group.as_array().size() == 1) << listing.body;
  EXPECT_EQ(group.as_array()[0].as_object().at("extensions"), doc.as_object().at("extensions")) << listing.body;
  auto final_entries = distribution_of(doc).value_or(std::vector<entry_view>{});
  ASSERT_EQ(final_entries.size(), 2u);
  for (const auto& e : final_entries) EXPECT_EQ(e.status, "sent") << describe(final_entries);

  // Credentials are never logged, nor listed.
  const std::string log = daemon_->process().log();
  EXPECT_EQ(log.find(kochava_key), std::string::npos);
  EXPECT_EQ(log.find(blueshift_key), std::string::npos);
  const std::string listed = outputs_->list_raw().body;
  EXPECT_EQ(listed.find(kochava_key), std::string::npos) << listed;
  EXPECT_EQ(listed.find(blueshift_key), std::string::npos) << listed;
}

// Where the request and its profile disagree on a type, the request's value is forwarded and the
// profile's is not (partners.md §1: the request wins); types only the profile has are added.
TEST_F(Distribution, TheRequestWinsOverItsProfileOnConflict) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  const std::string stored_idfa = "11111111-AAAA-4000-8000-000000000001", given_idfa = "22222222-BBBB-4000-8000-000000000002";
  const std::string stored_adid = "33333333-cccc-4000-8000-000000000003";
  ASSERT_NO_FATAL_FAILURE(import(profile_line(960, {{"controller_customer_id", "cust-conflict-960"},
                                                    {"email", "old-address-960@example.com"},
                                                    {"ios_advertising_id", stored_idfa},
                                                    {"android_advertising_id", stored_adid}})));
  const std::string id = erasure({{"controller_customer_id", "cust-conflict-960"},
                                  {"email", "new-address-960@example.com"},
                                  {"ios_advertising_id", given_idfa}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  auto sent = blueshift_body(blueshift_->requests()[0].body);
  EXPECT_EQ(sent.customer_id, "cust-conflict-960");
  EXPECT_EQ(sent.email, "new-address-960@example.com") << blueshift_->requests()[0].body;
  EXPECT_EQ(blueshift_->requests()[0].body.find("old-address"), std::string::npos) << blueshift_->requests()[0].body;
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1));
  auto ids = device_ids(kochava_->requests()[0].body);
  EXPECT_EQ(id_set(ids.begin(), ids.end()), (id_set{{"idfa", given_idfa}, {"adid", stored_adid}})) << kochava_->requests()[0].body;
  EXPECT_TRUE(reaches(id, "kochava-main", "sent")) << describe(entries(id));
}

TEST_F(Distribution, AnMpidForwardsItsProfilesIdentities) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  const std::string email = "mpid-subject-77aa@example.com", ios = "AB12CD34-0000-4000-8000-0000000077AA";
  ASSERT_NO_FATAL_FAILURE(import(profile_line(7701, {{"email", email}, {"ios_advertising_id", ios}})));
  const std::string id = submit({.identities = {}, .extension_identities = {{"mpid", "7701"}}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  auto sent = blueshift_body(blueshift_->requests()[0].body);
  EXPECT_EQ(sent.email, email);
  EXPECT_EQ(sent.customer_id, "");
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1));
  auto ids = device_ids(kochava_->requests()[0].body);
  EXPECT_EQ(id_set(ids.begin(), ids.end()), (id_set{{"idfa", ios}}));
  EXPECT_TRUE(reaches(id, "kochava-main", "sent")) << describe(entries(id));
  EXPECT_EQ(status(id, "blueshift-main"), "sent");
}

// The opendsr tool manages outputs through the running daemon: credentials go in (one from the
// environment), come back masked, and are never printed; an inactive output takes no new erasure.
TEST_F(Distribution, TheToolAddsListsDeactivatesAndRemovesOutputsShowingCredentialsMasked) {
  ASSERT_FALSE(env_path("OPENDSR").empty()) << "OPENDSR must name the opendsr binary";
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string tool = env_path("OPENDSR") + " output";
  const std::string daemon = " --url http://127.0.0.1:" + std::to_string(daemon_->port()) + " --api-key " + demo_.api_key +
                             " --api-secret " + demo_.secret;
  const std::string cli_kochava_key = "cli-kochava-key-0a1b2c3d", cli_blueshift_key = "cli-blueshift-key-9z8y7x6w";
  auto [add_k, add_k_out] = run(tool + " add kochava-cli" + daemon + " --partner kochava --set account_id=1234 --set app_id=5678" +
                                " --credential api_key=" + cli_kochava_key + " --endpoint " + kochava_->url() + " 2>&1");
  ASSERT_EQ(add_k, 0) << add_k_out;
  auto [add_b, add_b_out] = run("CLI_BLUESHIFT_KEY=" + cli_blueshift_key + " " + tool + " add blueshift-cli" + daemon +
                                " --partner blueshift --set region=us --set mode=delete --credential user_api_key=@env:CLI_BLUESHIFT_KEY" +
                                " --endpoint " + blueshift_->url() + " 2>&1");
  ASSERT_EQ(add_b, 0) << add_b_out;
  auto [listed, list_out] = run(tool + " list" + daemon + " 2>&1");
  ASSERT_EQ(listed, 0) << list_out;
  for (const auto& out : {add_k_out, add_b_out, list_out}) {
    EXPECT_EQ(out.find(cli_kochava_key), std::string::npos) << out;
    EXPECT_EQ(out.find(cli_blueshift_key), std::string::npos) << out;
    EXPECT_EQ(out.find(demo_.secret), std::string::npos) << out;
  }
  EXPECT_NE(list_out.find("kochava-cli"), std::string::npos) << list_out;
  EXPECT_NE(list_out.find("blueshift-cli"), std::string::npos) << list_out;
  EXPECT_NE(list_out.find("****" + cli_kochava_key.substr(cli_kochava_key.size() - 4)), std::string::npos) << list_out;
  EXPECT_NE(list_out.find("****" + cli_blueshift_key.substr(cli_blueshift_key.size() - 4)), std::string::npos) << list_out;
  // The route shows the same masks.
  EXPECT_EQ(outputs_->named("kochava-cli").at("credentials"),
            json::value(json::object{{"api_key", "****" + cli_kochava_key.substr(cli_kochava_key.size() - 4)}}));

  // Deactivated, Blueshift takes no new erasure (it has no entry); Kochava still does.
  auto [off, off_out] = run(tool + " deactivate blueshift-cli" + daemon + " 2>&1");
  ASSERT_EQ(off, 0) << off_out;
  const std::string while_off = erasure({{"email", "cli-off@example.com"}, {"ios_advertising_id", idfa(33)}});
  {
    auto e = entries(while_off);
    EXPECT_FALSE(entry_named(e, "blueshift-cli")) << describe(e);
    EXPECT_TRUE(entry_named(e, "kochava-cli")) << describe(e);
  }
  auto [on, on_out] = run(tool + " activate blueshift-cli" + daemon + " 2>&1");
  ASSERT_EQ(on, 0) << on_out;
  const std::string while_on = erasure({{"email", "cli-on@example.com"}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  EXPECT_TRUE(reaches(while_on, "blueshift-cli", "sent")) << describe(entries(while_on));
  EXPECT_EQ(header_of(blueshift_->requests()[0], "Authorization"), blueshift_authorization(cli_blueshift_key));
  EXPECT_EQ(blueshift_body(blueshift_->requests()[0].body).email, "cli-on@example.com");
  EXPECT_EQ(blueshift_->count(), 1u) << "the erasure made while it was inactive was forwarded";

  auto [removed, removed_out] = run(tool + " remove blueshift-cli" + daemon + " 2>&1");
  ASSERT_EQ(removed, 0) << removed_out;
  auto [listed_after, after_out] = run(tool + " list" + daemon + " 2>&1");
  ASSERT_EQ(listed_after, 0) << after_out;
  EXPECT_EQ(after_out.find("blueshift-cli"), std::string::npos) << after_out;
  EXPECT_NE(after_out.find("kochava-cli"), std::string::npos) << after_out;
  EXPECT_EQ(daemon_->process().log().find(cli_kochava_key), std::string::npos);
  EXPECT_EQ(daemon_->process().log().find(cli_blueshift_key), std::string::npos);
}

TEST_F(Distribution, TenThousandQueuedIdsFlushOneKochavaBatchAndFewerFlushAfterAnHour) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(kochava_output("kochava-bulk", kochava_->url())));

  // 5,000 erasures of two device ids each: 10,000 ids, Kochava's default batch_max.
  constexpr std::uint64_t subjects = 5'000;
  std::vector<std::string> bodies, ids;
  id_set expected;
  for (std::uint64_t n = 1; n <= subjects; ++n) {
    ids.push_back(request_id(0xb01c, n));
    bodies.push_back(make_body({.id = ids.back(), .identities = {{"ios_advertising_id", idfa(n)}, {"android_advertising_id", adid(n)}}}));
    expected.insert({"idfa", idfa(n)});
    expected.insert({"adid", adid(n)});
  }
  const auto statuses = post_all(daemon_->port(), demo_, bodies);
  ASSERT_EQ(std::count(statuses.begin(), statuses.end(), 201), static_cast<std::ptrdiff_t>(subjects));

  // A tick, nowhere near the hour: the full batch goes out, in one request.
  tick(1);
  ASSERT_TRUE(kochava_->wait_for(1, 30s)) << daemon_->process().log();
  tick(1);
  auto got = kochava_->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, scrub_target);
  auto sent = device_ids(got[0].body);
  EXPECT_EQ(sent.size(), 10'000u);
  EXPECT_TRUE(id_set(sent.begin(), sent.end()) == expected) << "the batch is not the 10,000 ids queued";
  for (std::size_t i = 0; i < ids.size(); i += 1 + (i % 7)) ASSERT_TRUE(reaches(ids[i], "kochava-bulk", "sent")) << i;
  EXPECT_TRUE(reaches(ids.back(), "kochava-bulk", "sent"));

  // Three more (six ids): not before an hour after they were queued, then one batch of six.
  std::vector<std::string> few;
  id_set few_expected;
  for (std::uint64_t n = subjects + 1; n <= subjects + 3; ++n) {
    few.push_back(erasure({{"ios_advertising_id", idfa(n)}, {"android_advertising_id", adid(n)}}));
    few_expected.insert({{"idfa", idfa(n)}, {"adid", adid(n)}});
  }
  tick(1);
  tick(3598);
  EXPECT_EQ(kochava_->count(), 1u) << "flushed before the hour";
  for (const auto& id : few) EXPECT_EQ(status(id, "kochava-bulk"), "pending");
  tick(1);  // the hour
  ASSERT_TRUE(kochava_->wait_for(2)) << daemon_->process().log();
  got = kochava_->requests();
  ASSERT_EQ(got.size(), 2u);
  sent = device_ids(got[1].body);
  EXPECT_EQ(sent.size(), 6u) << got[1].body;
  EXPECT_EQ(id_set(sent.begin(), sent.end()), few_expected) << got[1].body;
  for (const auto& id : few) EXPECT_TRUE(reaches(id, "kochava-bulk", "sent")) << describe(entries(id));
}

TEST_F(Distribution, ACredentialFailureFailsThatOutputAndOpensItsCircuitWhileTheOtherIsSent) {
  blueshift_->set_standing(partner_answer(401, R"({"message":"Not authorized"})"));
  const std::string wrong_key = "blueshift-wrong-1f2e3d4c5b6a";
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(kochava_output("kochava-main", kochava_->url())));
  ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url(), wrong_key)));
  EXPECT_FALSE(outputs_->circuit_open("blueshift-main"));

  const std::string first = erasure({{"controller_customer_id", "cust-401-a"}, {"email", "a-401@example.com"}, {"ios_advertising_id", idfa(401)}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  ASSERT_TRUE(reaches(first, "blueshift-main", "failed")) << describe(entries(first));
  {
    auto e = entry_named(entries(first), "blueshift-main");
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->message.has_value()) << "a failed entry says why";
    EXPECT_FALSE(e->message->empty());
    EXPECT_EQ(e->message->find(wrong_key), std::string::npos) << *e->message;
  }
  EXPECT_EQ(status(first, "kochava-main"), "pending");

  // The circuit: open for Blueshift, with its reason; Kochava's closed.
  {
    auto b = outputs_->named("blueshift-main");
    EXPECT_TRUE(outputs_->circuit_open("blueshift-main")) << json::serialize(b);
    auto* reason = b.if_contains("circuit_reason");
    ASSERT_TRUE(reason && reason->is_string()) << json::serialize(b);
    EXPECT_NE(std::string(reason->as_string()).find("401"), std::string::npos) << json::serialize(b);
    EXPECT_FALSE(outputs_->circuit_open("kochava-main"));
    EXPECT_EQ(b.at("dead_batches"), json::value(1)) << json::serialize(b);
    // And in /metrics.
    const std::string metrics = api().get("/metrics", nullptr).body;
    EXPECT_NE(metrics.find(R"(opendsr_forward_output_circuit_open{workspace="demo",output="blueshift-main"} 1)"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find(R"(opendsr_forward_output_circuit_open{workspace="demo",output="kochava-main"} 0)"), std::string::npos)
        << metrics;
  }

  // Kochava goes on.
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1));
  EXPECT_TRUE(reaches(first, "kochava-main", "sent")) << describe(entries(first));

  // While the circuit is open nothing more goes to Blueshift: the next erasure waits.
  const std::string second = erasure({{"controller_customer_id", "cust-401-b"}, {"email", "b-401@example.com"}});
  tick(1);
  tick(60);
  EXPECT_EQ(blueshift_->count(), 1u) << "sent through an open circuit";
  EXPECT_EQ(status(second, "blueshift-main"), "pending");

  // A configuration change closes it; the waiting erasure goes out with the new key.
  blueshift_->set_standing(blueshift_ok());
  const std::string right_key = "blueshift-right-6a5b4c3d2e1f";
  auto patched = outputs_->update("blueshift-main", R"({"credentials":{"user_api_key":")" + right_key + "\"}}");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.body.find(right_key), std::string::npos) << "the credential is returned: " << patched.body;
  EXPECT_FALSE(outputs_->circuit_open("blueshift-main"));
  EXPECT_NE(api().get("/metrics", nullptr).body.find(R"(opendsr_forward_output_circuit_open{workspace="demo",output="blueshift-main"} 0)"),
            std::string::npos);
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(2)) << daemon_->process().log();
  EXPECT_TRUE(reaches(second, "blueshift-main", "sent")) << describe(entries(second));
  auto got = blueshift_->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(header_of(got[1], "Authorization"), blueshift_authorization(right_key));
  EXPECT_EQ(blueshift_body(got[1].body).customer_id, "cust-401-b");
  // The failed entry stays failed (its batch is a dead letter, re-driven only when asked).
  EXPECT_EQ(status(first, "blueshift-main"), "failed");
  EXPECT_EQ(daemon_->process().log().find(wrong_key), std::string::npos);
  EXPECT_EQ(daemon_->process().log().find(right_key), std::string::npos);
}

// A dead batch (a 401) is listed by opendsr forwards dead and, once the output's configuration
// is fixed, re-driven by opendsr forwards redrive on the stopped daemon's store: its request goes
// back to pending and is sent.
TEST_F(Distribution, ADeadBatchIsListedAndRedrivenByTheTool) {
  blueshift_->set_standing(partner_answer(403, R"({"message":"Permission denied"})"));
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url(), "blueshift-stale-aa11bb22cc33")));
  const std::string id = erasure({{"email", "redrive-me@example.com"}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  ASSERT_EQ(status(id, "blueshift-main"), "failed") << describe(entries(id));
  EXPECT_TRUE(outputs_->circuit_open("blueshift-main"));
  blueshift_->set_standing(blueshift_ok());
  ASSERT_EQ(outputs_->update("blueshift-main", R"({"credentials":{"user_api_key":"blueshift-fresh-dd44ee55ff66"}})").status, 200);
  const std::string now = daemon_->advance(0);
  ASSERT_FALSE(now.empty());
  EXPECT_EQ(status(id, "blueshift-main"), "failed") << "re-driven without being asked";
  ASSERT_EQ(daemon_->process().stop(SIGTERM), 0) << daemon_->process().log();

  const std::string tool = env_path("OPENDSR") + " forwards";
  const std::string store = " --data-dir " + data_.string();
  auto [listed, dead] = run(tool + " dead" + store + " 2>&1");
  ASSERT_EQ(listed, 0) << dead;
  EXPECT_NE(dead.find("blueshift-main"), std::string::npos) << dead;
  EXPECT_NE(dead.find(id), std::string::npos) << dead;
  EXPECT_NE(dead.find("403"), std::string::npos) << dead;
  EXPECT_EQ(dead.find("redrive-me@example.com"), std::string::npos) << dead;
  EXPECT_EQ(dead.find("blueshift-stale-aa11bb22cc33"), std::string::npos) << dead;
  // Due at the daemon's (test) time.
  auto [redriven, redrive_out] = run(tool + " redrive" + store + " --workspace demo --output blueshift-main --at " + now + " 2>&1");
  ASSERT_EQ(redriven, 0) << redrive_out;
  EXPECT_NE(redrive_out.find("requeued 1 "), std::string::npos) << redrive_out;

  ASSERT_NO_FATAL_FAILURE(start({}, now));
  EXPECT_EQ(status(id, "blueshift-main"), "pending");
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(2)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "blueshift-main", "sent")) << describe(entries(id));
  EXPECT_EQ(header_of(blueshift_->requests()[1], "Authorization"), blueshift_authorization("blueshift-fresh-dd44ee55ff66"));
  EXPECT_EQ(blueshift_body(blueshift_->requests()[1].body).email, "redrive-me@example.com");
  EXPECT_EQ(outputs_->named("blueshift-main").at("dead_batches"), json::value(0));
}

TEST_F(Distribution, ARequestWithNoSupportedIdentityIsSkippedWithAMessage) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  // A customer id on a profile without device ids: Blueshift gets it, Kochava has nothing.
  ASSERT_NO_FATAL_FAILURE(import(profile_line(930, {{"controller_customer_id", "cust-skip-930"}, {"android_id", "a1b2c3d4e5f60930"}})));
  const std::string none = erasure({{"android_id", "a1b2c3d4e5f60718"}});
  const std::string phone = submit({.identities = {{"roku_publisher_id", "roku-skip-1"}}, .extension_identities = {{"mobile_number", "+15551230000"}}});
  const std::string unresolved_mpid = submit({.identities = {}, .extension_identities = {{"mpid", "424242"}}});
  const std::string half = erasure({{"controller_customer_id", "cust-skip-930"}});

  // Skipped at once, each with a status_message.
  for (const auto& id : {none, phone, unresolved_mpid}) {
    auto e = entries(id);
    ASSERT_EQ(e.size(), 2u) << describe(e);
    for (const auto& entry : e) {
      EXPECT_EQ(entry.status, "skipped") << id << describe(e);
      EXPECT_TRUE(entry.message && !entry.message->empty()) << id << describe(e);
    }
  }
  {
    auto k = entry_named(entries(half), "kochava-main");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->status, "skipped");
    EXPECT_TRUE(k->message && !k->message->empty()) << describe(entries(half));
  }

  tick(1);
  tick(3600);
  // Only the customer id went anywhere: to Blueshift.
  ASSERT_TRUE(blueshift_->wait_for(1));
  EXPECT_EQ(blueshift_->count(), 1u);
  EXPECT_EQ(blueshift_body(blueshift_->requests()[0].body).customer_id, "cust-skip-930");
  EXPECT_EQ(kochava_->count(), 0u);
  EXPECT_EQ(status(half, "blueshift-main"), "sent");
  for (const auto& id : {none, phone, unresolved_mpid})
    for (const auto& entry : entries(id)) EXPECT_EQ(entry.status, "skipped") << describe(entries(id));
}

TEST_F(Distribution, AccessAndPortabilityHaveNullExtensionsAndCauseNoPartnerTraffic) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  ASSERT_NO_FATAL_FAILURE(import(profile_line(950, {{"controller_customer_id", "cust-access-950"},
                                                    {"email", "access-950@example.com"},
                                                    {"ios_advertising_id", idfa(950)}})));
  const std::vector<std::pair<std::string, std::string>> who = {{"controller_customer_id", "cust-access-950"},
                                                                {"email", "access-950@example.com"},
                                                                {"ios_advertising_id", idfa(950)}};
  const std::string access = submit({.type = "access", .identities = who, .group_id = "no-forward"});
  const std::string portability = submit({.type = "portability", .identities = who, .group_id = "no-forward"});
  for (const auto& id : {access, portability}) EXPECT_FALSE(entries_of(api(), id, demo_).has_value()) << id;

  tick(1);
  tick(3600);
  daemon_->set("2021-12-02T00:00:00Z");  // Thursday: both are fulfilled
  for (const auto& id : {access, portability}) {
    EXPECT_EQ(daemon_->status_of(id, demo_), "completed");
    EXPECT_FALSE(entries_of(api(), id, demo_).has_value()) << id;
  }
  auto listing = api().get("/v3/requests?group_id=no-forward", &demo_);
  ASSERT_EQ(listing.status, 200) << listing.body;
  const json::value group = parse_json(listing.body);
  ASSERT_TRUE(group.is_array() && group.as_array().size() == 2) << listing.body;
  for (const auto& member : group.as_array()) EXPECT_TRUE(member.as_object().at("extensions").is_null()) << listing.body;
  EXPECT_EQ(kochava_->count(), 0u);
  EXPECT_EQ(blueshift_->count(), 0u);

  // The same subject's erasure is forwarded: the silence above was not a broken path.
  const std::string erased = erasure(who);
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  EXPECT_TRUE(reaches(erased, "blueshift-main", "sent"));
}

TEST_F(Distribution, ACancelLeavesSentEntriesSentAndQueuedForwardsStillGoOut) {
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  const std::string early = erasure({{"controller_customer_id", "cust-cancel-1"}, {"ios_advertising_id", idfa(61)}});
  tick(1);
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1) && blueshift_->wait_for(1));
  ASSERT_TRUE(reaches(early, "kochava-main", "sent") && reaches(early, "blueshift-main", "sent")) << describe(entries(early));
  auto cancelled = api().cancel(early, demo_);
  ASSERT_EQ(cancelled.status, 202) << cancelled.body;
  EXPECT_EQ(daemon_->status_of(early, demo_), "cancelled");
  for (const auto& e : entries(early)) EXPECT_EQ(e.status, "sent") << describe(entries(early));

  // Cancelled while its Kochava forward is queued: the forward still goes out.
  const std::string late = erasure({{"controller_customer_id", "cust-cancel-2"}, {"ios_advertising_id", idfa(62)}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(2));
  ASSERT_TRUE(reaches(late, "blueshift-main", "sent"));
  ASSERT_EQ(api().cancel(late, demo_).status, 202);
  EXPECT_EQ(status(late, "kochava-main"), "pending");
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(2)) << daemon_->process().log();
  auto ids = device_ids(kochava_->requests()[1].body);
  EXPECT_EQ(id_set(ids.begin(), ids.end()), (id_set{{"idfa", idfa(62)}}));
  EXPECT_TRUE(reaches(late, "kochava-main", "sent")) << describe(entries(late));
  EXPECT_EQ(status(late, "blueshift-main"), "sent");
  EXPECT_EQ(daemon_->status_of(late, demo_), "cancelled");
  tick(7200);
  EXPECT_EQ(kochava_->count(), 2u);
  EXPECT_EQ(blueshift_->count(), 2u) << sent_bodies(*blueshift_);
}

TEST_F(Distribution, CallbacksCarryTheSameExtensionsAsGet) {
  auto receiver = loopback_receiver::start();
  ASSERT_TRUE(receiver) << receiver.error().message();
  ASSERT_NO_FATAL_FAILURE(start_with_both_outputs());
  const std::string url = (*receiver)->url("/cb");
  const std::string id = submit({.identities = {{"controller_customer_id", "cust-callback-1"}, {"ios_advertising_id", idfa(71)}},
                                 .callback_urls = {url}});
  // Callbacks are flushed at the next whole minute; a delivery leaves the queue once recorded,
  // and the clock moves on only then (a jump past its lease would send it again).
  const auto callbacks_flushed = [&] {
    tick(60);
    EXPECT_TRUE(eventually([&] { return metric(api(), "opendsr_callbacks_queued") == 0; }, 10s))
        << metric(api(), "opendsr_callbacks_queued");
  };
  tick(1);  // Blueshift: sent
  ASSERT_TRUE(reaches(id, "blueshift-main", "sent"));
  callbacks_flushed();
  ASSERT_TRUE((*receiver)->wait_for(1, 10s));
  tick(3600);  // Kochava: sent
  ASSERT_TRUE(reaches(id, "kochava-main", "sent"));
  callbacks_flushed();

  const json::value doc = status_document(api(), id, demo_);
  const json::value& extensions = doc.as_object().at("extensions");
  // Bounded: the callback announcing the last change arrives.
  std::vector<json::value> bodies;
  const bool final_seen = eventually(
      [&] {
        bodies.clear();
        bool seen = false;
        for (const auto& r : (*receiver)->requests()) {
          bodies.push_back(parse_json(r.body));
          if (bodies.back().is_object() && bodies.back().as_object().if_contains("extensions") &&
              bodies.back().as_object().at("extensions") == extensions)
            seen = true;
        }
        return seen;
      },
      10s);
  std::string all;
  for (const auto& b : bodies) all += json::serialize(b) + "\n";
  EXPECT_TRUE(final_seen) << "no callback carries GET's extensions " << json::serialize(extensions) << "\ncallbacks:\n" << all;
  // Every callback of the request carries its entries; one shows Blueshift sent while Kochava
  // waits for its batch.
  bool intermediate = false;
  for (const auto& b : bodies) {
    ASSERT_TRUE(b.is_object()) << all;
    EXPECT_EQ(json_string_of(json::serialize(b), "subject_request_id"), id);
    auto e = distribution_of(b);
    ASSERT_TRUE(e.has_value()) << "a callback with null extensions: " << all;
    auto k = entry_named(*e, "kochava-main"), bs = entry_named(*e, "blueshift-main");
    ASSERT_TRUE(k && bs) << describe(*e);
    if (bs->status == "sent" && k->status == "pending") intermediate = true;
  }
  EXPECT_TRUE(intermediate) << all;
  // The last callback delivered is the final state.
  ASSERT_FALSE(bodies.empty());
  EXPECT_EQ(bodies.back().as_object().at("extensions"), extensions) << all;
}

TEST_F(Distribution, A413SplitsAKochavaBatchInHalvesAndEveryEntryIsSent) {
  kochava_->respond_any(partner_answer(413, R"({"error":"too large"})"));
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(kochava_output("kochava-main", kochava_->url())));
  std::vector<std::string> ids;
  id_set expected;
  for (std::uint64_t n = 81; n <= 84; ++n) {
    ids.push_back(erasure({{"ios_advertising_id", idfa(n)}}));
    expected.insert({"idfa", idfa(n)});
  }
  tick(3601);
  // The halves go out (bounded: a tick or two).
  for (int i = 0; i < 5 && kochava_->count() < 3; ++i) tick(1);
  ASSERT_TRUE(kochava_->wait_for(3)) << kochava_->count() << "\n" << daemon_->process().log();
  auto got = kochava_->requests();
  ASSERT_EQ(got.size(), 3u);
  auto whole = device_ids(got[0].body), a = device_ids(got[1].body), b = device_ids(got[2].body);
  EXPECT_EQ(id_set(whole.begin(), whole.end()), expected);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(b.size(), 2u);
  id_set halves(a.begin(), a.end());
  halves.insert(b.begin(), b.end());
  EXPECT_EQ(halves, expected);
  for (const auto& id : ids) EXPECT_TRUE(reaches(id, "kochava-main", "sent")) << describe(entries(id));
}

TEST_F(Distribution, A429WithRetryAfterIsResentNoSoonerThanItSays) {
  kochava_->respond_any(retry_after_answer(120));
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(kochava_output("kochava-main", kochava_->url())));
  const std::string id = erasure({{"ios_advertising_id", idfa(429)}});
  tick(3600);
  ASSERT_TRUE(kochava_->wait_for(1));
  EXPECT_EQ(status(id, "kochava-main"), "pending");
  tick(119);
  EXPECT_EQ(kochava_->count(), 1u) << "resent before Retry-After";
  EXPECT_EQ(status(id, "kochava-main"), "pending");
  tick(1);
  ASSERT_TRUE(kochava_->wait_for(2)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "kochava-main", "sent")) << describe(entries(id));
  auto got = kochava_->requests();
  EXPECT_EQ(got[1].body, got[0].body);
}

TEST_F(Distribution, ABlueshift500IsRetriedAfterTheBackoffThenSent) {
  blueshift_->respond_any(partner_answer(500, R"({"error":"contact Blueshift"})"));
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url())));
  const std::string id = erasure({{"email", "retry-500@example.com"}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  EXPECT_EQ(status(id, "blueshift-main"), "pending");
  EXPECT_FALSE(outputs_->circuit_open("blueshift-main")) << "a 5xx is not a credential failure";
  // The first retry falls within [1 s, 2 s] (distribution_policy defaults).
  tick(3);
  ASSERT_TRUE(blueshift_->wait_for(2)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "blueshift-main", "sent")) << describe(entries(id));
  EXPECT_EQ(blueshift_body(blueshift_->requests()[1].body).email, "retry-500@example.com");
}

// A partner that never answers: the attempt times out (--callback-timeout-ms bounds a partner
// request too), is recorded as a retry, and the erasure is sent on the next attempt.
TEST_F(Distribution, AHangingPartnerTimesOutAndTheErasureIsSentOnTheRetry) {
  blueshift_->respond_any(scripted_response::never());
  ASSERT_NO_FATAL_FAILURE(start({"--callback-timeout-ms", "300"}));
  ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url())));
  const std::string id = erasure({{"email", "hang-once@example.com"}});
  tick(1);  // settles once the timeout (300 ms of real time) is recorded
  ASSERT_EQ(blueshift_->held(), 1u);
  EXPECT_EQ(status(id, "blueshift-main"), "pending");
  EXPECT_FALSE(outputs_->circuit_open("blueshift-main"));
  tick(3);  // past the first backoff, [1 s, 2 s]
  ASSERT_TRUE(blueshift_->wait_for(2)) << daemon_->process().log();
  EXPECT_TRUE(reaches(id, "blueshift-main", "sent")) << describe(entries(id));
  EXPECT_EQ(blueshift_->requests()[1].body, blueshift_->requests()[0].body);
}

// Blueshift's 404 (no such customer, or not yet written) is retried a few times, then the
// erasure counts as sent, saying so.
TEST_F(Distribution, ABlueshift404IsRetriedThenSentAsNoMatchingCustomer) {
  blueshift_->set_standing(partner_answer(404, R"({"message":"resource not found"})"));
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(add(blueshift_output("blueshift-main", blueshift_->url())));
  const std::string id = erasure({{"email", "nobody-at-blueshift@example.com"}});
  tick(1);
  ASSERT_TRUE(blueshift_->wait_for(1));
  EXPECT_EQ(status(id, "blueshift-main"), "pending") << "a first 404 is retried";
  // Each step passes the longest backoff so far (attempt n waits at most 2 s * 2^(n-1)).
  for (int step = 0; step < 12 && status(id, "blueshift-main") == "pending"; ++step) tick(std::min(900, 2 << step) + 1);
  ASSERT_EQ(status(id, "blueshift-main"), "sent") << describe(entries(id));
  auto e = entry_named(entries(id), "blueshift-main");
  ASSERT_TRUE(e && e->message) << describe(entries(id));
  EXPECT_NE(e->message->find("no matching customer"), std::string::npos) << *e->message;
  EXPECT_GE(blueshift_->count(), 2u);
  const std::size_t attempts = blueshift_->count();
  tick(3600);
  EXPECT_EQ(blueshift_->count(), attempts) << "sent, yet sent again";
  EXPECT_FALSE(outputs_->circuit_open("blueshift-main"));
}

}  // namespace
}  // namespace opendsr::testing
