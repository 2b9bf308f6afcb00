// libFuzzer target for the outbound policy's parsers (parse_url, parse_ip_address, check_url)
// and the callback entry codec, the bytes the dispatcher reads back from the store. Beyond "no
// crash, no sanitizer report", each input checks:
// - an accepted URL has a non-empty lower-case host, a port, a target starting with '/', and a
//   check_url that accepts it under the most permissive policy gives the same parts; a refusal
//   is invalid_argument or destination_refused and never repeats the URL;
// - under the permissive policy an IP literal host is refused only for the never-allowed classes;
// - a callback entry that decodes encodes to bytes that decode to the same entry.
#include <opendsr/outbound_policy.hpp>

#include "outbox/callbacks.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace opendsr {
namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void check_url_text(std::string_view url) {
  outbound_policy anything;
  anything.allow_http = anything.allow_loopback = anything.allow_private = anything.allow_metadata = true;
  const auto parts = parse_url(url);
  const auto checked = check_url(outbound_policy{}, url);
  const auto open = check_url(anything, url);
  if (!parts) {
    require(parts.error() == errc::invalid_argument, "parse_url fails with invalid_argument");
    require(!checked && !open, "check_url refuses what parse_url refuses");
    return;
  }
  require(!parts->host.empty(), "a host");
  require(parts->port != 0, "a port");
  require(!parts->target.empty() && parts->target[0] == '/', "a target from /");
  for (char ch : parts->host) require(!(ch >= 'A' && ch <= 'Z'), "a lower-case host");
  if (open) require(open->host == parts->host && open->port == parts->port && open->target == parts->target, "same parts");
  for (const auto* r : {&checked, &open}) {
    if (*r) continue;
    const error& e = r->error();
    require(e == errc::destination_refused || e == errc::invalid_argument, "refusals are destination_refused");
    if (url.find("://") != std::string_view::npos) require(e.message().find(url) == std::string::npos, "messages never repeat the URL");
  }
  if (auto a = parse_ip_address(parts->host)) {
    const address_class c = classify(*a);
    require(check_address(anything, *a).has_value() ==
                (c != address_class::multicast && c != address_class::unspecified && c != address_class::reserved),
            "the permissive policy allows all but the never-allowed classes");
  }
}

void check_entry_bytes(std::string_view bytes) {
  auto e = detail::decode_callback_entry(bytes);
  if (!e) {
    require(e.error() == errc::storage_corrupt, "damage is storage_corrupt");
    return;
  }
  require(detail::decode_callback_entry(detail::encode_callback_entry(*e)).value() == *e, "an entry round-trips");
}

}  // namespace
}  // namespace opendsr

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  opendsr::check_url_text(input);
  (void)opendsr::parse_ip_address(input);
  opendsr::check_entry_bytes(input);
  return 0;
}
