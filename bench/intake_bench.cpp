// Durable intake: submissions per second through the engine and the group committer, on LMDB
// durable with 1, 8 and 64 concurrent submitters, on LMDB no-sync (64) and on the memory adapter
// (64), each LMDB figure beside its floor measured in the same run.
//
// Every submission is a fresh request (an erasure with two identities and one callback URL), so
// each takes the whole write path; each submitter thread calls the blocking submit() in a loop.
//
// Counters
// - items_per_second: accepted submissions per second (all of them are accepted).
// - batch: submissions per commit, as the committer formed them.
// - keys/req, bytes/req: what the engine puts per submission (key + value bytes), counted by a
//   recording storage wrapper.
// - floor/s: the bare floor, in submissions per second. The recording wrapper keeps every put
//   of every committed transaction; afterwards bare liblmdb (the C API with the adapter's flags,
//   no opendsr) replays exactly those keys and values, in the same transactions, into a fresh
//   store in the same sync mode: the same keys and bytes per transaction at the batch sizes the
//   committer formed, without the engine's work (parsing, lookups, encoding, receipts) and
//   without the adapter. vs_floor = items_per_second / floor/s; design/performance.md asks
//   >= 0.8 for lmdb_durable/64.
// - fsync_each/s (durable): the same replay with one transaction (one fsync) per submission:
//   intake without group commit. vs_fsync_each = items_per_second / fsync_each/s.
//
// Run pinned or not (the committer uses a writer thread beside the submitters):
//   build/<dir>/bench/intake_bench
// The stores live in $OPENDSR_BENCH_DIR, else the system's temporary directory; it must not be
// a tmpfs, or the durable figures measure no fsync at all (the run warns if it is).
#include <opendsr/engine.hpp>
#include <opendsr/group_commit.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/storage_wrapper.hpp>

#include "../tests/support/request_bodies.hpp"

#include <benchmark/benchmark.h>
#include <lmdb.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/vfs.h>
#include <unistd.h>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;

const timestamp received = parse_rfc3339("2021-11-29T18:16:24.556805Z").value();

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "intake_bench: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T must(result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

void check_lmdb(int rc, const char* what) {
  if (rc != 0) die(std::string(what) + ": " + mdb_strerror(rc));
}

