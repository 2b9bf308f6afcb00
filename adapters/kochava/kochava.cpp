// The Kochava partner: spec/partners.md §3.2, docs/partners.md. Kochava documents the scrub call
// and its success body only; the classification of everything else is ours (docs/partners.md).
#include <opendsr/kochava.hpp>

#include "partner_common.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr {
namespace {

using detail::partner_values;

constexpr std::string_view kochava_name = "kochava";
constexpr std::string_view kochava_base = "https://nng.kochava.com";
constexpr std::uint64_t default_batch_max = 10'000;
constexpr std::uint64_t most_batch_max = 100'000;
constexpr std::uint64_t default_flush_interval_seconds = 3'600;
constexpr std::uint64_t most_flush_interval_seconds = 86'400;

// Kochava's id_type for an identity type, or nullopt if Kochava does not take it.
constexpr std::optional<std::string_view> kochava_id_type(identity_type t) noexcept {
  switch (t) {
    case identity_type::ios_advertising_id: return "idfa";
    case identity_type::android_advertising_id: return "adid";
    default: return std::nullopt;
  }
}

// `text` as an integer in [min, max] iff it is 1 to 19 decimal digits (no sign, no space).
std::optional<std::uint64_t> parse_bounded_decimal(std::string_view text, std::uint64_t min, std::uint64_t max) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

// The integer setting `name` in [min, max] (`rule` says so in words); `fallback` when absent, or
// an error when there is none.
result<std::uint64_t> integer_setting(const partner_values& settings, std::string_view name, std::uint64_t min,
                                      std::uint64_t max, std::string_view rule, std::optional<std::uint64_t> fallback) {
  const std::string prefix = std::string(kochava_name) + ": setting " + std::string(name);
  const std::string* text = detail::find_value(settings, name);
  if (text == nullptr) {
    if (fallback) return *fallback;
    return error(errc::invalid_argument, prefix + " is required (" + std::string(rule) + ")");
  }
  auto value = parse_bounded_decimal(*text, min, max);
  if (!value) return error(errc::invalid_argument, prefix + " must be " + std::string(rule));
  return *value;
}

// True iff text is a plausible mailbox: local@domain in visible ASCII, at most 254 bytes.
bool is_mailbox(std::string_view text) noexcept {
  if (text.size() < 3 || text.size() > 254) return false;
  for (char c : text)
    if (c <= 0x20 || c >= 0x7F) return false;
  const std::size_t at = text.find('@');
  return at != 0 && at != std::string_view::npos && at + 1 < text.size() && text.find('@', at + 1) == std::string_view::npos;
}

// True iff text is fit to show operators as a job reference: 1 to 128 letters, digits, '-', '_',
// '.' or ':' (Kochava's job ids are UUID-like; anything else is not copied).
bool is_reference_token(std::string_view text) noexcept {
  if (text.empty() || text.size() > 128) return false;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// For a 2xx body: the job id when the body is a JSON object with "status": "OK" ("" when it
// names no usable job_id); nullopt when it says anything else or is not JSON.
std::optional<std::string> accepted_job_id(std::string_view body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const boost::json::object& o = v.get_object();
  const boost::json::value* status = o.if_contains("status");
  if (status == nullptr || !status->is_string() || status->get_string() != "OK") return std::nullopt;
  const boost::json::value* job = o.if_contains("job_id");
  if (job == nullptr) return std::string();
  if (job->is_string() && is_reference_token(job->get_string())) return std::string(job->get_string());
  if (job->is_int64() || job->is_uint64()) return boost::json::serialize(*job);
  return std::string();
}

struct kochava_config {
  std::string scrub_url;
  std::string api_key;
  std::optional<std::string> notify_email;
  partner_batching batching;
};

class kochava_partner final : public partner {
 public:
  explicit kochava_partner(kochava_config config) : config_(std::move(config)) {}

  std::string_view domain() const noexcept override { return "kochava.com"; }
  bool accepts(identity_type t) const noexcept override { return kochava_id_type(t).has_value(); }
  partner_batching batching() const noexcept override { return config_.batching; }

  // One scrub call for the whole batch; each (id_type, id_value) pair once, in first-seen order,
  // values exactly as given.
  result<http_client_request> build(std::span<const forward_subject> batch) const override {
    if (batch.empty()) return error(errc::invalid_argument, "kochava: a batch holds at least one subject");
    boost::json::array device_ids;
    std::set<std::pair<std::string_view, std::string_view>> seen;
    for (const forward_subject& subject : batch) {
      for (const identity& id : subject.identities) {
        const auto id_type = kochava_id_type(id.type);
        if (!id_type)
          return error(errc::invalid_argument,
                       "kochava: identity type " + std::string(opendsr_name(id.type)) + " is not accepted");
        if (!seen.emplace(*id_type, id.value).second) continue;
        device_ids.push_back(boost::json::object{{"id_type", *id_type}, {"id_value", id.value}});
      }
    }
    if (device_ids.empty()) return error(errc::invalid_argument, "kochava: the batch holds no identity");

    boost::json::object body;
    body["device_ids"] = std::move(device_ids);
    if (config_.notify_email) body["email"] = *config_.notify_email;

    http_client_request request;
    request.method = "POST";
    request.url = config_.scrub_url;
    request.headers.add("Content-Type", "application/json");
    request.headers.add("Accept", "application/json");
    request.headers.add("Authentication-Key", config_.api_key);
    request.body = boost::json::serialize(body);
    return request;
  }

  // Messages hold the status code only: Kochava documents no error body, and one may echo the
  // device ids it was sent.
  forward_verdict classify(const http_client_response& response, unsigned attempt) const override {
    using kind = forward_verdict_kind;
    const int status = response.status;
    const std::string http = "HTTP " + std::to_string(status);
    if (detail::is_success_status(status)) {
      if (auto job = accepted_job_id(response.body)) {
        forward_verdict sent;
        sent.kind = kind::sent;
        sent.reference = std::move(*job);
        return sent;
      }
      return detail::partner_verdict(attempt <= 1 ? kind::retry : kind::failed, response,
                                     "unexpected 2xx answer from Kochava (" + http + " without status \"OK\")");
    }
    switch (status) {
      case 400:
      case 422: return detail::partner_verdict(kind::failed, response, http + " from Kochava (request refused)");
      case 404:
        return detail::partner_verdict(kind::failed, response, http + " from Kochava (check account_id and app_id)");
      case 401:
      case 403: return detail::partner_verdict(kind::bad_credentials, response, "invalid credentials (" + http + ")");
      case 413: return detail::partner_verdict(kind::too_large, response, http + " from Kochava (batch too large)");
      case 408:
      case 429: return detail::partner_verdict(kind::retry, response, http + " from Kochava");
      default: break;
    }
    if (status >= 500 && status <= 599) return detail::partner_verdict(kind::retry, response, http + " from Kochava");
    return detail::partner_verdict(kind::failed, response, http + " from Kochava (unexpected status)");
  }

 private:
  kochava_config config_;
};

class kochava_kind final : public partner_kind {
 public:
  std::string_view name() const noexcept override { return kochava_name; }

  std::string_view describe() const noexcept override {
    return "account_id: Kochava account id, a positive integer (required)\n"
           "scope: app (the app's devices, default) or account (every app of the account)\n"
           "app_id: numeric app id, a positive integer (required when scope is app)\n"
           "app_guid: the app's GUID, kept for operators (it does not replace app_id)\n"
           "batch_max: device ids per request, 1 to 100000 (default 10000)\n"
           "flush_interval_seconds: longest wait of a queued id, 0 to 86400 (default 3600)\n"
           "notify_email: operations mailbox Kochava notifies of each scrub (optional)\n"
           "api_key: Kochava API key, sent as Authentication-Key (credential, required)";
  }

  result<std::unique_ptr<partner>> configure(const partner_settings& s) const override {
    OPENDSR_TRY(detail::check_known_names(kochava_name, "setting", s.settings,
                                          {"account_id", "scope", "app_id", "app_guid", "batch_max",
                                           "flush_interval_seconds", "notify_email"}));
    OPENDSR_TRY(detail::check_known_names(kochava_name, "credential", s.credentials, {"api_key"}));

    constexpr std::uint64_t most_id = std::numeric_limits<std::int64_t>::max();
    auto account_id = integer_setting(s.settings, "account_id", 1, most_id, "a positive integer", std::nullopt);
    if (!account_id) return std::move(account_id).error();
    auto scope = detail::choice_setting(kochava_name, s.settings, "scope", {"app", "account"});
    if (!scope) return std::move(scope).error();
    const bool app_scope = *scope == "app";

    // In account scope an app_id is checked but not used: the scope says which call is made.
    std::optional<std::uint64_t> app_id;
    if (detail::find_value(s.settings, "app_id") != nullptr) {
      auto id = integer_setting(s.settings, "app_id", 1, most_id, "a positive integer", std::nullopt);
      if (!id) return std::move(id).error();
      app_id = *id;
    } else if (app_scope) {
      return error(errc::invalid_argument,
                   "kochava: setting app_id is required when scope is app (a positive integer; app_guid cannot "
                   "replace it, since looking a GUID up needs a network call the partner does not make: read the "
                   "app's numeric id from Kochava's App Management API)");
    }
    if (const std::string* guid = detail::find_value(s.settings, "app_guid"); guid != nullptr && !is_reference_token(*guid))
      return error(errc::invalid_argument,
                   "kochava: setting app_guid must be 1 to 128 letters, digits, '-', '_', '.' or ':'");

    auto batch_max =
        integer_setting(s.settings, "batch_max", 1, most_batch_max, "an integer from 1 to 100000", default_batch_max);
    if (!batch_max) return std::move(batch_max).error();
    auto flush = integer_setting(s.settings, "flush_interval_seconds", 0, most_flush_interval_seconds,
                                 "an integer from 0 to 86400", default_flush_interval_seconds);
    if (!flush) return std::move(flush).error();

    kochava_config config;
    if (const std::string* email = detail::find_value(s.settings, "notify_email")) {
      if (!is_mailbox(*email))
        return error(errc::invalid_argument,
                     "kochava: setting notify_email must be one address (local@domain, visible ASCII, at most 254 "
                     "bytes)");
      config.notify_email = *email;
    }
    auto api_key = detail::required_credential(kochava_name, s.credentials, "api_key", false);
    if (!api_key) return std::move(api_key).error();
    auto base = detail::partner_base_url(kochava_name, s.endpoint, kochava_base);
    if (!base) return std::move(base).error();

    config.scrub_url = *base + "/accounts/" + std::to_string(*account_id);
    if (app_scope) config.scrub_url += "/apps/" + std::to_string(*app_id);
    config.scrub_url += "/privacy/scrub";
    config.api_key = std::move(*api_key);
    config.batching.max_items = static_cast<std::size_t>(*batch_max);
    config.batching.max_age = std::chrono::seconds(*flush);
    return std::unique_ptr<partner>(std::make_unique<kochava_partner>(std::move(config)));
  }
};

}  // namespace

std::shared_ptr<const partner_kind> kochava_partner_kind() { return std::make_shared<const kochava_kind>(); }

}  // namespace opendsr
