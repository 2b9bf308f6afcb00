#include <opendsr/workspaces.hpp>

#include "common/json_text.hpp"
#include "common/sha256.hpp"
#include "store/keys.hpp"

#include <random>

namespace opendsr {
namespace {

// The directory's table in the store: its byte, then the API key.
constexpr char workspace_table = static_cast<char>(detail::keys::table::workspace);

// Appended, not concatenated: GCC 12 at -O3 reports a false -Wrestrict on
// std::string(1, c) + std::string(view).
std::string key_of(std::string_view api_key) {
  std::string key(1, workspace_table);
  key += api_key;
  return key;
}

// A stored entry: the workspace id, '\n', the secret's hash (neither contains '\n').
std::string encode(std::string_view workspace_id, std::string_view hash) {
  return std::string(workspace_id) + '\n' + std::string(hash);
}

struct entry {
  std::string_view workspace_id;
  std::string_view hash;
};

result<entry> decode(std::string_view value) {
  auto nl = value.find('\n');
  if (nl == std::string_view::npos || nl == 0) return error(errc::storage_corrupt, "a workspace entry does not decode");
  return entry{value.substr(0, nl), value.substr(nl + 1)};
}

bool valid_workspace_id(std::string_view id) {
  if (id.empty() || id.size() > 256 || !detail::is_valid_utf8(id)) return false;
  for (unsigned char c : id)
    if (c < 0x20 || c == 0x7F) return false;
  return true;
}

bool valid_api_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key)
    if (c <= 0x20 || c >= 0x7F || c == ':') return false;
  return true;
}

// Equal iff every byte is; the time taken does not depend on where they differ.
bool constant_time_equal(const std::array<unsigned char, 32>& a, const std::array<unsigned char, 32>& b) {
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string random_pepper() {
  std::random_device device;
  std::string pepper(32, '\0');
  for (char& c : pepper) c = static_cast<char>(device());
  return pepper;
}

}  // namespace

workspace_directory::workspace_directory(storage& store, const secret_hasher& hasher)
    : store_(store), hasher_(hasher), pepper_(random_pepper()) {}

std::array<unsigned char, 32> workspace_directory::fast_digest(std::string_view secret) const {
  detail::sha256_hasher h;
  h.update(pepper_);
  h.update(secret);
  return h.finish();
}

result<void> workspace_directory::add(std::string_view workspace_id, std::string_view api_key, std::string_view secret) {
  if (!valid_workspace_id(workspace_id))
    return error(errc::invalid_argument, "workspace id: must be 1 to 256 bytes of UTF-8 without control characters");
  if (!valid_api_key(api_key))
    return error(errc::invalid_argument, "API key: must be 1 to 128 printable ASCII characters other than ':'");
  if (secret.size() < 16 || secret.size() > 1024) return error(errc::invalid_argument, "secret: must be 16 to 1024 bytes");
  auto hash = hasher_.hash(secret);
  if (!hash) return std::move(hash).error();
  auto txn = store_.begin_write();
  if (!txn) return std::move(txn).error();
  auto existing = (*txn)->get(key_of(api_key));
  if (!existing) return std::move(existing).error();
  if (*existing) return error(errc::invalid_argument, "API key: already in use");
  OPENDSR_TRY((*txn)->put(key_of(api_key), encode(workspace_id, *hash)));
  return (*txn)->commit();
}

result<bool> workspace_directory::remove(std::string_view api_key) {
  auto txn = store_.begin_write();
  if (!txn) return std::move(txn).error();
  auto erased = (*txn)->erase(key_of(api_key));
  if (!erased) return erased;
  OPENDSR_TRY((*txn)->commit());
  std::lock_guard lock(mutex_);
  remembered_.erase(std::string(api_key));
  return *erased;
}

result<std::vector<workspace_key>> workspace_directory::list() const {
  auto txn = store_.begin_read();
  if (!txn) return std::move(txn).error();
  std::vector<workspace_key> keys;
  error failure(errc::internal);
  bool failed = false;
  OPENDSR_TRY((*txn)->scan(std::string(1, workspace_table), {}, [&](std::string_view key, std::string_view value) {
    auto e = decode(value);
    if (!e) {
      failure = std::move(e).error();
      failed = true;
      return false;
    }
    keys.push_back({std::string(e->workspace_id), std::string(key.substr(1))});
    return true;
  }));
  if (failed) return failure;
  return keys;
}

result<std::string> workspace_directory::authenticate(std::string_view api_key, std::string_view secret) const {
  if (!valid_api_key(api_key)) return error(errc::unauthorized);
  std::string workspace_id, stored_hash;
  {
    auto txn = store_.begin_read();
    if (!txn) return std::move(txn).error();
    auto value = (*txn)->get(key_of(api_key));
    if (!value) return std::move(value).error();
    if (!*value) return error(errc::unauthorized);
    auto e = decode(**value);
    if (!e) return std::move(e).error();
    workspace_id = e->workspace_id;
    stored_hash = e->hash;
  }
  const auto digest = fast_digest(secret);
  {
    std::lock_guard lock(mutex_);
    auto it = remembered_.find(std::string(api_key));
    if (it != remembered_.end() && it->second.stored_hash == stored_hash) {
      if (constant_time_equal(it->second.digest, digest)) return workspace_id;
      return error(errc::unauthorized);  // the remembered secret is the right one, and this is not it
    }
  }
  auto ok = hasher_.check(secret, stored_hash);
  if (!ok) return error(errc::storage_corrupt, "the stored hash of an API key does not decode: " + ok.error().message());
  if (!*ok) return error(errc::unauthorized);
  std::lock_guard lock(mutex_);
  remembered_[std::string(api_key)] = remembered{std::move(stored_hash), digest};
  return workspace_id;
}

}  // namespace opendsr
