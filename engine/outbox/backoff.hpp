// The wait before retrying outbound work (a callback, a fulfilment job) after a failure.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace opendsr::detail {

struct backoff_policy {
  std::chrono::microseconds min, first, max;  // REQUIRES: 0 < min <= first <= max
};

// The wait after the attempts-th failure: uniform in [min, min(max, first * 2^(attempts-1))],
// drawn from a hash of `seed` (the work's key) and the attempt, so that it is reproducible and
// yet spreads work that failed together.
std::chrono::microseconds backoff(const backoff_policy& p, std::string_view seed, std::uint32_t attempts);

}  // namespace opendsr::detail
