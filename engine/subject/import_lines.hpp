// Importing profiles and events from JSON Lines (docs/import.md gives the format and the
// reasons): the one implementation behind `opendsr import` (with opendsrd stopped, straight into
// the data directory's store) and opendsrd's POST /v3/subject-data (engine/api/subject_import).
//
// Each line is parsed and checked here, then the good ones are written through
// subject_data::write in transactions of at most batch_lines lines (and about
// batch_bytes of JSON). A transaction the store refuses (a unique identity another
// profile holds, events for a profile that does not exist) names the write at fault
// (subject_data.hpp: "writes[3].events[0]: ..."): that line is refused and left out, and the rest
// of the transaction is written again, so k refused lines cost k + 1 attempts.
//
// No reason holds an identity value, an attribute or an event: a name from the input (a field,
// an identity type) is shown only when it looks like a name.
//
// Thread safety: a pure function of its arguments over the subject_data, which is thread-safe.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/subject_data.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

// A longer line is refused ("longer than 16 MiB") without being parsed.
inline constexpr std::size_t max_import_line_bytes = std::size_t{16} << 20;
// A transaction is cut once it holds this many bytes of JSON, whatever its line count.
inline constexpr std::size_t max_transaction_bytes = std::size_t{8} << 20;

struct refused_line {
  std::uint64_t line = 0;  // its number, as counted by the caller (first_line_number onwards)
  std::string reason;      // e.g. "identities: unknown identity type \"emial\""
};

struct import_report {
  std::uint64_t lines = 0;     // every line, blank ones included
  std::uint64_t profiles = 0;  // profile lines written
  std::uint64_t events = 0;    // event lines written
  std::vector<refused_line> refused;  // by line number, ascending

  std::uint64_t imported() const noexcept { return profiles + events; }
};

// Imports `jsonl`: lines end with '\n' (a '\r' before it is dropped; the last line needs none;
// an empty text has no line). Line i of the text (from 0) is numbered first_line_number + i.
// Blank lines (spaces, tabs) count as lines and are skipped.
// Returns the report, or the store's error for a write that is no line's fault (disk full,
// errc::storage_conflict ten times in a row, ...): the transaction it was writing changed
// nothing, and those before it stay committed.
// A transaction holds at most batch_lines good lines and is cut once it holds batch_bytes of JSON
// (SIZE_MAX for both: the whole text in one transaction).
// REQUIRES: batch_lines > 0.
result<import_report> import_lines(subject_data& data, std::string_view workspace, std::string_view jsonl,
                                   std::uint64_t first_line_number, std::size_t batch_lines,
                                   std::size_t batch_bytes = max_transaction_bytes);

}  // namespace opendsr::detail
