#include <opendsr/engine.hpp>
#include <opendsr/subject_data.hpp>

#include "common/json_text.hpp"
#include "intake/admit.hpp"
#include "lifecycle/timing.hpp"
#include "lifecycle/transitions.hpp"
#include "outbox/backoff.hpp"
#include "outbox/callbacks.hpp"
#include "outbox/forwards.hpp"
#include "outbox/fulfilment_tasks.hpp"
#include "render/documents.hpp"
#include "store/keys.hpp"
#include "store/transact.hpp"

#include <atomic>
#include <limits>
#include <random>

namespace opendsr {
namespace {

using namespace detail;

error invalid(std::string message) { return error(errc::invalid_argument, std::move(message)); }

result<void> validate(const engine_options& o) {
  if (o.request.processor_domain.empty() || !is_valid_utf8(o.request.processor_domain))
    return invalid("request.processor_domain must be a non-empty UTF-8 domain name.");
  const std::string_view url = o.certificate_url;
  const bool absolute = (url.starts_with("https://") && url.size() > 8) || (url.starts_with("http://") && url.size() > 7);
  if (!absolute || !is_valid_utf8(url)) return invalid("certificate_url must be an absolute http or https URL.");
  if (o.max_group_size < 1 || o.max_group_size > std::numeric_limits<std::uint16_t>::max())
    return invalid("max_group_size must be between 1 and 65535.");
  if (o.tick_batch_size < 1) return invalid("tick_batch_size must be at least 1.");
  if (o.max_transaction_attempts < 1) return invalid("max_transaction_attempts must be at least 1.");
  const callback_delivery_policy& c = o.callbacks;
  if (c.max_attempts < 1 || c.max_attempts > 1000) return invalid("callbacks.max_attempts must be between 1 and 1000.");
  if (c.max_age <= std::chrono::microseconds::zero()) return invalid("callbacks.max_age must be positive.");
  if (c.min_retry_delay <= std::chrono::microseconds::zero() || c.first_retry_delay < c.min_retry_delay ||
      c.max_retry_delay < c.first_retry_delay)
    return invalid("callbacks retry delays must satisfy 0 < min_retry_delay <= first_retry_delay <= max_retry_delay.");
  if (c.lease <= std::chrono::microseconds::zero()) return invalid("callbacks.lease must be positive.");
  const fulfilment_policy& f = o.fulfilment;
  if (f.mode != fulfilment_mode::scheduled && f.mode != fulfilment_mode::tasks) return invalid("fulfilment.mode is unknown.");
  if (f.lease <= std::chrono::microseconds::zero()) return invalid("fulfilment.lease must be positive.");
  if (f.min_retry_delay <= std::chrono::microseconds::zero() || f.first_retry_delay < f.min_retry_delay ||
      f.max_retry_delay < f.first_retry_delay)
    return invalid("fulfilment retry delays must satisfy 0 < min_retry_delay <= first_retry_delay <= max_retry_delay.");
  if (f.results_lifetime <= std::chrono::microseconds::zero()) return invalid("fulfilment.results_lifetime must be positive.");
  if (f.overdue_extension <= std::chrono::microseconds::zero()) return invalid("fulfilment.overdue_extension must be positive.");
  const distribution_policy& d = o.distribution;
  if (d.max_attempts < 1 || d.max_attempts > 1000) return invalid("distribution.max_attempts must be between 1 and 1000.");
  if (d.max_age <= std::chrono::microseconds::zero()) return invalid("distribution.max_age must be positive.");
  if (d.min_retry_delay <= std::chrono::microseconds::zero() || d.first_retry_delay < d.min_retry_delay ||
      d.max_retry_delay < d.first_retry_delay)
    return invalid("distribution retry delays must satisfy 0 < min_retry_delay <= first_retry_delay <= max_retry_delay.");
  if (d.max_retry_after <= std::chrono::microseconds::zero()) return invalid("distribution.max_retry_after must be positive.");
  if (d.lease <= std::chrono::microseconds::zero()) return invalid("distribution.lease must be positive.");
  for (std::size_t i = 0; i < d.partners.size(); ++i) {
    if (!d.partners[i]) return invalid("distribution.partners must not hold a null partner kind.");
    for (std::size_t j = 0; j < i; ++j)
      if (d.partners[j]->name() == d.partners[i]->name())
        return invalid("distribution.partners names partner kind " + std::string(d.partners[i]->name()) + " twice.");
  }
  return validate_timing(o.timing);
}

result<void> validate_workspace(std::string_view workspace) {
  if (workspace.empty() || !is_valid_utf8(workspace)) return invalid("The workspace must be a non-empty UTF-8 string.");
  return {};
}

// Reads and decodes the record under ref, or errc::not_found.
result<request_record> load(read_transaction& txn, std::string_view ref) {
  auto stored = txn.get(keys::request_key(ref));
  if (!stored) return std::move(stored).error();
  if (!*stored) return error(errc::not_found);
  return decode_record(**stored);
}

// Queues a task for every in_progress request that has none: the requests a store of schema 2,
// or an engine in fulfilment_mode::scheduled, left in progress when tasks are now wanted.
result<void> queue_missing_tasks(write_transaction& txn) {
  std::vector<std::string> refs;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::timer), {}, [&](std::string_view key, std::string_view event) {
    const auto parts = keys::parse_timer_key(key);
    if (parts && event.size() == 1 && static_cast<lifecycle_event>(event[0]) == lifecycle_event::complete)
      refs.emplace_back(parts->ref);
    return true;
  }));
  for (const std::string& ref : refs) {
    auto task = load_fulfilment(txn, ref);
    if (!task) return std::move(task).error();
    if (*task) continue;
    auto r = load(txn, ref);
    if (!r) return std::move(r).error();
    OPENDSR_TRY(queue_fulfilment(txn, ref, r->processing_start));
  }
  return {};
}

