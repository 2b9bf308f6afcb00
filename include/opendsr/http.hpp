// HTTP messages as plain values, and the two-phase handler interface that lets any HTTP server
// embed the OpenDSR protocol layer.
//
// Nothing here knows about sockets: a server (the Asio/Beast adapter, or the embedder's own)
// parses the wire into an http_request and writes an http_response back.
#pragma once

#include <opendsr/error.hpp>
#include <opendsr/result.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace opendsr {

// True iff a and b are equal ignoring ASCII case (HTTP field names are case-insensitive).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Header fields in the order they were added. Names keep their spelling and compare
// case-insensitively; a name may repeat (add), or be kept unique (set).
class http_headers {
 public:
  using field = std::pair<std::string, std::string>;

  // Returns the value of the first field named `name`, or nullopt if there is none. The view is
  // valid until the headers are next modified.
  std::optional<std::string_view> get(std::string_view name) const {
    auto it = find(name);
    if (it == fields_.end()) return std::nullopt;
    return std::string_view(it->second);
  }

  bool contains(std::string_view name) const { return find(name) != fields_.end(); }

  // Appends a field, keeping any others of the same name.
  void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }

  // Replaces every field named `name` by one field with `value`.
  void set(std::string_view name, std::string value) {
    erase(name);
    fields_.emplace_back(std::string(name), std::move(value));
  }

  // Removes every field named `name`. Returns how many were removed.
  std::size_t erase(std::string_view name) {
    return std::erase_if(fields_, [name](const field& f) { return iequals(f.first, name); });
  }

  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.end(); }

 private:
  std::vector<field>::const_iterator find(std::string_view name) const {
    return std::find_if(fields_.begin(), fields_.end(), [name](const field& f) { return iequals(f.first, name); });
  }

  std::vector<field> fields_;
};

struct http_request {
  std::string method;  // as sent, e.g. "GET"; methods are case-sensitive
  std::string target;  // origin form as sent: path plus optional "?query", e.g. "/v3/requests?group_id=g"
  http_headers headers;
  std::string body;  // the exact body bytes, after any transfer coding was removed
};

// A response body produced while it is sent (a results package): the server reads it in chunks
// and never holds it whole.
//
// Thread safety: one server thread at a time calls it.
// Ownership: the response shares it; the server drops its reference once the body is sent or the
// connection ends.
class http_body_reader {
 public:
  virtual ~http_body_reader() = default;
  http_body_reader() = default;
  http_body_reader(const http_body_reader&) = delete;
  http_body_reader& operator=(const http_body_reader&) = delete;

  // The body's exact size in bytes (sent as Content-Length).
  virtual std::uint64_t size() const noexcept = 0;

  // Reads the next bytes into buffer; returns how many (0 only at the end). The server never asks
  // for more than size() bytes in total. An error, or fewer bytes in total than size(), aborts
  // the connection (the client sees a truncated body, never a wrong one).
  virtual result<std::size_t> read(std::span<char> buffer) = 0;
};

struct http_response {
  int status = 200;
  http_headers headers;  // the server sets Content-Length and Connection itself
  std::string body;
  // When set, the body is read from it (and `body` must be empty). Default: null. (The default
  // initializer also keeps `http_response{status, headers, body}` free of missing-field warnings.)
  std::shared_ptr<http_body_reader> stream = nullptr;
};

// Completes one exchange with its response. Call it exactly once, from any thread.
using http_responder = std::function<void(http_response)>;

// Handles a request whose body has been read. It may call the responder before returning or
// later, from another thread (so that concurrent submissions can be committed together).
using http_body_handler = std::function<void(http_request, http_responder)>;

// What a handler decided once a request's header was read: a response to send without reading
// the body, or the handler to run once the whole body has arrived.
using http_head_decision = std::variant<http_response, http_body_handler>;

// The interface a server calls. Deciding on the header first lets a handler refuse a request
// (unknown route, wrong method, Content-Length over the limit, bad credentials, rate limit,
// wrong Content-Type) before a single byte of its body is read.
//
// Thread safety: on_head() is called concurrently from every thread of the server, and the body
// handlers it returns run on those threads too.
// Ownership: the server does not own the handler; the embedder keeps it alive until the server
// has stopped.
class http_handler {
 public:
  virtual ~http_handler() = default;
  http_handler() = default;
  http_handler(const http_handler&) = delete;
  http_handler& operator=(const http_handler&) = delete;

  // Called when the header of `head` is complete. REQUIRES: head.body is empty.
  // A returned response is sent at once; if the request announced a body, the server then closes
  // the connection after the response instead of reading the body.
  virtual http_head_decision on_head(const http_request& head) = 0;

  // Returns the response for a request the server itself refuses, before or instead of
  // on_head(): errc::invalid_request for a malformed request line, header or body encoding, or a
  // header over the server's limit; errc::payload_too_large for a body over the server's limit;
  // errc::internal if a body handler dropped its responder without calling it. `e.message()`
  // says what happened. After a request it could not read whole, the server closes the
  // connection once this response is sent.
  virtual http_response on_error(const error& e) = 0;
};

// Runs both phases on a request that is already complete, for servers that read the whole body
// before dispatching. Calls `respond` exactly once.
inline void dispatch(http_handler& handler, http_request request, http_responder respond) {
  std::string body = std::exchange(request.body, {});
  auto decision = handler.on_head(request);
  if (auto* early = std::get_if<http_response>(&decision)) {
    respond(std::move(*early));
    return;
  }
  request.body = std::move(body);
  std::get<http_body_handler>(decision)(std::move(request), std::move(respond));
}

}  // namespace opendsr
