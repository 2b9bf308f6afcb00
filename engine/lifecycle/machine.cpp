#include "lifecycle/machine.hpp"

#include <string>

namespace opendsr::detail {
namespace {

std::string_view describe(lifecycle_event e) noexcept {
  switch (e) {
    case lifecycle_event::start_processing: return "start processing";
    case lifecycle_event::complete: return "complete";
    case lifecycle_event::cancel: return "be cancelled";
  }
  return "change";
}

}  // namespace

result<request_status> guard(std::string_view subject_request_id, request_status from, lifecycle_event event) {
  std::string allowed;
  for (const transition& t : transition_table) {
    if (t.event != event) continue;
    if (t.from == from) return t.to;
    if (!allowed.empty()) allowed += " or ";
    allowed += to_string(t.from);
  }
  return error(errc::invalid_operation, "The request " + std::string(subject_request_id) + " cannot " +
                                            std::string(describe(event)) + ": its status is " +
                                            std::string(to_string(from)) + ", and only a " + allowed +
                                            " request can.");
}

std::optional<lifecycle_event> timed_event(request_status s) noexcept {
  for (const transition& t : transition_table)
    if (t.from == s && t.timed) return t.event;
  return std::nullopt;
}

std::optional<timestamp> timer_due(const request_record& r) noexcept {
  const auto event = timed_event(r.status);
  if (!event) return std::nullopt;
  return *event == lifecycle_event::start_processing ? r.processing_start : r.expected_completion;
}

request_status previous_status(request_status s) noexcept {
  for (const transition& t : transition_table)
    if (t.to == s) return t.from;
  return s;
}

std::uint8_t history_index(request_status s) noexcept {
  std::uint8_t n = 0;
  for (; s != request_status::pending; s = previous_status(s)) ++n;
  return n;
}

}  // namespace opendsr::detail
