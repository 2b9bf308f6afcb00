#include "opendsrd/log.hpp"

#include <opendsr/clock.hpp>

#include <unistd.h>

namespace opendsr::app {
namespace {

void append_value(std::string& out, std::string_view v) {
  const bool quote = v.empty() || v.find_first_of(" \"=\\\t\n") != std::string_view::npos;
  if (!quote) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' || c == '\t' ? ' ' : c;
  }
  out += '"';
}

}  // namespace

void log_event(std::string_view level, std::string_view event, std::initializer_list<log_field> fields) {
  std::string line = "ts=" + format_rfc3339(system_clock().now()) + " level=" + std::string(level) + " event=";
  append_value(line, event);
  for (const auto& [key, value] : fields) {
    line += ' ';
    line += key;
    line += '=';
    append_value(line, value);
  }
  line += '\n';
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n <= 0) return;  // nowhere left to report it
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace opendsr::app
