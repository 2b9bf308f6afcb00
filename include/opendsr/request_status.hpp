// The status of a data subject request: pending -> in_progress -> completed, and
// pending -> cancelled (docs/engine.md draws the state machine).
#pragma once

#include <cstdint>
#include <string_view>

namespace opendsr {

enum class request_status : std::uint8_t {
  pending,      // received; cancellable until processing starts
  in_progress,  // processing started; no longer cancellable
  completed,    // terminal
  cancelled,    // terminal; only a pending request can be cancelled
};

// Wire names: "pending", "in_progress", "completed", "cancelled".
constexpr std::string_view to_string(request_status s) noexcept {
  switch (s) {
    case request_status::pending: return "pending";
    case request_status::in_progress: return "in_progress";
    case request_status::completed: return "completed";
    case request_status::cancelled: return "cancelled";
  }
  return "unknown";
}

// True iff no transition leaves s.
constexpr bool is_terminal(request_status s) noexcept {
  return s == request_status::completed || s == request_status::cancelled;
}

}  // namespace opendsr
