// The documents the engine answers with. Each carries the exact JSON body the protocol layer
// sends (and signs), plus the same facts as fields for programs. Bodies are compact JSON with a
// fixed key order, rendered deterministically: the same stored state always gives the same bytes,
// so a signature over an unchanged body can be reused.
#pragma once

#include <opendsr/distribution.hpp>
#include <opendsr/request.hpp>
#include <opendsr/request_status.hpp>
#include <opendsr/time.hpp>

#include <optional>
#include <string>
#include <vector>

namespace opendsr {

// The 201 answer to POST /requests: {"expected_completion_time", "received_time",
// "encoded_request" (standard base64 of the exact body bytes), "subject_request_id",
// "controller_id"}.
struct receipt {
  std::string subject_request_id;
  timestamp received_time;
  timestamp expected_completion_time;
  std::string body;
};

// The status object (GET /requests/{id}, an element of the group list): {"controller_id",
// "expected_completion_time" (null once cancelled), "subject_request_id", "group_id" (or null),
// "request_status", "api_version" ("3.0"), "results_url" (or null), "extensions"}. Every key is
// always present. "extensions" is null unless the request was forwarded (an erasure in a
// workspace with active outputs): then {"<processor domain>": {"distribution_status": [{"domain",
// "name", "status", "status_message" (or null)}, ...]}}, one entry per output, in name order.
struct status_document {
  std::string subject_request_id;
  request_type type = request_type::access;
  request_status status = request_status::pending;
  timestamp received_time;
  std::optional<timestamp> expected_completion_time;
  std::optional<std::string> group_id;
  std::optional<std::string> results_url;
  std::vector<distribution_entry> distribution;
  std::string body;
};

// The answer to GET /requests?group_id=: a JSON array of status objects, in submission order;
// "[]" for an unknown group.
struct group_document {
  std::vector<status_document> members;
  std::string body;
};

// The 202 answer to DELETE /requests/{id}: {"expected_completion_time": null, "received_time"
// (when the cancellation was received), "subject_request_id", "controller_id"}.
struct cancellation {
  std::string subject_request_id;
  timestamp received_time;
  std::string body;
};

}  // namespace opendsr
