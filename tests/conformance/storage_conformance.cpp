// The storage conformance suite (see storage_conformance.hpp). Each test states the part of the
// contract in <opendsr/storage.hpp> it checks.
#include "storage_conformance.hpp"

#include <opendsr/storage_wrapper.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace opendsr::conformance {

namespace fs = std::filesystem;

namespace {

// The value of a result the test needs; an error fails the test with its message (gtest reports
// an exception thrown by a test body as a failure of that test).
template <class T>
T ok(result<T> r, const char* what) {
  if (!r) throw std::runtime_error(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

void ok(result<void> r, const char* what) {
  if (!r) throw std::runtime_error(std::string(what) + ": " + r.error().message());
}

// The code a call failed with, or nullopt if it succeeded.
template <class T>
std::optional<errc> failure(const result<T>& r) {
  if (r) return std::nullopt;
  return r.error().code();
}

// Runs bodies on threads; an exception in one becomes a test failure instead of terminate().
class test_threads {
 public:
  template <class F>
  void spawn(F body) {
    threads_.emplace_back([this, body = std::move(body)] {
      try {
        body();
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        failures_.emplace_back(e.what());
      }
    });
  }

  // Waits for every thread; fails the test with each failure seen.
  void join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (const auto& f : failures_) ADD_FAILURE() << "in a thread: " << f;
  }

 private:
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::vector<std::string> failures_;
};

using kv = std::vector<std::pair<std::string, std::string>>;

kv scan_all(read_transaction& txn, std::string_view prefix, std::string_view from = {}) {
  kv out;
  ok(txn.scan(prefix, from,
              [&](std::string_view k, std::string_view v) {
                out.emplace_back(k, v);
                return true;
              }),
     "scan");
  return out;
}

std::optional<std::string> get(read_transaction& txn, std::string_view key) {
  auto v = ok(txn.get(key), "get");
  if (!v) return std::nullopt;
  return std::string(*v);
}

// The scan a correct store gives over `model`, computed the obvious way.
kv model_scan(const std::map<std::string, std::string>& model, std::string_view prefix,
              std::string_view from = {}) {
  kv out;
  for (const auto& [k, v] : model) {
    if (k.starts_with(prefix) && std::string_view(k) >= from) out.emplace_back(k, v);
  }
  return out;
}

}  // namespace

void storage_conformance::SetUp() {
  std::string pattern = (fs::temp_directory_path() / "opendsr-conformance-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr) << "cannot create a temporary directory";
  dir_ = pattern;
  ASSERT_TRUE(GetParam().open) << "storage_factory::open is empty";
  auto opened = GetParam().open(dir_);
  ASSERT_TRUE(opened) << opened.error().message();
  store_ = std::move(*opened);
}

void storage_conformance::TearDown() {
  store_.reset();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

void storage_conformance::reopen() {
  store_.reset();
  store_ = ok(GetParam().open(dir_), "reopen");
}

// A build with every storage adapter disabled instantiates nothing; that is not a failure.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(storage_conformance);

namespace {

std::unique_ptr<write_transaction> begin_write(storage& s) { return ok(s.begin_write(), "begin_write"); }
std::unique_ptr<read_transaction> begin_read(storage& s) { return ok(s.begin_read(), "begin_read"); }

void commit_all(storage& s, const std::map<std::string, std::string>& entries) {
  auto w = begin_write(s);
  for (const auto& [k, v] : entries) ok(w->put(k, v), "put");
  ok(w->commit(), "commit");
}

TEST_P(storage_conformance, StartsEmpty) {
  auto r = begin_read(store());
  EXPECT_TRUE(scan_all(*r, "").empty());
  EXPECT_EQ(get(*r, "a"), std::nullopt);
}

// A read transaction sees the state as of the last commit before it began.
TEST_P(storage_conformance, SnapshotIsIsolatedFromLaterCommits) {
  commit_all(store(), {{"a", "1"}, {"b", "2"}});
  auto before = begin_read(store());
  {
    auto w = begin_write(store());
    ok(w->put("a", "changed"), "put");
    EXPECT_TRUE(ok(w->erase("b"), "erase"));
    ok(w->put("c", "3"), "put");
    ok(w->commit(), "commit");
  }
  EXPECT_EQ(get(*before, "a"), "1");
  EXPECT_EQ(get(*before, "b"), "2");
  EXPECT_EQ(get(*before, "c"), std::nullopt);
  EXPECT_EQ(scan_all(*before, ""), (kv{{"a", "1"}, {"b", "2"}}));

  auto after = begin_read(store());
  EXPECT_EQ(scan_all(*after, ""), (kv{{"a", "changed"}, {"c", "3"}}));
  // A second commit while both snapshots live leaves each unchanged.
  commit_all(store(), {{"d", "4"}});
  EXPECT_EQ(scan_all(*before, ""), (kv{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(scan_all(*after, ""), (kv{{"a", "changed"}, {"c", "3"}}));
}

TEST_P(storage_conformance, SnapshotDoesNotSeeAnOpenWriteTransaction) {
  commit_all(store(), {{"a", "1"}});
  auto w = begin_write(store());
  ok(w->put("a", "2"), "put");
  ok(w->put("b", "2"), "put");
  auto during = begin_read(store());
  EXPECT_EQ(scan_all(*during, ""), (kv{{"a", "1"}}));
  ok(w->commit(), "commit");
  EXPECT_EQ(scan_all(*during, ""), (kv{{"a", "1"}}));
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"a", "2"}, {"b", "2"}}));
}

TEST_P(storage_conformance, WriteTransactionSeesItsOwnWrites) {
  commit_all(store(), {{"a", "1"}, {"b", "2"}, {"c", "3"}});
  auto w = begin_write(store());
  ok(w->put("b", "two"), "put");
  ok(w->put("bb", "new"), "put");
  EXPECT_TRUE(ok(w->erase("c"), "erase"));
  EXPECT_EQ(get(*w, "a"), "1");
  EXPECT_EQ(get(*w, "b"), "two");
  EXPECT_EQ(get(*w, "bb"), "new");
  EXPECT_EQ(get(*w, "c"), std::nullopt);
  EXPECT_EQ(scan_all(*w, ""), (kv{{"a", "1"}, {"b", "two"}, {"bb", "new"}}));
  EXPECT_EQ(scan_all(*w, "b"), (kv{{"b", "two"}, {"bb", "new"}}));
  ok(w->put("c", "again"), "put");
  EXPECT_EQ(get(*w, "c"), "again");
  ok(w->put("b", "overwritten twice"), "put");
  EXPECT_EQ(get(*w, "b"), "overwritten twice");
  ok(w->commit(), "commit");
  EXPECT_EQ(scan_all(*begin_read(store()), ""),
            (kv{{"a", "1"}, {"b", "overwritten twice"}, {"bb", "new"}, {"c", "again"}}));
}

// Destroying a write transaction that was not committed leaves nothing behind, and frees the
// writer for the next one.
TEST_P(storage_conformance, DestroyingAnUncommittedWriteLeavesNothing) {
  commit_all(store(), {{"a", "1"}, {"b", "2"}});
  {
    auto w = begin_write(store());
    ok(w->put("a", "lost"), "put");
    ok(w->put("z", "lost"), "put");
    EXPECT_TRUE(ok(w->erase("b"), "erase"));
  }
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"a", "1"}, {"b", "2"}}));
  commit_all(store(), {{"c", "3"}});
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
}

