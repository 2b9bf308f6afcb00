// Black-box tests of `opendsr import` (docs/import.md): the built tool (OPENDSR) over a temporary
// data directory, straight into the store or through a running opendsrd (OPENDSRD) and its
// POST /v3/subject-data, then the LMDB store opened here to check what it holds.
#include "daemon_process.hpp"

#include <opendsr/lmdb_storage.hpp>
#include <opendsr/subject_data.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace opendsr::testing {
namespace {

struct outcome {
  int status;
  std::string out;
  std::string err;
};

class import_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    data_ = dir_ / "data";
    ASSERT_NO_FATAL_FAILURE(add_workspace(data_, "demo", demo_));
  }
  void TearDown() override { remove_temp_dir(dir_); }

  // Runs `opendsr import --workspace demo ARGS`, stdin from `input` when given.
  outcome import(const std::string& args, const std::string& input = {}) {
    const fs::path err = dir_ / "stderr";
    std::string command = env_path("OPENDSR") + " import --data-dir " + data_.string() + " " + args;
    if (!input.empty()) command += " < " + input;
    auto [status, out] = run(command + " 2>" + err.string());
    return {status, out, read_text(err)};
  }

  // Resolves identities in the store (the tool has exited, so the store is free).
  std::optional<profile_id> resolve(std::vector<identity> ids, std::string_view workspace = "demo") {
    auto store = lmdb_storage::open({.path = data_ / "store"}).value();
    auto data = open_subject_store(*store).value();
    return data->resolve(workspace, ids).value();
  }

  std::vector<std::string> records(profile_id id) {
    auto store = lmdb_storage::open({.path = data_ / "store"}).value();
    auto data = open_subject_store(*store).value();
    std::vector<std::string> seen;
    auto r = data->records("demo", id, [&](const subject_record& rec) {
      seen.emplace_back(rec.json);
      return true;
    });
    EXPECT_TRUE(r) << r.error().message();
    return seen;
  }

  fs::path file(const std::string& name, const std::string& text) {
    write_file(dir_ / name, text);
    return dir_ / name;
  }

  // Starts opendsrd in test mode on the data directory; returns its port.
  std::uint16_t start_daemon() {
    daemon_ = std::make_unique<daemon_process>(data_, std::vector<std::string>{"--test-mode", "--listen", "127.0.0.1:0", "--no-demo"});
    const std::uint16_t port = daemon_->wait_ready();
    EXPECT_NE(port, 0) << daemon_->stdout_text() << daemon_->log();
    return port;
  }
  void stop_daemon() {
    EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    daemon_.reset();
  }

  // Runs `opendsr import --url http://127.0.0.1:PORT --api-key K --api-secret S ARGS`.
  outcome import_through(std::uint16_t port, const std::string& args, const workspace* w = nullptr) {
    if (!w) w = &demo_;
    const fs::path err = dir_ / "stderr";
    auto [status, out] = run(env_path("OPENDSR") + " import --url http://127.0.0.1:" + std::to_string(port) +
                             " --api-key " + w->api_key + " --api-secret " + w->secret + " " + args + " 2>" + err.string());
    return {status, out, read_text(err)};
  }

  fs::path dir_;
  fs::path data_;
  workspace demo_;
  std::unique_ptr<daemon_process> daemon_;
};

const std::string good_file =
    R"({"mpid": "101", "identities": {"email": "Ana@Example.com", "controller_customer_id": "C-42"}, "attributes": {"name": "Ana"}})"
    "\n"
    R"({"mpid": "101", "event": {"type": "purchase", "sku": "A1"}})"
    "\n"
    R"({"mpid": "101", "event": {"type": "view"}})"
    "\n"
    R"({"mpid": 102, "identities": {"email": ["bo@example.com", "bo@work.example"], "mobile_number": "+44 20 7946 0000"}})"
    "\r\n"
    "\n"
    R"({"mpid": "-9223372036854775808", "identities": {"other3": "x"}, "attributes": {}})"
    "\n";

TEST_F(import_test, a_good_file_imports) {
  auto r = import("--workspace demo " + file("good.jsonl", good_file).string());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("imported 3 profiles and 2 events from 6 lines in "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; 0 lines refused\n"), std::string::npos) << r.out;

  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}), 101);
  EXPECT_EQ(resolve({{identity_type::email, "bo@work.example"}}), 102);
  EXPECT_EQ(resolve({{identity_type::mobile_number, "+442079460000"}}), 102);
  EXPECT_EQ(resolve({{identity_type::other3, "x"}}), INT64_MIN);
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}, "other"), std::nullopt);
  EXPECT_EQ(records(101), (std::vector<std::string>{R"({"name":"Ana"})", R"({"type":"purchase","sku":"A1"})",
                                                     R"({"type":"view"})"}));
  EXPECT_EQ(records(102), (std::vector<std::string>{"{}"}));
}

