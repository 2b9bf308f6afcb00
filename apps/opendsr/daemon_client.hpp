// The client side of a running opendsrd's API, for the opendsr commands that go through it while
// it holds the store (import --url, output ...): the workspace's Basic credentials on every
// exchange, one exchange at a time, 429 and 503 waited out as the daemon asks. Built with the
// openssl feature only (the HTTP client comes with it).
#pragma once

#include <opendsr/http_client.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace opendsr::app {

struct daemon_client_options {
  // Where opendsrd listens ("http://127.0.0.1:8080"; a trailing '/' is ignored). Plain http,
  // loopback and private addresses are allowed: the operator names their own daemon (never
  // cloud metadata addresses).
  std::string url;
  std::string api_key;
  std::string api_secret;  // never printed
  // The time one exchange may take. Default: 30 s.
  std::chrono::milliseconds timeout{30'000};
  // The largest response read. Default: 1 MiB.
  std::size_t max_response_bytes = std::size_t{1} << 20;
};

class daemon_client {
 public:
  // Errors: errc::invalid_argument for a URL that is not http(s)://host[:port], or one the
  // policy refuses ("--url: ..."); the HTTP client's own.
  static result<daemon_client> open(const daemon_client_options& options);

  // Sends `method` {url}{path} (path from the base, e.g. "/v3/outputs") with `body` of
  // `content_type` (no body when empty) and returns the response, whatever its status. A 429 or
  // 503 is sent again after its Retry-After (1 to 60 s), up to 20 attempts.
  result<http_client_response> send(std::string method, std::string_view path, std::string_view content_type = {},
                                    std::string body = {});

  // The error for an answer the command did not expect: 401 says to check --api-key and
  // --api-secret; another status is "opendsrd answered N: " and the message of its OpenDSR
  // error body (the API's error bodies hold no identity value or credential), or the body's
  // start, shortened and without control characters.
  static error refusal(const http_client_response& response);

 private:
  daemon_client(std::unique_ptr<http_client> client, std::string base, std::string authorization)
      : client_(std::move(client)), base_(std::move(base)), authorization_(std::move(authorization)) {}

  std::unique_ptr<http_client> client_;
  std::string base_;           // the URL without a trailing '/'
  std::string authorization_;  // "Basic ..."
};

// Percent-encodes a path segment (an output's name): everything but unreserved characters.
std::string percent_encode_segment(std::string_view segment);

}  // namespace opendsr::app
