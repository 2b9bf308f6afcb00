// Callback delivery: callbacks delivered per second to a loopback receiver, signing included,
// beside the signing floor measured in the same run (design/performance.md asks delivered/s >=
// 0.8 x the signing rate: each callback body is signed once, retries resend the stored bytes).
//
// A round: a fresh store (memory, or LMDB durable in a fresh directory) and engine, a manual
// clock at the requests' receipt, `per_round` erasure requests each with one callback URL
// (http://127.0.0.1:PORT/cb), which queues one callback each (status pending) due at the next
// flush. The clock moves to the flush; the round's time runs from poll() until on_recorded has
// counted every callback delivered. The real pieces do the work: callback_dispatcher, the Asio
// http_client (policy allow_http + allow_loopback, 1 or 2 I/O threads, 8 connections to the origin)
// and the OpenSSL signer with an RSA-2048 key generated at start. The far end is lean_receiver
// below: a single-threaded epoll HTTP/1.1 server answering every request 202 with keep-alive,
// part of the measurement environment, not of opendsr.
//
// The floor, right after each round (so both sample the same machine weather): the same signer
// signing, on one thread, exactly the bodies the dispatcher signed in that round (a signer
// wrapper keeps a copy of each, ~0.1 us of a ~300 us signature).
//
// Counters
// - items_per_second: callbacks delivered per second (wall clock of the round).
// - sign/s: the floor, signatures per second (wall clock).
// - vs_sign: median over the rounds of (delivered/s in the round) / (sign/s right after it).
// - cpu_us/cb: CPU of the whole process (getrusage RUSAGE_SELF, user + sys) over the round, per
//   callback: the dispatcher, engine, store (fsync waits are not CPU), http client, signing,
//   and the receiver thread too; nothing subtracted but the CPU of the optional spinners below.
// - recv_us/cb: the receiver thread's own CPU per callback (its thread CPU clock), included above.
// - sign_us: the floor's process CPU per signature.
// - vs_sign_cpu: median over the rounds of sign_us / (cpu_us/cb - recv_us/cb): deliveries per
//   CPU second of the sending side over signatures per CPU second (1 = delivery costs nothing
//   beyond its signature).
// - txn/cb: write transactions begun per callback (claims and records; each is an fsync on
//   LMDB durable).
// - cb/record: outcomes per record_callbacks call (how many responses a record groups).
//
// Pinning: by default the main thread (and so the floor, the first poll() and the client's I/O
// thread it creates) runs on CPU 0 and the receiver on CPU 1, so that delivery and its floor each
// get one core; OPENDSR_BENCH_PIN=0 turns it off. The LMDB store lives in $OPENDSR_BENCH_DIR,
// else the system's temporary directory (not a tmpfs, or durable measures no fsync).
// OPENDSR_BENCH_KEEP_AWAKE=1 keeps the CPUs from idling with SCHED_IDLE spinners (cpu_keeper).
//
// Run: build/<dir>/bench/callback_bench [--benchmark_filter=memory]
#include "bench_support.hpp"

#include <opendsr/asio_http_client.hpp>
#include <opendsr/callback_dispatcher.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/openssl_signer.hpp>
#include <opendsr/storage_wrapper.hpp>

#include "../tests/support/request_bodies.hpp"

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;
using bench::die;
using bench::must;
using bench::lean_receiver;
using bench::median;
using bench::pin_to;
using bench::pinning;
using bench::process_cpu;
using bench::store_kind;
using bench::store_under_test;

constexpr const char* domain = "opendsr.example.com";
const timestamp received = parse_rfc3339("2021-11-29T18:16:24.556805Z").value();

// ---- The signing identity: an RSA-2048 key and a self-signed certificate, made with OpenSSL ----

struct identity_pem {
  std::string key, certificate;
};

