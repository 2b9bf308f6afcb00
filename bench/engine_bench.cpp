// Engine throughput on the memory adapter, each figure interleaved with its floor in the same
// benchmark (so the ratio compares runs under the same machine conditions):
//   submit      engine::submit_batch (batch = submissions per write transaction) vs the floor:
//               parse_request plus the bare store doing a submit's gets and puts (same keys and
//               byte sizes), one transaction per `batch` requests
//   status      engine::status vs the floor: a read transaction and one get of the record
//   tick        transitions per second (pending -> in_progress, one callback each)
//   conflict    a submission refused with 409 by one of 1M in-flight requests vs the same with
//               1k in flight (vs_1k shows what the store's size costs)
// Times are the thread's CPU time (the machine is shared); items_per_second is the engine's rate,
// floor_per_second the floor's, vs_floor their ratio.
// Run pinned to one core: taskset -c 1 build/<dir>/bench/engine_bench
#include <opendsr/engine.hpp>
#include <opendsr/memory_storage.hpp>

#include "../tests/support/request_bodies.hpp"
#include "common/sha256.hpp"
#include "store/keys.hpp"

#include <benchmark/benchmark.h>

#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::make_body;
using testing::uuid_v4;

constexpr std::string_view ws = "3622";
const timestamp received = parse_rfc3339("2021-11-29T18:16:24.556805Z").value();
constexpr std::size_t prepared = 1 << 15;  // distinct bodies per benchmark
constexpr std::size_t round_size = 256;    // operations timed per side per iteration

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

template <class F>
double timed(F&& f) {
  const double start = thread_seconds();
  f();
  return thread_seconds() - start;
}

// Reports `items` done in `ours` seconds beside the floor's `floor` seconds for the same items.
void report_vs_floor(benchmark::State& state, std::int64_t items, double ours, double floor) {
  const double n = static_cast<double>(items);
  state.SetItemsProcessed(items);
  state.counters["floor_per_second"] = n / floor;
  state.counters["vs_floor"] = floor / ours;
}

engine_options bench_options() {
  engine_options o;
  o.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  return o;
}

// A typical body: two identities, one callback URL; n makes the id and identities unique.
std::string body_for(std::uint64_t n, const char* type = "erasure") {
  return make_body({.id = uuid_v4(n),
                    .type = type,
                    .identities = {{"email", "subject" + std::to_string(n) + "@example.com"},
                                   {"ios_advertising_id", "EA7583CD-A667-48BC-B806-" + std::to_string(n)}},
                    .callback_urls = {"https://controller.example.com/opendsr/callbacks"}});
}

std::vector<std::string> bodies(std::uint64_t first, std::size_t count) {
  std::vector<std::string> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(body_for(first + i));
  return out;
}

// An engine over a fresh memory store, replaceable between timed rounds.
struct fresh_engine {
  fresh_engine() { reset(); }
  void reset() {
    e.reset();
    store = std::make_unique<memory_storage>();
    e.emplace(engine::open(*store, bench_options()).value());
  }
  std::unique_ptr<memory_storage> store;
  std::optional<engine> e;
};

// The floor of one submit: parse, then what admit() asks of the store for a request without a
// group: two gets (dedup, conflict) and five puts (record with the body, conflict entry, timer,
// one callback entry with its body and its due key), with the engine's key sizes.
void floor_submit(write_transaction& txn, const std::string& body, std::string& scratch) {
  auto req = parse_request(body).value();
  const std::string ref = detail::keys::request_ref(ws, req.subject_request_id);
  const std::string record_key = detail::keys::request_key(ref);
  const std::string conflict_key =
      detail::keys::conflict_key(ws, req.type, detail::sha256(req.identities.front().value));
  benchmark::DoNotOptimize(txn.get(record_key));
  benchmark::DoNotOptimize(txn.get(conflict_key));
  scratch.assign(body.size() + 120, 'r');
  txn.put(record_key, scratch).value();
  txn.put(conflict_key, req.subject_request_id).value();
  txn.put(detail::keys::timer_key(received, ref), "\x00").value();
  scratch.assign(330, 'o');
  txn.put(detail::keys::callback_key({ref, 0, 0}), scratch).value();
  txn.put(detail::keys::callback_due_key(received, {ref, 0, 0}), {}).value();
}

void BM_submit(benchmark::State& state) {
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  const auto b = bodies(0, prepared);
  fresh_engine f;
  auto bare = std::make_unique<memory_storage>();
  std::vector<submission> batch;
  std::string scratch;
  std::size_t next = 0;
  double ours = 0, floor = 0;
  for (auto _ : state) {
    if (next + round_size > prepared) {  // every prepared body is stored: start over, untimed
      f.reset();
      bare = std::make_unique<memory_storage>();
      next = 0;
    }
    const double t = timed([&] {
      for (std::size_t done = 0; done < round_size; done += batch_size) {
        batch.clear();
        for (std::size_t i = 0; i < batch_size; ++i) batch.push_back({ws, b[next + done + i], received});
        for (const auto& r : f.e->submit_batch(batch))
          if (!r) state.SkipWithError("submit failed");
      }
    });
    floor += timed([&] {
      for (std::size_t done = 0; done < round_size; done += batch_size) {
        auto txn = bare->begin_write().value();
        for (std::size_t i = 0; i < batch_size; ++i) floor_submit(*txn, b[next + done + i], scratch);
        txn->commit().value();
      }
    });
    next += round_size;
    ours += t;
    state.SetIterationTime(t);
  }
  report_vs_floor(state, state.iterations() * round_size, ours, floor);
}
BENCHMARK(BM_submit)->ArgName("batch")->Arg(1)->Arg(16)->Arg(256)->UseManualTime();

