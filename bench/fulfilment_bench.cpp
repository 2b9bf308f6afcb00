// Fulfilment: building an access package, importing subject data and erasing profiles on LMDB
// durable, each beside a floor measured in the same run (issue 9; design/performance.md: "an
// access package for a profile with 100,000 events builds in memory that does not grow with the
// number of events"). docs/fulfilment-benchmark.md gives one run's figures and what limits each.
//
// Events are realistic JSON objects of about 430 bytes (event_json below). Every store lives in
// a fresh directory under $OPENDSR_BENCH_DIR, else the system's temporary directory (not a tmpfs,
// or durable measures no fsync). Each case runs `rounds` rounds; ratios are medians over the
// rounds of per-round ratios (a floor runs right after what it is the floor of, so both sample
// the same machine weather).
//
// package/events:N  one profile with N events (filled in batches of 5,000, not timed), then per
//   round: build_package() into a results_files_store (committed), then the floors.
//   - ev/s, MB/s: events and JSON Lines bytes of the build per second (wall clock, commit
//     included).
//   - walk_ev/s: records() alone over the same profile (the store walk the build streams from).
//   - zip_ev/s: libzip (default deflate) archiving the same JSON Lines files, already written,
//     into one zip, fsynced: the archive step alone.
//   - vs_floor: build rate / the floor's rate, the floor's time being walk + zip (1 = the build
//     costs nothing beyond reading the events and deflating them; the rest is writing the scratch
//     files, SHA-256, copying the archive into the results store, signing).
//   - hwm_cold_KiB: VmHWM growth during the first build (VmHWM reset through /proc/self/clear_refs
//     before it). It counts LMDB's file-backed map pages that the build touches first: page cache
//     mapped into the process, which grows with N by design of LMDB, not heap.
//   - hwm_warm_KiB: the largest VmHWM growth of the later builds, whose map pages are already
//     resident: what the build itself holds.
//   - anon_KiB: the largest growth of RssAnon (heap and anonymous memory, sampled every 2 ms by a
//     thread) over any build. Neither this nor hwm_warm_KiB should grow with N.
// import_records  2,000 profiles with 3 identities and 50 events each: 102,000 JSON Lines records, in
//   batches of 1,000 lines (consecutive lines of one mpid share a profile_write, as `opendsr
//   import` groups them). Per round, in fresh directories:
//   - rec/s: subject_data::write of the batches, one durable transaction each.
//   - bare_rec/s: bare liblmdb, the same batches as durable transactions putting the same keys
//     and values the store puts (index entries, events, the profile record once per write), with
//     none of the store's reads, checks or encoding.
//   - vs_bare: rec/s / bare_rec/s.
//   - cli_rec/s, cli_vs_bare: the real `opendsr import --batch 1000` on a JSON Lines file of the
//     same records, end to end (process start, parsing, store open), when the binary is found
//     ($OPENDSR, else apps/opendsr in the build directory).
// erase_profiles  500 profiles with 3 identities and 100 events each; erase() one profile per call,
//   in a shuffled order. Floor: bare liblmdb holding the same keys, mdb_del of each of a
//   profile's keys in one durable transaction per profile, in the same order.
//   - prof/s, ev/s: profiles and events erased per second; bare_prof/s; vs_bare.
//
// Run: build/<dir>/bench/fulfilment_bench [--benchmark_filter=package]   (~2-4 min)
#include "bench_support.hpp"

#include <opendsr/identity.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/openssl_signer.hpp>
#include <opendsr/package_builder.hpp>
#include <opendsr/results_files_store.hpp>
#include <opendsr/subject_data.hpp>

#include <benchmark/benchmark.h>
#include <lmdb.h>
#include <zip.h>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace opendsr;
using bench::die;
using bench::must;
using bench::scratch_dir;
using clock_type = std::chrono::steady_clock;

constexpr std::string_view workspace = "bench";
constexpr const char* domain = "processor.example.com";
constexpr int rounds = 3;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void check(result<void> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
}

void check_lmdb(int rc, const char* what) {
  if (rc != 0) die(std::string(what) + ": " + mdb_strerror(rc));
}

// ---- The records: a realistic event (~430 bytes), attributes and identities ----