TEST_P(storage_conformance, EraseReturnsWhetherTheKeyWasPresent) {
  commit_all(store(), {{"committed", "1"}});
  auto w = begin_write(store());
  EXPECT_FALSE(ok(w->erase("absent"), "erase"));
  EXPECT_TRUE(ok(w->erase("committed"), "erase"));
  EXPECT_FALSE(ok(w->erase("committed"), "erase"));
  ok(w->put("own", "x"), "put");
  EXPECT_TRUE(ok(w->erase("own"), "erase"));
  EXPECT_FALSE(ok(w->erase("own"), "erase"));
  ok(w->put("committed", "back"), "put");
  EXPECT_TRUE(ok(w->erase("committed"), "erase"));
  ok(w->put("committed", "back again"), "put");
  ok(w->commit(), "commit");
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"committed", "back again"}}));
}

// Keys order as unsigned bytes, a key before every longer key it is a prefix of; a scan visits
// exactly the keys with its prefix, in that order.
TEST_P(storage_conformance, ScansOrderKeysBytewiseAcrossNeighbouringPrefixes) {
  using namespace std::string_literals;
  const std::vector<std::string> keys = {
      "a"s,        "a\x00"s,     "a\x00\x00"s, "a\x00\x01"s, "a\x01"s,   "a\x7f"s,
      "a\x80"s,    "a\xff"s,     "a\xff\x00"s, "a\xff\xff"s, "ab"s,      "abc"s,
      "abd"s,      "b"s,         "\x00"s,      "\x00\x00"s,  "\x00\xff"s, "\x01"s,
      "\xff"s,     "\xff\xff"s,  "\xff\xff\xff"s, "req/1"s,  "req/10"s,  "req/2"s,
      "req0"s,     "req."s,      "rep/1"s,
  };
  std::map<std::string, std::string> model;
  for (std::size_t i = 0; i < keys.size(); ++i) model[keys[i]] = "v" + std::to_string(i);
  commit_all(store(), model);

  const std::vector<std::string> prefixes = {
      ""s, "a"s, "a\x00"s, "a\x00\x00"s, "a\xff"s, "a\xff\xff"s, "ab"s, "abc"s, "abcd"s,
      "b"s, "c"s, "\x00"s, "\xff"s, "\xff\xff"s, "\xff\xff\xff\xff"s, "req/"s, "req"s, "re"s,
  };
  auto r = begin_read(store());
  for (const std::string& prefix : prefixes) {
    EXPECT_EQ(scan_all(*r, prefix), model_scan(model, prefix)) << "prefix of size " << prefix.size();
  }
  // The same holds in a write transaction over its own writes and erasures.
  auto w = begin_write(store());
  ok(w->put("a\x00\x02"s, "own"), "put");
  ok(w->put("a\xff\x01"s, "own"), "put");
  EXPECT_TRUE(ok(w->erase("a\x00"s), "erase"));
  EXPECT_TRUE(ok(w->erase("\xff\xff"s), "erase"));
  model["a\x00\x02"s] = "own";
  model["a\xff\x01"s] = "own";
  model.erase("a\x00"s);
  model.erase("\xff\xff"s);
  for (const std::string& prefix : prefixes) {
    EXPECT_EQ(scan_all(*w, prefix), model_scan(model, prefix)) << "prefix of size " << prefix.size();
  }
}

