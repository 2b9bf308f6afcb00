// The workspace directory: which API credentials open which workspace.
//
// A workspace is what scopes every request, group and result; its id is the controller_id of
// the responses (mParticle uses the workspace id, e.g. "3622"). A workspace has one or more API
// keys, each with a secret. Secrets are stored only as hashes from a secret_hasher (a slow
// password hash), in the given storage under keys that start with the byte 'w'.
//
// Thread safety: every method may be called from any thread concurrently.
// Ownership: the storage and the hasher must outlive the directory.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/secret_hasher.hpp>
#include <opendsr/storage.hpp>

#include <array>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace opendsr {

struct workspace_key {
  std::string workspace_id;
  std::string api_key;
};

class workspace_directory {
 public:
  workspace_directory(storage& store, const secret_hasher& hasher);
  workspace_directory(const workspace_directory&) = delete;
  workspace_directory& operator=(const workspace_directory&) = delete;

  // Stores the credentials (api_key, secret) for workspace_id. The workspace id is 1 to 256
  // bytes of UTF-8 without control characters; the API key 1 to 128 printable ASCII characters
  // other than ':'; the secret 16 to 1024 bytes. Returns errc::invalid_argument naming the field
  // that breaks its rule, or saying that the API key is already in use.
  result<void> add(std::string_view workspace_id, std::string_view api_key, std::string_view secret);

  // Removes an API key. Returns true iff it existed.
  result<bool> remove(std::string_view api_key);

  // Every API key with its workspace, ordered by API key. Secrets are not listed.
  result<std::vector<workspace_key>> list() const;

  // Returns the workspace id iff api_key exists and secret is its secret; errc::unauthorized
  // otherwise (whichever of the two was wrong). The slow hash runs once per key and secret: a
  // success is remembered (as a salted SHA-256 of the secret, in memory) for as long as the
  // stored hash of the key stays the same.
  result<std::string> authenticate(std::string_view api_key, std::string_view secret) const;

 private:
  struct remembered {
    std::string stored_hash;
    std::array<unsigned char, 32> digest;  // sha256(pepper_ + secret)
  };
  std::array<unsigned char, 32> fast_digest(std::string_view secret) const;

  storage& store_;
  const secret_hasher& hasher_;
  std::string pepper_;  // random per process
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, remembered> remembered_;  // by API key
};

}  // namespace opendsr
