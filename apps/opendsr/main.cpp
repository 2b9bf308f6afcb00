// opendsr: the administration tool of an opendsrd data directory, and a controller-side
// signature check. Run `opendsr --help`; docs/daemon.md has examples.
#include "common/data_dir.hpp"
#include "common/flags.hpp"
#include "import.hpp"
#if OPENDSR_HAVE_OPENSSL
#include "verify_callback.hpp"
#endif

#include <opendsr/botan.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>

#include <cstdio>
#include <iostream>

namespace opendsr::app {
namespace {

constexpr std::string_view usage_text =
    "Usage: opendsr COMMAND [ARGS] [flags]\n\n"
    "Commands (stop opendsrd first, except for import --url: one process at a time holds the store):\n"
    "  workspace add ID        add a workspace with a new API key; prints the secret once\n"
    "  workspace list          list API keys and their workspaces (never secrets)\n"
    "  workspace remove KEY    remove an API key\n"
    "  show WORKSPACE ID       print the status object of a request\n"
    "  callbacks dead [--workspace W [--request ID]]\n"
    "                          list dead-lettered callbacks: request, status, URL, attempts, last error\n"
    "  callbacks redrive [--workspace W [--request ID]] [--at RFC3339]\n"
    "                          queue dead-lettered callbacks again (attempts reset), due now or at --at;\n"
    "                          opendsrd sends them when it next runs\n"
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
    "                          they arrive (OpenSSL builds; opendsr verify-callback --help)\n\nFlags:\n";

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

int callbacks_command(const config& c, const std::vector<std::string>& args) {
  if (args.size() != 2 || (args[1] != "dead" && args[1] != "redrive"))
    return usage_error("callbacks dead | callbacks redrive");
  if (!c.request.empty() && c.workspace.empty()) return usage_error("--request needs --workspace");
  timestamp at = system_clock().now();
  if (!c.at.empty()) {
    auto t = parse_rfc3339(c.at);
    if (!t) return usage_error("--at: " + t.error().message());
    at = *t;
  }
  auto store = open_existing_store(c);
  if (!store) return fail(store.error());
  auto e = open_engine(**store);
  if (!e) return fail(e.error());
  const auto workspace = c.workspace.empty() ? std::nullopt : std::optional<std::string_view>(c.workspace);
  const auto request = c.request.empty() ? std::nullopt : std::optional<std::string_view>(c.request);
  if (args[1] == "redrive") {
    auto n = e->redrive_callbacks(at, workspace, request);
    if (!n) return fail(n.error());
    std::cout << "requeued " << *n << " dead-lettered callback" << (*n == 1 ? "" : "s") << ", due " << format_rfc3339(at)
              << "\n";
    return 0;
  }
  auto dead = e->dead_callbacks(workspace, request);
  if (!dead) return fail(dead.error());
  // One line each, tab-separated, for people and for cut/awk.
  std::cout << "workspace\trequest\tstatus\tattempts\tlast_attempt\turl\tlast_error\n";
  for (const dead_callback& d : *dead)
    std::cout << d.workspace << '\t' << d.subject_request_id << '\t' << d.request_status << '\t' << d.attempts << '\t'
              << format_rfc3339(d.last_attempt) << '\t' << d.url << '\t' << d.last_error << "\n";
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
  flags.add("workspace", "ID", "callbacks: only this workspace's; import: the workspace to load into", c.workspace);
  flags.add("request", "ID", "callbacks: only this request's (with --workspace)", c.request);
  flags.add("at", "RFC3339", "callbacks redrive: when they fall due (an opendsrd in test mode runs on its own clock)", c.at, "now");
  flags.add("batch", "N", "import: lines per write transaction at most", c.batch, 1, 1000000);
  flags.add("url", "URL", "import: the running opendsrd to import through (http://127.0.0.1:PORT)", c.url);
  flags.add("api-key", "KEY", "import --url: the workspace's API key", c.api_key);
  flags.add("api-secret", "SECRET", "import --url: the API key's secret (never printed)", c.api_secret);
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
