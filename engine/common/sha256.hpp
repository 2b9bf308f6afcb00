// SHA-256 (FIPS 180-4). The engine hashes conflict keys and over-long key components with it, so
// that storage keys stay short and two different inputs never share a key in practice.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace opendsr::detail {

using sha256_digest = std::array<unsigned char, 32>;

// Incremental hasher: update() any number of times, then finish() once.
class sha256_hasher {
 public:
  sha256_hasher() noexcept;

  void update(std::string_view data) noexcept;

  // Returns the digest of everything passed to update().
  // REQUIRES: finish() was not called before on this object.
  sha256_digest finish() noexcept;

 private:
  void compress(const unsigned char* block) noexcept;

  std::array<std::uint32_t, 8> state_;
  std::array<unsigned char, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

// The SHA-256 digest of data.
sha256_digest sha256(std::string_view data) noexcept;

// The digest as its 32 raw bytes, for use inside a storage key or record.
inline std::string_view as_bytes(const sha256_digest& d) noexcept {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

// HMAC-SHA-256 (RFC 2104) of message under key.
sha256_digest hmac_sha256(std::string_view key, std::string_view message) noexcept;

}  // namespace opendsr::detail
