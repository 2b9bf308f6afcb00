// The storage floors of design/performance.md, measured in one run: bare LMDB (the C API, no
// opendsr), the LMDB adapter durable and no-sync, and the memory adapter, in the same shapes,
// then the ratios of each adapter to bare LMDB in the same sync mode.
//
// Shapes
// - put_per_txn/1 and /1000: puts of a 36-byte random key and a 128-byte value, 1 or 1,000
//   per transaction (items/s = puts/s).
// - records/100: 100 records per transaction, each a 1,024-byte value under a random key plus
//   two index entries (64 and 48-byte keys holding the record's key), as intake writes them
//   (items/s = records/s).
// - random_get: gets of random existing keys in a store of 1,000,000 entries, 1,000 per read
//   transaction (items/s = gets/s). The store is built once per run.
//
// Run pinned to one core:   taskset -c 1 build/<dir>/bench/storage_bench
// Repetitions of all benchmarks run randomly interleaved (see main()), each reporting medians.
// The stores live in $OPENDSR_BENCH_DIR, else the system's temporary directory; it must not be a
// tmpfs, or the durable figures measure no fsync at all (the run warns if it is).
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/memory_storage.hpp>

#include <benchmark/benchmark.h>
#include <lmdb.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <sys/vfs.h>

namespace {

namespace fs = std::filesystem;
using opendsr::sync_mode;

constexpr std::uint64_t big_store_entries = 1'000'000;
constexpr int gets_per_txn = 1'000;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "storage_bench: %s\n", what.c_str());
  std::exit(1);
}

void check_lmdb(int rc, const char* what) {
  if (rc != 0) die(std::string(what) + ": " + mdb_strerror(rc));
}

