// The default fulfilment (<opendsr/fulfilment.hpp>): acts on the subject data of a
// <opendsr/subject_data.hpp> and keeps packages in a <opendsr/results_store.hpp>.
//
// - Access and portability: resolve the request's identities to at most one profile; if one
//   matched, build its package (options.build_package, e.g. the zip of package_builder.hpp)
//   under the job's results token and commit it. The results link is results_base_url + token
//   either way: when nothing matched the request still completes and its link answers 404.
// - Erasure: resolve, then erase the profile, its identities and events in one transaction (the
//   subject store keeps a tombstone of keyed hashes); nothing matched is done too, with nothing
//   to erase. No results link.
// Idempotent as the seam requires: a re-run rebuilds the package under the same token (the
// results store replaces it whole), and an erasure already done resolves to nothing.
//
// Thread safety: fulfil() may be called concurrently (the subject data and results store are).
// Ownership: the subject data and results store must outlive the fulfilment.
#pragma once

#include <opendsr/fulfilment.hpp>
#include <opendsr/result.hpp>
#include <opendsr/results_store.hpp>
#include <opendsr/subject_data.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace opendsr {

// Writes the package of a profile to `out` (and does not commit it).
using package_writer = std::function<result<void>(subject_data& data, std::string_view workspace, profile_id profile,
                                                   results_writer& out)>;

struct data_fulfilment_options {
  // The results link is this followed by the token, e.g. "https://dsr.example.com/v3/results/".
  // REQUIRES: an absolute http or https URL ending with '/'.
  std::string results_base_url;
  // REQUIRES: set.
  package_writer build_package;
};

// Returns errc::invalid_argument naming an unusable option.
result<std::unique_ptr<fulfilment>> make_data_fulfilment(subject_data& data, results_store& results,
                                                         data_fulfilment_options options);

}  // namespace opendsr