TEST_P(storage_conformance, ScanStartsAtFromAndStopsWhenTheVisitorSaysSo) {
  std::map<std::string, std::string> model;
  for (char c = 'a'; c <= 'j'; ++c) model[std::string("k/") + c] = std::string(1, c);
  model["j"] = "outside";
  model["k"] = "outside";
  model["l/a"] = "outside";
  commit_all(store(), model);
  auto r = begin_read(store());

  EXPECT_EQ(scan_all(*r, "k/", "k/d"), model_scan(model, "k/", "k/d"));  // a stored key
  EXPECT_EQ(scan_all(*r, "k/", "k/dd"), model_scan(model, "k/", "k/dd"));  // between two keys
  EXPECT_EQ(scan_all(*r, "k/", "a"), model_scan(model, "k/"));  // before the prefix
  EXPECT_EQ(scan_all(*r, "k/", "k/j"), (kv{{"k/j", "j"}}));
  EXPECT_TRUE(scan_all(*r, "k/", "k/z").empty());
  EXPECT_TRUE(scan_all(*r, "k/", "l").empty());  // past the prefix

  kv seen;
  ok(r->scan("k/", "k/c",
             [&](std::string_view k, std::string_view v) {
               seen.emplace_back(k, v);
               return seen.size() < 3;
             }),
     "scan");
  EXPECT_EQ(seen, (kv{{"k/c", "c"}, {"k/d", "d"}, {"k/e", "e"}}));
}

TEST_P(storage_conformance, TheScanVisitorMayReadThroughTheTransaction) {
  commit_all(store(), {{"index/1", "record/b"}, {"index/2", "record/a"}, {"record/a", "A"},
                       {"record/b", "B"}});
  auto check = [&](read_transaction& txn) {
    std::string joined;
    ok(txn.scan("index/", "",
                [&](std::string_view, std::string_view target) {
                  joined += get(txn, target).value_or("?");
                  return true;
                }),
       "scan");
    EXPECT_EQ(joined, "BA");
  };
  check(*begin_read(store()));
  check(*begin_write(store()));
}

