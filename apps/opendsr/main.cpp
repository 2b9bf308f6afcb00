// opendsr: the administration tool of an opendsrd data directory, and a controller-side
// signature check. Run `opendsr --help`; docs/daemon.md has examples.
#include "common/data_dir.hpp"
#include "common/flags.hpp"
#include "import.hpp"
#include "outputs.hpp"
#if OPENDSR_HAVE_OPENSSL
#include "verify_callback.hpp"
#endif

#include <opendsr/botan.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>

#include <cstdio>
#include <iostream>
#include <optional>
#include <variant>

namespace opendsr::app {
namespace {

constexpr std::string_view usage_text =
    "Usage: opendsr COMMAND [ARGS] [flags]\n\n"
    "Commands (stop opendsrd first, except for import --url and output: one process at a time holds\n"
    "the store):\n"
    "  workspace add ID        add a workspace with a new API key; prints the secret once\n"
    "  workspace list          list API keys and their workspaces (never secrets)\n"
    "  workspace remove KEY    remove an API key\n"
    "  show WORKSPACE ID       print the status object of a request\n"
    "  callbacks dead [--workspace W [--request ID]]\n"
    "                          list dead-lettered callbacks: request, status, URL, attempts, last error\n"
    "  callbacks redrive [--workspace W [--request ID]] [--at RFC3339]\n"
    "                          queue dead-lettered callbacks again (attempts reset), due now or at --at;\n"
    "                          opendsrd sends them when it next runs\n"
    "  forwards dead [--workspace W [--output NAME]]\n"
    "                          list dead forward batches: output, batch, requests, attempts, last error\n"
    "  forwards redrive [--workspace W [--output NAME]] [--at RFC3339]\n"
    "                          queue dead forward batches again (attempts reset; their requests back\n"
    "                          to pending), due now or at --at; opendsrd sends them when it next runs\n"
    "  import --workspace W [FILE.jsonl | -]\n"
    "                          load profiles and events from JSON Lines (standard input when FILE is -\n"
    "                          or absent); bad lines are reported by number; docs/import.md\n"
    "  import --url http://HOST:PORT --api-key K --api-secret S [FILE.jsonl | -]\n"
    "                          the same through a running opendsrd (POST /v3/subject-data), into\n"
    "                          the workspace of the API key; opendsrd stays up\n"
    "  key --out FILE          generate an RSA-2048 private key (PKCS#8 PEM, mode 0600)\n"
    "  csr --key FILE --domain DOMAIN [--out FILE]\n"
    "                          a certificate signing request for a CA (PEM; stdout without --out)\n"
    "  verify --cert FILE --signature BASE64 --body FILE\n"
    "                          check an X-OpenDSR-Signature over a body as a controller does\n"
    "                          (exit 0 and \"Verified OK\", or exit 1)\n"
    "  verify-callback ...     check signed status callbacks as a controller does, one saved or as\n"
    "                          they arrive (OpenSSL builds; opendsr verify-callback --help)\n\n"
    "Outputs, through a running opendsrd (--url --api-key --api-secret: the key's workspace;\n"
    "docs/distribution.md):\n"
    "  output add NAME --partner P [--set KEY=VALUE ...] [--credential KEY=VALUE ...]\n"
    "             [--endpoint URL] [--inactive]\n"
    "                          add an output; a credential's value may be @env:VAR or @stdin (one\n"
    "                          line) so that it stays out of shell history; never printed back\n"
    "  output list             the outputs: partner, active, circuit, queue, masked credentials\n"
    "  output update NAME [--set ...] [--credential ...] [--endpoint URL | --no-endpoint]\n"
    "                          change an output (--set and --credential replace all of theirs);\n"
    "                          closes an open circuit\n"
    "  output remove NAME      remove an output; its forwards not yet sent are failed\n"
    "  output activate NAME | output deactivate NAME\n"
    "                          forward new erasures to it again, or stop (queued ones still go)\n"
    "\nFlags:\n";

struct config {
  std::string data_dir = "./opendsr-data";
  std::string out;
  std::string key;
  std::string domain;
  std::string cert;
  std::string signature;
  std::string body;
  std::string workspace;
  std::string request;
  std::string at;
  std::uint64_t batch = 1000;
  std::string url;
  std::string api_key;
  std::string api_secret;
  std::string output;
  std::string partner;
  std::vector<std::string> settings;
  std::vector<std::string> credentials;
  std::string endpoint;
  bool no_endpoint = false;
  bool inactive = false;
};

int fail(const error& e) {
  std::fprintf(stderr, "opendsr: %s\n", e.message().c_str());
  return 1;
}

int usage_error(std::string_view what) {
  std::fprintf(stderr, "opendsr: %.*s (see opendsr --help)\n", static_cast<int>(what.size()), what.data());
  return 2;
}

result<std::unique_ptr<lmdb_storage>> open_existing_store(const config& c) {
  if (!std::filesystem::exists(store_path(c.data_dir)))
    return error(errc::storage_io, store_path(c.data_dir).string() + ": no store here (run opendsrd once, or pass --data-dir)");
  return open_store(c.data_dir, sync_mode::durable);
}

int workspace_command(const config& c, const std::vector<std::string>& args) {
  if (args.size() < 2) return usage_error("workspace needs add, list or remove");
  auto store = args[1] == "add" ? open_store(c.data_dir, sync_mode::durable) : open_existing_store(c);
  if (!store) return fail(store.error());
  auto hasher = botan::make_secret_hasher();
  if (!hasher) return fail(hasher.error());
  workspace_directory workspaces(**store, **hasher);
  if (args[1] == "add" && args.size() == 3) {
    auto made = add_workspace(workspaces, args[2]);
    if (!made) return fail(made.error());
    std::cout << "workspace: " << args[2] << "\napi key:   " << made->api_key << "\nsecret:    " << made->secret
              << "\n(the secret is stored hashed and shown only now)\n";
    return 0;
  }
  if (args[1] == "list" && args.size() == 2) {
    auto keys = workspaces.list();
    if (!keys) return fail(keys.error());
    for (const auto& k : *keys) std::cout << k.api_key << "\t" << k.workspace_id << "\n";
    return 0;
  }
  if (args[1] == "remove" && args.size() == 3) {
    auto removed = workspaces.remove(args[2]);
    if (!removed) return fail(removed.error());
    if (!*removed) return fail(error(errc::not_found, "no API key " + args[2]));
    std::cout << "removed " << args[2] << "\n";
    return 0;
  }
  return usage_error("workspace add ID | workspace list | workspace remove KEY");
}

// The engine over a store, for reading and for operator actions (never serving).
result<engine> open_engine(storage& store) {
  engine_options options;
  options.certificate_url = "https://localhost/opendsr_cert.pem";  // unused: nothing is served
  return engine::open(store, options);
}

int show_command(const config& c, const std::vector<std::string>& args) {
  if (args.size() != 3) return usage_error("show WORKSPACE ID");
  auto store = open_existing_store(c);
  if (!store) return fail(store.error());
  auto e = open_engine(**store);
  if (!e) return fail(e.error());
  auto status = e->status(args[1], args[2]);
  if (!status) return fail(status.error());
  std::cout << status->body << "\n";
  return 0;
}

// The scope of an operator action on dead letters (callbacks, forwards), from --workspace, the
// flag that narrows within it (--request, --output) and --at, and the engine of the stopped
// daemon's store. Returns the exit status of a usage error or a failure.
struct dead_letter_scope {
  std::unique_ptr<lmdb_storage> store;
  std::optional<opendsr::engine> engine;
  timestamp at;
  std::optional<std::string_view> workspace;
  std::optional<std::string_view> within;
};

std::variant<dead_letter_scope, int> open_dead_letters(const config& c, const std::vector<std::string>& args,
                                                       std::string_view within, std::string_view within_flag) {
  if (args.size() != 2 || (args[1] != "dead" && args[1] != "redrive"))
    return usage_error(args[0] + " dead | " + args[0] + " redrive");
  if (!within.empty() && c.workspace.empty()) return usage_error("--" + std::string(within_flag) + " needs --workspace");
  dead_letter_scope scope;
  scope.at = system_clock().now();
  if (!c.at.empty()) {
    auto t = parse_rfc3339(c.at);
    if (!t) return usage_error("--at: " + t.error().message());
    scope.at = *t;
  }
  auto store = open_existing_store(c);
  if (!store) return fail(store.error());
  scope.store = std::move(*store);
  auto e = open_engine(*scope.store);
  if (!e) return fail(e.error());
  scope.engine.emplace(std::move(*e));
  if (!c.workspace.empty()) scope.workspace = c.workspace;
  if (!within.empty()) scope.within = within;
  return scope;
}

int callbacks_command(const config& c, const std::vector<std::string>& args) {
  auto opened = open_dead_letters(c, args, c.request, "request");
  if (const int* status = std::get_if<int>(&opened)) return *status;
  dead_letter_scope& s = std::get<dead_letter_scope>(opened);
  if (args[1] == "redrive") {
    auto n = s.engine->redrive_callbacks(s.at, s.workspace, s.within);
    if (!n) return fail(n.error());
    std::cout << "requeued " << *n << " dead-lettered callback" << (*n == 1 ? "" : "s") << ", due " << format_rfc3339(s.at)
              << "\n";
    return 0;
  }
  auto dead = s.engine->dead_callbacks(s.workspace, s.within);
  if (!dead) return fail(dead.error());
  // One line each, tab-separated, for people and for cut/awk.
  std::cout << "workspace\trequest\tstatus\tattempts\tlast_attempt\turl\tlast_error\n";
  for (const dead_callback& d : *dead)
    std::cout << d.workspace << '\t' << d.subject_request_id << '\t' << d.request_status << '\t' << d.attempts << '\t'
              << format_rfc3339(d.last_attempt) << '\t' << d.url << '\t' << d.last_error << "\n";
  return 0;
}

int forwards_command(const config& c, const std::vector<std::string>& args) {
  auto opened = open_dead_letters(c, args, c.output, "output");
  if (const int* status = std::get_if<int>(&opened)) return *status;
  dead_letter_scope& s = std::get<dead_letter_scope>(opened);
  if (args[1] == "redrive") {
    auto n = s.engine->redrive_forwards(s.at, s.workspace, s.within);
    if (!n) return fail(n.error());
    std::cout << "requeued " << *n << " dead forward batch" << (*n == 1 ? "" : "es") << ", due " << format_rfc3339(s.at)
              << "\n";
    return 0;
  }
  auto dead = s.engine->dead_forwards(s.workspace, s.within);
  if (!dead) return fail(dead.error());
  // One line each, tab-separated; the requests of a batch by count (a Kochava batch holds
  // thousands), the first of them named.
  std::cout << "workspace\toutput\tbatch\trequests\tfirst_request\tattempts\tfirst_due\tlast_attempt\tlast_error\n";
  for (const dead_forward& d : *dead)
    std::cout << d.workspace << '\t' << d.output << '\t' << d.batch_id << '\t' << d.subject_request_ids.size() << '\t'
              << (d.subject_request_ids.empty() ? "-" : d.subject_request_ids.front()) << '\t' << d.attempts << '\t'
              << format_rfc3339(d.first_due) << '\t' << format_rfc3339(d.last_attempt) << '\t' << d.last_error << "\n";
  return 0;
}

int write_output(const std::string& out, const std::string& text, unsigned mode) {
  if (out.empty()) {
    std::cout << text;
    return 0;
  }
  if (auto w = create_file(out, text, mode); !w) return fail(w.error());
  std::cout << "wrote " << out << "\n";
  return 0;
}

int key_command(const config& c) {
  if (c.out.empty()) return usage_error("key needs --out FILE");
  auto key = botan::generate_private_key();
  if (!key) return fail(key.error());
  return write_output(c.out, *key, 0600);
}

int csr_command(const config& c) {
  if (c.key.empty() || c.domain.empty()) return usage_error("csr needs --key FILE and --domain DOMAIN");
  auto key = read_file(c.key);
  if (!key) return fail(key.error());
  auto csr = botan::make_certificate_request(*key, c.domain);
  if (!csr) return fail(csr.error());
  return write_output(c.out, *csr, 0644);
}

int verify_command(const config& c) {
  if (c.cert.empty() || c.signature.empty() || c.body.empty()) return usage_error("verify needs --cert, --signature and --body");
  auto certificate = read_file(c.cert);
  if (!certificate) return fail(certificate.error());
  auto body = read_file(c.body);
  if (!body) return fail(body.error());
  auto ok = botan::verify(*certificate, *body, c.signature);
  if (!ok) return fail(ok.error());
  std::cout << (*ok ? "Verified OK\n" : "Verification failure\n");
  return *ok ? 0 : 1;
}

}  // namespace
}  // namespace opendsr::app

