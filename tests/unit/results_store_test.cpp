// The results store seam (<opendsr/results_store.hpp>) on its files adapter.
#include <opendsr/results_files_store.hpp>
#include <opendsr/results_store.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;

// The byte at `offset` of the package numbered `seed`: a pattern the tests check without keeping
// the whole package in memory.
char pattern_byte(std::uint64_t seed, std::uint64_t offset) {
  return static_cast<char>((offset * 131 + seed * 7 + (offset >> 12)) & 0xff);
}

std::string pattern(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = pattern_byte(seed, offset + i);
  return s;
}

// Writes `size` pattern bytes in chunks of `chunk`.
void write_pattern(results_writer& writer, std::uint64_t seed, std::uint64_t size, std::size_t chunk) {
  for (std::uint64_t at = 0; at < size; at += chunk) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - at));
    ASSERT_TRUE(writer.append(pattern(seed, at, n)));
  }
}

// Reads the package in chunks of `chunk` and checks it is `size` pattern bytes.
void expect_pattern(results_reader& reader, std::uint64_t seed, std::uint64_t size, std::size_t chunk) {
  ASSERT_EQ(reader.size(), size);
  std::vector<char> buffer(chunk);
  std::uint64_t at = 0;
  for (;;) {
    auto n = reader.read(buffer);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    ASSERT_LE(*n, chunk);
    if (at + *n < size) {
      ASSERT_EQ(*n, chunk) << "a short read before the end";
    }
    for (std::size_t i = 0; i < *n; ++i)
      ASSERT_EQ(buffer[i], pattern_byte(seed, at + i)) << "byte " << at + i;
    at += *n;
  }
  EXPECT_EQ(at, size);
}

std::string new_token() {
  auto t = make_results_token();
  EXPECT_TRUE(t);
  return t ? *t : std::string();
}

class ResultsStore : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "opendsr-results-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    directory_ = root_ / "results";
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  results_files_store& store() {
    if (!store_) reopen();
    return *store_;
  }
  void reopen() {
    store_.reset();
    auto s = results_files_store::open_directory({directory_});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }
  // The names in the store's directory other than its lock file.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(directory_))
      if (e.path().filename() != ".lock") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path root_, directory_;
  std::unique_ptr<results_files_store> store_;
};

TEST(ResultsToken, HasTheDocumentedForm) {
  auto t = make_results_token();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), results_token_size);
  EXPECT_EQ(results_token_size, 32u);
  EXPECT_GE(results_token_bytes * 8, 128u);
  EXPECT_TRUE(is_results_token(*t));
  EXPECT_EQ(t->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos);
}

