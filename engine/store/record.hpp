// The stored form of one data subject request, and its codec.
//
// Encoding (format 1): format byte, type, status, flags (bit 0: group_id, bit 1: results_url),
// received, processing_start, expected_completion and status_time as zigzag varints of
// microseconds, then length-prefixed workspace, id, [group_id], [results_url], the 32-byte
// conflict digest, the callback URL count and URLs, and the exact body bytes; then, when flag bit
// 2 is set (the request was forwarded to outputs), the callback sequence and the distribution
// entries (count; each: domain, name, status, flag, [message]).
#pragma once

#include <opendsr/distribution.hpp>
#include <opendsr/request.hpp>
#include <opendsr/request_status.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include "common/sha256.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

struct request_record {
  std::string workspace;           // the controller_id
  std::string subject_request_id;
  request_type type = request_type::access;
  request_status status = request_status::pending;
  timestamp received_time;
  // The cancel window closes and pending -> in_progress happens here.
  timestamp processing_start;
  // The current estimate; in_progress -> completed is attempted here. Rendered null once the
  // request is cancelled.
  timestamp expected_completion;
  // When the current status began (for a cancelled request: when the cancellation was received).
  timestamp status_time;
  std::optional<std::string> group_id;
  std::optional<std::string> results_url;  // set on completion of access/portability, if any
  sha256_digest conflict_digest{};         // SHA-256 of canonical_key(request)
  std::vector<std::string> callback_urls;  // status_callback_urls, in order
  std::string body;                        // the exact POST body bytes
  // One entry per output the request was forwarded to (an erasure admitted while its workspace
  // had active outputs), in name order; empty otherwise, and then it never gains any.
  std::vector<distribution_entry> distribution;
  // With distribution entries, callbacks are numbered in the order they are queued (a status
  // change, or a change of an entry): the history index of the latest. Unused without.
  std::uint8_t callback_seq = 0;

  friend bool operator==(const request_record&, const request_record&) = default;
};

std::string encode_record(const request_record& r);

// Returns errc::storage_corrupt if bytes are not a record this version can read.
result<request_record> decode_record(std::string_view bytes);

}  // namespace opendsr::detail
