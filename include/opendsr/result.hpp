// opendsr::result<T>: a T or an opendsr::error. No exceptions cross the public API; every
// fallible operation returns one of these, and expected outcomes (duplicate, conflict, not
// found) are error values, not exceptions.
#pragma once

#include <opendsr/error.hpp>

#include <cassert>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

namespace opendsr {

template <class T>
class [[nodiscard]] result {
  static_assert(!std::is_reference_v<T>, "result<T&> is not supported");

 public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  result(opendsr::error e) : v_(std::in_place_index<1>, std::move(e)) {}
  result(errc code) : v_(std::in_place_index<1>, opendsr::error(code)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  // REQUIRES: has_value(). Calling these on an error aborts the process.
  T& value() & { check(); return *std::get_if<0>(&v_); }
  const T& value() const& { check(); return *std::get_if<0>(&v_); }
  T&& value() && { check(); return std::move(*std::get_if<0>(&v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // REQUIRES: !has_value().
  const opendsr::error& error() const& {
    assert(!has_value());
    return *std::get_if<1>(&v_);
  }
  opendsr::error&& error() && {
    assert(!has_value());
    return std::move(*std::get_if<1>(&v_));
  }

 private:
  void check() const {
    if (!has_value()) std::abort();
  }
  std::variant<T, opendsr::error> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(opendsr::error e) : e_(std::move(e)), ok_(false) {}
  result(errc code) : e_(code), ok_(false) {}

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) std::abort();
  }

  // REQUIRES: !has_value().
  const opendsr::error& error() const& {
    assert(!ok_);
    return e_;
  }
  opendsr::error&& error() && {
    assert(!ok_);
    return std::move(e_);
  }

 private:
  opendsr::error e_{errc::internal};
  bool ok_ = true;
};

}  // namespace opendsr

// Propagates the error of a result expression, or binds nothing. For use inside functions that
// return a result<U>. Example: OPENDSR_TRY(txn->put(k, v));
#define OPENDSR_TRY(expr)                                   \
  do {                                                      \
    if (auto opendsr_try_r_ = (expr); !opendsr_try_r_)      \
      return std::move(opendsr_try_r_).error();             \
  } while (0)
