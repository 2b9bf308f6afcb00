// opendsr::error: an errc plus the sentence that explains this occurrence of it.
#pragma once

#include <opendsr/errc.hpp>

#include <string>
#include <utility>

namespace opendsr {

// An error value. `message()` is written for the API client or operator: it names the field and
// the rule that failed, and never contains an identity value, a credential or other secret.
class error {
 public:
  error(errc code, std::string message = {}) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  std::error_code error_code() const noexcept { return make_error_code(code_); }

  // The specific message given at construction, or the category's message for code() if none.
  std::string message() const { return message_.empty() ? error_code().message() : message_; }

  friend bool operator==(const error& e, errc c) noexcept { return e.code_ == c; }

 private:
  errc code_;
  std::string message_;
};

}  // namespace opendsr
