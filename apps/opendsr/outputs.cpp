// opendsr output (outputs.hpp): each subcommand is one exchange with opendsrd's /v3/outputs
// routes (docs/distribution.md), its answer printed for people.
#include "outputs.hpp"

#if OPENDSR_HAVE_OPENSSL
#include "daemon_client.hpp"
#endif

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace opendsr::app {
namespace {

namespace json = boost::json;

int usage(const std::string& what) {
  std::fprintf(stderr, "opendsr: output: %s (see opendsr --help)\n", what.c_str());
  return 2;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "opendsr output: %s\n", what.c_str());
  return 1;
}

// "key=value" pairs into a map; a repeated key, or one without '=', is a usage error (the
// message names the flag and the key, never the value).
std::optional<std::string> parse_pairs(std::string_view flag, const std::vector<std::string>& pairs,
                                       std::map<std::string, std::string>& out) {
  for (const std::string& pair : pairs) {
    const auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) return "--" + std::string(flag) + " takes key=value";
    std::string key = pair.substr(0, eq);
    if (out.contains(key)) return "--" + std::string(flag) + " " + key + " is given twice";
    out.emplace(std::move(key), pair.substr(eq + 1));
  }
  return std::nullopt;
}

// Replaces each "@env:VAR" and "@stdin" value by what it names: the environment variable, or the
// next line of standard input (its line ending removed). Neither may be empty.
std::optional<std::string> resolve_secrets(std::map<std::string, std::string>& credentials) {
  for (auto& [key, value] : credentials) {
    if (value.starts_with("@env:")) {
      const std::string variable = value.substr(5);
      const char* from_env = variable.empty() ? nullptr : std::getenv(variable.c_str());
      if (!from_env || !*from_env)
        return "--credential " + key + ": the environment variable " + variable + " is not set or empty";
      value = from_env;
    } else if (value == "@stdin") {
      std::string line;
      if (!std::getline(std::cin, line)) return "--credential " + key + ": standard input has no line left to read";
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) return "--credential " + key + ": the line read from standard input is empty";
      value = std::move(line);
    }
  }
  return std::nullopt;
}

json::object to_json(const std::map<std::string, std::string>& map) {
  json::object o;
  for (const auto& [key, value] : map) o[key] = value;
  return o;
}

#if OPENDSR_HAVE_OPENSSL
// Reading an OUTPUT object of the daemon's answer; what is missing reads as "?" or 0.
std::string text(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v && v->is_string()) return std::string(v->get_string());
  return v && v->is_null() ? std::string() : std::string("?");
}

bool flag(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_bool() && v->get_bool();
}

std::string number(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_number() ? json::serialize(*v) : std::string("?");
}

// "k=v, k=v" of a settings or (masked) credentials object.
std::string pairs_text(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_object()) return "?";
  std::string out;
  for (const auto& kv : v->get_object()) {
    if (!out.empty()) out += ", ";
    out += std::string(kv.key()) + "=" + (kv.value().is_string() ? std::string(kv.value().get_string()) : "?");
  }
  return out.empty() ? "-" : out;
}

std::string queued_text(const json::object& o) {
  return number(o, "queued") + " (" + number(o, "queued_items") + " ids)";
}

void print_output(const json::object& o) {
  const std::string endpoint = text(o, "endpoint");
  const std::string reason = text(o, "circuit_reason");
  std::cout << "output:      " << text(o, "name") << "\n"
            << "partner:     " << text(o, "partner") << " (" << text(o, "domain") << ")\n"
            << "active:      " << (flag(o, "active") ? "yes" : "no") << "\n"
            << "endpoint:    " << (endpoint.empty() ? "(the partner's own)" : endpoint) << "\n"
            << "settings:    " << pairs_text(o, "settings") << "\n"
            << "credentials: " << pairs_text(o, "credentials") << "\n"
            << "circuit:     " << (flag(o, "circuit_open") ? "open: " + reason : std::string("closed")) << "\n"
            << "queued:      " << queued_text(o) << ", " << number(o, "batches") << " batches in flight, "
            << number(o, "dead_batches") << " dead\n"
            << "batch size:  " << number(o, "max_items") << "\n"
            << "updated:     " << text(o, "updated") << "\n";
}

// One row per output, columns aligned; then why each open circuit opened.
void print_table(const json::array& outputs) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "PARTNER", "ACTIVE", "CIRCUIT", "QUEUED", "DEAD", "CREDENTIALS"}};
  std::vector<std::string> reasons;
  for (const json::value& each : outputs) {
    const json::object* o = each.if_object();
    if (!o) continue;
    const bool open = flag(*o, "circuit_open");
    rows.push_back({text(*o, "name"), text(*o, "partner"), flag(*o, "active") ? "yes" : "no", open ? "open" : "closed",
                    queued_text(*o), number(*o, "dead_batches"), pairs_text(*o, "credentials")});
    if (open) reasons.push_back(text(*o, "name") + ": circuit open: " + text(*o, "circuit_reason"));
  }
  if (rows.size() == 1) {
    std::cout << "no outputs (add one with opendsr output add NAME --partner P ...)\n";
    return;
  }
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  for (const std::string& reason : reasons) std::cout << reason << "\n";
}

