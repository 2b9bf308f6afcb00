// Identity types of OpenDSR v3 (mParticle's DSR API v3 model) and the identity value type.
//
// Eleven standard types travel in the top-level `subject_identities`; fourteen extension-only
// types travel in `extensions["<processor domain>"].subject_identities`. Each type has its
// OpenDSR (wire) name and the processor's internal name; they differ for a few types
// (controller_customer_id -> customer_id, android_id -> android_uuid, ios_vendor_id -> ios_idfv).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace opendsr {

// The enumerator order is the canonical order of identities in a request.
enum class identity_type : std::uint8_t {
  // standard (top level)
  controller_customer_id,
  email,
  android_advertising_id,
  android_id,
  fire_advertising_id,
  ios_advertising_id,
  ios_vendor_id,
  microsoft_advertising_id,
  microsoft_publisher_id,
  roku_advertising_id,
  roku_publisher_id,
  // extension-only
  mpid,
  other,
  other2,
  other3,
  other4,
  other5,
  other6,
  other7,
  other8,
  other9,
  other10,
  mobile_number,
  phone_number_2,
  phone_number_3,
};

inline constexpr std::size_t identity_type_count = 25;
inline constexpr std::size_t standard_identity_type_count = 11;

namespace detail {
struct identity_names {
  std::string_view opendsr;
  std::string_view internal;
};
inline constexpr std::array<identity_names, identity_type_count> identity_name_table{{
    {"controller_customer_id", "customer_id"},
    {"email", "email"},
    {"android_advertising_id", "android_advertising_id"},
    {"android_id", "android_uuid"},
    {"fire_advertising_id", "fire_advertising_id"},
    {"ios_advertising_id", "ios_advertising_id"},
    {"ios_vendor_id", "ios_idfv"},
    {"microsoft_advertising_id", "microsoft_advertising_id"},
    {"microsoft_publisher_id", "microsoft_publisher_id"},
    {"roku_advertising_id", "roku_advertising_id"},
    {"roku_publisher_id", "roku_publisher_id"},
    {"mpid", "mpid"},
    {"other", "other"},
    {"other2", "other2"},
    {"other3", "other3"},
    {"other4", "other4"},
    {"other5", "other5"},
    {"other6", "other6"},
    {"other7", "other7"},
    {"other8", "other8"},
    {"other9", "other9"},
    {"other10", "other10"},
    {"mobile_number", "mobile_number"},
    {"phone_number_2", "phone_number_2"},
    {"phone_number_3", "phone_number_3"},
}};
}  // namespace detail

// True iff the type may appear only inside the processor's extension.
constexpr bool is_extension_only(identity_type t) noexcept {
  return static_cast<std::size_t>(t) >= standard_identity_type_count;
}

// The name on the wire (the one discovery advertises).
constexpr std::string_view opendsr_name(identity_type t) noexcept {
  return detail::identity_name_table[static_cast<std::size_t>(t)].opendsr;
}

// The processor's internal name (mParticle identity type).
constexpr std::string_view internal_name(identity_type t) noexcept {
  return detail::identity_name_table[static_cast<std::size_t>(t)].internal;
}

// Looks a wire name up. Accepts `roku_publishing_id` as an alias of roku_publisher_id (the
// mParticle v3 table spells it so; discovery and OpenDSR spell it roku_publisher_id).
constexpr std::optional<identity_type> identity_type_from_opendsr_name(std::string_view name) noexcept {
  if (name == "roku_publishing_id") return identity_type::roku_publisher_id;
  for (std::size_t i = 0; i < identity_type_count; ++i)
    if (detail::identity_name_table[i].opendsr == name) return static_cast<identity_type>(i);
  return std::nullopt;
}

// One subject identity. The only supported encoding is "raw", so none is stored.
struct identity {
  identity_type type;
  std::string value;  // non-empty; for mpid, the decimal text of a signed 64-bit integer

  friend bool operator==(const identity&, const identity&) = default;
};

}  // namespace opendsr
