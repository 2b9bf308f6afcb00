// The byte codec of stored values: varints (LEB128), zigzag signed varints and length-prefixed
// byte strings. Compact, and a reader that reports damage instead of reading past the end.
#pragma once

#include <opendsr/time.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace opendsr::detail {

class byte_writer {
 public:
  explicit byte_writer(std::string& out) : out_(out) {}

  void u8(std::uint8_t v) { out_ += static_cast<char>(v); }
  void varint(std::uint64_t v) {
    for (; v >= 0x80; v >>= 7) out_ += static_cast<char>((v & 0x7F) | 0x80);
    out_ += static_cast<char>(v);
  }
  void signed_varint(std::int64_t v) {
    varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void time(timestamp t) { signed_varint(t.time_since_epoch().count()); }
  void bytes(std::string_view s) {
    varint(s.size());
    out_ += s;
  }
  // Raw bytes whose length the reader knows.
  void fixed(std::string_view s) { out_ += s; }

 private:
  std::string& out_;
};

// Reads what a byte_writer wrote. A read past the end or a malformed varint marks the reader
// failed and returns zero values; check ok() (and at_end()) after the last read.
class byte_reader {
 public:
  explicit byte_reader(std::string_view in) : in_(in) {}

  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return in_.empty(); }

  std::uint8_t u8() {
    if (!need(1)) return 0;
    auto v = static_cast<std::uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return v;
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return 0;
      const auto b = static_cast<std::uint8_t>(in_[0]);
      in_.remove_prefix(1);
      v |= std::uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    ok_ = false;
    return 0;
  }
  std::int64_t signed_varint() {
    const std::uint64_t u = varint();
    return static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1);
  }
  timestamp time() { return timestamp(std::chrono::microseconds(signed_varint())); }
  std::string_view bytes() {
    const std::uint64_t n = varint();
    return fixed(n);
  }
  std::string_view fixed(std::uint64_t n) {
    if (!need(n)) return {};
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(n);
    return s;
  }
  // Everything not read yet.
  std::string_view rest() { return fixed(in_.size()); }

 private:
  bool need(std::uint64_t n) {
    if (ok_ && in_.size() >= n) return true;
    ok_ = false;
    return false;
  }

  std::string_view in_;
  bool ok_ = true;
};

}  // namespace opendsr::detail
