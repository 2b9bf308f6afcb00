// The signer seam: signs the exact bytes of OpenDSR responses and callbacks, and names the
// processor that signs them.
//
// OpenDSR v3 signatures are RSASSA-PKCS1-v1_5 with SHA-256 over the exact body bytes, sent as
// standard base64 with padding on one line (an RSA-2048 key gives 344 characters) in the
// X-OpenDSR-Signature header, beside X-OpenDSR-Processor-Domain. Controllers verify them against
// the certificate published at certificate_url(), whose SAN names processor_domain().
// PKCS#1 v1.5 is deterministic: the same bytes always give the same signature, which is what lets
// the engine reuse the stored signature of an unchanged status body.
//
// Thread safety: every method may be called from any thread concurrently.
// Ownership: the embedder owns the signer and keeps it alive as long as any engine using it.
// The adapter in adapters/botan/ signs with Botan from a PEM key; an HSM or cloud KMS can
// implement the same interface.
#pragma once

#include <opendsr/result.hpp>

#include <string>
#include <string_view>

namespace opendsr {

class signer {
 public:
  virtual ~signer() = default;
  signer() = default;
  signer(const signer&) = delete;
  signer& operator=(const signer&) = delete;

  // Returns the base64 signature of `bytes`. Fails only if the key cannot be used (errc::internal
  // with the cause, or the adapter's mapping of a device or network error).
  virtual result<std::string> sign(std::string_view bytes) const = 0;

  // The processor's domain, as sent in X-OpenDSR-Processor-Domain (e.g. "opendsr.example.com").
  virtual std::string_view processor_domain() const = 0;

  // The https URL at which the certificate is published; discovery names it.
  virtual std::string_view certificate_url() const = 0;

  // The certificate (chain) in PEM, leaf first: what certificate_url() serves.
  virtual std::string_view certificate_pem() const = 0;
};

// What a signer that holds its key in PEM is made from (the Botan and OpenSSL adapters).
struct signer_pem_options {
  // The RSA private key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
  std::string private_key_pem;
  // The certificate of that key in PEM, leaf first, optionally followed by its chain. The leaf
  // must be issued to processor_domain (SAN or CN).
  std::string certificate_pem;
  std::string processor_domain;
  // Where certificate_pem is published; discovery names it.
  std::string certificate_url;
};

// Forwards every call to another signer, so that a decorator (metrics, fault injection)
// overrides only the method it changes. The target must outlive the wrapper.
class signer_wrapper : public signer {
 public:
  explicit signer_wrapper(const signer& target) : target_(target) {}

  result<std::string> sign(std::string_view bytes) const override { return target_.sign(bytes); }
  std::string_view processor_domain() const override { return target_.processor_domain(); }
  std::string_view certificate_url() const override { return target_.certificate_url(); }
  std::string_view certificate_pem() const override { return target_.certificate_pem(); }

 protected:
  const signer& target() const noexcept { return target_; }

 private:
  const signer& target_;
};

}  // namespace opendsr