TEST(ResultsToken, UniqueOverAHundredThousandDraws) {
  std::unordered_set<std::string> seen;
  seen.reserve(100'000);
  for (int i = 0; i < 100'000; ++i) {
    auto t = make_results_token();
    ASSERT_TRUE(t);
    ASSERT_TRUE(seen.insert(*t).second) << "draw " << i << " repeated a token";
  }
}

TEST(ResultsToken, RefusesWhatIsNotAToken) {
  const std::string good(results_token_size, 'A');
  EXPECT_TRUE(is_results_token(good));
  for (std::string bad : {std::string(), std::string("../x"), std::string(results_token_size - 1, 'A'),
                          std::string(results_token_size + 1, 'A'), "../" + std::string(results_token_size - 3, 'A'),
                          "a/" + std::string(results_token_size - 2, 'A'), std::string(results_token_size, '.'),
                          std::string(results_token_size - 1, 'A') + "=", std::string(results_token_size - 1, 'A') + "+",
                          std::string(results_token_size - 1, 'A') + '\0', std::string(".lock")})
    EXPECT_FALSE(is_results_token(bad)) << bad;
}

TEST_F(ResultsStore, RoundTripsAMultiMegabytePackageInSmallChunks) {
  const std::string token = new_token();
  const std::uint64_t size = 8 * 1024 * 1024 + 12345;
  auto writer = store().begin(token);
  ASSERT_TRUE(writer) << writer.error().message();
  write_pattern(**writer, 1, size, 4093);
  EXPECT_EQ((*writer)->size(), size);
  auto committed = (*writer)->commit();
  ASSERT_TRUE(committed) << committed.error().message();
  EXPECT_EQ(*committed, size);
  auto reader = store().open(token);
  ASSERT_TRUE(reader) << reader.error().message();
  expect_pattern(**reader, 1, size, 1000);
  // Reading past the end keeps answering 0.
  std::array<char, 16> tail{};
  auto n = (*reader)->read(tail);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(fs::status(directory_ / token).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(ResultsStore, AnEmptyPackageRoundTrips) {
  const std::string token = new_token();
  auto writer = store().begin(token);
  ASSERT_TRUE(writer);
  ASSERT_TRUE((*writer)->commit());
  auto reader = store().open(token);
  ASSERT_TRUE(reader);
  expect_pattern(**reader, 0, 0, 64);
}

TEST_F(ResultsStore, NothingIsVisibleBeforeCommit) {
  const std::string token = new_token();
  auto writer = store().begin(token);
  ASSERT_TRUE(writer);
  write_pattern(**writer, 2, 100'000, 777);
  auto before = store().open(token);
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error(), errc::not_found);
  auto listed = store().list();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  ASSERT_TRUE((*writer)->commit());
  auto after = store().open(token);
  ASSERT_TRUE(after);
  expect_pattern(**after, 2, 100'000, 4096);
  listed = store().list();
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{token});
}

TEST_F(ResultsStore, AbandonLeavesNothing) {
  const std::string token = new_token();
  {
    auto writer = store().begin(token);
    ASSERT_TRUE(writer);
    write_pattern(**writer, 3, 50'000, 1000);
    (*writer)->abandon();
    (*writer)->abandon();  // twice is fine
    auto again = (*writer)->append("x");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::invalid_argument);
    auto commit = (*writer)->commit();
    ASSERT_FALSE(commit);
    EXPECT_EQ(commit.error(), errc::invalid_argument);
  }
  {
    auto writer = store().begin(token);
    ASSERT_TRUE(writer);
    write_pattern(**writer, 3, 50'000, 1000);
    // Destroyed without a commit.
  }
  EXPECT_TRUE(entries().empty());
  auto reader = store().open(token);
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error(), errc::not_found);
}

TEST_F(ResultsStore, AFinishedWriterRefusesMore) {
  auto writer = store().begin(new_token());
  ASSERT_TRUE(writer);
  ASSERT_TRUE((*writer)->append("abc"));
  ASSERT_TRUE((*writer)->commit());
  (*writer)->abandon();  // after commit: nothing happens
  EXPECT_EQ((*writer)->append("d").error(), errc::invalid_argument);
  EXPECT_EQ((*writer)->commit().error(), errc::invalid_argument);
  EXPECT_EQ(entries().size(), 1u);
}

TEST_F(ResultsStore, RemoveIsIdempotent) {
  const std::string token = new_token();
  auto writer = store().begin(token);
  ASSERT_TRUE(writer);
  ASSERT_TRUE((*writer)->append("package"));
  ASSERT_TRUE((*writer)->commit());
  auto first = store().remove(token);
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first);
  auto second = store().remove(token);
  ASSERT_TRUE(second);
  EXPECT_FALSE(*second);
  EXPECT_EQ(store().open(token).error(), errc::not_found);
  EXPECT_TRUE(entries().empty());
}

TEST_F(ResultsStore, AnUnknownTokenIsNotFound) {
  auto reader = store().open(new_token());
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error(), errc::not_found);
}

TEST_F(ResultsStore, BadTokensAreRefusedNeverUsedAsPaths) {
  // A file outside the store that a path-using adapter would reach.
  { std::ofstream(root_ / "x") << "secret"; }
  const std::string padded = "../" + std::string(results_token_size - 3, 'A');
  for (const std::string& bad : {std::string("../x"), std::string(), std::string("short"),
                                 std::string(results_token_size + 4, 'A'), padded,
                                 "a/b" + std::string(results_token_size - 3, 'A'), std::string(".lock")}) {
    auto w = store().begin(bad);
    ASSERT_FALSE(w) << bad;
    EXPECT_EQ(w.error(), errc::invalid_argument);
    auto r = store().open(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error(), errc::invalid_argument);
    auto d = store().remove(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error(), errc::invalid_argument);
  }
  EXPECT_TRUE(fs::exists(root_ / "x"));
  EXPECT_TRUE(entries().empty());
}

TEST_F(ResultsStore, CommitReplacesAndAnOpenReaderKeepsTheOldBytes) {
  const std::string token = new_token();
  auto first = store().begin(token);
  ASSERT_TRUE(first);
  write_pattern(**first, 4, 300'000, 4096);
  ASSERT_TRUE((*first)->commit());
  auto old_reader = store().open(token);
  ASSERT_TRUE(old_reader);
  auto second = store().begin(token);
  ASSERT_TRUE(second);
  write_pattern(**second, 5, 200'000, 4096);
  ASSERT_TRUE((*second)->commit());
  expect_pattern(**old_reader, 4, 300'000, 999);
  auto new_reader = store().open(token);
  ASSERT_TRUE(new_reader);
  expect_pattern(**new_reader, 5, 200'000, 999);
  EXPECT_EQ(entries(), std::vector<std::string>{token});
}

TEST_F(ResultsStore, OpenRemovesTheTemporaryFilesACrashLeft) {
  const std::string kept = new_token(), crashed = new_token();
  auto writer = store().begin(kept);
  ASSERT_TRUE(writer);
  ASSERT_TRUE((*writer)->append("whole"));
  ASSERT_TRUE((*writer)->commit());
  store_.reset();
  // What a writer killed mid-package leaves behind; and a file that is none of the store's.
  { std::ofstream(directory_ / (".partial-" + crashed + "-0123456789abcdef")) << "half a zip"; }
  { std::ofstream(directory_ / (".partial-" + kept + "-fedcba9876543210")) << "half a rebuild"; }
  { std::ofstream(directory_ / "README") << "not ours"; }
  reopen();
  EXPECT_EQ(store().partials_removed(), 2u);
  std::vector<std::string> expected{"README", kept};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(entries(), expected);
  EXPECT_EQ(store().open(crashed).error(), errc::not_found);
  auto reader = store().open(kept);
  ASSERT_TRUE(reader);
  std::array<char, 16> buffer{};
  auto n = (*reader)->read(buffer);
  ASSERT_TRUE(n);
  EXPECT_EQ(std::string(buffer.data(), *n), "whole");
  auto listed = store().list();
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{kept});
  reopen();
  EXPECT_EQ(store().partials_removed(), 0u);
}

TEST_F(ResultsStore, AWriterSigkilledMidPackageLeavesNothingReadable) {
  const std::string fresh = new_token(), rebuilt = new_token();
  {
    auto writer = store().begin(rebuilt);
    ASSERT_TRUE(writer);
    write_pattern(**writer, 6, 100'000, 4096);
    ASSERT_TRUE((*writer)->commit());
  }
  store_.reset();  // the child process owns the store now

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: start both packages, write half of each, say so, and wait to be killed.
    ::close(ready[0]);
    auto s = results_files_store::open_directory({directory_});
    if (!s) ::_exit(2);
    auto a = (*s)->begin(fresh);
    auto b = (*s)->begin(rebuilt);
    if (!a || !b) ::_exit(3);
    const std::string half = pattern(7, 0, 1024 * 1024);
    if (!(*a)->append(half) || !(*b)->append(half)) ::_exit(4);
    if (::write(ready[1], "h", 1) != 1) ::_exit(5);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child did not write half its packages";
  ::close(ready[0]);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  // The half-written files are there, under temporary names only.
  std::size_t partials = 0;
  for (const auto& name : entries()) partials += name.starts_with(".partial-");
  EXPECT_EQ(partials, 2u);
  EXPECT_FALSE(fs::exists(directory_ / fresh));

  reopen();
  EXPECT_EQ(store().partials_removed(), 2u);
  EXPECT_EQ(entries(), std::vector<std::string>{rebuilt});
  EXPECT_EQ(store().open(fresh).error(), errc::not_found);
  auto reader = store().open(rebuilt);
  ASSERT_TRUE(reader);
  expect_pattern(**reader, 6, 100'000, 4096);  // the old package, whole
}

TEST_F(ResultsStore, ASecondOwnerIsLockedOut) {
  (void)store();
  auto second = results_files_store::open_directory({directory_});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), errc::storage_locked);
  store_.reset();
  auto third = results_files_store::open_directory({directory_});
  EXPECT_TRUE(third);
}

TEST_F(ResultsStore, CreatesItsDirectoryPrivate) {
  directory_ = root_ / "a" / "b" / "results";
  (void)store();
  ASSERT_TRUE(fs::is_directory(directory_));
  EXPECT_EQ(fs::status(directory_).permissions() & fs::perms::all, fs::perms::owner_all);
  auto empty = results_files_store::open_directory({});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), errc::invalid_argument);
}

TEST_F(ResultsStore, ConcurrentWritersOfDifferentTokensFromFourThreads) {
  constexpr int threads = 4, per_thread = 6;
  constexpr std::uint64_t size = 256 * 1024 + 17;
  std::vector<std::vector<std::string>> tokens(threads);
  for (auto& t : tokens)
    for (int i = 0; i < per_thread; ++i) t.push_back(new_token());
  results_store& s = store();
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w)
    workers.emplace_back([&, w] {
      for (int i = 0; i < per_thread; ++i) {
        const std::uint64_t seed = static_cast<std::uint64_t>(w * per_thread + i);
        auto writer = s.begin(tokens[w][i]);
        ASSERT_TRUE(writer);
        write_pattern(**writer, seed, size, 3000 + static_cast<std::size_t>(w));
        ASSERT_TRUE((*writer)->commit());
      }
    });
  for (auto& t : workers) t.join();
  auto listed = s.list();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), static_cast<std::size_t>(threads * per_thread));
  for (int w = 0; w < threads; ++w)
    for (int i = 0; i < per_thread; ++i) {
      auto reader = s.open(tokens[w][i]);
      ASSERT_TRUE(reader);
      expect_pattern(**reader, static_cast<std::uint64_t>(w * per_thread + i), size, 8192);
    }
}

}  // namespace
}  // namespace opendsr
