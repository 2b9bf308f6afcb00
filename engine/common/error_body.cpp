#include <opendsr/error_body.hpp>

#include "common/json_text.hpp"

namespace opendsr {
namespace {

struct http_mapping {
  int status;
  std::string_view reason;
};

http_mapping mapping(errc e) noexcept {
  switch (e) {
    case errc::invalid_json:
    case errc::invalid_request:
    case errc::duplicate_request_id:
    case errc::group_full:
    case errc::invalid_operation: return {400, "InvalidOperationException"};
    case errc::unauthorized: return {401, "UnauthorizedException"};
    case errc::not_found: return {404, "NotFoundException"};
    case errc::method_not_allowed: return {405, "MethodNotAllowedException"};
    case errc::identity_conflict: return {409, "ConflictException"};
    case errc::payload_too_large: return {413, "PayloadTooLargeException"};
    case errc::unsupported_media_type: return {415, "UnsupportedMediaTypeException"};
    case errc::rate_limited: return {429, "RateLimitExceededException"};
    // A broken precondition reaching the HTTP layer is a bug of the processor, not of the client:
    // client input is checked by the parser and reported as invalid_json or invalid_request.
    case errc::invalid_argument:
    case errc::storage_io:
    case errc::storage_locked:
    case errc::storage_corrupt:
    case errc::internal: return {500, "InternalServerErrorException"};
    // Transient: the same call may succeed later (is_retryable is true for both).
    case errc::storage_conflict:
    case errc::unavailable: return {503, "ServiceUnavailableException"};
    case errc::storage_full: return {507, "InsufficientStorageException"};
    // Outbound failures (callbacks, partners): a route that relays one reports the upstream.
    case errc::network_error:
    case errc::destination_refused: return {502, "BadGatewayException"};
    case errc::gone: return {410, "GoneException"};
  }
  return {500, "InternalServerErrorException"};
}

}  // namespace

int http_status(errc e) noexcept { return mapping(e).status; }

std::string_view error_reason(errc e) noexcept { return mapping(e).reason; }

std::string_view error_domain(errc e) noexcept {
  const int status = http_status(e);
  if (status >= 500) return "Server";
  if (status == 401) return "Authentication";
  if (status == 429) return "RateLimit";
  return "Validation";
}

std::string error_body(const error& e, error_body_form form) {
  const int status = http_status(e.code());
  const std::string summary = e.error_code().message();
  // A message that is not valid UTF-8 would make the body invalid JSON; the summary stands in.
  std::string specific = status >= 500 ? summary : e.message();
  if (!detail::is_valid_utf8(specific)) specific = summary;

  std::string out;
  out.reserve(160 + specific.size());
  if (form == error_body_form::wrapped) out += "{\"error\":";
  out += "{\"code\":";
  out += std::to_string(status);
  out += ",\"message\":";
  detail::append_json_string(out, summary);
  out += ",\"errors\":[{\"domain\":";
  detail::append_json_string(out, error_domain(e.code()));
  out += ",\"reason\":";
  detail::append_json_string(out, error_reason(e.code()));
  out += ",\"message\":";
  detail::append_json_string(out, specific);
  out += "}]}";
  if (form == error_body_form::wrapped) out += '}';
  return out;
}

}  // namespace opendsr
