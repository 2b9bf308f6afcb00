// The crash test's workload, shared by the writer process (crash_writer.cpp) and the test that
// kills it and checks the store (crash_test.cpp).
//
// Submission n of run r is a pure function of (r, n), varied so that every index kind is
// written: all three types, erasures that skip the waiting period, groups (some of them full),
// callback URLs (outbox entries), identity sets that repeat (in-flight conflicts) and ids that
// repeat (duplicates). Time moves 2 minutes per submission, and the waiting period and
// completion margin are one hour, so a run of a few hundred submissions crosses midnights and
// its requests move through processing to completion (timers, terminal states, released
// conflict entries).
#pragma once

#include <opendsr/engine_options.hpp>
#include <opendsr/time.hpp>

#include "../support/request_bodies.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace opendsr::crash {

inline constexpr std::string_view workspace = "crash";

inline engine_options workload_options() {
  using namespace std::chrono;
  engine_options o;
  o.certificate_url = "https://opendsr.example.com/opendsr_cert.pem";
  o.timing.erasure_waiting_period = hours(1);
  o.timing.completion_margin = hours(1);
  o.timing.access_run_days = {Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday};
  o.max_group_size = 8;
  return o;
}

// Runs are 30 days apart, so one run's requests have all completed before the next begins.
inline timestamp run_start(unsigned run) {
  return parse_rfc3339("2030-01-01T00:00:00Z").value() + std::chrono::days(30) * run;
}

inline timestamp received_at(unsigned run, std::uint64_t n) { return run_start(run) + std::chrono::minutes(2) * n; }

inline std::string request_id(unsigned run, std::uint64_t n) {
  return testing::uuid_v4(std::uint64_t{run} << 40 | n);
}

inline std::string body(unsigned run, std::uint64_t n) {
  static constexpr const char* types[] = {"erasure", "access", "portability"};
  testing::body_spec s;
  // Every 17th submission repeats the previous id (a duplicate, whichever of the two is first).
  s.id = request_id(run, n % 17 == 16 ? n - 1 : n);
  s.type = types[n % 3];
  // 40 subjects per type: a subject's next request often finds its last one still in flight.
  s.identities = {{"email", "subject" + std::to_string(n * 7 % 40) + "@crash.example.com"}};
  if (n % 5 == 1) s.identities.emplace_back("ios_advertising_id", "EA7583CD-A667-48BC-B806-42ECB2B48606");
  if (n % 3 == 0 && n % 2 == 0) s.skip_waiting_period = true;
  if (n % 2 == 0) s.callback_urls.push_back("https://controller.example.com/callbacks");
  if (n % 6 == 0) s.callback_urls.push_back("https://audit.example.com/opendsr");
  // Ten submissions per group name, and groups hold 8: the last ones are refused as full.
  if (n % 4 == 0) s.group_id = "group-" + std::to_string(run) + "-" + std::to_string(n / 40);
  return testing::make_body(s);
}

}  // namespace opendsr::crash
