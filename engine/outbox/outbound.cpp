#include "outbox/outbound.hpp"

#include "outbox/callbacks.hpp"
#include "outbox/fulfilment_tasks.hpp"

namespace opendsr::detail {

result<void> write_outbound_work(write_transaction& txn, const status_change& change) {
  OPENDSR_TRY(queue_callbacks(txn, change.record, change.ref, change.history_index, change.callback_due));
  if (change.fulfil && change.record.status == request_status::in_progress) return queue_fulfilment(txn, change.ref, change.now);
  if (is_terminal(change.record.status)) return drop_fulfilment(txn, change.ref);
  return {};
}

}  // namespace opendsr::detail