// A fresh, empty directory for one store; removed with the object.
class scratch_dir {
 public:
  scratch_dir() {
    static int serial = 0;
    const char* root = std::getenv("OPENDSR_BENCH_DIR");
    path_ = (root ? fs::path(root) : fs::temp_directory_path()) /
            ("opendsr-intake-bench-" + std::to_string(::getpid()) + "-" + std::to_string(serial++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir() { fs::remove_all(path_); }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

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

// Replays the log with bare liblmdb into a fresh store: in the log's own transactions, or with
// `puts_per_txn` puts per transaction when it is not 0. Stops after max_txns transactions.
// Returns the seconds taken and how many puts were replayed.
struct replay_time {
  double seconds;
  std::size_t puts;
};
replay_time bare_lmdb_replay(const put_log& log, sync_mode sync, std::size_t puts_per_txn, std::size_t max_txns) {
  scratch_dir dir;
  MDB_env* env = nullptr;
  check_lmdb(mdb_env_create(&env), "mdb_env_create");
  check_lmdb(mdb_env_set_mapsize(env, std::size_t{1} << 30), "mdb_env_set_mapsize");
  // The flags lmdb_storage uses.
  check_lmdb(mdb_env_open(env, dir.path().c_str(), MDB_NOTLS | (sync == sync_mode::no_sync ? MDB_NOSYNC : 0), 0600),
             "mdb_env_open");
  MDB_dbi dbi;
  {
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    check_lmdb(mdb_dbi_open(txn, nullptr, 0, &dbi), "mdb_dbi_open");
    check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  const auto start = bench_clock::now();
  std::size_t at = 0, put = 0;
  for (std::size_t t = 0; t < max_txns && put < log.puts(); ++t) {
    const std::size_t n = std::min(puts_per_txn != 0 ? puts_per_txn : log.txn_puts[t], log.puts() - put);
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    for (std::size_t i = 0; i < n; ++i, ++put) {
      MDB_val k{log.sizes[2 * put], const_cast<char*>(log.bytes.data() + at)};
      at += k.mv_size;
      MDB_val v{log.sizes[2 * put + 1], const_cast<char*>(log.bytes.data() + at)};
      at += v.mv_size;
      check_lmdb(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
    }
    check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  const double seconds = std::chrono::duration<double>(bench_clock::now() - start).count();
  mdb_env_close(env);
  return {seconds, put};
}

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
  scratch_dir dir;
  std::unique_ptr<storage> store;
};

std::string body_for(std::uint64_t n) {
  return testing::make_body({.id = testing::uuid_v4(n),
                             .identities = {{"email", "subject" + std::to_string(n) + "@example.com"},
                                            {"ios_advertising_id", "EA7583CD-A667-48BC-B806-" + std::to_string(n)}},
                             .callback_urls = {"https://controller.example.com/opendsr/callbacks"}});
}

// One iteration is a round of `per_round` submissions spread over `submitters` threads, all
// released at once; its time runs from the release until the last thread is done.
void BM_intake(benchmark::State& state, store_kind kind, std::size_t submitters, std::size_t per_round) {
  store_under_test s(kind);
  recording_storage recorder(*s.store);
  engine_options options;
  options.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  engine e = must(engine::open(recorder, options), "opening the engine");
  auto committer = must(group_committer::start(e), "starting the group committer");
  recorder.log = {};  // the schema commit of open() is not intake

  std::uint64_t next = 0;
  std::atomic<std::size_t> failures{0};
  for (auto _ : state) {
    std::vector<std::vector<std::string>> bodies(submitters);
    for (std::size_t i = 0; i < per_round; ++i) bodies[i % submitters].push_back(body_for(next++));
    std::latch go(static_cast<std::ptrdiff_t>(submitters) + 1);
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < submitters; ++t)
      pool.emplace_back([&, t] {
        go.arrive_and_wait();
        for (const std::string& b : bodies[t])
          if (!committer->submit("3622", b, received)) ++failures;
      });
    go.arrive_and_wait();
    const auto start = bench_clock::now();
    for (std::thread& t : pool) t.join();
    state.SetIterationTime(std::chrono::duration<double>(bench_clock::now() - start).count());
  }
  committer->stop();
  if (failures > 0) {
    state.SkipWithError("a submission failed");
    return;
  }

  const auto submitted = static_cast<double>(next);
  const put_log& log = recorder.log;
  state.SetItemsProcessed(static_cast<std::int64_t>(next));
  state.counters["batch"] = submitted / static_cast<double>(log.txn_puts.size());
  state.counters["keys/req"] = static_cast<double>(log.puts()) / submitted;
  state.counters["bytes/req"] = static_cast<double>(log.bytes.size()) / submitted;
  if (kind == store_kind::memory) return;

  // Rates are per second of the engine's own timed rounds; benchmark divides items by the
  // manual time, so the floors are computed the same way here.
  const sync_mode sync = kind == store_kind::lmdb_durable ? sync_mode::durable : sync_mode::no_sync;
  const double requests_per_put = submitted / static_cast<double>(log.puts());
  const replay_time floor = bare_lmdb_replay(log, sync, 0, log.txn_puts.size());
  state.counters["floor/s"] = static_cast<double>(floor.puts) * requests_per_put / floor.seconds;
  if (kind != store_kind::lmdb_durable) return;
  // One fsync per submission is slow: 2,000 of them give a stable rate.
  const auto puts_per_request = static_cast<std::size_t>(static_cast<double>(log.puts()) / submitted + 0.5);
  const replay_time each = bare_lmdb_replay(log, sync, puts_per_request, 2000);
  state.counters["fsync_each/s"] = static_cast<double>(each.puts) * requests_per_put / each.seconds;
}

// The ratios need the engine's rate, which the benchmark library derives after the run: they
// are computed by the reporter below from the counters above.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> with_ratios = runs;
    for (Run& r : with_ratios) {
      const auto rate = r.counters.find("items_per_second");
      if (rate == r.counters.end()) continue;
      for (const auto& [floor, ratio] : {std::pair{"floor/s", "vs_floor"}, std::pair{"fsync_each/s", "vs_fsync_each"}})
        if (const auto f = r.counters.find(floor); f != r.counters.end() && f->second.value > 0)
          r.counters[ratio] = benchmark::Counter(rate->second.value / f->second.value);
    }
    ConsoleReporter::ReportRuns(with_ratios);
  }
};

void warn_if_tmpfs() {
  const char* root = std::getenv("OPENDSR_BENCH_DIR");
  const fs::path dir = root ? fs::path(root) : fs::temp_directory_path();
  constexpr long tmpfs_magic = 0x01021994;
  struct statfs info {};
  if (statfs(dir.c_str(), &info) == 0 && info.f_type == tmpfs_magic)
    std::fprintf(stderr, "intake_bench: WARNING: %s is a tmpfs; the durable figures measure no fsync. "
                         "Set OPENDSR_BENCH_DIR to a directory on a disk.\n", dir.c_str());
}

void register_all() {
  struct config {
    const char* name;
    store_kind kind;
    std::size_t submitters, per_round, iterations;
  };
  // Rounds sized so that each figure takes about a second or two on the development machine.
  for (const config& c : {config{"lmdb_durable", store_kind::lmdb_durable, 1, 1000, 3},
                          config{"lmdb_durable", store_kind::lmdb_durable, 8, 4000, 3},
                          config{"lmdb_durable", store_kind::lmdb_durable, 64, 8192, 5},
                          config{"lmdb_no_sync", store_kind::lmdb_no_sync, 64, 8192, 5},
                          config{"memory", store_kind::memory, 64, 8192, 5}})
    benchmark::RegisterBenchmark(
        (std::string("BM_intake/") + c.name + "/submitters:" + std::to_string(c.submitters)).c_str(),
        [c](benchmark::State& state) { BM_intake(state, c.kind, c.submitters, c.per_round); })
        ->UseManualTime()
        ->Iterations(static_cast<benchmark::IterationCount>(c.iterations))
        ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace opendsr

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  opendsr::warn_if_tmpfs();
  opendsr::register_all();
  opendsr::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
