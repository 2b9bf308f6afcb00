// The outbound policy: strict IPv4/IPv6 parsing, every address class in its IPv4, IPv6 and
// IPv4-embedding forms, URL splitting and each of its refusals, and the checks under each allow
// flag.
#include <opendsr/outbound_policy.hpp>

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace opendsr {
namespace {

std::string hex(const ip_address& a) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < (a.v6 ? 16u : 4u); ++i) {
    out += digits[a.bytes[i] >> 4];
    out += digits[a.bytes[i] & 15];
  }
  return out;
}

// The bytes of a literal that must parse, as hex; "" if it did not parse.
std::string parsed(std::string_view text) {
  auto a = parse_ip_address(text);
  return a ? hex(*a) : "";
}

address_class class_of(std::string_view text) {
  auto a = parse_ip_address(text);
  EXPECT_TRUE(a) << text;
  return a ? classify(*a) : address_class::public_unicast;
}

TEST(ParseIpAddress, AcceptsStrictDottedQuads) {
  EXPECT_EQ(parsed("0.0.0.0"), "00000000");
  EXPECT_EQ(parsed("127.0.0.1"), "7f000001");
  EXPECT_EQ(parsed("255.255.255.255"), "ffffffff");
  EXPECT_EQ(parsed("192.168.10.200"), "c0a80ac8");
  EXPECT_FALSE(parse_ip_address("1.2.3.4")->v6);
}

TEST(ParseIpAddress, RefusesAmbiguousAndMalformedIpv4) {
  for (std::string_view bad : {"", "1", "127.1", "127.0.1", "1.2.3.4.5", "2130706433", "0x7f000001", "0x7f.0.0.1",
                               "010.0.0.1", "127.0.0.01", "00.0.0.0", "256.0.0.1", "1.2.3.256", "1.2.3.", ".1.2.3",
                               "1..2.3", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "+1.2.3.4", "1.2.3.4/8", "1.2.3.4.",
                               "1234.1.1.1", "a.b.c.d"})
    EXPECT_FALSE(parse_ip_address(bad)) << bad;
}

TEST(ParseIpAddress, AcceptsRfc4291Text) {
  EXPECT_EQ(parsed("::"), "00000000000000000000000000000000");
  EXPECT_EQ(parsed("::1"), "00000000000000000000000000000001");
  EXPECT_EQ(parsed("1::"), "00010000000000000000000000000000");
  EXPECT_EQ(parsed("2001:db8::8:800:200c:417a"), "20010db80000000000080800200c417a");
  EXPECT_EQ(parsed("2001:DB8:0:0:8:800:200C:417A"), "20010db80000000000080800200c417a");
  EXPECT_EQ(parsed("ff01::101"), "ff010000000000000000000000000101");
  EXPECT_EQ(parsed("1:2:3:4:5:6:7::"), "00010002000300040005000600070000");
  EXPECT_EQ(parsed("::2:3:4:5:6:7:8"), "00000002000300040005000600070008");
  EXPECT_EQ(parsed("0:0:0:0:0:0:13.1.68.3"), "0000000000000000000000000d014403");
  EXPECT_EQ(parsed("::13.1.68.3"), "0000000000000000000000000d014403");
  EXPECT_EQ(parsed("::ffff:129.144.52.38"), "00000000000000000000ffff81903426");
  EXPECT_EQ(parsed("1:2:3:4:5:6:1.2.3.4"), "00010002000300040005000601020304");
  EXPECT_TRUE(parse_ip_address("::1")->v6);
}

TEST(ParseIpAddress, RefusesMalformedIpv6) {
  for (std::string_view bad : {":", ":::", "1::2::3", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::",
                               "::1:2:3:4:5:6:7:8", "12345::", "g::1", ":1::", "1::2:", "1:2:3:4:5:6:7:8:",
                               "::ffff:1.2.3", "::ffff:010.0.0.1", "::1.2.3.4:5", "1.2.3.4::", "1:2:3:4:5:6:7:1.2.3.4",
                               "fe80::1%eth0", "[::1]", "::1 ", "::-1"})
    EXPECT_FALSE(parse_ip_address(bad)) << bad;
  // "::" stands for at least one group.
  EXPECT_FALSE(parse_ip_address("1:2:3:4::5:6:7:8"));
  EXPECT_TRUE(parse_ip_address("1:2:3::5:6:7:8"));
}

