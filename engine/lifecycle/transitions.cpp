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

// The history index of a forwarded request's next callback; at 255 the last one is replaced.
std::uint8_t next_callback_seq(std::uint8_t seq) { return seq == UINT8_MAX ? seq : static_cast<std::uint8_t>(seq + 1); }

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
  const std::uint8_t index = r.distribution.empty() ? history_index(r.status) : r.callback_seq;
  return write_outbound_work(txn, {r, ref, index, next_flush(options.timing, now), now,
                                   options.fulfilment.mode == fulfilment_mode::tasks,
                                   options.request.processor_domain});
}

result<void> apply_event(write_transaction& txn, const engine_options& options, request_record& r,
                         lifecycle_event event, timestamp now) {
  auto to = guard(r.subject_request_id, r.status, event);
  if (!to) return std::move(to).error();
  const std::optional<timestamp> old_timer = timer_due(r);
  r.status = *to;
  r.status_time = now;
  if (!r.distribution.empty()) r.callback_seq = next_callback_seq(r.callback_seq);
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

result<bool> change_distribution(write_transaction& txn, const engine_options& options, std::string_view ref,
                                 std::string_view output, distribution_state state,
                                 const std::optional<std::string>& message, timestamp now) {
  auto stored = txn.get(keys::request_key(ref));
  if (!stored) return std::move(stored).error();
  if (!*stored) return error(errc::storage_corrupt, "A forward names a request that is not stored.");
  auto r = decode_record(**stored);
  if (!r) return std::move(r).error();
  auto entry = std::find_if(r->distribution.begin(), r->distribution.end(), [&](const auto& d) { return d.name == output; });
  if (entry == r->distribution.end())
    return error(errc::storage_corrupt, "Request " + r->subject_request_id + " has no distribution entry for a forward of its.");
  if (entry->status == state && entry->status_message == message) return false;
  entry->status = state;
  entry->status_message = message;
  r->callback_seq = next_callback_seq(r->callback_seq);
  OPENDSR_TRY(txn.put(keys::request_key(ref), encode_record(*r)));
  OPENDSR_TRY(write_distribution_work(txn, *r, ref, r->callback_seq, next_flush(options.timing, now),
                                      options.request.processor_domain));
  return true;
}

}  // namespace opendsr::detail