std::string event_json(std::uint64_t i) {
  char buf[640];
  const int n = std::snprintf(
      buf, sizeof buf,
      R"({"event_type":"custom_event","event_name":"add_to_cart","timestamp_unixtime_ms":%llu,)"
      R"("session_id":"s-%08llx","source_message_id":"6d92078a-8246-4ba4-%04llx-%012llx",)"
      R"("data":{"custom_attributes":{"sku":"SKU-%05llu","price":"19.99","currency":"GBP",)"
      R"("category":"garden/tools","quantity":"%llu"},"screen_name":"product-%02llu"},)"
      R"("device_info":{"platform":"iOS","os_version":"17.1.2","app_version":"4.12.0-812",)"
      R"("locale":"en_GB"}})",
      1764770000000ull + i * 1371, static_cast<unsigned long long>(i / 40),
      static_cast<unsigned long long>(i % 65536), static_cast<unsigned long long>(i * 2654435761u % 1000000000000ull),
      static_cast<unsigned long long>(i % 99991), static_cast<unsigned long long>(1 + i % 5),
      static_cast<unsigned long long>(i % 97));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::string attributes_json(profile_id id) {
  return R"({"first_name":"Ada","last_name":"Lovelace-)" + std::to_string(id) +
         R"(","tier":"gold","country":"GB","opted_in":true,"lifetime_value":1234.5})";
}

std::vector<identity> identities_of(profile_id id) {
  char phone[32];
  std::snprintf(phone, sizeof phone, "+44 7700 9%05lld", static_cast<long long>(id % 100000));
  return {{identity_type::controller_customer_id, "C-" + std::to_string(id)},
          {identity_type::email, "user" + std::to_string(id) + "@example.com"},
          {identity_type::mobile_number, phone}};
}

// ---- The same keys the subject store writes (docs/subject-data.md "Key schema"), for the floors ----

void append_component(std::string& k, std::string_view s) {  // the workspace, short here
  k.push_back(static_cast<char>(s.size()));
  k.append(s);
}
void append_u64(std::string& k, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) k.push_back(static_cast<char>(v >> shift));
}
void append_mpid(std::string& k, profile_id id) { append_u64(k, static_cast<std::uint64_t>(id) ^ (1ull << 63)); }

std::string profile_key(profile_id id) {
  std::string k = "p";
  append_component(k, workspace);
  append_mpid(k, id);
  return k;
}
// The normalised value only differs by a few bytes (the phone's spaces); the size is what counts.
std::string identity_key(const identity& i, profile_id id) {
  std::string k = "i";
  append_component(k, workspace);
  k.push_back(static_cast<char>(i.type));
  append_component(k, i.value);
  append_mpid(k, id);
  return k;
}
std::string event_key(profile_id id, std::uint64_t seq) {
  std::string k = "e";
  append_component(k, workspace);
  append_mpid(k, id);
  append_u64(k, seq);
  return k;
}
// A value of the profile record's size: next_seq, the identities as written, the attributes.
std::string profile_value(const profile_write& w) {
  std::string v(4, '\0');
  for (const auto& i : w.identities) v += std::string(1, '\0') + std::string(1, '\0') + i.value;
  return v + w.attributes.value_or("{}");
}

