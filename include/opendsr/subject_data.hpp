// The subject-data seam: the profiles a processor finds, exports and erases for a data subject
// request (issue 9; the identity model of spec/partners.md §6). The embedded default,
// open_subject_store(), keeps them in a storage (LMDB or memory) beside the engine's tables;
// an embedder whose data lives elsewhere implements this class instead. docs/subject-data.md
// gives the key schema and the decisions taken where the spec is silent.
//
// Contract
// - Everything is per workspace (the request's controller_id): a profile, an identity or a
//   configuration of one workspace is invisible from another.
// - A profile is named by its mpid (profile_id). It holds one attributes record (a JSON object),
//   a set of identities, and events (JSON objects) kept in the order they were added.
// - resolve() returns at most one profile (rules below); identities(), records() and erase() of
//   a profile the workspace does not hold are errc::not_found.
// - erase() removes the profile, its identity index entries and its events in one transaction:
//   after it returns, no key or value of the store holds any of them; it never half-erases.
// - No error message contains an identity value, an attribute or an event (error.hpp's rule).
//   Bad input is errc::invalid_argument whose message names the field and the rule.
// - Storage errors pass through as they are (errc::storage_conflict is retryable: re-run the
//   call).
//
// Resolution (partners.md §6 "Resolve"; [I] marks a decision of ours where the spec is silent)
// 1. An `mpid` identity short-circuits: the profile with that mpid, or nullopt if the workspace
//    holds none. Other identities in the same call are not consulted.
// 2. Identity types absent from the workspace's priority list are dropped.
// 3. For each type in priority order, the candidates are the profiles holding one of the
//    request's values of that type (values compare after normalisation, below). A profile that
//    holds a login identity is a candidate only if the request carries one of its login
//    identities (so with the default configuration an email alone never reaches a profile that
//    has a customer_id: partners.md's "a DSR without a login ID will not reach a known profile").
// 4. The first type with candidates sets the running set; each later type narrows it by
//    intersection, unless the intersection would be empty (that identity is skipped). The walk
//    stops as soon as one profile remains. So when identities point at different profiles, the
//    highest-priority matching identity wins.
// 5. [I] If after the walk more than one profile remains (a non-unique value shared by several
//    profiles and nothing that tells them apart), the result is nullopt: a DSR must not export
//    or erase somebody else's data, so we do not adopt "best match"'s pick of the top-ranked
//    candidate.
//
// Normalisation (the index compares normalised values; identities() returns values as written)
// - email: ASCII whitespace trimmed at both ends, ASCII letters lower-cased.
// - advertising and device IDs (android_advertising_id, android_id, fire_advertising_id,
//   ios_advertising_id, ios_vendor_id, microsoft_advertising_id, microsoft_publisher_id,
//   roku_advertising_id, roku_publisher_id): trimmed, ASCII lower-cased (partners.md: compare
//   case-insensitively, send on exactly as stored).
// - [I] phone numbers (mobile_number, phone_number_2, phone_number_3): trimmed, then spaces,
//   '-', '.', '(' and ')' removed; digits and a leading '+' kept as written.
// - [I] controller_customer_id and other..other10: trimmed only (customer IDs are case-sensitive).
// A value that is empty after normalisation is errc::invalid_argument.
//
// Thread safety: every method may be called from any thread concurrently; each call is its own
// storage transaction(s). records() calls its visitor on the calling thread, outside any storage
// transaction, so the visitor may call this object (or take its time).
// Ownership: the caller owns the subject_data; open_subject_store's result borrows the storage,
// which must outlive it.
#pragma once

#include <opendsr/identity.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

// A profile's mpid. mParticle's MPID is a signed 64-bit integer, and an `mpid` identity is its
// decimal text (identity.hpp), so profile_id is signed too.
using profile_id = std::int64_t;

// The per-workspace identity configuration (partners.md §6 "Three flags per identity type").
struct identity_config {
  // The types resolution considers, highest priority first; no duplicates, never mpid (which
  // short-circuits instead). Default: default_identity_priority().
  std::vector<identity_type> priority;
  // Types of which one value may be held by at most one profile of the workspace.
  // Default: {controller_customer_id} (mParticle's default strategy, profile conversion).
  std::vector<identity_type> unique;
  // Types that gate resolution (rule 3 above). Default: {controller_customer_id}.
  std::vector<identity_type> login;
};

// mParticle's default priority (partners.md §6) over the types OpenDSR has: customer ID, phone,
// email, other, then the device IDs (IDFA, IDFV, GAID, Android ID, Roku ad ID, Roku publisher ID,
// Microsoft publisher ID, Microsoft ad ID). [I] Types mParticle's list lacks sit beside their
// kind: phone_number_2/3 after mobile_number, other2..other10 after other, fire_advertising_id
// after android_id.
std::vector<identity_type> default_identity_priority();

// The defaults above as one value.
identity_config default_identity_config();

// Writes for one profile. put_profile() and add_events() in the same batch apply in that order.
struct profile_write {
  profile_id id = 0;
  // When set, creates the profile or replaces its attributes and its whole identity set with
  // these. REQUIRES: a JSON object (text). nullopt: the profile must already exist (in the store
  // or earlier in the batch) and keeps its attributes and identities.
  std::optional<std::string> attributes;
  // Used only with attributes. No mpid (the profile's mpid is `id`); a value of a unique type
  // that another profile of the workspace holds is errc::invalid_argument ([I] mParticle moves
  // the value and may orphan the other profile; an import should rather report the line).
  std::vector<identity> identities;
  // Appended after the profile's existing events, in this order. Each REQUIRES: a JSON object.
  std::vector<std::string> events;
};

