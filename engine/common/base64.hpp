// Standard base64 (RFC 4648 section 4: alphabet A-Z a-z 0-9 + /, '=' padding), both ways.
// The engine encodes `encoded_request` with it; the HTTP layer decodes Basic credentials with it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace opendsr::detail {

// Appends the base64 text of bytes to out: padded, on one line.
void append_base64(std::string& out, std::string_view bytes);

// The base64 text of bytes: padded, on one line.
std::string base64_encode(std::string_view bytes);

// Decodes strict standard base64. Returns nullopt iff text is not canonical padded base64: a
// length that is not a multiple of 4, a character outside the alphabet (whitespace included),
// misplaced or excess '=', or non-zero bits in the unused part of the last character.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace opendsr::detail
