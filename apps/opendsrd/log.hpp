// opendsrd's structured logs: one line per event on stderr, "ts=... event=... key=value ...",
// written with one write(2) so lines from several threads never interleave. Values never hold
// identity values, request bodies or credentials: callers pass only routes, statuses, counts
// and opendsr's own error messages (which hold none either).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr::app {

using log_field = std::pair<std::string_view, std::string_view>;

// Writes "ts=<now, RFC 3339> level=<level> event=<event> k=v ..." and a newline to stderr. A value
// with a space, '"' or '=' is written in double quotes with '"' and '\' escaped.
void log_event(std::string_view level, std::string_view event, std::initializer_list<log_field> fields = {});

}  // namespace opendsr::app
