// Secret random bytes, for the keys the engine and the subject store keep (results tokens,
// tombstone hashes).
#pragma once

#include <cstddef>
#include <string>

namespace opendsr::detail {

// n bytes from std::random_device: the kernel's CSPRNG on Linux (getrandom), or the CPU's.
std::string random_bytes(std::size_t n);

}  // namespace opendsr::detail
