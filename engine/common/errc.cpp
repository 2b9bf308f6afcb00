#include <opendsr/errc.hpp>

namespace opendsr {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "opendsr"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_json: return "The request body is not valid JSON.";
      case errc::invalid_request: return "Invalid data was detected.";
      case errc::duplicate_request_id: return "Subject request already exists.";
      case errc::group_full: return "The group already holds the maximum number of requests.";
      case errc::identity_conflict:
        return "There is an in-progress request with the same identities, extensions and type.";
      case errc::not_found: return "The specified subject request id could not be found.";
      case errc::invalid_operation: return "The operation is not allowed in the request's current state.";
      case errc::unauthorized:
        return "The credentials provided in the request are not valid. Check the credentials used to authenticate.";
      case errc::rate_limited: return "Too many requests have been submitted.";
      case errc::unavailable: return "The service cannot take the request now; retry later.";
      case errc::payload_too_large: return "The request body is too large.";
      case errc::unsupported_media_type: return "The Content-Type must be application/json.";
      case errc::method_not_allowed: return "The method is not allowed for this resource.";
      case errc::invalid_argument: return "An argument is invalid.";
      case errc::storage_conflict: return "The storage transaction conflicted with another writer; retry it.";
      case errc::storage_full: return "The storage is full.";
      case errc::storage_locked: return "The storage is locked by another process.";
      case errc::storage_io: return "The storage could not be read or written.";
      case errc::storage_corrupt: return "The stored data is corrupt.";
      case errc::network_error: return "The remote server could not be reached or did not answer properly.";
      case errc::destination_refused: return "The destination is not allowed by the outbound policy.";
      case errc::gone: return "The resource is no longer available.";
      case errc::internal: return "Internal error.";
    }
    return "Unknown opendsr error.";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace opendsr
