// The token format of <opendsr/results_store.hpp>: make_results_token(), is_results_token(), and
// the engine's own derived tokens (common/results_token.hpp).
#include <opendsr/results_store.hpp>

#include "common/results_token.hpp"

#include <sys/random.h>

#include <array>
#include <cerrno>

namespace opendsr {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static_assert(results_token_bytes % 3 == 0, "a token is base64 without padding");

constexpr bool is_token_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

namespace detail {

std::string encode_results_token(std::span<const unsigned char, results_token_bytes> raw) {
  std::string token;
  token.reserve(results_token_size);
  for (std::size_t i = 0; i < raw.size(); i += 3) {
    const unsigned v = (unsigned{raw[i]} << 16) | (unsigned{raw[i + 1]} << 8) | raw[i + 2];
    token.push_back(alphabet[(v >> 18) & 63]);
    token.push_back(alphabet[(v >> 12) & 63]);
    token.push_back(alphabet[(v >> 6) & 63]);
    token.push_back(alphabet[v & 63]);
  }
  return token;
}

}  // namespace detail

result<std::string> make_results_token() {
  std::array<unsigned char, results_token_bytes> raw{};
  std::size_t done = 0;
  while (done < raw.size()) {
    ssize_t n = ::getrandom(raw.data() + done, raw.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return error(errc::internal, "getrandom(2) gave no random bytes for a results token");
    done += static_cast<std::size_t>(n);
  }
  return detail::encode_results_token(raw);
}

bool is_results_token(std::string_view token) noexcept {
  if (token.size() != results_token_size) return false;
  for (char c : token)
    if (!is_token_char(c)) return false;
  return true;
}

}  // namespace opendsr
