#include "outbox/outbound.hpp"

#include "outbox/callbacks.hpp"

namespace opendsr::detail {

result<void> write_outbound_work(write_transaction& txn, const status_change& change) {
  return queue_callbacks(txn, change.record, change.ref, change.history_index, change.callback_due);
}

}  // namespace opendsr::detail
