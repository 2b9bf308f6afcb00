// Per-workspace rate limits (mParticle's Default Service Limits, OpenDSR spec §3): calls per
// sliding window across GET, POST and DELETE, and new requests per UTC day.
#pragma once

#include <opendsr/rate_limits.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace opendsr::detail {

// Returns errc::invalid_argument, naming the field, unless the limits are usable.
result<void> validate(const rate_limits& limits);

struct rate_decision {
  bool allowed = true;
  // When allowed: the share of the closer limit used, counting this call, 0-100 (rounded down).
  int percentage_used = 0;
  // When refused: whole seconds until the same call would be allowed, at least 1.
  std::chrono::seconds retry_after{0};
};

// Counts calls per workspace and decides whether each may proceed.
//
// The window slides in steps of window/60 (1 s by default): a call counts against the limit
// from its step until one window after the start of its step. The day is the UTC calendar day.
// Time comes only from the `now` arguments; they should not go backwards (if they do, calls
// counted in the "future" are forgotten, never double-counted).
//
// Memory: one fixed-size entry (under 600 bytes) per workspace ever admitted, so the caller
// passes only authenticated workspace ids.
// Thread safety: admit() may be called from any thread concurrently.
class rate_limiter {
 public:
  // REQUIRES: validate(limits) succeeded.
  explicit rate_limiter(const rate_limits& limits);

  // Counts one API call of `workspace` at `now`, and one new request too if `new_request`.
  // A refused call counts against nothing.
  rate_decision admit(std::string_view workspace, timestamp now, bool new_request);

 private:
  static constexpr std::size_t steps = 60;
  struct step_count {
    std::int64_t step = -1;  // the index of the step this slot counts, or -1 if unused
    std::uint32_t calls = 0;
  };
  struct workspace_state {
    std::array<step_count, steps> window{};
    std::int64_t day = -1;  // days since the epoch of day_count
    std::uint32_t day_count = 0;
  };

  rate_limits limits_;
  std::chrono::microseconds step_;  // window / steps
  std::mutex mutex_;
  struct string_hash {
    using is_transparent = void;  // find() by string_view without a copy
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, workspace_state, string_hash, std::equal_to<>> states_;
};

}  // namespace opendsr::detail
