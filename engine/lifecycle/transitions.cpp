#include "lifecycle/transitions.hpp"

#include "common/json_text.hpp"
#include "lifecycle/timing.hpp"
#include "outbox/outbound.hpp"
#include "store/keys.hpp"

#include <variant>

namespace opendsr::detail {
namespace {

error corrupt_index(std::string_view what, const request_record& r) {
  return error(errc::storage_corrupt,
               "The " + std::string(what) + " of request " + r.subject_request_id + " is missing from the store.");
}

// Moves r's timer from old_timer to timer_due(r).
result<void> move_timer(write_transaction& txn, const request_record& r, std::string_view ref,
                        std::optional<timestamp> old_timer) {
  const std::optional<timestamp> new_timer = timer_due(r);
  if (old_timer == new_timer) return {};
  if (old_timer) {
    auto erased = txn.erase(keys::timer_key(*old_timer, ref));
    if (!erased) return std::move(erased).error();
    if (!*erased) return corrupt_index("timer", r);
  }
  if (new_timer) {
    const auto event = static_cast<char>(*timed_event(r.status));
    OPENDSR_TRY(txn.put(keys::timer_key(*new_timer, ref), std::string_view(&event, 1)));
  }
  return {};
}

fulfilment_job job_of(const request_record& r) {
  return {r.workspace, r.subject_request_id, r.type, r.body, r.received_time, r.expected_completion};
}

}  // namespace

result<void> write_status(write_transaction& txn, const timing_policy& timing, const request_record& r,
                          std::string_view ref, std::optional<timestamp> old_timer, timestamp now) {
  OPENDSR_TRY(move_timer(txn, r, ref, old_timer));
  if (is_terminal(r.status)) {
    auto erased = txn.erase(keys::conflict_key(r.workspace, r.type, r.conflict_digest));
    if (!erased) return std::move(erased).error();
    if (!*erased) return corrupt_index("conflict index entry", r);
  }
  OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(r)));
  return write_outbound_work(txn, {r, ref, history_index(r.status), next_flush(timing, now)});
}

result<void> apply_event(write_transaction& txn, const timing_policy& timing, request_record& r,
                         lifecycle_event event, timestamp now) {
  auto to = guard(r.subject_request_id, r.status, event);
  if (!to) return std::move(to).error();
  const std::optional<timestamp> old_timer = timer_due(r);
  r.status = *to;
  r.status_time = now;
  return write_status(txn, timing, r, keys::request_ref(r.workspace, r.subject_request_id), old_timer, now);
}

result<std::size_t> catch_up(write_transaction& txn, const timing_policy& timing, fulfilment& fulfil,
                             request_record& r, timestamp now) {
  std::size_t changes = 0;
  for (auto due = timer_due(r); due && *due <= now; due = timer_due(r)) {
    const lifecycle_event event = *timed_event(r.status);
    if (event == lifecycle_event::complete) {
      fulfilment_outcome outcome = fulfil.poll(job_of(r), now);
      if (auto* pending = std::get_if<fulfilment_pending>(&outcome)) {
        // Not done: the estimate moves, strictly past now so that one tick polls a job once.
        r.expected_completion = std::max(pending->ask_again_at, now + std::chrono::microseconds(1));
        const std::string ref = keys::request_ref(r.workspace, r.subject_request_id);
        OPENDSR_TRY(move_timer(txn, r, ref, due));
        OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(r)));
        continue;
      }
      auto& done = std::get<fulfilment_done>(outcome);
      if (done.results_url && !is_valid_utf8(*done.results_url))
        return error(errc::invalid_argument, "The fulfilment gave request " + r.subject_request_id +
                                                 " a results_url that is not valid UTF-8.");
      r.results_url = std::move(done.results_url);
    }
    OPENDSR_TRY(apply_event(txn, timing, r, event, now));
    ++changes;
  }
  return changes;
}

}  // namespace opendsr::detail
