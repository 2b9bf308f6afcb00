// The JSON Lines import behind POST /v3/subject-data (engine/api/subject_import) and opendsr
// import (engine/subject/import_lines), on a memory-storage subject store.
#include "api/subject_import.hpp"
#include "subject/import_lines.hpp"

#include "../support/faulty_storage.hpp"

#include <opendsr/memory_storage.hpp>
#include <opendsr/subject_data.hpp>

#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace opendsr {
namespace {

namespace json = boost::json;

class subject_import_test : public ::testing::Test {
 protected:
  void SetUp() override { data_ = open_subject_store(store_).value(); }

  std::optional<profile_id> resolve(identity_type type, std::string value, std::string_view workspace = "w1") {
    const std::vector<identity> ids = {{type, std::move(value)}};
    return data_->resolve(workspace, ids).value();
  }
  std::size_t records(profile_id id) {
    std::size_t n = 0;
    EXPECT_TRUE(data_->records("w1", id, [&](const subject_record&) { return ++n, true; }));
    return n;
  }

  memory_storage memory_;
  testing::faulty_storage store_{memory_};
  std::unique_ptr<subject_data> data_;
};

TEST_F(subject_import_test, good_lines_land_and_the_body_counts_them) {
  const std::string body =
      R"({"mpid": "101", "identities": {"email": "Ana@Example.com", "controller_customer_id": "C-42"}, "attributes": {"n": 1}})" "\n"
      R"({"mpid": "101", "event": {"type": "purchase"}})" "\r\n"
      "\n"
      R"({"mpid": 102, "identities": {"email": ["bo@example.com", "bo@work.example"]}})" "\n"
      R"({"mpid": "102", "event": {"type": "view"}})";  // no final newline
  auto r = detail::import_subject_data(*data_, "w1", body);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, R"({"lines":5,"imported":4,"profiles":2,"events":2,"refused":[]})");
  EXPECT_EQ(resolve(identity_type::controller_customer_id, "C-42"), 101);
  EXPECT_EQ(resolve(identity_type::email, "bo@work.example"), 102);
  EXPECT_EQ(resolve(identity_type::email, "bo@work.example", "w2"), std::nullopt);  // the workspace's own
  EXPECT_EQ(records(101), 2u);
  EXPECT_EQ(records(102), 2u);
}