void BM_status(benchmark::State& state) {
  const std::uint64_t stored = 10'000;
  fresh_engine f;
  for (std::uint64_t n = 0; n < stored; n += 1000) {
    const auto b = bodies(n, 1000);
    std::vector<submission> batch;
    for (const auto& body : b) batch.push_back({ws, body, received});
    for (const auto& r : f.e->submit_batch(batch)) r.value();
  }
  std::vector<std::string> ids, record_keys;
  for (std::uint64_t n = 0; n < round_size; ++n) {
    ids.push_back(uuid_v4((n * 7919) % stored));
    record_keys.push_back(detail::keys::request_key(detail::keys::request_ref(ws, ids.back())));
  }
  double ours = 0, floor = 0;
  for (auto _ : state) {
    const double t = timed([&] {
      for (const auto& id : ids) benchmark::DoNotOptimize(f.e->status(ws, id).value());
    });
    floor += timed([&] {
      for (const auto& key : record_keys) {
        auto txn = f.store->begin_read().value();
        benchmark::DoNotOptimize(txn->get(key).value());
      }
    });
    ours += t;
    state.SetIterationTime(t);
  }
  report_vs_floor(state, state.iterations() * round_size, ours, floor);
}
BENCHMARK(BM_status)->UseManualTime();

// A store of 10k requests that all start processing at the same midnight (skip_waiting_period),
// then one tick that moves all of them (tick_batch_size timers per write transaction).
void BM_tick(benchmark::State& state) {
  constexpr std::uint64_t due = 10'000;
  std::vector<std::string> b;
  for (std::uint64_t n = 0; n < due; ++n)
    b.push_back(make_body({.id = uuid_v4(n),
                           .identities = {{"email", "subject" + std::to_string(n) + "@example.com"}},
                           .skip_waiting_period = true,
                           .callback_urls = {"https://controller.example.com/opendsr/callbacks"}}));
  std::size_t transitions = 0;
  for (auto _ : state) {
    fresh_engine f;
    std::vector<submission> batch;
    for (const auto& body : b) batch.push_back({ws, body, received});
    for (const auto& r : f.e->submit_batch(batch)) r.value();
    state.SetIterationTime(timed([&] { transitions += f.e->tick(received + 24h).value().transitions; }));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(transitions));
}
BENCHMARK(BM_tick)->Unit(benchmark::kMillisecond)->Iterations(5)->UseManualTime();

// An engine holding `count` in-flight requests, built with batched submits.
std::unique_ptr<fresh_engine> engine_with(std::uint64_t count) {
  auto f = std::make_unique<fresh_engine>();
  std::vector<submission> batch;
  for (std::uint64_t first = 0; first < count; first += 1000) {
    const auto b = bodies(first, std::min<std::uint64_t>(1000, count - first));
    batch.clear();
    for (const auto& body : b) batch.push_back({ws, body, received});
    for (const auto& r : f->e->submit_batch(batch)) r.value();
  }
  return f;
}

// Submissions with fresh ids whose identities match stored requests 0..stored-1: each is refused
// with 409 after the duplicate check and the conflict index lookup.
std::vector<std::string> conflicting_bodies(std::uint64_t stored, std::uint64_t first_new_id) {
  std::vector<std::string> out;
  for (std::uint64_t n = 0; n < round_size; ++n) {
    const std::uint64_t victim = (n * 7919) % stored;
    std::string body = body_for(victim);
    body.replace(body.find(uuid_v4(victim)), 36, uuid_v4(first_new_id + n));
    out.push_back(std::move(body));
  }
  return out;
}

void BM_conflict(benchmark::State& state) {
  constexpr std::uint64_t large = 1'000'000, small = 1'000;
  const auto big = engine_with(large);
  const auto little = engine_with(small);
  const auto big_bodies = conflicting_bodies(large, large);
  const auto little_bodies = conflicting_bodies(small, large);
  auto refuse_all = [&](engine& e, const std::vector<std::string>& b) {
    for (const auto& body : b)
      if (e.submit(ws, body, received).error().code() != errc::identity_conflict)
        state.SkipWithError("expected a conflict");
  };
  double ours = 0, baseline = 0;
  for (auto _ : state) {
    const double t = timed([&] { refuse_all(*big->e, big_bodies); });
    baseline += timed([&] { refuse_all(*little->e, little_bodies); });
    ours += t;
    state.SetIterationTime(t);
  }
  const double n = static_cast<double>(state.iterations() * round_size);
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["in_flight"] = static_cast<double>(large);
  state.counters["with_1k_per_second"] = n / baseline;
  state.counters["vs_1k"] = baseline / ours;
}
BENCHMARK(BM_conflict)->UseManualTime()->Iterations(400);

}  // namespace
}  // namespace opendsr

BENCHMARK_MAIN();