TEST(Classify, Ipv4Classes) {
  EXPECT_EQ(class_of("8.8.8.8"), address_class::public_unicast);
  EXPECT_EQ(class_of("1.1.1.1"), address_class::public_unicast);
  EXPECT_EQ(class_of("127.0.0.1"), address_class::loopback);
  EXPECT_EQ(class_of("127.255.255.254"), address_class::loopback);
  EXPECT_EQ(class_of("10.0.0.1"), address_class::private_use);
  EXPECT_EQ(class_of("172.16.0.1"), address_class::private_use);
  EXPECT_EQ(class_of("172.31.255.255"), address_class::private_use);
  EXPECT_EQ(class_of("172.15.255.255"), address_class::public_unicast);
  EXPECT_EQ(class_of("172.32.0.0"), address_class::public_unicast);
  EXPECT_EQ(class_of("192.168.0.1"), address_class::private_use);
  EXPECT_EQ(class_of("169.254.1.1"), address_class::link_local);
  EXPECT_EQ(class_of("100.64.0.1"), address_class::shared_cgnat);
  EXPECT_EQ(class_of("100.127.255.255"), address_class::shared_cgnat);
  EXPECT_EQ(class_of("100.128.0.0"), address_class::public_unicast);
  EXPECT_EQ(class_of("100.63.255.255"), address_class::public_unicast);
  EXPECT_EQ(class_of("169.254.169.254"), address_class::metadata);
  EXPECT_EQ(class_of("169.254.170.2"), address_class::metadata);
  EXPECT_EQ(class_of("100.100.100.200"), address_class::metadata);
  EXPECT_EQ(class_of("224.0.0.1"), address_class::multicast);
  EXPECT_EQ(class_of("239.255.255.255"), address_class::multicast);
  EXPECT_EQ(class_of("0.0.0.0"), address_class::unspecified);
  EXPECT_EQ(class_of("0.1.2.3"), address_class::unspecified);
  EXPECT_EQ(class_of("240.0.0.1"), address_class::reserved);
  EXPECT_EQ(class_of("255.255.255.255"), address_class::reserved);
  EXPECT_EQ(class_of("192.0.0.8"), address_class::reserved);
  EXPECT_EQ(class_of("192.0.2.1"), address_class::reserved);
  EXPECT_EQ(class_of("198.18.0.1"), address_class::reserved);
  EXPECT_EQ(class_of("198.19.255.255"), address_class::reserved);
  EXPECT_EQ(class_of("198.20.0.0"), address_class::public_unicast);
  EXPECT_EQ(class_of("198.51.100.7"), address_class::reserved);
  EXPECT_EQ(class_of("203.0.113.9"), address_class::reserved);
  EXPECT_EQ(class_of("192.0.1.1"), address_class::public_unicast);
}

TEST(Classify, Ipv6Classes) {
  EXPECT_EQ(class_of("2606:4700::1111"), address_class::public_unicast);
  EXPECT_EQ(class_of("::1"), address_class::loopback);
  EXPECT_EQ(class_of("::"), address_class::unspecified);
  EXPECT_EQ(class_of("fc00::1"), address_class::private_use);
  EXPECT_EQ(class_of("fdff:ffff::1"), address_class::private_use);
  EXPECT_EQ(class_of("fe80::1"), address_class::link_local);
  EXPECT_EQ(class_of("febf::1"), address_class::link_local);
  EXPECT_EQ(class_of("fec0::1"), address_class::public_unicast);  // not fe80::/10
  EXPECT_EQ(class_of("fd00:ec2::254"), address_class::metadata);
  EXPECT_EQ(class_of("fd00:ec2::255"), address_class::private_use);
  EXPECT_EQ(class_of("ff02::1"), address_class::multicast);
  EXPECT_EQ(class_of("2001:db8::1"), address_class::reserved);
  EXPECT_EQ(class_of("64:ff9b:1::1"), address_class::reserved);
  EXPECT_EQ(class_of("::2"), address_class::reserved);             // v4-compatible ::0.0.0.2
  EXPECT_EQ(class_of("::127.0.0.1"), address_class::reserved);     // v4-compatible, not loopback
  EXPECT_EQ(class_of("::8.8.8.8"), address_class::reserved);
  EXPECT_EQ(class_of("::1:0:0:0"), address_class::public_unicast);  // outside ::/96
}

