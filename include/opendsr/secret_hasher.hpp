// The secret hasher seam: how workspace API secrets are stored and checked.
//
// A workspace secret is never stored, only a slow, salted password hash of it (Argon2id in the
// Botan adapter), so a copy of the store does not reveal credentials.
//
// Thread safety: every method may be called from any thread concurrently.
// Ownership: the embedder owns the hasher and keeps it alive as long as anything that uses it.
#pragma once

#include <opendsr/result.hpp>

#include <string>
#include <string_view>

namespace opendsr {

class secret_hasher {
 public:
  virtual ~secret_hasher() = default;
  secret_hasher() = default;
  secret_hasher(const secret_hasher&) = delete;
  secret_hasher& operator=(const secret_hasher&) = delete;

  // Returns a self-describing hash of `secret` (algorithm, parameters, random salt and digest,
  // printable ASCII), different on every call.
  virtual result<std::string> hash(std::string_view secret) const = 0;

  // Returns true iff `secret` is the secret that `stored` (a value from hash()) was made from.
  // The comparison takes the same time wherever the digests differ. Returns errc::invalid_argument
  // if `stored` is not a hash this hasher understands.
  virtual result<bool> check(std::string_view secret, std::string_view stored) const = 0;
};

}  // namespace opendsr
