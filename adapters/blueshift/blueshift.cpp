// The Blueshift partner: spec/partners.md §4.2, docs/partners.md. One call per erasure request,
// at once; what Blueshift's answers mean follows its error table (§4.1).
#include <opendsr/blueshift.hpp>

#include "common/base64.hpp"
#include "partner_common.hpp"

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr {
namespace {

constexpr std::string_view blueshift_name = "blueshift";
constexpr std::string_view us_base = "https://api.getblueshift.com";
constexpr std::string_view eu_base = "https://api.eu.getblueshift.com";
// A 404 ("resource not found", which Blueshift also answers while a profile is being written) is
// retried on this many attempts; the next 404 counts the erasure as done.
constexpr unsigned not_found_retries = 3;

struct blueshift_config {
  std::string url;            // the delete or forget call, with its query
  std::string authorization;  // "Basic " + base64(user_api_key + ":")
  bool all_matching = false;
};

class blueshift_partner final : public partner {
 public:
  explicit blueshift_partner(blueshift_config config) : config_(std::move(config)) {}

  std::string_view domain() const noexcept override { return "blueshift.com"; }
  bool accepts(identity_type t) const noexcept override {
    return t == identity_type::controller_customer_id || t == identity_type::email;
  }
  partner_batching batching() const noexcept override { return {}; }  // {1, 0}: each request at once

  // One call for one subject: its customer_id and email, both when it has both.
  result<http_client_request> build(std::span<const forward_subject> batch) const override {
    if (batch.size() != 1) return error(errc::invalid_argument, "blueshift: a batch holds exactly one subject");
    std::optional<std::string_view> customer_id;
    std::optional<std::string_view> email;
    for (const identity& id : batch.front().identities) {
      std::optional<std::string_view>* field = id.type == identity_type::controller_customer_id ? &customer_id
                                               : id.type == identity_type::email              ? &email
                                                                                               : nullptr;
      if (field == nullptr)
        return error(errc::invalid_argument,
                     "blueshift: identity type " + std::string(opendsr_name(id.type)) + " is not accepted");
      if (*field)
        return error(errc::invalid_argument,
                     "blueshift: the subject holds two identities of type " + std::string(opendsr_name(id.type)));
      *field = id.value;
    }
    if (!customer_id && !email) return error(errc::invalid_argument, "blueshift: the subject holds no identity");
    boost::json::object body;
    if (customer_id) body["customer_id"] = *customer_id;
    if (email) body["email"] = *email;

    http_client_request request;
    request.method = "POST";
    request.url = config_.url;
    request.headers.add("Authorization", config_.authorization);
    request.headers.add("Content-Type", "application/json");
    request.headers.add("Accept", "application/json");
    request.body = boost::json::serialize(body);
    return request;
  }

  // Messages hold the status code only: Blueshift's error bodies are not documented and may
  // echo what they were sent.
  forward_verdict classify(const http_client_response& response, unsigned attempt) const override {
    using kind = forward_verdict_kind;
    const int status = response.status;
    const std::string http = "HTTP " + std::to_string(status);
    if (detail::is_success_status(status)) {
      forward_verdict sent;
      sent.kind = kind::sent;
      if (config_.all_matching)
        sent.message = "cap unknown: Blueshift deletes at most 50 matching profiles per call and reports no count";
      return sent;
    }
    switch (status) {
      case 400:
      case 413:
      case 422: return detail::partner_verdict(kind::failed, response, http + " from Blueshift");
      case 401:
      case 403: return detail::partner_verdict(kind::bad_credentials, response, "invalid credentials (" + http + ")");
      case 404:
        if (attempt <= not_found_retries)
          return detail::partner_verdict(kind::retry, response, http + " from Blueshift (no matching customer yet)");
        return detail::partner_verdict(kind::sent, response, "no matching customer");
      case 408:
      case 409:
      case 429:
      case 500:
      case 502:
      case 503:
      case 504: return detail::partner_verdict(kind::retry, response, http + " from Blueshift");
      default: return detail::partner_verdict(kind::failed, response, http + " from Blueshift (unexpected status)");
    }
  }

 private:
  blueshift_config config_;
};

class blueshift_kind final : public partner_kind {
 public:
  std::string_view name() const noexcept override { return blueshift_name; }

  std::string_view describe() const noexcept override {
    return "region: us (https://api.getblueshift.com, default) or eu (https://api.eu.getblueshift.com)\n"
           "mode: delete (the first matching profile, default), delete_all_matching (up to 50 per call) or "
           "forget (delete, and ignore the user's future events)\n"
           "user_api_key: the account's User API key, sent as HTTP Basic user name (credential, required)";
  }

  result<std::unique_ptr<partner>> configure(const partner_settings& s) const override {
    OPENDSR_TRY(detail::check_known_names(blueshift_name, "setting", s.settings, {"region", "mode"}));
    OPENDSR_TRY(detail::check_known_names(blueshift_name, "credential", s.credentials, {"user_api_key"}));
    auto region = detail::choice_setting(blueshift_name, s.settings, "region", {"us", "eu"});
    if (!region) return std::move(region).error();
    auto mode = detail::choice_setting(blueshift_name, s.settings, "mode", {"delete", "delete_all_matching", "forget"});
    if (!mode) return std::move(mode).error();
    auto key = detail::required_credential(blueshift_name, s.credentials, "user_api_key", true);
    if (!key) return std::move(key).error();
    auto base = detail::partner_base_url(blueshift_name, s.endpoint, *region == "eu" ? eu_base : us_base);
    if (!base) return std::move(base).error();

    blueshift_config config;
    config.all_matching = *mode == "delete_all_matching";
    config.url = *base + (*mode == "forget" ? "/api/v1/customers/forget" : "/api/v1/customers/delete");
    if (config.all_matching) config.url += "?delete_all_matching_customers=true";
    config.authorization = "Basic " + detail::base64_encode(*key + ":");
    return std::unique_ptr<partner>(std::make_unique<blueshift_partner>(std::move(config)));
  }
};

}  // namespace

std::shared_ptr<const partner_kind> blueshift_partner_kind() { return std::make_shared<const blueshift_kind>(); }

}  // namespace opendsr
