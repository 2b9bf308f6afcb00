#include "api/signature_cache.hpp"

#include <functional>

namespace opendsr::detail {

signature_cache::signature_cache(std::size_t capacity)
    : per_shard_(capacity == 0 ? 0 : (capacity + shard_count - 1) / shard_count) {}

result<std::string> signature_cache::sign(const signer& by, std::string_view body) {
  if (per_shard_ == 0) return by.sign(body);
  const std::size_t hash = std::hash<std::string_view>{}(body);
  shard& s = shards_[(hash >> 8) % shard_count];  // the low bits pick the map's bucket
  auto find = [&] {
    auto [first, last] = s.signatures.equal_range(hash);
    for (auto it = first; it != last; ++it)
      if (it->second.body == body) return it;
    return s.signatures.end();
  };
  {
    std::lock_guard lock(s.mutex);
    if (auto it = find(); it != s.signatures.end()) return it->second.signature;
  }
  auto signature = by.sign(body);  // outside the lock: signing is the slow part
  if (!signature) return signature;
  std::lock_guard lock(s.mutex);
  if (find() == s.signatures.end()) {
    auto added = s.signatures.emplace(hash, entry{std::string(body), *signature});
    s.order.emplace_back(hash, &added->second);
    if (s.order.size() > per_shard_) {
      auto [oldest_hash, oldest] = s.order.front();
      s.order.pop_front();
      auto [first, last] = s.signatures.equal_range(oldest_hash);
      for (auto it = first; it != last; ++it)
        if (&it->second == oldest) {
          s.signatures.erase(it);
          break;
        }
    }
  }
  return signature;
}

}  // namespace opendsr::detail
