// Durable intake: submissions per second through the engine and the group committer, on LMDB
// durable with 1, 8 and 64 concurrent submitters, on LMDB no-sync (64) and on the memory adapter
// (64), each LMDB figure beside its floors measured in the same run.
//
// Every submission is a fresh request (an erasure with two identities and one callback URL), so
// each takes the whole write path. Submitters come in two kinds (submitter_mode): `threads`, one
// thread per submitter calling the blocking submit() in a loop, and `async`, that many
// submissions kept in flight by one client thread with submit_async(), handed the next one by
// each completion handler (how the HTTP server uses the committer: no thread waits).
//
// Counters
// - items_per_second: accepted submissions per second (all of them are accepted).
// - batch: submissions per commit, as the committer formed them.
// - keys/req, bytes/req: what the engine puts per submission (key + value bytes), counted by a
//   recording storage wrapper.
// - floor/s: the bare floor, in submissions per second. The recording wrapper keeps every put
//   of every committed transaction; after each round, bare liblmdb (the C API with the
//   adapter's flags, no opendsr) replays exactly that round's keys and values, in the same
//   transactions, into its own store in the same sync mode: the same keys and bytes per
//   transaction at the batch sizes the committer formed, without the engine's work (parsing,
//   lookups, encoding, receipts), the adapter or the committer.
// - fsync_each/s (durable): the same replay with one transaction (one fsync) per submission,
//   20 per round: intake without group commit.
// - vs_floor, vs_fsync_each: the median over the rounds of the engine's rate in a round over
//   the floor's rate right after it. Rounds alternate with their floors so that both sample
//   the same disk weather (a shared machine's fsync latency drifts by several times within a
//   minute); design/performance.md asks vs_floor >= 0.8 for lmdb_durable with 64 submitters.
//
// Run: build/<dir>/bench/intake_bench (not pinned: the committer's writer thread runs beside
// the submitters). While it runs, SCHED_IDLE spinners keep the CPUs from idling (cpu_keeper). The stores live in $OPENDSR_BENCH_DIR, else the system's temporary
// directory; it must not be a tmpfs, or the durable figures measure no fsync at all (the run
// warns if it is).
#include "bench_support.hpp"

#include <opendsr/engine.hpp>
#include <opendsr/group_commit.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/storage_wrapper.hpp>

#include "../tests/support/request_bodies.hpp"

#include <benchmark/benchmark.h>
#include <lmdb.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <unistd.h>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;
using bench::die;
using bench::must;
using bench::scratch_dir;

const timestamp received = parse_rfc3339("2021-11-29T18:16:24.556805Z").value();

void check_lmdb(int rc, const char* what) {
  if (rc != 0) die(std::string(what) + ": " + mdb_strerror(rc));
}

// Every put of every committed write transaction, in order: the shape of the engine's writes.
struct put_log {
  std::string bytes;                   // key, value, key, value, ... back to back
  std::vector<std::uint32_t> sizes;    // key size, value size, ... per put
  std::vector<std::size_t> txn_puts;   // puts per committed transaction

  std::size_t puts() const noexcept { return sizes.size() / 2; }
};

// Records the puts of committed transactions into a put_log. Only the committer's writer thread
// writes; the benchmark reads the log once the submitters have their results.
class recording_storage final : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;

  put_log log;

  result<std::unique_ptr<write_transaction>> begin_write() override {
    auto txn = storage_wrapper::begin_write();
    if (!txn) return std::move(txn).error();
    return std::unique_ptr<write_transaction>(std::make_unique<txn_type>(std::move(*txn), log));
  }

 private:
  class txn_type final : public write_transaction_wrapper {
   public:
    txn_type(std::unique_ptr<write_transaction> target, put_log& log)
        : write_transaction_wrapper(std::move(target)), log_(log) {}
    result<void> put(std::string_view key, std::string_view value) override {
      OPENDSR_TRY(write_transaction_wrapper::put(key, value));
      mine_.bytes.append(key).append(value);
      mine_.sizes.push_back(static_cast<std::uint32_t>(key.size()));
      mine_.sizes.push_back(static_cast<std::uint32_t>(value.size()));
      return {};
    }
    result<bool> erase(std::string_view) override {
      die("the intake path erased a key; the floor replays puts only");
    }
    result<void> commit() override {
      OPENDSR_TRY(write_transaction_wrapper::commit());
      log_.bytes += mine_.bytes;
      log_.sizes.insert(log_.sizes.end(), mine_.sizes.begin(), mine_.sizes.end());
      log_.txn_puts.push_back(mine_.puts());
      return {};
    }

   private:
    put_log& log_;
    put_log mine_;
  };
};

