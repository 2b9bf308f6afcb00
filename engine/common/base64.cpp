#include "common/base64.hpp"

#include <array>
#include <cstdint>

namespace opendsr::detail {
namespace {

constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::uint8_t not_base64 = 0xFF;

constexpr std::array<std::uint8_t, 256> make_decode_table() {
  std::array<std::uint8_t, 256> table{};
  for (auto& v : table) v = not_base64;
  for (std::size_t i = 0; i < alphabet.size(); ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::uint8_t>(i);
  return table;
}
constexpr std::array<std::uint8_t, 256> decode_table = make_decode_table();

}  // namespace

void append_base64(std::string& out, std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const std::size_t start = out.size();
  out.resize(start + (n + 2) / 3 * 4);
  char* o = out.data() + start;
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3, o += 4) {
    const std::uint32_t v = std::uint32_t{p[i]} << 16 | std::uint32_t{p[i + 1]} << 8 | p[i + 2];
    o[0] = alphabet[v >> 18];
    o[1] = alphabet[(v >> 12) & 63];
    o[2] = alphabet[(v >> 6) & 63];
    o[3] = alphabet[v & 63];
  }
  if (i < n) {  // one or two bytes left: pad with '='
    const bool two = i + 2 == n;
    const std::uint32_t v = std::uint32_t{p[i]} << 16 | (two ? std::uint32_t{p[i + 1]} << 8 : 0);
    o[0] = alphabet[v >> 18];
    o[1] = alphabet[(v >> 12) & 63];
    o[2] = two ? alphabet[(v >> 6) & 63] : '=';
    o[3] = '=';
  }
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  append_base64(out, bytes);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const std::size_t data_chars = last ? 4 - padding : 4;
    std::uint32_t v = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      std::uint8_t d = 0;
      if (j < data_chars) {
        d = decode_table[static_cast<unsigned char>(text[i + j])];
        if (d == not_base64) return std::nullopt;
      }
      v = v << 6 | d;
    }
    out += static_cast<char>(v >> 16);
    if (data_chars >= 3) out += static_cast<char>((v >> 8) & 0xFF);
    if (data_chars == 4) out += static_cast<char>(v & 0xFF);
    // Canonical form: the bits the padding leaves unused are zero.
    if ((data_chars == 2 && (v & 0xFFFF) != 0) || (data_chars == 3 && (v & 0xFF) != 0)) return std::nullopt;
  }
  return out;
}

}  // namespace opendsr::detail
