// Where the processor may send HTTP requests: callback URLs are chosen by controllers (and so by
// anyone holding a workspace's credentials), so a processor that followed them blindly could be
// made to call its own admin ports, a cloud metadata service or a private network (SSRF).
//
// The policy is checked twice: at intake on the URL as written (its scheme, and the host when it
// is an IP literal or a name that is loopback by definition, such as "localhost"), and at
// delivery on every address the host resolves to, after which the client connects only to an
// address that was checked (no second lookup, so a rebinding DNS answer cannot slip through).
//
// Pure functions of their arguments; thread-safe.
#pragma once

#include <opendsr/result.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace opendsr {

// The classes of addresses that are not the public Internet.
enum class address_class : std::uint8_t {
  public_unicast = 0,
  loopback,      // 127.0.0.0/8, ::1
  private_use,   // 10/8, 172.16/12, 192.168/16, fc00::/7 (IPv6 unique local)
  link_local,    // 169.254/16, fe80::/10
  shared_cgnat,  // 100.64/10 (RFC 6598)
  metadata,      // cloud instance metadata: 169.254.169.254, 169.254.170.2, 100.100.100.200,
                 // fd00:ec2::254 (checked before the classes that contain them)
  multicast,     // 224/4, ff00::/8
  unspecified,   // 0.0.0.0/8, ::
  reserved,      // 240/4 and broadcast, 192.0.0/24, 192.0.2/24, 198.18/15, 198.51.100/24,
                 // 203.0.113/24, 2001:db8::/32 (documentation), 64:ff9b:1::/48, ::/96 (v4-compatible)
};

// Names the class as used in configuration and logs: "public", "loopback", "private",
// "link-local", "cgnat", "metadata", "multicast", "unspecified", "reserved".
std::string_view to_string(address_class c) noexcept;

// An IPv4 or IPv6 address in network byte order. IPv4 uses the first 4 bytes.
struct ip_address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};

  friend bool operator==(const ip_address&, const ip_address&) = default;
};

// Parses a dotted-quad IPv4 or an IPv6 literal (RFC 4291 text, without brackets or zone).
// nullopt if `text` is neither. IPv4 is strict: exactly four decimal parts 0-255 without leading
// zeros, so the forms resolvers read differently (127.1, 0x7f000001, 2130706433, 010.0.0.1) are
// not addresses here.
std::optional<ip_address> parse_ip_address(std::string_view text) noexcept;

// The class of an address. IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
// NAT64 64:ff9b::/96) take the class of the embedded address; the rest of ::/96 (deprecated
// IPv4-compatible) is reserved, except :: (unspecified) and ::1 (loopback).
address_class classify(const ip_address& a) noexcept;

// An absolute http or https URL split for connecting.
struct url_parts {
  bool https = false;
  std::string host;       // lower-cased; an IPv6 literal without its brackets
  std::uint16_t port = 0; // the explicit port, else 443 or 80
  std::string target;     // path and query as sent in the request line; "/" when empty
};

// Splits an absolute http(s) URL; the scheme is case-insensitive and a fragment is dropped.
// errc::invalid_argument naming what is wrong for anything else: another scheme or none,
// userinfo ('@' in the authority), an empty host or an empty label, a host character other than
// letters, digits, '-', '_' and '.', a bracketed host that is not IPv6 (zones included), a port
// not in 1-65535, a space, control or non-ASCII character anywhere.
result<url_parts> parse_url(std::string_view url);

struct outbound_policy {
  // Allow http:// (no TLS). Default: false (https only).
  bool allow_http = false;
  // Allow public addresses: the Internet. Default: true. False keeps delivery on the machine
  // (opendsrd's test mode and --deliver-to loopback, with a resolver that refuses other names
  // without a lookup).
  bool allow_public = true;
  // Allow each class other than public_unicast. Default: none. Test mode allows loopback.
  bool allow_loopback = false;
  bool allow_private = false;  // private_use, link_local and shared_cgnat
  bool allow_metadata = false;
  // multicast, unspecified and reserved are never allowed: nothing useful answers there.

  // True iff an address of class c may be connected to.
  bool allows(address_class c) const noexcept;
};

// Checks a URL as written (intake): errc::destination_refused with a message naming the rule for
// a refused scheme, a host that is a refused IP literal or "localhost" (and its subdomains, with
// or without the root's trailing dot), or a host that ends in a number without being a dotted
// quad (2130706433, 0x7f000001, 127.1: ambiguous forms, refused whatever the policy allows);
// errc::invalid_argument if it is not an absolute http(s) URL. The message never repeats the URL.
result<url_parts> check_url(const outbound_policy& policy, std::string_view url);

// Checks one resolved address (delivery): errc::destination_refused naming its class.
result<void> check_address(const outbound_policy& policy, const ip_address& a);

}  // namespace opendsr
