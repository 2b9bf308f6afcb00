#include "lifecycle/timing.hpp"

#include <algorithm>

namespace opendsr::detail {
namespace {

using std::chrono::microseconds;

// The first 00:00Z not before t that falls on one of the run days.
timestamp next_run_day(const std::vector<std::chrono::weekday>& run_days, timestamp t) {
  auto day = std::chrono::sys_days(std::chrono::ceil<std::chrono::days>(t).time_since_epoch());
  while (std::find(run_days.begin(), run_days.end(), std::chrono::weekday(day)) == run_days.end())
    day += std::chrono::days(1);
  return day;
}

}  // namespace

schedule plan_schedule(const timing_policy& policy, request_type type, bool skip_waiting_period,
                       timestamp received) {
  timestamp start;
  if (type != request_type::erasure)
    start = next_run_day(policy.access_run_days, received);
  else if (skip_waiting_period)
    start = ceil_midnight(received);
  else
    start = ceil_midnight(received + policy.erasure_waiting_period);
  return {start, start + policy.completion_margin};
}

timestamp next_flush(const timing_policy& policy, timestamp t) {
  const auto interval = policy.callback_flush_interval.count();
  const auto since_epoch = t.time_since_epoch().count();
  auto remainder = since_epoch % interval;
  if (remainder < 0) remainder += interval;
  return remainder == 0 ? t : t + microseconds(interval - remainder);
}

result<void> validate_timing(const timing_policy& policy) {
  auto invalid = [](const char* message) { return error(errc::invalid_argument, message); };
  // Ten years bounds every sum of times the engine forms, far from overflow.
  constexpr microseconds max_span = std::chrono::days(3653);
  if (policy.erasure_waiting_period < microseconds::zero() || policy.erasure_waiting_period > max_span)
    return invalid("timing.erasure_waiting_period must be between 0 and 10 years.");
  if (policy.completion_margin < microseconds::zero() || policy.completion_margin > max_span)
    return invalid("timing.completion_margin must be between 0 and 10 years.");
  if (policy.access_run_days.empty()) return invalid("timing.access_run_days must name at least one day.");
  for (auto d : policy.access_run_days)
    if (!d.ok()) return invalid("timing.access_run_days holds an invalid weekday.");
  if (policy.callback_flush_interval <= microseconds::zero() || policy.callback_flush_interval > max_span)
    return invalid("timing.callback_flush_interval must be positive and at most 10 years.");
  return {};
}

}  // namespace opendsr::detail
