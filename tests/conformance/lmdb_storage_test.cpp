// lmdb_storage beyond the conformance suite: map growth, the size limit, the owner lock, the
// directory, stale readers, and the translation of LMDB errors.
#include <opendsr/lmdb_storage.hpp>

#include "lmdb/lmdb_env.hpp"

#include <gtest/gtest.h>

#include <lmdb.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t mib = std::size_t{1} << 20;

class lmdb_storage_test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "opendsr-lmdb-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::permissions(root_, fs::perms::owner_all, ignored);
    fs::remove_all(root_, ignored);
  }

  lmdb_options small(std::size_t initial = mib, std::size_t max = 64 * mib) const {
    return {.path = root_ / "store", .initial_map_size = initial, .max_map_size = max,
            .sync = sync_mode::no_sync};
  }

  static std::unique_ptr<lmdb_storage> open_ok(const lmdb_options& options) {
    auto s = lmdb_storage::open(options);
    if (!s) ADD_FAILURE() << s.error().message();
    return s ? std::move(*s) : nullptr;
  }

  static void commit_value(storage& s, const std::string& key, std::size_t size) {
    auto w = std::move(*s.begin_write());
    ASSERT_TRUE(w->put(key, std::string(size, key.back())));
    ASSERT_TRUE(w->commit());
  }

  fs::path root_;
};

TEST_F(lmdb_storage_test, MapGrowsAcrossItsInitialSizeAndKeepsEverything) {
  auto s = open_ok(small());
  ASSERT_TRUE(s);
  const std::size_t initial = s->map_size();
  for (int i = 0; i < 12; ++i) commit_value(*s, "v" + std::to_string(i), mib);
  EXPECT_GT(s->map_size(), initial);
  s.reset();
  s = open_ok(small());  // the file is larger than the initial size asked for: LMDB keeps it
  ASSERT_TRUE(s);
  EXPECT_GE(s->map_size(), 12 * mib);
  auto r = std::move(*s->begin_read());
  for (int i = 0; i < 12; ++i) {
    const std::string key = "v" + std::to_string(i);
    auto v = r->get(key);
    ASSERT_TRUE(v && *v) << key;
    EXPECT_EQ(**v, std::string(mib, key.back()));
  }
}

// Growth in the middle of a transaction replays its earlier writes: the caller sees its own
// puts and erases, and erase still reports presence correctly, after the map grew.
TEST_F(lmdb_storage_test, GrowthInsideATransactionIsInvisibleToTheCaller) {
  auto s = open_ok(small());
  ASSERT_TRUE(s);
  {
    auto w = std::move(*s->begin_write());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(w->put("old/" + std::to_string(i), "x"));
    ASSERT_TRUE(w->commit());
  }
  const std::size_t before = s->map_size();
  auto w = std::move(*s->begin_write());
  ASSERT_TRUE(w->put("small", "1"));
  ASSERT_TRUE(*w->erase("old/1"));
  ASSERT_TRUE(w->put("big", std::string(3 * mib, 'b')));  // grows the map
  EXPECT_GT(s->map_size(), before);
  EXPECT_EQ(**w->get("small"), "1");
  EXPECT_FALSE(*w->get("old/1"));
  EXPECT_FALSE(*w->erase("old/1"));
  EXPECT_TRUE(*w->erase("old/2"));
  ASSERT_TRUE(w->put("bigger", std::string(5 * mib, 'c')));  // grows it again
  ASSERT_TRUE(w->commit());
  auto r = std::move(*s->begin_read());
  EXPECT_EQ(**r->get("small"), "1");
  EXPECT_FALSE(*r->get("old/1"));
  EXPECT_FALSE(*r->get("old/2"));
  EXPECT_EQ((*r->get("big"))->size(), 3 * mib);
  EXPECT_EQ((*r->get("bigger"))->size(), 5 * mib);
  int old = 0;
  ASSERT_TRUE(r->scan("old/", "", [&](std::string_view, std::string_view) { return ++old, true; }));
  EXPECT_EQ(old, 98);
}

