#include "lifecycle/transitions.hpp"

#include "common/json_text.hpp"
#include "lifecycle/timing.hpp"
#include "outbox/outbound.hpp"
#include "store/keys.hpp"

#include <algorithm>

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

}  // namespace

result<void> write_status(write_transaction& txn, const engine_options& options, const request_record& r,
                          std::string_view ref, std::optional<timestamp> old_timer, timestamp now) {
  OPENDSR_TRY(move_timer(txn, r, ref, old_timer));
  if (is_terminal(r.status)) {
    auto erased = txn.erase(keys::conflict_key(r.workspace, r.type, r.conflict_digest));
    if (!erased) return std::move(erased).error();
    if (!*erased) return corrupt_index("conflict index entry", r);
    // An ended request keeps no copy of the body, whose identities are the subject's personal
    // data, nor the digest of its identity set (unsalted: a guessed identity could be confirmed
    // against it): nothing reads them after this (the conflict index entry is gone, the
    // fulfilment done).
    request_record ended = r;
    ended.body.clear();
    ended.conflict_digest = {};
    OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(ended)));
  } else {
    OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(r)));
  }
  return write_outbound_work(txn, {r, ref, history_index(r.status), next_flush(options.timing, now), now,
                                   options.fulfilment.mode == fulfilment_mode::tasks});
}

result<void> apply_event(write_transaction& txn, const engine_options& options, request_record& r,
                         lifecycle_event event, timestamp now) {
  auto to = guard(r.subject_request_id, r.status, event);
  if (!to) return std::move(to).error();
  const std::optional<timestamp> old_timer = timer_due(r);
  r.status = *to;
  r.status_time = now;
  return write_status(txn, options, r, keys::request_ref(r.workspace, r.subject_request_id), old_timer, now);
}

result<std::size_t> catch_up(write_transaction& txn, const engine_options& options, request_record& r, timestamp now) {
  std::size_t changes = 0;
  for (auto due = timer_due(r); due && *due <= now; due = timer_due(r)) {
    const lifecycle_event event = *timed_event(r.status);
    if (event == lifecycle_event::complete && options.fulfilment.mode == fulfilment_mode::tasks) {
      // The task is not done (done completes the request and removes this timer): the estimate
      // moves, strictly past now so that one tick looks at a request once.
      r.expected_completion = std::max(*due, now) + options.fulfilment.overdue_extension;
      const std::string ref = keys::request_ref(r.workspace, r.subject_request_id);
      OPENDSR_TRY(move_timer(txn, r, ref, due));
      OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(r)));
      continue;
    }
    OPENDSR_TRY(apply_event(txn, options, r, event, now));
    ++changes;
  }
  return changes;
}

result<void> complete_fulfilled(write_transaction& txn, const engine_options& options, request_record& r,
                                std::optional<std::string> results_url, timestamp now) {
  if (results_url && !is_valid_utf8(*results_url))
    return error(errc::invalid_argument, "The fulfilment gave request " + r.subject_request_id +
                                             " a results_url that is not valid UTF-8.");
  r.results_url = std::move(results_url);
  return apply_event(txn, options, r, lifecycle_event::complete, now);
}

}  // namespace opendsr::detail
