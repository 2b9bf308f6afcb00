// Upgrading a store written by the engine before callback delivery (schema 1): the fixture is a
// dump of such a store (tests/fixtures/README.md says how it was made). Opening the current engine
// over it must move every queued callback into the schema-2 outbox, as it was, and lose nothing.
#include <opendsr/engine.hpp>
#include <opendsr/memory_storage.hpp>
#if OPENDSR_HAVE_LMDB
#include <opendsr/lmdb_storage.hpp>
#endif

#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace opendsr {
namespace {

using testing::at;
using testing::uuid_v4;

std::string unhex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

// The fixture's keys and values.
std::map<std::string, std::string> schema1_store() {
  std::ifstream in(std::string(OPENDSR_FIXTURES) + "/schema1_store.hex");
  EXPECT_TRUE(in) << "missing fixture";
  std::map<std::string, std::string> kv;
  std::string key, value;
  while (in >> key >> value) kv.emplace(unhex(key), unhex(value));
  return kv;
}

void load(storage& store, const std::map<std::string, std::string>& kv) {
  auto txn = store.begin_write().value();
  for (const auto& [k, v] : kv) ASSERT_TRUE(txn->put(k, v));
  ASSERT_TRUE(txn->commit());
}

// The schema-1 outbox of the fixture: (workspace/id ref, history, url) -> (due, url, body).
struct v1_callback {
  timestamp due;
  std::string url;
  std::string body;
};
std::map<std::tuple<std::string, int, int>, v1_callback> v1_outbox(const std::map<std::string, std::string>& kv) {
  std::map<std::tuple<std::string, int, int>, v1_callback> out;
  for (const auto& [k, v] : kv) {
    const auto parts = detail::keys::parse_outbox_v1_key(k);
    if (!parts) continue;
    // format byte, varint length (URLs here are short: one byte), URL, body
    const std::size_t url_size = static_cast<unsigned char>(v[1]);
    out[{std::string(parts->ref), parts->history_index, parts->url_index}] = {parts->due, v.substr(2, url_size),
                                                                               v.substr(2 + url_size)};
  }
  return out;
}

void expect_upgraded(storage& store) {
  const auto kv = schema1_store();
  const auto before = v1_outbox(kv);
  ASSERT_EQ(before.size(), 7u);
  ASSERT_EQ(kv.at(detail::keys::schema_key()), std::string(1, '\x01'));
  load(store, kv);

  engine e = engine::open(store, testing::test_options()).value();
  EXPECT_TRUE(testing::store_problems(store).empty()) << ::testing::PrintToString(testing::store_problems(store));
  {
    auto txn = store.begin_read().value();
    EXPECT_EQ(txn->get(detail::keys::schema_key()).value(), std::string_view(&detail::keys::schema_version, 1));
  }
  // Every callback is there, as it was: same URL, same bytes, first due at the same flush.
  std::size_t found = 0;
  for (const auto& [ws, id] : {std::pair("ws1", uuid_v4(1)), std::pair("ws1", uuid_v4(2)), std::pair("ws2", uuid_v4(3)),
                               std::pair("ws2", uuid_v4(4))}) {
    for (const auto& q : testing::queued_callbacks(store, ws, id)) {
      const auto it = before.find({detail::keys::request_ref(ws, id), q.history_index, q.url_index});
      ASSERT_NE(it, before.end());
      EXPECT_EQ(q.url, it->second.url);
      EXPECT_EQ(q.body, it->second.body);
      EXPECT_EQ(q.entry.first_due, it->second.due);
      EXPECT_EQ(q.entry.attempts, 0u);
      ++found;
    }
  }
  EXPECT_EQ(found, before.size());
  // The requests themselves are untouched.
  EXPECT_EQ(e.status("ws1", uuid_v4(1))->status, request_status::in_progress);
  EXPECT_EQ(e.status("ws2", uuid_v4(3))->status, request_status::cancelled);
  // And the outbox delivers: after the fixture's last flush everything goes out, each once, in
  // status order per request and URL.
  std::vector<std::string> sent;
  const timestamp now = at("2026-11-03T00:15:00Z");  // the flush after the fixture's last tick
  for (;;) {
    const auto claimed = e.claim_callbacks(now, 100, "upgrade-test").value();
    if (claimed.empty()) break;
    std::vector<callback_outcome> outcomes;
    for (const auto& c : claimed) {
      sent.push_back(c.body);
      outcomes.push_back({c.entry_key, c.lease, true, "sig", {}});
    }
    ASSERT_TRUE(e.record_callbacks(outcomes, now));
  }
  EXPECT_EQ(sent.size(), before.size());
  for (const auto& [key, cb] : before)
    EXPECT_EQ(std::count(sent.begin(), sent.end(), cb.body), 1) << cb.url;
  EXPECT_EQ(e.callback_queue()->queued, 0u);
  EXPECT_TRUE(testing::store_problems(store).empty());
  // Opening again finds schema 2 and changes nothing.
  EXPECT_TRUE(engine::open(store, testing::test_options()));
}

TEST(Migration, Schema1StoreUpgradesInPlaceOnTheMemoryAdapter) {
  memory_storage store;
  expect_upgraded(store);
}

#if OPENDSR_HAVE_LMDB
TEST(Migration, Schema1StoreUpgradesInPlaceOnLmdbAndSurvivesReopening) {
  const auto dir = std::filesystem::temp_directory_path() / ("opendsr-migration-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    auto store = lmdb_storage::open({.path = dir}).value();
    expect_upgraded(*store);
  }
  auto store = lmdb_storage::open({.path = dir}).value();
  EXPECT_TRUE(testing::store_problems(*store).empty());
  EXPECT_TRUE(engine::open(*store, testing::test_options()));
  std::filesystem::remove_all(dir);
}
#endif

}  // namespace
}  // namespace opendsr