// Schemas 1 and 2 kept the body and conflict digest of ended requests: drop them (they hold, or
// confirm, the subject's identities).
result<void> drop_ended_bodies(write_transaction& txn) {
  std::vector<std::pair<std::string, request_record>> ended;
  bool corrupt = false;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::request), {}, [&](std::string_view key, std::string_view value) {
    auto r = decode_record(value);
    if (!r) return !(corrupt = true);
    if (is_terminal(r->status) && (!r->body.empty() || r->conflict_digest != sha256_digest{}))
      ended.emplace_back(std::string(key), std::move(*r));
    return true;
  }));
  if (corrupt) return error(errc::storage_corrupt, "A stored request record does not decode.");
  for (auto& [key, r] : ended) {
    r.body.clear();
    r.conflict_digest = {};
    OPENDSR_TRY(txn.put(key, encode_record(r)));
  }
  return {};
}

// Creates or checks the schema version entry, upgrading a store of schema 1, 2 or 3, and reads (or
// makes) the results key into `results_key`.
result<void> check_schema(write_transaction& txn, const engine_options& options, std::string& results_key) {
  const std::string key = keys::schema_key();
  const std::string_view current(&keys::schema_version, 1);
  auto stored = txn.get(key);
  if (!stored) return std::move(stored).error();
  if (*stored && **stored != current) {
    if (**stored == std::string_view(&keys::schema_version_1, 1)) {
      auto moved = migrate_outbox_v1(txn);
      if (!moved) return std::move(moved).error();
    } else if (**stored != std::string_view(&keys::schema_version_2, 1) &&
               **stored != std::string_view(&keys::schema_version_3, 1)) {
      return error(errc::storage_corrupt, "The store was written with an engine schema this version cannot read.");
    }
    // Schema 4 only adds the distribution tables, empty in an older store.
    if (**stored != std::string_view(&keys::schema_version_3, 1)) OPENDSR_TRY(drop_ended_bodies(txn));
  }
  if (!*stored || **stored != current) OPENDSR_TRY(txn.put(key, current));
  auto made = ensure_results_key(txn);
  if (!made) return std::move(made).error();
  results_key = std::move(*made);
  if (options.fulfilment.mode == fulfilment_mode::tasks) return queue_missing_tasks(txn);
  return {};
}

result<void> validate_owner(std::string_view owner) {
  if (owner.empty() || owner.find('\n') != std::string_view::npos || !is_valid_utf8(owner))
    return invalid("A dispatcher owner must be a non-empty UTF-8 name without line breaks.");
  return {};
}

// True iff the error is an outcome admit() decided before writing anything.
bool is_refusal(const error& e) {
  return e == errc::duplicate_request_id || e == errc::group_full || e == errc::identity_conflict;
}

}  // namespace

