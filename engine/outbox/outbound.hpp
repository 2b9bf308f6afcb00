// The one place that writes the outbound work a status change causes, in the transaction of the
// change: the status callbacks and the fulfilment task (written when processing starts, removed
// when the request ends); partner forwards join them here, so that what a change sends out can
// never drift apart.
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
};

result<void> write_outbound_work(write_transaction& txn, const status_change& change);

}  // namespace opendsr::detail
