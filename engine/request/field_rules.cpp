#include "request/field_rules.hpp"

#include <charconv>
#include <cstdint>

namespace opendsr::detail {
namespace {

constexpr bool is_lower_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

constexpr bool is_hex(char c) noexcept { return is_lower_hex(c) || (c >= 'A' && c <= 'F'); }

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

constexpr char to_lower_ascii(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equals_ignoring_case(std::string_view a, std::string_view lower) noexcept {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (to_lower_ascii(a[i]) != lower[i]) return false;
  return true;
}

// Printable ASCII that RFC 3986 allows anywhere in a URI ('%' is checked separately).
constexpr bool is_uri_char(char c) noexcept {
  if (c <= ' ' || c >= 0x7f) return false;
  switch (c) {
    case '"': case '<': case '>': case '\\': case '^': case '`': case '{': case '|': case '}': return false;
    default: return true;
  }
}

bool is_port(std::string_view s) noexcept {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v <= 65535;
}

}  // namespace

bool is_lowercase_uuid_v4(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? s[i] != '-' : !is_lower_hex(s[i])) return false;
  }
  const char variant = s[19];
  return s[14] == '4' && (variant == '8' || variant == '9' || variant == 'a' || variant == 'b');
}

bool is_canonical_int64(std::string_view s) noexcept {
  const std::size_t first_digit = !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() == first_digit) return false;
  if (s[first_digit] == '0' && (s.size() > first_digit + 1 || first_digit == 1)) return false;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && end == s.data() + s.size();
}

bool is_http_url(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!is_uri_char(s[i])) return false;
    if (s[i] == '%' && (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))) return false;
  }
  const std::size_t scheme_end = s.find("://");
  if (scheme_end == std::string_view::npos) return false;
  const std::string_view scheme = s.substr(0, scheme_end);
  if (!equals_ignoring_case(scheme, "http") && !equals_ignoring_case(scheme, "https")) return false;

  std::string_view authority = s.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (std::size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);

  std::string_view host = authority;
  std::string_view rest;
  if (!authority.empty() && authority[0] == '[') {  // an IP literal: [v6 or vFuture]
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    host = authority.substr(0, close + 1);
    rest = authority.substr(close + 1);
    if (host.find_first_of("[]", 1) != close) return false;
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
    if (host.find_first_of("[]") != std::string_view::npos) return false;
  }
  if (host.empty()) return false;
  if (rest.empty()) return true;
  return rest[0] == ':' && is_port(rest.substr(1));
}

std::size_t count_code_points(std::string_view s) noexcept {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace opendsr::detail
