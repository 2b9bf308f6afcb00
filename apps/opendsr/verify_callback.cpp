// `opendsr verify-callback`: see verify_callback.hpp. The processor's certificate is read (or
// fetched) once at startup and checked at the system clock's time; in receiver mode each
// callback's expiry check uses the time it arrives.
#include "verify_callback.hpp"

#include "common/data_dir.hpp"
#include "common/flags.hpp"

#include <opendsr/asio_http_client.hpp>
#include <opendsr/callback_verifier.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/http_server.hpp>

#include <boost/json.hpp>

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <future>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

namespace opendsr::app {
namespace {

constexpr std::string_view command_usage =
    "Usage: opendsr verify-callback --domain D (--cert FILE | --cert-url URL | --discovery-url URL) [flags] MODE\n\n"
    "Checks OpenDSR status callbacks as a controller does: the processor's certificate chains to a\n"
    "trust anchor, is valid now and names every --domain; a callback's X-OpenDSR-Processor-Domain is\n"
    "one of them, and its X-OpenDSR-Signature (RSASSA-PKCS1-v1_5 SHA-256, base64) verifies over the\n"
    "exact body bytes.\n\n"
    "Modes:\n"
    "  --body FILE (--signature BASE64 | --signature-file FILE) --processor-domain D\n"
    "      check one callback: prints \"202 Accepted\" (exit 0) or \"401 <reason>\" (exit 1)\n"
    "  --listen HOST:PORT\n"
    "      answer callbacks (any path) 202 or 401 as a controller would, printing one line per\n"
    "      callback (never its body), until SIGINT or SIGTERM\n\n"
    "Flags:\n";

struct config {
  std::string domains;
  std::string cert;
  std::string cert_url;
  std::string discovery_url;
  bool allow_local = false;
  std::string ca_file;
  bool no_system_trust = false;
  std::string listen;
  std::string body;
  std::string signature;
  std::string signature_file;
  std::string processor_domain;
};

int fail(const error& e) {
  std::fprintf(stderr, "opendsr verify-callback: %s\n", e.message().c_str());
  return 1;
}

int usage_error(std::string_view what) {
  std::fprintf(stderr, "opendsr verify-callback: %.*s (see opendsr verify-callback --help)\n", static_cast<int>(what.size()),
               what.data());
  return 2;
}

// A refusal ("401 <reason>", exit 1) or another failure (stderr, exit 1).
int refused_or_failed(const error& e) {
  if (e.code() != errc::unauthorized) return fail(e);
  std::cout << "401 " << e.message() << std::endl;
  return 1;
}

std::vector<std::string> split_domains(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view d = list.substr(0, comma);
    while (!d.empty() && d.front() == ' ') d.remove_prefix(1);
    while (!d.empty() && d.back() == ' ') d.remove_suffix(1);
    if (!d.empty()) out.emplace_back(d);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

// GETs `url` with `client` and returns the body of its 200 answer.
result<std::string> fetch(http_client& client, const std::string& url, std::string accept) {
  http_client_request request;
  request.method = "GET";
  request.url = url;
  request.headers.set("Accept", std::move(accept));
  std::promise<result<http_client_response>> answered;
  auto response_future = answered.get_future();
  client.send(std::move(request), [&answered](result<http_client_response> r) { answered.set_value(std::move(r)); });
  auto response = response_future.get();
  if (!response) return error(response.error().code(), url + ": " + response.error().message());
  if (response->status != 200)
    return error(errc::network_error, url + ": answered HTTP " + std::to_string(response->status) + ", not 200");
  return std::move(response->body);
}

// The processor's certificate chain PEM: read from --cert, or fetched with the asio http_client
// (https to a public address only unless --allow-local, the same trust anchors, no redirect) from
// --cert-url, or from the processor_certificate URL that the processor's discovery names.
result<std::string> load_certificate(const config& c) {
  if (c.cert_url.empty() && c.discovery_url.empty()) return read_file(c.cert);
  asio_http_client_options options;
  options.use_system_trust = !c.no_system_trust;
  options.ca_file = c.ca_file;
  options.policy.allow_http = options.policy.allow_loopback = c.allow_local;
  auto client = make_asio_http_client(options);
  if (!client) return std::move(client).error();
  std::string cert_url = c.cert_url;
  if (!c.discovery_url.empty()) {
    auto discovery = fetch(**client, c.discovery_url, "application/json");
    if (!discovery) return std::move(discovery).error();
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(*discovery, ec);
    const auto* o = ec ? nullptr : v.if_object();
    const auto* named = o ? o->if_contains("processor_certificate") : nullptr;
    if (!named || !named->is_string())
      return error(errc::invalid_argument, c.discovery_url + ": not an OpenDSR discovery body (no processor_certificate URL)");
    cert_url = std::string(named->get_string());
  }
  return fetch(**client, cert_url, "application/x-pem-file, */*");
}

int check_one(const callback_verifier& verifier, const config& c) {
  auto body = read_file(c.body);
  if (!body) return fail(body.error());
  std::string signature = c.signature;
  if (!c.signature_file.empty()) {
    auto text = read_file(c.signature_file);
    if (!text) return fail(text.error());
    signature = std::move(*text);
    // A file ends with a line break, which HTTP would not have kept in a header value.
    if (signature.ends_with('\n')) signature.pop_back();
    if (signature.ends_with('\r')) signature.pop_back();
  }
  auto verdict = verifier.verify(c.processor_domain, signature, *body);
  if (!verdict) return refused_or_failed(verdict.error());
  std::cout << "202 Accepted" << std::endl;
  return 0;
}

int listen(const callback_verifier& verifier, const host_port& address) {
  std::mutex output;  // one whole line at a time from the server's threads
  callback_handler_options options;
  options.on_callback = [&output](const verified_callback& callback) -> result<void> {
    std::lock_guard lock(output);
    std::cout << "202 " << callback.processor_domain << " POST " << callback.target << " (" << callback.body.size() << " bytes)"
              << std::endl;
    return {};
  };
  options.on_refused = [&output](int status, const error& reason) {
    std::lock_guard lock(output);
    std::cout << status << " " << reason.message() << std::endl;
  };
  callback_handler handler(verifier, std::move(options));

  // SIGINT and SIGTERM are blocked before the server's threads start (they inherit the mask), so
  // that only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  http_server_options server_options;
  server_options.address = address.host;
  server_options.port = address.port;
  auto server = http_server::start(handler, server_options);
  if (!server) return fail(server.error());
  {
    std::lock_guard lock(output);
    std::cout << "listening on http://" << (address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host)
              << ":" << (*server)->port() << " for callbacks from";
    for (const std::string& d : verifier.allowed_domains()) std::cout << " " << d;
    std::cout << " (certificate valid until " << format_rfc3339(verifier.valid_until()) << ")" << std::endl;
  }
  int received = 0;
  sigwait(&stop_signals, &received);
  (*server)->stop();
  std::lock_guard lock(output);
  std::cout << "stopped (" << (received == SIGINT ? "SIGINT" : "SIGTERM") << ")" << std::endl;
  return 0;
}

}  // namespace

int verify_callback_main(int argc, char** argv) {
  config c;
  flag_set flags;
  flags.add("domain", "D[,D...]", "The processor domains whose callbacks are accepted (comma-separated)", c.domains);
  flags.add("cert", "FILE", "The processor's certificate chain (PEM, leaf first), as its processor_certificate URL serves it",
            c.cert);
  flags.add("cert-url", "URL", "Fetch the certificate chain from this https URL instead of --cert", c.cert_url);
  flags.add("discovery-url", "URL", "Fetch the certificate chain from the processor_certificate URL this discovery (GET /v3/discovery) names",
            c.discovery_url);
  flags.add_switch("allow-local", "Let --cert-url and --discovery-url use http and loopback addresses (a processor on this machine)",
                   c.allow_local);
  flags.add("ca-file", "FILE", "Also trust the CA certificates in this PEM file (e.g. a test CA, or a self-signed test certificate)",
            c.ca_file);
  flags.add_switch("no-system-trust", "Do not trust the system's CA store (then --ca-file is needed)", c.no_system_trust);
  flags.add("listen", "HOST:PORT", "Receiver mode: answer callbacks on this address (port 0 picks one)", c.listen);
  flags.add("body", "FILE", "One-shot mode: the exact body bytes of the callback", c.body);
  flags.add("signature", "BASE64", "One-shot mode: the X-OpenDSR-Signature header value", c.signature);
  flags.add("signature-file", "FILE", "One-shot mode: a file holding the X-OpenDSR-Signature value (one trailing line break is ignored)",
            c.signature_file);
  flags.add("processor-domain", "D", "One-shot mode: the X-OpenDSR-Processor-Domain header value", c.processor_domain);
  auto args = flags.parse(argc, argv, 2);
  if (flags.help_requested()) {
    std::cout << command_usage << flags.usage();
    return 0;
  }
  if (!args) return usage_error(args.error().message());
  if (!args->empty()) return usage_error("unexpected argument " + args->front());

  const bool one_shot = !c.body.empty();
  if (one_shot == !c.listen.empty()) return usage_error("give either --body (one callback) or --listen HOST:PORT");
  if (one_shot) {
    if (c.signature.empty() == c.signature_file.empty()) return usage_error("--body needs one of --signature and --signature-file");
    if (c.processor_domain.empty()) return usage_error("--body needs --processor-domain");
  }
  if (!c.cert.empty() + !c.cert_url.empty() + !c.discovery_url.empty() != 1)
    return usage_error("give one of --cert FILE, --cert-url URL and --discovery-url URL");
  callback_verifier_options options;
  options.allowed_domains = split_domains(c.domains);
  if (options.allowed_domains.empty()) return usage_error("--domain is required");
  options.use_system_trust = !c.no_system_trust;
  if (!c.ca_file.empty()) {
    auto ca = read_file(c.ca_file);
    if (!ca) return fail(ca.error());
    options.ca_pem = std::move(*ca);
  }
  if (c.no_system_trust && c.ca_file.empty()) return usage_error("--no-system-trust needs --ca-file");
  std::optional<host_port> address;
  if (!one_shot) {
    auto parsed = parse_host_port(c.listen);
    if (!parsed) return usage_error("--listen: " + parsed.error().message());
    address = std::move(*parsed);
  }

  auto chain = load_certificate(c);
  if (!chain) return fail(chain.error());
  options.certificate_chain_pem = std::move(*chain);
  static const system_clock wall;
  auto verifier = callback_verifier::make(options, wall);
  if (!verifier) return refused_or_failed(verifier.error());
  return one_shot ? check_one(*verifier, c) : listen(*verifier, *address);
}

}  // namespace opendsr::app