TEST_F(import_test, bad_lines_are_reported_by_number_and_the_good_ones_imported) {
  const std::string text =
      R"({"mpid": "1", "identities": {"email": "secret-one@example.com", "controller_customer_id": "SECRET-C1"}})" "\n"  // 1
      "{\"mpid\": \"2\", \"identities\": {\"email\": \"secret-two@exa\n"                                              // 2 (cut)
      R"({"mpid": "3", "identities": {"emial": "secret-three@example.com"}})" "\n"                                      // 3
      R"({"identities": {"email": "secret-four@example.com"}})" "\n"                                                     // 4
      R"({"mpid": "12x", "identities": {"email": "secret-five@example.com"}})" "\n"                                     // 5
      R"({"mpid": 1.5})" "\n"                                                                                            // 6
      R"({"mpid": "99999999999999999999"})" "\n"                                                                         // 7
      R"({"mpid": "7", "identities": {"email": 42}})" "\n"                                                               // 8
      R"({"mpid": "7", "identities": {"email": ""}})" "\n"                                                               // 9
      R"({"mpid": "7", "identities": ["secret-six@example.com"]})" "\n"                                                 // 10
      R"({"mpid": "7", "attributes": "secret-attribute"})" "\n"                                                          // 11
      R"({"mpid": "7", "event": ["secret-event"]})" "\n"                                                                 // 12
      R"({"mpid": "7", "event": {}, "attributes": {}})" "\n"                                                             // 13
      R"({"mpid": "7", "colour": "secret-colour"})" "\n"                                                                 // 14
      R"(["secret-array"])" "\n"                                                                                         // 15
      R"({"mpid": "8", "identities": {"controller_customer_id": "SECRET-C1"}})" "\n"                                     // 16: unique, held by 1
      R"({"mpid": "8", "event": {"a": 1}})" "\n"                                                                         // 17: no profile 8
      R"({"mpid": "1", "event": {"a": 2}})" "\n"                                                                         // 18
      R"({"mpid": "9", "identities": {"mpid": "9"}})" "\n"                                                               // 19
      R"({"mpid": "10", "identities": {"email": " secret-seven@example.com "}})" "\n";                                  // 20
  auto r = import("--workspace demo " + file("bad.jsonl", text).string());
  EXPECT_EQ(r.status, 1);
  const std::vector<std::string> expected = {
      "line 2: not JSON",
      "line 3: identities: unknown identity type \"emial\"",
      "line 4: missing mpid",
      "line 5: mpid: not the decimal text of a signed 64-bit integer",
      "line 6: mpid: not a string or an integer",
      "line 7: mpid: not the decimal text of a signed 64-bit integer",
      "line 8: identities.email: not a string or an array of strings",
      "line 9: identities.email: an empty value",
      "line 10: identities: not a JSON object",
      "line 11: attributes: not a JSON object",
      "line 12: event: not a JSON object",
      "line 13: an event line has no identities or attributes",
      "line 14: unknown field \"colour\"",
      "line 15: not a JSON object",
      "line 16: identities: another profile holds this controller_customer_id, a unique identity type",
      "line 17: no such profile in the workspace",
      "line 19: identities.mpid: the profile's mpid goes in \"mpid\"",
  };
  for (const auto& e : expected) EXPECT_NE(r.err.find("opendsr import: " + e), std::string::npos) << e << "\n" << r.err;
  for (const char* line : {"line 1:", "line 18:", "line 20:"}) EXPECT_EQ(r.err.find(line), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("secret"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("SECRET"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("imported 2 profiles and 1 event from 20 lines in "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; 17 lines refused\n"), std::string::npos) << r.out;

  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "SECRET-C1"}}), 1);
  EXPECT_EQ(resolve({{identity_type::email, "secret-seven@example.com"}}), 10);
  EXPECT_EQ(resolve({{identity_type::mpid, "8"}}), std::nullopt);
  EXPECT_EQ(records(1).size(), 2u);
}

TEST_F(import_test, standard_input) {
  const fs::path f = file("good.jsonl", good_file);
  auto r = import("--workspace demo -", f.string());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("imported 3 profiles and 2 events from 6 lines"), std::string::npos) << r.out;
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}), 101);
  // No FILE is standard input too; a pipe (no size known) as well. Importing again replaces the
  // profiles and appends the events once more.
  auto [status, out] = run("cat " + f.string() + " | " + env_path("OPENDSR") + " import --workspace demo --data-dir " +
                           data_.string() + " 2>&1");
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("imported 3 profiles and 2 events from 6 lines"), std::string::npos) << out;
  EXPECT_EQ(records(101).size(), 5u);
}

