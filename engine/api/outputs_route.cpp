// The /outputs routes (outputs_route.hpp). The bodies are parsed in one pass of
// boost::json::basic_parser by a handler that knows their one shape (an object of scalars, two
// of which are objects of strings), so that a duplicate key, which a JSON tree would silently
// collapse, is refused, and each message names the field it is about.
#include "api/outputs_route.hpp"

#include "common/json_handler.hpp"
#include "common/json_text.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

namespace opendsr::detail {
namespace {

namespace json = boost::json;
using namespace std::string_view_literals;

enum class field : std::uint8_t { name, partner, active, endpoint, settings, credentials };

constexpr std::pair<std::string_view, field> fields[] = {
    {"name", field::name},         {"partner", field::partner},   {"active", field::active},
    {"endpoint", field::endpoint}, {"settings", field::settings}, {"credentials", field::credentials},
};

constexpr std::uint32_t bit(field f) noexcept { return std::uint32_t{1} << static_cast<unsigned>(f); }

constexpr std::uint32_t all_fields = bit(field::name) | bit(field::partner) | bit(field::active) |
                                     bit(field::endpoint) | bit(field::settings) | bit(field::credentials);
constexpr std::uint32_t changeable_fields = all_fields & ~(bit(field::name) | bit(field::partner));

std::string_view field_name(field f) noexcept {
  for (const auto& [text, each] : fields)
    if (each == f) return text;
  return "body";
}

// A key from the body is quoted only when it looks like a setting's name (lowercase letters and
// '_', as every partner's are), so that a value pasted where a key belongs is never echoed: a
// credential of letters, digits and dashes looks like a name too broadly drawn.
bool is_plain_name(std::string_view key) noexcept {
  return !key.empty() && key.size() <= 40 &&
         std::all_of(key.begin(), key.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

std::string shown_key(std::string_view key) {
  return is_plain_name(key) ? std::string(key) : std::string("(a key not shown)");
}

// The fields of either body as they arrive; what the body did not name stays nullopt.
struct output_fields {
  std::optional<std::string> name;
  std::optional<std::string> partner;
  std::optional<bool> active;
  std::optional<std::optional<std::string>> endpoint;
  std::optional<std::map<std::string, std::string>> settings;
  std::optional<std::map<std::string, std::string>> credentials;
};

// The basic_parser handler. depth_ 0: before the body; 1: in the body, field_ the field whose
// value comes next; 2: in settings or credentials (field_), key_ the key whose value comes next.
// The first broken rule records the error and returns false, which stops the parser.
class fields_handler : public json_handler_defaults {
 public:

  explicit fields_handler(std::uint32_t allowed) : allowed_(allowed) {}

  output_fields& parsed() noexcept { return fields_; }
  std::optional<error>& failure() noexcept { return failure_; }


  bool on_object_begin(json::error_code&) {
    if (depth_ == 0 || (depth_ == 1 && (field_ == field::settings || field_ == field::credentials))) {
      if (depth_ == 1) map_of(field_).emplace();
      ++depth_;
      return true;
    }
    return wrong_value();
  }

  bool on_object_end(std::size_t, json::error_code&) {
    --depth_;
    return true;
  }

  bool on_array_begin(json::error_code&) { return wrong_value(); }
  bool on_array_end(std::size_t, json::error_code&) { return true; }

  bool on_key_part(json::string_view part, std::size_t, json::error_code&) {
    parts_.append(part.data(), part.size());
    return true;
  }
  bool on_key(json::string_view last, std::size_t, json::error_code&) { return whole(last, &fields_handler::on_whole_key); }

  bool on_string_part(json::string_view part, std::size_t, json::error_code&) {
    parts_.append(part.data(), part.size());
    return true;
  }
  bool on_string(json::string_view last, std::size_t, json::error_code&) {
    return whole(last, &fields_handler::on_whole_string);
  }

  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return wrong_value(); }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return wrong_value(); }
  bool on_double(double, json::string_view, json::error_code&) { return wrong_value(); }

  bool on_bool(bool b, json::error_code&) {
    if (depth_ != 1 || field_ != field::active) return wrong_value();
    fields_.active = b;
    return true;
  }

  bool on_null(json::error_code&) {
    if (depth_ != 1 || field_ != field::endpoint) return wrong_value();
    fields_.endpoint.emplace(std::nullopt);
    return true;
  }

 private:
  // Hands a key or string to `handle` whole: text holding escapes arrives in parts.
  bool whole(json::string_view last, bool (fields_handler::*handle)(std::string_view)) {
    if (parts_.empty()) return (this->*handle)({last.data(), last.size()});
    parts_.append(last.data(), last.size());
    const bool ok = (this->*handle)(parts_);
    parts_.clear();
    return ok;
  }

  bool on_whole_key(std::string_view key) {
    if (depth_ == 2) {
      if (map_of(field_)->contains(std::string(key)))
        return fail(errc::invalid_json, std::string(field_name(field_)) + "." + shown_key(key) + ": duplicate key");
      key_ = key;
      return true;
    }
    const auto* known = std::find_if(std::begin(fields), std::end(fields), [key](const auto& f) { return f.first == key; });
    if (known == std::end(fields) || !(allowed_ & bit(known->second))) {
      if (known != std::end(fields))
        return fail(errc::invalid_request, std::string(key) + ": cannot be changed (remove the output and add it again)");
      const std::string shown = is_plain_name(key) ? "\"" + std::string(key) + "\"" : "(name not shown)";
      return fail(errc::invalid_request, "unknown field " + shown + " (the fields are " + allowed_list() + ")");
    }
    if (seen_ & bit(known->second)) return fail(errc::invalid_json, std::string(key) + ": duplicate key");
    seen_ |= bit(known->second);
    field_ = known->second;
    return true;
  }

  bool on_whole_string(std::string_view value) {
    if (depth_ == 2) {
      map_of(field_)->emplace(std::move(key_), std::string(value));
      key_.clear();
      return true;
    }
    if (depth_ != 1) return wrong_value();
    switch (field_) {
      case field::name: fields_.name.emplace(value); return true;
      case field::partner: fields_.partner.emplace(value); return true;
      case field::endpoint: fields_.endpoint.emplace(std::string(value)); return true;
      default: return wrong_value();
    }
  }

  std::optional<std::map<std::string, std::string>>& map_of(field f) noexcept {
    return f == field::settings ? fields_.settings : fields_.credentials;
  }

  // The value about to arrive has the wrong type: the rule of where it stands.
  bool wrong_value() {
    if (depth_ == 0) return fail(errc::invalid_request, "body: must be a JSON object");
    if (depth_ == 2) return fail(errc::invalid_request, std::string(field_name(field_)) + "." + shown_key(key_) + ": must be a string");
    std::string_view rule;
    switch (field_) {
      case field::name: rule = "must be a string"; break;
      case field::partner: rule = "must be a string (a partner's name, e.g. \"kochava\")"; break;
      case field::active: rule = "must be true or false"; break;
      case field::endpoint: rule = "must be a string (scheme://host[:port]) or null"; break;
      case field::settings:
      case field::credentials: rule = "must be an object of strings"; break;
    }
    return fail(errc::invalid_request, std::string(field_name(field_)) + ": " + std::string(rule));
  }

  std::string allowed_list() const {
    std::string out;
    for (const auto& [text, f] : fields) {
      if (!(allowed_ & bit(f))) continue;
      if (!out.empty()) out += ", ";
      out += text;
    }
    return out;
  }

  bool fail(errc code, std::string message) {
    failure_.emplace(code, std::move(message));
    return false;
  }

  std::uint32_t allowed_;
  std::uint32_t seen_ = 0;
  int depth_ = 0;
  field field_ = field::name;
  std::string key_;    // depth 2: the key whose value comes next (never shown unless plain)
  std::string parts_;  // a key or string delivered in parts
  output_fields fields_;
  std::optional<error> failure_;
};

result<output_fields> parse_fields(std::string_view body, std::uint32_t allowed) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return error(errc::invalid_json, "body: is empty (expected a JSON object)");
  json::parse_options strict;  // no comments, no trailing commas, UTF-8 checked
  strict.max_depth = 3;        // deeper breaks a rule of the handler first
  json::basic_parser<fields_handler> parser(strict, allowed);
  json::error_code ec;
  const std::size_t consumed = parser.write_some(false, body.data(), body.size(), ec);
  if (std::optional<error>& failure = parser.handler().failure()) return std::move(*failure);
  if (!ec && consumed != body.size()) ec = json::error::extra_data;
  if (ec) {
    // Boost reports bad UTF-8 as a syntax error; look again so the message says what is wrong.
    if (!is_valid_utf8(body)) return error(errc::invalid_json, "body: invalid UTF-8");
    return error(errc::invalid_json, "body: not valid JSON (" + ec.message() + " at offset " + std::to_string(consumed) + ")");
  }
  return std::move(parser.handler().parsed());
}

// Text the engine holds is UTF-8 (it came through JSON or its own messages); should a masked
// credential end inside a character, the body stays valid JSON without it.
std::string_view utf8_or(std::string_view text, std::string_view instead) {
  return is_valid_utf8(text) ? text : instead;
}

void append_string_map(std::string& out, const std::map<std::string, std::string>& map) {
  out += '{';
  bool first = true;
  for (const auto& [key, value] : map) {
    if (!is_valid_utf8(key)) continue;
    if (!first) out += ',';
    first = false;
    append_json_string(out, key);
    out += ':';
    append_json_string(out, utf8_or(value, "****"));
  }
  out += '}';
}

// An engine error as the client sees it. The engine reports a definition its partner refuses
// as invalid_argument (a broken precondition, 500 at the HTTP layer); here it is the client's
// input, so 400 with the engine's message, which names the setting and never a credential's
// value (partner.hpp's contract).
error client_error(error e) {
  if (e == errc::invalid_argument) return error(errc::invalid_request, e.message());
  return e;
}

}  // namespace