struct engine::impl {
  impl(storage& s, engine_options o) : store(s), options(std::move(o)), discovery(render_discovery(options)) {
    // Fulfilment jobs carry the parsed request; its callback URLs were checked at intake, under
    // the policy of that time, and are not what a job needs.
    reparse = options.request;
    reparse.callback_destinations = {.allow_http = true, .allow_public = true, .allow_loopback = true,
                                     .allow_private = true, .allow_metadata = true};
  }

  storage& store;
  engine_options options;
  parse_options reparse;
  std::string discovery;
  std::string results_key;  // read (or made) by open
  // Makes each claim's lease unique, across engines and restarts.
  std::atomic<std::uint64_t> lease_nonce{std::random_device{}() * 0x9E3779B97F4A7C15ull};

  template <class Body>
  result<void> write(Body&& body) {
    return run_write(store, options.max_transaction_attempts, std::forward<Body>(body));
  }

  // One write transaction of tick(): up to tick_batch_size due timers. Returns how many timers
  // it found due and adds the status changes to `transitions`.
  result<std::size_t> tick_batch(timestamp now, std::size_t& transitions);

  // What an erasure brings to forwarding: nullopt when its workspace has no active output;
  // else its identities, enriched from its profile when distribution.enrich_from is set.
  result<std::optional<forward_source>> forward_source_of(std::string_view workspace, const request& req) const;

  // Applies changes of distribution entries, each with its callbacks.
  result<void> apply(write_transaction& txn, const std::vector<entry_change>& changes, timestamp now) {
    for (const entry_change& c : changes) {
      auto changed = change_distribution(txn, options, c.request_ref, c.output, c.state, c.message, now);
      if (!changed) return std::move(changed).error();
    }
    return {};
  }
};

result<std::optional<forward_source>> engine::impl::forward_source_of(std::string_view workspace,
                                                                       const request& req) const {
  {
    auto txn = store.begin_read();
    if (!txn) return std::move(txn).error();
    auto active = has_active_output(**txn, workspace);
    if (!active) return std::move(active).error();
    if (!*active) return std::optional<forward_source>();
  }
  forward_source source{req.identities, {}};
  subject_data* profiles = options.distribution.enrich_from;
  if (!profiles) return std::optional<forward_source>(std::move(source));
  auto profile = profiles->resolve(workspace, req.identities);
  if (!profile) return std::move(profile).error();
  const bool by_mpid = req.identities.size() == 1 && req.identities.front().type == identity_type::mpid;
  if (!*profile) {
    if (by_mpid) source.refusal = "The mpid resolves to no profile, so nothing is forwarded.";
    return std::optional<forward_source>(std::move(source));
  }
  auto held = profiles->identities(workspace, **profile);
  if (!held) return std::move(held).error();
  // The request wins where it names a type the profile holds too.
  for (identity& id : *held) {
    const bool named = std::any_of(req.identities.begin(), req.identities.end(),
                                   [&](const identity& mine) { return mine.type == id.type; });
    if (!named) source.identities.push_back(std::move(id));
  }
  return std::optional<forward_source>(std::move(source));
}

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
engine::engine(engine&&) noexcept = default;
engine& engine::operator=(engine&&) noexcept = default;
engine::~engine() = default;

result<engine> engine::open(storage& store, engine_options options) {
  OPENDSR_TRY(validate(options));
  auto p = std::make_unique<impl>(store, std::move(options));
  OPENDSR_TRY(p->write([&](write_transaction& txn) { return check_schema(txn, p->options, p->results_key); }));
  return engine(std::move(p));
}

const engine_options& engine::options() const noexcept { return impl_->options; }

const std::string& engine::discovery() const noexcept { return impl_->discovery; }

result<receipt> engine::submit(std::string_view workspace, std::string_view body, timestamp received) {
  const submission one{workspace, body, received};
  return std::move(submit_batch({&one, 1}).front());
}

struct prepared_submission::state {
  detail::request_record record;
  receipt answer;  // the 201 body, if it is admitted
  std::optional<detail::forward_source> forwards;  // an erasure in a workspace with active outputs
};

prepared_submission::prepared_submission(std::unique_ptr<state> s) : state_(std::move(s)) {}
prepared_submission::prepared_submission(prepared_submission&&) noexcept = default;
prepared_submission& prepared_submission::operator=(prepared_submission&&) noexcept = default;
prepared_submission::~prepared_submission() = default;

