// Forwarding: erasure requests forwarded per second to a loopback partner (issue 10), Kochava
// batches and Blueshift singles, with the CPU per forwarded request, beside floors measured in
// the same run.
//
// A round: a fresh store (memory, or LMDB durable in a fresh directory) and engine whose
// workspace has two active outputs, as opendsrd runs them: "Kochava" (kochava partner, endpoint
// http://127.0.0.1:PORT, batch_max 10000) and "Blueshift" (blueshift partner, endpoint
// http://127.0.0.1:PORT2). The round submits `requests` erasures through submit_batch in groups
// of 256, each with one status callback URL (so every entry change queues a callback, as in
// production): for the Kochava case 20,000 with one IDFA each (their Blueshift entry is
// `skipped`), for the Blueshift case 2,000 with an email and a customer id each (their Kochava
// entry `skipped`). The submission is timed on its own (submit/s). A manual clock stays at the
// requests' receipt: Kochava's count rule (10,000 ids) makes both batches due, no hour passes.
//
// The forwarding phase, timed: from forward_dispatcher::poll() until on_recorded has counted
// every request `sent`. The real pieces do the work: forward_dispatcher (opendsrd's defaults: 32
// in flight, claims of 16), the partners' build and classify, and the Asio http_client (policy
// allow_http + allow_loopback, 2 I/O threads as opendsrd on this machine, 8 connections per
// origin). The far end is bench_support.hpp's lean_receiver, one per partner: Kochava's answers
// 200 {"status":"OK","job_id":"..."}, Blueshift's 200 {}. After the round every request's entry
// for the output is checked to be `sent`, the queue empty, and the receiver to have seen one
// POST per batch.
//
// The floors, right after each round (the same machine weather):
// - record: a second store and engine prepared the same way (untimed), then the forwarding
//   bookkeeping alone with no HTTP: claim_forwards(now, 16) and record_forwards of the verdict
//   the partner gives the receiver's answer, one batch per call as the dispatcher records them
//   (it keeps one batch per output in flight), until nothing is due. What forwarding costs
//   beyond this is HTTP, the partner's build and classify, and the dispatcher's hand-offs.
// - http (Blueshift): the same client sending the same Blueshift requests (built beforehand by
//   the configured partner) to the same receiver one at a time, each after the previous answer,
//   as the dispatcher sends one output's batches: the transport's own rate.
//
// Counters (per request: one erasure request; a Kochava request carries 1 id, a Blueshift one 2)
// - items_per_second: requests forwarded per second (wall clock of the forwarding phase). For
//   Kochava, ids per second.
// - cpu_us/req: CPU of the process (getrusage, user + sys) over the phase, less the receivers'
//   threads, per request: dispatcher, engine, store (fsync waits are not CPU), partner, client.
// - recv_us/req: the receivers' own CPU per request (not in cpu_us/req).
// - floor/s, floor_us/req: the record floor's requests per second and CPU per request.
// - vs_floor, vs_floor_cpu: medians over the rounds of (forwarded/s) / (floor/s) and of
//   floor_us / cpu_us (1 = forwarding costs nothing beyond the bookkeeping).
// - http/s, vs_http (Blueshift): the http floor's requests per second and the median of
//   (forwarded/s) / (http/s).
// - submit/s: requests admitted per second by submit_batch (their forwards written), median.
// - txn/req, floor_txn/req: write transactions per request in the phase and in the floor.
// - KB/POST: request bytes (header and body) per POST the partner received.
//
// Rounds: 7 (OPENDSR_BENCH_ROUNDS); requests per round: 20,000 Kochava, 2,000 Blueshift
// (OPENDSR_BENCH_KOCHAVA_REQUESTS, OPENDSR_BENCH_BLUESHIFT_REQUESTS), to see how the costs grow
// with the queue.
//
// Pinning: the main thread (so the dispatcher's worker, the client's I/O threads and the floors)
// runs on CPU 0, the receivers on CPU 1; OPENDSR_BENCH_PIN=0 turns it off. The LMDB stores live
// in $OPENDSR_BENCH_DIR, else the system's temporary directory (not a tmpfs, or durable measures
// no fsync). A summary table follows Google Benchmark's.
//
// Run: build/<dir>/bench/forward_bench [--benchmark_filter=kochava]
#include "bench_support.hpp"

