// Checks and helpers the partner adapters (adapters/kochava, adapters/blueshift) share: reading an
// output's settings and credentials, the endpoint override, and the parts of an HTTP answer every
// partner reads the same way. Pure functions of their arguments; nothing here does I/O.
//
// Every message names the partner and the setting, and never holds a credential's value.
#pragma once

#include <opendsr/http_client.hpp>
#include <opendsr/outbound_policy.hpp>
#include <opendsr/partner.hpp>
#include <opendsr/result.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr::detail {

using partner_values = std::map<std::string, std::string>;

// A setting's or credential's name as a message shows it: quoted, every byte outside printable
// ASCII shown as '?', cut to 64 bytes (a name is chosen by whoever configures the output).
inline std::string quoted_name(std::string_view name) {
  constexpr std::size_t limit = 64;
  std::string out = "\"";
  for (std::size_t i = 0; i < name.size() && i < limit; ++i) {
    const char c = name[i];
    out += (c >= 0x20 && c < 0x7F && c != '"') ? c : '?';
  }
  if (name.size() > limit) out += "...";
  out += '"';
  return out;
}

// errc::invalid_argument naming the first key of `given` that `known` does not list.
// `what` is "setting" or "credential".
inline result<void> check_known_names(std::string_view partner, std::string_view what, const partner_values& given,
                                      std::initializer_list<std::string_view> known) {
  for (const auto& [name, value] : given) {
    if (std::find(known.begin(), known.end(), name) == known.end())
      return error(errc::invalid_argument, std::string(partner) + ": unknown " + std::string(what) + " " +
                                               quoted_name(name));
  }
  return {};
}

// The value given for `name`, or nullptr.
inline const std::string* find_value(const partner_values& given, std::string_view name) {
  auto it = given.find(std::string(name));
  return it == given.end() ? nullptr : &it->second;
}

// The setting `name`, one of `choices`; the first choice when absent. errc::invalid_argument
// listing the choices otherwise.
inline result<std::string_view> choice_setting(std::string_view partner, const partner_values& settings,
                                              std::string_view name, std::initializer_list<std::string_view> choices) {
  const std::string* value = find_value(settings, name);
  if (value == nullptr) return *choices.begin();
  for (std::string_view choice : choices)
    if (*value == choice) return choice;
  std::string listed;
  for (std::string_view choice : choices) listed += (listed.empty() ? "\"" : ", \"") + std::string(choice) + '"';
  return error(errc::invalid_argument, std::string(partner) + ": setting " + std::string(name) + " must be one of " + listed);
}

// The credential `name`: errc::invalid_argument unless it is present and 1 to 1024 bytes of
// visible ASCII (it travels in a header), and, when `no_colon`, holds no ':' (an HTTP Basic user
// name cannot). The message names the credential only.
inline result<std::string> required_credential(std::string_view partner, const partner_values& credentials,
                                               std::string_view name, bool no_colon) {
  const std::string* value = find_value(credentials, name);
  const std::string prefix = std::string(partner) + ": credential " + std::string(name);
  if (value == nullptr || value->empty()) return error(errc::invalid_argument, prefix + " is required");
  if (value->size() > 1024) return error(errc::invalid_argument, prefix + " is longer than 1024 bytes");
  for (char c : *value) {
    if (c <= 0x20 || c >= 0x7F)
      return error(errc::invalid_argument, prefix + " must be visible ASCII (no space or control character)");
    if (no_colon && c == ':') return error(errc::invalid_argument, prefix + " must not contain ':'");
  }
  return *value;
}

// The base URL requests go to: `own_base` when `endpoint` is nullopt, else the endpoint, which
// must be http(s)://host[:port] with no path, query or fragment (a single trailing '/' is
// dropped). errc::invalid_argument naming the rule; the message does not repeat the endpoint.
inline result<std::string> partner_base_url(std::string_view partner, const std::optional<std::string>& endpoint,
                                            std::string_view own_base) {
  if (!endpoint) return std::string(own_base);
  std::string_view text = *endpoint;
  if (text.ends_with('/')) text.remove_suffix(1);
  auto parts = parse_url(text);
  if (!parts) return error(errc::invalid_argument, std::string(partner) + ": endpoint: " + parts.error().message());
  const std::string_view authority = text.substr(text.find("://") + 3);
  if (authority.find_first_of("/?#") != std::string_view::npos)
    return error(errc::invalid_argument, std::string(partner) +
                                             ": endpoint must be scheme://host[:port], with no path, query or fragment");
  return std::string(parts->https ? "https://" : "http://") + std::string(authority);
}

// True iff status is 2xx.
constexpr bool is_success_status(int status) noexcept { return status >= 200 && status <= 299; }

// The response's Retry-After when it is delta-seconds (RFC 9110 §10.2.3), with optional
// surrounding spaces; nullopt when absent or an HTTP-date (not read: a partner is given no
// clock). Values past 10 digits are cut to 9,999,999,999 s (the dispatcher caps them anyway).
inline std::optional<std::chrono::microseconds> retry_after_of(const http_client_response& response) {
  auto header = response.headers.get("Retry-After");
  if (!header) return std::nullopt;
  std::string_view text = *header;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  std::int64_t seconds = 0;
  for (char c : text) {
    seconds = seconds * 10 + (c - '0');
    if (seconds > 9'999'999'999) {
      seconds = 9'999'999'999;
      break;
    }
  }
  return std::chrono::seconds(seconds);
}

// A verdict of `kind` with `message`; a retry carries the response's Retry-After.
inline forward_verdict partner_verdict(forward_verdict_kind kind, const http_client_response& response,
                                       std::string message) {
  forward_verdict v;
  v.kind = kind;
  v.message = std::move(message);
  if (kind == forward_verdict_kind::retry) v.retry_after = retry_after_of(response);
  return v;
}

}  // namespace opendsr::detail
