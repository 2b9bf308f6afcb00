#include <opendsr/request.hpp>

#include <algorithm>
#include <cstdint>

namespace opendsr {
namespace {

// Appends n as LEB128 (7 bits per byte, high bit set on all but the last): self-delimiting, so
// a length followed by that many bytes can never be read two ways.
void append_length(std::string& out, std::size_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

}  // namespace

std::string_view to_string(regulation r) noexcept {
  switch (r) {
    case regulation::gdpr: return "gdpr";
    case regulation::ccpa: return "ccpa";
  }
  return "unknown";
}

std::string_view to_string(request_type t) noexcept {
  switch (t) {
    case request_type::access: return "access";
    case request_type::portability: return "portability";
    case request_type::erasure: return "erasure";
  }
  return "unknown";
}

// Layout: [request type: 1 byte] then, per identity in (type, value) order,
// [identity type: 1 byte][value length: LEB128][value bytes]. Encoding is always "raw" and so
// left out. parse_request already sorts by type; a request assembled by hand is sorted here so
// the key never depends on the order its identities were written in.
std::string canonical_key(const request& r) {
  const auto less = [](const identity& a, const identity& b) {
    return a.type != b.type ? a.type < b.type : a.value < b.value;
  };
  std::size_t size = 1;
  for (const identity& id : r.identities) size += 1 + 10 + id.value.size();
  std::string key;
  key.reserve(size);
  key.push_back(static_cast<char>(r.type));
  const auto append = [&key](const identity& id) {
    key.push_back(static_cast<char>(id.type));
    append_length(key, id.value.size());
    key.append(id.value);
  };
  if (std::is_sorted(r.identities.begin(), r.identities.end(), less)) {
    for (const identity& id : r.identities) append(id);
  } else {
    std::vector<const identity*> sorted;
    for (const identity& id : r.identities) sorted.push_back(&id);
    std::sort(sorted.begin(), sorted.end(), [&](const identity* a, const identity* b) { return less(*a, *b); });
    for (const identity* id : sorted) append(*id);
  }
  return key;
}

}  // namespace opendsr
