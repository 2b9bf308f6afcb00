#include <opendsr/api.hpp>

#include "api/outputs_route.hpp"
#include "api/rate_limiter.hpp"
#include "api/signature_cache.hpp"
#include "api/subject_import.hpp"
#include "common/base64.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>
#include <utility>

namespace opendsr {
namespace {

using namespace std::string_view_literals;

enum class route_kind { requests, request, discovery, certificate, results, subject_data, outputs, output };

struct route {
  route_kind kind;
  // The decoded {id} of /requests/{id} or {name} of /outputs/{name}, or the {token} of
  // /results/{token}.
  std::string id;
};

// The methods each route answers, as the Allow header lists them.
std::string_view allowed_methods(route_kind k) {
  switch (k) {
    case route_kind::requests: return "GET, POST";
    case route_kind::request: return "GET, DELETE";
    case route_kind::discovery:
    case route_kind::certificate:
    case route_kind::results: return "GET";
    case route_kind::subject_data: return "POST";
    case route_kind::outputs: return "GET, POST";
    case route_kind::output: return "PATCH, DELETE";
  }
  return "";
}

bool allows(route_kind k, std::string_view method) {
  if (method == "GET") return k != route_kind::subject_data && k != route_kind::output;
  if (method == "POST") return k == route_kind::requests || k == route_kind::subject_data || k == route_kind::outputs;
  if (method == "PATCH") return k == route_kind::output;
  if (method == "DELETE") return k == route_kind::request || k == route_kind::output;
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes (and '+' as a space in a query). Returns nullopt for a broken escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

// The value of the first query parameter `name`: nullopt if absent, an error if malformed.
result<std::optional<std::string>> query_parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    std::string_view key = pair.substr(0, pair.find('='));
    if (key != name) continue;
    std::string_view value = key.size() < pair.size() ? pair.substr(key.size() + 1) : ""sv;
    auto decoded = percent_decode(value, true);
    if (!decoded) return error(errc::invalid_request, std::string(name) + ": the query parameter is not valid percent-encoding");
    return std::optional<std::string>(std::move(*decoded));
  }
  return std::optional<std::string>();
}

// The path of an absolute URL ("https://host/a/b?x" -> "/a/b"), or "" if it has none.
std::string_view url_path(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  auto slash = url.find('/', scheme + 3);
  if (slash == std::string_view::npos) return {};
  std::string_view path = url.substr(slash);
  return path.substr(0, path.find_first_of("?#"));
}

// The media type of a Content-Type value, without parameters such as charset.
std::string_view media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return type;
}

bool is_json_media_type(std::string_view content_type) { return iequals(media_type(content_type), "application/json"); }

// JSON Lines: application/x-ndjson, application/jsonl, application/x-jsonlines.
bool is_json_lines_media_type(std::string_view content_type) {
  const std::string_view type = media_type(content_type);
  return iequals(type, "application/x-ndjson") || iequals(type, "application/jsonl") ||
         iequals(type, "application/x-jsonlines");
}

// A results package streamed from the results store.
class package_body final : public http_body_reader {
 public:
  explicit package_body(std::unique_ptr<results_reader> r) : reader_(std::move(r)) {}
  std::uint64_t size() const noexcept override { return reader_->size(); }
  result<std::size_t> read(std::span<char> buffer) override { return reader_->read(buffer); }

 private:
  std::unique_ptr<results_reader> reader_;
};

struct credentials {
  std::string api_key;
  std::string secret;
};

// Parses "Basic base64(key:secret)".
result<credentials> parse_basic(std::optional<std::string_view> header) {
  if (!header) return error(errc::unauthorized, "Basic credentials are required.");
  std::string_view value = *header;
  if (value.size() < 6 || !iequals(value.substr(0, 6), "Basic ")) return error(errc::unauthorized, "Only Basic credentials are accepted.");
  value.remove_prefix(6);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  auto decoded = detail::base64_decode(value);
  std::size_t colon = decoded ? decoded->find(':') : std::string::npos;
  if (colon == std::string::npos) return error(errc::unauthorized, "The Authorization header is not valid Basic credentials.");
  return credentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

}  // namespace

