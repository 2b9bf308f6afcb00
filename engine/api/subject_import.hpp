// POST /v3/subject-data (docs/import.md): a workspace's profiles and events as JSON Lines, written
// by opendsrd itself, so that importing does not need the daemon stopped (its LMDB store has one
// owner process). The api checks the route, the body size, the credentials and the Content-Type
// first; this answers the body.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/subject_data.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace opendsr::detail {

// The most lines a body may hold: each body is one write transaction, and a line the store
// refuses costs one more attempt of it (import_lines.hpp), so the lines bound the work one POST
// can cause.
inline constexpr std::size_t max_subject_import_lines = 1000;

// Imports `body` into `workspace` in one transaction (the lines the store refuses left out) and
// returns the 200 response's JSON body:
//   {"lines":N,"imported":M,"profiles":P,"events":E,"refused":[{"line":K,"reason":"..."}]}
// lines numbered from 1 within the body, refused in line order, imported = profiles + events.
// Errors: errc::invalid_request for an empty body, one that is not UTF-8, or one of more than
// max_subject_import_lines lines (nothing written); the store's error for a write that is no
// line's fault (nothing written).
result<std::string> import_subject_data(subject_data& data, std::string_view workspace, std::string_view body);

}  // namespace opendsr::detail