template <class T>
T must(opendsr::result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

void must(opendsr::result<void> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
}

// A key that looks like a random UUID-based id: prefix + 32 hex digits of a mix of n.
class key_maker {
 public:
  explicit key_maker(std::string_view prefix) : key_(prefix) { key_.resize(prefix.size() + 32); }

  std::string_view operator()(std::uint64_t n) {
    static constexpr char hex[] = "0123456789abcdef";
    std::uint64_t a = mix(n), b = mix(a);
    char* out = key_.data() + key_.size() - 32;
    for (int i = 0; i < 16; ++i, a >>= 4) out[i] = hex[a & 15];
    for (int i = 16; i < 32; ++i, b >>= 4) out[i] = hex[b & 15];
    return key_;
  }

 private:
  static std::uint64_t mix(std::uint64_t z) {  // splitmix64
    z += 0x9e3779b97f4a7c15;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  std::string key_;
};

// A fresh directory under the bench root, removed with the object.
class scratch_dir {
 public:
  scratch_dir() {
    std::string pattern = (root() / "opendsr-storage-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) die("cannot create a directory under " + root().string());
    path_ = pattern;
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const fs::path& path() const { return path_; }

  static fs::path root() {
    const char* env = std::getenv("OPENDSR_BENCH_DIR");
    return env != nullptr ? fs::path(env) : fs::temp_directory_path();
  }

 private:
  fs::path path_;
};

// The bare floor: the LMDB C API with the flags the adapter uses, nothing else.
class bare_lmdb {
 public:
  bare_lmdb(const fs::path& dir, sync_mode sync) {
    check_lmdb(mdb_env_create(&env_), "mdb_env_create");
    check_lmdb(mdb_env_set_mapsize(env_, std::size_t{8} << 30), "mdb_env_set_mapsize");
    unsigned flags = MDB_NOTLS | (sync == sync_mode::no_sync ? MDB_NOSYNC : 0);
    check_lmdb(mdb_env_open(env_, dir.c_str(), flags, 0600), "mdb_env_open");
    begin(0);
    check_lmdb(mdb_dbi_open(txn_, nullptr, 0, &dbi_), "mdb_dbi_open");
    commit();
  }
  ~bare_lmdb() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    mdb_env_close(env_);
  }
  bare_lmdb(const bare_lmdb&) = delete;
  bare_lmdb& operator=(const bare_lmdb&) = delete;

  void begin_write() { begin(0); }
  void begin_read() { begin(MDB_RDONLY); }
  void put(std::string_view key, std::string_view value) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    check_lmdb(mdb_put(txn_, dbi_, &k, &v, 0), "mdb_put");
  }
  std::size_t get(std::string_view key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v;
    check_lmdb(mdb_get(txn_, dbi_, &k, &v), "mdb_get");
    return v.mv_size;
  }
  void commit() { check_lmdb(mdb_txn_commit(std::exchange(txn_, nullptr)), "mdb_txn_commit"); }
  void end_read() { mdb_txn_abort(std::exchange(txn_, nullptr)); }

 private:
  void begin(unsigned flags) { check_lmdb(mdb_txn_begin(env_, nullptr, flags, &txn_), "mdb_txn_begin"); }

  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* txn_ = nullptr;
};

// The same calls through the storage seam.
class through_seam {
 public:
  explicit through_seam(std::unique_ptr<opendsr::storage> store) : store_(std::move(store)) {}

  void begin_write() { write_ = must(store_->begin_write(), "begin_write"); }
  void begin_read() { read_ = must(store_->begin_read(), "begin_read"); }
  void put(std::string_view key, std::string_view value) { must(write_->put(key, value), "put"); }
  std::size_t get(std::string_view key) {
    auto v = must(read_->get(key), "get");
    if (!v) die("a key of the store is missing");
    return v->size();
  }
  void commit() {
    must(write_->commit(), "commit");
    write_.reset();
  }
  void end_read() { read_.reset(); }

 private:
  std::unique_ptr<opendsr::storage> store_;
  std::unique_ptr<opendsr::write_transaction> write_;
  std::unique_ptr<opendsr::read_transaction> read_;
};

std::unique_ptr<opendsr::storage> open_lmdb(const fs::path& dir, sync_mode sync) {
  return must(opendsr::lmdb_storage::open({.path = dir, .sync = sync}), "lmdb_storage::open");
}

enum class backend { bare_durable, bare_no_sync, lmdb_durable, lmdb_no_sync, memory };

const char* name(backend b) {
  switch (b) {
    case backend::bare_durable: return "bare_lmdb_durable";
    case backend::bare_no_sync: return "bare_lmdb_no_sync";
    case backend::lmdb_durable: return "lmdb_durable";
    case backend::lmdb_no_sync: return "lmdb_no_sync";
    case backend::memory: return "memory";
  }
  return "?";
}

// Calls body(session) with a fresh, empty store of backend b.
template <class F>
void with_fresh_store(backend b, F&& body) {
  scratch_dir dir;
  switch (b) {
    case backend::bare_durable: {
      bare_lmdb s(dir.path(), sync_mode::durable);
      return body(s);
    }
    case backend::bare_no_sync: {
      bare_lmdb s(dir.path(), sync_mode::no_sync);
      return body(s);
    }
    case backend::lmdb_durable: {
      through_seam s(open_lmdb(dir.path(), sync_mode::durable));
      return body(s);
    }
    case backend::lmdb_no_sync: {
      through_seam s(open_lmdb(dir.path(), sync_mode::no_sync));
      return body(s);
    }
    case backend::memory: {
      through_seam s(std::make_unique<opendsr::memory_storage>());
      return body(s);
    }
  }
}

void put_per_txn(benchmark::State& state, backend b) {
  const auto per_txn = static_cast<int>(state.range(0));
  with_fresh_store(b, [&](auto& s) {
    key_maker key("k/");
    const std::string value(128, 'v');
    std::uint64_t n = 0;
    for (auto _ : state) {
      s.begin_write();
      for (int i = 0; i < per_txn; ++i) s.put(key(n++), value);
      s.commit();
    }
  });
  state.SetItemsProcessed(state.iterations() * per_txn);
}

void records(benchmark::State& state, backend b) {
  const auto per_txn = static_cast<int>(state.range(0));
  with_fresh_store(b, [&](auto& s) {
    key_maker record_key("req/"), by_id("idx/id/ws-0000001/"), by_due("idx/due/");
    const std::string body(1024, 'b');
    std::uint64_t n = 0;
    for (auto _ : state) {
      s.begin_write();
      for (int i = 0; i < per_txn; ++i, ++n) {
        const std::string_view record = record_key(n);
        s.put(record, body);
        s.put(by_id(n), record);
        s.put(by_due(n), record);
      }
      s.commit();
    }
  });
  state.SetItemsProcessed(state.iterations() * per_txn);
}

key_maker& big_store_keys() {
  static key_maker keys("k/");
  return keys;
}

template <class S>
void fill_big_store(S& s) {
  const std::string value(128, 'v');
  for (std::uint64_t n = 0; n < big_store_entries;) {
    s.begin_write();
    for (int i = 0; i < 10'000; ++i) s.put(big_store_keys()(n++), value);
    s.commit();
  }
}

// The 1M-entry LMDB store, built once per run through the adapter (no-sync), closed between uses.
const fs::path& big_lmdb_store() {
  static scratch_dir dir;
  static const bool built = [] {
    through_seam s(open_lmdb(dir.path(), sync_mode::no_sync));
    fill_big_store(s);
    return true;
  }();
  (void)built;
  return dir.path();
}

template <class S>
void random_gets(benchmark::State& state, S& s) {
  std::mt19937_64 rng(42);
  std::size_t bytes = 0;
  for (auto _ : state) {
    s.begin_read();
    for (int i = 0; i < gets_per_txn; ++i) bytes += s.get(big_store_keys()(rng() % big_store_entries));
    s.end_read();
  }
  benchmark::DoNotOptimize(bytes);
  state.SetItemsProcessed(state.iterations() * gets_per_txn);
}

void random_get(benchmark::State& state, backend b) {
  if (b == backend::memory) {
    static through_seam memory = [] {
      through_seam s(std::make_unique<opendsr::memory_storage>());
      fill_big_store(s);
      return s;
    }();
    return random_gets(state, memory);
  }
  const fs::path& dir = big_lmdb_store();
  if (b == backend::bare_no_sync) {
    bare_lmdb s(dir, sync_mode::no_sync);
    return random_gets(state, s);
  }
  through_seam s(open_lmdb(dir, sync_mode::no_sync));
  random_gets(state, s);
}

// Prints the console report, then each adapter's rate over bare LMDB's in the same shape and
// sync mode, from the medians of this run.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Aggregate || run.aggregate_name != "median") continue;
      auto it = run.counters.find("items_per_second");
      if (it == run.counters.end()) continue;
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      medians_[name] = it->second.value;
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nratios of medians (adapter / bare LMDB, same shape and sync mode):\n");
    for (const auto& [full_name, rate] : medians_) {
      const auto slash = full_name.find('/');
      const std::string who = full_name.substr(0, slash), shape = full_name.substr(slash);
      const char* floor = who == "lmdb_durable" ? "bare_lmdb_durable"
                          : who == "lmdb_no_sync" || who == "memory" ? "bare_lmdb_no_sync"
                                                                     : nullptr;
      if (floor == nullptr) continue;
      auto base = medians_.find(floor + shape);
      if (base == medians_.end()) continue;
      std::printf("  %-40s %10.0f /s  = %5.2f x %s (%.0f /s)\n", full_name.c_str(), rate,
                  rate / base->second, floor, base->second);
    }
  }

 private:
  std::map<std::string, double> medians_;
};

void register_all() {
  const backend all[] = {backend::bare_durable, backend::lmdb_durable, backend::bare_no_sync,
                         backend::lmdb_no_sync, backend::memory};
  auto shape = [](benchmark::internal::Benchmark* b) {
    return b->Repetitions(3)->ReportAggregatesOnly(true)->UseRealTime();
  };
  for (backend b : all) {
    const std::string who = name(b);
    shape(benchmark::RegisterBenchmark((who + "/put_per_txn").c_str(), put_per_txn, b))->Arg(1)->Arg(1000);
    shape(benchmark::RegisterBenchmark((who + "/records").c_str(), records, b))->Arg(100);
  }
  // Reads do not depend on the sync mode; bare_lmdb_no_sync names the read floor.
  for (backend b : {backend::bare_no_sync, backend::lmdb_no_sync, backend::memory})
    shape(benchmark::RegisterBenchmark((std::string(name(b)) + "/random_get").c_str(), random_get, b));
}

void describe_storage_dir() {
  const fs::path root = scratch_dir::root();
  struct statfs info {};
  constexpr long tmpfs_magic = 0x01021994;
  const bool tmpfs = statfs(root.c_str(), &info) == 0 && info.f_type == tmpfs_magic;
  benchmark::AddCustomContext("storage directory", root.string() + (tmpfs ? " (tmpfs!)" : ""));
  if (tmpfs)
    std::fprintf(stderr, "storage_bench: WARNING: %s is a tmpfs; durable figures are meaningless. "
                 "Set OPENDSR_BENCH_DIR to a directory on a real disk.\n", root.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // Interleave the repetitions of all benchmarks, so a burst of load on the machine (fsync
  // latency above all) spreads over every backend rather than landing on one. The command line
  // may turn it off.
  std::vector<char*> args(argv, argv + argc);
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  argc = static_cast<int>(args.size());
  argv = args.data();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  describe_storage_dir();
  register_all();
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
