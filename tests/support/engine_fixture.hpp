// A test fixture for the engine on the memory adapter: options, clock, and views of the store
// (the invariant checker, the outbox) for assertions.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/memory_storage.hpp>

#include "check/invariants.hpp"
#include "outbox/callbacks.hpp"
#include "store/keys.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace opendsr::testing {

inline timestamp at(std::string_view rfc3339) { return parse_rfc3339(rfc3339).value(); }

inline engine_options test_options() {
  engine_options o;
  o.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  return o;
}

// One callback in the outbox, as the dispatcher will see it.
struct queued_callback {
  std::optional<timestamp> due;  // its next attempt (chain head), nullopt while it waits or is dead
  std::uint8_t history_index;
  std::uint8_t url_index;
  std::string url;
  std::string body;
  detail::callback_entry entry;
};

// Every broken invariant of the store (empty iff consistent).
inline std::vector<std::string> store_problems(storage& store) {
  auto txn = store.begin_read();
  return detail::check_invariants(**txn).value();
}

// The callbacks in the outbox for one request, in the order they announce (creation first).
inline std::vector<queued_callback> queued_callbacks(storage& store, std::string_view workspace, std::string_view id) {
  const std::string ref = detail::keys::request_ref(workspace, id);
  std::vector<queued_callback> out;
  auto txn = store.begin_read();
  auto scanned = (*txn)->scan(detail::keys::prefix(detail::keys::table::callback) + ref, {},
                              [&](std::string_view key, std::string_view value) {
                                const auto at = detail::keys::parse_callback_key(key);
                                if (at && at->ref == ref) {
                                  auto entry = detail::decode_callback_entry(value).value();
                                  out.push_back({entry.scheduled, at->history_index, at->url_index, entry.url,
                                                 entry.body, entry});
                                }
                                return true;
                              });
  EXPECT_TRUE(scanned);
  std::stable_sort(out.begin(), out.end(), [](const queued_callback& a, const queued_callback& b) {
    return std::pair(a.history_index, a.url_index) < std::pair(b.history_index, b.url_index);
  });
  return out;
}

// Claims every callback due at `now` and records each as delivered (a receiver that answers
// 2xx), until none is due. Returns how many were delivered.
inline std::size_t deliver_due(engine& e, timestamp now) {
  std::size_t delivered = 0;
  for (;;) {
    const auto claimed = e.claim_callbacks(now, 1000, "test").value();
    if (claimed.empty()) return delivered;
    std::vector<callback_outcome> outcomes;
    for (const auto& c : claimed) outcomes.push_back({c.entry_key, c.lease, true, "signature", {}});
    delivered += e.record_callbacks(outcomes, now).value().delivered;
  }
}

// The number of keys in the store.
inline std::size_t key_count(storage& store) {
  std::size_t n = 0;
  auto txn = store.begin_read();
  EXPECT_TRUE((*txn)->scan({}, {}, [&](std::string_view, std::string_view) { return ++n, true; }));
  return n;
}

}  // namespace opendsr::testing
