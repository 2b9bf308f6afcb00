// The http_client on Boost.Asio/Beast, with TLS through Asio's OpenSSL stream. Built with the
// `asio` feature (library opendsr_asio); https needs OpenSSL (the `openssl` feature).
//
// What it does for every exchange: parse the URL and check it against the outbound policy;
// resolve the host and check every address it resolves to, then connect only to an address that
// passed (no second lookup); for https, verify the peer's chain against the trust anchors, its
// name (SNI sent, hostname or IP checked against the certificate), TLS 1.2 or later; write the
// request; read at most max_response_bytes of response; never follow a redirect. Connections are
// kept alive and reused per origin (scheme, host, port), and at most max_connections_per_origin
// exchanges run at once per origin: the rest wait in order. A request written to a kept-alive
// connection that the server had closed meanwhile is sent once more on a new connection.
//
// Built without OpenSSL, an https URL fails with errc::network_error ("built without TLS") and
// the TLS options are ignored.
//
// Error messages name the step that failed ("could not resolve the destination host", "could
// not connect to the destination: Connection refused", "TLS handshake with the destination
// failed: certificate verify failed: hostname mismatch", "the exchange with the destination timed
// out", "the response is larger than max_response_bytes", "the response is malformed"), never
// the URL's host or the request or response body.
#pragma once

#include <opendsr/http_client.hpp>
#include <opendsr/outbound_policy.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace opendsr {

struct asio_http_client_options {
  // Which schemes and address classes may be reached. Default: https to public addresses only.
  outbound_policy policy;
  // Time to establish the TCP connection (all resolved addresses). Default: 5 s.
  std::chrono::milliseconds connect_timeout{5'000};
  // Time for the whole exchange, from send() to the last byte of the response (waiting for a
  // slot, resolving, connecting and the TLS handshake included). Default: 10 s.
  std::chrono::milliseconds total_timeout{10'000};
  // The largest response (status line, header and body) read; larger is errc::network_error.
  // Default: 64 KiB.
  std::size_t max_response_bytes = 64 * 1024;
  // Exchanges in flight at once per origin; the rest queue. REQUIRES: >= 1. Default: 8.
  std::size_t max_connections_per_origin = 8;
  // How long an idle kept-alive connection stays open for reuse. Default: 30 s.
  std::chrono::milliseconds idle_timeout{30'000};
  // Threads running the client's I/O and the completions. REQUIRES: >= 1. Default: 1.
  // (Each connection runs on its own strand, so any number of exchanges proceed at once.)
  std::size_t threads = 1;
  // Trust anchors for https: the system's store (OpenSSL's default paths) when true, plus the
  // certificates of ca_file (PEM) when it is not empty. Default: the system store only.
  bool use_system_trust = true;
  std::string ca_file;
  // Sent as User-Agent when the request has none. Default: "opendsr".
  std::string user_agent = "opendsr";
  // Resolves a host name to addresses. Default (empty): the system resolver. Tests and embedders
  // with their own DNS set it; whatever it returns is checked against the policy like any answer.
  // An errc::destination_refused it returns (a host the embedder never delivers to) is reported
  // as it is; any other error is a network_error.
  std::function<result<std::vector<ip_address>>(const std::string& host)> resolve;
};

// Errors: errc::invalid_argument naming an option that breaks its REQUIRES (or a timeout that is
// not positive), or a ca_file that cannot be read or holds no certificate.
result<std::unique_ptr<http_client>> make_asio_http_client(asio_http_client_options options = {});

}  // namespace opendsr