struct api::impl {
  engine& engine_;
  const signer& signer_;
  const workspace_directory& workspaces_;
  const clock& clock_;
  api_options options_;
  detail::rate_limiter limiter_;
  detail::signature_cache signatures_;
  std::string certificate_path_;

  impl(engine& e, const signer& s, const workspace_directory& w, const clock& c, api_options o)
      : engine_(e),
        signer_(s),
        workspaces_(w),
        clock_(c),
        options_(std::move(o)),
        limiter_(options_.limits),
        signatures_(options_.signature_cache_entries),
        certificate_path_(url_path(s.certificate_url())) {}

  http_response error_response(const error& e) const {
    http_response r{http_status(e.code()), {}, error_body(e, options_.error_form)};
    r.headers.set("Content-Type", "application/json");
    r.headers.set("Cache-Control", "no-store");
    r.headers.set("Pragma", "no-cache");
    if (e == errc::unauthorized) r.headers.set("WWW-Authenticate", "Basic realm=\"opendsr\"");
    return r;
  }

  std::optional<route> resolve(std::string_view path) const {
    if (!certificate_path_.empty() && path == certificate_path_) return route{route_kind::certificate, {}};
    if (!path.starts_with(options_.base_path)) return std::nullopt;
    path.remove_prefix(options_.base_path.size());
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);  // a trailing slash is tolerated
    if (path == "/requests") return route{route_kind::requests, {}};
    if (path == "/discovery") return route{route_kind::discovery, {}};
    if (path == "/subject-data" && options_.subjects) return route{route_kind::subject_data, {}};
    if (path.starts_with("/results/") && options_.results) {
      std::string_view token = path.substr("/results/"sv.size());
      if (token.empty() || token.find('/') != std::string_view::npos) return std::nullopt;
      return route{route_kind::results, std::string(token)};
    }
    if (path == "/outputs") return route{route_kind::outputs, {}};
    for (const auto& [prefix, kind] :
         {std::pair{"/requests/"sv, route_kind::request}, std::pair{"/outputs/"sv, route_kind::output}}) {
      if (!path.starts_with(prefix)) continue;
      std::string_view id = path.substr(prefix.size());
      if (id.empty() || id.find('/') != std::string_view::npos) return std::nullopt;
      auto decoded = percent_decode(id, false);
      if (!decoded) return std::nullopt;
      return route{kind, std::move(*decoded)};
    }
    return std::nullopt;
  }

  // A signed 2xx: the signature over the exact body bytes, remembered if `reuse`.
  http_response signed_response(int status, std::string body, int percentage_used, bool reuse) {
    auto signature = reuse ? signatures_.sign(signer_, body) : signer_.sign(body);
    if (!signature) return error_response(signature.error());
    http_response r{status, {}, std::move(body)};
    r.headers.set("Content-Type", "application/json");
    r.headers.set("Cache-Control", "no-store");
    r.headers.set("X-OpenDSR-Processor-Domain", std::string(signer_.processor_domain()));
    r.headers.set("X-OpenDSR-Signature", std::move(*signature));
    r.headers.set("X-mp-rate-limit-percentage-used", std::to_string(percentage_used));
    return r;
  }

  http_response public_response(std::string_view content_type, std::string body) const {
    http_response r{200, {}, std::move(body)};
    r.headers.set("Content-Type", std::string(content_type));
    return r;
  }

  http_head_decision on_head(const http_request& head) {
    const std::string_view target = head.target;
    const std::string_view path = target.substr(0, target.find('?'));
    const std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : ""sv;

    auto r = resolve(path);
    if (!r) return error_response(error(errc::not_found, "There is no such resource."));
    if (!allows(r->kind, head.method)) {
      http_response refused = error_response(error(errc::method_not_allowed, "Allowed: " + std::string(allowed_methods(r->kind)) + "."));
      refused.headers.set("Allow", std::string(allowed_methods(r->kind)));
      return refused;
    }
    if (r->kind == route_kind::discovery) return public_response("application/json", engine_.discovery());
    if (r->kind == route_kind::certificate)
      return public_response("application/x-pem-file", std::string(signer_.certificate_pem()));

    const bool is_post = head.method == "POST";
    if (is_post || head.method == "PATCH") {
      if (auto length = head.headers.get("Content-Length")) {
        std::uint64_t n = 0;
        auto [end, ec] = std::from_chars(length->data(), length->data() + length->size(), n);
        if (ec != std::errc() || end != length->data() + length->size() || n > body_limit(r->kind)) return too_large(r->kind);
      }
    }

    auto who = parse_basic(head.headers.get("Authorization"));
    if (!who) return error_response(who.error());
    auto workspace = workspaces_.authenticate(who->api_key, who->secret);
    if (!workspace) return error_response(workspace.error());

    // An import is a call, not a new request: it does not spend the daily new-request quota.
    detail::rate_decision admitted = limiter_.admit(*workspace, clock_.now(), is_post && r->kind == route_kind::requests);
    if (!admitted.allowed) {
      http_response refused = error_response(error(errc::rate_limited, "Retry after " + std::to_string(admitted.retry_after.count()) + " s."));
      refused.headers.set("Retry-After", std::to_string(admitted.retry_after.count()));
      refused.headers.set("X-mp-rate-limit-exceeded", "workspace");
      return refused;
    }
    const int used = admitted.percentage_used;

    if (r->kind == route_kind::subject_data) {
      auto type = head.headers.get("Content-Type");
      if (!type || !is_json_lines_media_type(*type))
        return error_response(error(errc::unsupported_media_type, "The Content-Type must be application/x-ndjson (JSON Lines)."));
      return http_body_handler([this, ws = std::move(*workspace)](http_request request, http_responder respond) {
        respond(import(ws, request.body));
      });
    }
    if (r->kind == route_kind::results) return results(*workspace, r->id);
    if (r->kind == route_kind::outputs || r->kind == route_kind::output) {
      std::optional<std::string> name;
      if (r->kind == route_kind::output) name = std::move(r->id);
      if (head.method == "GET" || head.method == "DELETE") return outputs(*workspace, head.method, name, {}, used);
      auto type = head.headers.get("Content-Type");
      if (!type || !is_json_media_type(*type)) return error_response(error(errc::unsupported_media_type));
      return http_body_handler([this, ws = std::move(*workspace), method = head.method, name = std::move(name), used](
                                   http_request request, http_responder respond) {
        respond(outputs(ws, method, name, request.body, used));
      });
    }
    if (is_post) {
      auto type = head.headers.get("Content-Type");
      if (!type || !is_json_media_type(*type)) return error_response(error(errc::unsupported_media_type));
      return http_body_handler([this, ws = std::move(*workspace), used](http_request request, http_responder respond) {
        respond(create(ws, request.body, used));
      });
    }
    if (head.method == "DELETE") {
      auto cancelled = engine_.cancel(*workspace, r->id, clock_.now());
      if (!cancelled) return error_response(cancelled.error());
      return signed_response(202, std::move(cancelled->body), used, false);
    }
    if (r->kind == route_kind::request) {
      auto status = engine_.status(*workspace, r->id);
      if (!status) return error_response(status.error());
      return signed_response(200, std::move(status->body), used, true);
    }
    auto group_id = query_parameter(query, "group_id");
    if (!group_id) return error_response(group_id.error());
    if (!*group_id) return error_response(error(errc::invalid_request, "group_id: the query parameter is required."));
    auto group = engine_.group(*workspace, **group_id);
    if (!group) return error_response(group.error());
    return signed_response(200, std::move(group->body), used, true);
  }

  std::size_t body_limit(route_kind k) const {
    return k == route_kind::subject_data ? options_.max_import_bytes : options_.max_body_bytes;
  }

  http_response too_large(route_kind k) const {
    return error_response(error(errc::payload_too_large, "The request body is larger than " + std::to_string(body_limit(k)) + " bytes."));
  }

  http_response import(const std::string& workspace, std::string_view body) {
    if (body.size() > options_.max_import_bytes) return too_large(route_kind::subject_data);  // chunked: no Content-Length
    auto report = detail::import_subject_data(*options_.subjects, workspace, body);
    if (!report) return error_response(report.error());
    http_response r{200, {}, std::move(*report)};
    r.headers.set("Content-Type", "application/json");
    r.headers.set("Cache-Control", "no-store");
    return r;
  }

  // The /outputs routes (api/outputs_route.hpp), signed like the request routes.
  http_response outputs(const std::string& workspace, const std::string& method, const std::optional<std::string>& name,
                        std::string_view body, int used) {
    if (body.size() > options_.max_body_bytes) return too_large(route_kind::outputs);  // chunked: no Content-Length
    auto reply = detail::answer_outputs(engine_, workspace, method, name, body, clock_.now());
    if (!reply) return error_response(reply.error());
    return signed_response(reply->status, std::move(reply->body), used, method == "GET");
  }

  // GET /results/{token}: another workspace's token, an unknown one and one whose request matched
  // no data are all 404, so a token reveals nothing to anyone but its own workspace.
  http_response results(const std::string& workspace, const std::string& token) {
    const error none(errc::not_found, "There are no results under this link.");
    if (!is_results_token(token)) return error_response(none);  // nothing else reaches the engine
    auto link = engine_.results(workspace, token, clock_.now());
    if (!link) return error_response(link.error() == errc::not_found ? none : link.error());
    if (link->expired)
      return error_response(error(errc::gone, "The results of request " + link->subject_request_id + " expired at " +
                                                   format_rfc3339(link->expires) + "."));
    auto package = options_.results->open(token);
    if (!package) return error_response(package.error() == errc::not_found ? none : package.error());
    http_response r{200, {}, {}};
    r.headers.set("Content-Type", "application/zip");
    r.headers.set("Content-Disposition", "attachment; filename=\"" + link->subject_request_id + ".zip\"");
    r.headers.set("Cache-Control", "no-store");
    r.stream = std::make_shared<package_body>(std::move(*package));
    return r;
  }

  http_response create(const std::string& workspace, std::string_view body, int used) {
    if (body.size() > options_.max_body_bytes) return too_large(route_kind::requests);  // a chunked body has no Content-Length
    const timestamp now = clock_.now();
    auto receipt = options_.committer ? options_.committer->submit(workspace, body, now) : engine_.submit(workspace, body, now);
    if (!receipt) return error_response(receipt.error());
    return signed_response(201, std::move(receipt->body), used, false);
  }
};

result<std::unique_ptr<api>> api::open(engine& engine, const signer& signer, const workspace_directory& workspaces,
                                       const clock& clock, api_options options) {
  if (options.base_path.size() < 2 || options.base_path.front() != '/' || options.base_path.back() == '/')
    return error(errc::invalid_argument, "base_path must start with '/' and not end with one, e.g. \"/v3\"");
  if (options.max_body_bytes == 0) return error(errc::invalid_argument, "max_body_bytes must be at least 1");
  if (options.max_import_bytes == 0) return error(errc::invalid_argument, "max_import_bytes must be at least 1");
  OPENDSR_TRY(detail::validate(options.limits));
  return std::unique_ptr<api>(new api(std::make_unique<impl>(engine, signer, workspaces, clock, std::move(options))));
}

api::api(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
api::~api() = default;

http_head_decision api::on_head(const http_request& head) { return impl_->on_head(head); }

http_response api::on_error(const error& e) { return impl_->error_response(e); }

http_response api::handle(http_request request) {
  http_response out;
  dispatch(*this, std::move(request), [&out](http_response r) { out = std::move(r); });
  return out;
}

}  // namespace opendsr
