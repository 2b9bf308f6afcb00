#include "outbox/backoff.hpp"

#include "common/sha256.hpp"

#include <algorithm>
#include <string>

namespace opendsr::detail {

std::chrono::microseconds backoff(const backoff_policy& p, std::string_view seed, std::uint32_t attempts) {
  std::int64_t cap = p.first.count();
  for (std::uint32_t i = 1; i < attempts && cap < p.max.count(); ++i) cap *= 2;
  cap = std::clamp(cap, p.min.count(), p.max.count());
  std::string material(seed);
  material += std::to_string(attempts);
  const sha256_digest d = sha256(material);
  std::uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = r << 8 | d[static_cast<std::size_t>(i)];
  const auto span = static_cast<std::uint64_t>(cap - p.min.count());
  return std::chrono::microseconds(p.min.count() + static_cast<std::int64_t>(span == 0 ? 0 : r % (span + 1)));
}

}  // namespace opendsr::detail