result<output_definition> parse_output_definition(std::string_view body) {
  auto fields = parse_fields(body, all_fields);
  if (!fields) return std::move(fields).error();
  for (field required : {field::name, field::partner, field::credentials}) {
    const bool present = required == field::name      ? fields->name.has_value()
                         : required == field::partner ? fields->partner.has_value()
                                                      : fields->credentials.has_value();
    if (!present)
      return error(errc::invalid_request,
                   std::string(field_name(required)) + ": is required" +
                       (required == field::credentials ? " (an object of strings, e.g. {\"api_key\":\"...\"})" : ""));
  }
  output_definition out;
  out.name = std::move(*fields->name);
  out.partner = std::move(*fields->partner);
  out.active = fields->active.value_or(true);
  out.config.settings = std::move(fields->settings).value_or(std::map<std::string, std::string>{});
  out.config.credentials = std::move(*fields->credentials);
  if (fields->endpoint) out.config.endpoint = std::move(*fields->endpoint);
  return out;
}

result<output_change> parse_output_change(std::string_view body) {
  auto fields = parse_fields(body, changeable_fields);
  if (!fields) return std::move(fields).error();
  if (!fields->active && !fields->endpoint && !fields->settings && !fields->credentials)
    return error(errc::invalid_request, "body: names no change (give active, endpoint, settings or credentials)");
  return output_change{fields->active, std::move(fields->settings), std::move(fields->credentials),
                       std::move(fields->endpoint)};
}