TEST(Classify, EmbeddedIpv4TakesItsClass) {
  // IPv4-mapped ::ffff:0:0/96, in dotted and in hex text.
  EXPECT_EQ(class_of("::ffff:127.0.0.1"), address_class::loopback);
  EXPECT_EQ(class_of("::ffff:7f00:1"), address_class::loopback);
  EXPECT_EQ(class_of("::FFFF:10.1.2.3"), address_class::private_use);
  EXPECT_EQ(class_of("::ffff:169.254.169.254"), address_class::metadata);
  EXPECT_EQ(class_of("::ffff:a9fe:a9fe"), address_class::metadata);
  EXPECT_EQ(class_of("::ffff:169.254.0.1"), address_class::link_local);
  EXPECT_EQ(class_of("::ffff:100.64.0.1"), address_class::shared_cgnat);
  EXPECT_EQ(class_of("::ffff:224.0.0.1"), address_class::multicast);
  EXPECT_EQ(class_of("::ffff:0.0.0.0"), address_class::unspecified);
  EXPECT_EQ(class_of("::ffff:192.0.2.1"), address_class::reserved);
  EXPECT_EQ(class_of("::ffff:8.8.8.8"), address_class::public_unicast);
  EXPECT_EQ(class_of("0:0:0:0:0:ffff:192.168.1.1"), address_class::private_use);
  // NAT64 64:ff9b::/96.
  EXPECT_EQ(class_of("64:ff9b::127.0.0.1"), address_class::loopback);
  EXPECT_EQ(class_of("64:ff9b::a00:1"), address_class::private_use);
  EXPECT_EQ(class_of("64:ff9b::169.254.169.254"), address_class::metadata);
  EXPECT_EQ(class_of("64:ff9b::100.100.100.200"), address_class::metadata);
  EXPECT_EQ(class_of("64:ff9b::8.8.8.8"), address_class::public_unicast);
  EXPECT_EQ(class_of("64:ff9b::1:0:0:1"), address_class::public_unicast);  // outside the /96 and the /48
}

TEST(Classify, NamesEveryClass) {
  EXPECT_EQ(to_string(address_class::public_unicast), "public");
  EXPECT_EQ(to_string(address_class::loopback), "loopback");
  EXPECT_EQ(to_string(address_class::private_use), "private");
  EXPECT_EQ(to_string(address_class::link_local), "link-local");
  EXPECT_EQ(to_string(address_class::shared_cgnat), "cgnat");
  EXPECT_EQ(to_string(address_class::metadata), "metadata");
  EXPECT_EQ(to_string(address_class::multicast), "multicast");
  EXPECT_EQ(to_string(address_class::unspecified), "unspecified");
  EXPECT_EQ(to_string(address_class::reserved), "reserved");
}

TEST(ParseUrl, SplitsHttpAndHttps) {
  auto u = parse_url("https://Callbacks.Example.COM/v1/status?x=1&y=2#frag");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->host, "callbacks.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/v1/status?x=1&y=2");

  u = parse_url("HTTP://example.com:8080");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->https);
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/");

  u = parse_url("hTTpS://example.com?q=1");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->target, "/?q=1");

  u = parse_url("http://example.com#only-fragment");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/");

  u = parse_url("http://[2001:DB8::1]:65535/p");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "2001:db8::1");
  EXPECT_EQ(u->port, 65535);
  EXPECT_EQ(u->target, "/p");

  u = parse_url("https://[::ffff:127.0.0.1]");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::ffff:127.0.0.1");
  EXPECT_EQ(u->port, 443);

  u = parse_url("http://127.0.0.1:1/a/b/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 1);
  EXPECT_EQ(u->target, "/a/b/");

  u = parse_url("https://example.com./");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "example.com.");
}

