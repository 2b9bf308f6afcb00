// opendsr import: loads profiles and events from JSON Lines into a workspace of the data
// directory's store (issue 9). docs/import.md gives the format, the messages and the output.
#pragma once

#include <filesystem>
#include <string>

namespace opendsr::app {

struct import_options {
  std::filesystem::path data_dir;
  // The workspace the profiles belong to. REQUIRES: one the data directory's workspace directory
  // holds (opendsr workspace add), else the command refuses to start.
  std::string workspace;
  // The JSON Lines file; "-" or empty: standard input.
  std::string file;
  // Lines per write transaction at most. Default: 1000.
  std::size_t batch_lines = 1000;
};

// Runs the import. Returns the exit status: 0 every line imported, 1 a line refused or the import
// failed (store, file), 2 a usage error. Bad lines are reported on stderr by line number and
// reason, never with an identity value or an attribute.
int import_command(const import_options& options);

}  // namespace opendsr::app
