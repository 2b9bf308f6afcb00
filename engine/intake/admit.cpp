#include "intake/admit.hpp"

#include "lifecycle/timing.hpp"
#include "lifecycle/transitions.hpp"
#include "outbox/forwards.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"

namespace opendsr::detail {

result<std::size_t> group_size(read_transaction& txn, std::string_view count_key) {
  auto stored = txn.get(count_key);
  if (!stored) return std::move(stored).error();
  if (!*stored) return std::size_t{0};
  byte_reader in(**stored);
  const std::uint64_t n = in.varint();
  if (!in.ok() || !in.at_end()) return error(errc::storage_corrupt, "A stored group count is damaged.");
  return static_cast<std::size_t>(n);
}

request_record new_record(const engine_options& options, std::string_view workspace, const request& req,
                          std::string_view body, timestamp received) {
  const schedule plan = plan_schedule(options.timing, req.type, req.skip_waiting_period, received);
  request_record r;
  r.workspace = workspace;
  r.subject_request_id = req.subject_request_id;
  r.type = req.type;
  r.status = request_status::pending;
  r.received_time = received;
  r.processing_start = plan.processing_start;
  r.expected_completion = plan.expected_completion;
  r.status_time = received;
  r.group_id = req.group_id;
  r.conflict_digest = sha256(canonical_key(req));
  r.callback_urls = req.status_callback_urls;
  r.body = body;
  return r;
}

result<void> admit(write_transaction& txn, const engine_options& options, const request_record& r,
                   const forward_source* forwards) {
  const std::string ref = keys::request_ref(r.workspace, r.subject_request_id);
  const std::string record_key = keys::request_key(ref);
  {
    auto existing = txn.get(record_key);
    if (!existing) return std::move(existing).error();
    if (*existing) return error(errc::duplicate_request_id, "Subject request already exists.");
  }

  std::string count_key;
  std::size_t members = 0;
  if (r.group_id) {
    count_key = keys::group_count_key(r.workspace, *r.group_id);
    auto size = group_size(txn, count_key);
    if (!size) return std::move(size).error();
    members = *size;
    if (members >= options.max_group_size)
      return error(errc::group_full, "The group already holds the maximum of " +
                                         std::to_string(options.max_group_size) + " requests.");
  }

  const std::string conflict_key = keys::conflict_key(r.workspace, r.type, r.conflict_digest);
  {
    auto blocking = txn.get(conflict_key);
    if (!blocking) return std::move(blocking).error();
    if (*blocking)
      return error(errc::identity_conflict,
                   "There is an in-progress request with the same identities, extensions and type: " +
                       std::string(**blocking) + ".");
  }

  OPENDSR_TRY(txn.put(conflict_key, r.subject_request_id));
  if (r.group_id) {
    const std::string members_prefix = keys::group_members_prefix(r.workspace, *r.group_id);
    OPENDSR_TRY(txn.put(keys::group_member_key(members_prefix, static_cast<std::uint16_t>(members)),
                        r.subject_request_id));
    std::string count;
    byte_writer(count).varint(members + 1);
    OPENDSR_TRY(txn.put(count_key, count));
  }
  if (forwards && r.type == request_type::erasure) {
    auto entries = queue_forwards(txn, r.workspace, ref, *forwards, r.received_time);
    if (!entries) return std::move(entries).error();
    if (!entries->empty()) {
      request_record forwarded = r;
      forwarded.distribution = std::move(*entries);
      return write_status(txn, options, forwarded, ref, std::nullopt, r.received_time);
    }
  }
  return write_status(txn, options, r, ref, std::nullopt, r.received_time);
}

}  // namespace opendsr::detail
