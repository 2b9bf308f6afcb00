// The Kochava partner (spec/partners.md §3): forwards IDFAs and ADIDs to Kochava's privacy scrub
// API, in batches. docs/partners.md tells the request, the classification of answers and the
// decisions taken where Kochava documents nothing.
//
// Kind name "kochava", domain "kochava.com". Accepts ios_advertising_id (sent as id_type "idfa")
// and android_advertising_id ("adid") only.
//
// Settings (any other name is errc::invalid_argument):
//   account_id              REQUIRED. Kochava account id, a positive integer.
//   scope                   "app" (the app's devices) or "account" (every app of the account).
//                           Default: "app".
//   app_id                  Numeric app id, a positive integer. REQUIRED when scope is "app".
//   app_guid                The app's GUID, kept for operators. It does not replace app_id:
//                           looking it up is a network call, which a partner cannot make.
//   batch_max               Device ids per request, 1 to 100000. Default: 10000.
//   flush_interval_seconds  Longest wait of a queued id before its batch goes, 0 to 86400.
//                           Default: 3600.
//   notify_email            Where Kochava notifies the customer of the scrub (an operations
//                           mailbox, never the data subject's). Default: none sent.
// Credentials (any other name is errc::invalid_argument):
//   api_key                 REQUIRED. Sent as Authentication-Key.
// The endpoint override replaces https://nng.kochava.com.
#pragma once

#include <opendsr/partner.hpp>

#include <memory>

namespace opendsr {

// The Kochava partner kind. Thread-safe; stateless.
std::shared_ptr<const partner_kind> kochava_partner_kind();

}  // namespace opendsr
