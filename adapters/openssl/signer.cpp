// The OpenSSL 3 signer. OpenSSL reports failures on a per-thread error queue; every call that can
// fail is checked here and the queue is turned into the error's message at this edge.
#include <opendsr/openssl_signer.hpp>

#include "handles.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace opendsr::openssl {
namespace {

using namespace detail;

// An encrypted key is refused rather than prompting on the terminal for its passphrase.
int no_passphrase(char*, int, int, void*) { return -1; }

// A digest context initialised for the key, and one to sign in: copying the first into the
// second is cheaper than initialising (which looks the algorithms up), and leaves the first
// ready for the next signature. Used by one thread at a time.
struct signing_context {
  md_ctx_ptr initialised;
  md_ctx_ptr working;
};

class openssl_signer final : public signer {
 public:
  openssl_signer(pkey_ptr key, const signer_options& options)
      : key_(std::move(key)),
        domain_(options.processor_domain),
        url_(options.certificate_url),
        certificate_pem_(options.certificate_pem) {}

  result<std::string> sign(std::string_view bytes) const override {
    auto context = acquire();
    if (!context) return std::move(context).error();
    auto signature = sign_with(**context, bytes);
    release(std::move(*context));
    return signature;
  }

  std::string_view processor_domain() const override { return domain_; }
  std::string_view certificate_url() const override { return url_; }
  std::string_view certificate_pem() const override { return certificate_pem_; }

 private:
  result<std::string> sign_with(const signing_context& context, std::string_view bytes) const {
    std::vector<unsigned char> signature(static_cast<std::size_t>(EVP_PKEY_get_size(key_.get())));
    std::size_t length = signature.size();
    if (EVP_MD_CTX_copy_ex(context.working.get(), context.initialised.get()) != 1 ||
        EVP_DigestSign(context.working.get(), signature.data(), &length, reinterpret_cast<const unsigned char*>(bytes.data()),
                       bytes.size()) != 1)
      return openssl_error(errc::internal, "signing failed");
    std::string base64(4 * ((length + 2) / 3) + 1, '\0');  // EVP_EncodeBlock writes a NUL
    const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(base64.data()), signature.data(), static_cast<int>(length));
    base64.resize(static_cast<std::size_t>(written));
    return base64;
  }

  // The pool grows to the number of threads that ever sign at once, and no further.
  result<std::unique_ptr<signing_context>> acquire() const {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto context = std::move(idle_.back());
        idle_.pop_back();
        return context;
      }
    }
    auto context = std::make_unique<signing_context>(signing_context{md_ctx_ptr(EVP_MD_CTX_new()), md_ctx_ptr(EVP_MD_CTX_new())});
    if (!context->initialised || !context->working ||
        EVP_DigestSignInit(context->initialised.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1)
      return openssl_error(errc::internal, "the signing context cannot be made");
    return context;
  }

  void release(std::unique_ptr<signing_context> context) const {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(context));
  }

  pkey_ptr key_;  // read-only after construction: OpenSSL 3 keys may sign from many threads
  std::string domain_;
  std::string url_;
  std::string certificate_pem_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<signing_context>> idle_;
};

}  // namespace

result<std::unique_ptr<signer>> make_signer(const signer_options& options) {
  if (options.processor_domain.empty()) return error(errc::invalid_argument, "the processor domain is empty");
  if (options.certificate_url.empty()) return error(errc::invalid_argument, "the certificate URL is empty");
  ERR_clear_error();
  bio_ptr key_source = memory_bio(options.private_key_pem);
  pkey_ptr key(key_source ? PEM_read_bio_PrivateKey(key_source.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!key) return openssl_error(errc::invalid_argument, "the private key does not parse");
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    const char* type = EVP_PKEY_get0_type_name(key.get());
    return error(errc::invalid_argument, std::string("the private key is ") + (type ? type : "not RSA") + ", not RSA");
  }
  bio_ptr certificate_source = memory_bio(options.certificate_pem);
  x509_ptr certificate(certificate_source ? PEM_read_bio_X509(certificate_source.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!certificate) return openssl_error(errc::invalid_argument, "the certificate does not parse");
  const EVP_PKEY* certified = X509_get0_pubkey(certificate.get());
  if (!certified) return openssl_error(errc::invalid_argument, "the certificate's key does not load");
  if (EVP_PKEY_eq(certified, key.get()) != 1) {
    ERR_clear_error();
    return error(errc::invalid_argument, "the private key does not match the certificate");
  }
  if (X509_check_host(certificate.get(), options.processor_domain.data(), options.processor_domain.size(), 0, nullptr) != 1) {
    ERR_clear_error();
    return error(errc::invalid_argument, "the certificate is not issued to " + options.processor_domain);
  }
  return std::unique_ptr<signer>(std::make_unique<openssl_signer>(std::move(key), options));
}

}  // namespace opendsr::openssl