TEST_F(import_test, usage_and_setup_errors) {
  const fs::path f = file("good.jsonl", good_file);
  EXPECT_EQ(import(f.string()).status, 2);                                       // no --workspace
  EXPECT_EQ(import("--workspace demo a.jsonl b.jsonl").status, 2);                // two files
  EXPECT_EQ(import("--workspace demo --batch 0 " + f.string()).status, 2);        // bad flag value
  auto missing = import("--workspace demo " + (dir_ / "missing.jsonl").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("missing.jsonl"), std::string::npos) << missing.err;
  auto unknown = import("--workspace nope " + f.string());
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no workspace nope"), std::string::npos) << unknown.err;
  auto no_store = run(env_path("OPENDSR") + " import --workspace demo --data-dir " + (dir_ / "none").string() + " " +
                      f.string() + " 2>&1");
  EXPECT_EQ(no_store.first, 1);
  EXPECT_NE(no_store.second.find("no store here"), std::string::npos) << no_store.second;
}

TEST_F(import_test, store_refusals_in_a_batch_leave_the_rest_of_it) {
  // Small batches: refusals in several batches, and a profile refused before its own events.
  std::string text;
  for (int i = 1; i <= 30; ++i) {
    const std::string id = std::to_string(i);
    const std::string customer = i % 7 == 0 ? "C-1" : "C-" + id;  // 7, 14, 21, 28 collide with 1
    text += R"({"mpid": ")" + id + R"(", "identities": {"controller_customer_id": ")" + customer + "\"}}\n";
    text += R"({"mpid": ")" + id + R"(", "event": {"n": )" + id + "}}\n";
  }
  auto r = import("--workspace demo --batch 5 " + file("refusals.jsonl", text).string());
  EXPECT_EQ(r.status, 1);
  // Each colliding profile line is refused and so is its event (no such profile).
  EXPECT_NE(r.out.find("imported 26 profiles and 26 events from 60 lines"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; 8 lines refused"), std::string::npos) << r.out;
  for (const char* l : {"line 13: identities: another profile", "line 14: no such profile", "line 55: identities",
                        "line 56: no such profile"})
    EXPECT_NE(r.err.find(l), std::string::npos) << l << "\n" << r.err;
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-30"}}), 30);
  EXPECT_EQ(records(30).size(), 2u);
}

TEST_F(import_test, two_hundred_thousand_lines) {
  // 50,000 profiles with 3 events each, written as the file is made (not held in memory).
  const fs::path f = dir_ / "big.jsonl";
  {
    std::ofstream out(f, std::ios::binary);
    for (int i = 1; i <= 50'000; ++i) {
      const std::string id = std::to_string(i);
      out << R"({"mpid": ")" << id << R"(", "identities": {"email": "user)" << id
          << R"(@example.com", "controller_customer_id": "C)" << id << R"("}, "attributes": {"n": )" << id
          << R"(, "tier": "gold"}})" << '\n';
      for (int j = 0; j < 3; ++j)
        out << R"({"mpid": ")" << id << R"(", "event": {"type": "view", "page": "/p/)" << j
            << R"(", "ts": 1700000000}})" << '\n';
    }
  }
  const auto start = std::chrono::steady_clock::now();
  auto r = import("--workspace demo " + f.string());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");  // not a terminal: no progress line, only the summary on stdout
  EXPECT_NE(r.out.find("imported 50000 profiles and 150000 events from 200000 lines in "), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  std::printf("200,000 lines imported in %.2f s\n", s);
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C49999"}}), 49999);
  EXPECT_EQ(records(50000).size(), 4u);
}

// The daemon route (POST /v3/subject-data): opendsr import --url while opendsrd runs.

TEST_F(import_test, through_the_running_daemon) {
  const std::uint16_t port = start_daemon();
  ASSERT_NE(port, 0);
  const fs::path f = file("good.jsonl", good_file);
  // Straight into the store is refused while the daemon holds it, and changes nothing.
  auto direct = import("--workspace demo " + f.string());
  EXPECT_EQ(direct.status, 1);
  EXPECT_NE(direct.err.find("in use"), std::string::npos) << direct.err;

  auto r = import_through(port, f.string());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("imported 3 profiles and 2 events from 6 lines in "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; 0 lines refused\n"), std::string::npos) << r.out;
  stop_daemon();
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}), 101);
  EXPECT_EQ(resolve({{identity_type::mobile_number, "+442079460000"}}), 102);
  EXPECT_EQ(records(101).size(), 3u);
}

