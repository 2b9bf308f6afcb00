// The crash test's writer process: submits the workload (workload.hpp) through the group
// committer on a durable LMDB store, from several threads, as fast as it can, and writes each
// acknowledged id to stdout, one line per id, only after its submission's result came back.
// It ticks the engine now and then. It never ends by itself: the test kills it with SIGKILL.
//
// Usage: crash_writer <store directory> <run number> <threads>
// Exit status 2 with a message on stderr for anything unexpected (an error other than the
// workload's expected refusals, a failed write to stdout).
#include <opendsr/engine.hpp>
#include <opendsr/group_commit.hpp>
#include <opendsr/lmdb_storage.hpp>

#include "workload.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using namespace opendsr;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "crash_writer: %s\n", what.c_str());
  std::_Exit(2);
}

template <class T>
T must(result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

// One write(2) per line: a pipe writes up to PIPE_BUF bytes atomically, so lines of several
// threads never interleave.
void acknowledge(const std::string& id) {
  const std::string line = id + "\n";
  ssize_t written;
  do written = ::write(STDOUT_FILENO, line.data(), line.size());
  while (written < 0 && errno == EINTR);
  if (written != static_cast<ssize_t>(line.size())) die("writing an acknowledged id to stdout failed");
}

bool expected_refusal(const error& e) {
  return e == errc::duplicate_request_id || e == errc::identity_conflict || e == errc::group_full;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) die("usage: crash_writer <store directory> <run number> <threads>");
  const unsigned run = static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10));
  const unsigned threads = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10));
  if (threads < 1) die("threads must be at least 1");

  auto store = must(lmdb_storage::open({.path = argv[1]}), "opening the store");
  engine e = must(engine::open(*store, crash::workload_options()), "opening the engine");
  auto committer = must(group_committer::start(e), "starting the group committer");

  std::atomic<std::uint64_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (;;) {
        const std::uint64_t n = next.fetch_add(1);
        const auto r = committer->submit(crash::workspace, crash::body(run, n), crash::received_at(run, n));
        if (r) acknowledge(r->subject_request_id);
        else if (!expected_refusal(r.error())) die("submission " + std::to_string(n) + ": " + r.error().message());
        if (n % 64 == 0) must(e.tick(crash::received_at(run, n)), "tick");
      }
    });
  for (std::thread& t : pool) t.join();
}
