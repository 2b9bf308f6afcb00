// The HTTP client seam: sends one request to an absolute URL and reports the response or a
// transport error. The engine's dispatchers (callbacks, later partner forwards) deliver through
// it; the adapter in adapters/asio/ implements it on Boost.Beast with OpenSSL TLS, and an
// embedder may supply their own (a service mesh egress, a test double).
//
// Contract
// - send() starts one exchange and returns at once; `done` is called exactly once with the
//   response or an error, on a thread of the client (never inside send()), unless the client is
//   destroyed first, in which case it is called with errc::network_error ("client stopped")
//   before the destructor returns.
// - A response is any complete HTTP response, whatever its status: a 3xx is returned as it is
//   and never followed.
// - Errors: errc::destination_refused (the URL or an address its host resolves to is refused by
//   the client's outbound_policy; nothing was sent), errc::network_error (resolution, connection,
//   TLS, timeout, a malformed or oversized response), errc::invalid_argument (not an absolute
//   http(s) URL). The message says which, and never contains the request body.
// - Whether anything reached the server when an error is reported is unknown: a caller that
//   retries must tolerate the server receiving the request twice.
//
// Thread safety: send() may be called from any thread concurrently.
// Ownership: the caller owns the client; every `done` has been called when the destructor
// returns.
#pragma once

#include <opendsr/http.hpp>
#include <opendsr/result.hpp>

#include <functional>
#include <string>

namespace opendsr {

struct http_client_request {
  std::string method = "POST";
  std::string url;       // absolute http:// or https:// URL
  http_headers headers;  // the client adds Host, Content-Length and User-Agent when absent
  std::string body;
};

struct http_client_response {
  int status = 0;
  http_headers headers;
  std::string body;
};

using http_client_completion = std::function<void(result<http_client_response>)>;

class http_client {
 public:
  virtual ~http_client() = default;
  http_client() = default;
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  virtual void send(http_client_request request, http_client_completion done) = 0;
};

}  // namespace opendsr
