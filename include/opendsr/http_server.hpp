// An HTTP/1.1 server (Boost.Asio/Beast) that hands requests to an opendsr::http_handler.
//
// Built when the `asio` feature is enabled (library opendsr_asio). The server is plumbing only:
// it parses the wire, enforces transport limits and timeouts, and writes back what the handler
// answers. Every response it sends comes from the handler, so no error is ever HTML.
//
// Life of a connection: read a request header (idle_timeout while waiting for one on a kept-alive
// connection, read_timeout for the first) -> handler.on_head() -> either send its response and
// close if a body was announced, or read the body (read_timeout, at most max_body_bytes; answering
// "Expect: 100-continue" first) -> the body handler -> write its response (write_timeout) ->
// keep alive or close as the client asked. A timeout closes the connection without a response.
//
// Thread safety: stop() and port() may be called from any thread. The handler is called from the
// server's threads concurrently; responders may be called from any thread.
#pragma once

#include <opendsr/http.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace opendsr {

// A server's TLS identity.
struct http_server_tls {
  std::string certificate_pem;  // the leaf first, then its chain
  std::string private_key_pem;  // unencrypted PKCS#8
};

struct http_server_options {
  // The address to listen on (IPv4 or IPv6 literal). Default: loopback only.
  std::string address = "127.0.0.1";
  // The TCP port; 0 picks a free ephemeral port (see http_server::port()). Default: 8080.
  std::uint16_t port = 8080;
  // Threads running the I/O and the handler. Default: 1.
  std::size_t threads = 1;
  // Connections served at once; a connection beyond the limit is closed as soon as it is
  // accepted. Default: 1024.
  std::size_t max_connections = 1024;
  // Largest request line plus header fields. A larger header gets on_error(invalid_request).
  // Default: 16 KiB.
  std::size_t max_header_bytes = 16 * 1024;
  // Largest body the server reads, whatever the handler decided: the backstop for bodies without
  // Content-Length. A larger body gets on_error(payload_too_large). Default: 1 MiB.
  std::size_t max_body_bytes = 1024 * 1024;
  // How long a request (its header, then its body) may take to arrive. Default: 10 s.
  std::chrono::milliseconds read_timeout{10'000};
  // How long a kept-alive connection may wait for its next request. Default: 60 s.
  std::chrono::milliseconds idle_timeout{60'000};
  // How long writing a response may take. Default: 10 s.
  std::chrono::milliseconds write_timeout{10'000};
  // How long stop() lets in-flight requests finish before it closes every connection.
  // Default: 30 s.
  std::chrono::milliseconds drain_timeout{30'000};
  // Serve HTTPS (Botan 2's TLS server with its default policy: TLS 1.2, AEAD cipher suites)
  // instead of plain HTTP; for deployments without a TLS-terminating proxy. Needs the adapter
  // built with Botan. Default: none (plain HTTP).
  std::optional<http_server_tls> tls = std::nullopt;
};

class http_server {
 public:
  // Binds, listens and starts serving on options.threads threads. Returns errc::invalid_argument
  // for an unusable option or address, or a socket that cannot be bound (port in use,
  // permission), with the system's explanation.
  // REQUIRES: `handler` outlives the server, and calls or drops every responder it is given
  // (stop() waits for that).
  static result<std::unique_ptr<http_server>> start(http_handler& handler, const http_server_options& options);

  // Stops gracefully: stops accepting, closes connections waiting for a request, and lets
  // requests in progress finish (their responses are written, with Connection: close). After
  // drain_timeout it closes the remaining connections; requests still with the handler then end
  // when it responds, their responses unsent. Returns once every connection has ended and the
  // threads have been joined. Idempotent.
  // REQUIRES: not called from one of the server's threads.
  void stop();

  // The port the server listens on (the chosen one if options.port was 0).
  std::uint16_t port() const noexcept;

  // Connections open now.
  std::size_t connections() const noexcept;

  ~http_server();  // stop()
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  class impl;

 private:
  explicit http_server(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

}  // namespace opendsr