TEST_F(import_test, through_the_daemon_refusals_are_numbered_across_batches) {
  // The same file as store_refusals_in_a_batch_leave_the_rest_of_it, five lines a request, from
  // standard input.
  std::string text;
  for (int i = 1; i <= 30; ++i) {
    const std::string id = std::to_string(i);
    const std::string customer = i % 7 == 0 ? "SECRET-1" : "SECRET-" + id;
    text += R"({"mpid": ")" + id + R"(", "identities": {"controller_customer_id": ")" + customer + "\"}}\n";
    text += R"({"mpid": ")" + id + R"(", "event": {"n": )" + id + "}}\n";
  }
  text += "{\"mpid\": \"31\", \"identities\": {\"email\": \"secret@exa\n";  // line 61: cut
  const fs::path f = file("refusals.jsonl", text);
  const std::uint16_t port = start_daemon();
  ASSERT_NE(port, 0);
  auto r = import_through(port, "--batch 5 - < " + f.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("imported 26 profiles and 26 events from 61 lines"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; 9 lines refused"), std::string::npos) << r.out;
  for (const char* l : {"line 13: identities: another profile", "line 14: no such profile", "line 55: identities",
                        "line 56: no such profile", "line 61: not JSON"})
    EXPECT_NE(r.err.find("opendsr import: " + std::string(l)), std::string::npos) << l << "\n" << r.err;
  EXPECT_EQ(r.err.find("secret"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("SECRET"), std::string::npos) << r.err;
  stop_daemon();
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "SECRET-30"}}), 30);
  EXPECT_EQ(records(30).size(), 2u);
}

TEST_F(import_test, through_the_daemon_credentials_scope_the_workspace) {
  workspace other;
  ASSERT_NO_FATAL_FAILURE(add_workspace(data_, "other", other));
  const std::uint16_t port = start_daemon();
  ASSERT_NE(port, 0);
  const fs::path f = file("good.jsonl", good_file);
  auto r = import_through(port, f.string(), &other);
  EXPECT_EQ(r.status, 0) << r.err;

  // A wrong secret: 401, nothing imported, the secret never printed.
  workspace wrong = demo_;
  wrong.secret = "not-the-secret-0123456789";
  auto refused = import_through(port, f.string(), &wrong);
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("401"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find(wrong.secret), std::string::npos) << refused.err;
  EXPECT_EQ(refused.out.find(wrong.secret), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("imported 0 profiles and 0 events"), std::string::npos) << refused.out;

  // Usage: --url with --workspace, or without a secret.
  EXPECT_EQ(import_through(port, "--workspace demo " + f.string()).status, 2);
  auto [status, out] = run(env_path("OPENDSR") + " import --url http://127.0.0.1:" + std::to_string(port) +
                           " --api-key " + demo_.api_key + " " + f.string() + " 2>&1");
  EXPECT_EQ(status, 2) << out;
  stop_daemon();
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}, "other"), 101);
  EXPECT_EQ(resolve({{identity_type::controller_customer_id, "C-42"}}, "demo"), std::nullopt);
}

TEST_F(import_test, the_route_answers_a_report_or_an_error) {
  const std::uint16_t port = start_daemon();
  ASSERT_NE(port, 0);
  daemon_client daemon(port);
  const std::string body = R"({"mpid": "5", "identities": {"email": "e@example.com"}})" "\n" R"({"mpid": "5", "colour": 1})" "\n";
  auto post = [&](std::vector<std::string> headers, const std::string& b) {
    return daemon.exchange(wire::format_request("POST", "/v3/subject-data", headers, b));
  };
  auto ok = post({demo_.authorization(), "Content-Type: application/x-ndjson"}, body);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.body, R"({"lines":2,"imported":1,"profiles":1,"events":0,"refused":[{"line":2,"reason":"unknown field \"colour\""}]})");
  EXPECT_EQ(post({demo_.authorization(), "Content-Type: application/jsonl"}, body).status, 200);

  EXPECT_EQ(post({"Content-Type: application/x-ndjson"}, body).status, 401);
  EXPECT_EQ(post({demo_.authorization(), "Content-Type: application/json"}, body).status, 415);
  EXPECT_EQ(post({demo_.authorization(), "Content-Type: application/x-ndjson"}, "{\"mpid\": \"\xff\"}").status, 400);
  // Over the limit (16 MiB by default): refused from Content-Length, before the body is read.
  auto large = daemon.exchange("POST /v3/subject-data HTTP/1.1\r\nHost: 127.0.0.1\r\n" + demo_.authorization() +
                               "\r\nContent-Type: application/x-ndjson\r\nContent-Length: " + std::to_string((16 << 20) + 1) +
                               "\r\n\r\n");
  EXPECT_EQ(large.status, 413);
  std::string many;
  for (int i = 0; i < 1001; ++i) many += "{\"mpid\": \"1\"}\n";
  EXPECT_EQ(post({demo_.authorization(), "Content-Type: application/x-ndjson"}, many).status, 400);
  stop_daemon();
  EXPECT_EQ(resolve({{identity_type::email, "e@example.com"}}), 5);
}

}  // namespace
}  // namespace opendsr::testing
