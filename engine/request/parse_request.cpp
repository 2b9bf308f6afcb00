// parse_request: one streaming pass over the body with boost::json::basic_parser. The handler
// below is a small state machine over the shape of a v3 body: it validates each value as it
// arrives and builds the request directly, so no JSON tree is ever allocated. The rules and
// their messages are listed in docs/protocol.md.
#include <opendsr/request.hpp>

#include "common/json_handler.hpp"
#include "common/json_text.hpp"
#include "request/field_rules.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace opendsr {
namespace {

namespace json = boost::json;

// The identity limit of [MP] ("up to 50 identities in a single request") can never be reached
// by a valid body: identity types are dictionary keys, each type may appear once, so a valid
// request holds at most identity_type_count identities. Anything more breaks the unknown-type
// or one-identity-per-type rule first.
constexpr std::size_t max_identities = 50;
static_assert(identity_type_count <= max_identities);

constexpr std::size_t max_callback_urls = 10;
constexpr std::size_t max_callback_url_length = 2048;
constexpr std::size_t max_group_id_code_points = 256;

// What the next JSON value is: the field it belongs to, as decided by the key before it and the
// object or array it sits in.
enum class slot : std::uint8_t {
  body,       // the document itself
  ignored,    // unknown top-level field, another processor's extension, or anything inside one
  regulation,
  subject_request_id,
  subject_request_type,
  submitted_time,
  subject_identities,
  api_version,
  status_callback_urls,
  group_id,
  extensions,
  own_extension,         // extensions[<processor domain>]
  skip_waiting_period,   // extensions[<processor domain>].skip_waiting_period
  extension_identities,  // extensions[<processor domain>].subject_identities
  identity,              // one entry of either subject_identities object
  identity_value,
  identity_encoding,
  callback_url,          // one element of status_callback_urls
};

constexpr std::uint32_t bit(slot s) noexcept { return std::uint32_t{1} << static_cast<unsigned>(s); }

// The fields null may stand for: null means the same as leaving the field out.
constexpr std::uint32_t nullable = bit(slot::subject_identities) | bit(slot::api_version) |
                                   bit(slot::status_callback_urls) | bit(slot::group_id) |
                                   bit(slot::extensions) | bit(slot::own_extension) |
                                   bit(slot::skip_waiting_period) | bit(slot::extension_identities);

constexpr std::uint32_t required_fields = bit(slot::regulation) | bit(slot::subject_request_id) |
                                          bit(slot::subject_request_type) | bit(slot::submitted_time);

enum class frame_kind : std::uint8_t {
  body,
  identities,
  identity,
  callback_urls,
  extensions,
  own_extension,
  ignored_object,
  ignored_array,
};

struct frame {
  frame_kind kind;
  std::uint32_t seen = 0;      // bits of the known keys met so far (slots, or value/encoding)
  std::size_t keys_begin = 0;  // this object's first entry in the handler's unknown-key list
};

slot top_level_field(std::string_view key) noexcept {
  static constexpr std::pair<std::string_view, slot> fields[] = {
      {"regulation", slot::regulation},
      {"subject_request_id", slot::subject_request_id},
      {"subject_request_type", slot::subject_request_type},
      {"submitted_time", slot::submitted_time},
      {"subject_identities", slot::subject_identities},
      {"api_version", slot::api_version},
      {"status_callback_urls", slot::status_callback_urls},
      {"group_id", slot::group_id},
      {"extensions", slot::extensions},
  };
  for (const auto& [name, s] : fields)
    if (key == name) return s;
  return slot::ignored;
}

// The basic_parser handler. On the first broken rule it records the error and returns false,
// which stops the parser.
class request_handler : public detail::json_handler_defaults {
 public:

  explicit request_handler(const parse_options& options) : options_(options) {}

  request& parsed() noexcept { return request_; }
  std::optional<error>& failure() noexcept { return failure_; }


  bool on_object_begin(json::error_code&) {
    switch (const slot s = next_slot()) {
      case slot::body: return push(frame_kind::body);
      case slot::ignored: return push(frame_kind::ignored_object);
      case slot::extensions: return push(frame_kind::extensions);
      case slot::own_extension: return push(frame_kind::own_extension);
      case slot::subject_identities:
      case slot::extension_identities:
        in_extension_ = s == slot::extension_identities;
        return push(frame_kind::identities);
      case slot::identity:
        request_.identities.push_back({identity_type_, {}});
        return push(frame_kind::identity);
      default: return fail_rule(s);
    }
  }

