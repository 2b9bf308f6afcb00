// The timing policy (engine_options::timing) applied: when a request's processing starts and
// when it is expected to complete, and when queued callbacks are flushed.
#pragma once

#include <opendsr/engine_options.hpp>
#include <opendsr/request.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

namespace opendsr::detail {

struct schedule {
  timestamp processing_start;     // the cancel window closes; pending -> in_progress
  timestamp expected_completion;  // processing_start + completion_margin
};

// The schedule of a request received at `received` (engine_options.hpp states the rules).
// REQUIRES: validate_timing(policy) succeeded.
schedule plan_schedule(const timing_policy& policy, request_type type, bool skip_waiting_period,
                       timestamp received);

// The first flush time not before t: the next multiple of callback_flush_interval since the epoch.
timestamp next_flush(const timing_policy& policy, timestamp t);

// Returns errc::invalid_argument naming the first field that breaks its REQUIRES.
result<void> validate_timing(const timing_policy& policy);

}  // namespace opendsr::detail
