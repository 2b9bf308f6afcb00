// The outbound policy: strict address and URL parsing, address classes, and the checks.
//
// Strictness is the point: a parser that accepts what the system resolver reads differently
// (127.1, 0x7f000001, 010.0.0.1) lets a URL name one address to the check and another to the
// socket. So the literal forms accepted here are exactly RFC 791's dotted quad in decimal and
// RFC 4291's IPv6 text, and a host that merely looks numeric is refused instead of guessed at.
#include <opendsr/outbound_policy.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace opendsr {
namespace {

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char to_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals_ascii(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  return true;
}

// Four decimal parts 0-255 separated by dots; a part has no leading zero unless it is "0".
std::optional<std::array<std::uint8_t, 4>> parse_ipv4(std::string_view text) noexcept {
  std::array<std::uint8_t, 4> out{};
  std::size_t part = 0;
  std::size_t i = 0;
  while (true) {
    const std::size_t start = i;
    unsigned value = 0;
    while (i < text.size() && is_digit(text[i]) && i - start < 3) value = value * 10 + static_cast<unsigned>(text[i++] - '0');
    const std::size_t digits = i - start;
    if (digits == 0 || value > 255 || (digits > 1 && text[start] == '0')) return std::nullopt;
    out[part++] = static_cast<std::uint8_t>(value);
    if (part == 4) break;
    if (i >= text.size() || text[i] != '.') return std::nullopt;
    ++i;
  }
  if (i != text.size()) return std::nullopt;
  return out;
}

// Parses `text` (a run of ':'-separated groups, possibly empty) into 16-bit groups appended to
// `groups`. The last piece may be a dotted quad iff `ipv4_tail_allowed`. False if malformed.
bool parse_groups(std::string_view text, bool ipv4_tail_allowed, std::uint16_t* groups, std::size_t& count) noexcept {
  if (text.empty()) return true;
  std::size_t pos = 0;
  while (true) {
    const std::size_t colon = text.find(':', pos);
    const std::string_view piece = text.substr(pos, colon == std::string_view::npos ? std::string_view::npos : colon - pos);
    const bool last = colon == std::string_view::npos;
    if (last && ipv4_tail_allowed && piece.find('.') != std::string_view::npos) {
      auto v4 = parse_ipv4(piece);
      if (!v4 || count + 2 > 8) return false;
      groups[count++] = static_cast<std::uint16_t>((*v4)[0] << 8 | (*v4)[1]);
      groups[count++] = static_cast<std::uint16_t>((*v4)[2] << 8 | (*v4)[3]);
      return true;
    }
    if (piece.empty() || piece.size() > 4 || count >= 8) return false;
    unsigned value = 0;
    for (char c : piece) {
      const int h = hex_value(c);
      if (h < 0) return false;
      value = value << 4 | static_cast<unsigned>(h);
    }
    groups[count++] = static_cast<std::uint16_t>(value);
    if (last) return true;
    pos = colon + 1;
  }
}

std::optional<ip_address> parse_ipv6(std::string_view text) noexcept {
  if (text.empty()) return std::nullopt;
  std::uint16_t head[8]{}, tail[8]{};
  std::size_t head_count = 0, tail_count = 0;
  const std::size_t gap = text.find("::");
  if (gap == std::string_view::npos) {
    if (!parse_groups(text, true, head, head_count) || head_count != 8) return std::nullopt;
  } else {
    if (text.find("::", gap + 1) != std::string_view::npos) return std::nullopt;  // at most one "::"
    if (!parse_groups(text.substr(0, gap), false, head, head_count)) return std::nullopt;
    if (!parse_groups(text.substr(gap + 2), true, tail, tail_count)) return std::nullopt;
    if (head_count + tail_count > 7) return std::nullopt;  // "::" stands for at least one group
  }
  ip_address a;
  a.v6 = true;
  for (std::size_t i = 0; i < head_count; ++i) {
    a.bytes[2 * i] = static_cast<std::uint8_t>(head[i] >> 8);
    a.bytes[2 * i + 1] = static_cast<std::uint8_t>(head[i]);
  }
  for (std::size_t i = 0; i < tail_count; ++i) {
    const std::size_t at = 8 - tail_count + i;
    a.bytes[2 * at] = static_cast<std::uint8_t>(tail[i] >> 8);
    a.bytes[2 * at + 1] = static_cast<std::uint8_t>(tail[i]);
  }
  return a;
}

address_class classify_v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept {
  // Metadata first: these sit inside link_local and shared_cgnat.
  if ((a == 169 && b == 254 && c == 169 && d == 254) || (a == 169 && b == 254 && c == 170 && d == 2) ||
      (a == 100 && b == 100 && c == 100 && d == 200))
    return address_class::metadata;
  if (a == 0) return address_class::unspecified;
  if (a == 127) return address_class::loopback;
  if (a == 10 || (a == 172 && (b & 0xF0) == 16) || (a == 192 && b == 168)) return address_class::private_use;
  if (a == 169 && b == 254) return address_class::link_local;
  if (a == 100 && (b & 0xC0) == 64) return address_class::shared_cgnat;
  if ((a & 0xF0) == 224) return address_class::multicast;
  if ((a & 0xF0) == 240) return address_class::reserved;  // includes 255.255.255.255
  if ((a == 192 && b == 0 && (c == 0 || c == 2)) || (a == 198 && (b & 0xFE) == 18) ||
      (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113))
    return address_class::reserved;
  return address_class::public_unicast;
}

bool all_zero(const ip_address& a, std::size_t from, std::size_t to) noexcept {
  for (std::size_t i = from; i < to; ++i)
    if (a.bytes[i] != 0) return false;
  return true;
}

// A host that ends in a number (WHATWG URL's "ends in a number"): its last label is all decimal
// digits or "0x" plus hex digits. Resolvers read such hosts as IPv4 in forms other than the
// dotted quad (2130706433, 0x7f000001, 127.1, 0177.0.0.1).
bool ends_in_number(std::string_view host) noexcept {
  const std::size_t dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
    for (char c : last.substr(2))
      if (hex_value(c) < 0) return false;
    return true;
  }
  for (char c : last)
    if (!is_digit(c)) return false;
  return true;
}