TEST_F(lmdb_storage_test, FullAtMaxMapSizeIsStorageFullAndTheStoreWorksOn) {
  auto s = open_ok(small(mib, 4 * mib));
  ASSERT_TRUE(s);
  int committed = 0;
  error full(errc::internal);
  for (;; ++committed) {
    auto w = std::move(*s->begin_write());
    auto put = w->put("k" + std::to_string(committed), std::string(512 * 1024, 'x'));
    if (!put) {
      full = std::move(put).error();
      // The transaction is over: later calls give the same error.
      auto again = w->put("a", "b");
      auto commit = w->commit();
      EXPECT_TRUE(!again && again.error() == errc::storage_full);
      EXPECT_TRUE(!commit && commit.error() == errc::storage_full);
      break;
    }
    auto commit = w->commit();
    if (!commit) {
      full = std::move(commit).error();
      break;
    }
    ASSERT_LT(committed, 100) << "the store never filled";
  }
  EXPECT_EQ(full, errc::storage_full);
  EXPECT_NE(full.message().find("max_map_size"), std::string::npos) << full.message();
  EXPECT_NE(full.message().find(root_.string()), std::string::npos) << full.message();
  EXPECT_GE(committed, 3);
  EXPECT_EQ(s->map_size(), 4 * mib);

  // Reads work, small writes work, and erasing frees room for more.
  auto r = std::move(*s->begin_read());
  EXPECT_TRUE(*r->get("k0"));
  r.reset();
  {
    auto w = std::move(*s->begin_write());
    ASSERT_TRUE(w->put("small", "fits"));
    for (int i = 0; i < committed; ++i) ASSERT_TRUE(*w->erase("k" + std::to_string(i)));
    ASSERT_TRUE(w->commit());
  }
  // LMDB reuses the pages a commit freed from the second commit after it on.
  commit_value(*s, "next", 10);
  commit_value(*s, "after", 512 * 1024);
  EXPECT_EQ(**std::move(*s->begin_read())->get("small"), "fits");
}

TEST_F(lmdb_storage_test, GrowthWaitsForReadersOnOtherThreads) {
  auto s = open_ok(small());
  ASSERT_TRUE(s);
  auto reader = std::move(*s->begin_read());
  // The writer needs the map to grow while a reader is open; the reader ends on this thread
  // while the writer runs, in whatever order the threads happen to take.
  bool ok = false;
  std::thread writer([&] {
    auto w = std::move(*s->begin_write());
    ok = w->put("big", std::string(4 * mib, 'b')) && w->commit();
  });
  reader.reset();
  writer.join();
  EXPECT_TRUE(ok);
}

TEST_F(lmdb_storage_test, GrowthBlockedByReadersPastGrowthWaitIsARetryableConflict) {
  lmdb_options options = small();
  options.growth_wait = std::chrono::milliseconds(0);
  auto s = open_ok(options);
  ASSERT_TRUE(s);
  std::unique_ptr<read_transaction> reader;
  std::thread([&] { reader = std::move(*s->begin_read()); }).join();
  auto w = std::move(*s->begin_write());
  ASSERT_TRUE(w->put("first", "kept only by a re-run"));
  auto put = w->put("big", std::string(4 * mib, 'b'));
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error(), errc::storage_conflict);
  EXPECT_TRUE(is_retryable(put.error().code()));
  w.reset();
  reader.reset();
  // Re-running the whole transaction succeeds once the reader is gone.
  w = std::move(*s->begin_write());
  ASSERT_TRUE(w->put("first", "kept"));
  ASSERT_TRUE(w->put("big", std::string(4 * mib, 'b')));
  ASSERT_TRUE(w->commit());
  EXPECT_EQ(**std::move(*s->begin_read())->get("first"), "kept");
}

TEST_F(lmdb_storage_test, GrowthWhileTheWritingThreadHoldsAReadIsRefusedAtOnce) {
  auto s = open_ok(small());
  ASSERT_TRUE(s);
  auto reader = std::move(*s->begin_read());
  auto w = std::move(*s->begin_write());
  auto put = w->put("big", std::string(4 * mib, 'b'));
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error(), errc::invalid_argument);
  EXPECT_NE(put.error().message().find("writing thread itself"), std::string::npos);
}

TEST_F(lmdb_storage_test, ASecondOwnerOfTheDirectoryIsRefused) {
  auto first = open_ok(small());
  ASSERT_TRUE(first);
  auto second = lmdb_storage::open(small());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), errc::storage_locked);
  EXPECT_NE(second.error().message().find((root_ / "store").string()), std::string::npos);

  // Another process is refused the same way.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto other = lmdb_storage::open(small());
    _exit(!other && other.error() == errc::storage_locked ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  first.reset();
  EXPECT_TRUE(open_ok(small()));
}

