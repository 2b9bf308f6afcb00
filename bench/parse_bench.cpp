// Parse + validate of POST /v3/requests bodies beside the floor: a bare boost::json::parse of
// the same bytes, and the same parse into a monotonic stack buffer (the fastest DOM parse).
//
// The three are interleaved in batches inside one benchmark, so the ratios compare runs under
// the same machine conditions. items_per_second is parse_request; the counters:
//   floor_per_second      boost::json::parse (default allocator)
//   monotonic_per_second  boost::json::parse with a 4 KiB stack buffer + monotonic_resource
//   vs_floor              parse_request rate / floor rate (target >= 0.5, design/performance.md)
//   vs_monotonic          parse_request rate / monotonic rate
// Pin to one core for stable figures: taskset -c 1 build/<dir>/bench/parse_bench
#include <opendsr/request.hpp>

#include "../tests/fuzz/request_bodies.hpp"

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <string>

namespace {

namespace json = boost::json;
using seconds = std::chrono::duration<double>;

constexpr int batch = 256;

template <class Parse>
seconds time_batch(std::string_view body, Parse parse) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < batch; ++i) parse(body);
  return std::chrono::steady_clock::now() - start;
}

void parse_request_vs_floor(benchmark::State& state, const std::string& body) {
  if (!opendsr::parse_request(body)) {
    state.SkipWithError("the body does not parse");
    return;
  }
  const auto ours = [](std::string_view b) { benchmark::DoNotOptimize(opendsr::parse_request(b)); };
  const auto floor = [](std::string_view b) { benchmark::DoNotOptimize(json::parse(json::string_view(b.data(), b.size()))); };
  const auto monotonic = [](std::string_view b) {
    unsigned char buffer[4096];
    json::monotonic_resource mr(buffer, sizeof buffer);
    benchmark::DoNotOptimize(json::parse(json::string_view(b.data(), b.size()), &mr));
  };

  seconds ours_total{}, floor_total{}, monotonic_total{};
  for (auto _ : state) {
    const seconds t = time_batch(body, ours);
    floor_total += time_batch(body, floor);
    monotonic_total += time_batch(body, monotonic);
    ours_total += t;
    state.SetIterationTime(t.count());
  }
  const double parses = static_cast<double>(state.iterations()) * batch;
  state.SetItemsProcessed(static_cast<std::int64_t>(parses));
  state.SetBytesProcessed(static_cast<std::int64_t>(parses * static_cast<double>(body.size())));
  state.counters["floor_per_second"] = parses / floor_total.count();
  state.counters["monotonic_per_second"] = parses / monotonic_total.count();
  state.counters["vs_floor"] = floor_total / ours_total;
  state.counters["vs_monotonic"] = monotonic_total / ours_total;
}

const std::string& seed_body = opendsr::testing::seed_body;
const std::string every_identity_body = opendsr::testing::every_identity_but_mpid_body();

BENCHMARK_CAPTURE(parse_request_vs_floor, seed_example, seed_body)
    ->UseManualTime()->Repetitions(3)->ReportAggregatesOnly(true);
BENCHMARK_CAPTURE(parse_request_vs_floor, every_identity_but_mpid_24, every_identity_body)
    ->UseManualTime()->Repetitions(3)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
