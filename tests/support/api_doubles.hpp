// Doubles for driving opendsr::api in unit tests: a signer with a readable stand-in signature
// that counts its calls, a plain-text secret hasher that counts its (in production, slow) checks,
// and the Basic Authorization header of an API key.
#pragma once

#include <opendsr/secret_hasher.hpp>
#include <opendsr/signer.hpp>

#include "common/base64.hpp"

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

namespace opendsr::testing {

// Signs with a readable stand-in and counts the calls.
class recording_signer final : public signer {
 public:
  result<std::string> sign(std::string_view bytes) const override {
    ++calls;
    return "sig:" + std::to_string(std::hash<std::string_view>{}(bytes));
  }
  std::string_view processor_domain() const override { return "opendsr.example.com"; }
  std::string_view certificate_url() const override { return "https://opendsr.example.com/opendsr_cert.pem"; }
  std::string_view certificate_pem() const override { return "-----BEGIN CERTIFICATE-----\n...\n"; }
  mutable std::atomic<int> calls = 0;
};

// Stores "plain:" + secret and counts the checks.
class counting_hasher final : public secret_hasher {
 public:
  result<std::string> hash(std::string_view secret) const override { return "plain:" + std::string(secret); }
  result<bool> check(std::string_view secret, std::string_view stored) const override {
    ++checks;
    return stored == "plain:" + std::string(secret);
  }
  mutable std::atomic<int> checks = 0;
};

inline std::string basic(std::string_view key, std::string_view secret) {
  return "Basic " + detail::base64_encode(std::string(key) + ":" + std::string(secret));
}

}  // namespace opendsr::testing