// A bare liblmdb store in a fresh directory: the C API with the flags lmdb_storage uses, no
// opendsr. It replays put logs.
class bare_lmdb {
 public:
  explicit bare_lmdb(sync_mode sync) {
    check_lmdb(mdb_env_create(&env_), "mdb_env_create");
    check_lmdb(mdb_env_set_mapsize(env_, std::size_t{1} << 30), "mdb_env_set_mapsize");
    check_lmdb(mdb_env_open(env_, dir_.path().c_str(), MDB_NOTLS | (sync == sync_mode::no_sync ? MDB_NOSYNC : 0), 0600),
               "mdb_env_open");
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check_lmdb(mdb_dbi_open(txn, nullptr, 0, &dbi_), "mdb_dbi_open");
    check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  ~bare_lmdb() { mdb_env_close(env_); }
  bare_lmdb(const bare_lmdb&) = delete;
  bare_lmdb& operator=(const bare_lmdb&) = delete;

  // Replays the first `max_puts` puts of the log in the log's own transactions, or, when
  // puts_per_txn is not 0, in transactions of that many puts. Returns the seconds it took.
  double replay(const put_log& log, std::size_t puts_per_txn, std::size_t max_puts = SIZE_MAX) {
    const std::size_t total = std::min(max_puts, log.puts());
    const auto start = bench_clock::now();
    std::size_t at = 0, put = 0;
    for (std::size_t t = 0; put < total; ++t) {
      const std::size_t n = std::min(puts_per_txn != 0 ? puts_per_txn : log.txn_puts[t], total - put);
      MDB_txn* txn = nullptr;
      check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
      for (std::size_t i = 0; i < n; ++i, ++put) {
        MDB_val k{log.sizes[2 * put], const_cast<char*>(log.bytes.data() + at)};
        at += k.mv_size;
        MDB_val v{log.sizes[2 * put + 1], const_cast<char*>(log.bytes.data() + at)};
        at += v.mv_size;
        check_lmdb(mdb_put(txn, dbi_, &k, &v, 0), "mdb_put");
      }
      check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    return std::chrono::duration<double>(bench_clock::now() - start).count();
  }

 private:
  scratch_dir dir_{"intake-floor"};
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

enum class store_kind { lmdb_durable, lmdb_no_sync, memory };

// The store under test: LMDB in a fresh directory, or memory.
struct store_under_test {
  explicit store_under_test(store_kind kind) {
    if (kind == store_kind::memory) {
      store = std::make_unique<memory_storage>();
      return;
    }
    lmdb_options o;
    o.path = dir.path();
    o.sync = kind == store_kind::lmdb_durable ? sync_mode::durable : sync_mode::no_sync;
    store = must(lmdb_storage::open(o), "opening the LMDB store");
  }
  scratch_dir dir{"intake"};
  std::unique_ptr<storage> store;
};

std::string body_for(std::uint64_t n) {
  return testing::make_body({.id = testing::uuid_v4(n),
                             .identities = {{"email", "subject" + std::to_string(n) + "@example.com"},
                                            {"ios_advertising_id", "EA7583CD-A667-48BC-B806-" + std::to_string(n)}},
                             .callback_urls = {"https://controller.example.com/opendsr/callbacks"}});
}

// How the concurrent submitters are made.
enum class submitter_mode {
  // One thread per submitter, each calling the blocking submit() in a loop.
  threads,
  // Submissions kept in flight by one client thread calling submit_async(): each completion
  // handler hands it the next body at once, as a server's I/O thread would take its
  // connections' next requests. No thread waits for a result.
  async,
};

// Submits every body, `submitters` at a time; returns the seconds from the first submission
// to the last result.
double run_round(group_committer& c, const std::vector<std::string>& bodies, std::size_t submitters,
                 submitter_mode mode, std::atomic<std::size_t>& failures) {
  const std::size_t n = bodies.size();
  if (mode == submitter_mode::threads) {
    std::latch go(static_cast<std::ptrdiff_t>(submitters) + 1);
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < submitters; ++t)
      pool.emplace_back([&, t] {
        go.arrive_and_wait();
        for (std::size_t i = t; i < n; i += submitters)
          if (!c.submit("3622", bodies[i], received)) ++failures;
      });
    go.arrive_and_wait();
    const auto start = bench_clock::now();
    for (std::thread& t : pool) t.join();
    return std::chrono::duration<double>(bench_clock::now() - start).count();
  }

  // A client thread (an HTTP server's I/O thread) prepares and queues each submission; the
  // completion handlers, on the writer thread, only hand it the next index.
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::size_t> to_send;
  std::size_t completed = 0, next = std::min(submitters, n);
  for (std::size_t i = 0; i < next; ++i) to_send.push_back(i);
  auto on_done = [&](result<receipt> r) {
    if (!r) ++failures;
    std::lock_guard lock(mutex);
    ++completed;
    if (next < n) to_send.push_back(next++);
    changed.notify_all();
  };
  const auto start = bench_clock::now();
  std::thread client([&] {
    std::vector<std::size_t> sending;
    for (;;) {
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return !to_send.empty() || completed == n; });
        if (to_send.empty()) return;
        sending.swap(to_send);
      }
      for (std::size_t i : sending)
        if (auto queued = c.submit_async("3622", bodies[i], received, on_done); !queued)
          die("submit_async: " + queued.error().message());
      sending.clear();
    }
  });
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return completed == n; });
  }
  const double seconds = std::chrono::duration<double>(bench_clock::now() - start).count();
  client.join();
  return seconds;
}

