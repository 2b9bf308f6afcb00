#include "tls_channel.hpp"

#include <botan/credentials_manager.h>
#include <botan/data_src.h>
#include <botan/pkcs8.h>
#include <botan/system_rng.h>
#include <botan/tls_callbacks.h>
#include <botan/tls_exceptn.h>
#include <botan/tls_policy.h>
#include <botan/tls_server.h>
#include <botan/tls_session_manager.h>
#include <botan/x509cert.h>

#include <cstdint>
#include <exception>
#include <vector>

namespace opendsr::detail {

// The server's chain and key, its policy and its session cache: shared by every connection.
// Botan's session manager locks itself; the rest is read-only.
class tls_context final : public Botan::Credentials_Manager {
 public:
  tls_context(std::vector<Botan::X509_Certificate> chain, std::unique_ptr<Botan::Private_Key> key)
      : chain_(std::move(chain)), key_(std::move(key)), sessions_(Botan::system_rng()) {}

  std::vector<Botan::X509_Certificate> cert_chain(const std::vector<std::string>& key_types, const std::string& type,
                                                  const std::string&) override {
    if (type != "tls-server") return {};
    for (const std::string& k : key_types)
      if (k == key_->algo_name()) return chain_;
    return {};
  }

  Botan::Private_Key* private_key_for(const Botan::X509_Certificate&, const std::string&, const std::string&) override {
    return key_.get();
  }

  // Botan's interfaces take these as non-const; none of them changes what connections share.
  Botan::Credentials_Manager& credentials() const { return const_cast<tls_context&>(*this); }
  Botan::TLS::Session_Manager& sessions() const { return sessions_; }
  const Botan::TLS::Policy& policy() const { return policy_; }

 private:
  std::vector<Botan::X509_Certificate> chain_;
  std::unique_ptr<Botan::Private_Key> key_;
  mutable Botan::TLS::Session_Manager_In_Memory sessions_;
  Botan::TLS::Policy policy_;  // Botan's defaults: TLS 1.2, AEAD suites, no renegotiation
};

result<std::shared_ptr<const tls_context>> make_tls_context(std::string_view certificate_pem, std::string_view private_key_pem) {
  std::vector<Botan::X509_Certificate> chain;
  try {
    Botan::DataSource_Memory source(std::string{certificate_pem});
    while (!source.end_of_data()) {
      chain.emplace_back(source);
      // Skip whitespace between PEM blocks; stop at anything that is not another certificate.
      std::uint8_t c;
      while (source.peek(&c, 1, 0) == 1 && (c == '\n' || c == '\r' || c == ' ')) source.discard_next(1);
    }
  } catch (const std::exception& e) {
    if (chain.empty()) return error(errc::invalid_argument, std::string("TLS certificate does not parse: ") + e.what());
  }
  if (chain.empty()) return error(errc::invalid_argument, "TLS certificate PEM holds no certificate");
  std::unique_ptr<Botan::Private_Key> key;
  try {
    Botan::DataSource_Memory source(std::string{private_key_pem});
    key = Botan::PKCS8::load_key(source);
    if (chain.front().load_subject_public_key()->public_key_bits() != key->public_key_bits())
      return error(errc::invalid_argument, "TLS private key does not match the certificate");
  } catch (const std::exception& e) {
    return error(errc::invalid_argument, std::string("TLS private key does not parse: ") + e.what());
  }
  return std::shared_ptr<const tls_context>(std::make_shared<tls_context>(std::move(chain), std::move(key)));
}

class tls_channel::callbacks final : public Botan::TLS::Callbacks {
 public:
  explicit callbacks(tls_channel& c) : c_(c) {}
  void tls_emit_data(const std::uint8_t data[], std::size_t size) override {
    c_.output_.append(reinterpret_cast<const char*>(data), size);
  }
  void tls_record_received(std::uint64_t, const std::uint8_t data[], std::size_t size) override {
    c_.input_.append(reinterpret_cast<const char*>(data), size);
  }
  void tls_alert(Botan::TLS::Alert alert) override {
    if (alert.type() == Botan::TLS::Alert::CLOSE_NOTIFY || alert.is_fatal()) c_.closed_ = true;
  }
  bool tls_session_established(const Botan::TLS::Session&) override { return true; }  // cache it
  void tls_session_activated() override { c_.established_ = true; }

 private:
  tls_channel& c_;
};

tls_channel::tls_channel(std::shared_ptr<const tls_context> context)
    : context_(std::move(context)),
      callbacks_(std::make_unique<callbacks>(*this)),
      server_(std::make_unique<Botan::TLS::Server>(*callbacks_, context_->sessions(), context_->credentials(),
                                                   context_->policy(), Botan::system_rng())) {}

tls_channel::~tls_channel() = default;

result<void> tls_channel::received(const char* data, std::size_t size) {
  try {
    server_->received_data(reinterpret_cast<const std::uint8_t*>(data), size);
    return {};
  } catch (const std::exception& e) {
    closed_ = true;
    return error(errc::invalid_request, std::string("TLS: ") + e.what());
  }
}

result<void> tls_channel::send(const char* data, std::size_t size) {
  try {
    server_->send(reinterpret_cast<const std::uint8_t*>(data), size);
    return {};
  } catch (const std::exception& e) {
    return error(errc::internal, std::string("TLS: ") + e.what());
  }
}

}  // namespace opendsr::detail