// A bare liblmdb environment with the flags lmdb_storage uses (MDB_NOTLS, durable), no adapter.
class bare_lmdb {
 public:
  explicit bare_lmdb(const fs::path& dir) {
    fs::create_directories(dir);
    check_lmdb(mdb_env_create(&env_), "mdb_env_create");
    check_lmdb(mdb_env_set_mapsize(env_, std::size_t{4} << 30), "mdb_env_set_mapsize");
    check_lmdb(mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0600), "mdb_env_open");
    MDB_txn* txn = begin();
    check_lmdb(mdb_dbi_open(txn, nullptr, 0, &dbi_), "mdb_dbi_open");
    commit(txn);
  }
  ~bare_lmdb() { mdb_env_close(env_); }
  bare_lmdb(const bare_lmdb&) = delete;
  bare_lmdb& operator=(const bare_lmdb&) = delete;

  MDB_txn* begin() {
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    return txn;
  }
  void commit(MDB_txn* txn) { check_lmdb(mdb_txn_commit(txn), "mdb_txn_commit"); }
  void put(MDB_txn* txn, std::string_view key, std::string_view value) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    check_lmdb(mdb_put(txn, dbi_, &k, &v, 0), "mdb_put");
  }
  void del(MDB_txn* txn, std::string_view key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    check_lmdb(mdb_del(txn, dbi_, &k, nullptr), "mdb_del");
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

// Where bare_write is in the records: the profile being written, its next event, its record.
struct bare_cursor {
  std::uint64_t next_seq = 0;
  std::string profile_value;
};

// Puts what subject_data::write puts for `batch`, in one durable transaction.
void bare_write(bare_lmdb& db, std::span<const profile_write> batch, bare_cursor& at) {
  MDB_txn* txn = db.begin();
  for (const profile_write& w : batch) {
    if (w.attributes) {  // each profile's line comes once, before its events
      at.next_seq = 0;
      at.profile_value = profile_value(w);
      for (const identity& i : w.identities) db.put(txn, identity_key(i, w.id), {});
    }
    for (const std::string& e : w.events) db.put(txn, event_key(w.id, at.next_seq++), e);
    db.put(txn, profile_key(w.id), at.profile_value);
  }
  db.commit(txn);
}

// ---- Memory: VmHWM, RssAnon, RssFile from /proc/self/status ----

long status_kib(std::string_view field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  return -1;
}

// Resets VmHWM to the current resident set (Linux >= 4.0); false if refused.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// The largest RssAnon seen from construction to stop(), sampled every 2 ms by a thread.
class anon_peak_sampler {
 public:
  anon_peak_sampler()
      : peak_(status_kib("RssAnon:")), thread_([this] {
          while (!stop_.load()) {
            peak_ = std::max(peak_.load(), status_kib("RssAnon:"));
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
        }) {}
  long stop() {
    stop_ = true;
    thread_.join();
    return std::max(peak_.load(), status_kib("RssAnon:"));
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> peak_;
  std::thread thread_;
};

// ---- The signer: an RSA-2048 key and a self-signed certificate made by the openssl command ----

const signer& the_signer() {
  static std::unique_ptr<signer> s = [] {
    scratch_dir keys("fulfilment-keys");
    const std::string key = (keys.path() / "key.pem").string(), cert = (keys.path() / "cert.pem").string();
    const std::string cmd = std::string("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=") + domain +
                            " -addext subjectAltName=DNS:" + domain + " -keyout " + key + " -out " + cert +
                            " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) die("openssl req failed (is the openssl command installed?)");
    auto read = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    return must(openssl::make_signer({read(key), read(cert), domain, "https://opendsr.example.com/opendsr_cert.pem"}),
                "openssl::make_signer");
  }();
  return *s;
}

std::unique_ptr<lmdb_storage> open_store(const fs::path& dir) {
  return must(lmdb_storage::open({.path = dir}), "lmdb_storage::open");  // durable
}

// ---- package/events:N ----

// Archives `names` (in `dir`) into `archive` with libzip's defaults, as the builder does, and
// fsyncs it; returns the seconds taken.
double zip_floor(const fs::path& dir, const std::vector<std::string>& names, const fs::path& archive) {
  const auto start = clock_type::now();
  int err = 0;
  zip_t* za = zip_open(archive.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (za == nullptr) die("zip_open failed");
  for (const std::string& name : names) {
    zip_source_t* src = zip_source_file(za, (dir / name).c_str(), 0, -1);
    if (src == nullptr || zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8) < 0) die("zip_file_add failed");
  }
  if (zip_close(za) != 0) die("zip_close failed");
  const int fd = ::open(archive.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) die("fsync of the floor's archive failed");
  ::close(fd);
  const double t = seconds_since(start);
  fs::remove(archive);
  return t;
}

void package(benchmark::State& state) {
  const auto n = static_cast<std::uint64_t>(state.range(0));
  const signer& sig = the_signer();
  scratch_dir dir("fulfilment");
  auto store = open_store(dir.path() / "store");
  auto data = must(open_subject_store(*store), "open_subject_store");
  constexpr profile_id id = 4242;
  {
    profile_write first{.id = id, .attributes = attributes_json(id), .identities = identities_of(id), .events = {}};
    check(data->write(workspace, std::span(&first, 1)), "write");
    for (std::uint64_t i = 0; i < n;) {
      profile_write w{.id = id, .attributes = std::nullopt, .identities = {}, .events = {}};
      for (; i < n && w.events.size() < 5000; ++i) w.events.push_back(event_json(i));
      check(data->write(workspace, std::span(&w, 1)), "write");
    }
  }
  // The floor's input: the same JSON Lines files the package holds (10,000 events a file).
  const fs::path lines = dir.path() / "lines";
  fs::create_directories(lines);
  std::vector<std::string> names{"profile.jsonl"};
  std::uint64_t line_bytes = 0;
  {
    std::ofstream(lines / names[0]) << attributes_json(id) << '\n';
    for (std::uint64_t i = 0; i < n; i += 10'000) {
      names.push_back("events-" + std::to_string(i / 10'000 + 1) + ".jsonl");
      std::ofstream out(lines / names.back(), std::ios::binary);
      for (std::uint64_t j = i; j < std::min(n, i + 10'000); ++j) {
        const std::string e = event_json(j);
        line_bytes += e.size() + 1;
        out << e << '\n';
      }
    }
  }
  auto results = must(results_files_store::open_directory({.directory = dir.path() / "results"}), "open_directory");
  package_options options;
  options.scratch_directory = dir.path() / "scratch";
  fs::create_directories(options.scratch_directory);

  std::vector<double> build_rate, walk_rate, zip_rate, vs_floor, vs_walk;
  long hwm_cold = 0, hwm_warm = 0, anon = 0, file_cold = 0;
  bool reset_refused = false;
  std::uint64_t zip_bytes = 0;
  for (auto _ : state) {
    for (int r = 0; r < rounds; ++r) {
      ::malloc_trim(0);  // the fill's freed heap leaves, so growth counts what the build touches
      reset_refused |= !reset_peak_rss();
      const long hwm0 = status_kib("VmHWM:"), anon0 = status_kib("RssAnon:"), file0 = status_kib("RssFile:");
      anon_peak_sampler sampler;
      const auto start = clock_type::now();
      const std::string token = must(make_results_token(), "make_results_token");
      auto writer = must(results->begin(token), "results begin");
      package_summary summary = must(build_package(*data, workspace, id, sig, *writer, options), "build_package");
      must(writer->commit(), "commit");
      const double t_build = seconds_since(start);
      const long anon_peak = sampler.stop();
      const long hwm_growth = status_kib("VmHWM:") - hwm0;
      if (r == 0) {
        hwm_cold = hwm_growth;
        file_cold = status_kib("RssFile:") - file0;
      } else {
        hwm_warm = std::max(hwm_warm, hwm_growth);
      }
      anon = std::max(anon, anon_peak - anon0);
      if (summary.events != n) die("the package holds " + std::to_string(summary.events) + " events");
      zip_bytes = summary.bytes;
      writer.reset();
      must(results->remove(token), "results remove");

      // Floor 1: the store walk alone.
      auto walk_start = clock_type::now();
      std::uint64_t seen = 0, bytes = 0;
      check(data->records(workspace, id,
                          [&](const subject_record& rec) {
                            seen += rec.what == subject_record::kind::event;
                            bytes += rec.json.size();
                            return true;
                          }),
            "records");
      const double t_walk = seconds_since(walk_start);
      if (seen != n) die("the walk saw " + std::to_string(seen) + " events");
      benchmark::DoNotOptimize(bytes);
      // Floor 2: libzip deflating the same files.
      const double t_zip = zip_floor(lines, names, dir.path() / "floor.zip");

      const double nd = static_cast<double>(n);
      build_rate.push_back(nd / t_build);
      walk_rate.push_back(nd / t_walk);
      zip_rate.push_back(nd / t_zip);
      vs_floor.push_back((t_walk + t_zip) / t_build);
      vs_walk.push_back(t_walk / t_build);
    }
  }
  const double rate = median(build_rate);
  state.counters["ev/s"] = rate;
  state.counters["MB/s"] = rate * static_cast<double>(line_bytes) / static_cast<double>(n) / 1e6;
  state.counters["walk_ev/s"] = median(walk_rate);
  state.counters["zip_ev/s"] = median(zip_rate);
  state.counters["vs_floor"] = median(vs_floor);
  state.counters["vs_walk"] = median(vs_walk);
  state.counters["lines_MB"] = static_cast<double>(line_bytes) / 1e6;
  state.counters["zip_MB"] = static_cast<double>(zip_bytes) / 1e6;
  state.counters["hwm_cold_KiB"] = static_cast<double>(hwm_cold);
  state.counters["map_KiB"] = static_cast<double>(file_cold);
  state.counters["hwm_warm_KiB"] = static_cast<double>(hwm_warm);
  state.counters["anon_KiB"] = static_cast<double>(anon);
  if (reset_refused) state.SetLabel("VmHWM reset refused: hwm figures are bounds from below");
}

// ---- import and erase: profiles with identities and events ----

// The records of `profiles` profiles with `events` events each, in file order (a profile line
// then its events), cut into batches of `batch_lines` lines as `opendsr import` does.
std::vector<std::vector<profile_write>> make_batches(profile_id first, std::size_t profiles, std::size_t events,
                                                     std::size_t batch_lines, std::uint64_t* lines_out) {
  std::vector<std::vector<profile_write>> batches(1);
  std::size_t in_batch = 0;
  std::uint64_t lines = 0, event_no = 0;
  auto next_line = [&] {
    if (in_batch == batch_lines) {
      batches.emplace_back();
      in_batch = 0;
    }
    ++in_batch;
    ++lines;
  };
  for (std::size_t p = 0; p < profiles; ++p) {
    const profile_id id = first + static_cast<profile_id>(p);
    next_line();
    batches.back().push_back({.id = id, .attributes = attributes_json(id), .identities = identities_of(id), .events = {}});
    for (std::size_t e = 0; e < events; ++e) {
      next_line();
      if (batches.back().empty() || batches.back().back().id != id)
        batches.back().push_back({.id = id, .attributes = std::nullopt, .identities = {}, .events = {}});
      batches.back().back().events.push_back(event_json(event_no++));
    }
  }
  *lines_out = lines;
  return batches;
}

// The same records as `opendsr import` JSON Lines.
void write_jsonl(const fs::path& file, const std::vector<std::vector<profile_write>>& batches) {
  std::ofstream out(file, std::ios::binary);
  for (const auto& batch : batches)
    for (const profile_write& w : batch) {
      if (w.attributes) {
        out << R"({"mpid":")" << w.id << R"(","identities":{)";
        for (std::size_t i = 0; i < w.identities.size(); ++i)
          out << (i ? "," : "") << '"' << opendsr_name(w.identities[i].type) << R"(":")" << w.identities[i].value
              << '"';
        out << R"(},"attributes":)" << *w.attributes << "}\n";
      }
      for (const std::string& e : w.events) out << R"({"mpid":")" << w.id << R"(","event":)" << e << "}\n";
    }
}

// The opendsr admin tool, or empty when it is not built.
fs::path opendsr_tool() {
  if (const char* env = std::getenv("OPENDSR")) return env;
  std::error_code ec;
  const fs::path guess = fs::canonical("/proc/self/exe", ec).parent_path().parent_path() / "apps/opendsr";
  return fs::exists(guess, ec) ? guess : fs::path();
}

void import_records(benchmark::State& state) {
  constexpr std::size_t profiles = 2000, events = 50, batch_lines = 1000;
  std::uint64_t lines = 0;
  const auto batches = make_batches(1, profiles, events, batch_lines, &lines);
  const fs::path tool = opendsr_tool();
  std::vector<double> store_rate, bare_rate, cli_rate, vs_bare, cli_vs_bare;
  for (auto _ : state) {
    for (int r = 0; r < rounds; ++r) {
      scratch_dir dir("fulfilment");
      double t_store = 0, t_bare = 0, t_cli = 0;
      {
        auto store = open_store(dir.path() / "store");
        auto data = must(open_subject_store(*store), "open_subject_store");
        const auto start = clock_type::now();
        for (const auto& batch : batches) check(data->write(workspace, batch), "write");
        t_store = seconds_since(start);
      }
      {
        bare_lmdb db(dir.path() / "bare");
        bare_cursor at;
        const auto start = clock_type::now();
        for (const auto& batch : batches) bare_write(db, batch, at);
        t_bare = seconds_since(start);
      }
      const double nd = static_cast<double>(lines);
      store_rate.push_back(nd / t_store);
      bare_rate.push_back(nd / t_bare);
      vs_bare.push_back(t_bare / t_store);
      if (!tool.empty()) {
        const fs::path file = dir.path() / "records.jsonl", data_dir = dir.path() / "data";
        write_jsonl(file, batches);
        const std::string add = tool.string() + " workspace add " + std::string(workspace) + " --data-dir " +
                                data_dir.string() + " >/dev/null 2>&1";
        if (std::system(add.c_str()) != 0) die("`opendsr workspace add` failed: " + add);
        const std::string cmd = tool.string() + " import --workspace " + std::string(workspace) + " --data-dir " +
                                data_dir.string() + " --batch " + std::to_string(batch_lines) + " " + file.string() +
                                " >" + (dir.path() / "out").string() + " 2>&1";
        const auto start = clock_type::now();
        if (std::system(cmd.c_str()) != 0) die("`opendsr import` failed; see " + cmd);
        t_cli = seconds_since(start);
        cli_rate.push_back(nd / t_cli);
        cli_vs_bare.push_back(t_bare / t_cli);
      }
    }
  }
  state.counters["lines"] = static_cast<double>(lines);
  state.counters["rec/s"] = median(store_rate);
  state.counters["bare_rec/s"] = median(bare_rate);
  state.counters["vs_bare"] = median(vs_bare);
  if (!tool.empty()) {
    state.counters["cli_rec/s"] = median(cli_rate);
    state.counters["cli_vs_bare"] = median(cli_vs_bare);
  } else {
    state.SetLabel("opendsr not found: set OPENDSR to time the import command");
  }
}

void erase_profiles(benchmark::State& state) {
  constexpr std::size_t profiles = 500, events = 100;
  std::uint64_t lines = 0;
  const auto batches = make_batches(1, profiles, events, 1000, &lines);
  std::vector<profile_id> order;
  for (std::size_t p = 0; p < profiles; ++p) order.push_back(1 + static_cast<profile_id>(p));
  std::shuffle(order.begin(), order.end(), std::mt19937_64(9));
  std::vector<double> prof_rate, bare_rate, vs_bare;
  for (auto _ : state) {
    for (int r = 0; r < rounds; ++r) {
      scratch_dir dir("fulfilment");
      auto store = open_store(dir.path() / "store");
      auto data = must(open_subject_store(*store), "open_subject_store");
      bare_lmdb db(dir.path() / "bare");
      bare_cursor at;
      for (const auto& batch : batches) {
        check(data->write(workspace, batch), "write");
        bare_write(db, batch, at);
      }
      auto start = clock_type::now();
      for (profile_id id : order) {
        erasure_receipt receipt = must(data->erase(workspace, id), "erase");
        if (receipt.events_erased != events) die("erase removed " + std::to_string(receipt.events_erased) + " events");
      }
      const double t_store = seconds_since(start);
      start = clock_type::now();
      for (profile_id id : order) {
        MDB_txn* txn = db.begin();
        for (const identity& i : identities_of(id)) db.del(txn, identity_key(i, id));
        for (std::uint64_t seq = 0; seq < events; ++seq) db.del(txn, event_key(id, seq));
        db.del(txn, profile_key(id));
        db.commit(txn);
      }
      const double t_bare = seconds_since(start);
      prof_rate.push_back(static_cast<double>(profiles) / t_store);
      bare_rate.push_back(static_cast<double>(profiles) / t_bare);
      vs_bare.push_back(t_bare / t_store);
    }
  }
  const double rate = median(prof_rate);
  state.counters["prof/s"] = rate;
  state.counters["ev/s"] = rate * static_cast<double>(events);
  state.counters["bare_prof/s"] = median(bare_rate);
  state.counters["vs_bare"] = median(vs_bare);
}

}  // namespace

BENCHMARK(package)->ArgName("events")->Arg(10'000)->Arg(100'000)->Arg(300'000)->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(import_records)->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(erase_profiles)->Iterations(1)->Unit(benchmark::kSecond);

int main(int argc, char** argv) {
  opendsr::bench::warn_if_tmpfs();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