identity_pem generate_identity() {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  if (!key) die("EVP_RSA_gen failed");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(domain), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  const std::string san = std::string("DNS:") + domain;
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
  if (!ext || X509_add_ext(x, ext, -1) != 1) die("adding the subjectAltName failed");
  X509_EXTENSION_free(ext);
  if (X509_sign(x, key, EVP_sha256()) == 0) die("X509_sign failed");
  auto pem = [](auto write) {
    BIO* b = BIO_new(BIO_s_mem());
    if (write(b) != 1) die("PEM encoding failed");
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return out;
  };
  identity_pem id;
  id.key = pem([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  id.certificate = pem([&](BIO* b) { return PEM_write_bio_X509(b, x); });
  X509_free(x);
  EVP_PKEY_free(key);
  return id;
}

// Keeps a copy of every body it signs, for the floor.
class recording_signer final : public signer_wrapper {
 public:
  using signer_wrapper::signer_wrapper;

  result<std::string> sign(std::string_view bytes) const override {
    {
      std::lock_guard lock(mutex_);
      signed_.emplace_back(bytes);
    }
    return signer_wrapper::sign(bytes);
  }

  std::vector<std::string> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(signed_, {});
  }

 private:
  mutable std::mutex mutex_;
  mutable std::vector<std::string> signed_;
};

// ---- The store under test ----

// Optional (OPENDSR_BENCH_KEEP_AWAKE=1): a SCHED_IDLE spinner per CPU, which runs only when
// nothing else wants the CPU. On this project's virtual machines an idle vCPU sees an I/O
// completion late (up to a 4 ms timer tick), so an fsync the sending thread waits for alone
// takes ~4 ms instead of ~0.3 ms (see intake_bench). Their CPU time is known and subtracted
// from the process's.
class cpu_keeper {
 public:
  cpu_keeper() {
    const char* keep = std::getenv("OPENDSR_BENCH_KEEP_AWAKE");
    if (!keep || std::string(keep) != "1") return;
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < cpus; ++i) {
      spinners_.emplace_back([this, i, cpus] {
        if (cpus >= 2 && pinning()) pin_to(static_cast<int>(i));
        sched_param lowest{};
        if (sched_setscheduler(0, SCHED_IDLE, &lowest) != 0) return;  // never compete with the run
        while (!stop_.load(std::memory_order_relaxed)) {
        }
      });
      clockid_t id;
      if (pthread_getcpuclockid(spinners_.back().native_handle(), &id) != 0) die("pthread_getcpuclockid failed");
      clocks_.push_back(id);
    }
  }
  ~cpu_keeper() {
    stop_ = true;
    for (std::thread& t : spinners_) t.join();
  }
  cpu_keeper(const cpu_keeper&) = delete;
  cpu_keeper& operator=(const cpu_keeper&) = delete;

  bool on() const noexcept { return !spinners_.empty(); }

  // The spinners' CPU time so far, in seconds.
  double cpu() const {
    double total = 0;
    for (clockid_t id : clocks_) {
      timespec t{};
      clock_gettime(id, &t);
      total += static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
    }
    return total;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> spinners_;
  std::vector<clockid_t> clocks_;
};

const cpu_keeper* keeper = nullptr;

// The process's CPU time without the spinners'.
double own_cpu() { return process_cpu() - (keeper ? keeper->cpu() : 0.0); }

// ---- The benchmark ----

// What lives for a whole benchmark run (all its rounds).
struct environment {
  environment() {
    const bool pin = pinning();
    receiver = std::make_unique<lean_receiver>(pin ? 1 : -1);
    const identity_pem id = generate_identity();
    openssl_signer = must(openssl::make_signer({id.key, id.certificate, domain, "https://opendsr.example.com/opendsr_cert.pem"}),
                          "making the OpenSSL signer");
    signer = std::make_unique<recording_signer>(*openssl_signer);
    url = "http://127.0.0.1:" + std::to_string(receiver->port()) + "/cb";
  }

  // The client with `threads` I/O threads (made on the main thread: they inherit CPU 0).
  http_client& client(std::size_t threads) {
    std::unique_ptr<http_client>& c = clients[threads];
    if (!c) c = bench::loopback_http_client(threads);
    return *c;
  }

  std::unique_ptr<lean_receiver> receiver;
  std::unique_ptr<opendsr::signer> openssl_signer;
  std::unique_ptr<recording_signer> signer;
  std::unordered_map<std::size_t, std::unique_ptr<http_client>> clients;
  std::string url;
};

environment& env() {
  static environment e;
  return e;
}

void BM_callbacks(benchmark::State& state, store_kind kind, std::size_t client_threads, std::size_t max_in_flight,
                  std::size_t claim_batch, std::size_t per_round) {
  environment& x = env();
  http_client& client = x.client(client_threads);
  engine_options options;
  options.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  options.request.callback_destinations.allow_http = true;
  options.request.callback_destinations.allow_loopback = true;

  std::uint64_t next_id = 0;
  double delivered_total = 0, delivery_seconds = 0, signed_total = 0, sign_seconds = 0;
  double cpu_total = 0, recv_cpu_total = 0, sign_cpu_total = 0, writes_total = 0, records_total = 0;
  std::vector<double> vs_sign, vs_sign_cpu;

  for (auto _ : state) {
    // Setup, outside the round's time: a fresh store and engine holding per_round requests.
    store_under_test s(kind, "callback");
    engine e = must(engine::open(*s.counted, options), "opening the engine");
    manual_clock clock(received);
    {
      std::vector<std::string> bodies;
      for (std::size_t i = 0; i < per_round; ++i)
        bodies.push_back(testing::make_body({.id = testing::uuid_v4(next_id++),
                                             .identities = {{"email", "subject" + std::to_string(next_id) + "@example.com"}},
                                             .callback_urls = {x.url}}));
      constexpr std::size_t batch = 250;
      for (std::size_t at = 0; at < bodies.size(); at += batch) {
        std::vector<submission> group;
        for (std::size_t i = at; i < std::min(at + batch, bodies.size()); ++i) group.push_back({"3622", bodies[i], received});
        for (auto& r : e.submit_batch(group))
          if (!r) die("submit: " + r.error().message());
      }
    }
    clock.advance(options.timing.callback_flush_interval);  // past the flush the callbacks wait for

    std::mutex mutex;
    std::condition_variable done;
    std::size_t delivered = 0, failed = 0, records = 0;
    callback_dispatcher_options d;
    d.max_in_flight = max_in_flight;
    d.claim_batch = claim_batch;
    d.on_recorded = [&](const result<callback_record_report>& r) {
      std::lock_guard lock(mutex);
      ++records;
      if (!r) {
        failed = per_round;  // nothing more will come this round
      } else {
        delivered += r->delivered;
        failed += r->retried + r->dead_lettered + r->stale;
      }
      done.notify_all();
    };
    auto dispatcher = must(callback_dispatcher::start(e, client, *x.signer, clock, std::move(d)), "starting the dispatcher");
    x.signer->take();
    const std::uint64_t received_before = x.receiver->requests();
    const std::size_t writes_before = s.counted->writes.load();

    // The round.
    const double cpu0 = own_cpu(), recv0 = x.receiver->cpu();
    const auto start = bench_clock::now();
    dispatcher->poll();
    {
      std::unique_lock lock(mutex);
      done.wait(lock, [&] { return delivered + failed >= per_round; });
    }
    const double seconds = std::chrono::duration<double>(bench_clock::now() - start).count();
    const double cpu = own_cpu() - cpu0, recv_cpu = x.receiver->cpu() - recv0;
    state.SetIterationTime(seconds);
    dispatcher->stop();
    dispatcher.reset();
    if (failed > 0) {
      state.SkipWithError("a callback was not delivered");
      return;
    }
    if (x.receiver->requests() - received_before != per_round) die("the receiver did not see one request per callback");
    const std::size_t writes = s.counted->writes.load() - writes_before;

    // The floor, right after: the same signer signing the same bodies on this thread.
    const std::vector<std::string> bodies = x.signer->take();
    if (bodies.size() != per_round) die("the dispatcher did not sign each callback once");
    const double sign_cpu0 = own_cpu();
    const auto sign_start = bench_clock::now();
    for (const std::string& b : bodies) benchmark::DoNotOptimize(must(x.openssl_signer->sign(b), "signing"));
    const double floor_seconds = std::chrono::duration<double>(bench_clock::now() - sign_start).count();
    const double sign_cpu = own_cpu() - sign_cpu0;

    const double n = static_cast<double>(per_round);
    delivered_total += n;
    delivery_seconds += seconds;
    signed_total += n;
    sign_seconds += floor_seconds;
    cpu_total += cpu;
    recv_cpu_total += recv_cpu;
    sign_cpu_total += sign_cpu;
    writes_total += static_cast<double>(writes);
    records_total += static_cast<double>(records);
    vs_sign.push_back(floor_seconds / seconds);
    vs_sign_cpu.push_back((sign_cpu / n) / ((cpu - recv_cpu) / n));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(delivered_total));
  state.counters["sign/s"] = signed_total / sign_seconds;
  state.counters["vs_sign"] = median(vs_sign);
  state.counters["cpu_us/cb"] = 1e6 * cpu_total / delivered_total;
  state.counters["recv_us/cb"] = 1e6 * recv_cpu_total / delivered_total;
  state.counters["sign_us"] = 1e6 * sign_cpu_total / signed_total;
  state.counters["vs_sign_cpu"] = median(vs_sign_cpu);
  state.counters["txn/cb"] = writes_total / delivered_total;
  state.counters["cb/record"] = delivered_total / records_total;
}

void register_all() {
  struct config {
    const char* store;
    store_kind kind;
    std::size_t client_threads, max_in_flight, claim_batch;
  };
  using enum store_kind;
  constexpr std::size_t per_round = 2000, rounds = 7;
  // Client threads: 1 is the client's default; opendsrd uses one per core (2 here). With the
  // pinning both run on CPU 0.
  std::vector<config> configs;
  for (std::size_t threads : {1, 2}) {
    configs.push_back({"memory", memory, threads, 16, 64});
    configs.push_back({"memory", memory, threads, 256, 64});
    configs.push_back({"memory", memory, threads, 256, 256});
  }
  for (std::size_t threads : {1, 2}) {
    configs.push_back({"lmdb_durable", lmdb_durable, threads, 16, 64});
    configs.push_back({"lmdb_durable", lmdb_durable, threads, 256, 64});
    configs.push_back({"lmdb_durable", lmdb_durable, threads, 256, 256});
  }
  for (const config& c : configs) {
    const std::string name = std::string("BM_callbacks/") + c.store + "/client_threads:" + std::to_string(c.client_threads) +
                             "/in_flight:" + std::to_string(c.max_in_flight) + "/claim:" + std::to_string(c.claim_batch);
    bench::register_rounds(name, rounds, [c](benchmark::State& state) {
      BM_callbacks(state, c.kind, c.client_threads, c.max_in_flight, c.claim_batch, per_round);
    });
  }
}

}  // namespace
}  // namespace opendsr

int main(int argc, char** argv) {
  // The floor, the first poll() and the client's I/O thread run on CPU 0; the receiver pins
  // itself to CPU 1.
  if (!opendsr::bench::start_benchmarks(argc, argv)) return 1;
  opendsr::register_all();
  const opendsr::cpu_keeper awake;
  if (awake.on()) opendsr::keeper = &awake;
  benchmark::RunSpecifiedBenchmarks();
  opendsr::keeper = nullptr;
  benchmark::Shutdown();
}