TEST_P(storage_conformance, ReadViewsStayValidForTheTransaction) {
  commit_all(store(), {{"a", std::string(1000, 'a')}, {"b", "short"}});
  auto r = begin_read(store());
  auto a = ok(r->get("a"), "get");
  auto b = ok(r->get("b"), "get");
  ok(r->scan("", "", [](std::string_view, std::string_view) { return true; }), "scan");
  commit_all(store(), {{"a", "changed"}, {"b", "changed"}});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, std::string(1000, 'a'));
  EXPECT_EQ(*b, "short");
}

TEST_P(storage_conformance, LargeValuesRoundTrip) {
  std::mt19937 rng(7);
  std::map<std::string, std::string> model;
  for (std::size_t mib : {1, 3, 8}) {
    std::string value(mib << 20, '\0');
    for (char& c : value) c = static_cast<char>(rng());
    model["large/" + std::to_string(mib)] = std::move(value);
  }
  commit_all(store(), model);
  auto r = begin_read(store());
  for (const auto& [k, v] : model) EXPECT_TRUE(get(*r, k) == v) << k;
  EXPECT_TRUE(scan_all(*r, "large/") == model_scan(model, "large/"));
}

TEST_P(storage_conformance, EmptyValuesArePresent) {
  commit_all(store(), {{"empty", ""}, {"full", "x"}});
  auto r = begin_read(store());
  auto v = ok(r->get("empty"), "get");
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->empty());
  EXPECT_EQ(scan_all(*r, ""), (kv{{"empty", ""}, {"full", "x"}}));
  auto w = begin_write(store());
  EXPECT_TRUE(ok(w->erase("empty"), "erase"));
}

TEST_P(storage_conformance, KeysOfMaxKeySizeAreAcceptedAndLongerOrEmptyOnesRejected) {
  const std::string longest_a(storage::max_key_size, 'a');
  std::string longest_b = longest_a;
  longest_b.back() = 'b';
  const std::string too_long(storage::max_key_size + 1, 'a');

  auto w = begin_write(store());
  ok(w->put(longest_b, "b"), "put");
  ok(w->put(longest_a, "a"), "put");
  for (std::string_view bad : {std::string_view(), std::string_view(too_long)}) {
    EXPECT_EQ(failure(w->put(bad, "x")), errc::invalid_argument) << bad.size();
    EXPECT_EQ(failure(w->get(bad)), errc::invalid_argument) << bad.size();
    EXPECT_EQ(failure(w->erase(bad)), errc::invalid_argument) << bad.size();
  }
  auto visit_nothing = [](std::string_view, std::string_view) { return true; };
  EXPECT_EQ(failure(w->scan(too_long, "", visit_nothing)), errc::invalid_argument);
  EXPECT_EQ(failure(w->scan("", too_long, visit_nothing)), errc::invalid_argument);
  // A rejected call leaves the transaction usable.
  ok(w->commit(), "commit");

  auto r = begin_read(store());
  EXPECT_EQ(scan_all(*r, ""), (kv{{longest_a, "a"}, {longest_b, "b"}}));
  EXPECT_EQ(get(*r, longest_b), "b");
  EXPECT_EQ(failure(r->get("")), errc::invalid_argument);
  EXPECT_EQ(failure(r->get(too_long)), errc::invalid_argument);
  EXPECT_EQ(failure(r->scan(too_long, "", visit_nothing)), errc::invalid_argument);
}

TEST_P(storage_conformance, CallsAfterCommitAreRejected) {
  auto w = begin_write(store());
  ok(w->put("a", "1"), "put");
  ok(w->commit(), "commit");
  EXPECT_EQ(failure(w->put("b", "2")), errc::invalid_argument);
  EXPECT_EQ(failure(w->get("a")), errc::invalid_argument);
  EXPECT_EQ(failure(w->commit()), errc::invalid_argument);
  w.reset();
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"a", "1"}}));
}