std::string render_output(const output_info& o) {
  std::string out;
  json_object_writer w(out);
  w.string("name", utf8_or(o.name, "(not UTF-8)"));
  w.string("partner", utf8_or(o.partner, "(not UTF-8)"));
  w.string("domain", utf8_or(o.domain, "(not UTF-8)"));
  w.raw("active", o.active ? "true" : "false");
  if (o.endpoint && is_valid_utf8(*o.endpoint))
    w.string("endpoint", *o.endpoint);
  else
    w.null("endpoint");
  std::string map;
  append_string_map(map, o.settings);
  w.raw("settings", map);
  map.clear();
  append_string_map(map, o.masked_credentials);
  w.raw("credentials", map);
  w.raw("circuit_open", o.circuit_open ? "true" : "false");
  if (o.circuit_reason.empty())
    w.null("circuit_reason");
  else
    w.string("circuit_reason", utf8_or(o.circuit_reason, "(not UTF-8)"));
  w.raw("queued", std::to_string(o.queued));
  w.raw("queued_items", std::to_string(o.queued_items));
  w.raw("batches", std::to_string(o.batches));
  w.raw("dead_batches", std::to_string(o.dead_batches));
  w.raw("max_items", std::to_string(o.max_items));
  w.time("updated", o.updated);
  w.close();
  return out;
}

result<outputs_reply> answer_outputs(engine& e, std::string_view workspace, std::string_view method,
                                     const std::optional<std::string>& name, std::string_view body, timestamp now) {
  if (!name && method == "GET") {
    auto outputs = e.outputs(workspace);
    if (!outputs) return std::move(outputs).error();
    std::string out = "{\"outputs\":[";
    for (std::size_t i = 0; i < outputs->size(); ++i) {
      if (i > 0) out += ',';
      out += render_output((*outputs)[i]);
    }
    out += "]}";
    return outputs_reply{200, std::move(out)};
  }
  if (!name) {
    auto definition = parse_output_definition(body);
    if (!definition) return std::move(definition).error();
    auto added = e.add_output(workspace, *definition, now);
    if (!added) return client_error(std::move(added).error());
    return outputs_reply{201, render_output(*added)};
  }
  if (method == "PATCH") {
    auto change = parse_output_change(body);
    if (!change) return std::move(change).error();
    auto updated = e.update_output(workspace, *name, *change, now);
    if (!updated) return client_error(std::move(updated).error());
    return outputs_reply{200, render_output(*updated)};
  }
  auto removed = e.remove_output(workspace, *name, now);
  if (!removed) return client_error(std::move(removed).error());
  std::string out = "{\"removed\":";
  append_json_string(out, utf8_or(*name, "(not UTF-8)"));
  out += '}';
  return outputs_reply{200, std::move(out)};
}

}  // namespace opendsr::detail