result<prepared_submission> engine::prepare(std::string_view workspace, std::string_view body, timestamp received) const {
  OPENDSR_TRY(validate_workspace(workspace));
  auto req = parse_request(body, impl_->options.request);
  if (!req) return std::move(req).error();
  auto s = std::make_unique<prepared_submission::state>();
  s->record = new_record(impl_->options, workspace, *req, body, received);
  s->answer = make_receipt(s->record);
  if (req->type == request_type::erasure) {
    auto forwards = impl_->forward_source_of(workspace, *req);
    if (!forwards) return std::move(forwards).error();
    s->forwards = std::move(*forwards);
  }
  return prepared_submission(std::move(s));
}

std::vector<result<receipt>> engine::submit_prepared(std::span<const prepared_submission> batch) {
  std::vector<std::optional<error>> refused(batch.size());
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      refused[i].reset();
      const auto& forwards = batch[i].state_->forwards;
      auto admitted = admit(txn, impl_->options, batch[i].state_->record, forwards ? &*forwards : nullptr);
      if (admitted) continue;
      if (!is_refusal(admitted.error())) return std::move(admitted).error();
      refused[i] = std::move(admitted).error();
    }
    return {};
  });
  std::vector<result<receipt>> out;
  out.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!outcome) out.emplace_back(outcome.error());
    else if (refused[i]) out.emplace_back(std::move(*refused[i]));
    else out.emplace_back(batch[i].state_->answer);
  }
  return out;
}

std::vector<result<receipt>> engine::submit_batch(std::span<const submission> batch) {
  std::vector<result<receipt>> out;
  std::vector<prepared_submission> prepared;
  std::vector<std::size_t> prepared_at;  // the index in batch of each prepared submission
  out.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto p = prepare(batch[i].workspace, batch[i].body, batch[i].received_time);
    if (!p) {
      out.emplace_back(std::move(p).error());
      continue;
    }
    prepared.push_back(std::move(*p));
    prepared_at.push_back(i);
    out.emplace_back(errc::internal);  // replaced below
  }
  auto admitted = submit_prepared(prepared);
  for (std::size_t j = 0; j < prepared.size(); ++j) out[prepared_at[j]] = std::move(admitted[j]);
  return out;
}

result<status_document> engine::status(std::string_view workspace, std::string_view subject_request_id) const {
  OPENDSR_TRY(validate_workspace(workspace));
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  auto r = load(**txn, keys::request_ref(workspace, subject_request_id));
  if (!r) return std::move(r).error();
  return make_status(*r, impl_->options.request.processor_domain);
}

result<group_document> engine::group(std::string_view workspace, std::string_view group_id) const {
  OPENDSR_TRY(validate_workspace(workspace));
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  std::vector<std::string> ids;
  OPENDSR_TRY((*txn)->scan(keys::group_members_prefix(workspace, group_id), {},
                           [&](std::string_view, std::string_view id) {
                             ids.emplace_back(id);
                             return ids.size() < impl_->options.max_group_size;
                           }));
  std::vector<status_document> members;
  members.reserve(ids.size());
  for (const std::string& id : ids) {
    auto r = load(**txn, keys::request_ref(workspace, id));
    if (!r && r.error() == errc::not_found)
      return error(errc::storage_corrupt, "A group member entry names a request that is not stored: " + id + ".");
    if (!r) return std::move(r).error();
    members.push_back(make_status(*r, impl_->options.request.processor_domain));
  }
  return make_group(std::move(members));
}

result<cancellation> engine::cancel(std::string_view workspace, std::string_view subject_request_id, timestamp now) {
  OPENDSR_TRY(validate_workspace(workspace));
  std::optional<request_record> cancelled;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto r = load(txn, keys::request_ref(workspace, subject_request_id));
    if (!r) return std::move(r).error();
    OPENDSR_TRY(catch_up(txn, impl_->options, *r, now));
    OPENDSR_TRY(apply_event(txn, impl_->options, *r, lifecycle_event::cancel, now));
    cancelled = std::move(*r);
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return make_cancellation(*cancelled);
}

