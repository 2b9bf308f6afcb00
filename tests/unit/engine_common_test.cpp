// The engine's small building blocks: SHA-256 (FIPS 180-4 vectors), base64 (RFC 4648 vectors,
// strict decoding), UTF-8 validation and JSON text.
#include "common/base64.hpp"
#include "common/json_text.hpp"
#include "common/sha256.hpp"

#include <gtest/gtest.h>

#include <string>

namespace opendsr::detail {
namespace {

std::string hex(const sha256_digest& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

TEST(Sha256, MatchesFipsVectors) {
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, MillionAsInUnevenPieces) {
  sha256_hasher h;
  const std::string chunk(997, 'a');  // a prime, so pieces straddle block boundaries
  std::size_t left = 1'000'000;
  while (left > 0) {
    const std::size_t n = std::min(left, chunk.size());
    h.update(std::string_view(chunk).substr(0, n));
    left -= n;
  }
  EXPECT_EQ(hex(h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 55/56/64-byte padding edges hash the same whole and in two pieces.
  for (std::size_t n : {55, 56, 57, 63, 64, 65, 119, 120}) {
    const std::string s(n, 'x');
    sha256_hasher h;
    h.update(std::string_view(s).substr(0, n / 3));
    h.update(std::string_view(s).substr(n / 3));
    EXPECT_EQ(h.finish(), sha256(s)) << n;
  }
  EXPECT_NE(sha256(std::string(55, 'x')), sha256(std::string(56, 'x')));
}

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("example-api-key:example-api-secret"),
            "ZXhhbXBsZS1hcGkta2V5OmV4YW1wbGUtYXBpLXNlY3JldA==");  // the seed's Basic example
  EXPECT_EQ(base64_encode(std::string("\xfb\xff\xbf", 3)), "+/+/");
}

TEST(Base64, DecodesWhatItEncodes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    const std::string s = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(s)), s) << n;
  }
  EXPECT_EQ(base64_decode("ZXhhbXBsZS1hcGkta2V5OmV4YW1wbGUtYXBpLXNlY3JldA=="),
            "example-api-key:example-api-secret");
}

TEST(Base64, RejectsNonCanonicalText) {
  for (std::string_view bad : {"Zg", "Zg=", "Zg===", "Z===", "====", "Zm9v\n", " Zm9v", "Zm9-", "Zm9_",
                               "Zh==", "Zm9=", "Zg==Zg==", "Z=g=", "Zm=v"})
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  EXPECT_EQ(base64_decode(""), "");
}

TEST(Utf8, AcceptsWellFormedText) {
  for (std::string_view ok : {"", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
                              "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"})
    EXPECT_TRUE(is_valid_utf8(ok)) << ok;
}

TEST(Utf8, RejectsMalformedText) {
  for (std::string_view bad : {"\x80", "\xc0\x80", "\xc1\xbf", "\xc3", "\xe0\x80\x80", "\xe2\x82",
                               "\xed\xa0\x80", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                               "\xff", "a\xc3(", "\xe2\x28\xa1"})
    EXPECT_FALSE(is_valid_utf8(bad)) << testing::PrintToString(std::string(bad));
}

TEST(JsonText, EscapesWhatJsonRequires) {
  std::string out;
  append_json_string(out, std::string_view("a\"b\\c\n\t\x01\x1f/\xc3\xa9", 12));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\xc3\xa9\"");
  out = "x";  // appends; runs before, between and after escapes
  append_json_string(out, "\"\"ab\r");
  EXPECT_EQ(out, "x\"\\\"\\\"ab\\r\"");
}

TEST(JsonText, WritesObjectsInCallOrder) {
  std::string out;
  json_object_writer(out)
      .string("b", "x")
      .null("a")
      .string_or_null("c", std::optional<std::string>())
      .string_or_null("d", std::optional<std::string>("y"))
      .raw("e", "[1]")
      .base64("f", "foob")
      .close();
  EXPECT_EQ(out, R"({"b":"x","a":null,"c":null,"d":"y","e":[1],"f":"Zm9vYg=="})");
}

}  // namespace
}  // namespace opendsr::detail
