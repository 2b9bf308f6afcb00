// The largest valid identity set as a request body, shared by the request unit test and the
// parse benchmark. (The seed's example body is opendsr::testing::seed_body.)
#pragma once

#include "../support/request_bodies.hpp"

#include <opendsr/identity.hpp>

#include <cstddef>
#include <string>

namespace opendsr::testing {

// The value given to identity type t in every_identity_but_mpid_body().
inline std::string value_for(identity_type t) { return "value-of-" + std::string(opendsr_name(t)); }

// An access request with all 11 standard types at top level and the 13 extension types other
// than mpid (an mpid must be alone): 24 identities, skip_waiting_period true, one callback URL
// and a group.
inline std::string every_identity_but_mpid_body() {
  body_spec spec{.id = uuid_v4(7), .type = "access", .identities = {}, .skip_waiting_period = true,
                 .callback_urls = {"https://controller.example.com/opendsr/callbacks"}, .group_id = "batch-7"};
  for (std::size_t i = 0; i < identity_type_count; ++i) {
    const auto t = static_cast<identity_type>(i);
    if (t == identity_type::mpid) continue;
    (is_extension_only(t) ? spec.extension_identities : spec.identities)
        .emplace_back(std::string(opendsr_name(t)), value_for(t));
  }
  return make_body(spec);
}

}  // namespace opendsr::testing