#include <opendsr/asio_http_client.hpp>
#include <opendsr/blueshift.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/forward_dispatcher.hpp>
#include <opendsr/kochava.hpp>

#include "../tests/support/request_bodies.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace opendsr {
namespace {

using bench_clock = std::chrono::steady_clock;
using bench::die;
using bench::lean_receiver;
using bench::median;
using bench::must;
using bench::process_cpu;
using bench::store_kind;
using bench::store_under_test;

constexpr std::string_view workspace = "3622";
constexpr std::string_view kochava_output = "Kochava";
constexpr std::string_view blueshift_output = "Blueshift";
constexpr std::size_t submit_group = 256;
constexpr std::size_t claim_batch = 16;  // forward_dispatcher_options' default
const timestamp received = parse_rfc3339("2021-11-29T18:16:24.556805Z").value();

enum class partner_case { kochava, blueshift };

std::string answer(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

const std::string kochava_body = R"({"status":"OK","job_id":"3f6c1d2e-bench"})";
const std::string blueshift_body = "{}";

// What lives for the whole run: the two partners' receivers, the client, the callback URL.
struct environment {
  environment()
      : kochava(bench::pinning() ? 1 : -1, answer(kochava_body)), blueshift(bench::pinning() ? 1 : -1, answer(blueshift_body)) {
    client = bench::loopback_http_client(2);  // opendsrd: one per core (made on the main thread: they inherit CPU 0)
    callback_url = "http://127.0.0.1:" + std::to_string(kochava.port()) + "/cb";  // never called: no callback dispatcher runs
  }

  double receivers_cpu() const { return kochava.cpu() + blueshift.cpu(); }

  lean_receiver kochava, blueshift;
  std::unique_ptr<http_client> client;
  std::string callback_url;
};

environment& env() {
  static environment e;
  return e;
}

engine_options options_for() {
  engine_options o;
  o.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  o.request.callback_destinations.allow_http = true;
  o.request.callback_destinations.allow_loopback = true;
  o.distribution.partners = {kochava_partner_kind(), blueshift_partner_kind()};
  return o;
}

output_definition kochava_definition(const environment& x) {
  return {std::string(kochava_output), "kochava", true,
          {{{"account_id", "41235"}, {"app_id", "90311"}, {"batch_max", "10000"}},
           {{"api_key", "bench-kochava-api-key-0001"}},
           "http://127.0.0.1:" + std::to_string(x.kochava.port())}};
}

output_definition blueshift_definition(const environment& x) {
  return {std::string(blueshift_output), "blueshift", true,
          {{}, {{"user_api_key", "bench-blueshift-user-key-0002"}}, "http://127.0.0.1:" + std::to_string(x.blueshift.port())}};
}

// An uppercase UUID, as an IDFA is written.
std::string idfa(std::uint64_t n) {
  std::string s = testing::uuid_v4(n);
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> bodies_for(partner_case which, std::size_t requests, std::uint64_t& next_id, const std::string& callback) {
  std::vector<std::string> bodies;
  bodies.reserve(requests);
  for (std::size_t i = 0; i < requests; ++i) {
    const std::uint64_t n = ++next_id;
    testing::body_spec spec{.id = testing::uuid_v4(n), .callback_urls = {callback}};
    if (which == partner_case::kochava)
      spec.identities = {{"ios_advertising_id", idfa(n * 7919 + 17)}};
    else
      spec.identities = {{"email", "subject" + std::to_string(n) + "@example.com"}, {"controller_customer_id", "customer-" + std::to_string(n)}};
    bodies.push_back(testing::make_body(spec));
  }
  return bodies;
}

// A store and engine with both outputs, holding the round's requests.
struct prepared {
  prepared(store_kind kind, const environment& x, const std::vector<std::string>& bodies) : s(kind, "forward") {
    e.emplace(must(engine::open(*s.counted, options_for()), "opening the engine"));
    must(e->add_output(workspace, kochava_definition(x), received), "adding the Kochava output");
    must(e->add_output(workspace, blueshift_definition(x), received), "adding the Blueshift output");
    const double cpu0 = process_cpu();
    const auto start = bench_clock::now();
    for (std::size_t at = 0; at < bodies.size(); at += submit_group) {
      std::vector<submission> group;
      for (std::size_t i = at; i < std::min(at + submit_group, bodies.size()); ++i) group.push_back({workspace, bodies[i], received});
      for (auto& r : e->submit_batch(group))
        if (!r) die("submit: " + r.error().message());
    }
    submit_seconds = std::chrono::duration<double>(bench_clock::now() - start).count();
    submit_cpu = process_cpu() - cpu0;
  }
  store_under_test s;
  std::optional<engine> e;
  double submit_seconds = 0, submit_cpu = 0;
};

// The verdict the partner gives the receiver's answer (the record floor records the same).
forward_verdict verdict_for(partner_case which, const environment& x) {
  const partner_settings settings = (which == partner_case::kochava ? kochava_definition(x) : blueshift_definition(x)).config;
  auto kind = which == partner_case::kochava ? kochava_partner_kind() : blueshift_partner_kind();
  auto p = must(kind->configure(settings), "configuring the partner");
  http_client_response r;
  r.status = 200;
  r.body = which == partner_case::kochava ? kochava_body : blueshift_body;
  forward_verdict v = p->classify(r, 1);
  if (v.kind != forward_verdict_kind::sent) die("the partner does not take the receiver's answer as sent: " + v.message);
  return v;
}

// Checks that every request's entry for `output` is `sent` and nothing is left to forward.
void check_all_sent(const engine& e, std::string_view output, std::uint64_t first_id, std::size_t requests) {
  for (std::size_t i = 0; i < requests; ++i) {
    const std::string id = testing::uuid_v4(first_id + 1 + i);
    const status_document doc = must(e.status(workspace, id), "reading a status");
    bool sent = false;
    for (const distribution_entry& d : doc.distribution) sent = sent || (d.name == output && d.status == distribution_state::sent);
    if (!sent) die("request " + id + " is not sent to " + std::string(output));
  }
  const forward_queue_stats q = must(e.forward_queue(), "reading the forward queue");
  if (q.queued != 0 || q.batches != 0 || q.dead_batches != 0) die("forwards are left after the round");
}

struct summary_row {
  std::string store, partner;
  std::size_t requests = 0;
  double rate = 0, cpu_us = 0, recv_us = 0, floor_rate = 0, floor_us = 0, vs_floor = 0, vs_floor_cpu = 0;
  double http_rate = 0, http_us = 0, vs_http = 0, submit_rate = 0, txn = 0, floor_txn = 0, kb_per_post = 0, posts = 0;
};
std::vector<summary_row> summary;

void BM_forward(benchmark::State& state, store_kind kind, partner_case which, std::size_t requests) {
  environment& x = env();
  const std::string_view output = which == partner_case::kochava ? kochava_output : blueshift_output;
  lean_receiver& partner_end = which == partner_case::kochava ? x.kochava : x.blueshift;
  const forward_verdict floor_verdict = verdict_for(which, x);

  static std::uint64_t next_id = 0;
  double forwarded_total = 0, seconds_total = 0, cpu_total = 0, recv_total = 0, floor_seconds_total = 0, floor_cpu_total = 0;
  double http_seconds_total = 0, http_cpu_total = 0, writes_total = 0, floor_writes_total = 0, posts_total = 0, post_bytes_total = 0;
  std::vector<double> vs_floor, vs_floor_cpu, vs_http, submit_rates;

  for (auto _ : state) {
    const std::uint64_t first_id = next_id;
    const std::vector<std::string> bodies = bodies_for(which, requests, next_id, x.callback_url);
    std::optional<prepared> forwarding;
    forwarding.emplace(kind, x, bodies);
    prepared& a = *forwarding;
    submit_rates.push_back(static_cast<double>(requests) / a.submit_seconds);
    manual_clock clock(received);

    std::mutex mutex;
    std::condition_variable done;
    std::size_t sent = 0;
    std::string trouble;
    forward_dispatcher_options d;
    d.owner = "bench";
    d.on_recorded = [&](const result<forward_record_report>& r) {
      std::lock_guard lock(mutex);
      if (!r) {
        trouble = "recording failed: " + r.error().message();
      } else {
        sent += r->requests_sent;
        if (r->retried + r->split + r->failed + r->stale > 0)
          trouble = "a batch was not sent (" + std::to_string(r->retried) + " retried, " + std::to_string(r->split) + " split, " +
                    std::to_string(r->failed) + " failed, " + std::to_string(r->stale) + " stale)";
      }
      done.notify_all();
    };
    d.on_claim_error = [&](const error& e) {
      std::lock_guard lock(mutex);
      trouble = "claim failed: " + e.message();
      done.notify_all();
    };
    auto dispatcher = must(forward_dispatcher::start(*a.e, *x.client, clock, std::move(d)), "starting the dispatcher");
    const std::uint64_t posts_before = partner_end.requests(), bytes_before = partner_end.request_bytes();
    const std::size_t writes_before = a.s.counted->writes.load();

    // The forwarding phase.
    const double cpu0 = process_cpu(), recv0 = x.receivers_cpu();
    const auto start = bench_clock::now();
    dispatcher->poll();
    {
      std::unique_lock lock(mutex);
      if (!done.wait_for(lock, std::chrono::minutes(10), [&] { return sent >= requests || !trouble.empty(); }))
        die("the round did not end in 10 minutes");
    }
    const double seconds = std::chrono::duration<double>(bench_clock::now() - start).count();
    const double recv_cpu = x.receivers_cpu() - recv0;
    const double cpu = process_cpu() - cpu0 - recv_cpu;
    state.SetIterationTime(seconds);
    dispatcher->stop();
    dispatcher.reset();
    if (!trouble.empty()) die(trouble);
    const double writes = static_cast<double>(a.s.counted->writes.load() - writes_before);
    const std::uint64_t posts = partner_end.requests() - posts_before, post_bytes = partner_end.request_bytes() - bytes_before;
    const std::size_t expected_posts = which == partner_case::kochava ? (requests + 9999) / 10000 : requests;
    if (posts != expected_posts)
      die("the partner received " + std::to_string(posts) + " POSTs, not " + std::to_string(expected_posts));
    check_all_sent(*a.e, output, first_id, requests);
    forwarding.reset();  // the floor's store is the only one alive, as this one was


    // The record floor: the same bookkeeping on an engine prepared the same way, no HTTP.
    prepared b(kind, x, bodies);
    const std::size_t floor_writes_before = b.s.counted->writes.load();
    const double floor_cpu0 = process_cpu();
    const auto floor_start = bench_clock::now();
    std::size_t floor_sent = 0;
    for (;;) {
      const std::vector<claimed_forward> claimed = must(b.e->claim_forwards(received, claim_batch, "floor"), "claiming");
      if (claimed.empty()) break;
      for (const claimed_forward& c : claimed) {
        const forward_outcome outcome{c.batch_key, c.lease, floor_verdict};
        floor_sent += must(b.e->record_forwards({&outcome, 1}, received), "recording").requests_sent;
      }
    }
    const double floor_seconds = std::chrono::duration<double>(bench_clock::now() - floor_start).count();
    const double floor_cpu = process_cpu() - floor_cpu0;
    if (floor_sent != requests) die("the floor sent " + std::to_string(floor_sent) + " requests");
    const double floor_writes = static_cast<double>(b.s.counted->writes.load() - floor_writes_before);

    // The http floor (Blueshift): the same requests, one at a time, through the same client.
    if (which == partner_case::blueshift) {
      auto p = must(blueshift_partner_kind()->configure(blueshift_definition(x).config), "configuring Blueshift");
      std::vector<http_client_request> built;
      for (std::size_t i = 0; i < requests; ++i) {
        const std::uint64_t n = first_id + 1 + i;
        const forward_subject subject{{{identity_type::controller_customer_id, "customer-" + std::to_string(n)},
                                       {identity_type::email, "subject" + std::to_string(n) + "@example.com"}}};
        built.push_back(must(p->build({&subject, 1}), "building a Blueshift request"));
      }
      std::mutex m;
      std::condition_variable answered;
      const double http_cpu0 = process_cpu(), http_recv0 = x.receivers_cpu();
      const auto http_start = bench_clock::now();
      for (http_client_request& r : built) {
        bool got = false;
        x.client->send(std::move(r), [&](result<http_client_response> response) {
          if (!response || response->status != 200) die("the http floor's request failed");
          std::lock_guard lock(m);
          got = true;
          answered.notify_one();
        });
        std::unique_lock lock(m);
        answered.wait(lock, [&] { return got; });
      }
      const double http_seconds = std::chrono::duration<double>(bench_clock::now() - http_start).count();
      const double http_recv = x.receivers_cpu() - http_recv0;
      http_cpu_total += process_cpu() - http_cpu0 - http_recv;
      http_seconds_total += http_seconds;
      vs_http.push_back(http_seconds / seconds);
    }

    const double n = static_cast<double>(requests);
    forwarded_total += n;
    seconds_total += seconds;
    cpu_total += cpu;
    recv_total += recv_cpu;
    floor_seconds_total += floor_seconds;
    floor_cpu_total += floor_cpu;
    writes_total += writes;
    floor_writes_total += floor_writes;
    posts_total += static_cast<double>(posts);
    post_bytes_total += static_cast<double>(post_bytes);
    vs_floor.push_back(floor_seconds / seconds);
    vs_floor_cpu.push_back(floor_cpu / cpu);
  }
  summary_row row;
  row.store = kind == store_kind::memory ? "memory" : "lmdb_durable";
  row.partner = which == partner_case::kochava ? "kochava" : "blueshift";
  row.requests = requests;
  row.rate = forwarded_total / seconds_total;
  row.cpu_us = 1e6 * cpu_total / forwarded_total;
  row.recv_us = 1e6 * recv_total / forwarded_total;
  row.floor_rate = forwarded_total / floor_seconds_total;
  row.floor_us = 1e6 * floor_cpu_total / forwarded_total;
  row.vs_floor = median(vs_floor);
  row.vs_floor_cpu = median(vs_floor_cpu);
  row.submit_rate = median(submit_rates);
  row.txn = writes_total / forwarded_total;
  row.floor_txn = floor_writes_total / forwarded_total;
  row.kb_per_post = post_bytes_total / posts_total / 1024;
  row.posts = posts_total / static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(forwarded_total));
  state.counters["cpu_us/req"] = row.cpu_us;
  state.counters["recv_us/req"] = row.recv_us;
  state.counters["floor/s"] = row.floor_rate;
  state.counters["floor_us/req"] = row.floor_us;
  state.counters["vs_floor"] = row.vs_floor;
  state.counters["vs_floor_cpu"] = row.vs_floor_cpu;
  state.counters["submit/s"] = row.submit_rate;
  state.counters["txn/req"] = row.txn;
  state.counters["floor_txn/req"] = row.floor_txn;
  state.counters["KB/POST"] = row.kb_per_post;
  if (which == partner_case::blueshift) {
    row.http_rate = forwarded_total / http_seconds_total;
    row.vs_http = median(vs_http);
    row.http_us = 1e6 * http_cpu_total / forwarded_total;
    state.counters["http/s"] = row.http_rate;
    state.counters["http_us/req"] = row.http_us;
    state.counters["vs_http"] = row.vs_http;
  }
  summary.push_back(row);
}

// A positive integer from the environment variable `name`, else `otherwise`.
std::size_t from_environment(const char* name, std::size_t otherwise) {
  const char* v = std::getenv(name);
  if (!v) return otherwise;
  const long long n = std::atoll(v);
  if (n <= 0) die(std::string(name) + " must be a positive integer");
  return static_cast<std::size_t>(n);
}

void register_all() {
  const std::size_t rounds = from_environment("OPENDSR_BENCH_ROUNDS", 7);
  const std::size_t kochava_requests = from_environment("OPENDSR_BENCH_KOCHAVA_REQUESTS", 20000);
  const std::size_t blueshift_requests = from_environment("OPENDSR_BENCH_BLUESHIFT_REQUESTS", 2000);
  struct config {
    const char* name;
    store_kind kind;
    partner_case which;
    std::size_t requests;
  };
  using enum store_kind;
  using enum partner_case;
  for (const config& c : {config{"memory/kochava", memory, kochava, kochava_requests},
                          config{"memory/blueshift", memory, blueshift, blueshift_requests},
                          config{"lmdb_durable/kochava", lmdb_durable, kochava, kochava_requests},
                          config{"lmdb_durable/blueshift", lmdb_durable, blueshift, blueshift_requests}}) {
    bench::register_rounds(std::string("BM_forward/") + c.name + "/requests:" + std::to_string(c.requests), rounds,
                           [c](benchmark::State& state) { BM_forward(state, c.kind, c.which, c.requests); });
  }
}

void print_summary() {
  if (summary.empty()) return;
  std::printf("\n| store | partner | requests | POSTs | KB/POST | forwarded/s | cpu_us/req (recv) | floor/s | floor_us/req | "
              "vs_floor | vs_floor_cpu | http/s | http_us/req | vs_http | submit/s | txn/req (floor) |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const summary_row& r : summary) {
    const std::string http = r.http_rate > 0 ? std::to_string(static_cast<long>(r.http_rate)) : "-";
    char vs_http[32] = "-", http_us[32] = "-";
    if (r.http_rate > 0) std::snprintf(vs_http, sizeof vs_http, "%.2f", r.vs_http);
    if (r.http_rate > 0) std::snprintf(http_us, sizeof http_us, "%.1f", r.http_us);
    std::printf("| %s | %s | %zu | %.0f | %.1f | %.0f | %.1f (%.1f) | %.0f | %.1f | %.2f | %.2f | %s | %s | %s | %.0f | %.4f (%.4f) |\n",
                r.store.c_str(), r.partner.c_str(), r.requests, r.posts, r.kb_per_post, r.rate, r.cpu_us, r.recv_us, r.floor_rate,
                r.floor_us, r.vs_floor, r.vs_floor_cpu, http.c_str(), http_us, vs_http, r.submit_rate, r.txn, r.floor_txn);
  }
}

}  // namespace
}  // namespace opendsr

int main(int argc, char** argv) {
  // The main thread, the dispatcher's worker and the client's I/O threads run on CPU 0; the
  // receivers pin themselves to CPU 1.
  if (!opendsr::bench::start_benchmarks(argc, argv)) return 1;
  opendsr::register_all();
  benchmark::RunSpecifiedBenchmarks();
  opendsr::print_summary();
  benchmark::Shutdown();
}
