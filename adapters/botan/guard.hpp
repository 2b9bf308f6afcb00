// The adapter edge: Botan reports failures by exception; opendsr by result.
#pragma once

#include <opendsr/result.hpp>

#include <exception>
#include <string>
#include <string_view>

namespace opendsr::detail {

// Returns fn(), or an error of `failure` whose message is `context` plus the exception's
// explanation if fn throws. Botan's messages name the defect, never key material.
template <class F>
auto botan_guard(errc failure, std::string_view context, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return error(failure, std::string(context) + ": " + e.what());
  }
}

}  // namespace opendsr::detail