result<std::size_t> engine::impl::tick_batch(timestamp now, std::size_t& transitions) {
  std::size_t found = 0;
  std::size_t changes = 0;
  auto outcome = write([&](write_transaction& txn) -> result<void> {
    std::vector<std::string> due;
    OPENDSR_TRY(txn.scan(keys::prefix(keys::table::timer), {}, [&](std::string_view key, std::string_view) {
      const auto parts = keys::parse_timer_key(key);
      if (parts && parts->due > now) return false;
      due.emplace_back(key);  // a malformed key is reported below
      return due.size() < options.tick_batch_size;
    }));
    found = due.size();
    changes = 0;
    for (const std::string& key : due) {
      const auto parts = keys::parse_timer_key(key);
      if (!parts) return error(errc::storage_corrupt, "A stored timer key is malformed.");
      auto r = load(txn, parts->ref);
      if (!r && r.error() == errc::not_found)
        return error(errc::storage_corrupt, "A timer names a request that is not stored.");
      if (!r) return std::move(r).error();
      if (timer_due(*r) != parts->due)
        return error(errc::storage_corrupt, "The timer of request " + r->subject_request_id +
                                                " disagrees with its record.");
      auto n = catch_up(txn, options, *r, now);
      if (!n) return std::move(n).error();
      changes += *n;
    }
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  transitions += changes;
  return found;
}

result<tick_report> engine::tick(timestamp now) {
  tick_report report;
  for (;;) {
    auto found = impl_->tick_batch(now, report.transitions);
    if (!found) return std::move(found).error();
    if (*found < impl_->options.tick_batch_size) break;
  }
  auto next = next_due();
  if (!next) return std::move(next).error();
  report.next_due = *next;
  return report;
}

result<std::optional<timestamp>> engine::next_due() const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  std::optional<timestamp> due;
  bool malformed = false;
  OPENDSR_TRY((*txn)->scan(keys::prefix(keys::table::timer), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_timer_key(key);
    if (parts) due = parts->due;
    malformed = !parts;
    return false;
  }));
  if (malformed) return error(errc::storage_corrupt, "A stored timer key is malformed.");
  for (auto first : {first_callback_due(**txn), first_fulfilment_due(**txn), first_results_expiry(**txn),
                     first_forward_due(**txn)}) {
    if (!first) return std::move(first).error();
    if (*first && (!due || **first < *due)) due = *first;
  }
  return due;
}

result<std::vector<claimed_callback>> engine::claim_callbacks(timestamp now, std::size_t max, std::string_view owner) {
  OPENDSR_TRY(validate_owner(owner));
  std::vector<claimed_callback> claimed;
  if (max == 0) return claimed;
  const std::string lease = make_lease(owner, impl_->lease_nonce.fetch_add(1));
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto got = claim_due_callbacks(txn, now, max, lease, now + impl_->options.callbacks.lease);
    if (!got) return std::move(got).error();
    claimed = std::move(*got);
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return claimed;
}

result<callback_record_report> engine::record_callbacks(std::span<const callback_outcome> outcomes, timestamp now) {
  callback_record_report report;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    report = {};
    for (const callback_outcome& o : outcomes)
      OPENDSR_TRY(record_callback_outcome(txn, impl_->options.callbacks, o, now, report));
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return report;
}

result<std::size_t> engine::release_callback_leases(std::string_view owner, timestamp now) {
  OPENDSR_TRY(validate_owner(owner));
  std::size_t released = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto n = detail::release_callback_leases(txn, owner, now);
    if (!n) return std::move(n).error();
    released = *n;
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return released;
}

result<std::vector<dead_callback>> engine::dead_callbacks(std::optional<std::string_view> workspace,
                                                          std::optional<std::string_view> subject_request_id) const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return list_dead_callbacks(**txn, workspace, subject_request_id);
}

result<std::size_t> engine::redrive_callbacks(timestamp now, std::optional<std::string_view> workspace,
                                              std::optional<std::string_view> subject_request_id) {
  std::size_t redriven = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto n = redrive_dead_callbacks(txn, workspace, subject_request_id, now);
    if (!n) return std::move(n).error();
    redriven = *n;
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return redriven;
}

result<callback_queue_stats> engine::callback_queue() const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return callback_stats(**txn);
}