// The submissions of one benchmark run, and the floors measured beside them.
struct tally {
  double submissions = 0, commits = 0, puts = 0, bytes = 0;
  double floor_seconds = 0;                       // the batched replay of every round
  double each_submissions = 0, each_seconds = 0;  // the one-fsync-per-submission replay
  // Per round: the engine's rate over each floor's rate in that round.
  std::vector<double> vs_floor, vs_fsync_each;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// One iteration is a round of `per_round` fresh submissions; its time is the engine's alone.
// After each round, and outside its time, the bare stores replay that round's puts, so the
// engine and its floors sample the same disk weather (other work on the machine, the state of
// the device's cache) over the run.
void BM_intake(benchmark::State& state, store_kind kind, submitter_mode mode, std::size_t submitters,
               std::size_t per_round) {
  store_under_test s(kind);
  recording_storage recorder(*s.store);
  engine_options options;
  options.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  engine e = must(engine::open(recorder, options), "opening the engine");
  auto committer = must(group_committer::start(e), "starting the group committer");
  const sync_mode sync = kind == store_kind::lmdb_no_sync ? sync_mode::no_sync : sync_mode::durable;
  std::optional<bare_lmdb> floor_store, each_store;
  if (kind != store_kind::memory) floor_store.emplace(sync);
  if (kind == store_kind::lmdb_durable) each_store.emplace(sync);
  // One fsync per submission is slow: this many per round, over all the rounds, give a stable
  // rate.
  constexpr std::size_t each_per_round = 20;

  tally t;
  std::uint64_t next = 0;
  std::atomic<std::size_t> failures{0};
  for (auto _ : state) {
    std::vector<std::string> bodies;
    for (std::size_t i = 0; i < per_round; ++i) bodies.push_back(body_for(next++));
    recorder.log = {};  // this round's commits only (and not the schema commit of open())
    const double seconds = run_round(*committer, bodies, submitters, mode, failures);
    state.SetIterationTime(seconds);

    const put_log& log = recorder.log;
    t.submissions += static_cast<double>(per_round);
    t.commits += static_cast<double>(log.txn_puts.size());
    t.puts += static_cast<double>(log.puts());
    t.bytes += static_cast<double>(log.bytes.size());
    if (floor_store) {
      const double floor_seconds = floor_store->replay(log, 0);
      t.floor_seconds += floor_seconds;
      t.vs_floor.push_back(floor_seconds / seconds);
    }
    if (each_store) {
      const std::size_t puts_per_submission = (log.puts() + per_round / 2) / per_round;
      const std::size_t n = std::min(each_per_round, per_round);
      const double each_seconds = each_store->replay(log, puts_per_submission, n * puts_per_submission);
      t.each_seconds += each_seconds;
      t.each_submissions += static_cast<double>(n);
      t.vs_fsync_each.push_back((static_cast<double>(per_round) / seconds) / (static_cast<double>(n) / each_seconds));
    }
  }
  committer->stop();
  if (failures > 0) {
    state.SkipWithError("a submission failed");
    return;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(t.submissions));
  state.counters["batch"] = t.submissions / t.commits;
  state.counters["keys/req"] = t.puts / t.submissions;
  state.counters["bytes/req"] = t.bytes / t.submissions;
  if (floor_store) {
    state.counters["floor/s"] = t.submissions / t.floor_seconds;
    state.counters["vs_floor"] = median(t.vs_floor);
  }
  if (each_store) {
    state.counters["fsync_each/s"] = t.each_submissions / t.each_seconds;
    state.counters["vs_fsync_each"] = median(t.vs_fsync_each);
  }
}

// Keeps every CPU busy with SCHED_IDLE threads, which run only when nothing else wants the
// CPU. On this project's virtual machines an idle vCPU sees an I/O completion late (up to a
// 4 ms timer tick): fdatasync takes ~0.1 ms while some thread is runnable and ~4 ms while the
// process only waits. The engine's submitters keep the CPUs awake and the bare floor, waiting
// alone, does not, which made the floor look up to twice as slow. With the spinners both wait
// on an awake CPU. OPENDSR_BENCH_IDLE_CPUS=1 turns them off.
class cpu_keeper {
 public:
  cpu_keeper() {
    if (std::getenv("OPENDSR_BENCH_IDLE_CPUS")) return;
    for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); ++i)
      spinners_.emplace_back([this] {
        sched_param lowest{};
        if (sched_setscheduler(0, SCHED_IDLE, &lowest) != 0) return;  // never compete with the run
        while (!stop_.load(std::memory_order_relaxed)) {
        }
      });
  }
  ~cpu_keeper() {
    stop_ = true;
    for (std::thread& t : spinners_) t.join();
  }
  cpu_keeper(const cpu_keeper&) = delete;
  cpu_keeper& operator=(const cpu_keeper&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> spinners_;
};

