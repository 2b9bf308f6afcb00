// opendsr import: loads profiles and events from JSON Lines into a workspace (issue 9): straight
// into the data directory's store with opendsrd stopped, or through the running opendsrd's
// POST /v3/subject-data (--url). docs/import.md gives the format, the messages and the output.
#pragma once

#include <filesystem>
#include <string>

namespace opendsr::app {

struct import_options {
  std::filesystem::path data_dir;
  // The workspace the profiles belong to. REQUIRES: one the data directory's workspace directory
  // holds (opendsr workspace add), else the command refuses to start. Empty with `url`: the
  // workspace is the API key's.
  std::string workspace;
  // When set, the batches go to the opendsrd listening there ("http://127.0.0.1:8080"), as
  // POST {url}/v3/subject-data with the workspace's API key and secret, and data_dir is not
  // used. Default: empty (the store itself; opendsrd must be stopped).
  std::string url;
  std::string api_key;
  std::string api_secret;  // never printed
  // The JSON Lines file; "-" or empty: standard input.
  std::string file;
  // Lines per write transaction (per request with `url`, where at most 1000) at most. Default: 1000.
  std::size_t batch_lines = 1000;
};

// Runs the import. Returns the exit status: 0 every line imported, 1 a line refused or the import
// failed (store, file), 2 a usage error. Bad lines are reported on stderr by line number and
// reason, never with an identity value or an attribute.
int import_command(const import_options& options);

}  // namespace opendsr::app
