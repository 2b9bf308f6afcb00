// OpenSSL objects as RAII handles, and OpenSSL's error queue as an opendsr::error: shared by the
// signer and the callback verifier of this adapter (private; never installed).
#pragma once

#include <opendsr/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr::openssl::detail {

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct x509_free {
  void operator()(X509* c) const { X509_free(c); }
};
struct x509_stack_free {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct store_free {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), x509_stack_free>;
using store_ptr = std::unique_ptr<X509_STORE, store_free>;
using store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, store_ctx_free>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;

// Returns an error of `failure`: `context`, then the reasons on this thread's OpenSSL error queue
// (which it empties). OpenSSL's reasons name the defect, never key material.
inline error openssl_error(errc failure, std::string_view context) {
  std::string message(context);
  char reason[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, reason, sizeof reason);
    message += message.size() == context.size() ? ": " : "; ";
    message += reason;
  }
  return error(failure, std::move(message));
}

// A read-only memory BIO over `pem` (which must outlive it).
inline bio_ptr memory_bio(std::string_view pem) {
  return bio_ptr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

}  // namespace opendsr::openssl::detail