TEST_P(storage_conformance, ManyKeys) {
  constexpr int count = 100'000;
  constexpr int per_txn = 10'000;
  auto key = [](int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "many/%08d", i);
    return std::string(buf);
  };
  // Insert in a scrambled order so the store, not the order of puts, sorts them.
  std::vector<int> order(count);
  for (int i = 0; i < count; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(11));
  for (int start = 0; start < count; start += per_txn) {
    auto w = begin_write(store());
    for (int i = start; i < start + per_txn; ++i) ok(w->put(key(order[i]), std::to_string(order[i])), "put");
    ok(w->commit(), "commit");
  }
  auto r = begin_read(store());
  int expected = 0;
  bool in_order = true;
  ok(r->scan("many/", "",
             [&](std::string_view k, std::string_view v) {
               in_order = in_order && k == key(expected) && v == std::to_string(expected);
               ++expected;
               return true;
             }),
     "scan");
  EXPECT_TRUE(in_order);
  EXPECT_EQ(expected, count);
  for (int i = 0; i < count; i += 997) EXPECT_EQ(get(*r, key(i)), std::to_string(i));
  EXPECT_EQ(get(*r, "many/"), std::nullopt);
}

// commit() makes all of a transaction's writes visible at once: a reader racing with the writer
// sees every batch entirely or not at all, and each snapshot stays consistent while it lives.
TEST_P(storage_conformance, ConcurrentReadersSeeWholeCommits) {
  constexpr int batches = 60;
  constexpr int per_batch = 50;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  test_threads readers;
  for (int i = 0; i < 3; ++i) {
    readers.spawn([&] {
      while (!done.load()) {
        auto r = begin_read(store());
        auto count_keys = [&] {
          int n = 0;
          ok(r->scan("batch/", "", [&](std::string_view, std::string_view) { return ++n, true; }),
             "scan");
          return n;
        };
        const int first = count_keys();
        const int committed = std::stoi(get(*r, "committed").value_or("0"));
        if (first != committed * per_batch || count_keys() != first) ++torn;
      }
    });
  }
  for (int b = 1; b <= batches; ++b) {
    auto w = begin_write(store());
    for (int i = 0; i < per_batch; ++i)
      ok(w->put("batch/" + std::to_string(b) + "/" + std::to_string(i), "x"), "put");
    ok(w->put("committed", std::to_string(b)), "put");
    ok(w->commit(), "commit");
  }
  done = true;
  readers.join();
  EXPECT_EQ(torn.load(), 0);
}

// Concurrent read-modify-write transactions serialize: either begin_write() waits for the
// previous writer, or commit() reports errc::storage_conflict and the caller re-runs.
TEST_P(storage_conformance, ConcurrentWritersSerialize) {
  constexpr int threads = 4;
  constexpr int increments = 40;
  test_threads writers;
  for (int t = 0; t < threads; ++t) {
    writers.spawn([&] {
      for (int i = 0; i < increments; ++i) {
        for (;;) {
          auto w = begin_write(store());
          const int n = std::stoi(get(*w, "counter").value_or("0"));
          ok(w->put("counter", std::to_string(n + 1)), "put");
          auto committed = w->commit();
          if (committed) break;
          if (committed.error() != errc::storage_conflict) ok(std::move(committed), "commit");
        }
      }
    });
  }
  writers.join();
  EXPECT_EQ(get(*begin_read(store()), "counter"), std::to_string(threads * increments));
}

// Random histories of overlapping readers and committed or abandoned writes: every transaction
// sees exactly what a model of the contract says it should.
TEST_P(storage_conformance, RandomHistoriesMatchAModel) {
  using model = std::map<std::string, std::string>;
  std::mt19937 rng(2024);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto random_key = [&] {
    static const char* const stems[] = {"a", "a\x00", "a\xff", "ab", "b", "b/", "\xff"};
    return std::string(stems[pick(7)]) + std::string(static_cast<std::size_t>(pick(3)), 'x');
  };
  model committed;
  std::vector<std::pair<std::unique_ptr<read_transaction>, model>> readers;
  for (int step = 0; step < 300; ++step) {
    const int action = pick(10);
    if (action < 3) {
      readers.emplace_back(begin_read(store()), committed);
    } else if (action < 5 && !readers.empty()) {
      readers.erase(readers.begin() + pick(static_cast<int>(readers.size())));
    } else {
      auto w = begin_write(store());
      model seen = committed;
      for (int n = pick(6) + 1; n > 0; --n) {
        std::string key = random_key();
        if (pick(3) == 0) {
          EXPECT_EQ(ok(w->erase(key), "erase"), seen.erase(key) == 1) << "step " << step;
        } else {
          std::string value = std::to_string(step) + "/" + std::to_string(n);
          ok(w->put(key, value), "put");
          seen[key] = value;
        }
      }
      const std::string prefix = random_key().substr(0, static_cast<std::size_t>(pick(3)));
      EXPECT_EQ(scan_all(*w, prefix), model_scan(seen, prefix)) << "step " << step;
      if (pick(4) != 0) {
        ok(w->commit(), "commit");
        committed = std::move(seen);
      }
    }
    for (auto& [txn, expected] : readers) {
      const std::string prefix = random_key().substr(0, static_cast<std::size_t>(pick(3)));
      EXPECT_EQ(scan_all(*txn, prefix), model_scan(expected, prefix)) << "step " << step;
      const std::string key = random_key();
      auto it = expected.find(key);
      EXPECT_EQ(get(*txn, key), it == expected.end() ? std::nullopt : std::optional(it->second))
          << "step " << step;
    }
  }
  readers.clear();
  EXPECT_EQ(scan_all(*begin_read(store()), ""), model_scan(committed, ""));
}