TEST(ParseUrl, RefusesEachMalformedForm) {
  struct bad_url {
    std::string_view url;
    std::string_view message_part;
  };
  for (auto [url, part] : std::initializer_list<bad_url>{
           {"ftp://example.com/", "does not use http or https"},
           {"file:///etc/passwd", "does not use http or https"},
           {"gopher://127.0.0.1/", "does not use http or https"},
           {"://example.com/", "does not use http or https"},
           {"example.com/path", "is not absolute"},
           {"https:/example.com", "is not absolute"},
           {"", "is not absolute"},
           {"https://user@example.com/", "userinfo"},
           {"https://user:pw@example.com/", "userinfo"},
           {"https://example.com@127.0.0.1/", "userinfo"},
           {"https:///path", "no host"},
           {"https://", "no host"},
           {"https://:443/", "no host"},
           {"https://?q", "no host"},
           {"https://[]/", "not an IPv6 address"},
           {"https://[127.0.0.1]/", "not an IPv6 address"},
           {"https://[fe80::1%25eth0]/", "not an IPv6 address"},
           {"https://[::1/", "unterminated"},
           {"https://[::1]x/", "after its IPv6 host"},
           {"https://::1/", "no host"},
           {"https://example.com:0/", "port"},
           {"https://example.com:65536/", "port"},
           {"https://example.com:/", "port"},
           {"https://example.com:443x/", "port"},
           {"https://example.com:-1/", "port"},
           {"https://example.com:000443/", "port"},
           {"https://exa mple.com/", "space or a control character"},
           {"https://example.com/a b", "space or a control character"},
           {"https://example.com/\r\nX-Injected: 1", "space or a control character"},
           {"https://example.com/\t", "space or a control character"},
           {std::string_view("https://example.com/\0", 21), "space or a control character"},
           {"https://example.com/\x7f", "space or a control character"},
           {"https://b\xc3\xbc" "cher.example/", "non-ASCII"},
           {"https://exa%6dple.com/", "not allowed in a host name"},
           {"https://example.com\\@evil/", "userinfo"},
           {"https://example.com\\evil/", "not allowed in a host name"},
           {"https://.example.com/", "empty label"},
           {"https://example..com/", "empty label"},
           {"https://example.com../", "empty label"},
           {"https://./", "empty label"},
       }) {
    auto u = parse_url(url);
    ASSERT_FALSE(u) << url;
    EXPECT_EQ(u.error(), errc::invalid_argument) << url;
    EXPECT_NE(u.error().message().find(part), std::string::npos) << url << ": " << u.error().message();
  }
}

outbound_policy https_public() { return {}; }

outbound_policy everything_allowed() {
  outbound_policy p;
  p.allow_http = p.allow_loopback = p.allow_private = p.allow_metadata = true;
  return p;
}

TEST(OutboundPolicy, AllowsByFlag) {
  outbound_policy p;
  EXPECT_TRUE(p.allows(address_class::public_unicast));
  for (auto c : {address_class::loopback, address_class::private_use, address_class::link_local,
                 address_class::shared_cgnat, address_class::metadata, address_class::multicast,
                 address_class::unspecified, address_class::reserved})
    EXPECT_FALSE(p.allows(c)) << to_string(c);

  p.allow_loopback = true;
  EXPECT_TRUE(p.allows(address_class::loopback));
  EXPECT_FALSE(p.allows(address_class::private_use));

  p = {};
  p.allow_private = true;
  EXPECT_TRUE(p.allows(address_class::private_use));
  EXPECT_TRUE(p.allows(address_class::link_local));
  EXPECT_TRUE(p.allows(address_class::shared_cgnat));
  EXPECT_FALSE(p.allows(address_class::metadata));  // metadata is not "private"
  EXPECT_FALSE(p.allows(address_class::loopback));

  p = {};
  p.allow_metadata = true;
  EXPECT_TRUE(p.allows(address_class::metadata));
  EXPECT_FALSE(p.allows(address_class::link_local));

  p = everything_allowed();
  EXPECT_FALSE(p.allows(address_class::multicast));
  EXPECT_FALSE(p.allows(address_class::unspecified));
  EXPECT_FALSE(p.allows(address_class::reserved));
}

