// The value rules of single request fields, as predicates. The request parser applies them;
// they are separate so each rule reads (and is tested) on its own.
#pragma once

#include <cstddef>
#include <string_view>

namespace opendsr::detail {

// True iff s is a UUID of version 4 in the canonical lowercase 8-4-4-4-12 form: version nibble
// 4 and RFC 4122 variant (8, 9, a or b). The nil UUID and other versions are not.
bool is_lowercase_uuid_v4(std::string_view s) noexcept;

// True iff s is the canonical decimal text of a signed 64-bit integer: an optional '-', then
// digits without leading zeros ("0" itself, never "-0" or "+1"), within [INT64_MIN, INT64_MAX].
// Canonical text keeps one mpid to one spelling, so the conflict key sees equal mpids as equal.
bool is_canonical_int64(std::string_view s) noexcept;

// True iff s is an absolute http or https URL (scheme case-insensitive) with a non-empty host,
// an optional numeric port of at most 65535, and only URI characters (printable ASCII, no
// space, no "<>\^`{|}, '%' followed by two hex digits).
bool is_http_url(std::string_view s) noexcept;

// The number of Unicode code points in s. REQUIRES: s is valid UTF-8.
std::size_t count_code_points(std::string_view s) noexcept;

}  // namespace opendsr::detail
