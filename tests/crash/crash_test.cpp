// The LMDB crash test. A writer process (crash_writer) submits the workload through the group
// committer on a durable LMDB store and prints each acknowledged id; this test reads the ids and
// kills the writer with SIGKILL after a random number of them, several times over the same store.
// After each kill it reopens the store and requires that every id ever acknowledged is stored,
// that the invariant checker finds the indexes in agreement with the records (no orphan
// duplicate, conflict, group or timer entry), and that the engine keeps working.
//
// The kill moment is random (seeded; the seed is printed, and OPENDSR_CRASH_SEED replays it),
// and counted in acknowledgements rather than time, so nothing sleeps. The writer's path comes
// from OPENDSR_CRASH_WRITER (meson sets it).
#include <opendsr/engine.hpp>
#include <opendsr/lmdb_storage.hpp>

#include "check/invariants.hpp"
#include "workload.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr unsigned kills = 5;
constexpr unsigned writer_threads = 8;
constexpr std::uint64_t max_acks_before_kill = 1500;
// How long the writer may stay silent before the test gives up on it (a hang, not a pace).
constexpr int silence_limit_ms = 20'000;

// A running writer process and the read end of its stdout. Destroying it kills the process.
class writer_process {
 public:
  writer_process(const char* program, const fs::path& dir, unsigned run) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    const std::string dir_arg = dir.string(), run_arg = std::to_string(run), threads_arg = std::to_string(writer_threads);
    char* argv[] = {const_cast<char*>(program), const_cast<char*>(dir_arg.c_str()), const_cast<char*>(run_arg.c_str()),
                    const_cast<char*>(threads_arg.c_str()), nullptr};
    const int spawned = posix_spawn(&pid_, program, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = fds[0];
    if (spawned != 0) {
      ::close(out_);
      throw std::runtime_error(std::string("spawning ") + program + ": " + std::strerror(spawned));
    }
  }
  ~writer_process() {
    kill();
    ::close(out_);
  }
  writer_process(const writer_process&) = delete;
  writer_process& operator=(const writer_process&) = delete;

  // Reads whole lines into `lines` until it holds at least `want`, or the output ends (the
  // process exited or was killed). Returns false if the process stayed silent too long.
  bool read_lines(std::vector<std::string>& lines, std::size_t want) {
    char buf[4096];
    while (lines.size() < want) {
      pollfd p{out_, POLLIN, 0};
      const int ready = ::poll(&p, 1, silence_limit_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return true;  // end of output
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != '\n') {
          partial_ += buf[i];
          continue;
        }
        lines.push_back(std::move(partial_));
        partial_.clear();
      }
    }
    return true;
  }

  // A line the output ended in the middle of (empty if none).
  const std::string& partial_line() const noexcept { return partial_; }

  // Whether the process already ended on its own, with its wait status.
  bool exited(int& status) {
    if (pid_ <= 0) return false;
    const bool ended = ::waitpid(pid_, &status, WNOHANG) == pid_;
    if (ended) pid_ = -1;
    return ended;
  }

  // SIGKILL, then reaps the process.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string partial_;
};

std::uint64_t crash_seed() {
  if (const char* s = std::getenv("OPENDSR_CRASH_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

// Reopens the store after a kill and checks everything the test promises. `acked` holds every
// id acknowledged by every run so far.
void check_after_kill(const fs::path& dir, unsigned run, const std::set<std::string>& acked) {
  auto store = lmdb_storage::open({.path = dir});
  ASSERT_TRUE(store) << store.error().message();
  auto e = engine::open(**store, crash::workload_options());
  ASSERT_TRUE(e) << e.error().message();

  std::size_t missing = 0;
  for (const std::string& id : acked) {
    const auto s = e->status(crash::workspace, id);
    if (!s) {
      ADD_FAILURE() << "acknowledged request " << id << " is gone: " << s.error().message();
      if (++missing == 10) return;
    }
  }

  auto problems = [&] {
    auto txn = (*store)->begin_read();
    return detail::check_invariants(**txn).value();
  };
  EXPECT_TRUE(problems().empty()) << ::testing::PrintToString(problems());

  // The engine keeps working: a new request is taken, and time moves every request on.
  const std::string id = crash::request_id(run, std::uint64_t{1} << 39);
  const std::string body = testing::make_body({.id = id, .identities = {{"email", "after-the-crash@example.com"}}});
  const timestamp later = crash::run_start(run) + std::chrono::days(29);
  const auto r = e->submit(crash::workspace, body, later - 48h);
  ASSERT_TRUE(r) << r.error().message();
  const auto ticked = e->tick(later);
  ASSERT_TRUE(ticked) << ticked.error().message();
  EXPECT_EQ(e->status(crash::workspace, id)->status, request_status::completed);
  EXPECT_TRUE(problems().empty()) << ::testing::PrintToString(problems());
}

TEST(Crash, AcknowledgedRequestsSurviveSigkill) {
  const char* writer = std::getenv("OPENDSR_CRASH_WRITER");
  ASSERT_NE(writer, nullptr) << "OPENDSR_CRASH_WRITER must name the crash_writer program (meson test sets it)";
  const std::uint64_t seed = crash_seed();
  std::printf("crash test seed %llu (replay with OPENDSR_CRASH_SEED)\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 random(seed);

  const fs::path dir = fs::temp_directory_path() / ("opendsr-crash-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  struct remover {
    fs::path p;
    ~remover() { fs::remove_all(p); }
  } remove_dir{dir};

  std::set<std::string> acked;
  for (unsigned run = 0; run < kills; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    const std::uint64_t kill_after = std::uniform_int_distribution<std::uint64_t>(1, max_acks_before_kill)(random);
    std::vector<std::string> lines;
    {
      writer_process child(writer, dir, run);
      ASSERT_TRUE(child.read_lines(lines, kill_after)) << "the writer fell silent";
      int status = 0;
      ASSERT_FALSE(child.exited(status)) << "the writer ended by itself (status " << status << ") after "
                                         << lines.size() << " acknowledgements";
      child.kill();
      // Ids written before the kill but not yet read are acknowledged too.
      ASSERT_TRUE(child.read_lines(lines, SIZE_MAX));
      ASSERT_EQ(child.partial_line(), "") << "the writer's output ended inside a line";
    }
    ASSERT_GE(lines.size(), kill_after);
    std::printf("run %u: killed after %zu acknowledgements (%zu read in all)\n", run,
                static_cast<std::size_t>(kill_after), lines.size());
    acked.insert(lines.begin(), lines.end());
    check_after_kill(dir, run, acked);
    if (::testing::Test::HasFatalFailure() || ::testing::Test::HasNonfatalFailure()) return;
  }
}

}  // namespace
}  // namespace opendsr