TEST(CheckAddress, RefusesWithAMessageNamingTheClass) {
  const outbound_policy p = https_public();
  EXPECT_TRUE(check_address(p, *parse_ip_address("8.8.8.8")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("2606:4700::1111")));
  struct refused {
    std::string_view address;
    std::string_view message_part;
  };
  for (auto [address, part] : std::initializer_list<refused>{
           {"127.0.0.1", "a loopback address"},
           {"::1", "a loopback address"},
           {"::ffff:127.0.0.1", "a loopback address"},
           {"64:ff9b::7f00:1", "a loopback address"},
           {"10.1.1.1", "a private-use address"},
           {"fd12::1", "a private-use address"},
           {"169.254.3.4", "a link-local address"},
           {"fe80::1", "a link-local address"},
           {"100.64.1.1", "a shared (CGNAT) address"},
           {"169.254.169.254", "a cloud metadata service address"},
           {"fd00:ec2::254", "a cloud metadata service address"},
           {"::ffff:169.254.169.254", "a cloud metadata service address"},
           {"239.1.1.1", "a multicast address"},
           {"ff05::2", "a multicast address"},
           {"0.0.0.0", "an unspecified address"},
           {"::", "an unspecified address"},
           {"255.255.255.255", "a reserved address"},
           {"2001:db8::5", "a reserved address"},
           {"::10.0.0.1", "a reserved address"},
       }) {
    auto r = check_address(p, *parse_ip_address(address));
    ASSERT_FALSE(r) << address;
    EXPECT_EQ(r.error(), errc::destination_refused) << address;
    EXPECT_NE(r.error().message().find(part), std::string::npos) << address << ": " << r.error().message();
    EXPECT_NE(r.error().message().find("not allowed by the outbound policy"), std::string::npos);
    EXPECT_EQ(r.error().message().find(address), std::string::npos) << "the message repeats the address";
  }
}

TEST(CheckAddress, AllowFlagsOpenTheirClassesOnly) {
  outbound_policy p;
  p.allow_loopback = true;
  EXPECT_TRUE(check_address(p, *parse_ip_address("127.0.0.1")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("::1")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("::ffff:127.0.0.2")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("10.0.0.1")));

  p = {};
  p.allow_private = true;
  EXPECT_TRUE(check_address(p, *parse_ip_address("192.168.1.1")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("fe80::1")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("100.64.0.1")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("169.254.169.254")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("127.0.0.1")));

  p = {};
  p.allow_metadata = true;
  EXPECT_TRUE(check_address(p, *parse_ip_address("169.254.169.254")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("fd00:ec2::254")));

  p = everything_allowed();
  EXPECT_FALSE(check_address(p, *parse_ip_address("224.0.0.1")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("0.0.0.0")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("::")));
  EXPECT_FALSE(check_address(p, *parse_ip_address("192.0.2.1")));
}

TEST(OutboundPolicy, LoopbackOnlyRefusesPublicAddresses) {
  outbound_policy p;
  p.allow_public = false;
  p.allow_loopback = true;
  EXPECT_EQ(check_address(p, *parse_ip_address("93.184.216.34")).error().code(), errc::destination_refused);
  EXPECT_NE(check_address(p, *parse_ip_address("2606:4700::1111")).error().message().find("public"), std::string::npos);
  EXPECT_TRUE(check_address(p, *parse_ip_address("127.0.0.1")));
  EXPECT_TRUE(check_address(p, *parse_ip_address("::1")));
  EXPECT_EQ(check_url(p, "https://93.184.216.34/cb").error().code(), errc::destination_refused);
  EXPECT_TRUE(check_address(outbound_policy{}, *parse_ip_address("93.184.216.34")));  // the default allows them
}

