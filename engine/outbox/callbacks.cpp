#include "outbox/callbacks.hpp"

#include "lifecycle/machine.hpp"
#include "render/documents.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"

namespace opendsr::detail {
namespace {

constexpr std::uint8_t outbox_format = 1;

}  // namespace

std::string encode_outbox_entry(std::string_view url, std::string_view body) {
  std::string out;
  out.reserve(8 + url.size() + body.size());
  byte_writer w(out);
  w.u8(outbox_format);
  w.bytes(url);
  w.fixed(body);
  return out;
}

result<outbox_entry> decode_outbox_entry(std::string_view bytes) {
  byte_reader in(bytes);
  const std::uint8_t format = in.u8();
  const std::string_view url = in.bytes();
  const std::string_view body = in.rest();
  if (!in.ok() || format != outbox_format)
    return error(errc::storage_corrupt, "A stored outbox entry is damaged.");
  return outbox_entry{std::string(url), std::string(body)};
}

result<void> queue_callbacks(write_transaction& txn, const request_record& r, std::string_view ref, timestamp due) {
  const std::uint8_t history = history_index(r.status);
  for (std::size_t i = 0; i < r.callback_urls.size(); ++i) {
    const std::string& url = r.callback_urls[i];
    OPENDSR_TRY(txn.put(keys::outbox_key(due, ref, history, static_cast<std::uint8_t>(i)),
                        encode_outbox_entry(url, render_callback(r, url))));
  }
  return {};
}

}  // namespace opendsr::detail
