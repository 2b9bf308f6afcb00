#include "api/subject_import.hpp"

#include "common/json_text.hpp"
#include "subject/import_lines.hpp"

#include <algorithm>
#include <cstdint>

namespace opendsr::detail {

result<std::string> import_subject_data(subject_data& data, std::string_view workspace, std::string_view body) {
  if (body.empty()) return error(errc::invalid_request, "the body is empty: send JSON Lines, one profile or event a line");
  if (!is_valid_utf8(body)) return error(errc::invalid_request, "the body is not UTF-8");
  // A final '\n' ends the last line rather than starting another.
  const std::size_t lines =
      static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n')) + (body.back() == '\n' ? 0 : 1);
  if (lines > max_subject_import_lines)
    return error(errc::invalid_request, "the body holds " + std::to_string(lines) + " lines, more than " +
                                            std::to_string(max_subject_import_lines) + ": send smaller batches");
  auto report = import_lines(data, workspace, body, 1, max_subject_import_lines, SIZE_MAX);
  if (!report) return std::move(report).error();

  std::string out = "{\"lines\":" + std::to_string(report->lines) + ",\"imported\":" +
                    std::to_string(report->imported()) + ",\"profiles\":" + std::to_string(report->profiles) +
                    ",\"events\":" + std::to_string(report->events) + ",\"refused\":[";
  bool first = true;
  for (const refused_line& r : report->refused) {
    if (!first) out += ',';
    first = false;
    out += "{\"line\":" + std::to_string(r.line) + ",\"reason\":";
    // Reasons are ASCII (names from the input are shown only when plain); the check keeps the
    // body valid JSON whatever a store's message holds.
    append_json_string(out, is_valid_utf8(r.reason) ? std::string_view(r.reason) : std::string_view("(reason not shown)"));
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace opendsr::detail