TEST(CheckUrl, HttpNeedsAllowHttp) {
  auto r = check_url(https_public(), "http://example.com/cb");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  EXPECT_NE(r.error().message().find("https only"), std::string::npos);
  EXPECT_EQ(r.error().message().find("example.com"), std::string::npos);

  outbound_policy p;
  p.allow_http = true;
  r = check_url(p, "http://example.com/cb");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->target, "/cb");
  EXPECT_TRUE(check_url(https_public(), "https://example.com/cb"));
}

TEST(CheckUrl, ChecksIpLiteralHosts) {
  const outbound_policy p = https_public();
  EXPECT_TRUE(check_url(p, "https://8.8.8.8/"));
  EXPECT_TRUE(check_url(p, "https://[2606:4700::1111]:8443/"));
  for (std::string_view url : {"https://127.0.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/",
                               "https://[::ffff:7f00:1]/", "https://[64:ff9b::127.0.0.1]/", "https://10.0.0.1/",
                               "https://169.254.169.254/latest/meta-data/", "https://[fd00:ec2::254]/",
                               "https://100.100.100.200/", "https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/",
                               "https://127.0.0.1./"}) {
    auto r = check_url(p, url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error(), errc::destination_refused) << url;
    EXPECT_EQ(r.error().message().find("://"), std::string::npos) << r.error().message();
  }
  outbound_policy loop;
  loop.allow_loopback = true;
  EXPECT_TRUE(check_url(loop, "https://127.0.0.1:8443/x"));
  EXPECT_TRUE(check_url(loop, "https://[::1]/"));
  EXPECT_FALSE(check_url(loop, "https://169.254.169.254/"));
}

TEST(CheckUrl, LocalhostNamesAreLoopback) {
  for (std::string_view url : {"https://localhost/", "https://LOCALHOST:8443/", "https://localhost./",
                               "https://api.localhost/", "https://a.b.localhost./"}) {
    auto r = check_url(https_public(), url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error(), errc::destination_refused) << url;
    EXPECT_NE(r.error().message().find("loopback"), std::string::npos) << r.error().message();
  }
  outbound_policy loop;
  loop.allow_loopback = true;
  EXPECT_TRUE(check_url(loop, "https://localhost/"));
  EXPECT_TRUE(check_url(loop, "https://api.localhost./"));
  // Names that only contain the word are ordinary names (checked when resolved).
  EXPECT_TRUE(check_url(https_public(), "https://localhost.example.com/"));
  EXPECT_TRUE(check_url(https_public(), "https://mylocalhost/"));
}

TEST(CheckUrl, RefusesAmbiguousNumericHosts) {
  // Each is an address to inet_aton and many resolvers, but not a dotted quad: refused even when
  // every class is allowed, and whatever address it would be.
  for (std::string_view url :
       {"https://2130706433/", "https://0x7f000001/", "https://0X7F000001/", "https://017700000001/",
        "https://127.1/", "https://127.0.1/", "https://0x7f.0.0.1/", "https://0177.0.0.1/", "https://010.0.0.1/",
        "https://127.000.000.001/", "https://1.2.3.4.5/", "https://134744072/", "https://8.8.8.8.8/",
        "https://2130706433./", "https://example.123/", "https://0x/"}) {
    for (const outbound_policy& p : {https_public(), everything_allowed()}) {
      auto r = check_url(p, url);
      ASSERT_FALSE(r) << url;
      EXPECT_EQ(r.error(), errc::destination_refused) << url;
      EXPECT_NE(r.error().message().find("ambiguous"), std::string::npos) << r.error().message();
      EXPECT_EQ(r.error().message().find(std::string(url.substr(8, 5))), std::string::npos) << r.error().message();
    }
  }
  // A last label with letters is a name.
  EXPECT_TRUE(check_url(https_public(), "https://1.2.3.example/"));
  EXPECT_TRUE(check_url(https_public(), "https://0xexample.com/"));
  EXPECT_TRUE(check_url(https_public(), "https://123.abc/"));
}

TEST(CheckUrl, InvalidUrlsStayInvalidArgument) {
  auto r = check_url(everything_allowed(), "ftp://example.com/");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
  r = check_url(everything_allowed(), "https://user@example.com/");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
}

}  // namespace
}  // namespace opendsr
