// The OpenSSL 3 signer: the same OpenDSR signatures as the Botan adapter (RSASSA-PKCS1-v1_5,
// SHA-256, standard base64 on one line), about 3.5 times as many per second on one core.
//
// Built when the `openssl` feature is enabled (library opendsr_openssl). Every function returns a
// result; no OpenSSL error escapes, and error messages carry OpenSSL's reason, never key material.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/signer.hpp>

#include <memory>
#include <string>

namespace opendsr::openssl {

struct signer_options {
  // The RSA private key in PEM: unencrypted PKCS#8 ("-----BEGIN PRIVATE KEY-----", what the Botan
  // adapter and opendsrd write) or PKCS#1 ("-----BEGIN RSA PRIVATE KEY-----").
  std::string private_key_pem;
  // The certificate of that key in PEM, leaf first, optionally followed by its chain. The leaf
  // must be issued to processor_domain (SAN or CN).
  std::string certificate_pem;
  std::string processor_domain;
  // Where certificate_pem is published; discovery names it.
  std::string certificate_url;
};

// Returns a signer for OpenDSR. Returns errc::invalid_argument, naming the defect, if the key or
// certificate does not parse, the key is not RSA, the key does not match the certificate, or the
// certificate is not issued to the domain. The key is parsed once here; each signing thread
// keeps its own digest context, so sign() takes no lock.
result<std::unique_ptr<signer>> make_signer(const signer_options& options);

}  // namespace opendsr::openssl
