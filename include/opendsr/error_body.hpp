// The one place that turns an opendsr::error into what an OpenDSR client sees: an HTTP status
// and an error body. docs/protocol.md lists the mapping.
#pragma once

#include <opendsr/error.hpp>

#include <string>
#include <string_view>

namespace opendsr {

// The HTTP status answered for e. Every errc has one: 400, 401, 404, 405, 409, 413, 415, 429
// for what the client can fix or wait out, 500, 503, 507 for the processor's own failures.
int http_status(errc e) noexcept;

// errors[0].domain of the body for e: "Validation" for every 4xx except 401 ("Authentication")
// and 429 ("RateLimit"); "Server" for 5xx.
std::string_view error_domain(errc e) noexcept;

// errors[0].reason of the body for e. Every 400 is "InvalidOperationException", the reason
// mParticle sends for a duplicate subject_request_id and for the identity (mpid) rules; the other
// statuses have a name of the same style ("NotFoundException", "ConflictException", ...).
std::string_view error_reason(errc e) noexcept;

enum class error_body_form {
  // mParticle's form: {"code":400,"message":"...","errors":[{"domain":..,"reason":..,"message":..}]}
  top_level,
  // The OpenDSR specification's form (also go-gdpr's): the same object as {"error":{...}}.
  wrapped,
};

// Renders the error body as compact JSON. "code" is http_status(e.code()); "message" is the
// category message of e.code() ("Invalid data was detected.", "Subject request already
// exists.", ...); errors[0].message is e.message(), the specific sentence, for 4xx. For 5xx it
// is the category message too: the specific message of a server failure (a file path, a storage
// detail) is for the operator's log, not for the client.
// Default: error_body_form::top_level.
std::string error_body(const error& e, error_body_form form = error_body_form::top_level);

}  // namespace opendsr
