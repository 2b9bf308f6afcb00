// Receiving status callbacks on the controller side: verify that a callback was signed by a
// processor the controller trusts, and an http_handler that answers callbacks that way.
//
// A callback (spec §1.9) is a POST whose body is JSON, with `X-OpenDSR-Processor-Domain: <domain>`
// and `X-OpenDSR-Signature: <base64>`: RSASSA-PKCS1-v1_5 with SHA-256 over the exact body bytes,
// standard base64 with padding on one line (spec §1.8). The processor publishes its certificate
// as a PEM, leaf first, at the URL its discovery names (`processor_certificate`).
//
// What callback_verifier::make() checks once, at the clock's time: the chain parses; the leaf
// chains to a trust anchor (the intermediates come from the same PEM; a self-signed leaf is
// refused unless it is itself a trust anchor); every certificate of the verified chain is within
// its validity; the leaf's key is RSA; and every allowed domain is a DNS name in the leaf's
// subjectAltName (the subject's CN is not consulted, as spec §1.8 asks for the domain in the SAN;
// wildcards match one whole label). Not checked: revocation (no CRL or OCSP is fetched).
// What verify() checks per callback: the domain header is present, single and allowed (domains
// compare ignoring ASCII case; an allowed domain is a name of the certificate, see above); the
// signature header is present, single and one line of standard base64; the chain is still
// within its validity at the clock's time; and the signature verifies as PKCS#1 v1.5 SHA-256
// (never PSS) under the leaf's key over the body as received.
//
// Errors: every refusal of a callback or of the processor's certificate is errc::unauthorized
// with a message naming the reason ("processor domain not allowed", "signature does not verify",
// "certificate expired", "certificate not trusted: ...", "certificate not issued to <domain>",
// "missing X-OpenDSR-Signature", ...). Options that cannot be used (no domain, a PEM that does
// not parse, no trust anchor) are errc::invalid_argument. Messages never contain the body.
//
// Built when the `openssl` feature is enabled (library opendsr_openssl).
// Thread safety: verify() and the handler may be called from any thread concurrently.
// Ownership: the clock given to make() must outlive the verifier; the verifier must outlive any
// callback_handler that uses it.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/http.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

struct callback_verifier_options {
  // The processor domains whose callbacks are accepted, as sent in X-OpenDSR-Processor-Domain
  // (e.g. "opendsr.mparticle.com"). REQUIRES: not empty; each a host name (no wildcard).
  std::vector<std::string> allowed_domains;
  // The processor's certificate chain in PEM, leaf first, then intermediates (roots may follow
  // and are ignored as anchors): what the processor's `processor_certificate` URL serves.
  std::string certificate_chain_pem;
  // Trust anchors: the system's store (OpenSSL's default paths) when true, plus every
  // certificate in ca_pem (the contents of a CA file) when it is not empty. To accept a
  // self-signed test certificate (spec §1.8, test mode), give it as ca_pem.
  // REQUIRES: use_system_trust or a non-empty ca_pem. Default: the system store only.
  bool use_system_trust = true;
  std::string ca_pem;
};

class callback_verifier {
 public:
  // Parses and checks the processor's certificate at clock.now() (see the checks above).
  // Errors: errc::invalid_argument for unusable options; errc::unauthorized if the certificate
  // is refused ("certificate not trusted: <OpenSSL's reason>", "certificate expired",
  // "certificate not yet valid", "certificate not issued to <domain>", "certificate key is not
  // RSA").
  // REQUIRES: `clock` outlives the verifier.
  static result<callback_verifier> make(const callback_verifier_options& options, const clock& clock);

  // Returns success iff the callback is authentic (see the checks above); otherwise
  // errc::unauthorized naming the reason. Absent headers are passed as nullopt.
  result<void> verify(std::optional<std::string_view> processor_domain, std::optional<std::string_view> signature,
                      std::string_view body) const;

  // The same on a received request: reads X-OpenDSR-Processor-Domain and X-OpenDSR-Signature
  // (names case-insensitive; a header sent twice is refused) and the body. The method and
  // target are not checked here (callback_handler checks the method).
  result<void> verify(const http_request& request) const;

  // The checks of verify(request) that need no body (the headers), so that a server can refuse a
  // callback before reading its body. verify() repeats them.
  result<void> check_headers(const http_request& head) const;

  // The allowed domains, lower-cased, in the order given.
  const std::vector<std::string>& allowed_domains() const noexcept;

  // The end of the verified chain's validity (the earliest notAfter): after it every callback is
  // refused with "certificate expired", and the controller should fetch the certificate again.
  timestamp valid_until() const noexcept;

  callback_verifier(callback_verifier&&) noexcept;
  callback_verifier& operator=(callback_verifier&&) noexcept;
  ~callback_verifier();

  class impl;

 private:
  explicit callback_verifier(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

// A callback that verified, as handed to callback_handler_options::on_callback. The views are
// valid only during that call.
struct verified_callback {
  std::string_view processor_domain;  // as sent
  std::string_view target;            // the request target, e.g. "/dsr/callbacks"
  std::string_view body;              // the exact JSON bytes that were signed
};

struct callback_handler_options {
  // Called on a server thread with each callback that verified, before it is answered. Success
  // answers 202 with the body `{}`; an error answers with its HTTP status and error body
  // (error_body.hpp), e.g. errc::invalid_json for a body the controller cannot parse (400).
  // REQUIRES: set.
  std::function<result<void>(const verified_callback&)> on_callback;
  // Called on a server thread with the status and reason of each request that is not answered
  // 202 (401 for a callback that does not verify, 405, 413, on_callback's errors, and what the
  // server itself refuses), e.g. to log it. Default: none.
  std::function<void(int status, const error& reason)> on_refused;
  // The largest body accepted; a larger Content-Length is answered 413 before the body is read.
  // Default: 256 KiB.
  std::size_t max_body_bytes = 256 * 1024;
};

// Answers callbacks (any target): a POST that verifies gets what on_callback decides (202 `{}`
// by default); one that does not gets 401 with an error body naming the reason
// ({"code":401,...,"errors":[{"domain":"Authentication",...,"message":"signature does not
// verify"}]}); any other method gets 405 with `Allow: POST`. Every response has
// Content-Type: application/json and Cache-Control: no-store. Headers are checked before the
// body is read, so a callback without the signature headers is refused unread.
// Thread safety: as http_handler. REQUIRES: `verifier` outlives the handler.
class callback_handler final : public http_handler {
 public:
  callback_handler(const callback_verifier& verifier, callback_handler_options options);

  http_head_decision on_head(const http_request& head) override;
  http_response on_error(const error& e) override;

 private:
  http_response refuse(const error& e, int status) const;

  const callback_verifier& verifier_;
  callback_handler_options options_;
};

}  // namespace opendsr
