// The one place that writes the outbound work a change of a request causes, in the transaction of
// the change: the status callbacks and the fulfilment task (written when processing starts,
// removed when the request ends), and the callbacks announcing a change of its distribution
// entries. (Partner forwards are written when the request is admitted, by intake: forwarding
// starts on receipt, whatever the status.)
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "store/record.hpp"

#include <cstdint>
#include <string_view>

namespace opendsr::detail {

// A request that has just entered its current status.
struct status_change {
  const request_record& record;  // in its new status
  std::string_view ref;          // keys::request_ref(record.workspace, record.subject_request_id)
  std::uint8_t history_index;    // the new status's index on the request's path (pending 0)
  timestamp callback_due;        // the callback flush the change's callbacks go out with
  timestamp now;                 // when the change happens
  bool fulfil = false;           // fulfilment_mode::tasks: queue a task when processing starts
  std::string_view processor_domain;  // keys the extension of callbacks with distribution entries
};

result<void> write_outbound_work(write_transaction& txn, const status_change& change);

// The outbound work of a change of one of a request's distribution entries (the record already
// holds it): the status callbacks announcing it, the history_index-th of the request.
result<void> write_distribution_work(write_transaction& txn, const request_record& record, std::string_view ref,
                                     std::uint8_t history_index, timestamp callback_due,
                                     std::string_view processor_domain);

}  // namespace opendsr::detail
