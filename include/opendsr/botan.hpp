// The Botan 2 adapter: an RSA signer, key and certificate tooling for processors, signature
// verification as a controller does it, and Argon2id secret hashing.
//
// Built when the `botan` feature is enabled (library opendsr_botan). Every function returns a
// result; no Botan exception crosses this interface.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/secret_hasher.hpp>
#include <opendsr/signer.hpp>
#include <opendsr/time.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace opendsr::botan {

using signer_options = signer_pem_options;

// Returns a signer for OpenDSR (RSASSA-PKCS1-v1_5, SHA-256, base64). Returns
// errc::invalid_argument, naming the defect, if the key or certificate does not parse, the key
// is not RSA, the key does not match the certificate, or the certificate is not issued to the
// domain. The signer keeps one Botan signing object per concurrently signing thread (building
// one costs more than a signature).
result<std::unique_ptr<signer>> make_signer(const signer_options& options);

struct key_and_certificate {
  std::string private_key_pem;  // unencrypted PKCS#8
  std::string certificate_pem;
};

// Generates an RSA-2048 key (unencrypted PKCS#8 PEM).
result<std::string> generate_private_key();

// Generates an RSA-2048 key and a self-signed certificate issued to `domain` (CN and SAN), valid
// from `now` for `validity`. For local setups and tests only: controllers in production
// require a certificate from a trusted CA.
result<key_and_certificate> generate_self_signed(std::string_view domain, timestamp now,
                                                 std::chrono::seconds validity = std::chrono::days(365));

// Returns a PKCS#10 certificate signing request in PEM for `domain` (CN and SAN), signed by the
// given PKCS#8 key, to send to a certificate authority.
result<std::string> make_certificate_request(std::string_view private_key_pem, std::string_view domain);

// Returns true iff `signature_base64` is a valid OpenDSR signature of `bytes` by the key of the
// (leaf) certificate in `certificate_pem`. A signature that is not base64 is false. Returns
// errc::invalid_argument if the certificate does not parse. Checks neither the chain nor expiry.
result<bool> verify(std::string_view certificate_pem, std::string_view bytes, std::string_view signature_base64);

struct argon2_parameters {
  // Memory in KiB. Default: 19456 (19 MiB), with t = 2 and p = 1: OWASP's Argon2id baseline.
  std::size_t memory_kib = 19456;
  std::size_t iterations = 2;
  std::size_t parallelism = 1;
};

// Returns a secret hasher using Argon2id with the given parameters for new hashes. check()
// accepts Argon2id hashes of any parameters, so they can be raised without re-issuing secrets.
// Returns errc::invalid_argument for parameters Argon2 rejects.
result<std::unique_ptr<secret_hasher>> make_secret_hasher(const argon2_parameters& parameters = {});

}  // namespace opendsr::botan
