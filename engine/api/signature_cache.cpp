#include "api/signature_cache.hpp"

#include "common/sha256.hpp"

namespace opendsr::detail {

signature_cache::signature_cache(std::size_t capacity)
    : per_shard_(capacity == 0 ? 0 : (capacity + shard_count - 1) / shard_count) {}

result<std::string> signature_cache::sign(const signer& by, std::string_view body) {
  if (per_shard_ == 0) return by.sign(body);
  const sha256_digest digest = sha256(body);
  const std::string key(as_bytes(digest));
  shard& s = shards_[digest[0] % shard_count];
  {
    std::lock_guard lock(s.mutex);
    if (auto it = s.signatures.find(key); it != s.signatures.end()) return it->second;
  }
  auto signature = by.sign(body);  // outside the lock: signing is the slow part
  if (!signature) return signature;
  std::lock_guard lock(s.mutex);
  if (s.signatures.emplace(key, *signature).second) {
    s.order.push_back(key);
    if (s.order.size() > per_shard_) {
      s.signatures.erase(s.order.front());
      s.order.pop_front();
    }
  }
  return signature;
}

}  // namespace opendsr::detail