bool is_host_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.' || c == '_';
}

error invalid_url(std::string_view what) { return error(errc::invalid_argument, "the URL " + std::string(what)); }

error refused_class(address_class c) {
  std::string_view what;
  switch (c) {
    case address_class::public_unicast: what = "a public address"; break;
    case address_class::loopback: what = "a loopback address"; break;
    case address_class::private_use: what = "a private-use address"; break;
    case address_class::link_local: what = "a link-local address"; break;
    case address_class::shared_cgnat: what = "a shared (CGNAT) address"; break;
    case address_class::metadata: what = "a cloud metadata service address"; break;
    case address_class::multicast: what = "a multicast address"; break;
    case address_class::unspecified: what = "an unspecified address"; break;
    case address_class::reserved: what = "a reserved address"; break;
  }
  return error(errc::destination_refused,
               "the destination is " + std::string(what) + " (not allowed by the outbound policy)");
}

}  // namespace

std::string_view to_string(address_class c) noexcept {
  switch (c) {
    case address_class::public_unicast: return "public";
    case address_class::loopback: return "loopback";
    case address_class::private_use: return "private";
    case address_class::link_local: return "link-local";
    case address_class::shared_cgnat: return "cgnat";
    case address_class::metadata: return "metadata";
    case address_class::multicast: return "multicast";
    case address_class::unspecified: return "unspecified";
    case address_class::reserved: return "reserved";
  }
  return "unknown";
}

std::optional<ip_address> parse_ip_address(std::string_view text) noexcept {
  if (text.find(':') != std::string_view::npos) return parse_ipv6(text);
  auto v4 = parse_ipv4(text);
  if (!v4) return std::nullopt;
  ip_address a;
  for (std::size_t i = 0; i < 4; ++i) a.bytes[i] = (*v4)[i];
  return a;
}

address_class classify(const ip_address& a) noexcept {
  const auto& b = a.bytes;
  if (!a.v6) return classify_v4(b[0], b[1], b[2], b[3]);

  if (all_zero(a, 0, 10)) {
    if (b[10] == 0xFF && b[11] == 0xFF) return classify_v4(b[12], b[13], b[14], b[15]);  // ::ffff:0:0/96
    if (b[10] == 0 && b[11] == 0) {                                                       // ::/96
      if (all_zero(a, 12, 16)) return address_class::unspecified;
      if (all_zero(a, 12, 15) && b[15] == 1) return address_class::loopback;
      return address_class::reserved;  // deprecated IPv4-compatible addresses
    }
  }
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B) {
    if (all_zero(a, 4, 12)) return classify_v4(b[12], b[13], b[14], b[15]);  // NAT64 64:ff9b::/96
    if (b[4] == 0x00 && b[5] == 0x01) return address_class::reserved;         // 64:ff9b:1::/48
  }
  // fd00:ec2::254 (AWS instance metadata over IPv6).
  if (b[0] == 0xFD && b[1] == 0x00 && b[2] == 0x0E && b[3] == 0xC2 && all_zero(a, 4, 14) && b[14] == 0x02 &&
      b[15] == 0x54)
    return address_class::metadata;
  if ((b[0] & 0xFE) == 0xFC) return address_class::private_use;                 // fc00::/7
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return address_class::link_local;  // fe80::/10
  if (b[0] == 0xFF) return address_class::multicast;                            // ff00::/8
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) return address_class::reserved;  // 2001:db8::/32
  return address_class::public_unicast;
}

