// lmdb_storage::scrub_free_pages on real LMDB files (durable mode): an erased value's bytes are
// in data.mdb after the erasing commit (LMDB copies pages on write) and are gone after a scrub;
// everything else reads back as before; a reader's snapshot holds its pages until it ends.
#include <opendsr/lmdb_storage.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

namespace opendsr {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view secret = "scrub-me-4f1c9@example.com";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Whether the file holds the secret, or any 8-byte piece of it (a value split across pages,
// or half overwritten, still leaks).
bool holds_secret(const fs::path& p) {
  const std::string bytes = read_file(p);
  for (std::size_t at = 0; at + 8 <= secret.size(); ++at)
    if (bytes.find(secret.substr(at, 8)) != std::string::npos) return true;
  return false;
}

// Counts the lines of `strings` over the file that hold the secret's local part; -1 if
// `strings` is missing.
int strings_hits(const fs::path& p) {
  const std::string cmd = "strings -a '" + p.string() + "' 2>/dev/null | grep -c scrub-me";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  int hits = -1;
  if (std::fscanf(pipe, "%d", &hits) != 1) hits = -1;
  ::pclose(pipe);
  return hits;
}

class lmdb_scrub_test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "opendsr-scrub-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    store_.reset();
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  fs::path dir() const { return root_ / "store"; }
  fs::path data() const { return dir() / "data.mdb"; }
  fs::path lock() const { return dir() / "lock.mdb"; }

  void open() {
    store_.reset();
    auto s = lmdb_storage::open({.path = dir(), .initial_map_size = std::size_t{64} << 20,
                                 .sync = sync_mode::durable});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }

  void write(const std::map<std::string, std::string>& puts) {
    auto w = store_->begin_write();
    ASSERT_TRUE(w) << w.error().message();
    for (const auto& [k, v] : puts) ASSERT_TRUE((*w)->put(k, v));
    auto c = (*w)->commit();
    ASSERT_TRUE(c) << c.error().message();
  }

  void erase(const std::map<std::string, std::string>& keys) {
    auto w = store_->begin_write();
    ASSERT_TRUE(w) << w.error().message();
    for (const auto& kv : keys) ASSERT_TRUE(*(*w)->erase(kv.first));
    auto c = (*w)->commit();
    ASSERT_TRUE(c) << c.error().message();
  }

  // Every key and value in the store, as a scan through the storage seam sees them.
  std::map<std::string, std::string> contents() {
    std::map<std::string, std::string> all;
    auto r = store_->begin_read();
    EXPECT_TRUE(r);
    if (!r) return all;
    EXPECT_TRUE((*r)->scan("", "", [&](std::string_view k, std::string_view v) {
      all.emplace(k, v);
      return true;
    }));
    return all;
  }

  lmdb_storage::scrub_report scrub() {
    auto report = store_->scrub_free_pages();
    EXPECT_TRUE(report) << report.error().message();
    return report ? *report : lmdb_storage::scrub_report{};
  }

  fs::path root_;
  std::unique_ptr<lmdb_storage> store_;
};

// A profile's worth of identity values under one subject, many small records and one big one
// (LMDB keeps it on overflow pages), beside data that stays.
std::map<std::string, std::string> subject_records() {
  std::map<std::string, std::string> m;
  for (int i = 0; i < 300; ++i)
    m["subject/42/identity/" + std::to_string(1000 + i)] =
        "{\"email\":\"" + std::string(secret) + "\",\"n\":" + std::to_string(i) + "}";
  std::string big;
  while (big.size() < 200'000) big += std::string(secret) + ";";
  m["subject/42/profile"] = big;
  return m;
}

std::map<std::string, std::string> kept_records() {
  std::map<std::string, std::string> m;
  for (int i = 0; i < 300; ++i)
    m["other/" + std::to_string(1000 + i)] = "kept-value-" + std::to_string(i);
  m["zz/big"] = std::string(50'000, 'k');
  return m;
}

TEST_F(lmdb_scrub_test, erased_values_leave_no_bytes_in_the_files) {
  open();
  const auto kept = kept_records();
  write(kept);
  write(subject_records());
  erase(subject_records());

  // Without a scrub the erased values are still in the file: the test can fail.
  ASSERT_TRUE(holds_secret(data()));
  const auto size_before = fs::file_size(data());

  const auto report = scrub();
  EXPECT_GT(report.pages_scrubbed, 50u);  // the big value alone took 49 pages
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_FALSE(holds_secret(lock()));
  if (const int hits = strings_hits(data()); hits >= 0) {
    EXPECT_EQ(hits, 0);
  }

  // Nothing else changed, and the scrub's own commit left no key behind.
  EXPECT_EQ(contents(), kept);
  // The file did not grow, beyond the few pages of one commit.
  EXPECT_LE(fs::file_size(data()), size_before + 8 * 4096);

  // The store reopens cleanly, with the same contents.
  open();
  EXPECT_EQ(contents(), kept);
  EXPECT_FALSE(holds_secret(data()));
}

// Secret and kept records interleaved in key order, so that the leaves the erasure rewrites
// also hold records that stay.
TEST_F(lmdb_scrub_test, erased_values_interleaved_with_kept_ones_leave_no_bytes) {
  open();
  std::map<std::string, std::string> kept;
  std::map<std::string, std::string> erased;
  for (int i = 0; i < 400; ++i) {
    const std::string key = "k/" + std::to_string(10000 + i);
    if (i % 2 == 0)
      kept[key] = "kept-" + std::to_string(i);
    else
      erased[key] = std::string(secret) + "/" + std::to_string(i);
  }
  auto both = kept;
  both.insert(erased.begin(), erased.end());
  write(both);
  erase(erased);
  ASSERT_TRUE(holds_secret(data()));

  scrub();
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_EQ(contents(), kept);
}

TEST_F(lmdb_scrub_test, a_reader_holds_its_pages_until_it_ends) {
  open();
  write(kept_records());
  write(subject_records());
  // A snapshot that still sees the subject's records.
  auto reader = store_->begin_read();
  ASSERT_TRUE(reader);
  erase(subject_records());

  lmdb_storage::scrub_report held;
  // scrub_free_pages() wants a thread that holds no transaction.
  std::thread([&] { held = scrub(); }).join();
  EXPECT_GT(held.pages_held, 50u);
  EXPECT_TRUE(holds_secret(data()));  // the reader may still read those pages
  auto seen = (*reader)->get("subject/42/profile");
  ASSERT_TRUE(seen);
  ASSERT_TRUE(*seen);
  EXPECT_EQ(**seen, subject_records()["subject/42/profile"]);

  reader->reset();
  const auto report = scrub();
  EXPECT_GT(report.pages_scrubbed, 50u);
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_EQ(contents(), kept_records());
}

TEST_F(lmdb_scrub_test, an_empty_free_list_is_a_no_op_without_a_commit) {
  open();
  auto report = scrub();  // a new store
  EXPECT_EQ(report.pages_scrubbed, 0u);
  EXPECT_EQ(report.pages_held, 0u);

  write(kept_records());  // one commit on an empty store frees no page
  const std::string before = read_file(data());
  report = scrub();
  EXPECT_EQ(report.pages_scrubbed, 0u);
  EXPECT_EQ(report.pages_held, 0u);
  EXPECT_EQ(read_file(data()), before);  // not a byte written: no commit, no zeros
  EXPECT_EQ(contents(), kept_records());
}

// The scrub's no-change commit puts a key's own value back when its key is taken.
TEST_F(lmdb_scrub_test, a_key_the_scrub_commit_touches_keeps_its_value) {
  open();
  auto kept = kept_records();
  kept[std::string(storage::max_key_size, '\xff')] = "the last key there can be";
  write(kept);
  write(subject_records());
  erase(subject_records());
  scrub();
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_EQ(contents(), kept);
}

TEST_F(lmdb_scrub_test, scrubbing_twice_is_harmless) {
  open();
  write(kept_records());
  write(subject_records());
  erase(subject_records());
  scrub();
  const auto size = fs::file_size(data());
  for (int i = 0; i < 5; ++i) scrub();
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_EQ(contents(), kept_records());
  EXPECT_LE(fs::file_size(data()), size + 8 * 4096);
}

// The bug a running opendsrd showed: write transactions that come after an erasure (callback
// claims, records) write pages whose free space LMDB fills from page buffers it reused, and in
// its default mode those buffers still held the erased records, so every commit could write
// erased bytes back into the file after a scrub had cleared them. Here records holding the secret
// in keys and values (small ones, one on a single overflow page, one on many) are erased, then
// other transactions put and erase keys sorted right beside them (the same leaves) before a
// scrub, between scrubs and after: no byte of the secret may be in the files after the last
// scrub, and with no reader open the scrub holds no page back.
TEST_F(lmdb_scrub_test, writes_after_an_erasure_bring_no_erased_byte_back) {
  open();
  std::map<std::string, std::string> kept;
  std::map<std::string, std::string> erased;
  for (int i = 0; i < 200; ++i) {
    kept["idx/" + std::to_string(10000 + 2 * i)] = "neighbour-" + std::to_string(i);
    erased["idx/" + std::to_string(10001 + 2 * i) + "/" + std::string(secret)] =
        "{\"email\":\"" + std::string(secret) + "\",\"n\":" + std::to_string(i) + "}";
  }
  std::string one_page;  // a value on one overflow page
  while (one_page.size() < 3000) one_page += std::string(secret) + ";";
  erased["idx/10100/one-page"] = one_page;
  std::string many_pages;
  while (many_pages.size() < 100'000) many_pages += std::string(secret) + ";";
  erased["idx/10200/many-pages"] = many_pages;
  write(kept);
  write(erased);
  erase(erased);
  ASSERT_TRUE(holds_secret(data()));

  // Unrelated transactions that rewrite the same leaves: new keys between the erased ones'
  // places, changed neighbours, erased neighbours.
  int round = 0;
  auto churn = [&](int transactions) {
    for (int t = 0; t < transactions; ++t, ++round) {
      std::map<std::string, std::string> puts;
      for (int i = 0; i < 40; ++i) {
        const int at = 10000 + (round * 37 + i * 11) % 400;
        puts["idx/" + std::to_string(at) + "/later-" + std::to_string(round)] =
            "later-value-" + std::to_string(round) + "-" + std::to_string(i);
        puts["idx/" + std::to_string(at - at % 2)] = "changed-" + std::to_string(round);
      }
      // Values on overflow runs, whose last page's tail LMDB does not clear.
      puts["idx/10150/later-big-" + std::to_string(round)] = std::string(2500 + 700 * t, 'o');
      write(puts);
      for (const auto& kv : puts) kept[kv.first] = kv.second;
      if (round % 3 == 2) {
        std::map<std::string, std::string> gone;
        for (auto it = kept.begin(); it != kept.end() && gone.size() < 10; ++it)
          if (it->first.find("/later-") != std::string::npos) gone.insert(*it);
        erase(gone);
        for (const auto& kv : gone) kept.erase(kv.first);
      }
    }
  };
  churn(6);
  scrub();
  churn(6);
  const auto report = scrub();
  EXPECT_EQ(report.pages_held, 0u);
  EXPECT_FALSE(holds_secret(data()));
  EXPECT_FALSE(holds_secret(lock()));
  if (const int hits = strings_hits(data()); hits >= 0) {
    EXPECT_EQ(hits, 0);
  }
  EXPECT_EQ(contents(), kept);

  // And once more: after a scrub, later writes alone bring nothing back.
  churn(6);
  EXPECT_FALSE(holds_secret(data()));
  open();
  EXPECT_EQ(contents(), kept);
}

}  // namespace
}  // namespace opendsr