// Sends one request and returns the answer's JSON object, or prints why not (the exit status).
std::variant<json::object, int> exchange(daemon_client& client, std::string method, const std::string& path,
                                         std::optional<json::object> body, int expected) {
  auto r = body ? client.send(std::move(method), path, "application/json", json::serialize(*body))
                : client.send(std::move(method), path);
  if (!r) return fail(r.error().message());
  if (r->status != expected) return fail(daemon_client::refusal(*r).message());
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (ec || !v.is_object()) return fail("opendsrd's answer is not the JSON object it should be");
  return std::move(v.get_object());
}
#endif

}  // namespace

int output_command(const output_command_options& options, const std::vector<std::string>& args) {
  const std::string sub = args.size() > 1 ? args[1] : std::string();
  const bool takes_name = sub == "add" || sub == "update" || sub == "remove" || sub == "activate" || sub == "deactivate";
  if (!takes_name && sub != "list") return usage("output needs add, list, update, remove, activate or deactivate");
  if (args.size() != (takes_name ? 3u : 2u))
    return usage(takes_name ? "output " + sub + " needs one NAME (quote a name with spaces)" : "output list takes no NAME");
  if (options.url.empty() || options.api_key.empty() || options.api_secret.empty())
    return usage("output goes through the running opendsrd: give --url, --api-key and --api-secret");

  const bool configures = sub == "add" || sub == "update";
  if (!configures && (!options.settings.empty() || !options.credentials.empty() || !options.endpoint.empty()))
    return usage("--set, --credential and --endpoint go with output add or output update");
  if (sub != "add" && (!options.partner.empty() || options.inactive))
    return usage("--partner and --inactive go with output add");
  if (sub != "update" && options.no_endpoint) return usage("--no-endpoint goes with output update");
  if (options.no_endpoint && !options.endpoint.empty()) return usage("give --endpoint or --no-endpoint, not both");
  if (sub == "add" && options.partner.empty()) return usage("output add needs --partner P (kochava, blueshift)");

  std::map<std::string, std::string> settings, credentials;
  if (auto bad = parse_pairs("set", options.settings, settings)) return usage(*bad);
  if (auto bad = parse_pairs("credential", options.credentials, credentials)) return usage(*bad);
  if (auto bad = resolve_secrets(credentials)) return usage(*bad);

  json::object body;
  if (sub == "add") {
    body["name"] = args[2];
    body["partner"] = options.partner;
    body["active"] = !options.inactive;
    body["settings"] = to_json(settings);
    body["credentials"] = to_json(credentials);
    if (!options.endpoint.empty()) body["endpoint"] = options.endpoint;
  } else if (sub == "update") {
    if (!options.settings.empty()) body["settings"] = to_json(settings);
    if (!options.credentials.empty()) body["credentials"] = to_json(credentials);
    if (!options.endpoint.empty()) body["endpoint"] = options.endpoint;
    if (options.no_endpoint) body["endpoint"] = nullptr;
    if (body.empty()) return usage("output update needs --set, --credential, --endpoint or --no-endpoint");
  } else if (sub == "activate" || sub == "deactivate") {
    body["active"] = sub == "activate";
  }

#if OPENDSR_HAVE_OPENSSL
  auto client = daemon_client::open({.url = options.url, .api_key = options.api_key, .api_secret = options.api_secret});
  if (!client) return fail(client.error().message());
  const std::string path = takes_name && sub != "add" ? "/v3/outputs/" + percent_encode_segment(args[2]) : "/v3/outputs";
  std::variant<json::object, int> answer =
      sub == "list"     ? exchange(*client, "GET", path, std::nullopt, 200)
      : sub == "add"    ? exchange(*client, "POST", path, std::move(body), 201)
      : sub == "remove" ? exchange(*client, "DELETE", path, std::nullopt, 200)
                        : exchange(*client, "PATCH", path, std::move(body), 200);
  if (const int* status = std::get_if<int>(&answer)) return *status;
  const json::object& o = std::get<json::object>(answer);
  if (sub == "list") {
    const json::value* outputs = o.if_contains("outputs");
    if (!outputs || !outputs->is_array()) return fail("opendsrd's answer is not the list it should be");
    print_table(outputs->get_array());
  } else if (sub == "remove") {
    std::cout << "removed output " << args[2] << " (its forwards not yet sent are failed)\n";
  } else {
    print_output(o);
  }
  return 0;
#else
  return fail("output needs a build with the openssl feature (the HTTP client comes with it)");
#endif
}

}  // namespace opendsr::app