result<url_parts> parse_url(std::string_view url) {
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return invalid_url("contains a space or a control character");
    if (u >= 0x80) return invalid_url("contains a non-ASCII character (percent-encode it, or use punycode for a host)");
  }
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return invalid_url("is not absolute (scheme://host/...)");
  url_parts parts;
  const std::string_view scheme = url.substr(0, scheme_end);
  if (iequals_ascii(scheme, "https"))
    parts.https = true;
  else if (!iequals_ascii(scheme, "http"))
    return invalid_url("does not use http or https");

  std::string_view rest = url.substr(scheme_end + 3);
  const std::size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);

  if (authority.find('@') != std::string_view::npos) return invalid_url("has userinfo (user@host), which is not allowed");

  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalid_url("has an unterminated IPv6 host (missing ']')");
    host = authority.substr(1, close - 1);
    auto a = parse_ip_address(host);
    if (host.empty() || !a || !a->v6) return invalid_url("has a bracketed host that is not an IPv6 address");
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid_url("has characters after its IPv6 host");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    if (host.empty()) return invalid_url("has no host");
    for (char c : host)
      if (!is_host_char(c)) return invalid_url("has a host with a character not allowed in a host name");
    // Labels are not empty; one trailing dot (the root) is allowed.
    const std::string_view labels = host.back() == '.' ? host.substr(0, host.size() - 1) : host;
    if (labels.empty() || labels.front() == '.' || labels.back() == '.' || labels.find("..") != std::string_view::npos)
      return invalid_url("has a host with an empty label");
  }
  if (host.empty()) return invalid_url("has no host");

  if (has_port) {
    unsigned value = 0;
    bool ok = !port_text.empty() && port_text.size() <= 5;
    for (char c : port_text) {
      if (!is_digit(c)) {
        ok = false;
        break;
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (!ok || value < 1 || value > 65535) return invalid_url("has a port that is not a number from 1 to 65535");
    parts.port = static_cast<std::uint16_t>(value);
  } else {
    parts.port = parts.https ? 443 : 80;
  }

  parts.host.reserve(host.size());
  for (char c : host) parts.host += to_lower(c);

  const std::size_t fragment = rest.find('#');
  std::string_view target = rest.substr(0, fragment);
  if (target.empty() || target.front() != '/') parts.target = "/";
  parts.target += target;
  return parts;
}

bool outbound_policy::allows(address_class c) const noexcept {
  switch (c) {
    case address_class::public_unicast: return allow_public;
    case address_class::loopback: return allow_loopback;
    case address_class::private_use:
    case address_class::link_local:
    case address_class::shared_cgnat: return allow_private;
    case address_class::metadata: return allow_metadata;
    case address_class::multicast:
    case address_class::unspecified:
    case address_class::reserved: return false;
  }
  return false;
}

result<url_parts> check_url(const outbound_policy& policy, std::string_view url) {
  auto parts = parse_url(url);
  if (!parts) return parts;
  if (!parts->https && !policy.allow_http)
    return error(errc::destination_refused, "the destination uses http, and the outbound policy allows https only");

  if (auto a = parse_ip_address(parts->host)) {
    OPENDSR_TRY(check_address(policy, *a));
    return parts;
  }
  std::string_view name = parts->host;
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);  // the root label: "localhost."
  if (parse_ip_address(name)) {
    // "127.0.0.1." is the dotted quad plus the root label; judge it as the address.
    OPENDSR_TRY(check_address(policy, *parse_ip_address(name)));
    return parts;
  }
  if (ends_in_number(name))
    return error(errc::destination_refused,
                 "the destination host is a number that is not a dotted-quad IPv4 address (an ambiguous address form, "
                 "such as a single integer, hex or octal parts, or fewer than four parts), which the outbound policy "
                 "refuses");
  if (name == "localhost" || name.ends_with(".localhost")) {
    if (!policy.allows(address_class::loopback)) return refused_class(address_class::loopback);
  }
  return parts;
}

result<void> check_address(const outbound_policy& policy, const ip_address& a) {
  const address_class c = classify(a);
  if (!policy.allows(c)) return refused_class(c);
  return {};
}

}  // namespace opendsr