// A transaction is used by one thread at a time, not necessarily the one that began it.
TEST_P(storage_conformance, ReadTransactionsMoveBetweenThreadsAndNest) {
  commit_all(store(), {{"a", "1"}});
  auto outer = begin_read(store());
  auto inner = begin_read(store());  // two open on one thread
  std::optional<std::string> seen;
  std::thread([&] { seen = get(*outer, "a"); }).join();
  EXPECT_EQ(seen, "1");
  EXPECT_EQ(get(*inner, "a"), "1");
  std::thread([&] { inner.reset(); }).join();
  outer.reset();
  commit_all(store(), {{"b", "2"}});
}

// A decorator overrides only commit() and fails it with a conflict, as a store with concurrent
// writers may: the writes must not appear, and re-running the transaction succeeds.
class conflict_once final : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;

  result<std::unique_ptr<write_transaction>> begin_write() override {
    auto txn = storage_wrapper::begin_write();
    if (!txn) return std::move(txn).error();
    return std::unique_ptr<write_transaction>(
        std::make_unique<transaction>(std::move(*txn), conflicts_left_));
  }

  int conflicts_left_ = 1;

 private:
  class transaction final : public write_transaction_wrapper {
   public:
    transaction(std::unique_ptr<write_transaction> target, int& conflicts_left)
        : write_transaction_wrapper(std::move(target)), conflicts_left_(conflicts_left) {}
    result<void> commit() override {
      if (conflicts_left_ > 0) {
        --conflicts_left_;
        return error(errc::storage_conflict, "injected conflict");
      }
      return write_transaction_wrapper::commit();
    }

   private:
    int& conflicts_left_;
  };
};

TEST_P(storage_conformance, AFailedCommitLeavesNothingAndTheRetrySucceeds) {
  commit_all(store(), {{"a", "1"}});
  conflict_once faulty(store());
  int attempts = 0;
  for (;;) {
    ++attempts;
    auto w = begin_write(faulty);
    ok(w->put("a", "2"), "put");
    ok(w->put("b", "2"), "put");
    auto committed = w->commit();
    if (committed) break;
    ASSERT_EQ(committed.error(), errc::storage_conflict);
    w.reset();
    EXPECT_EQ(scan_all(*begin_read(faulty), ""), (kv{{"a", "1"}}));
  }
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(scan_all(*begin_read(store()), ""), (kv{{"a", "2"}, {"b", "2"}}));
}

// Durable adapters: what was committed survives closing and opening the store again; what was
// not committed does not.
TEST_P(storage_conformance, ReopenFindsEverythingCommitted) {
  if (!GetParam().durable) GTEST_SKIP() << GetParam().name << " is not durable";
  std::map<std::string, std::string> model;
  for (int i = 0; i < 1000; ++i) model["k/" + std::to_string(i)] = std::string(i % 300, 'v');
  model["big"] = std::string(3 << 20, 'b');
  commit_all(store(), model);
  {
    auto w = begin_write(store());
    EXPECT_TRUE(ok(w->erase("k/7"), "erase"));
    ok(w->commit(), "commit");
    model.erase("k/7");
  }
  {
    auto w = begin_write(store());
    ok(w->put("uncommitted", "x"), "put");
  }
  reopen();
  EXPECT_TRUE(scan_all(*begin_read(store()), "") == model_scan(model, ""));
  commit_all(store(), {{"after", "reopen"}});
  reopen();
  EXPECT_EQ(get(*begin_read(store()), "after"), "reopen");
}

}  // namespace
}  // namespace opendsr::conformance
