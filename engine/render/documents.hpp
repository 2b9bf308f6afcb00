// Rendering of the engine's documents (documents.hpp) and callback bodies from stored records.
// Deterministic: the same record always renders to the same bytes.
#pragma once

#include <opendsr/documents.hpp>
#include <opendsr/engine_options.hpp>

#include "store/record.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

inline constexpr std::string_view api_version = "3.0";

receipt make_receipt(const request_record& r);
// `processor_domain` keys the extension that carries r's distribution entries, if any.
status_document make_status(const request_record& r, std::string_view processor_domain);
// REQUIRES: r.status == cancelled; r.status_time is when the cancellation was received.
cancellation make_cancellation(const request_record& r);
group_document make_group(std::vector<status_document> members);

// The body of the callback to `url` announcing r's current status (spec §1.9): controller_id,
// expected_completion_time, status_callback_url, subject_request_id, request_status, results_url,
// extensions, api_version, group_id.
std::string render_callback(const request_record& r, std::string_view url, std::string_view processor_domain);

std::string render_discovery(const engine_options& options);

}  // namespace opendsr::detail
