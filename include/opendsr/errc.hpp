// opendsr::errc: every way an opendsr operation can fail, as a std::error_code category.
//
// Each value has a message (a test walks them). The translation of a value to an HTTP status and
// an OpenDSR error body lives in one place: <opendsr/error_body.hpp>.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace opendsr {

enum class errc {
  // The body is not strict JSON: syntax, invalid UTF-8, duplicate keys where forbidden, too deep.
  invalid_json = 1,
  // The body is JSON but breaks a rule of the OpenDSR v3 request schema.
  invalid_request,
  // A request with this subject_request_id already exists in the workspace, in any state.
  duplicate_request_id,
  // The group already holds the maximum number of requests (150 by default).
  group_full,
  // A non-terminal request of the same type has the same canonical identity set (HTTP 409).
  identity_conflict,
  // No such request (or group member, or route) in this workspace.
  not_found,
  // The operation is not allowed in the request's current state (cancel after pending).
  invalid_operation,
  // Missing, malformed or wrong credentials.
  unauthorized,
  // A workspace rate limit was exceeded; retry later.
  rate_limited,
  // The processor cannot take the request now (its intake queue is full, or it is shutting
  // down); retry later (HTTP 503).
  unavailable,
  // The body is larger than the configured limit.
  payload_too_large,
  // The Content-Type is not application/json.
  unsupported_media_type,
  // The route exists but not for this method.
  method_not_allowed,
  // An argument broke a documented precondition (an empty storage key, a bad option value).
  invalid_argument,
  // A storage commit lost a race with a concurrent writer: re-run the whole transaction.
  storage_conflict,
  // The store is full and may not grow further.
  storage_full,
  // The store is held by another process.
  storage_locked,
  // The store could not be read or written (I/O error, permissions, missing directory).
  storage_io,
  // The stored bytes do not decode: the store was damaged or written by something else.
  storage_corrupt,
  // An outbound HTTP exchange failed in transport: the name did not resolve, the connection was
  // refused or reset, TLS failed (handshake, certificate chain or name), a timeout expired, or
  // the response was malformed or over the size limit. The message says which.
  network_error,
  // An outbound destination is not allowed by the outbound policy: its scheme, or an address it
  // names or resolves to (loopback, private, link-local, metadata, ...). The message says which.
  destination_refused,
  // The resource existed and is gone for good (an expired results link; HTTP 410).
  gone,
  // A bug: an invariant of opendsr itself was found broken.
  internal,
};

// Returns the category of opendsr::errc values. Its name is "opendsr".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// True iff re-running the same operation later may succeed.
constexpr bool is_retryable(errc e) noexcept {
  return e == errc::storage_conflict || e == errc::rate_limited || e == errc::unavailable;
}

}  // namespace opendsr

template <>
struct std::is_error_code_enum<opendsr::errc> : std::true_type {};