void register_all() {
  struct config {
    const char* store;
    store_kind kind;
    submitter_mode mode;
    std::size_t submitters, per_round, rounds;
  };
  using enum store_kind;
  using enum submitter_mode;
  // Many short rounds, so that the median pairs a round with a floor measured moments later;
  // each figure takes a few seconds on the development machine.
  for (const config& c : {config{"lmdb_durable", lmdb_durable, threads, 1, 40, 15},
                          config{"lmdb_durable", lmdb_durable, threads, 8, 200, 15},
                          config{"lmdb_durable", lmdb_durable, threads, 64, 1024, 15},
                          config{"lmdb_durable", lmdb_durable, async, 64, 1024, 15},
                          config{"lmdb_no_sync", lmdb_no_sync, threads, 64, 4096, 15},
                          config{"lmdb_no_sync", lmdb_no_sync, async, 64, 4096, 15},
                          config{"memory", memory, threads, 64, 4096, 15},
                          config{"memory", memory, async, 64, 4096, 15}}) {
    const std::string name = std::string("BM_intake/") + c.store + (c.mode == threads ? "/threads:" : "/async:") +
                             std::to_string(c.submitters);
    benchmark::RegisterBenchmark(name.c_str(),
                                 [c](benchmark::State& state) {
                                   BM_intake(state, c.kind, c.mode, c.submitters, c.per_round);
                                 })
        ->UseManualTime()
        ->Iterations(static_cast<benchmark::IterationCount>(c.rounds))
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace opendsr

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  opendsr::bench::warn_if_tmpfs();
  opendsr::register_all();
  const opendsr::cpu_keeper awake;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
