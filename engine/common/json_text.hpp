// Writing JSON text by hand, byte for byte: the engine's response and callback bodies are signed,
// and the HTTP layer reuses the signature of bytes that did not change, so the same state must
// always render to the same bytes. Key order is the order of the calls.
#pragma once

#include <opendsr/time.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace opendsr::detail {

// True iff text is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

// Appends text as a JSON string literal: quoted; '"', '\\' and control characters escaped
// (\b \f \n \r \t, else \u00XX); everything else copied as is.
// REQUIRES: is_valid_utf8(text), or the output is not valid JSON.
void append_json_string(std::string& out, std::string_view text);

// Appends one JSON object, compact (no whitespace), to a string.
class json_object_writer {
 public:
  explicit json_object_writer(std::string& out) : out_(out) { out_ += '{'; }
  json_object_writer(const json_object_writer&) = delete;
  json_object_writer& operator=(const json_object_writer&) = delete;

  // REQUIRES for every key: plain ASCII that needs no escaping.
  json_object_writer& string(std::string_view key, std::string_view value);
  // A null value when absent.
  json_object_writer& string_or_null(std::string_view key, const std::optional<std::string>& value);
  // RFC 3339 (format_rfc3339); a null value when absent.
  json_object_writer& time(std::string_view key, std::optional<timestamp> value);
  // The standard base64 text of bytes, as a string.
  json_object_writer& base64(std::string_view key, std::string_view bytes);
  json_object_writer& null(std::string_view key);
  // Appends already-rendered JSON text as the value.
  json_object_writer& raw(std::string_view key, std::string_view json);

  // Closes the object. REQUIRES: called once, last.
  void close() { out_ += '}'; }

 private:
  void key(std::string_view k);

  std::string& out_;
  bool first_ = true;
};

}  // namespace opendsr::detail
