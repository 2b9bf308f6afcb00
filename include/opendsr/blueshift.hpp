// The Blueshift partner (spec/partners.md §4): forwards customer ids and email addresses to
// Blueshift's customer delete (or forget) API, one erasure request per call, at once.
// docs/partners.md tells the request, the classification of answers and the decisions taken
// where Blueshift documents nothing.
//
// Kind name "blueshift", domain "blueshift.com". Accepts controller_customer_id (sent as
// "customer_id") and email.
//
// Settings (any other name is errc::invalid_argument):
//   region  "us" (https://api.getblueshift.com) or "eu" (https://api.eu.getblueshift.com); it
//           must match the account's. Default: "us".
//   mode    "delete" (the first matching profile), "delete_all_matching" (up to 50 matching
//           profiles per call) or "forget" (delete, and ignore the user's future events).
//           Default: "delete".
// Credentials (any other name is errc::invalid_argument):
//   user_api_key  REQUIRED. The account's User API key, sent as HTTP Basic user name with an
//                 empty password.
// The endpoint override replaces the region's base URL.
#pragma once

#include <opendsr/partner.hpp>

#include <memory>

namespace opendsr {

// The Blueshift partner kind. Thread-safe; stateless.
std::shared_ptr<const partner_kind> blueshift_partner_kind();

}  // namespace opendsr