TEST_F(subject_import_test, bad_lines_are_refused_by_number_without_a_value) {
  const std::string body =
      R"({"mpid": "1", "identities": {"controller_customer_id": "SECRET-C1"}})" "\n"            // 1
      "{\"mpid\": \"2\", \"identities\": {\"email\": \"secret-two@exa\n"                         // 2 cut
      R"({"mpid": "3", "identities": {"emial": "secret-three@example.com"}})" "\n"              // 3
      R"({"mpid": "4", "identities": {"secret-name@example.com": "x"}})" "\n"                   // 4
      R"({"mpid": "5", "colour": "secret-colour"})" "\n"                                       // 5
      R"({"mpid": "6", "identities": {"controller_customer_id": "SECRET-C1"}})" "\n"            // 6 unique, held by 1
      R"({"mpid": "6", "event": {"secret": "event"}})" "\n"                                      // 7 no profile 6
      R"({"mpid": "1", "event": {"ok": true}})" "\n";                                            // 8
  auto r = detail::import_subject_data(*data_, "w1", body);
  ASSERT_TRUE(r) << r.error().message();
  json::value v = json::parse(*r);
  EXPECT_EQ(v.at("lines").as_int64(), 8);
  EXPECT_EQ(v.at("imported").as_int64(), 2);
  const json::array& refused = v.at("refused").as_array();
  std::vector<std::int64_t> numbers;
  for (const auto& each : refused) numbers.push_back(each.at("line").as_int64());
  EXPECT_EQ(numbers, (std::vector<std::int64_t>{2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(refused[1].at("reason").as_string(), "identities: unknown identity type \"emial\"");
  EXPECT_EQ(refused[2].at("reason").as_string(), "identities: unknown identity type (name not shown)");
  EXPECT_EQ(refused[3].at("reason").as_string(), "unknown field \"colour\"");
  EXPECT_EQ(refused[4].at("reason").as_string(),
            "identities: another profile holds this controller_customer_id, a unique identity type");
  EXPECT_EQ(refused[5].at("reason").as_string(), "no such profile in the workspace");
  EXPECT_EQ(r->find("secret"), std::string::npos) << *r;
  EXPECT_EQ(r->find("SECRET"), std::string::npos) << *r;
  EXPECT_EQ(resolve(identity_type::controller_customer_id, "SECRET-C1"), 1);
  EXPECT_EQ(records(1), 2u);
}

TEST_F(subject_import_test, a_body_that_is_empty_not_utf8_or_too_long_is_invalid) {
  EXPECT_EQ(detail::import_subject_data(*data_, "w1", "").error(), errc::invalid_request);
  EXPECT_EQ(detail::import_subject_data(*data_, "w1", "{\"mpid\": \"1\", \"attributes\": {\"n\": \"\xff\"}}").error(),
            errc::invalid_request);
  std::string many;
  for (std::size_t i = 0; i <= detail::max_subject_import_lines; ++i) many += "{\"mpid\": \"1\"}\n";
  auto r = detail::import_subject_data(*data_, "w1", many);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_request);
  EXPECT_EQ(resolve(identity_type::mpid, "1"), std::nullopt);  // nothing written
  many.resize(many.size() - std::string("{\"mpid\": \"1\"}\n").size());
  EXPECT_TRUE(detail::import_subject_data(*data_, "w1", many));  // exactly the limit
}

TEST_F(subject_import_test, a_failed_store_write_is_an_error_and_writes_nothing) {
  store_.fail_next_commits(1, errc::storage_io);
  auto r = detail::import_subject_data(*data_, "w1", R"({"mpid": "1", "identities": {"email": "a@example.com"}})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::storage_io);
  EXPECT_EQ(resolve(identity_type::email, "a@example.com"), std::nullopt);
  // A conflict is retried.
  store_.fail_next_commits(3, errc::storage_conflict);
  EXPECT_TRUE(detail::import_subject_data(*data_, "w1", R"({"mpid": "1", "identities": {"email": "a@example.com"}})"));
  EXPECT_EQ(resolve(identity_type::email, "a@example.com"), 1);
}

TEST_F(subject_import_test, import_lines_numbers_from_the_first_line_and_cuts_transactions) {
  std::string text;
  for (int i = 1; i <= 10; ++i) text += R"({"mpid": ")" + std::to_string(i) + R"("})" "\n";
  text += "not json\n";
  const std::size_t before = store_.commits();
  auto r = detail::import_lines(*data_, "w1", text, 1001, 3);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->lines, 11u);
  EXPECT_EQ(r->profiles, 10u);
  ASSERT_EQ(r->refused.size(), 1u);
  EXPECT_EQ(r->refused[0].line, 1011u);
  EXPECT_EQ(r->refused[0].reason.rfind("not JSON (", 0), 0u) << r->refused[0].reason;
  EXPECT_EQ(store_.commits() - before, 4u);  // 3 + 3 + 3 + 1
}

// Every line refused by the store: k refusals cost k + 1 attempts of the transaction, so
// max_subject_import_lines bounds one POST's work. Guards the limit's reason.
TEST_F(subject_import_test, a_body_of_refused_lines_stays_cheap) {
  std::string body;
  for (std::size_t i = 1; i <= detail::max_subject_import_lines; ++i)
    body += R"({"mpid": ")" + std::to_string(i) + R"(", "event": {"n": 1}})" "\n";
  const auto start = std::chrono::steady_clock::now();
  auto r = detail::import_subject_data(*data_, "w1", body);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(json::parse(*r).at("refused").as_array().size(), detail::max_subject_import_lines);
  std::printf("%zu refused lines in %.3f s\n", detail::max_subject_import_lines, s);
}

}  // namespace
}  // namespace opendsr
