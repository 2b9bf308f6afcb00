// Keys, self-signed certificates and certificate signing requests for a processor domain.
#include "guard.hpp"

#include <opendsr/botan.hpp>

#include <botan/asn1_obj.h>
#include <botan/data_src.h>
#include <botan/pkcs10.h>
#include <botan/pkcs8.h>
#include <botan/rsa.h>
#include <botan/system_rng.h>
#include <botan/x509self.h>

#include <memory>

namespace opendsr::botan {
namespace {

constexpr std::size_t rsa_bits = 2048;  // OpenDSR signatures are RSA-2048 (344 base64 characters)

// Subject and SAN both name the domain: controllers match the X-OpenDSR-Processor-Domain header
// against the certificate.
Botan::X509_Cert_Options options_for(std::string_view domain) {
  Botan::X509_Cert_Options options(std::string{domain});
  options.dns = std::string(domain);
  options.constraints = Botan::Key_Constraints(Botan::DIGITAL_SIGNATURE | Botan::KEY_ENCIPHERMENT);
  return options;
}

result<void> check_domain(std::string_view domain) {
  if (domain.empty()) return error(errc::invalid_argument, "the domain is empty");
  return {};
}

}  // namespace

result<std::string> generate_private_key() {
  return detail::botan_guard(errc::internal, "key generation failed", []() -> result<std::string> {
    Botan::RSA_PrivateKey key(Botan::system_rng(), rsa_bits);
    return Botan::PKCS8::PEM_encode(key);
  });
}

result<key_and_certificate> generate_self_signed(std::string_view domain, timestamp now, std::chrono::seconds validity) {
  OPENDSR_TRY(check_domain(domain));
  if (validity <= std::chrono::seconds::zero()) return error(errc::invalid_argument, "the validity is not positive");
  return detail::botan_guard(errc::internal, "certificate generation failed", [&]() -> result<key_and_certificate> {
    Botan::RSA_PrivateKey key(Botan::system_rng(), rsa_bits);
    Botan::X509_Cert_Options options = options_for(domain);
    auto start = std::chrono::time_point_cast<std::chrono::system_clock::duration>(now);
    options.start = Botan::X509_Time(start);
    options.end = Botan::X509_Time(start + validity);
    Botan::X509_Certificate certificate =
        Botan::X509::create_self_signed_cert(options, key, "SHA-256", Botan::system_rng());
    return key_and_certificate{Botan::PKCS8::PEM_encode(key), certificate.PEM_encode()};
  });
}

result<std::string> make_certificate_request(std::string_view private_key_pem, std::string_view domain) {
  OPENDSR_TRY(check_domain(domain));
  auto key = detail::botan_guard(errc::invalid_argument, "the private key does not parse",
                                 [&]() -> result<std::unique_ptr<Botan::Private_Key>> {
                                   Botan::DataSource_Memory source(std::string{private_key_pem});
                                   return Botan::PKCS8::load_key(source);
                                 });
  if (!key) return std::move(key).error();
  return detail::botan_guard(errc::internal, "the certificate request failed", [&]() -> result<std::string> {
    Botan::PKCS10_Request request = Botan::X509::create_cert_req(options_for(domain), **key, "SHA-256", Botan::system_rng());
    return request.PEM_encode();
  });
}

}  // namespace opendsr::botan
