// The controller side of signed callbacks, on OpenSSL 3: the processor's chain is checked once in
// make(), and verify() needs only the cached leaf key and validity window. OpenSSL reports
// failures on a per-thread error queue; every call that can fail is checked here, and the queue
// is emptied before returning so that it never leaks into the caller's next OpenSSL call.
#include <opendsr/callback_verifier.hpp>
#include <opendsr/error_body.hpp>

#include "handles.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>
#include <mutex>
#include <utility>

namespace opendsr {
namespace {

using namespace openssl::detail;

constexpr std::string_view domain_header = "X-OpenDSR-Processor-Domain";
constexpr std::string_view signature_header = "X-OpenDSR-Signature";
// RSA-16384 gives 2,732 base64 characters; anything longer is not a signature.
constexpr std::size_t max_signature_chars = 4096;

error refused(std::string message) {
  ERR_clear_error();
  return error(errc::unauthorized, std::move(message));
}

// Every certificate in `pem`, in order. An empty vector if it holds none; nullopt-like error if
// a certificate block does not parse.
result<std::vector<x509_ptr>> read_certificates(std::string_view pem, std::string_view what) {
  ERR_clear_error();
  bio_ptr source = memory_bio(pem);
  if (!source) return openssl_error(errc::internal, "out of memory");
  std::vector<x509_ptr> certificates;
  while (X509* c = PEM_read_bio_X509(source.get(), nullptr, nullptr, nullptr)) certificates.emplace_back(c);
  const unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();  // the normal end: no further certificate
  } else if (last != 0) {
    return openssl_error(errc::invalid_argument, std::string(what) + " does not parse");
  }
  if (certificates.empty()) return error(errc::invalid_argument, std::string(what) + " holds no certificate");
  return certificates;
}

timestamp to_timestamp(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return timestamp{};
  const std::chrono::year_month_day day{std::chrono::year(tm.tm_year + 1900), std::chrono::month(static_cast<unsigned>(tm.tm_mon + 1)),
                                        std::chrono::day(static_cast<unsigned>(tm.tm_mday))};
  return std::chrono::sys_days(day) + std::chrono::hours(tm.tm_hour) + std::chrono::minutes(tm.tm_min) +
         std::chrono::seconds(tm.tm_sec);
}

std::time_t to_time_t(timestamp t) {
  return static_cast<std::time_t>(std::chrono::floor<std::chrono::seconds>(t).time_since_epoch().count());
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// True iff s looks like a DNS host name: letters, digits, '-', '.', at most 253 characters.
bool is_host_name(std::string_view s) {
  return !s.empty() && s.size() <= 253 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Decodes one line of standard padded base64; nullopt for anything else (whitespace, line
// breaks, the URL-safe alphabet, missing or misplaced padding).
std::optional<std::vector<unsigned char>> decode_base64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > max_signature_chars) return std::nullopt;
  std::size_t padding = 0;
  if (text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < text.size() - padding; ++i)
    if (!is_base64_char(text[i])) return std::nullopt;
  std::vector<unsigned char> out(text.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - padding);
  return out;
}

// A verification context initialised for the key, and one to verify in: copying the first into
// the second is cheaper than initialising (which looks the algorithms up), and leaves the first
// ready for the next callback. Used by one thread at a time.
struct verifying_context {
  md_ctx_ptr initialised;
  md_ctx_ptr working;
};

// The one value of a header that must not repeat, or an error naming it.
result<std::optional<std::string_view>> single_header(const http_headers& headers, std::string_view name) {
  std::optional<std::string_view> value;
  for (const auto& [field, v] : headers) {
    if (!iequals(field, name)) continue;
    if (value) return refused(std::string(name) + " sent more than once");
    value = v;
  }
  return value;
}

}  // namespace

class callback_verifier::impl {
 public:
  impl(std::vector<std::string> domains, pkey_ptr key, timestamp not_before, timestamp not_after, const clock& clock)
      : domains_(std::move(domains)), key_(std::move(key)), not_before_(not_before), not_after_(not_after), clock_(clock) {}

  // Returns the decoded signature iff the headers pass every check that needs no body.
  result<std::vector<unsigned char>> check_headers(std::optional<std::string_view> domain,
                                                   std::optional<std::string_view> signature) const {
    if (!domain) return refused("missing " + std::string(domain_header));
    if (std::find(domains_.begin(), domains_.end(), lower(*domain)) == domains_.end())
      return refused(is_host_name(*domain) ? "processor domain not allowed: " + std::string(*domain) : "processor domain not allowed");
    if (!signature) return refused("missing " + std::string(signature_header));
    auto bytes = decode_base64(*signature);
    if (!bytes) return refused(std::string(signature_header) + " is not one line of standard base64");
    const timestamp now = clock_.now();
    if (now >= not_after_) return refused("certificate expired");
    if (now < not_before_) return refused("certificate not yet valid");
    return std::move(*bytes);
  }

