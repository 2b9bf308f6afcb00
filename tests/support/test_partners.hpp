// Pure partners for engine tests (tests/unit/distribution_test, engine_property_test): a partner
// kind that takes the identity types it is given and batches as its output's settings say. The
// engine never builds or classifies a request, so build() and classify() answer nothing useful.
//
// Settings: max_items (default 1) and max_age_s (default 0: immediate). Credentials: key (required).
#pragma once

#include <opendsr/partner.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace opendsr::testing {

class test_partner final : public partner {
 public:
  test_partner(std::string domain, std::vector<identity_type> types, partner_batching b)
      : domain_(std::move(domain)), types_(std::move(types)), batching_(b) {}
  std::string_view domain() const noexcept override { return domain_; }
  bool accepts(identity_type t) const noexcept override {
    return std::find(types_.begin(), types_.end(), t) != types_.end();
  }
  partner_batching batching() const noexcept override { return batching_; }
  result<http_client_request> build(std::span<const forward_subject>) const override { return http_client_request{}; }
  forward_verdict classify(const http_client_response&, unsigned) const override { return {}; }

 private:
  std::string domain_;
  std::vector<identity_type> types_;
  partner_batching batching_;
};

class test_kind final : public partner_kind {
 public:
  test_kind(std::string name, std::string domain, std::vector<identity_type> types)
      : name_(std::move(name)), domain_(std::move(domain)), types_(std::move(types)) {}
  std::string_view name() const noexcept override { return name_; }
  std::string_view describe() const noexcept override { return "max_items, max_age_s: batching"; }
  result<std::unique_ptr<partner>> configure(const partner_settings& s) const override {
    if (!s.credentials.contains("key")) return error(errc::invalid_argument, "credentials: key is required.");
    partner_batching b;
    for (const auto& [k, v] : s.settings) {
      if (k == "max_items") b.max_items = std::stoul(v);
      else if (k == "max_age_s") b.max_age = std::chrono::seconds(std::stol(v));
      else return error(errc::invalid_argument, "settings: unknown setting " + k + ".");
    }
    return std::unique_ptr<partner>(std::make_unique<test_partner>(domain_, types_, b));
  }

 private:
  std::string name_, domain_;
  std::vector<identity_type> types_;
};

}  // namespace opendsr::testing
