// Upgrading a store written by the engine before callback delivery (schema 1): the fixture is a
// dump of such a store (tests/fixtures/README.md says how it was made). Opening the current engine
// over it must move every queued callback into the schema-2 outbox, as it was, and lose nothing.
//
// Upgrading a store written before distribution (schema 3): schema 4 only adds the output,
// forward and batch tables, and a request record gains its distribution entries only when it is
// forwarded, so a store the current engine wrote without outputs, its schema key set back to 3,
// is a schema-3 store. Opening the current engine over it records version 4 and changes nothing
// else: requests, callbacks, fulfilment tasks and results links stay as they were.
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

using namespace std::chrono_literals;
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

// Every key and value of a store.
std::map<std::string, std::string> dump(storage& store) {
  std::map<std::string, std::string> kv;
  auto txn = store.begin_read().value();
  EXPECT_TRUE(txn->scan({}, {}, [&](std::string_view k, std::string_view v) {
    kv.emplace(k, v);
    return true;
  }));
  return kv;
}

void set_schema(storage& store, char version) {
  auto txn = store.begin_write().value();
  ASSERT_TRUE(txn->put(detail::keys::schema_key(), std::string(1, version)));
  ASSERT_TRUE(txn->commit());
}

// A store as the engine of schema 3 leaves it (no outputs), in fulfilment_mode::tasks: requests
// of every type with callbacks, one cancelled, one in progress with a task leased to a runner,
// one completed with a results link, callbacks delivered, queued and dead.
void write_schema3_store(storage& store) {
  engine_options o = testing::test_options();
  o.fulfilment.mode = fulfilment_mode::tasks;
  o.callbacks.max_attempts = 1;
  engine e = engine::open(store, o).value();
  const timestamp t0 = at("2026-11-02T10:00:00Z");
  using testing::make_body;
  ASSERT_TRUE(e.submit("ws1", make_body({.id = uuid_v4(1), .type = "erasure", .identities = {{"email", "a@example.com"}},
                                         .skip_waiting_period = true,
                                         .callback_urls = {"https://cb.example.com/one", "https://cb2.example.com/two"},
                                         .group_id = "g"}),
                       t0));
  ASSERT_TRUE(e.submit("ws1", make_body({.id = uuid_v4(2), .type = "access", .identities = {{"email", "b@example.com"}},
                                         .skip_waiting_period = true, .callback_urls = {"https://cb.example.com/one"}}),
                       t0));
  ASSERT_TRUE(e.submit("ws2", make_body({.id = uuid_v4(3), .type = "erasure",
                                         .identities = {{"email", "c@example.com"}, {"ios_advertising_id", "IDFA-3"}},
                                         .callback_urls = {"https://cb.example.com/three"}}),
                       t0));
  ASSERT_TRUE(e.submit("ws2", make_body({.id = uuid_v4(4), .type = "portability", .identities = {{"email", "d@example.com"}}}),
                       t0));
  ASSERT_TRUE(e.cancel("ws2", uuid_v4(3), t0 + 1h));
  const timestamp t1 = at("2026-11-05T00:00:01Z");
  ASSERT_TRUE(e.tick(t1));  // the skip-waiting erasure, and on Thursday access and portability, start
  // The access request completes with a results link; the other tasks stay leased.
  const auto jobs = e.claim_fulfilments(t1, 10, "runner").value();
  ASSERT_EQ(jobs.size(), 3u);
  for (const auto& c : jobs) {
    if (c.job.type != request_type::access) continue;
    ASSERT_TRUE(e.record_fulfilment({c.job.controller_id, c.job.subject_request_id, c.lease,
                                     fulfilment_done{"https://results.example/v3/results/" + c.job.results_token}},
                                    t1));
  }
  // Some callbacks delivered, one dead, the rest queued.
  const auto claimed = e.claim_callbacks(t1 + 15min, 3, "dispatcher").value();
  ASSERT_EQ(claimed.size(), 3u);
  std::vector<callback_outcome> outcomes;
  for (std::size_t i = 0; i < claimed.size(); ++i)
    outcomes.push_back({claimed[i].entry_key, claimed[i].lease, i != 0, "sig", i != 0 ? "" : "HTTP 500"});
  ASSERT_TRUE(e.record_callbacks(outcomes, t1 + 15min));
  ASSERT_EQ(e.dead_callbacks().value().size(), 1u);
  set_schema(store, detail::keys::schema_version_3);
}

TEST(Migration, Schema3StoreUpgradesToSchema4AndKeepsEverything) {
  memory_storage store;
  write_schema3_store(store);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  const auto before = dump(store);
  ASSERT_EQ(before.at(detail::keys::schema_key()), std::string(1, '\x03'));

  engine_options o = testing::test_options();
  o.fulfilment.mode = fulfilment_mode::tasks;
  o.callbacks.max_attempts = 1;
  engine e = engine::open(store, o).value();
  auto after = dump(store);
  EXPECT_EQ(after.at(detail::keys::schema_key()), std::string(1, detail::keys::schema_version));
  EXPECT_EQ(detail::keys::schema_version, 4);
  // Nothing else changed: every request, index, timer, callback, task and results link is as it was.
  after.erase(detail::keys::schema_key());
  auto expected = before;
  expected.erase(detail::keys::schema_key());
  EXPECT_EQ(after, expected);
  EXPECT_TRUE(testing::store_problems(store).empty()) << ::testing::PrintToString(testing::store_problems(store));

  // And the engine goes on from there.
  EXPECT_EQ(e.status("ws1", uuid_v4(1))->status, request_status::in_progress);
  EXPECT_EQ(e.status("ws1", uuid_v4(2))->status, request_status::completed);
  EXPECT_TRUE(e.status("ws1", uuid_v4(2))->results_url);
  EXPECT_EQ(e.status("ws2", uuid_v4(3))->status, request_status::cancelled);
  EXPECT_EQ(e.status("ws2", uuid_v4(4))->status, request_status::in_progress);
  EXPECT_TRUE(e.status("ws1", uuid_v4(1))->distribution.empty());  // submitted before distribution
  const auto tasks = e.fulfilment_tasks().value();
  EXPECT_EQ(tasks.size(), 2u);
  EXPECT_EQ(e.dead_callbacks().value().size(), 1u);
  EXPECT_EQ(e.redrive_callbacks(at("2026-11-05T01:00:00Z")).value(), 1u);
  EXPECT_GT(testing::deliver_due(e, at("2026-11-05T01:00:00Z")), 0u);
  EXPECT_EQ(e.callback_queue()->queued, 0u);
  EXPECT_TRUE(e.outputs()->empty());
  EXPECT_EQ(e.forward_queue()->queued, 0u);
  EXPECT_TRUE(testing::store_problems(store).empty());
  // Opening again finds schema 4 and changes nothing.
  const auto settled = dump(store);
  EXPECT_TRUE(engine::open(store, o));
  EXPECT_EQ(dump(store), settled);
}

TEST(Migration, AStoreOfALaterSchemaIsRefused) {
  memory_storage store;
  ASSERT_TRUE(engine::open(store, testing::test_options()));
  set_schema(store, static_cast<char>(detail::keys::schema_version + 1));
  const auto opened = engine::open(store, testing::test_options());
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), errc::storage_corrupt);
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
