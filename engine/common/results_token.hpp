// Encoding results tokens (<opendsr/results_store.hpp>'s format), for the engine, which derives a
// request's token rather than drawing it.
#pragma once

#include <opendsr/results_store.hpp>

#include <span>
#include <string>

namespace opendsr::detail {

// The URL-safe base64 (no padding) of raw: a token is_results_token() accepts.
std::string encode_results_token(std::span<const unsigned char, results_token_bytes> raw);

}  // namespace opendsr::detail
