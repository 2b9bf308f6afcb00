// The callback outbox: one entry per (request, status, callback URL), written in the same
// transaction as the status change it announces, and due at the next callback flush. The
// dispatcher (a later module) sends them in key order and removes what was delivered.
//
// Key: keys::outbox_key(due, ref, history_index(status), url_index). Value (format 1): format
// byte, length-prefixed URL, then the exact body bytes to send (and sign).
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "store/record.hpp"

#include <string>
#include <string_view>

namespace opendsr::detail {

struct outbox_entry {
  std::string url;
  std::string body;
};

std::string encode_outbox_entry(std::string_view url, std::string_view body);

// Returns errc::storage_corrupt if bytes are not an entry this version can read.
result<outbox_entry> decode_outbox_entry(std::string_view bytes);

// Queues the callbacks announcing r's current status, one per callback URL, due at `due`.
// `ref` is keys::request_ref(r.workspace, r.subject_request_id).
result<void> queue_callbacks(write_transaction& txn, const request_record& r, std::string_view ref, timestamp due);

}  // namespace opendsr::detail
