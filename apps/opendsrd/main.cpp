// opendsrd: the OpenDSR v3 processor daemon. Wires the defaults together: LMDB storage in a data
// directory, the engine, the API (group commit for concurrent POSTs, signed responses), the
// Beast server, the tick timer and graceful shutdown. docs/daemon.md documents the flags.
#include "common/data_dir.hpp"
#include "common/flags.hpp"
#include "opendsrd/daemon_handler.hpp"
#include "opendsrd/log.hpp"
#include "opendsrd/metrics.hpp"

#include <opendsr/api.hpp>
#include <opendsr/asio_http_client.hpp>
#include <opendsr/botan.hpp>
#include <opendsr/callback_dispatcher.hpp>
#include <opendsr/data_fulfilment.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/forward_dispatcher.hpp>
#include <opendsr/fulfilment_runner.hpp>
#include <opendsr/group_commit.hpp>
#include <opendsr/http_server.hpp>
#include <opendsr/package_builder.hpp>
#include <opendsr/results_files_store.hpp>
#include <opendsr/subject_data.hpp>
#if OPENDSR_HAVE_OPENSSL
#include <opendsr/openssl_signer.hpp>
#endif
#if OPENDSR_HAVE_KOCHAVA
#include <opendsr/kochava.hpp>
#endif
#if OPENDSR_HAVE_BLUESHIFT
#include <opendsr/blueshift.hpp>
#endif

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