TEST_F(lmdb_storage_test, AMissingDirectoryIsCreatedForItsOwnerOnly) {
  lmdb_options options = small();
  options.path = root_ / "a" / "b" / "store";
  auto s = open_ok(options);
  ASSERT_TRUE(s);
  commit_value(*s, "k", 10);
  EXPECT_EQ(fs::status(options.path).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(options.path / "data.mdb").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(lmdb_storage_test, APathThroughAFileIsStorageIo) {
  std::ofstream(root_ / "file") << "not a directory";
  for (const fs::path& path : {root_ / "file", root_ / "file" / "store"}) {
    lmdb_options options = small();
    options.path = path;
    auto s = lmdb_storage::open(options);
    ASSERT_FALSE(s) << path;
    EXPECT_EQ(s.error(), errc::storage_io) << path;
    EXPECT_NE(s.error().message().find(path.string()), std::string::npos) << s.error().message();
  }
}

// An existing directory the process may not write into. As root (which writes anywhere) the
// open runs in a child process that drops to the unprivileged user nobody first.
TEST_F(lmdb_storage_test, AReadOnlyDirectoryIsStorageIo) {
  const fs::path dir = root_ / "read-only";
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                           fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(root_, fs::perms::owner_all | fs::perms::others_exec);
  lmdb_options options = small();
  options.path = dir;
  auto open_is_storage_io = [&] {
    auto s = lmdb_storage::open(options);
    return !s && s.error() == errc::storage_io &&
           s.error().message().find(dir.string()) != std::string::npos;
  };
  if (geteuid() != 0) {
    EXPECT_TRUE(open_is_storage_io());
    return;
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    constexpr uid_t nobody = 65534;
    if (setgid(nobody) != 0 || setuid(nobody) != 0) _exit(2);
    _exit(open_is_storage_io() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: open did not fail with storage_io; 2: setuid failed";
}

TEST_F(lmdb_storage_test, BadOptionsAreInvalidArguments) {
  EXPECT_EQ(lmdb_storage::open({}).error(), errc::invalid_argument);
  EXPECT_EQ(lmdb_storage::open(small(8 * mib, 4 * mib)).error(), errc::invalid_argument);
  lmdb_options no_readers = small();
  no_readers.max_readers = 0;
  EXPECT_EQ(lmdb_storage::open(no_readers).error(), errc::invalid_argument);
}

TEST_F(lmdb_storage_test, TooManyOpenReadersIsStorageFull) {
  lmdb_options options = small();
  options.max_readers = 2;
  auto s = open_ok(options);
  ASSERT_TRUE(s);
  auto a = std::move(*s->begin_read());
  auto b = std::move(*s->begin_read());
  auto c = s->begin_read();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), errc::storage_full);
  a.reset();
  EXPECT_TRUE(s->begin_read());
}

// Runs body in a child process that reports on `ready` and then waits to be killed.
pid_t spawn_holder(void (*body)(const char*), const fs::path& dir) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t child = fork();
  if (child == 0) {
    close(ready[0]);
    body(dir.c_str());
    const char byte = 1;
    if (write(ready[1], &byte, 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  char byte = 0;
  const bool reported = read(ready[0], &byte, 1) == 1;
  close(ready[0]);
  return reported ? child : -1;
}

void open_env(const char* dir, bool with_reader) {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  if (mdb_env_create(&env) != 0 || mdb_env_open(env, dir, MDB_NOTLS, 0600) != 0) _exit(1);
  if (with_reader && mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) _exit(1);
}

// A process that died inside a read transaction leaves its reader slot behind while another
// process keeps the environment open (the last one out resets the table); open() clears it.
TEST_F(lmdb_storage_test, OpenClearsTheReaderSlotsOfDeadProcesses) {
  const lmdb_options options = small();
  open_ok(options).reset();  // create the store, then let go of it

  const pid_t keeper = spawn_holder([](const char* dir) { open_env(dir, false); }, options.path);
  ASSERT_GT(keeper, 0);
  const pid_t reader = spawn_holder([](const char* dir) { open_env(dir, true); }, options.path);
  ASSERT_GT(reader, 0);
  kill(reader, SIGKILL);
  waitpid(reader, nullptr, 0);

  auto s = open_ok(options);
  kill(keeper, SIGKILL);
  waitpid(keeper, nullptr, 0);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->stale_readers_cleared(), 1);
  commit_value(*s, "k", 10);
}

TEST(lmdb_error, MapsEveryLmdbErrorToASpecificErrcNamingThePath) {
  const fs::path path = "/var/lib/opendsr";
  const std::pair<int, errc> cases[] = {
      {MDB_MAP_FULL, errc::storage_full},        {MDB_TXN_FULL, errc::storage_full},
      {MDB_READERS_FULL, errc::storage_full},    {ENOSPC, errc::storage_full},
      {MDB_CORRUPTED, errc::storage_corrupt},    {MDB_PAGE_NOTFOUND, errc::storage_corrupt},
      {MDB_INVALID, errc::storage_corrupt},      {MDB_VERSION_MISMATCH, errc::storage_corrupt},
      {EAGAIN, errc::storage_locked},            {MDB_BAD_VALSIZE, errc::invalid_argument},
      {MDB_BAD_TXN, errc::internal},             {EACCES, errc::storage_io},
      {EIO, errc::storage_io},                   {MDB_PANIC, errc::storage_io},
      {MDB_MAP_RESIZED, errc::storage_io},
  };
  for (const auto& [rc, expected] : cases) {
    const error e = detail::lmdb_error(rc, path, "commit");
    EXPECT_EQ(e, expected) << mdb_strerror(rc);
    EXPECT_NE(e.message().find("/var/lib/opendsr"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("commit"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(mdb_strerror(rc)), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace opendsr
