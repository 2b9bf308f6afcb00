// libFuzzer target for what distribution reads from outside: the bodies of POST and PATCH
// /v3/outputs (parse_output_definition, parse_output_change), the settings an output configures
// its partner with, and the partners' answers (Kochava's and Blueshift's classify: status,
// Retry-After, body). The first byte picks the parser. Beyond "no crash, no sanitizer report":
// - an accepted definition has a name, a partner and credentials; a refused body is a 400;
// - an error or verdict message never contains the credential value (inputs that hold it
//   themselves are skipped: an echoed setting could hold it honestly);
// - a verdict has retry_after only when it is a retry, never negative.
#include <opendsr/blueshift.hpp>
#include <opendsr/kochava.hpp>

#include "api/outputs_route.hpp"

#include <algorithm>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace opendsr {
namespace {

constexpr std::string_view secret = "fuzz-credential-5ec7e7";

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

bool holds_secret(std::string_view text) { return text.find(secret) != std::string_view::npos; }

void check_bodies(std::string_view body) {
  auto def = detail::parse_output_definition(body);
  if (def)
    require(!def->name.empty() && !def->partner.empty() && !def->config.credentials.empty(),
            "an accepted definition has a name, a partner and credentials");
  else
    require(def.error() == errc::invalid_json || def.error() == errc::invalid_request, "a bad body is a 400");
  auto change = detail::parse_output_change(body);
  if (!change) require(change.error() == errc::invalid_json || change.error() == errc::invalid_request, "a bad body is a 400");
}

// Settings from lines "key=value"; the credential is always the secret.
partner_settings settings_of(std::string_view text, std::string_view credential_name) {
  partner_settings s;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    const auto eq = line.find('=');
    if (eq != std::string_view::npos) s.settings[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  s.credentials[std::string(credential_name)] = std::string(secret);
  return s;
}

void check_partner(const partner_kind& kind, std::string_view credential_name, std::string_view settings_text,
                   const http_client_response* answer, unsigned attempt) {
  auto configured = kind.configure(settings_of(settings_text, credential_name));
  if (!configured) {
    require(!holds_secret(configured.error().message()), "a configuration error does not show the credential");
    return;
  }
  if (!answer) return;
  const forward_verdict v = (*configured)->classify(*answer, attempt);
  require(!holds_secret(v.message) && !holds_secret(v.reference), "a verdict does not show the credential");
  require(!v.retry_after || v.kind == forward_verdict_kind::retry, "retry_after only on a retry");
  require(!v.retry_after || v.retry_after->count() >= 0, "retry_after is not negative");
}

}  // namespace
}  // namespace opendsr

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opendsr;
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (in.find(secret) != std::string_view::npos) return 0;
  const auto kochava = kochava_partner_kind();
  const auto blueshift = blueshift_partner_kind();
  switch (data[0] % 4) {
    case 0: check_bodies(in); break;
    case 1: check_partner(*kochava, "api_key", in, nullptr, 1); break;
    case 2:
    case 3: {
      // status (2 bytes), attempt (1), Retry-After length (1) and text, then the body.
      if (in.size() < 4) return 0;
      http_client_response answer;
      answer.status = 100 + (static_cast<unsigned char>(in[0]) << 8 | static_cast<unsigned char>(in[1])) % 500;
      const unsigned attempt = 1 + static_cast<unsigned char>(in[2]) % 6;
      const std::size_t header = std::min<std::size_t>(static_cast<unsigned char>(in[3]) % 32, in.size() - 4);
      if (header > 0) answer.headers.add("Retry-After", std::string(in.substr(4, header)));
      answer.body = std::string(in.substr(4 + header));
      if (data[0] % 4 == 2) check_partner(*kochava, "api_key", "account_id=1\napp_id=2", &answer, attempt);
      else check_partner(*blueshift, "user_api_key", "", &answer, attempt);
      break;
    }
  }
  return 0;
}