namespace opendsr::app {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// OpenSSL signs RSA-2048 about 3.5 times as fast as Botan 2, and signing bounds POST.
#if OPENDSR_HAVE_OPENSSL
constexpr const char* default_signer = "openssl";
#else
constexpr const char* default_signer = "botan";
#endif

struct config {
  std::string data_dir = "./opendsr-data";
  std::string listen = "127.0.0.1:8080";
  // A POST holds its server thread while its batch commits (fsync) and while it signs, so a
  // durable store needs more threads than cores for batches to form: 4 per core.
  std::uint64_t threads = 4 * std::max(1u, std::thread::hardware_concurrency());
  std::string domain = "localhost";
  std::string extension_domain = "opendsr.mparticle.com";
  std::string key_file;
  std::string certificate_file;
  std::string certificate_url;
  std::string sync = "durable";
  std::string tls_cert;
  std::string tls_key;
  std::string signer = default_signer;
  std::uint64_t max_connections = 1024;
  std::uint64_t max_body_bytes = 256 * 1024;
  std::uint64_t max_header_bytes = 16 * 1024;
  std::uint64_t read_timeout_ms = 10'000;
  std::uint64_t idle_timeout_ms = 60'000;
  std::uint64_t write_timeout_ms = 10'000;
  std::uint64_t drain_timeout_ms = 30'000;
  std::uint64_t calls_per_minute = 1000;
  std::uint64_t new_requests_per_day = 80'000;
  std::uint64_t max_commit_batch = 128;
  std::uint64_t callback_flush_seconds = 900;
  std::uint64_t callback_timeout_ms = 10'000;
  std::uint64_t callback_max_attempts = 20;
  std::uint64_t callback_max_age_hours = 72;
  std::uint64_t callback_max_in_flight = 256;
  std::uint64_t forward_max_in_flight = 32;
  std::string deliver_to = "any";
  bool callback_allow_http = false;
  bool callback_allow_private = false;
  std::string callback_ca_file;
  std::string node_name = "opendsrd";
  std::string results_url;
  std::uint64_t fulfilment_workers = 2;
  std::uint64_t max_import_bytes = 16u << 20;
  std::string demo_workspace = "demo";
  bool no_demo = false;
  bool no_access_log = false;
  bool test_mode = false;
  std::string test_start;
};

void add_flags(flag_set& f, config& c) {
  f.add("data-dir", "DIR", "Data directory: the LMDB store, the processor key and certificate; created when absent", c.data_dir);
  f.add("listen", "HOST:PORT", "Address to listen on; port 0 picks a free port (the chosen one is printed)", c.listen);
  f.add("threads", "N", "Server threads (HTTP I/O, handler, signing)", c.threads, 1, 1024);
  f.add("domain", "DOMAIN", "Processor domain: X-OpenDSR-Processor-Domain, and the name of the self-signed certificate made on first run", c.domain);
  f.add("extension-domain", "DOMAIN", "The key of `extensions` in request bodies that this processor interprets", c.extension_domain);
  f.add("key", "FILE", "RSA private key, PKCS#8 PEM; the default one is made on first run", c.key_file, "DIR/processor.key");
  f.add("cert", "FILE", "Certificate of the key, PEM, issued to --domain; the default one (self-signed) is made on first run", c.certificate_file, "DIR/processor.crt");
  f.add("certificate-url", "URL", "Where controllers fetch the certificate; discovery names it and opendsrd serves it at its path", c.certificate_url, "http://HOST:PORT/opendsr_cert.pem");
  f.add("signer", "NAME", "openssl or botan: the library that signs responses; openssl (when built with it) is the faster", c.signer);
  f.add("tls-cert", "FILE", "Serve HTTPS (Botan TLS) with this certificate chain, PEM, leaf first; needs --tls-key. Without it: plain HTTP, for a TLS-terminating proxy or loopback", c.tls_cert);
  f.add("tls-key", "FILE", "The TLS private key, unencrypted PKCS#8 PEM (e.g. the processor key)", c.tls_key);
  f.add("sync", "MODE", "durable (fsync every commit) or no-sync (UNSAFE: a machine crash may lose or corrupt data; benchmarks only)", c.sync);
  f.add("max-connections", "N", "Connections served at once", c.max_connections, 1, 1'000'000);
  f.add("max-body-bytes", "N", "Largest POST body; larger is 413", c.max_body_bytes, 1, 64u << 20);
  f.add("max-header-bytes", "N", "Largest request line plus header", c.max_header_bytes, 1024, 1u << 20);
  f.add("read-timeout-ms", "MS", "Time a request (header, then body) may take to arrive", c.read_timeout_ms, 1, 3'600'000);
  f.add("idle-timeout-ms", "MS", "Time a kept-alive connection may wait for its next request", c.idle_timeout_ms, 1, 3'600'000);
  f.add("write-timeout-ms", "MS", "Time writing a response may take", c.write_timeout_ms, 1, 3'600'000);
  f.add("drain-timeout-ms", "MS", "On SIGTERM/SIGINT, time in-flight requests get to finish", c.drain_timeout_ms, 0, 3'600'000);
  f.add("calls-per-minute", "N", "API calls per workspace per sliding minute (0: unlimited)", c.calls_per_minute, 0, 1'000'000'000);
  f.add("new-requests-per-day", "N", "New requests per workspace per UTC day (0: unlimited)", c.new_requests_per_day, 0, 1'000'000'000);
  f.add("max-commit-batch", "N", "Most POSTs committed in one write transaction (group commit)", c.max_commit_batch, 1, 100'000);
  f.add("callback-flush-seconds", "S", "Callbacks are queued for the next multiple of this interval (test mode: 60 unless set)", c.callback_flush_seconds, 1, 86'400);
  f.add("callback-timeout-ms", "MS", "Time one callback delivery, or one partner request of a forward, may take, connection and TLS included; longer is a failed attempt", c.callback_timeout_ms, 100, 600'000);
  f.add("callback-max-attempts", "N", "Attempts before a callback is dead-lettered (see opendsr callbacks dead)", c.callback_max_attempts, 1, 1000);
  f.add("callback-max-age-hours", "H", "A callback still failing this long after it fell due is dead-lettered", c.callback_max_age_hours, 1, 24 * 365);
  f.add("callback-max-in-flight", "N", "Callbacks being delivered at once", c.callback_max_in_flight, 1, 100'000);
  f.add("forward-max-in-flight", "N", "Partner batches (erasures forwarded to outputs) being sent at once, at most one per output", c.forward_max_in_flight, 1, 100'000);
  f.add("deliver-to", "WHERE", "any: callbacks and partner forwards go to public addresses (https); loopback: only to this machine, other host names are refused without a DNS lookup (demos, tests; the default in test mode)", c.deliver_to);
  f.add_switch("callback-allow-http", "Allow http:// callback URLs and partner endpoints (default: https only; test mode allows http)", c.callback_allow_http);
  f.add_switch("callback-allow-private", "Allow callbacks and partner endpoints at private, link-local and CGNAT addresses (an internal controller)", c.callback_allow_private);
  f.add("callback-ca-file", "FILE", "Trust these CA certificates (PEM) for https callbacks and partner endpoints, besides the system's", c.callback_ca_file);
  f.add("node-name", "NAME", "This process's name in callback, fulfilment and forward leases; distinct per process when several share a store", c.node_name);
  f.add("results-url", "URL", "The base of results links: a package's link is URL followed by its token; opendsrd serves them at its path", c.results_url, "http://HOST:PORT/v3/results/");
  f.add("fulfilment-workers", "N", "Fulfilment jobs (package builds, erasures) run at once", c.fulfilment_workers, 1, 256);
  f.add("max-import-bytes", "N", "Largest POST /v3/subject-data body (JSON Lines); larger is 413", c.max_import_bytes, 1, 1u << 30);
  f.add("demo-workspace", "ID", "Id of the workspace made (credentials printed once) when the store has none", c.demo_workspace);
  f.add_switch("no-demo", "Do not make a demo workspace when the store has none", c.no_demo);
  f.add_switch("no-access-log", "Do not log a line per request (errors and lifecycle events are still logged)", c.no_access_log);
  f.add_switch("test-mode", "Manual clock moved by POST /admin/clock, short callback flush; refused unless --listen is loopback", c.test_mode);
  f.add("test-start", "RFC3339", "Test mode: the manual clock's first reading", c.test_start, "the real time at start");
}

// Re-arms a timer at engine::next_due() after each tick and each created request; never polls.
class ticker {
 public:
  ticker(asio::io_context& io, engine& e, const clock& c, metrics& m) : timer_(io), io_(io), engine_(e), clock_(c), metrics_(m) {}

  // Safe from any thread: coalesces a burst of requests into one next_due() read.
  void request_rearm() {
    if (!rearm_pending_.exchange(true)) asio::post(io_, [this] {
        rearm_pending_ = false;
        arm();
      });
  }

  // On the io thread.
  void arm() {
    auto next = engine_.next_due();
    if (!next) return retry(next.error());
    if (!*next) return;  // nothing scheduled; a created request re-arms
    const timestamp now = clock_.now();
    // Wake at least hourly, so a wall clock that jumps cannot delay work by more than that.
    timestamp at = std::min(**next, now + std::chrono::microseconds(1h));
    // What is still due right after a run is callbacks or partner batches waiting for a free
    // slot: the dispatchers claim them themselves as slots free up. Look again a second after the last run, no
    // sooner, so that a full dispatcher never turns this timer into a busy loop.
    if (last_run_ && at < *last_run_ + std::chrono::microseconds(1s)) at = *last_run_ + std::chrono::microseconds(1s);
    if (armed_for_ && *armed_for_ <= at) return;
    armed_for_ = at;
    timer_.expires_after(std::max(at - now, std::chrono::microseconds(0)));
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;  // re-armed earlier or stopping
      armed_for_.reset();
      fire();
    });
  }

  void stop() { timer_.cancel(); }

  // Due callbacks and partner batches are sent and due fulfilment tasks run when the timer fires.
  // Set once, before the first arm().
  void set_dispatcher(callback_dispatcher* d) { dispatcher_ = d; }
  void set_forwarder(forward_dispatcher* f) { forwarder_ = f; }
  void set_runner(fulfilment_runner* r) { runner_ = r; }
  // Runs on the io thread after each run (opendsrd's LMDB scrub). Set once, before the first arm().
  void set_after_run(std::function<void()> f) { after_run_ = std::move(f); }

 private:
  void fire() {
    last_run_ = clock_.now();
    auto report = engine_.tick(*last_run_);
    metrics_.record_tick(report ? report->transitions : 0, report.has_value());
    if (!report) return retry(report.error());
    if (report->transitions > 0) log_event("info", "tick", {{"transitions", std::to_string(report->transitions)}});
    if (dispatcher_) dispatcher_->poll();
    if (forwarder_) forwarder_->poll();
    // Each claimed what it has room for: the due time arm() reads is past them.
    if (dispatcher_) dispatcher_->wait_idle();
    if (forwarder_) forwarder_->wait_idle();
    // Jobs may take minutes: the runner claims what its workers take and re-arms this timer
    // through on_run as each finishes; tasks waiting for a worker are its business, not a reason
    // to fire sooner (arm() waits a second after this run).
    if (runner_) runner_->poll();
    if (after_run_) after_run_();
    arm();
  }

  void retry(const error& e) {
    log_event("error", "tick_failed", {{"message", e.message()}});
    armed_for_ = clock_.now() + std::chrono::microseconds(1s);
    timer_.expires_after(1s);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      armed_for_.reset();
      fire();
    });
  }

  asio::steady_timer timer_;
  asio::io_context& io_;
  engine& engine_;
  const clock& clock_;
  metrics& metrics_;
  std::optional<timestamp> armed_for_;
  std::optional<timestamp> last_run_;  // when fire() last ran
  std::atomic<bool> rearm_pending_{false};
  callback_dispatcher* dispatcher_ = nullptr;
  forward_dispatcher* forwarder_ = nullptr;
  fulfilment_runner* runner_ = nullptr;
  std::function<void()> after_run_;
};

int fail(std::string_view what, const error& e) {
  log_event("error", "startup_failed", {{"step", what}, {"message", e.message()}});
  std::fprintf(stderr, "opendsrd: %.*s: %s\n", static_cast<int>(what.size()), what.data(), e.message().c_str());
  return 1;
}

// Returns the signer --signer names (checked at startup to be one this build has).
result<std::unique_ptr<signer>> make_named_signer(const config& c, const std::string& key_pem, const std::string& certificate_pem) {
#if OPENDSR_HAVE_OPENSSL
  if (c.signer == "openssl") return openssl::make_signer({key_pem, certificate_pem, c.domain, c.certificate_url});
#endif
  return botan::make_signer({key_pem, certificate_pem, c.domain, c.certificate_url});
}

// The default certificate URL: the listen address, so that it works locally as printed.
// The base URL of the listen address ("http://127.0.0.1:8080"); an unspecified address is named
// by the domain.
std::string base_url(const host_port& listen, std::uint16_t port, const std::string& domain, bool tls) {
  std::string host = listen.host;
  if (host == "0.0.0.0" || host == "::") host = domain;
  else if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return (tls ? "https://" : "http://") + host + ":" + std::to_string(port);
}

// Where callbacks may go: https to public addresses by default; --deliver-to loopback (and test
// mode) keeps them on this machine.
outbound_policy callback_destinations(const config& c) {
  outbound_policy p;
  const bool loopback_only = c.deliver_to == "loopback";
  p.allow_public = !loopback_only;
  p.allow_loopback = loopback_only;
  p.allow_http = c.callback_allow_http || c.test_mode;
  p.allow_private = c.callback_allow_private;
  return p;
}

// The resolver of --deliver-to loopback: localhost names only, anything else refused without a
// DNS query, so that no callback (nor its lookup) leaves the machine.
result<std::vector<ip_address>> resolve_loopback_only(const std::string& host) {
  std::string_view name = host;
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name == "localhost" || name.ends_with(".localhost")) return std::vector{*parse_ip_address("127.0.0.1")};
  return error(errc::destination_refused, "delivery is limited to this machine (--deliver-to loopback): host names other than localhost are not looked up");
}

// The partner kinds this build has (outputs name them).
std::vector<std::shared_ptr<const partner_kind>> available_partners() {
  std::vector<std::shared_ptr<const partner_kind>> kinds;
#if OPENDSR_HAVE_KOCHAVA
  kinds.push_back(kochava_partner_kind());
#endif
#if OPENDSR_HAVE_BLUESHIFT
  kinds.push_back(blueshift_partner_kind());
#endif
  return kinds;
}

// The host of a URL, for logs (the path and query may carry tokens).
std::string url_host(std::string_view url) {
  auto parts = parse_url(url);
  return parts ? parts->host : std::string("?");
}

std::string url_path(std::string_view url) {
  auto scheme = url.find("://");
  auto slash = scheme == std::string_view::npos ? scheme : url.find('/', scheme + 3);
  if (slash == std::string_view::npos) return "/";
  std::string_view path = url.substr(slash);
  return std::string(path.substr(0, path.find_first_of("?#")));
}

int run(config c) {
  auto listen = parse_host_port(c.listen);
  if (!listen) return fail("--listen", listen.error());
  boost::system::error_code ec;
  auto address = asio::ip::make_address(listen->host, ec);
  if (ec) return fail("--listen", error(errc::invalid_argument, "not an IP address: " + listen->host));
  if (c.test_mode && !address.is_loopback())
    return fail("--test-mode", error(errc::invalid_argument, "test mode lets anyone move the clock: it needs a loopback --listen address"));
  if (c.signer != "botan" && (c.signer != "openssl" || !OPENDSR_HAVE_OPENSSL))
    return fail("--signer", error(errc::invalid_argument, OPENDSR_HAVE_OPENSSL ? "expected openssl or botan" : "expected botan (built without OpenSSL)"));
  if (c.sync != "durable" && c.sync != "no-sync") return fail("--sync", error(errc::invalid_argument, "expected durable or no-sync"));
  if (c.test_mode && c.deliver_to == "any") c.deliver_to = "loopback";  // a daemon under test delivers only to loopback
  if (c.deliver_to != "any" && c.deliver_to != "loopback")
    return fail("--deliver-to", error(errc::invalid_argument, "expected any or loopback"));

  const std::filesystem::path dir = c.data_dir;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail("--data-dir", error(errc::storage_io, dir.string() + ": " + ec.message()));

  system_clock wall;
  std::optional<manual_clock> test_clock;
  if (c.test_mode) {
    timestamp start = wall.now();
    if (!c.test_start.empty()) {
      auto t = parse_rfc3339(c.test_start);
      if (!t) return fail("--test-start", t.error());
      start = *t;
    }
    test_clock.emplace(start);
  }
  const clock& now_clock = test_clock ? static_cast<const clock&>(*test_clock) : wall;

  metrics meter;
  auto store = open_store(dir, c.sync == "durable" ? sync_mode::durable : sync_mode::no_sync);
  if (!store) return fail("store", store.error());
  metered_storage metered(**store, meter);

  auto hasher = botan::make_secret_hasher();
  if (!hasher) return fail("secret hasher", hasher.error());
  workspace_directory workspaces(**store, **hasher);
  auto existing = workspaces.list();
  if (!existing) return fail("workspaces", existing.error());
  std::optional<credentials> demo;
  if (existing->empty() && !c.no_demo) {
    auto made = add_workspace(workspaces, c.demo_workspace);
    if (!made) return fail("demo workspace", made.error());
    demo = std::move(*made);
    if (!std::filesystem::exists(example_request_path(dir)))
      if (auto w = create_file(example_request_path(dir), example_request_body(), 0644); !w) return fail("example request", w.error());
    if (!std::filesystem::exists(example_data_path(dir)))
      if (auto w = create_file(example_data_path(dir), example_data_body(), 0644); !w) return fail("example data", w.error());
  }

  const bool default_key = c.key_file.empty() && c.certificate_file.empty();
  if (c.key_file.empty()) c.key_file = default_key_path(dir).string();
  if (c.certificate_file.empty()) c.certificate_file = default_certificate_path(dir).string();
  if (default_key) {
    auto made = ensure_self_signed(c.key_file, c.certificate_file, c.domain, wall.now());
    if (!made) return fail("processor key", made.error());
    if (*made) log_event("info", "self_signed_certificate", {{"domain", c.domain}, {"cert", c.certificate_file}});
  }
  auto key_pem = read_file(c.key_file);
  if (!key_pem) return fail("--key", key_pem.error());
  auto certificate_pem = read_file(c.certificate_file);
  if (!certificate_pem) return fail("--cert", certificate_pem.error());

  daemon_handler_options handler_options;
  handler_options.access_log = !c.no_access_log;
  handler_options.test_clock = test_clock ? &*test_clock : nullptr;
  handler_options.certificate_path = url_path(c.certificate_url.empty() ? "http://h/opendsr_cert.pem" : c.certificate_url);
  std::function<void()> created;  // set once the ticker exists
  handler_options.on_created = [&created] {
    if (created) created();
  };
  handler_options.engine_clock = &now_clock;
  std::function<void()> clock_moved;  // set once the dispatcher exists
  handler_options.on_clock_moved = [&clock_moved] {
    if (clock_moved) clock_moved();
  };
  daemon_handler handler(meter, handler_options);

  http_server_options server_options;
  server_options.address = listen->host;
  server_options.port = listen->port;
  server_options.threads = c.threads;
  server_options.max_connections = c.max_connections;
  server_options.max_header_bytes = c.max_header_bytes;
  server_options.max_body_bytes = c.max_body_bytes;
  server_options.read_timeout = std::chrono::milliseconds(c.read_timeout_ms);
  server_options.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  server_options.write_timeout = std::chrono::milliseconds(c.write_timeout_ms);
  server_options.drain_timeout = std::chrono::milliseconds(c.drain_timeout_ms);
  if (c.tls_cert.empty() != c.tls_key.empty())
    return fail("--tls-cert", error(errc::invalid_argument, "--tls-cert and --tls-key go together"));
  if (!c.tls_cert.empty()) {
    auto chain = read_file(c.tls_cert);
    if (!chain) return fail("--tls-cert", chain.error());
    auto tls_key = read_file(c.tls_key);
    if (!tls_key) return fail("--tls-key", tls_key.error());
    server_options.tls = http_server_tls{std::move(*chain), std::move(*tls_key)};
  }
  const bool tls = server_options.tls.has_value();
  auto server = http_server::start(handler, server_options);
  if (!server) return fail("--listen", server.error());
  const std::uint16_t port = (*server)->port();
  handler.set_connection_count([s = server->get()] { return s->connections(); });

  const std::string base = base_url(*listen, port, c.domain, tls);
  if (c.certificate_url.empty()) c.certificate_url = base + "/opendsr_cert.pem";
  auto signer = make_named_signer(c, *key_pem, *certificate_pem);
  if (!signer) return fail("signer", signer.error());

  engine_options engine_options;
  engine_options.request.processor_domain = c.extension_domain;
  engine_options.certificate_url = c.certificate_url;
  engine_options.timing.callback_flush_interval =
      std::chrono::seconds(c.test_mode && c.callback_flush_seconds == 900 ? 60 : c.callback_flush_seconds);
  const outbound_policy callback_policy = callback_destinations(c);
  engine_options.request.callback_destinations = callback_policy;
  engine_options.callbacks.max_attempts = static_cast<unsigned>(c.callback_max_attempts);
  engine_options.callbacks.max_age = std::chrono::hours(c.callback_max_age_hours);
  // A lease outlasts the longest delivery (its timeout) with room for signing and recording.
  engine_options.callbacks.lease = std::chrono::milliseconds(c.callback_timeout_ms) + std::chrono::seconds(50);
  engine_options.fulfilment.mode = fulfilment_mode::tasks;
  // Fulfilment and distribution: the subject data beside the engine's tables. Forwarded erasures
  // are enriched from the same profiles the fulfilment erases.
  auto subjects = open_subject_store(metered);
  if (!subjects) return fail("subject data", subjects.error());
  engine_options.distribution.partners = available_partners();
  engine_options.distribution.enrich_from = subjects->get();
  // A lease outlasts two sends (a batch may wait behind the one its output is sending) with room
  // for recording, and is never shorter than the engine's default.
  engine_options.distribution.lease =
      std::max<std::chrono::microseconds>(engine_options.distribution.lease, 2 * std::chrono::milliseconds(c.callback_timeout_ms) + 50s);
  auto engine = engine::open(metered, engine_options);
  if (!engine) return fail("engine", engine.error());

  // Fulfilment: packages in DIR/results.
  auto packages = results_files_store::open_directory({dir / "results"});
  if (!packages) return fail("results store", packages.error());
  if ((*packages)->partials_removed() > 0)
    log_event("info", "results_partials_removed", {{"count", std::to_string((*packages)->partials_removed())}});
  if (c.results_url.empty()) c.results_url = base + "/v3/results/";
  if (!c.results_url.ends_with('/')) c.results_url += '/';
  data_fulfilment_options fulfil_options;
  fulfil_options.results_base_url = c.results_url;
  // Package builds write the profile's lines to scratch files: on the data directory's file
  // system (not /tmp), and wiped at every start, since a build a crash interrupted leaves them.
  const std::filesystem::path scratch = dir / "package-scratch";
  std::filesystem::remove_all(scratch, ec);
  if (!ec) std::filesystem::create_directory(scratch, ec);
  if (!ec) std::filesystem::permissions(scratch, std::filesystem::perms::owner_all, ec);
  if (ec) return fail("package scratch", error(errc::storage_io, scratch.string() + ": " + ec.message()));
  fulfil_options.build_package = [&signer = **signer, scratch](subject_data& data, std::string_view ws, profile_id profile,
                                                               results_writer& out) -> result<void> {
    package_options o;
    o.scratch_directory = scratch;
    auto built = build_package(data, ws, profile, signer, out, o);
    if (!built) return std::move(built).error();
    return {};
  };
  auto fulfil = make_data_fulfilment(**subjects, **packages, fulfil_options);
  if (!fulfil) return fail("--results-url", fulfil.error());

  // One client for callbacks and partner forwards: the same outbound policy, --deliver-to,
  // timeout and CA file apply to both.
  asio_http_client_options client_options;
  client_options.policy = callback_policy;
  client_options.total_timeout = std::chrono::milliseconds(c.callback_timeout_ms);
  client_options.connect_timeout = std::min(client_options.connect_timeout, client_options.total_timeout);
  client_options.ca_file = c.callback_ca_file;
  client_options.max_connections_per_origin = 16;
  client_options.threads = std::max(1u, std::thread::hardware_concurrency());
  client_options.user_agent = "opendsrd";
  if (c.deliver_to == "loopback") client_options.resolve = resolve_loopback_only;
  auto client = make_asio_http_client(client_options);
  if (!client) return fail("--callback-ca-file", client.error());

  group_commit_options commit_options;
  commit_options.max_batch_size = c.max_commit_batch;
  auto committer = group_committer::start(*engine, commit_options);
  if (!committer) return fail("group committer", committer.error());

  api_options api_options;
  api_options.max_body_bytes = c.max_body_bytes;
  api_options.committer = committer->get();
  api_options.limits.calls_per_window = static_cast<std::uint32_t>(c.calls_per_minute);
  api_options.limits.new_requests_per_day = static_cast<std::uint32_t>(c.new_requests_per_day);
  api_options.results = packages->get();
  api_options.subjects = subjects->get();
  api_options.max_import_bytes = c.max_import_bytes;
  auto protocol = api::open(*engine, **signer, workspaces, now_clock, api_options);
  if (!protocol) return fail("api", protocol.error());

  asio::io_context control;
  ticker timer(control, *engine, now_clock, meter);

  callback_dispatcher_options dispatch_options;
  dispatch_options.owner = c.node_name;
  dispatch_options.max_in_flight = c.callback_max_in_flight;
  dispatch_options.on_attempt = [&meter](const callback_attempt& a) {
    meter.record_callback_attempt(a.delivered, a.latency);
    if (!a.delivered)  // never the body, never an identity: the workspace, the URL's host and why
      log_event("warn", "callback_failed", {{"workspace", a.workspace}, {"host", url_host(a.url)},
                                            {"attempt", std::to_string(a.attempt)}, {"error", a.error}});
  };
  dispatch_options.on_recorded = [&meter, &timer, test_mode = c.test_mode](const result<callback_record_report>& r) {
    meter.record_callback_outcomes(r ? r->dead_lettered : 0, r.has_value());
    if (!r) log_event("error", "callback_record_failed", {{"message", r.error().message()}});
    else if (r->dead_lettered > 0) log_event("warn", "callbacks_dead_lettered", {{"count", std::to_string(r->dead_lettered)}});
    if (!test_mode) timer.request_rearm();  // test mode: only POST /admin/clock moves time
  };
  dispatch_options.on_claim_error = [](const error& e) { log_event("error", "callback_claim_failed", {{"message", e.message()}}); };
  if (c.node_name.empty() || c.node_name.find('\n') != std::string::npos)
    return fail("--node-name", error(errc::invalid_argument, "expected a non-empty name without line breaks"));
  auto dispatcher = callback_dispatcher::start(*engine, **client, **signer, now_clock, dispatch_options);
  if (!dispatcher) return fail("callback dispatcher", dispatcher.error());
  timer.set_dispatcher(dispatcher->get());
  meter.set_callbacks_in_flight([d = dispatcher->get()] { return d->in_flight(); });

  forward_dispatcher_options forward_options;
  forward_options.owner = c.node_name;
  forward_options.max_in_flight = c.forward_max_in_flight;
  forward_options.on_attempt = [&meter](const forward_attempt& a) {
    meter.record_forward_attempt(a.verdict, a.latency);
    // Never a credential nor an identity: where it went, which attempt, and the partner's answer.
    if (a.verdict == forward_verdict_kind::sent) return;
    const std::string_view event = a.verdict == forward_verdict_kind::retry       ? "forward_retry"
                                   : a.verdict == forward_verdict_kind::too_large ? "forward_split"
                                                                                  : "forward_failed";
    log_event("warn", event, {{"workspace", a.workspace}, {"output", a.output}, {"partner", a.partner},
                              {"attempt", std::to_string(a.attempt)}, {"requests", std::to_string(a.requests)},
                              {"verdict", forward_verdict_label(a.verdict)}, {"message", a.message}});
  };
  forward_options.on_recorded = [&meter, &timer, test_mode = c.test_mode](const result<forward_record_report>& r) {
    meter.record_forward_outcomes(r);
    if (!r) log_event("error", "forward_record_failed", {{"message", r.error().message()}});
    if (!test_mode) timer.request_rearm();
  };
  forward_options.on_claim_error = [](const error& e) { log_event("error", "forward_claim_failed", {{"message", e.message()}}); };
  auto forwarder = forward_dispatcher::start(*engine, **client, now_clock, forward_options);
  if (!forwarder) return fail("forward dispatcher", forwarder.error());
  timer.set_forwarder(forwarder->get());
  meter.set_forwards_in_flight([f = forwarder->get()] { return f->in_flight(); });

  // After an erasure the freed LMDB pages still hold what it erased (copy-on-write): zero them.
  // Pages a reader's snapshot may still see are left for the next few ticks (or clock moves),
  // at most three, so that a reader that never ends cannot make every tick read the whole file.
  // One scrub is owed at start: the last run may have died between an erasure and its scrub.
  constexpr int scrubs_after_erasure = 3;
  std::atomic<int> scrubs_owed{1};
  auto scrub = [&store = **store, &scrubs_owed] {
    auto report = store.scrub_free_pages();
    if (!report) return log_event("error", "scrub_failed", {{"message", report.error().message()}});
    scrubs_owed = report->pages_held == 0 ? 0 : std::max(0, scrubs_owed - 1);
    log_event("info", "scrubbed", {{"pages", std::to_string(report->pages_scrubbed)},
                                   {"held", std::to_string(report->pages_held)}});
  };
  timer.set_after_run([&] {
    if (scrubs_owed > 0) scrub();
  });

  fulfilment_runner_options run_options;
  run_options.owner = c.node_name;
  run_options.workers = c.fulfilment_workers;
  run_options.results = packages->get();
  run_options.on_run = [&timer, &scrub, &scrubs_owed, test_mode = c.test_mode](const fulfilment_run& r) {
    // Never an identity: the workspace, the request id, its type and why.
    const bool completed = r.recorded && *r.recorded == fulfilment_recorded::completed;
    const std::string why = !r.error.empty() ? r.error : !r.recorded ? "recording failed: " + r.recorded.error().message()
                                                                     : std::string();
    const std::string attempt = std::to_string(r.attempt), ms = std::to_string(r.took.count() / 1000);
    log_event(completed ? "info" : "warn", completed ? "fulfilled" : "fulfilment_not_done",
              {{"workspace", r.workspace}, {"request", r.subject_request_id}, {"type", to_string(r.type)},
               {"attempt", attempt}, {"ms", ms}, {"error", why}});
    if (completed && r.type == request_type::erasure) {
      scrubs_owed = scrubs_after_erasure;
      scrub();
    }
    if (!test_mode) timer.request_rearm();
  };
  run_options.on_error = [](const error& e) { log_event("error", "fulfilment_failed", {{"message", e.message()}}); };
  auto runner = fulfilment_runner::start(*engine, **fulfil, now_clock, run_options);
  if (!runner) return fail("fulfilment runner", runner.error());
  timer.set_runner(runner->get());
  // Test mode: when the clock moves, the work it makes due is done before the route answers, so a
  // test reads the outcome at once.
  clock_moved = [&, d = dispatcher->get(), f = forwarder->get(), r = runner->get()] {
    r->poll();
    r->wait_idle();
    if (scrubs_owed > 0) scrub();
    d->poll();
    f->poll();
    f->wait_idle();  // the partner batches now due are claimed and their requests started
  };

  if (!c.test_mode) {
    created = [&timer] { timer.request_rearm(); };
    timer.arm();
  }
  handler.publish(**protocol, *engine);

  asio::signal_set signals(control, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code e, int signal) {
    if (e) return;
    log_event("info", "stopping", {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"}});
    (*server)->stop();     // drains in-flight requests; each POST is committed before its response
    (*committer)->stop();  // nothing is queued any more; joins the writer
    timer.stop();
    (*runner)->stop();      // the jobs running finish and are recorded
    (*forwarder)->stop();   // every partner batch in flight answered (at most the timeout) and recorded
    (*dispatcher)->stop();  // every callback in flight answered (at most the timeout) and recorded
    control.stop();
  });

  if (demo) {
    const std::string curl = std::string("  curl -s ") + (tls ? "-k " : "") + "-u '" + demo->api_key + ":" + demo->secret + "' ";
    std::cout << "First run: made workspace \"" << c.demo_workspace << "\" in " << dir.string()
              << ". Its credentials are shown only now (the secret is stored hashed):\n"
              << "  api key: " << demo->api_key << "\n"
              << "  secret:  " << demo->secret << "\n"
              << "Import the example subject's data (JSON Lines, docs/import.md):\n"
              << curl << "-H 'Content-Type: application/x-ndjson' --data-binary @" << example_data_path(dir).string() << " "
              << base << "/v3/subject-data\n"
              << "Submit the OpenDSR v3 example request:\n"
              << curl << "-H 'Content-Type: application/json' --data-binary @" << example_request_path(dir).string() << " "
              << base << "/v3/requests\n";
  }
  std::cout << "opendsrd listening on " << base << " (processor domain " << c.domain << ", " << c.threads << " threads"
            << (c.test_mode ? ", TEST MODE: manual clock at " + format_rfc3339(now_clock.now()) : std::string()) << ")"
            << std::endl;
  log_event("info", "listening",
            {{"address", listen->host}, {"port", std::to_string(port)}, {"threads", std::to_string(c.threads)},
             {"domain", c.domain}, {"sync", c.sync}, {"tls", tls ? "true" : "false"}, {"test_mode", c.test_mode ? "true" : "false"}});

  control.run();
  log_event("info", "stopped");
  return 0;
}

}  // namespace
}  // namespace opendsr::app

int main(int argc, char** argv) {
  using namespace opendsr::app;
  config c;
  flag_set flags;
  add_flags(flags, c);
  auto rest = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::cout << "Usage: opendsrd [flags]\n\nThe OpenDSR v3 processor daemon. The first run with no flags makes a working local\n"
                 "setup in ./opendsr-data and prints a demo workspace's credentials and a curl line.\n"
                 "SIGTERM or SIGINT drains in-flight requests and exits.\n\nFlags:\n"
              << flags.usage();
    return 0;
  }
  if (!rest) return std::fprintf(stderr, "opendsrd: %s\n", rest.error().message().c_str()), 2;
  if (!rest->empty()) return std::fprintf(stderr, "opendsrd: unexpected argument \"%s\" (see --help)\n", rest->front().c_str()), 2;
  try {
    return run(std::move(c));
  } catch (const std::exception& e) {
    log_event("error", "fatal", {{"message", e.what()}});
    return 1;
  }
}
