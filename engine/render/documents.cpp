#include "render/documents.hpp"

#include <opendsr/identity.hpp>

#include "common/json_text.hpp"

#include <algorithm>

namespace opendsr::detail {
namespace {

std::optional<timestamp> shown_completion(const request_record& r) {
  if (r.status == request_status::cancelled) return std::nullopt;
  return r.expected_completion;
}

// The "extensions" value: null, or the processor's extension with the distribution entries.
std::string render_extensions(const request_record& r, std::string_view processor_domain) {
  if (r.distribution.empty()) return "null";
  std::string entries = "[";
  for (const distribution_entry& d : r.distribution) {
    if (entries.size() > 1) entries += ',';
    json_object_writer(entries)
        .string("domain", d.domain)
        .string("name", d.name)
        .string("status", to_string(d.status))
        .string_or_null("status_message", d.status_message)
        .close();
  }
  entries += ']';
  std::string own;
  json_object_writer(own).raw("distribution_status", entries).close();
  std::string out = "{";
  append_json_string(out, processor_domain);  // a configured name: escaped, unlike fixed keys
  out += ':';
  out += own;
  out += '}';
  return out;
}

}  // namespace

receipt make_receipt(const request_record& r) {
  receipt out{r.subject_request_id, r.received_time, r.expected_completion, {}};
  out.body.reserve(200 + r.body.size() * 4 / 3);
  json_object_writer(out.body)
      .time("expected_completion_time", r.expected_completion)
      .time("received_time", r.received_time)
      .base64("encoded_request", r.body)
      .string("subject_request_id", r.subject_request_id)
      .string("controller_id", r.workspace)
      .close();
  return out;
}

status_document make_status(const request_record& r, std::string_view processor_domain) {
  status_document out{r.subject_request_id, r.type,         r.status,          r.received_time, shown_completion(r),
                      r.group_id,           r.results_url, r.distribution, {}};
  json_object_writer(out.body)
      .string("controller_id", r.workspace)
      .time("expected_completion_time", out.expected_completion_time)
      .string("subject_request_id", r.subject_request_id)
      .string_or_null("group_id", r.group_id)
      .string("request_status", to_string(r.status))
      .string("api_version", api_version)
      .string_or_null("results_url", r.results_url)
      .raw("extensions", render_extensions(r, processor_domain))
      .close();
  return out;
}

cancellation make_cancellation(const request_record& r) {
  cancellation out{r.subject_request_id, r.status_time, {}};
  json_object_writer(out.body)
      .null("expected_completion_time")
      .time("received_time", r.status_time)
      .string("subject_request_id", r.subject_request_id)
      .string("controller_id", r.workspace)
      .close();
  return out;
}

group_document make_group(std::vector<status_document> members) {
  group_document out{std::move(members), "["};
  for (std::size_t i = 0; i < out.members.size(); ++i) {
    if (i > 0) out.body += ',';
    out.body += out.members[i].body;
  }
  out.body += ']';
  return out;
}

std::string render_callback(const request_record& r, std::string_view url, std::string_view processor_domain) {
  std::string body;
  json_object_writer(body)
      .string("controller_id", r.workspace)
      .time("expected_completion_time", shown_completion(r))
      .string("status_callback_url", url)
      .string("subject_request_id", r.subject_request_id)
      .string("request_status", to_string(r.status))
      .string_or_null("results_url", r.results_url)
      .raw("extensions", render_extensions(r, processor_domain))
      .string("api_version", api_version)
      .string_or_null("group_id", r.group_id)
      .close();
  return body;
}

std::string render_discovery(const engine_options& options) {
  // The standard types, in name order as mParticle lists them; the extension-only types are not
  // advertised (mParticle does not list them either).
  std::vector<std::string_view> names;
  for (std::size_t i = 0; i < standard_identity_type_count; ++i)
    names.push_back(opendsr_name(static_cast<identity_type>(i)));
  std::sort(names.begin(), names.end());
  std::string identities = "[";
  for (std::string_view name : names) {
    if (identities.size() > 1) identities += ',';
    json_object_writer(identities).string("identity_type", name).string("identity_format", "raw").close();
  }
  identities += ']';
  std::string body;
  json_object_writer(body)
      .string("api_version", api_version)
      .raw("supported_identities", identities)
      .raw("supported_subject_request_types", R"(["access","erasure","portability"])")
      .string("processor_certificate", options.certificate_url)
      .close();
  return body;
}

}  // namespace opendsr::detail
