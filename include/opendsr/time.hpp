// Time in opendsr: one UTC timestamp type, with RFC 3339 parsing and formatting.
#pragma once

#include <opendsr/result.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace opendsr {

// A UTC instant with microsecond resolution (range: far beyond years 0000-9999).
using timestamp = std::chrono::sys_time<std::chrono::microseconds>;

// Parses an RFC 3339 date-time ("2021-11-01T15:00:00Z", any numeric offset, 'T'/'t' separator,
// 'Z'/'z', up to 9 fraction digits: digits past the sixth are truncated) or a full date
// ("2022-01-05", meaning 00:00:00Z that day). Leap second 60 is accepted at 23:59 UTC only and
// clamped to :59.999999. The instant must fall in years 0000-9999 in UTC, so format_rfc3339
// writes back what was read.
// Returns errc::invalid_argument with a message naming the defect on anything else.
result<timestamp> parse_rfc3339(std::string_view text);

// Formats as RFC 3339 in UTC with 'Z': "2021-12-09T00:00:00Z", or with exactly six fraction
// digits when the instant is not a whole second ("2021-11-29T18:16:24.556805Z").
std::string format_rfc3339(timestamp t);

// The first instant of the UTC day holding t (floor to 00:00:00Z).
inline timestamp floor_midnight(timestamp t) {
  return std::chrono::floor<std::chrono::days>(t);
}

// t itself if it is exactly 00:00:00Z, else the next 00:00:00Z after t.
inline timestamp ceil_midnight(timestamp t) {
  return std::chrono::ceil<std::chrono::days>(t);
}

}  // namespace opendsr
