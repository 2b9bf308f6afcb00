// opendsr output add | list | update | remove | activate | deactivate (issue 10): a workspace's
// outputs, managed through the running opendsrd's /v3/outputs routes with the workspace's API
// key (docs/distribution.md). opendsrd holds the store, so the daemon stays up and the change
// takes effect at once.
//
// A credential's value is read from the command line (key=value), an environment variable
// (key=@env:VAR) or a line of standard input (key=@stdin), sent once in the request body, and
// never printed: what comes back is masked by opendsrd.
#pragma once

#include <string>
#include <vector>

namespace opendsr::app {

struct output_command_options {
  // The running opendsrd and the workspace's API key (as opendsr import --url).
  std::string url;
  std::string api_key;
  std::string api_secret;  // never printed
  std::string partner;                   // add: the partner kind ("kochava", "blueshift")
  std::vector<std::string> settings;     // add, update: "key=value" each (update: replaces them all)
  std::vector<std::string> credentials;  // add, update: "key=value", "key=@env:VAR" or "key=@stdin"
  std::string endpoint;                  // add, update: the partner's base URL instead of its own
  bool no_endpoint = false;              // update: back to the partner's own endpoint
  bool inactive = false;                 // add: added inactive
};

// Runs `args` ("output", SUBCOMMAND, [NAME]). Returns the exit status: 0 done, 1 failed (the
// daemon's message on stderr), 2 a usage error.
int output_command(const output_command_options& options, const std::vector<std::string>& args);

}  // namespace opendsr::app
