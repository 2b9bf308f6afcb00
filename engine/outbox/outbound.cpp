#include "outbox/outbound.hpp"

#include "outbox/callbacks.hpp"
#include "outbox/fulfilment_tasks.hpp"

namespace opendsr::detail {

result<void> write_outbound_work(write_transaction& txn, const status_change& change) {
  OPENDSR_TRY(queue_callbacks(txn, change.record, change.ref, change.history_index, change.callback_due,
                              change.processor_domain));
  if (change.fulfil && change.record.status == request_status::in_progress) return queue_fulfilment(txn, change.ref, change.now);
  if (is_terminal(change.record.status)) return drop_fulfilment(txn, change.ref);
  return {};
}

result<void> write_distribution_work(write_transaction& txn, const request_record& record, std::string_view ref,
                                     std::uint8_t history_index, timestamp callback_due,
                                     std::string_view processor_domain) {
  return queue_callbacks(txn, record, ref, history_index, callback_due, processor_domain);
}

}  // namespace opendsr::detail