  bool on_object_end(std::size_t, json::error_code&) {
    const frame f = stack_.back();
    if (keys_.size() > f.keys_begin && !unknown_keys_distinct(f)) return false;
    stack_.pop_back();
    switch (f.kind) {
      case frame_kind::identity: return finish_identity(f);
      case frame_kind::body: return finish_body(f);
      default: return true;
    }
  }

  bool on_array_begin(json::error_code&) {
    switch (const slot s = next_slot()) {
      case slot::ignored: return push(frame_kind::ignored_array);
      case slot::status_callback_urls: return push(frame_kind::callback_urls);
      default: return fail_rule(s);
    }
  }

  bool on_array_end(std::size_t, json::error_code&) {
    stack_.pop_back();
    return true;
  }

  bool on_key_part(json::string_view part, std::size_t, json::error_code&) {
    key_buffer_.append(part.data(), part.size());
    return true;
  }

  bool on_key(json::string_view last, std::size_t, json::error_code&) {
    return whole(key_buffer_, last, &request_handler::on_whole_key);
  }

  bool on_string_part(json::string_view part, std::size_t, json::error_code&) {
    string_buffer_.append(part.data(), part.size());
    return true;
  }

  bool on_string(json::string_view last, std::size_t, json::error_code&) {
    return whole(string_buffer_, last, &request_handler::on_whole_string);
  }

  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return on_scalar(); }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return on_scalar(); }
  bool on_double(double, json::string_view, json::error_code&) { return on_scalar(); }

  bool on_bool(bool b, json::error_code&) {
    const slot s = next_slot();
    if (s == slot::skip_waiting_period) {
      request_.skip_waiting_period = b;
      return true;
    }
    return on_scalar_in(s);
  }

  bool on_null(json::error_code&) {
    const slot s = next_slot();
    return s == slot::ignored || (nullable & bit(s)) != 0 || fail_rule(s);
  }

 private:
  // The slot of the value about to arrive.
  slot next_slot() const noexcept {
    if (stack_.empty()) return slot::body;
    switch (stack_.back().kind) {
      case frame_kind::ignored_object:
      case frame_kind::ignored_array: return slot::ignored;
      case frame_kind::callback_urls: return slot::callback_url;
      default: return pending_;
    }
  }

  bool push(frame_kind kind) {
    stack_.push_back({kind, 0, keys_.size()});
    return true;
  }

  // Hands a key or string to `handle` whole: the parser delivers text holding escapes in parts,
  // which `parts` has collected; the usual case, no parts, is passed on without a copy.
  bool whole(std::string& parts, json::string_view last, bool (request_handler::*handle)(std::string_view)) {
    if (parts.empty()) return (this->*handle)({last.data(), last.size()});
    parts.append(last.data(), last.size());
    const bool ok = (this->*handle)(parts);
    parts.clear();
    return ok;
  }

  bool on_scalar() { return on_scalar_in(next_slot()); }
  bool on_scalar_in(slot s) { return s == slot::ignored || fail_rule(s); }

  bool on_whole_key(std::string_view key) {
    frame& f = stack_.back();
    switch (f.kind) {
      case frame_kind::body: return known_key(f, top_level_field(key), key);
      case frame_kind::extensions:
        return known_key(f, key == options_.processor_domain ? slot::own_extension : slot::ignored, key);
      case frame_kind::own_extension:
        return known_key(f, key == "skip_waiting_period"  ? slot::skip_waiting_period
                            : key == "subject_identities" ? slot::extension_identities
                                                          : slot::ignored,
                         key);
      case frame_kind::identities: return identity_key(key);
      case frame_kind::identity:
        if (key == "value") return known_key(f, slot::identity_value, key);
        if (key == "encoding") return known_key(f, slot::identity_encoding, key);
        return fail(errc::invalid_request, identity_path() + ": unknown key (an identity has only value and encoding)");
      default:  // ignored_object
        remember_unknown_key(key);
        return true;
    }
  }

  // A key of an object with a fixed set of fields: a known field may appear once; the others
  // are ignored but still may not repeat.
  bool known_key(frame& f, slot s, std::string_view key) {
    pending_ = s;
    if (s == slot::ignored) {
      remember_unknown_key(key);
      return true;
    }
    if (f.seen & bit(s)) return fail(errc::invalid_json, path_of(s) + ": duplicate key");
    f.seen |= bit(s);
    return true;
  }

  bool identity_key(std::string_view key) {
    pending_ = slot::identity;
    const std::optional<identity_type> t = identity_type_from_opendsr_name(key);
    // An unknown key is not echoed: a misplaced identity value could sit in it.
    if (!t) return fail(errc::invalid_request, identities_path() + ": unknown identity type (see GET /v3/discovery)");
    identity_type_ = *t;
    // Distribution rule 5 of seed 004 (a type both at top level and in the extension): a standard
    // type is refused in the extension whether or not it is also at the top level, so the rule
    // holds without waiting for the other object, which may come later in the body.
    if (in_extension_ && !is_extension_only(*t))
      return fail(errc::invalid_request,
                  "The same identity type may not be provided in both subject_identities and the extensions; '" +
                      std::string(key) + "' belongs in subject_identities only. " + please_check(key));
    if (!in_extension_ && is_extension_only(*t))
      return fail(errc::invalid_request,
                  identity_path() + ": only allowed in extensions." + options_.processor_domain + ".subject_identities");
    // Distribution rules 1 to 3: one identity per type. Types are the keys of their object, and
    // the two objects hold disjoint types, so a repeated key (or both spellings of
    // roku_publisher_id) is the only way to give a type twice.
    const auto type_bit = std::uint32_t{1} << static_cast<unsigned>(*t);
    const bool alias_spelling = key != opendsr_name(*t);  // only roku_publishing_id
    if (identity_types_seen_ & type_bit) {
      if (*t == identity_type::mpid)
        return fail(errc::invalid_request, "Only one mpid per request is allowed. " + please_check(key));
      if (*t == identity_type::roku_publisher_id && alias_spelling != roku_alias_seen_)
        return fail(errc::invalid_request,
                    "Only one identity of each type per request is allowed, and roku_publishing_id is an alias of "
                    "roku_publisher_id. Please check 'roku_publisher_id' and 'roku_publishing_id' in subject_identities.");
      return fail(errc::invalid_request, "Only one identity of each type per request is allowed. " + please_check(key));
    }
    identity_types_seen_ |= type_bit;
    roku_alias_seen_ = roku_alias_seen_ || alias_spelling;
    return true;
  }

  bool on_whole_string(std::string_view v) {
    switch (const slot s = next_slot()) {
      case slot::ignored: return true;
      case slot::regulation:
        if (v == "gdpr") request_.regulation = regulation::gdpr;
        else if (v == "ccpa") request_.regulation = regulation::ccpa;
        else return fail_rule(s);
        return true;
      case slot::subject_request_id:
        if (!detail::is_lowercase_uuid_v4(v)) return fail_rule(s);
        request_.subject_request_id.assign(v);
        return true;
      case slot::subject_request_type:
        if (v == "access") request_.type = request_type::access;
        else if (v == "portability") request_.type = request_type::portability;
        else if (v == "erasure") request_.type = request_type::erasure;
        else return fail_rule(s);
        return true;
      case slot::submitted_time: {
        result<timestamp> t = parse_rfc3339(v);
        if (!t) return fail(errc::invalid_request, rule_message(s) + " (" + t.error().message() + ")");
        request_.submitted_time = *t;
        return true;
      }
      case slot::api_version: return v == "3.0" || fail_rule(s);
      case slot::group_id: {
        const std::size_t n = detail::count_code_points(v);
        if (n == 0 || n > max_group_id_code_points) return fail_rule(s);
        request_.group_id.emplace(v);
        return true;
      }
      case slot::callback_url: return callback_url(v);
      case slot::identity_value:
        if (v.empty()) return fail_rule(s);
        if (identity_type_ == identity_type::mpid && !detail::is_canonical_int64(v))
          return fail(errc::invalid_request, identity_path() + ".value: must be a signed 64-bit integer in decimal");
        request_.identities.back().value.assign(v);
        return true;
      case slot::identity_encoding: return v == "raw" || fail_rule(s);
      default: return fail_rule(s);
    }
  }

  bool callback_url(std::string_view url) {
    std::vector<std::string>& urls = request_.status_callback_urls;
    if (urls.size() == max_callback_urls)
      return fail(errc::invalid_request, "status_callback_urls: at most 10 URLs");
    const std::string where = "status_callback_urls[" + std::to_string(urls.size()) + "]";
    if (url.size() > max_callback_url_length)
      return fail(errc::invalid_request, where + ": longer than 2048 characters");
    if (!detail::is_http_url(url)) return fail(errc::invalid_request, where + ": must be an absolute http or https URL");
    // The policy's messages name the rule broken and never repeat the URL.
    if (auto checked = check_url(options_.callback_destinations, url); !checked)
      return fail(errc::invalid_request, where + ": " + checked.error().message());
    if (std::find(urls.begin(), urls.end(), url) != urls.end())
      return fail(errc::invalid_request, where + ": repeats an earlier URL");
    urls.emplace_back(url);
    return true;
  }

  bool finish_identity(const frame& f) {
    if (!(f.seen & bit(slot::identity_value))) return fail(errc::invalid_request, identity_path() + ".value: is required");
    if (!(f.seen & bit(slot::identity_encoding)))
      return fail(errc::invalid_request, identity_path() + ".encoding: is required (\"raw\")");
    return true;
  }

  bool finish_body(const frame& f) {
    if (const std::uint32_t missing = required_fields & ~f.seen) {
      for (slot s : {slot::regulation, slot::subject_request_id, slot::subject_request_type, slot::submitted_time})
        if (missing & bit(s)) return fail(errc::invalid_request, path_of(s) + ": is required");
    }
    std::vector<identity>& ids = request_.identities;
    if (ids.empty())
      return fail(errc::invalid_request, "subject_identities: at least one identity is required (here or in extensions." +
                                             options_.processor_domain + ".subject_identities)");
    if (ids.size() > 1 && (identity_types_seen_ & (std::uint32_t{1} << static_cast<unsigned>(identity_type::mpid))))
      return fail(errc::invalid_request, "If an MPID is provided, it must be the only identity in the request.");
    std::sort(ids.begin(), ids.end(), [](const identity& a, const identity& b) { return a.type < b.type; });
    return true;
  }

  // Unknown keys are kept in one list while their object is open; at its end they are sorted
  // and compared, which costs O(k log k) for k keys however the client orders them.
  void remember_unknown_key(std::string_view key) {
    keys_.emplace_back(key_chars_.size(), key.size());
    key_chars_.append(key);
  }

  bool unknown_keys_distinct(const frame& f) {
    const auto first = keys_.begin() + static_cast<std::ptrdiff_t>(f.keys_begin);
    const auto text = [this](const std::pair<std::size_t, std::size_t>& k) {
      return std::string_view(key_chars_).substr(k.first, k.second);
    };
    std::sort(first, keys_.end(), [&](const auto& a, const auto& b) { return text(a) < text(b); });
    if (std::adjacent_find(first, keys_.end(), [&](const auto& a, const auto& b) { return text(a) == text(b); }) !=
        keys_.end())
      return fail(errc::invalid_json, where_ignored(f) + ": duplicate key");
    const std::size_t chars_begin =
        std::min_element(first, keys_.end(), [](const auto& a, const auto& b) { return a.first < b.first; })->first;
    key_chars_.resize(chars_begin);
    keys_.erase(first, keys_.end());
    return true;
  }

  // Names the object holding a repeated unknown key without echoing any client-chosen name.
  std::string where_ignored(const frame& f) const {
    switch (f.kind) {
      case frame_kind::body: return "body";
      case frame_kind::extensions: return "extensions";
      case frame_kind::own_extension: return "extensions." + options_.processor_domain;
      default: break;
    }
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
      if (it->kind == frame_kind::extensions) return "extensions (in another processor's extension)";
    return "body (in an ignored field)";
  }

  std::string identities_path() const {
    return in_extension_ ? "extensions." + options_.processor_domain + ".subject_identities" : "subject_identities";
  }

  // The closing sentence of the distribution rules' messages, in the style of seed 004's example
  // ("Please check the 'mpids' collection in the extensions."). `key` is a known type name.
  std::string please_check(std::string_view key) const {
    return "Please check '" + std::string(key) + "' in " + identities_path() + ".";
  }

  std::string identity_path() const { return identities_path() + "." + std::string(opendsr_name(identity_type_)); }

  std::string path_of(slot s) const {
    switch (s) {
      case slot::regulation: return "regulation";
      case slot::subject_request_id: return "subject_request_id";
      case slot::subject_request_type: return "subject_request_type";
      case slot::submitted_time: return "submitted_time";
      case slot::subject_identities: return "subject_identities";
      case slot::api_version: return "api_version";
      case slot::status_callback_urls: return "status_callback_urls";
      case slot::group_id: return "group_id";
      case slot::extensions: return "extensions";
      case slot::own_extension: return "extensions." + options_.processor_domain;
      case slot::skip_waiting_period: return "extensions." + options_.processor_domain + ".skip_waiting_period";
      case slot::extension_identities: return "extensions." + options_.processor_domain + ".subject_identities";
      case slot::identity: return identity_path();
      case slot::identity_value: return identity_path() + ".value";
      case slot::identity_encoding: return identity_path() + ".encoding";
      case slot::callback_url:
        return "status_callback_urls[" + std::to_string(request_.status_callback_urls.size()) + "]";
      case slot::body:
      case slot::ignored: break;
    }
    return "body";
  }

  // The rule a value of slot s must follow, as a message naming the field.
  std::string rule_message(slot s) const {
    std::string_view rule;
    switch (s) {
      case slot::body: rule = "must be a JSON object"; break;
      case slot::regulation: rule = "must be \"gdpr\" or \"ccpa\""; break;
      case slot::subject_request_id: rule = "must be a lowercase UUID v4"; break;
      case slot::subject_request_type: rule = "must be \"access\", \"portability\" or \"erasure\""; break;
      case slot::submitted_time: rule = "must be an RFC 3339 date-time or a date (YYYY-MM-DD)"; break;
      case slot::api_version: rule = "must be \"3.0\""; break;
      case slot::status_callback_urls: rule = "must be an array of URLs"; break;
      case slot::group_id: rule = "must be a string of 1 to 256 characters"; break;
      case slot::skip_waiting_period: rule = "must be true or false"; break;
      case slot::identity: rule = "must be an object with value and encoding"; break;
      case slot::identity_value: rule = "must be a non-empty string"; break;
      case slot::identity_encoding: rule = "must be \"raw\""; break;
      case slot::callback_url: rule = "must be an absolute http or https URL"; break;
      case slot::subject_identities:
      case slot::extensions:
      case slot::own_extension:
      case slot::extension_identities:
      case slot::ignored: rule = "must be an object"; break;
    }
    return path_of(s) + ": " + std::string(rule);
  }

  bool fail_rule(slot s) { return fail(errc::invalid_request, rule_message(s)); }

  bool fail(errc code, std::string message) {
    failure_.emplace(code, std::move(message));
    return false;
  }

  const parse_options& options_;
  request request_;
  std::optional<error> failure_;

  boost::container::small_vector<frame, 8> stack_;
  slot pending_ = slot::body;
  identity_type identity_type_ = identity_type::email;  // of the identity being read
  bool in_extension_ = false;                             // reading the extension's identities
  std::uint32_t identity_types_seen_ = 0;
  bool roku_alias_seen_ = false;  // roku_publisher_id was spelled roku_publishing_id

  std::string key_buffer_;     // a key delivered in parts (it held escapes)
  std::string string_buffer_;  // a string delivered in parts
  std::string key_chars_;      // the text of the unknown keys of the open objects
  std::vector<std::pair<std::size_t, std::size_t>> keys_;  // (offset, length) in key_chars_
};

