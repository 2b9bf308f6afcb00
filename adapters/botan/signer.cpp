// The Botan signer and the controller-side signature check.
#include "guard.hpp"

#include <opendsr/botan.hpp>

#include <botan/base64.h>
#include <botan/data_src.h>
#include <botan/pkcs8.h>
#include <botan/pubkey.h>
#include <botan/system_rng.h>
#include <botan/x509cert.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace opendsr::botan {
namespace {

// OpenDSR's signature scheme in Botan 2's naming: RSASSA-PKCS1-v1_5 ("EMSA3") with SHA-256.
constexpr const char* signature_padding = "EMSA3(SHA-256)";

const std::uint8_t* bytes_of(std::string_view s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }

Botan::X509_Certificate parse_certificate(std::string_view pem) {
  Botan::DataSource_Memory source(bytes_of(pem), pem.size());
  return Botan::X509_Certificate(source);
}

class botan_signer final : public signer {
 public:
  botan_signer(std::unique_ptr<Botan::Private_Key> key, const signer_options& options)
      : key_(std::move(key)),
        domain_(options.processor_domain),
        url_(options.certificate_url),
        certificate_pem_(options.certificate_pem) {}

  result<std::string> sign(std::string_view bytes) const override {
    return detail::botan_guard(errc::internal, "signing failed", [&]() -> result<std::string> {
      std::unique_ptr<Botan::PK_Signer> pk = acquire();
      std::vector<std::uint8_t> signature = pk->sign_message(bytes_of(bytes), bytes.size(), Botan::system_rng());
      release(std::move(pk));
      return Botan::base64_encode(signature);
    });
  }

  std::string_view processor_domain() const override { return domain_; }
  std::string_view certificate_url() const override { return url_; }
  std::string_view certificate_pem() const override { return certificate_pem_; }

 private:
  // A PK_Signer holds per-message state, so each is used by one thread at a time; building one
  // costs about as much as a signature, so they are kept. The pool grows to the number of
  // threads that ever sign at once, and no further.
  std::unique_ptr<Botan::PK_Signer> acquire() const {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto pk = std::move(idle_.back());
        idle_.pop_back();
        return pk;
      }
    }
    // The RNG is kept by the RSA blinder: the system RNG is global and thread-safe.
    return std::make_unique<Botan::PK_Signer>(*key_, Botan::system_rng(), signature_padding);
  }

  void release(std::unique_ptr<Botan::PK_Signer> pk) const {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(pk));
  }

  std::unique_ptr<Botan::Private_Key> key_;  // read-only after construction
  std::string domain_;
  std::string url_;
  std::string certificate_pem_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<Botan::PK_Signer>> idle_;
};

}  // namespace

result<std::unique_ptr<signer>> make_signer(const signer_options& options) {
  if (options.processor_domain.empty()) return error(errc::invalid_argument, "the processor domain is empty");
  if (options.certificate_url.empty()) return error(errc::invalid_argument, "the certificate URL is empty");
  auto key = detail::botan_guard(errc::invalid_argument, "the private key does not parse",
                                 [&]() -> result<std::unique_ptr<Botan::Private_Key>> {
                                   Botan::DataSource_Memory source(options.private_key_pem);
                                   return Botan::PKCS8::load_key(source);
                                 });
  if (!key) return std::move(key).error();
  if ((*key)->algo_name() != "RSA")
    return error(errc::invalid_argument, "the private key is " + (*key)->algo_name() + ", not RSA");
  auto certificate = detail::botan_guard(errc::invalid_argument, "the certificate does not parse",
                                         [&]() -> result<Botan::X509_Certificate> {
                                           return parse_certificate(options.certificate_pem);
                                         });
  if (!certificate) return std::move(certificate).error();
  auto matches = detail::botan_guard(errc::invalid_argument, "the certificate's key does not load", [&]() -> result<bool> {
    return certificate->load_subject_public_key()->public_key_bits() == (*key)->public_key_bits();
  });
  if (!matches) return std::move(matches).error();
  if (!*matches) return error(errc::invalid_argument, "the private key does not match the certificate");
  if (!certificate->matches_dns_name(options.processor_domain))
    return error(errc::invalid_argument, "the certificate is not issued to " + options.processor_domain);
  return std::unique_ptr<signer>(std::make_unique<botan_signer>(std::move(*key), options));
}

result<bool> verify(std::string_view certificate_pem, std::string_view bytes, std::string_view signature_base64) {
  auto public_key = detail::botan_guard(errc::invalid_argument, "the certificate does not parse",
                                        [&]() -> result<std::unique_ptr<Botan::Public_Key>> {
                                          return parse_certificate(certificate_pem).load_subject_public_key();
                                        });
  if (!public_key) return std::move(public_key).error();
  std::vector<std::uint8_t> signature;
  try {
    Botan::secure_vector<std::uint8_t> decoded = Botan::base64_decode(signature_base64.data(), signature_base64.size(), false);
    signature.assign(decoded.begin(), decoded.end());
  } catch (const std::exception&) {
    return false;  // not base64: not a signature
  }
  return detail::botan_guard(errc::invalid_argument, "the certificate's key cannot verify", [&]() -> result<bool> {
    Botan::PK_Verifier verifier(**public_key, signature_padding);
    return verifier.verify_message(bytes_of(bytes), bytes.size(), signature.data(), signature.size());
  });
}

}  // namespace opendsr::botan
