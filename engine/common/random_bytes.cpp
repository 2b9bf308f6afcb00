#include "common/random_bytes.hpp"

#include <random>

namespace opendsr::detail {

std::string random_bytes(std::size_t n) {
  std::random_device rd;
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    const unsigned v = rd();
    for (int b = 0; b < 4 && out.size() < n; ++b) out += static_cast<char>((v >> (8 * b)) & 0xFF);
  }
  return out;
}

}  // namespace opendsr::detail
