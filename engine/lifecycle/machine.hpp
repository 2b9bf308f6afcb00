// The request state machine: the one transition table and the one guard (docs/engine.md draws
// it).
//
//   (submit) -> pending --start_processing (tick at processing_start)--> in_progress
//               pending --cancel (engine::cancel)--> cancelled
//               in_progress --complete (tick at expected_completion, fulfilment done)--> completed
#pragma once

#include <opendsr/request_status.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include "store/record.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace opendsr::detail {

enum class lifecycle_event : std::uint8_t {
  start_processing,  // the cancel window closed
  complete,          // the fulfilment finished
  cancel,            // the controller cancelled
};

struct transition {
  request_status from;
  lifecycle_event event;
  request_status to;
  bool timed;  // caused by the passage of time (a timer), not by an API call
};

inline constexpr std::array<transition, 3> transition_table{{
    {request_status::pending, lifecycle_event::start_processing, request_status::in_progress, true},
    {request_status::in_progress, lifecycle_event::complete, request_status::completed, true},
    {request_status::pending, lifecycle_event::cancel, request_status::cancelled, false},
}};

// The status `event` leads to from `from`. Returns errc::invalid_operation, naming the request,
// its status and the statuses that allow the event, iff the table has no such transition.
result<request_status> guard(std::string_view subject_request_id, request_status from, lifecycle_event event);

// The event the passage of time causes in status s, or nullopt if none (terminal statuses).
std::optional<lifecycle_event> timed_event(request_status s) noexcept;

// When the timed event of r falls due, or nullopt if none: processing_start while pending,
// expected_completion while in_progress.
std::optional<timestamp> timer_due(const request_record& r) noexcept;

// How many transitions lead from creation to s (each status has exactly one path): pending 0,
// in_progress and cancelled 1, completed 2. Also the index of s's callbacks in the outbox.
std::uint8_t history_index(request_status s) noexcept;

// The status before s on its path. REQUIRES: s != pending.
request_status previous_status(request_status s) noexcept;

}  // namespace opendsr::detail