error json_error(std::string_view body, std::size_t offset, const json::error_code& ec, std::size_t max_depth) {
  if (body.empty()) return {errc::invalid_json, "body: is empty (expected a JSON object)"};
  if (ec == json::error::too_deep)
    return {errc::invalid_json, "body: nested deeper than " + std::to_string(max_depth) + " levels"};
  // Boost reports bad UTF-8 as a syntax error; look again so the message says what is wrong.
  if (!detail::is_valid_utf8(body)) return {errc::invalid_json, "body: invalid UTF-8"};
  return {errc::invalid_json, "body: not valid JSON (" + ec.message() + " at offset " + std::to_string(offset) + ")"};
}

}  // namespace

result<request> parse_request(std::string_view body, const parse_options& options) {
  json::parse_options strict;  // no comments, no trailing commas, UTF-8 checked
  strict.max_depth = options.max_depth;
  json::basic_parser<request_handler> parser(strict, options);
  json::error_code ec;
  const std::size_t consumed = parser.write_some(false, body.data(), body.size(), ec);
  if (std::optional<error>& failure = parser.handler().failure()) return std::move(*failure);
  if (ec) return json_error(body, consumed, ec, options.max_depth);
  // write_some stops after one complete value (and its trailing whitespace); more is an error.
  if (consumed != body.size()) return json_error(body, consumed, json::error::extra_data, options.max_depth);
  return std::move(parser.handler().parsed());
}

}  // namespace opendsr
