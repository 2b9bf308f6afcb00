// The engine's options: everything an embedder configures, with its default. engine::open
// validates them once.
#pragma once

#include <opendsr/callback_delivery.hpp>
#include <opendsr/distribution.hpp>
#include <opendsr/fulfilment.hpp>
#include <opendsr/request.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace opendsr {

// When requests move through their lifecycle (docs/engine.md, "Timing policy"). All times UTC.
//   erasure:             processing starts at ceil_midnight(received + erasure_waiting_period)
//   erasure, skip_waiting_period: processing starts at ceil_midnight(received)
//   access, portability: processing starts at the first 00:00Z of an access_run_days day that is
//                        not before received
// Until processing starts the request is pending and can be cancelled; expected completion is
// processing start + completion_margin.
struct timing_policy {
  // REQUIRES: 0 to 10 years. Default: 7 days.
  std::chrono::microseconds erasure_waiting_period = std::chrono::days(7);
  // REQUIRES: 0 to 10 years. Default: 48 hours.
  std::chrono::microseconds completion_margin = std::chrono::hours(48);
  // REQUIRES: not empty, valid weekdays. Default: Monday and Thursday.
  std::vector<std::chrono::weekday> access_run_days = {std::chrono::Monday, std::chrono::Thursday};
  // Callbacks are queued for the next multiple of this interval since the epoch (so all
  // callbacks of a flush go together). REQUIRES: > 0, at most 10 years. Default: 15 minutes.
  std::chrono::microseconds callback_flush_interval = std::chrono::minutes(15);
};

struct engine_options {
  // How request bodies are parsed; request.processor_domain is the processor's own domain (the
  // extension key it interprets). Default: see parse_options.
  parse_options request;
  // The URL of the processor's certificate PEM, advertised by discovery. REQUIRES: an absolute
  // http or https URL. No default.
  std::string certificate_url;
  timing_policy timing;
  // How callbacks are retried and leased. Default: see callback_delivery_policy.
  callback_delivery_policy callbacks;
  // The most requests a group may hold (the 151st is refused). REQUIRES: 1 to 65535. Default: 150.
  std::size_t max_group_size = 150;
  // The most due timers tick() handles in one write transaction. REQUIRES: >= 1. Default: 256.
  std::size_t tick_batch_size = 256;
  // How often one operation runs its transaction when commits report errc::storage_conflict.
  // REQUIRES: >= 1. Default: 8.
  unsigned max_transaction_attempts = 8;
  // How requests in progress are fulfilled (<opendsr/fulfilment.hpp>). Default: scheduled
  // completion, without results.
  fulfilment_policy fulfilment;
  // Which partners erasures may be forwarded to, and how forwards are retried and leased
  // (<opendsr/distribution.hpp>). Default: no partner kinds, so no output can be added.
  distribution_policy distribution;
};

}  // namespace opendsr