int main(int argc, char** argv) {
  using namespace opendsr::app;
#if OPENDSR_HAVE_OPENSSL
  if (argc > 1 && std::string_view(argv[1]) == "verify-callback") return verify_callback_main(argc, argv);
#endif
  config c;
  flag_set flags;
  flags.add("data-dir", "DIR", "The opendsrd data directory", c.data_dir);
  flags.add("out", "FILE", "key, csr: the file to create (it must not exist)", c.out);
  flags.add("key", "FILE", "csr: the private key (PKCS#8 PEM)", c.key);
  flags.add("domain", "DOMAIN", "csr: the processor domain the certificate is for", c.domain);
  flags.add("cert", "FILE", "verify: the processor's certificate (PEM)", c.cert);
  flags.add("signature", "BASE64", "verify: the X-OpenDSR-Signature header value", c.signature);
  flags.add("body", "FILE", "verify: the exact body bytes that were signed", c.body);
  flags.add("workspace", "ID", "callbacks, forwards: only this workspace's; import: the workspace to load into", c.workspace);
  flags.add("request", "ID", "callbacks: only this request's (with --workspace)", c.request);
  flags.add("output", "NAME", "forwards: only this output's (with --workspace)", c.output);
  flags.add("at", "RFC3339",
            "callbacks redrive, forwards redrive: when they fall due (an opendsrd in test mode runs on its own clock)", c.at,
            "now");
  flags.add("batch", "N", "import: lines per write transaction at most", c.batch, 1, 1000000);
  flags.add("url", "URL", "import, output: the running opendsrd to go through (http://127.0.0.1:PORT)", c.url);
  flags.add("api-key", "KEY", "import --url, output: the workspace's API key", c.api_key);
  flags.add("api-secret", "SECRET", "import --url, output: the API key's secret (never printed)", c.api_secret);
  flags.add("partner", "P", "output add: the partner (kochava, blueshift)", c.partner);
  flags.add_repeated("set", "KEY=VALUE", "output add, update: a setting of the partner (account_id, region, ...)",
                     c.settings);
  flags.add_repeated("credential", "KEY=VALUE",
                     "output add, update: a credential (api_key, ...); VALUE may be @env:VAR or @stdin; never printed",
                     c.credentials);
  flags.add("endpoint", "URL", "output add, update: the partner's base URL instead of its own (scheme://host[:port])",
            c.endpoint);
  flags.add_switch("no-endpoint", "output update: back to the partner's own endpoint", c.no_endpoint);
  flags.add_switch("inactive", "output add: add it inactive (opendsr output activate NAME later)", c.inactive);
  auto args = flags.parse(argc, argv);
  if (flags.help_requested() || (args && args->empty())) {
    std::cout << usage_text << flags.usage();
    return flags.help_requested() ? 0 : 2;
  }
  if (!args) return usage_error(args.error().message());
  const std::string& command = args->front();
  try {
    if (command == "workspace") return workspace_command(c, *args);
    if (command == "show") return show_command(c, *args);
    if (command == "callbacks") return callbacks_command(c, *args);
    if (command == "forwards") return forwards_command(c, *args);
    if (command == "output")
      return output_command({.url = c.url, .api_key = c.api_key, .api_secret = c.api_secret, .partner = c.partner,
                             .settings = c.settings, .credentials = c.credentials, .endpoint = c.endpoint,
                             .no_endpoint = c.no_endpoint, .inactive = c.inactive},
                            *args);
    if (command == "import") {
      if (args->size() > 2) return usage_error("import --workspace W [FILE.jsonl | -]");
      return import_command({.data_dir = c.data_dir, .workspace = c.workspace, .url = c.url, .api_key = c.api_key,
                             .api_secret = c.api_secret, .file = args->size() == 2 ? (*args)[1] : std::string(),
                             .batch_lines = c.batch});
    }
    if (command == "key" && args->size() == 1) return key_command(c);
    if (command == "csr" && args->size() == 1) return csr_command(c);
    if (command == "verify" && args->size() == 1) return verify_command(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opendsr: %s\n", e.what());
    return 1;
  }
  return usage_error("unknown command " + command);
}