// What a visitor of records() sees. The view is valid during the call only.
struct subject_record {
  enum class kind { attributes, event };
  kind what;
  // For events: the event's position, from 0, in the order added (erase never renumbers, and
  // sequence numbers are not reused). 0 for the attributes.
  std::uint64_t sequence;
  std::string_view json;
};

// Returns false to stop the walk early.
using subject_record_visitor = std::function<bool(const subject_record&)>;

// What an erasure leaves for audit: keyed hashes, never an identity in clear.
struct erasure_receipt {
  // HMAC-SHA-256 under the store's tombstone key of "<internal type name>:<normalised value>",
  // in lowercase hex, one per erased identity and one for the mpid ("mpid:<decimal>"), sorted.
  // Recomputing one from a returning identity recognises it; the hash does not reveal it.
  std::vector<std::string> identity_hashes;
  // Which key made the hashes: the first 8 bytes of SHA-256(key), in hex.
  std::string key_id;
  std::uint64_t events_erased = 0;
};

class subject_data {
 public:
  virtual ~subject_data() = default;
  subject_data() = default;
  subject_data(const subject_data&) = delete;
  subject_data& operator=(const subject_data&) = delete;

  // The one profile the identities designate (rules above), or nullopt. An mpid that is not the
  // decimal text of a signed 64-bit integer, or an empty value, is errc::invalid_argument.
  virtual result<std::optional<profile_id>> resolve(std::string_view workspace,
                                                    std::span<const identity> identities) = 0;

  // The profile's identities as written, sorted by type then value; the mpid is not among them.
  virtual result<std::vector<identity>> identities(std::string_view workspace, profile_id profile) = 0;

  // Visits the profile's attributes (one record), then its events in order, until the visitor
  // returns false. Memory stays bounded whatever the number of events: they are read in pages,
  // each in a short read transaction, and never all held at once. Not one snapshot: the events
  // visited are those whose sequence is below the profile's event count when the call began; an
  // erasure during the walk ends it with errc::not_found.
  virtual result<void> records(std::string_view workspace, profile_id profile,
                               const subject_record_visitor& visit) = 0;

  // Erases the profile, its identities and its events in one transaction and returns the
  // tombstone material. Unknown profile: errc::not_found.
  virtual result<erasure_receipt> erase(std::string_view workspace, profile_id profile) = 0;

  // Applies the writes, in order, in one transaction: all or none. The import command commits
  // its lines in batches through this. An invalid write fails the batch with
  // errc::invalid_argument naming it ("writes[3].events[0]: not a JSON object"); identities
  // without attributes are invalid_argument too; events for a profile that neither exists nor is
  // put earlier in the batch are errc::not_found ("writes[3]: no such profile in the workspace").
  virtual result<void> write(std::string_view workspace, std::span<const profile_write> writes) = 0;

  // The workspace's identity configuration: the stored one, or default_identity_config().
  virtual result<identity_config> config(std::string_view workspace) = 0;

  // Stores the workspace's identity configuration. Resolution uses it from the next call; the
  // index does not change (normalisation does not depend on it). A duplicate or an mpid in
  // priority, or a unique or login type absent from priority, is errc::invalid_argument.
  virtual result<void> configure(std::string_view workspace, const identity_config& config) = 0;
};

// Forwards every call to a target, so a decorator (metrics, fault injection) overrides one
// method. The target must outlive the wrapper.
class subject_data_wrapper : public subject_data {
 public:
  explicit subject_data_wrapper(subject_data& target) : target_(target) {}

  result<std::optional<profile_id>> resolve(std::string_view workspace,
                                            std::span<const identity> identities) override {
    return target_.resolve(workspace, identities);
  }
  result<std::vector<identity>> identities(std::string_view workspace, profile_id profile) override {
    return target_.identities(workspace, profile);
  }
  result<void> records(std::string_view workspace, profile_id profile,
                       const subject_record_visitor& visit) override {
    return target_.records(workspace, profile, visit);
  }
  result<erasure_receipt> erase(std::string_view workspace, profile_id profile) override {
    return target_.erase(workspace, profile);
  }
  result<void> write(std::string_view workspace, std::span<const profile_write> writes) override {
    return target_.write(workspace, writes);
  }
  result<identity_config> config(std::string_view workspace) override { return target_.config(workspace); }
  result<void> configure(std::string_view workspace, const identity_config& config) override {
    return target_.configure(workspace, config);
  }

 protected:
  subject_data& target() { return target_; }

 private:
  subject_data& target_;
};

struct subject_store_options {
  // The key of the erasure receipts' hashes (at least 32 bytes). Empty (the default): a random
  // key made on first use and kept in the store, so hashes stay comparable across restarts.
  // Supply one kept elsewhere (a secret file) so that a copy of the store alone cannot test
  // guesses against the tombstones.
  std::string tombstone_key;
  // Events read per read transaction by records(). Default: 1024. REQUIRES: > 0.
  std::size_t page_events = 1024;
};

// The embedded default: profiles, identity index, events and configuration in `store`, under
// tables of their own (docs/subject-data.md). A bad option is errc::invalid_argument.
result<std::unique_ptr<subject_data>> open_subject_store(storage& store, subject_store_options options = {});

}  // namespace opendsr
