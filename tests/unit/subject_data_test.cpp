// The subject-data seam's embedded default (engine/subject/), on the memory adapter and LMDB.
#include <opendsr/subject_data.hpp>

#include <opendsr/memory_storage.hpp>
#include <opendsr/storage_wrapper.hpp>
#if OPENDSR_HAVE_LMDB
#include <opendsr/lmdb_storage.hpp>
#endif

#include "check/invariants.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using enum identity_type;

// Counts read transactions and the most keys one scan visited, to show records() pages.
class counting_read : public read_transaction_wrapper {
 public:
  counting_read(std::unique_ptr<read_transaction> target, std::size_t& max_visits)
      : read_transaction_wrapper(std::move(target)), max_visits_(max_visits) {}
  result<void> scan(std::string_view prefix, std::string_view from, const scan_visitor& visit) override {
    std::size_t visits = 0;
    auto r = read_transaction_wrapper::scan(prefix, from, [&](std::string_view k, std::string_view v) {
      ++visits;
      return visit(k, v);
    });
    max_visits_ = std::max(max_visits_, visits);
    return r;
  }

 private:
  std::size_t& max_visits_;
};

class counting_storage : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;
  result<std::unique_ptr<read_transaction>> begin_read() override {
    auto t = storage_wrapper::begin_read();
    if (!t) return t;
    ++reads;
    return std::unique_ptr<read_transaction>(std::make_unique<counting_read>(std::move(*t), max_scan_visits));
  }
  std::size_t reads = 0;
  std::size_t max_scan_visits = 0;
};

struct backend {
  std::string name;
  std::function<std::unique_ptr<storage>(const fs::path&)> open;
};

std::string backend_name(const ::testing::TestParamInfo<backend>& info) { return info.param.name; }

class subject_data_test : public ::testing::TestWithParam<backend> {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "opendsr-subject-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = GetParam().open(dir_);
    ASSERT_TRUE(store_);
    counting_ = std::make_unique<counting_storage>(*store_);
    data_ = open_subject_store(*counting_, {.tombstone_key = {}, .page_events = 1024}).value();
  }
  void TearDown() override {
    data_.reset();
    counting_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Puts one profile with attributes and identities; ASSERTs success.
  void put(profile_id id, std::vector<identity> ids, std::string_view ws = "ws1") {
    const profile_write w{.id = id, .attributes = R"({"name":"p)" + std::to_string(id) + R"("})",
                          .identities = std::move(ids), .events = {}};
    auto r = data_->write(ws, std::span(&w, 1));
    ASSERT_TRUE(r) << r.error().message();
  }

  std::optional<profile_id> resolve(std::vector<identity> ids, std::string_view ws = "ws1") {
    auto r = data_->resolve(ws, ids);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : std::nullopt;
  }

  // Every key and value of the store.
  std::vector<std::pair<std::string, std::string>> dump() {
    std::vector<std::pair<std::string, std::string>> all;
    auto txn = store_->begin_read().value();
    EXPECT_TRUE(txn->scan({}, {}, [&](std::string_view k, std::string_view v) {
      all.emplace_back(k, v);
      return true;
    }));
    return all;
  }

  fs::path dir_;
  std::unique_ptr<storage> store_;
  std::unique_ptr<counting_storage> counting_;
  std::unique_ptr<subject_data> data_;
};

