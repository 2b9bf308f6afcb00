// Request bodies shared by the request unit test, the request fuzz target and the parse
// benchmark, so that all three exercise the same bytes.
#pragma once

#include <opendsr/identity.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace opendsr::test_bodies {

// The example body of the mParticle DSR API v3 page (seed 000), byte for byte.
inline constexpr std::string_view seed_example = R"({
  "regulation": "gdpr",
  "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
  "subject_request_type": "erasure",
  "submitted_time": "2021-11-01T15:00:00Z",
  "subject_identities": {
    "email": {
      "value": "johndoe@example.com",
      "encoding": "raw"
    },
    "ios_advertising_id": {
      "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
      "encoding": "raw"
    }
  },
  "api_version": "3.0",
  "status_callback_urls": [
    "https://exampleurl.com/opendsr/callbacks"
  ],
  "group_id": "my-group",
  "extensions": {
    "opendsr.mparticle.com": {
      "skip_waiting_period": false,
      "subject_identities": {
        "other6": {
          "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
          "encoding": "raw"
        }
      }
    }
  }
}
)";

// The value given to identity type t in every_identity_but_mpid().
inline std::string value_for(identity_type t) { return "value-of-" + std::string(opendsr_name(t)); }

// A compact body with the largest valid identity set: all 11 standard types at top level and
// the 13 extension types other than mpid (an mpid must be alone), 24 identities.
inline std::string every_identity_but_mpid() {
  std::string top, extension;
  for (std::size_t i = 0; i < identity_type_count; ++i) {
    const auto t = static_cast<identity_type>(i);
    if (t == identity_type::mpid) continue;
    std::string& out = is_extension_only(t) ? extension : top;
    if (!out.empty()) out += ',';
    out += '"' + std::string(opendsr_name(t)) + R"(":{"value":")" + value_for(t) + R"(","encoding":"raw"})";
  }
  return R"({"regulation":"ccpa","subject_request_id":"cab0a1fc-cfcd-475a-a2a5-e93eb060332f",)"
         R"("subject_request_type":"access","submitted_time":"2021-11-29T18:16:24.5568051Z",)"
         R"("subject_identities":{)" + top + R"(},"api_version":"3.0",)"
         R"("status_callback_urls":["https://controller.example.com/opendsr/callbacks"],"group_id":"batch-7",)"
         R"("extensions":{"opendsr.mparticle.com":{"skip_waiting_period":true,"subject_identities":{)" +
         extension + "}}}}";
}

}  // namespace opendsr::test_bodies
