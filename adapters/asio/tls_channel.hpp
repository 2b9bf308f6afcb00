// The TLS state of one server connection, as bytes in and bytes out (Botan 2's TLS::Server,
// which Debian's Botan ships without its Asio stream). http_server.cpp moves the bytes between it
// and the socket; no Botan header is seen there.
#pragma once

#include <opendsr/result.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace Botan::TLS {
class Server;
}  // namespace Botan::TLS

namespace opendsr::detail {

class tls_context;

// Returns the settings every connection of a server shares: its certificate chain and key.
// Returns errc::invalid_argument naming the defect if they do not parse or do not match.
result<std::shared_ptr<const tls_context>> make_tls_context(std::string_view certificate_pem, std::string_view private_key_pem);

// One connection's TLS channel. Used by one thread at a time.
class tls_channel {
 public:
  explicit tls_channel(std::shared_ptr<const tls_context> context);
  ~tls_channel();
  tls_channel(const tls_channel&) = delete;
  tls_channel& operator=(const tls_channel&) = delete;

  // Feeds bytes read from the socket: handshake records queue replies in output(), application
  // data is appended to input(). Returns errc::invalid_request if the peer broke the protocol
  // or sent a fatal alert.
  result<void> received(const char* data, std::size_t size);

  // Encrypts application data into output(). REQUIRES: established().
  result<void> send(const char* data, std::size_t size);

  // Ciphertext waiting to be written to the socket; the caller clears what it wrote.
  std::string& output() noexcept { return output_; }
  // Plaintext received and not yet consumed; the caller erases what it consumed.
  std::string& input() noexcept { return input_; }

  bool established() const noexcept { return established_; }
  // True once the peer sent close_notify: no more input will come.
  bool closed() const noexcept { return closed_; }

 private:
  class callbacks;
  std::shared_ptr<const tls_context> context_;
  std::string output_;
  std::string input_;
  bool established_ = false;
  bool closed_ = false;
  std::unique_ptr<callbacks> callbacks_;
  std::unique_ptr<Botan::TLS::Server> server_;
};

}  // namespace opendsr::detail