TEST_P(subject_data_test, mpid_short_circuits) {
  put(42, {{email, "a@example.com"}});
  put(43, {{email, "b@example.com"}});
  // The mpid wins over an email that names another profile.
  EXPECT_EQ(resolve({{email, "b@example.com"}, {mpid, "42"}}), 42);
  EXPECT_EQ(resolve({{mpid, "7"}}), std::nullopt);
  put(-5, {{email, "c@example.com"}});
  EXPECT_EQ(resolve({{mpid, "-5"}}), -5);
  auto bad = data_->resolve("ws1", std::vector<identity>{{mpid, "4x2"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  EXPECT_NE(bad.error().message().find("identities[0]"), std::string::npos);
  EXPECT_EQ(bad.error().message().find("4x2"), std::string::npos);
}

TEST_P(subject_data_test, highest_priority_identity_wins) {
  put(1, {{email, "a@example.com"}});
  put(2, {{mobile_number, "+1 (555) 010-0000"}});
  // mobile_number ranks above email: it picks profile 2 although the email names profile 1.
  EXPECT_EQ(resolve({{email, "a@example.com"}, {mobile_number, "+15550100000"}}), 2);
  // Normalisation: emails trimmed and lower-cased, phone punctuation dropped.
  EXPECT_EQ(resolve({{email, "  A@Example.COM "}}), 1);
  EXPECT_EQ(resolve({{mobile_number, "+1 555.010.0000"}}), 2);
  // A configured order changes the winner.
  auto cfg = default_identity_config();
  cfg.priority = {email, mobile_number, controller_customer_id};
  ASSERT_TRUE(data_->configure("ws1", cfg));
  EXPECT_EQ(resolve({{email, "a@example.com"}, {mobile_number, "+15550100000"}}), 1);
  EXPECT_EQ(data_->config("ws1").value().priority, cfg.priority);
  // A type absent from the priority list is dropped.
  cfg.priority = {mobile_number, controller_customer_id};
  ASSERT_TRUE(data_->configure("ws1", cfg));
  EXPECT_EQ(resolve({{email, "a@example.com"}}), std::nullopt);
}

TEST_P(subject_data_test, lower_identities_narrow_a_shared_value) {
  put(1, {{email, "shared@example.com"}, {ios_advertising_id, "AAAA-1"}});
  put(2, {{email, "shared@example.com"}, {ios_advertising_id, "AAAA-2"}});
  EXPECT_EQ(resolve({{email, "shared@example.com"}, {ios_advertising_id, "aaaa-2"}}), 2);
  // Still two candidates and nothing tells them apart: no profile rather than a guess.
  EXPECT_EQ(resolve({{email, "shared@example.com"}}), std::nullopt);
  // An identity that would empty the set is skipped.
  EXPECT_EQ(resolve({{email, "shared@example.com"}, {ios_advertising_id, "unknown"}}), std::nullopt);
  EXPECT_EQ(resolve({{ios_advertising_id, "AAAA-1"}, {android_id, "nobody"}}), 1);
}

TEST_P(subject_data_test, login_identity_gates_the_profile) {
  put(1, {{controller_customer_id, "C1"}, {email, "known@example.com"}});
  put(2, {{email, "anon@example.com"}});
  // By default customer_id is a login type: an email alone does not reach a known profile.
  EXPECT_EQ(resolve({{email, "known@example.com"}}), std::nullopt);
  EXPECT_EQ(resolve({{email, "known@example.com"}, {controller_customer_id, "C1"}}), 1);
  EXPECT_EQ(resolve({{controller_customer_id, "C1"}}), 1);
  EXPECT_EQ(resolve({{email, "known@example.com"}, {controller_customer_id, "C2"}}), std::nullopt);
  // A profile without a login identity is reached by its email.
  EXPECT_EQ(resolve({{email, "anon@example.com"}}), 2);
  // Customer IDs are case-sensitive.
  EXPECT_EQ(resolve({{controller_customer_id, "c1"}}), std::nullopt);
  // Without login types, the email reaches it.
  auto cfg = default_identity_config();
  cfg.login.clear();
  ASSERT_TRUE(data_->configure("ws1", cfg));
  EXPECT_EQ(resolve({{email, "known@example.com"}}), 1);
}

TEST_P(subject_data_test, unique_type_value_held_by_one_profile) {
  put(1, {{controller_customer_id, "C1"}});
  const std::vector<profile_write> batch{
      {.id = 3, .attributes = "{}", .identities = {{email, "three@example.com"}}, .events = {}},
      {.id = 2, .attributes = "{}", .identities = {{controller_customer_id, "C1"}}, .events = {}}};
  auto r = data_->write("ws1", batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
  EXPECT_EQ(r.error().message(), "writes[1].identities[0]: another profile holds this controller_customer_id, a unique identity type");
  // All or none: profile 3 of the same batch was not written.
  EXPECT_EQ(data_->identities("ws1", 3).error(), errc::not_found);
  EXPECT_EQ(resolve({{controller_customer_id, "C1"}}), 1);
  // Rewriting the holder with its own value is fine; a non-unique type may be shared.
  put(1, {{controller_customer_id, "C1"}, {email, "x@example.com"}});
  put(4, {{email, "X@example.com"}});
  // Made unique, email refuses a second holder.
  auto cfg = default_identity_config();
  cfg.unique.push_back(email);
  ASSERT_TRUE(data_->configure("ws1", cfg));
  const profile_write five{.id = 5, .attributes = "{}", .identities = {{email, "x@EXAMPLE.com"}}, .events = {}};
  EXPECT_EQ(data_->write("ws1", std::span(&five, 1)).error(), errc::invalid_argument);
}

TEST_P(subject_data_test, no_match_and_other_workspace_isolated) {
  put(1, {{email, "a@example.com"}}, "ws1");
  EXPECT_EQ(resolve({{email, "nobody@example.com"}}), std::nullopt);
  EXPECT_EQ(resolve({{email, "a@example.com"}}, "ws2"), std::nullopt);
  EXPECT_EQ(resolve({{mpid, "1"}}, "ws2"), std::nullopt);
  EXPECT_EQ(data_->identities("ws2", 1).error(), errc::not_found);
  EXPECT_EQ(data_->erase("ws2", 1).error(), errc::not_found);
  // The same mpid in another workspace is another profile.
  put(1, {{email, "other@example.com"}}, "ws2");
  EXPECT_EQ(resolve({{email, "other@example.com"}}, "ws2"), 1);
  EXPECT_EQ(resolve({{email, "other@example.com"}}, "ws1"), std::nullopt);
  EXPECT_EQ(data_->identities("ws1", 1).value(), (std::vector<identity>{{email, "a@example.com"}}));
}

TEST_P(subject_data_test, identities_listed_as_written_and_replaced) {
  put(1, {{ios_advertising_id, "IDFA-X"}, {email, " Mixed@Example.com"}, {controller_customer_id, "C1"},
          {email, "mixed@example.com"}});  // the same email once normalised: kept once
  EXPECT_EQ(data_->identities("ws1", 1).value(),
            (std::vector<identity>{{controller_customer_id, "C1"}, {email, " Mixed@Example.com"}, {ios_advertising_id, "IDFA-X"}}));
  // put replaces the set: the old email no longer resolves.
  put(1, {{controller_customer_id, "C1"}, {email, "new@example.com"}});
  EXPECT_EQ(resolve({{email, "mixed@example.com"}, {controller_customer_id, "C1"}}), 1);
  EXPECT_EQ(data_->identities("ws1", 1).value().size(), 2u);
  auto cfg = default_identity_config();
  cfg.login.clear();
  ASSERT_TRUE(data_->configure("ws1", cfg));
  EXPECT_EQ(resolve({{email, "mixed@example.com"}}), std::nullopt);
  EXPECT_EQ(resolve({{email, "new@example.com"}}), 1);
}

TEST_P(subject_data_test, streams_100000_events_in_order_in_pages) {
  constexpr std::uint64_t n = 100'000;
  put(9, {{email, "many@example.com"}});
  for (std::uint64_t base = 0; base < n; base += 10'000) {
    profile_write w{.id = 9, .attributes = std::nullopt, .identities = {}, .events = {}};
    for (std::uint64_t i = base; i < base + 10'000; ++i) w.events.push_back(R"({"n":)" + std::to_string(i) + "}");
    auto r = data_->write("ws1", std::span(&w, 1));
    ASSERT_TRUE(r) << r.error().message();
  }
  const auto started = std::chrono::steady_clock::now();
  counting_->reads = 0;
  counting_->max_scan_visits = 0;
  std::uint64_t events = 0;
  bool attributes_first = false, in_order = true;
  auto r = data_->records("ws1", 9, [&](const subject_record& rec) {
    if (rec.what == subject_record::kind::attributes) {
      attributes_first = events == 0 && rec.json == R"({"name":"p9"})";
      return true;
    }
    in_order = in_order && rec.sequence == events && rec.json == R"({"n":)" + std::to_string(events) + "}";
    ++events;
    return true;
  });
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(attributes_first);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(events, n);
  // Read in pages of 1024 events, each its own read transaction: never all at once.
  EXPECT_LE(counting_->max_scan_visits, 1024u);
  EXPECT_GE(counting_->reads, n / 1024);
  std::cout << GetParam().name << ": streamed " << n << " events in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() << " s\n";

  // The visitor stops the walk.
  std::uint64_t seen = 0;
  ASSERT_TRUE(data_->records("ws1", 9, [&](const subject_record&) { return ++seen < 10; }));
  EXPECT_EQ(seen, 10u);
  EXPECT_EQ(data_->records("ws1", 10, [](const subject_record&) { return true; }).error(), errc::not_found);

  auto receipt = data_->erase("ws1", 9);
  ASSERT_TRUE(receipt) << receipt.error().message();
  EXPECT_EQ(receipt->events_erased, n);
}

TEST_P(subject_data_test, erase_removes_every_trace) {
  put(1, {{controller_customer_id, "keep-C1"}, {email, "keep@example.com"}});
  const profile_write victim{.id = 2, .attributes = R"({"secret_attribute":"erase-attr"})",
                             .identities = {{controller_customer_id, "erase-C2"}, {email, " Erase.Me@Example.com"},
                                            {ios_advertising_id, "ERASE-IDFA"}},
                             .events = {R"({"secret_event":"erase-event-1"})", R"({"secret_event":"erase-event-2"})"}};
  ASSERT_TRUE(data_->write("ws1", std::span(&victim, 1)));
  const std::size_t keys_before = dump().size();

  auto receipt = data_->erase("ws1", 2);
  ASSERT_TRUE(receipt) << receipt.error().message();
  EXPECT_EQ(receipt->events_erased, 2u);
  EXPECT_EQ(receipt->key_id.size(), 16u);
  ASSERT_EQ(receipt->identity_hashes.size(), 4u);  // three identities and the mpid
  for (const std::string& h : receipt->identity_hashes) {
    EXPECT_EQ(h.size(), 64u);
    EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  }

  // Nothing of the profile remains: no identity (as written or normalised), attribute or event.
  const auto all = dump();
  for (const auto& [k, v] : all)
    for (std::string_view clear : {"erase-C2", "Erase.Me", "erase.me@example.com", "ERASE-IDFA", "erase-idfa",
                                   "erase-attr", "erase-event"}) {
      EXPECT_EQ(k.find(clear), std::string::npos) << clear;
      EXPECT_EQ(v.find(clear), std::string::npos) << clear;
    }
  // Removed: the profile, three index rows, two events; added: the store's hash key and the
  // profile's tombstone (its receipt: hashes only, checked above to hold no value in clear).
  EXPECT_EQ(all.size(), keys_before - 6 + 2);
  // The engine's invariant checker accepts the subject tables (no engine opened this store, so
  // the schema entry alone is missing).
  auto txn = store_->begin_read().value();
  EXPECT_EQ(detail::check_invariants(*txn).value(),
            std::vector<std::string>{"the schema version entry is missing or unknown"});
  txn.reset();

  EXPECT_EQ(resolve({{controller_customer_id, "erase-C2"}}), std::nullopt);
  EXPECT_EQ(resolve({{mpid, "2"}}), std::nullopt);
  EXPECT_EQ(data_->identities("ws1", 2).error(), errc::not_found);
  EXPECT_EQ(data_->erase("ws1", 2).error(), errc::not_found);
  EXPECT_EQ(resolve({{controller_customer_id, "keep-C1"}}), 1);

  // The same key hashes a returning identity the same way; another identity differently.
  const profile_write again{.id = 3, .attributes = "{}", .identities = {{email, "erase.me@example.com"}}, .events = {}};
  ASSERT_TRUE(data_->write("ws1", std::span(&again, 1)));
  auto second = data_->erase("ws1", 3).value();
  EXPECT_EQ(second.key_id, receipt->key_id);
  ASSERT_EQ(second.identity_hashes.size(), 2u);
  int shared = 0;
  for (const auto& h : second.identity_hashes)
    shared += std::count(receipt->identity_hashes.begin(), receipt->identity_hashes.end(), h);
  EXPECT_EQ(shared, 1);  // the email; mpids 2 and 3 differ
}

TEST_P(subject_data_test, bad_input_is_invalid_argument_with_a_clear_message) {
  auto message = [&](const profile_write& w) {
    auto r = data_->write("ws1", std::span(&w, 1));
    EXPECT_FALSE(r);
    EXPECT_EQ(r ? errc::internal : r.error().code(), errc::invalid_argument);
    return r ? std::string() : r.error().message();
  };
  EXPECT_EQ(message({.id = 1, .attributes = "[1]", .identities = {}, .events = {}}), "writes[0].attributes: not a JSON object");
  EXPECT_EQ(message({.id = 1, .attributes = "{", .identities = {}, .events = {}}), "writes[0].attributes: not a JSON object");
  EXPECT_EQ(message({.id = 1, .attributes = "{}", .identities = {}, .events = {"{}", "nope"}}),
            "writes[0].events[1]: not a JSON object");
  EXPECT_EQ(message({.id = 1, .attributes = "{}", .identities = {{email, " \t"}}, .events = {}}),
            "writes[0].identities[0]: a email value is empty once normalised");
  EXPECT_EQ(message({.id = 1, .attributes = "{}", .identities = {{mpid, "1"}}, .events = {}}),
            "writes[0].identities[0]: a profile's mpid is its id, not one of its identities");
  EXPECT_EQ(message({.id = 1, .attributes = std::nullopt, .identities = {{email, "a@example.com"}}, .events = {}}),
            "writes[0].identities: given without attributes");
  const profile_write orphan{.id = 77, .attributes = std::nullopt, .identities = {}, .events = {"{}"}};
  auto r = data_->write("ws1", std::span(&orphan, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::not_found);
  EXPECT_EQ(r.error().message(), "writes[0]: no such profile in the workspace");

  auto bad = data_->resolve("ws1", std::vector<identity>{{email, "a@example.com"}, {email, "  "}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  EXPECT_EQ(bad.error().message(), "identities[1]: a email value is empty once normalised");

  auto cfg = default_identity_config();
  cfg.priority.push_back(mpid);
  EXPECT_EQ(data_->configure("ws1", cfg).error(), errc::invalid_argument);
  cfg = default_identity_config();
  cfg.priority.push_back(email);
  EXPECT_EQ(data_->configure("ws1", cfg).error().message(), "identity_config.priority: email appears twice");
  cfg = default_identity_config();
  cfg.priority = {email};
  EXPECT_EQ(data_->configure("ws1", cfg).error().message(), "identity_config.unique: a type absent from priority");

  memory_storage other;
  EXPECT_EQ(open_subject_store(other, {.tombstone_key = "short", .page_events = 1}).error(), errc::invalid_argument);
  EXPECT_EQ(open_subject_store(other, {.tombstone_key = {}, .page_events = 0}).error(), errc::invalid_argument);
  // A given key is used as it is.
  auto keyed = open_subject_store(other, {.tombstone_key = std::string(32, 'k'), .page_events = 1}).value();
  const profile_write one{.id = 1, .attributes = "{}", .identities = {}, .events = {}};
  ASSERT_TRUE(keyed->write("ws1", std::span(&one, 1)));
  EXPECT_EQ(keyed->erase("ws1", 1).value().identity_hashes.size(), 1u);
}

std::vector<backend> backends() {
  std::vector<backend> b{{"memory", [](const fs::path&) { return std::unique_ptr<storage>(std::make_unique<memory_storage>()); }}};
#if OPENDSR_HAVE_LMDB
  b.push_back({"lmdb", [](const fs::path& dir) -> std::unique_ptr<storage> {
                 // A small first map, so the 100,000 events also grow it.
                 auto s = lmdb_storage::open({.path = dir, .initial_map_size = std::size_t{1} << 20});
                 if (!s) return nullptr;
                 return std::move(*s);
               }});
#endif
  return b;
}

INSTANTIATE_TEST_SUITE_P(backends, subject_data_test, ::testing::ValuesIn(backends()), backend_name);

}  // namespace
}  // namespace opendsr