result<std::vector<claimed_fulfilment>> engine::claim_fulfilments(timestamp now, std::size_t max, std::string_view owner) {
  OPENDSR_TRY(validate_owner(owner));
  std::vector<claimed_fulfilment> claimed;
  if (max == 0) return claimed;
  const std::string lease = make_lease(owner, impl_->lease_nonce.fetch_add(1));
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    claimed.clear();
    auto refs = due_fulfilments(txn, now, max);
    if (!refs) return std::move(refs).error();
    for (const std::string& ref : *refs) {
      auto task = load_fulfilment(txn, ref);
      if (!task) return std::move(task).error();
      if (!*task) return error(errc::storage_corrupt, "A fulfilment due entry names no task.");
      auto r = load(txn, ref);
      if (!r && r.error() == errc::not_found) return error(errc::storage_corrupt, "A fulfilment task names a request that is not stored.");
      if (!r) return std::move(r).error();
      if (r->status != request_status::in_progress)
        return error(errc::storage_corrupt, "Request " + r->subject_request_id + " has a fulfilment task but is not in progress.");
      auto parsed = parse_request(r->body, impl_->reparse);
      if (!parsed) return error(errc::storage_corrupt, "The stored body of request " + r->subject_request_id + " no longer parses.");
      const timestamp old_due = (*task)->due;
      ++(*task)->attempts;
      (*task)->lease = lease;
      (*task)->due = now + impl_->options.fulfilment.lease;
      OPENDSR_TRY(store_fulfilment(txn, ref, **task, old_due));
      fulfilment_job job{r->workspace, r->subject_request_id, r->type, std::move(parsed->identities), r->received_time,
                         r->type == request_type::erasure ? std::string() : results_token_of(impl_->results_key, ref),
                         (*task)->attempts};
      claimed.push_back({std::move(job), lease});
    }
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return claimed;
}

result<fulfilment_recorded> engine::record_fulfilment(const fulfilment_outcome& o, timestamp now) {
  OPENDSR_TRY(validate_workspace(o.workspace));
  const std::string ref = keys::request_ref(o.workspace, o.subject_request_id);
  fulfilment_recorded recorded = fulfilment_recorded::stale;
  const fulfilment_policy& policy = impl_->options.fulfilment;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    recorded = fulfilment_recorded::stale;
    auto task = load_fulfilment(txn, ref);
    if (!task) return std::move(task).error();
    if (!*task || (*task)->lease.empty() || (*task)->lease != o.lease) return {};
    if (!o.outcome) {
      const timestamp old_due = (*task)->due;
      (*task)->lease.clear();
      (*task)->last_error = o.outcome.error().message().substr(0, 1000);
      (*task)->due = now + backoff({policy.min_retry_delay, policy.first_retry_delay, policy.max_retry_delay}, ref,
                                   (*task)->attempts);
      OPENDSR_TRY(store_fulfilment(txn, ref, **task, old_due));
      recorded = fulfilment_recorded::retrying;
      return {};
    }
    auto r = load(txn, ref);
    if (!r) return std::move(r).error();
    const bool has_link = o.outcome->results_url.has_value();
    OPENDSR_TRY(complete_fulfilled(txn, impl_->options, *r, o.outcome->results_url, now));
    if (has_link && r->type != request_type::erasure)
      OPENDSR_TRY(index_results(txn, results_token_of(impl_->results_key, ref), ref, now + policy.results_lifetime));
    recorded = fulfilment_recorded::completed;
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return recorded;
}

result<std::size_t> engine::release_fulfilment_leases(std::string_view owner, timestamp now) {
  OPENDSR_TRY(validate_owner(owner));
  std::size_t released = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto n = detail::release_fulfilment_leases(txn, owner, now);
    if (!n) return std::move(n).error();
    released = *n;
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return released;
}

result<std::vector<fulfilment_task_info>> engine::fulfilment_tasks() const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return list_fulfilments(**txn);
}

result<results_link> engine::results(std::string_view workspace, std::string_view token, timestamp now) const {
  OPENDSR_TRY(validate_workspace(workspace));
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  auto entry = find_results(**txn, token);
  if (!entry) return std::move(entry).error();
  if (!*entry) return error(errc::not_found, "There are no such results.");
  auto r = load(**txn, (*entry)->ref);
  if (!r && r.error() == errc::not_found) return error(errc::storage_corrupt, "A results token names a request that is not stored.");
  if (!r) return std::move(r).error();
  if (r->workspace != workspace) return error(errc::not_found, "There are no such results.");
  return results_link{r->subject_request_id, (*entry)->expires, now >= (*entry)->expires};
}

