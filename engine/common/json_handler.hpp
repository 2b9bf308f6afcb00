// What every strict streaming JSON parser of the engine (a boost::json::basic_parser handler)
// shares: the parser's own size limits lifted (each handler enforces its own rules), and the
// events no handler acts on (document bounds, comments, which the parser options refuse anyway,
// and number fragments before the whole number).
#pragma once

#include <boost/json/basic_parser.hpp>

#include <cstddef>

namespace opendsr::detail {

struct json_handler_defaults {
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  bool on_document_begin(boost::json::error_code&) { return true; }
  bool on_document_end(boost::json::error_code&) { return true; }
  bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }
  bool on_number_part(boost::json::string_view, boost::json::error_code&) { return true; }
};

}  // namespace opendsr::detail
