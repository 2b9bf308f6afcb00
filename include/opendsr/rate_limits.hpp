// Per-workspace rate limits of the OpenDSR HTTP API. The defaults are mParticle's Default Service
// Limits: 1,000 calls per minute across GET, POST and DELETE, and 80,000 new requests per day.
#pragma once

#include <chrono>
#include <cstdint>

namespace opendsr {

struct rate_limits {
  // API calls allowed per workspace per sliding window; 0 disables the limit. Default: 1,000.
  std::uint32_t calls_per_window = 1000;
  // The sliding window, at least 1 s. Default: 60 s.
  std::chrono::seconds window{60};
  // New requests (POSTs, counted when they pass authentication) allowed per workspace per UTC
  // day; 0 disables the limit. Default: 80,000.
  std::uint32_t new_requests_per_day = 80000;
};

}  // namespace opendsr
