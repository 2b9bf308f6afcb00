#include "common/flags.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

namespace opendsr::app {
namespace {

result<std::uint64_t> parse_unsigned(std::string_view name, std::string_view text, std::uint64_t min, std::uint64_t max) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n < min || n > max)
    return error(errc::invalid_argument, "--" + std::string(name) + ": expected an integer from " + std::to_string(min) +
                                             " to " + std::to_string(max) + ", got \"" + std::string(text) + "\"");
  return n;
}

}  // namespace

void flag_set::add(std::string name, std::string value_name, std::string help, std::string& target,
                   std::string shown_default) {
  std::string shown = !shown_default.empty() ? std::move(shown_default) : target.empty() ? "none" : target;
  flags_.push_back({std::move(name), std::move(value_name), std::move(help), std::move(shown),
                    [&target](std::string_view v) -> result<void> {
                      target = std::string(v);
                      return {};
                    }});
}

void flag_set::add(std::string name, std::string value_name, std::string help, std::uint64_t& target, std::uint64_t min,
                   std::uint64_t max) {
  std::string shown = std::to_string(target);
  flags_.push_back({name, std::move(value_name), std::move(help), std::move(shown),
                    [&target, name, min, max](std::string_view v) -> result<void> {
                      auto n = parse_unsigned(name, v, min, max);
                      if (!n) return std::move(n).error();
                      target = *n;
                      return {};
                    }});
}

void flag_set::add_repeated(std::string name, std::string value_name, std::string help, std::vector<std::string>& target) {
  flags_.push_back({std::move(name), std::move(value_name), std::move(help) + "; may be repeated", "none",
                    [&target](std::string_view v) -> result<void> {
                      target.emplace_back(v);
                      return {};
                    }});
}

void flag_set::add_switch(std::string name, std::string help, bool& target) {
  flags_.push_back({std::move(name), {}, std::move(help), "off", [&target](std::string_view) -> result<void> {
                      target = true;
                      return {};
                    }});
}

result<std::vector<std::string>> flag_set::parse(int argc, char** argv, int first) {
  std::vector<std::string> rest;
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (!arg.starts_with("--")) {
      rest.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(2);
    std::string_view name = arg.substr(0, arg.find('='));
    std::optional<std::string_view> value;
    if (name.size() < arg.size()) value = arg.substr(name.size() + 1);
    auto it = std::find_if(flags_.begin(), flags_.end(), [name](const flag& f) { return f.name == name; });
    if (it == flags_.end()) return error(errc::invalid_argument, "unknown flag --" + std::string(name) + " (see --help)");
    if (it->value_name.empty()) {
      if (value) return error(errc::invalid_argument, "--" + std::string(name) + " takes no value");
      OPENDSR_TRY(it->set(""));
      continue;
    }
    if (!value) {
      if (i + 1 >= argc) return error(errc::invalid_argument, "--" + std::string(name) + " needs a value " + it->value_name);
      value = argv[++i];
    }
    OPENDSR_TRY(it->set(*value));
  }
  return rest;
}

std::string flag_set::usage() const {
  std::string out;
  for (const flag& f : flags_) {
    out += "  --" + f.name;
    if (!f.value_name.empty()) out += " " + f.value_name;
    out += "\n      " + f.help + " (default: " + f.default_text + ")\n";
  }
  return out;
}

result<host_port> parse_host_port(std::string_view text) {
  auto bad = [&] { return error(errc::invalid_argument, "expected HOST:PORT, e.g. 127.0.0.1:8080, got \"" + std::string(text) + "\""); };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad();
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad();
    host = host.substr(1, host.size() - 2);
  }
  auto port = parse_unsigned("listen", text.substr(colon + 1), 0, 65535);
  if (!port) return bad();
  return host_port{std::string(host), static_cast<std::uint16_t>(*port)};
}

}  // namespace opendsr::app
