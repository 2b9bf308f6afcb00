#include "api/rate_limiter.hpp"

#include <algorithm>

namespace opendsr::detail {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;

// Whole seconds from now until `until`, at least 1 (Retry-After is a positive integer).
seconds seconds_until(timestamp now, timestamp until) {
  return std::max(seconds(1), std::chrono::ceil<seconds>(until - now));
}

int percentage(std::uint64_t used, std::uint32_t limit) {
  return limit == 0 ? 0 : static_cast<int>(std::min<std::uint64_t>(100, used * 100 / limit));
}

}  // namespace

result<void> validate(const rate_limits& limits) {
  if (limits.window < seconds(1)) return error(errc::invalid_argument, "rate limits: window must be at least 1 s");
  return {};
}

rate_limiter::rate_limiter(const rate_limits& limits)
    : limits_(limits), step_(std::chrono::duration_cast<microseconds>(limits.window) / steps) {}

rate_decision rate_limiter::admit(std::string_view workspace, timestamp now, bool new_request) {
  const std::int64_t step = now.time_since_epoch() / step_;
  const std::int64_t day = std::chrono::floor<std::chrono::days>(now).time_since_epoch().count();

  std::lock_guard lock(mutex_);
  auto it = states_.find(workspace);
  if (it == states_.end()) it = states_.emplace(std::string(workspace), workspace_state{}).first;
  workspace_state& s = it->second;

  // Calls in the window: the slots of the last `steps` steps up to and including this one.
  std::uint64_t in_window = 0;
  for (const step_count& c : s.window)
    if (c.step > step - static_cast<std::int64_t>(steps) && c.step <= step) in_window += c.calls;
  if (s.day != day) {
    s.day = day;
    s.day_count = 0;
  }

  if (limits_.calls_per_window != 0 && in_window >= limits_.calls_per_window) {
    // Allowed again once enough of the oldest steps have left the window.
    std::array<step_count, steps> live = s.window;
    std::sort(live.begin(), live.end(), [](const step_count& a, const step_count& b) { return a.step < b.step; });
    std::uint64_t remaining = in_window;
    timestamp until = now;
    for (const step_count& c : live) {
      if (c.step <= step - static_cast<std::int64_t>(steps) || c.step > step) continue;
      remaining -= c.calls;
      until = timestamp(step_ * (c.step + static_cast<std::int64_t>(steps)));
      if (remaining < limits_.calls_per_window) break;
    }
    return {false, 100, seconds_until(now, until)};
  }
  if (new_request && limits_.new_requests_per_day != 0 && s.day_count >= limits_.new_requests_per_day)
    return {false, 100, seconds_until(now, ceil_midnight(now + microseconds(1)))};

  constexpr auto n = static_cast<std::int64_t>(steps);
  step_count& slot = s.window[static_cast<std::size_t>((step % n + n) % n)];  // steps before 1970 are negative
  if (slot.step != step) slot = {step, 0};
  ++slot.calls;
  ++in_window;
  if (new_request) ++s.day_count;
  return {true, std::max(percentage(in_window, limits_.calls_per_window), percentage(s.day_count, limits_.new_requests_per_day)), {}};
}

}  // namespace opendsr::detail
