// Command-line flags for the opendsr programs: "--name value" or "--name=value", switches
// without a value, and a --help text that documents every flag with its default.
#pragma once

#include <opendsr/result.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::app {

class flag_set {
 public:
  // A flag taking a string; `target` holds the default and receives the value. `shown_default`
  // describes a default that is computed later (e.g. "DIR/processor.key").
  void add(std::string name, std::string value_name, std::string help, std::string& target,
           std::string shown_default = {});
  // A flag taking an unsigned integer in [min, max].
  void add(std::string name, std::string value_name, std::string help, std::uint64_t& target, std::uint64_t min,
           std::uint64_t max);
  // A flag that may be given many times; each value is appended to `target`. Default: none.
  void add_repeated(std::string name, std::string value_name, std::string help, std::vector<std::string>& target);
  // A switch: present sets `target` to true. Default: false.
  void add_switch(std::string name, std::string help, bool& target);

  // Parses argv[first..argc). Returns the arguments that are not flags (in order), or
  // errc::invalid_argument naming an unknown flag, a missing value or a bad number.
  // "--help" sets help_requested().
  result<std::vector<std::string>> parse(int argc, char** argv, int first = 1);

  bool help_requested() const noexcept { return help_; }

  // One paragraph per flag: "--name VALUE  help (default: ...)".
  std::string usage() const;

 private:
  struct flag {
    std::string name;
    std::string value_name;  // empty for a switch
    std::string help;
    std::string default_text;
    std::function<result<void>(std::string_view)> set;
  };
  std::vector<flag> flags_;
  bool help_ = false;
};

// Splits "host:port" (or "[v6]:port"). Returns errc::invalid_argument for anything else.
struct host_port {
  std::string host;
  std::uint16_t port = 0;
};
result<host_port> parse_host_port(std::string_view text);

}  // namespace opendsr::app