result<std::vector<std::string>> engine::expired_results(timestamp now, std::size_t max) const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return detail::expired_results(**txn, now, max);
}

result<std::size_t> engine::forget_expired_results(std::span<const std::string> tokens) {
  std::size_t forgotten = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    forgotten = 0;
    for (const std::string& token : tokens) {
      auto was = forget_expiry(txn, token);
      if (!was) return std::move(was).error();
      forgotten += *was ? 1 : 0;
    }
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return forgotten;
}

result<output_info> engine::add_output(std::string_view workspace, const output_definition& output, timestamp now) {
  OPENDSR_TRY(validate_workspace(workspace));
  std::optional<output_info> added;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto info = detail::add_output(txn, impl_->options, workspace, output, now);
    if (!info) return std::move(info).error();
    added = std::move(*info);
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return std::move(*added);
}

result<output_info> engine::update_output(std::string_view workspace, std::string_view name, const output_change& change,
                                          timestamp now) {
  OPENDSR_TRY(validate_workspace(workspace));
  std::optional<output_info> updated;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto info = detail::update_output(txn, impl_->options, workspace, name, change, now);
    if (!info) return std::move(info).error();
    updated = std::move(*info);
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return std::move(*updated);
}

result<void> engine::remove_output(std::string_view workspace, std::string_view name, timestamp now) {
  OPENDSR_TRY(validate_workspace(workspace));
  return impl_->write([&](write_transaction& txn) -> result<void> {
    auto changes = detail::remove_output(txn, workspace, name);
    if (!changes) return std::move(changes).error();
    return impl_->apply(txn, *changes, now);
  });
}

result<std::vector<output_info>> engine::outputs(std::optional<std::string_view> workspace) const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return list_outputs(**txn, workspace);
}

result<std::vector<claimed_forward>> engine::claim_forwards(timestamp now, std::size_t max, std::string_view owner) {
  OPENDSR_TRY(validate_owner(owner));
  std::vector<claimed_forward> claimed;
  if (max == 0) return claimed;
  const std::string lease = make_lease(owner, impl_->lease_nonce.fetch_add(1));
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto got = claim_due_forwards(txn, now, max, lease, now + impl_->options.distribution.lease);
    if (!got) return std::move(got).error();
    claimed = std::move(*got);
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return claimed;
}

result<forward_record_report> engine::record_forwards(std::span<const forward_outcome> outcomes, timestamp now) {
  forward_record_report report;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    report = {};
    std::vector<entry_change> changes;
    for (const forward_outcome& o : outcomes)
      OPENDSR_TRY(record_forward_outcome(txn, impl_->options.distribution, o, now, report, changes));
    return impl_->apply(txn, changes, now);
  });
  if (!outcome) return std::move(outcome).error();
  return report;
}

result<std::size_t> engine::release_forward_leases(std::string_view owner, timestamp now) {
  OPENDSR_TRY(validate_owner(owner));
  std::size_t released = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    auto n = detail::release_forward_leases(txn, owner, now);
    if (!n) return std::move(n).error();
    released = *n;
    return {};
  });
  if (!outcome) return std::move(outcome).error();
  return released;
}

result<std::vector<dead_forward>> engine::dead_forwards(std::optional<std::string_view> workspace,
                                                        std::optional<std::string_view> output) const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return list_dead_forwards(**txn, workspace, output);
}

result<std::size_t> engine::redrive_forwards(timestamp now, std::optional<std::string_view> workspace,
                                             std::optional<std::string_view> output) {
  std::size_t redriven = 0;
  auto outcome = impl_->write([&](write_transaction& txn) -> result<void> {
    std::vector<entry_change> changes;
    auto n = redrive_dead_forwards(txn, workspace, output, now, changes);
    if (!n) return std::move(n).error();
    redriven = *n;
    return impl_->apply(txn, changes, now);
  });
  if (!outcome) return std::move(outcome).error();
  return redriven;
}

result<forward_queue_stats> engine::forward_queue() const {
  auto txn = impl_->store.begin_read();
  if (!txn) return std::move(txn).error();
  return forward_stats(**txn);
}

}  // namespace opendsr
