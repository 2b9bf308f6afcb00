#include "store/record.hpp"

#include "store/codec.hpp"

namespace opendsr::detail {
namespace {

constexpr std::uint8_t record_format = 1;
constexpr std::uint8_t has_group = 1;
constexpr std::uint8_t has_results_url = 2;
constexpr std::uint8_t has_distribution = 4;
constexpr std::uint8_t has_message = 1;

error corrupt(std::string_view what) {
  return error(errc::storage_corrupt, "A stored request record is damaged: " + std::string(what) + ".");
}

}  // namespace

std::string encode_record(const request_record& r) {
  std::string out;
  out.reserve(96 + r.workspace.size() + r.subject_request_id.size() + r.body.size());
  byte_writer w(out);
  w.u8(record_format);
  w.u8(static_cast<std::uint8_t>(r.type));
  w.u8(static_cast<std::uint8_t>(r.status));
  w.u8((r.group_id ? has_group : 0) | (r.results_url ? has_results_url : 0) |
       (r.distribution.empty() ? 0 : has_distribution));
  w.time(r.received_time);
  w.time(r.processing_start);
  w.time(r.expected_completion);
  w.time(r.status_time);
  w.bytes(r.workspace);
  w.bytes(r.subject_request_id);
  if (r.group_id) w.bytes(*r.group_id);
  if (r.results_url) w.bytes(*r.results_url);
  w.fixed(as_bytes(r.conflict_digest));
  w.varint(r.callback_urls.size());
  for (const auto& url : r.callback_urls) w.bytes(url);
  w.bytes(r.body);
  if (!r.distribution.empty()) {
    w.u8(r.callback_seq);
    w.varint(r.distribution.size());
    for (const distribution_entry& d : r.distribution) {
      w.bytes(d.domain);
      w.bytes(d.name);
      w.u8(static_cast<std::uint8_t>(d.status));
      w.u8(d.status_message ? has_message : 0);
      if (d.status_message) w.bytes(*d.status_message);
    }
  }
  return out;
}

result<request_record> decode_record(std::string_view bytes) {
  byte_reader in(bytes);
  const std::uint8_t format = in.u8();
  if (!in.ok() || format != record_format) return corrupt("unknown format " + std::to_string(format));
  request_record r;
  const std::uint8_t type = in.u8();
  const std::uint8_t status = in.u8();
  const std::uint8_t flags = in.u8();
  if (type > static_cast<std::uint8_t>(request_type::erasure)) return corrupt("unknown request type");
  if (status > static_cast<std::uint8_t>(request_status::cancelled)) return corrupt("unknown status");
  if ((flags & ~(has_group | has_results_url | has_distribution)) != 0) return corrupt("unknown flags");
  r.type = static_cast<request_type>(type);
  r.status = static_cast<request_status>(status);
  r.received_time = in.time();
  r.processing_start = in.time();
  r.expected_completion = in.time();
  r.status_time = in.time();
  r.workspace = in.bytes();
  r.subject_request_id = in.bytes();
  if (flags & has_group) r.group_id.emplace(in.bytes());
  if (flags & has_results_url) r.results_url.emplace(in.bytes());
  const std::string_view digest = in.fixed(r.conflict_digest.size());
  if (in.ok()) std::copy(digest.begin(), digest.end(), r.conflict_digest.begin());
  const std::uint64_t url_count = in.varint();
  for (std::uint64_t i = 0; i < url_count && in.ok(); ++i) r.callback_urls.emplace_back(in.bytes());
  r.body = in.bytes();
  if (flags & has_distribution) {
    r.callback_seq = in.u8();
    const std::uint64_t count = in.varint();
    for (std::uint64_t i = 0; i < count && in.ok(); ++i) {
      distribution_entry d;
      d.domain = in.bytes();
      d.name = in.bytes();
      const std::uint8_t state = in.u8();
      const std::uint8_t entry_flags = in.u8();
      if (state > static_cast<std::uint8_t>(distribution_state::failed) || entry_flags > has_message)
        return corrupt("unknown distribution status");
      d.status = static_cast<distribution_state>(state);
      if (entry_flags & has_message) d.status_message.emplace(in.bytes());
      r.distribution.push_back(std::move(d));
    }
    if (in.ok() && r.distribution.empty()) return corrupt("empty distribution");
  }
  if (!in.ok()) return corrupt("truncated");
  if (!in.at_end()) return corrupt("trailing bytes");
  return r;
}

}  // namespace opendsr::detail