  result<void> verify(std::optional<std::string_view> domain, std::optional<std::string_view> signature,
                      std::string_view body) const {
    auto bytes = check_headers(domain, signature);
    if (!bytes) return std::move(bytes).error();
    auto context = acquire();
    if (!context) return std::move(context).error();
    const int verdict =
        EVP_MD_CTX_copy_ex((*context)->working.get(), (*context)->initialised.get()) == 1
            ? EVP_DigestVerify((*context)->working.get(), bytes->data(), bytes->size(),
                               reinterpret_cast<const unsigned char*>(body.data()), body.size())
            : -1;
    release(std::move(*context));
    if (verdict != 1) return refused("signature does not verify");
    return {};
  }

  const std::vector<std::string>& domains() const noexcept { return domains_; }
  timestamp not_after() const noexcept { return not_after_; }

 private:
  // The pool grows to the number of threads that ever verify at once, and no further.
  result<std::unique_ptr<verifying_context>> acquire() const {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto context = std::move(idle_.back());
        idle_.pop_back();
        return context;
      }
    }
    auto context = std::make_unique<verifying_context>(verifying_context{md_ctx_ptr(EVP_MD_CTX_new()), md_ctx_ptr(EVP_MD_CTX_new())});
    EVP_PKEY_CTX* key_context = nullptr;
    if (!context->initialised || !context->working ||
        EVP_DigestVerifyInit(context->initialised.get(), &key_context, EVP_sha256(), nullptr, key_.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PADDING) <= 0)  // never PSS
      return openssl_error(errc::internal, "the verifying context cannot be made");
    return context;
  }

  void release(std::unique_ptr<verifying_context> context) const {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(context));
  }

  std::vector<std::string> domains_;  // lower-cased
  pkey_ptr key_;                      // read-only after construction: OpenSSL 3 keys verify from many threads
  timestamp not_before_;              // the latest notBefore of the verified chain
  timestamp not_after_;               // its earliest notAfter
  const clock& clock_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<verifying_context>> idle_;
};

result<callback_verifier> callback_verifier::make(const callback_verifier_options& options, const clock& clock) {
  if (options.allowed_domains.empty()) return error(errc::invalid_argument, "no allowed processor domain");
  std::vector<std::string> domains;
  for (const std::string& d : options.allowed_domains) {
    if (!is_host_name(d)) return error(errc::invalid_argument, "allowed processor domain \"" + d + "\" is not a host name");
    domains.push_back(lower(d));
  }
  if (!options.use_system_trust && options.ca_pem.empty())
    return error(errc::invalid_argument, "no trust anchor: use the system store or give CA certificates");

  auto chain = read_certificates(options.certificate_chain_pem, "the certificate chain");
  if (!chain) return std::move(chain).error();
  x509_stack_ptr untrusted(sk_X509_new_null());
  if (!untrusted) return openssl_error(errc::internal, "out of memory");
  for (std::size_t i = 1; i < chain->size(); ++i)
    if (sk_X509_push(untrusted.get(), (*chain)[i].get()) <= 0 || X509_up_ref((*chain)[i].get()) != 1)
      return openssl_error(errc::internal, "out of memory");

  store_ptr store(X509_STORE_new());
  if (!store) return openssl_error(errc::internal, "out of memory");
  if (options.use_system_trust && X509_STORE_set_default_paths(store.get()) != 1)
    return openssl_error(errc::invalid_argument, "the system trust store does not load");
  if (!options.ca_pem.empty()) {
    auto anchors = read_certificates(options.ca_pem, "the CA certificates");
    if (!anchors) return std::move(anchors).error();
    for (const auto& a : *anchors)
      if (X509_STORE_add_cert(store.get(), a.get()) != 1) return openssl_error(errc::internal, "a CA certificate cannot be added");
  }

  X509* leaf = chain->front().get();
  store_ctx_ptr context(X509_STORE_CTX_new());
  if (!context || X509_STORE_CTX_init(context.get(), store.get(), leaf, untrusted.get()) != 1)
    return openssl_error(errc::internal, "the verification context cannot be made");
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context.get()), to_time_t(clock.now()));
  if (X509_verify_cert(context.get()) != 1) {
    const int reason = X509_STORE_CTX_get_error(context.get());
    const std::string which = X509_STORE_CTX_get_error_depth(context.get()) > 0 ? " (a CA certificate of the chain)" : "";
    if (reason == X509_V_ERR_CERT_HAS_EXPIRED) return refused("certificate expired" + which);
    if (reason == X509_V_ERR_CERT_NOT_YET_VALID) return refused("certificate not yet valid" + which);
    return refused(std::string("certificate not trusted: ") + X509_verify_cert_error_string(reason));
  }
  // The validity window of the verified chain, anchor included, for verify()'s expiry check.
  timestamp not_before = timestamp::min(), not_after = timestamp::max();
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(context.get());
  for (int i = 0; i < sk_X509_num(verified); ++i) {
    const X509* c = sk_X509_value(verified, i);
    not_before = std::max(not_before, to_timestamp(X509_get0_notBefore(c)));
    not_after = std::min(not_after, to_timestamp(X509_get0_notAfter(c)));
  }

  const EVP_PKEY* certified = X509_get0_pubkey(leaf);
  if (!certified) return openssl_error(errc::unauthorized, "certificate key does not load");
  if (EVP_PKEY_get_base_id(certified) != EVP_PKEY_RSA) return refused("certificate key is not RSA");
  for (const std::string& d : domains)
    if (X509_check_host(leaf, d.data(), d.size(), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                        nullptr) != 1)
      return refused("certificate not issued to " + d);

  EVP_PKEY* key = X509_get_pubkey(leaf);  // a counted reference, kept after the chain is freed
  if (!key) return openssl_error(errc::unauthorized, "certificate key does not load");
  ERR_clear_error();
  return callback_verifier(std::make_unique<impl>(std::move(domains), pkey_ptr(key), not_before, not_after, clock));
}

result<void> callback_verifier::verify(std::optional<std::string_view> processor_domain,
                                       std::optional<std::string_view> signature, std::string_view body) const {
  return impl_->verify(processor_domain, signature, body);
}

result<void> callback_verifier::check_headers(const http_request& head) const {
  auto domain = single_header(head.headers, domain_header);
  if (!domain) return std::move(domain).error();
  auto signature = single_header(head.headers, signature_header);
  if (!signature) return std::move(signature).error();
  auto checked = impl_->check_headers(*domain, *signature);
  if (!checked) return std::move(checked).error();
  return {};
}

result<void> callback_verifier::verify(const http_request& request) const {
  auto domain = single_header(request.headers, domain_header);
  if (!domain) return std::move(domain).error();
  auto signature = single_header(request.headers, signature_header);
  if (!signature) return std::move(signature).error();
  return impl_->verify(*domain, *signature, request.body);
}

const std::vector<std::string>& callback_verifier::allowed_domains() const noexcept { return impl_->domains(); }
timestamp callback_verifier::valid_until() const noexcept { return impl_->not_after(); }

callback_verifier::callback_verifier(std::unique_ptr<impl> impl) : impl_(std::move(impl)) {}
callback_verifier::callback_verifier(callback_verifier&&) noexcept = default;
callback_verifier& callback_verifier::operator=(callback_verifier&&) noexcept = default;
callback_verifier::~callback_verifier() = default;

// --- callback_handler ---

callback_handler::callback_handler(const callback_verifier& verifier, callback_handler_options options)
    : verifier_(verifier), options_(std::move(options)) {}

http_response callback_handler::refuse(const error& e, int status) const {
  http_response r{status, {}, error_body(e)};
  r.headers.set("Content-Type", "application/json");
  r.headers.set("Cache-Control", "no-store");
  if (status == 405) r.headers.set("Allow", "POST");
  if (options_.on_refused) options_.on_refused(status, e);
  return r;
}

http_head_decision callback_handler::on_head(const http_request& head) {
  if (head.method != "POST") return refuse(error(errc::method_not_allowed, "callbacks are sent with POST"), 405);
  if (auto length = head.headers.get("Content-Length")) {
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(length->data(), length->data() + length->size(), n);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && end == length->data() + length->size() && n > options_.max_body_bytes))
      return refuse(error(errc::payload_too_large, "the callback body is over " + std::to_string(options_.max_body_bytes) + " bytes"), 413);
  }
  if (auto ok = verifier_.check_headers(head); !ok) return refuse(ok.error(), 401);
  return http_body_handler([this](http_request request, http_responder respond) {
    if (request.body.size() > options_.max_body_bytes) {
      respond(refuse(error(errc::payload_too_large, "the callback body is over " + std::to_string(options_.max_body_bytes) + " bytes"), 413));
      return;
    }
    if (auto ok = verifier_.verify(request); !ok) {
      respond(refuse(ok.error(), 401));
      return;
    }
    if (options_.on_callback) {
      const verified_callback callback{*request.headers.get(domain_header), request.target, request.body};
      if (auto decided = options_.on_callback(callback); !decided) {
        respond(refuse(decided.error(), http_status(decided.error().code())));
        return;
      }
    }
    http_response accepted{202, {}, "{}"};
    accepted.headers.set("Content-Type", "application/json");
    accepted.headers.set("Cache-Control", "no-store");
    respond(std::move(accepted));
  });
}

http_response callback_handler::on_error(const error& e) { return refuse(e, http_status(e.code())); }

}  // namespace opendsr
