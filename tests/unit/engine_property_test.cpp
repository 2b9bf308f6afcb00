// Property test: random interleavings of submit, batch submit, cancel, tick, callback delivery
// (claims, delivered and failed outcomes, claims abandoned as by a crash, outcomes recorded twice,
// dead letters redriven) and the passage of time, over a small pool of workspaces, ids, identities and groups (so duplicates, conflicts and
// full groups happen often), on a store whose commits fail at random (conflicts that the engine
// retries, and I/O errors that fail the operation). After every few steps the invariant checker
// scans the whole store; the answers are checked against a model of which ids were accepted.
//
// The second test runs the same histories in fulfilment_mode::tasks and mixes in the fulfilment
// runner's steps: claims by a few owners (some left to lapse, some recorded late, with leases
// that went stale), done outcomes with and without a results URL, errors retried after a
// backoff, an owner's leases released, results expired and forgotten, and the clock moved to
// lease expiries and due times. A model of tasks, leases and links checks, besides the
// invariant checker: a request completes only through record_fulfilment (never by the timer;
// after a tick an estimate in progress lies past now); record_fulfilment is stale exactly when
// the lease is not the task's current one; a claimed task is not claimed again before its lease
// expires, and attempts grow by one per claim; tokens are the same on every claim, empty for
// erasure; a request completed with a URL has its token found by engine::results for its
// workspace (not another's) until results_lifetime passes, then expired (still after it is
// forgotten), and listed by expired_results in expiry order; one completed without a URL has
// none; after the history, every request ends terminal and nothing is left due.
//
// The third test runs the histories with distribution (issue 10), alternating the fulfilment
// mode by seed: two workspaces with outputs of three pure test partners batching differently
// (three device ids or an hour; each request at once; two items or ten minutes), erasures with
// random identities (so some entries are skipped), and the forwarding steps: claims by two owners
// with random maxima (recorded at once, held and recorded late, or abandoned to their leases),
// every verdict (sent, retry with and without Retry-After, too large, bad credentials, failed),
// outcomes recorded twice, outputs added, updated (closing circuits), deactivated, activated and
// removed, dead batches redriven, an owner's leases released, and the engine reopened over the
// same store. The invariant checker runs after every step. A model of leases checks that a
// recorded outcome is stale exactly when its lease is no longer the batch's, that a batch is not
// claimed again before its lease expires, and what releasing an owner's leases releases. At the
// end, with the circuits closed and the dead batches redriven, the forwards are driven to
// quiescence: every entry of every request is `sent` or `skipped` (or `failed` where its output
// was removed), nothing is left queued, and the last callback delivered to each URL of a
// forwarded request carries its final entries and status.
#include <opendsr/engine.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/faulty_storage.hpp"
#include "../support/request_bodies.hpp"
#include "../support/test_partners.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <random>
#include <set>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::make_body;
using testing::uuid_v4;
using faulty_storage_policy = testing::faulty_storage::commit_policy;

constexpr int seeds = 30;
constexpr int steps_per_seed = 200;
constexpr int check_every = 5;
// The distribution histories check the store after every step: fewer of them keep the test's
// time under AddressSanitizer near the others'.
constexpr int distribution_seeds = 20;

// How often each kind of answer came up, over all seeds: the histories must reach every case.
using outcome_counts = std::map<std::string, int>;

class random_history {
 public:
  random_history(std::uint64_t seed, outcome_counts& seen, bool tasks = false, bool distribution = false)
      : rng_(seed), faulty_(store_), seen_(seen), tasks_(tasks), distribution_(distribution) {
    engine_options o = testing::test_options();
    if (tasks_) {
      o.fulfilment.mode = fulfilment_mode::tasks;
      o.fulfilment.lease = std::chrono::minutes(10);
    }
    policy_ = o.fulfilment;
    o.max_group_size = 4;
    o.tick_batch_size = 1 + rng_() % 4;
    o.callbacks.max_attempts = 1 + rng_() % 3;  // dead letters happen
    o.max_transaction_attempts = 3;
    if (distribution_) {
      o.distribution.partners = {
          std::make_shared<testing::test_kind>("devices", "devices.example",
                                               std::vector{identity_type::ios_advertising_id,
                                                           identity_type::android_advertising_id}),
          std::make_shared<testing::test_kind>("people", "people.example",
                                               std::vector{identity_type::controller_customer_id, identity_type::email}),
          std::make_shared<testing::test_kind>("mixed", "mixed.example",
                                               std::vector{identity_type::email, identity_type::ios_advertising_id})};
      o.distribution.max_attempts = 2 + rng_() % 3;  // retries run out
    }
    options_.emplace(o);
    e_.emplace(engine::open(faulty_, o).value());
    if (distribution_) {
      for (const auto& [workspace, name] : {std::pair("w1", "Devices"), std::pair("w1", "People"), std::pair("w1", "Mixed"),
                                            std::pair("w2", "People"), std::pair("w2", "Devices")}) {
        EXPECT_TRUE(e_->add_output(workspace, definition_of(name), now_));
        outputs_.emplace(workspace, name);
      }
    }
    faults_ = [this]() -> result<void> {
      const auto roll = rng_() % 100;
      if (roll < 15) return error(errc::storage_conflict, "injected");
      if (roll < 18) return error(errc::storage_io, "injected");
      return {};
    };
    faulty_.set_policy(faults_);
  }

  void run() {
    for (int step = 0; step < steps_per_seed && !::testing::Test::HasFailure(); ++step) {
      const unsigned kinds = tasks_ ? 20 : 13;
      const unsigned roll = rng_() % (kinds + (distribution_ ? 10 : 0));
      if (roll >= kinds) {
        distribution_step(roll - kinds);
        expect_consistent(step);
        continue;
      }
      switch (roll) {
        case 0: case 1: case 2: case 3: submit_one(); break;
        case 4: submit_several(); break;
        case 5: cancel(); break;
        case 6: case 7: advance(); break;
        case 8: case 9: tick(); break;
        case 10: redrive(); break;
        case 11: case 12: deliver(); break;
        case 13: case 14: case 19: claim_tasks(); break;
        case 15: record_held(); break;
        case 16: release_leases(); break;
        case 17: expire_results(); break;
        case 18: advance_to_lease(); break;
        default: break;
      }
      if (step % check_every == 0 || distribution_) expect_consistent(step);
    }
    // Without faults, everything ends terminal within a month, and every callback is delivered
    // once the dead letters are redriven and the receivers answer.
    faulty_.set_policy(nullptr);
    now_ += std::chrono::days(30);
    ASSERT_TRUE(e_->tick(now_));
    if (distribution_) drain_forwards();
    ASSERT_TRUE(e_->redrive_callbacks(now_));
    for (int round = 0; round < 10; ++round, now_ += std::chrono::days(1)) {  // past every backoff and lease
      if (tasks_) {
        const auto due_tasks = e_->claim_fulfilments(now_, 1000, "final").value();
        for (const auto& c : due_tasks) {
          on_claimed(c, "final");
          record_outcome(c, c.job.type == request_type::erasure ? outcome_kind::done_without_url : outcome_kind::done_with_url);
        }
      }
      // A delivered callback makes the next of its chain due now: claim until none is (a forwarded
      // request's chain is as long as its status and entry changes).
      for (auto claimed = e_->claim_callbacks(now_, 1000, "final").value(); !claimed.empty();
           claimed = e_->claim_callbacks(now_, 1000, "final").value()) {
        std::vector<callback_outcome> outcomes;
        for (const auto& c : claimed) outcomes.push_back({c.entry_key, c.lease, true, "sig", {}});
        EXPECT_EQ(e_->record_callbacks(outcomes, now_).value().delivered, claimed.size());
        for (const auto& c : claimed) note_delivered(c);
      }
    }
    EXPECT_EQ(e_->callback_queue().value().queued, 0u);
    if (tasks_) {  // every package past its lifetime, deleted and forgotten
      expect_consistent(steps_per_seed);
      now_ += policy_.results_lifetime;
      const auto expired = e_->expired_results(now_, 100'000).value();
      std::size_t pending = 0;
      for (const auto& [key, link] : links_) pending += !link.forgotten;
      EXPECT_EQ(expired.size(), pending);
      EXPECT_EQ(e_->forget_expired_results(expired).value(), pending);
      for (auto& [key, link] : links_) link.forgotten = true;
      EXPECT_TRUE(e_->fulfilment_tasks().value().empty());
    }
    EXPECT_EQ(e_->next_due().value(), std::nullopt);
    for (const auto& [key, accepted] : accepted_) {
      const auto s = e_->status(key.first, key.second);
      ASSERT_TRUE(s);
      EXPECT_TRUE(is_terminal(s->status));
    }
    if (distribution_) expect_distribution_settled();
    expect_consistent(steps_per_seed);
  }

 private:
  using request_key = std::pair<std::string, std::string>;

  std::string pick_workspace() { return rng_() % 2 ? "w1" : "w2"; }
  std::string pick_id() { return uuid_v4(rng_() % 80); }

  std::string random_body(const std::string& id) {
    static const char* types[] = {"erasure", "access", "portability"};
    testing::body_spec s{.id = id, .type = types[distribution_ && rng_() % 2 ? 2 : rng_() % 3]};
    s.identities = {{"email", std::to_string(rng_() % 4) + "@example.com"}};
    if (rng_() % 3 == 0) s.identities.emplace_back("ios_advertising_id", "IDFA-" + std::to_string(rng_() % 2));
    if (distribution_) {  // device ids and customer ids for the partners; some requests suit none of them
      if (rng_() % 3 == 0) s.identities.emplace_back("android_advertising_id", "adid-" + std::to_string(rng_() % 3));
      if (rng_() % 4 == 0) s.identities.emplace_back("controller_customer_id", "cust-" + std::to_string(rng_() % 3));
      if (s.identities.size() > 1 && rng_() % 3 == 0) s.identities.erase(s.identities.begin());
    }
    if (rng_() % 4 == 0) s.extension_identities = {{"other", "o"}};
    if (rng_() % 2) s.skip_waiting_period = rng_() % 2 == 0;
    for (std::size_t n = rng_() % 3; n > 0; --n) s.callback_urls.push_back("https://cb" + std::to_string(n) + ".example/x");
    if (rng_() % 4 == 0) s.group_id = "g" + std::to_string(rng_() % 3);
    return make_body(s);
  }

  // Checks one submission's answer against the model; returns true iff it was accepted.
  void check_answer(const std::string& workspace, const std::string& id, const result<receipt>& r) {
    const request_key key{workspace, id};
    ++seen_[r ? "submit accepted" : "submit " + r.error().error_code().message()];
    if (r) {
      EXPECT_FALSE(accepted_.contains(key)) << "accepted twice: " << id;
      accepted_.emplace(key, true);
      EXPECT_EQ(r->received_time, now_);
      return;
    }
    switch (r.error().code()) {
      case errc::duplicate_request_id: EXPECT_TRUE(accepted_.contains(key)) << id; break;
      case errc::identity_conflict: {
        // The message names a request of this workspace that is in flight.
        const std::string& m = r.error().message();
        const std::string blocking = m.substr(m.size() - 37, 36);
        const auto s = e_->status(workspace, blocking);
        ASSERT_TRUE(s) << m;
        EXPECT_FALSE(is_terminal(s->status)) << m;
        break;
      }
      case errc::group_full: break;  // the checker verifies counts against members
      case errc::storage_conflict:
      case errc::storage_io:
        // An injected fault: nothing of it was kept.
        if (!accepted_.contains(key)) {
          EXPECT_EQ(e_->status(workspace, id).error().code(), errc::not_found);
        }
        break;
      default: ADD_FAILURE() << "unexpected answer for " << id << ": " << r.error().message();
    }
  }

  void submit_one() {
    const std::string workspace = pick_workspace(), id = pick_id(), body = random_body(id);
    check_answer(workspace, id, e_->submit(workspace, body, now_));
  }

  void submit_several() {
    std::vector<std::string> workspaces, ids, bodies;
    for (std::size_t n = 2 + rng_() % 3; n > 0; --n) {
      workspaces.push_back(pick_workspace());
      ids.push_back(pick_id());
      bodies.push_back(random_body(ids.back()));
    }
    std::vector<submission> batch;
    for (std::size_t i = 0; i < ids.size(); ++i) batch.push_back({workspaces[i], bodies[i], now_});
    const auto results = e_->submit_batch(batch);
    ASSERT_EQ(results.size(), batch.size());
    for (std::size_t i = 0; i < results.size(); ++i) check_answer(workspaces[i], ids[i], results[i]);
  }

  void cancel() {
    std::string workspace = pick_workspace(), id = pick_id();
    if (!accepted_.empty() && rng_() % 4 != 0) {  // mostly requests that exist
      auto it = accepted_.begin();
      std::advance(it, rng_() % accepted_.size());
      std::tie(workspace, id) = it->first;
    }
    const auto before = e_->status(workspace, id);
    const auto c = e_->cancel(workspace, id, now_);
    ++seen_[c ? "cancel accepted" : "cancel " + c.error().error_code().message()];
    if (!accepted_.contains({workspace, id})) {
      EXPECT_EQ(c.error().code(), errc::not_found);
      return;
    }
    ASSERT_TRUE(before);
    if (c) {
      EXPECT_EQ(before->status, request_status::pending);
      EXPECT_EQ(e_->status(workspace, id)->status, request_status::cancelled);
    } else if (c.error().code() == errc::invalid_operation) {
      // Not pending, or pending with its cancel window closed: then a tick now moves it on.
      if (before->status == request_status::pending) {
        faulty_.set_policy(nullptr);
        ASSERT_TRUE(e_->tick(now_));
        faulty_.set_policy(faults_);
        EXPECT_NE(e_->status(workspace, id)->status, request_status::pending) << id;
      }
    } else {
      EXPECT_TRUE(c.error().code() == errc::storage_conflict || c.error().code() == errc::storage_io)
          << c.error().message();
      EXPECT_EQ(e_->status(workspace, id)->status, before->status);
    }
  }

  void advance() {
    const auto due = e_->next_due().value();
    if (due && rng_() % 2) now_ = std::max(now_, *due);  // exactly when work falls due
    else now_ += std::chrono::microseconds(rng_() % (std::chrono::microseconds(std::chrono::days(3)).count()));
  }

  void tick() {
    const auto r = e_->tick(now_);
    if (r && r->transitions > 0) ++seen_["tick with transitions"];
    if (r && tasks_) {
      ++seen_["tick"];
      expect_estimates_past_now();
    }
    if (r && tasks_ && rng_() % 4 != 0) {
      // Due tasks stay due until a runner claims them: no check of next_due this time.
    } else if (r) {
      // Nothing the tick can do is left due; what is due is callbacks (and tasks and expired
      // results), and once a dispatcher (and a runner) has claimed them all (and the expired
      // packages are forgotten), nothing at all is due until later.
      faulty_.set_policy(nullptr);
      if (tasks_) {
        const auto due_tasks = e_->claim_fulfilments(now_, 100'000, "tick-check").value();
        for (const auto& c : due_tasks) {
          on_claimed(c, "tick-check");
          record_outcome(c, random_outcome(c));
        }
      }
      if (distribution_) {  // and every due batch is claimed (and answered without a split: halves fall due now)
        const auto due_forwards = e_->claim_forwards(now_, 100'000, "tick-check").value();
        for (const auto& c : due_forwards) on_forward_claimed(c, "tick-check");
        record_forwards(due_forwards, false);
      }
      std::size_t expired = 0;
      if (tasks_) {  // and packages past their lifetime are deleted
        const auto tokens = e_->expired_results(now_, 100'000).value();
        expired = tokens.size();
        EXPECT_EQ(e_->forget_expired_results(tokens).value(), tokens.size());
        const std::set<std::string> gone(tokens.begin(), tokens.end());
        for (auto& [key, link] : links_)
          if (gone.contains(link.token)) link.forgotten = true;
      }
      const auto claimed = e_->claim_callbacks(now_, 100'000, "tick-check").value();
      const auto due = e_->next_due().value();
      EXPECT_TRUE(!due || *due > now_) << "due " << (due ? format_rfc3339(*due) : "never") << " at "
                                       << format_rfc3339(now_) << ", " << expired << " results expired";
      record(claimed);
      faulty_.set_policy(faults_);
    } else {
      EXPECT_TRUE(r.error().code() == errc::storage_conflict || r.error().code() == errc::storage_io)
          << r.error().message();
    }
  }

  // Claims some due callbacks and records outcomes for them.
  void deliver() {
    auto claimed = e_->claim_callbacks(now_, 1 + rng_() % 8, rng_() % 2 ? "node-a" : "node-b");
    if (!claimed) {
      EXPECT_TRUE(claimed.error().code() == errc::storage_conflict || claimed.error().code() == errc::storage_io);
      return;
    }
    ++seen_[claimed->empty() ? "claim of nothing" : "claim"];
    if (rng_() % 8 == 0) {
      ++seen_["claims abandoned"];  // as if the dispatcher crashed: the leases expire
      return;
    }
    record(*claimed);
  }

  void record(const std::vector<claimed_callback>& claimed) {
    std::vector<callback_outcome> outcomes;
    for (const auto& c : claimed) {
      const bool ok = rng_() % 3 != 0;
      outcomes.push_back({c.entry_key, c.lease, ok, "sig", ok ? "" : "HTTP 500"});
    }
    const auto report = e_->record_callbacks(outcomes, now_);
    if (!report) {
      EXPECT_TRUE(report.error().code() == errc::storage_conflict || report.error().code() == errc::storage_io);
      return;
    }
    EXPECT_EQ(report->delivered + report->retried + report->dead_lettered + report->stale, outcomes.size());
    if (report->delivered) ++seen_["callbacks delivered"];
    if (report->retried) ++seen_["callbacks retried"];
    if (report->dead_lettered) ++seen_["callbacks dead-lettered"];
    for (std::size_t i = 0; i < claimed.size(); ++i)
      if (outcomes[i].delivered) note_delivered(claimed[i]);
    if (rng_() % 4 == 0 && !outcomes.empty()) {
      const auto again = e_->record_callbacks(outcomes, now_);  // a duplicate report changes nothing
      if (again) {
        EXPECT_EQ(again->stale, outcomes.size());
        ++seen_["outcomes recorded twice"];
      }
    }
  }

  void redrive() {
    const auto n = e_->redrive_callbacks(now_, pick_workspace());
    if (n && *n > 0) ++seen_["dead letters redriven"];
  }

  void expect_consistent(int step) {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << "after step " << step << ": " << ::testing::PrintToString(problems);
    if (tasks_) expect_tasks_model(step);
  }

  // ---- fulfilment_mode::tasks ----

  // The model of one request's task, from the claims and outcomes the engine accepted.
  struct task_model {
    std::string lease;  // the current lease; empty when none (never claimed, released, retried)
    std::string owner;
    timestamp lease_expiry;
    std::uint32_t attempts = 0;
    std::string token;  // from the first claim
    bool completed = false;
  };
  // The results link of a request completed with a URL.
  struct link_model {
    std::string token;
    timestamp expires;
    bool forgotten = false;
  };
  enum class outcome_kind { done_with_url, done_without_url, failed };

  static constexpr const char* owners[] = {"node-a", "node-b", "node-c"};

  request_key key_of(const fulfilment_job& job) const { return {job.controller_id, job.subject_request_id}; }

  void on_claimed(const claimed_fulfilment& c, const std::string& owner) {
    const request_key key = key_of(c.job);
    EXPECT_TRUE(accepted_.contains(key)) << "claimed a request never accepted: " << key.second;
    task_model& t = tasks_model_[key];
    EXPECT_FALSE(t.completed) << "a completed request's task claimed: " << key.second;
    if (!t.lease.empty()) {
      EXPECT_GE(now_, t.lease_expiry) << "claimed again before its lease expired: " << key.second;
      ++seen_["task claimed again after its lease expired"];
    }
    EXPECT_EQ(c.job.attempt, t.attempts + 1) << "attempts grow by one per claim: " << key.second;
    t.attempts = c.job.attempt;
    EXPECT_EQ(c.job.results_token.empty(), c.job.type == request_type::erasure) << key.second;
    if (t.token.empty()) t.token = c.job.results_token;
    EXPECT_EQ(c.job.results_token, t.token) << "the same token on every claim: " << key.second;
    t.lease = c.lease;
    t.owner = owner;
    t.lease_expiry = now_ + policy_.lease;
    const auto s = e_->status(key.first, key.second);
    if (s) {
      EXPECT_EQ(s->status, request_status::in_progress) << key.second;
    }
  }

  outcome_kind random_outcome(const claimed_fulfilment& c) {
    const auto roll = rng_() % 3;
    if (roll == 0) return outcome_kind::failed;
    if (roll == 1 || c.job.type == request_type::erasure) return outcome_kind::done_without_url;
    return outcome_kind::done_with_url;
  }

  void record_outcome(const claimed_fulfilment& c, outcome_kind kind) {
    const request_key key = key_of(c.job);
    fulfilment_outcome o{key.first, key.second, c.lease, fulfilment_done{}};
    std::optional<std::string> url;
    if (kind == outcome_kind::failed) o.outcome = error(errc::storage_io, "injected fulfilment failure");
    if (kind == outcome_kind::done_with_url) {
      url = "https://results.example/v3/results/" + c.job.results_token;
      o.outcome = fulfilment_done{url};
    }
    task_model& t = tasks_model_[key];
    const bool current = !t.completed && !t.lease.empty() && t.lease == c.lease;
    const auto r = e_->record_fulfilment(o, now_);
    if (!r) {
      EXPECT_TRUE(r.error().code() == errc::storage_conflict || r.error().code() == errc::storage_io)
          << r.error().message();
      return;
    }
    if (!current) {
      EXPECT_EQ(*r, fulfilment_recorded::stale) << key.second;
      ++seen_["fulfilment outcome stale"];
      return;
    }
    t.lease.clear();
    if (kind == outcome_kind::failed) {
      EXPECT_EQ(*r, fulfilment_recorded::retrying) << key.second;
      ++seen_["fulfilment retrying"];
      return;
    }
    EXPECT_EQ(*r, fulfilment_recorded::completed) << key.second;
    t.completed = true;
    ++seen_[url ? "fulfilment completed with a link" : "fulfilment completed without a link"];
    if (url) links_[key] = {c.job.results_token, now_ + policy_.results_lifetime};
    const auto s = e_->status(key.first, key.second);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->status, request_status::completed) << key.second;
    EXPECT_EQ(s->results_url, url) << key.second;
  }

  // Claims some due tasks for one owner; records some outcomes now, holds the others for later
  // (when their lease may be lost) or forever (a runner that died).
  void claim_tasks() {
    const std::string owner = owners[rng_() % 3];
    auto claimed = e_->claim_fulfilments(now_, 1 + rng_() % 4, owner);
    if (!claimed) {
      EXPECT_TRUE(claimed.error().code() == errc::storage_conflict || claimed.error().code() == errc::storage_io);
      return;
    }
    ++seen_[claimed->empty() ? "fulfilment claim of nothing" : "fulfilment claim"];
    for (const auto& c : *claimed) {
      on_claimed(c, owner);
      if (rng_() % 3) record_outcome(c, random_outcome(c));
      else held_.push_back(c);
    }
  }

  void record_held() {
    if (held_.empty()) return;
    const std::size_t i = rng_() % held_.size();
    const claimed_fulfilment c = held_[i];
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    ++seen_["fulfilment outcome recorded late"];
    record_outcome(c, random_outcome(c));
  }

  void release_leases() {
    const std::string owner = owners[rng_() % 3];
    std::size_t expected = 0;
    for (const auto& [key, t] : tasks_model_) expected += !t.completed && !t.lease.empty() && t.owner == owner;
    const auto n = e_->release_fulfilment_leases(owner, now_);
    if (!n) {
      EXPECT_TRUE(n.error().code() == errc::storage_conflict || n.error().code() == errc::storage_io);
      return;
    }
    EXPECT_EQ(*n, expected) << owner;
    if (*n > 0) ++seen_["fulfilment leases released"];
    for (auto& [key, t] : tasks_model_)
      if (!t.completed && t.owner == owner) t.lease.clear();
  }

  void expire_results() {
    const std::size_t max = 1 + rng_() % 4;
    const auto expired = e_->expired_results(now_, max);
    ASSERT_TRUE(expired);
    std::vector<std::pair<timestamp, std::string>> due;
    for (const auto& [key, link] : links_)
      if (!link.forgotten && link.expires <= now_) due.emplace_back(link.expires, link.token);
    std::sort(due.begin(), due.end());
    EXPECT_EQ(expired->size(), std::min(max, due.size()));
    std::optional<timestamp> previous;
    for (const std::string& token : *expired) {
      auto it = std::find_if(due.begin(), due.end(), [&](const auto& d) { return d.second == token; });
      ASSERT_NE(it, due.end()) << "expired_results lists a token that is not due";
      if (previous) {
        EXPECT_LE(*previous, it->first) << "expired_results in expiry order";
      }
      previous = it->first;
    }
    if (expired->empty()) return;
    ++seen_["results expired"];
    std::vector<std::string> forget(expired->begin(), expired->begin() + static_cast<std::ptrdiff_t>(1 + rng_() % expired->size()));
    if (rng_() % 3 == 0) forget.push_back(forget.front());  // forgotten twice: counted once
    const auto n = e_->forget_expired_results(forget);
    if (!n) {
      EXPECT_TRUE(n.error().code() == errc::storage_conflict || n.error().code() == errc::storage_io);
      return;
    }
    const std::set<std::string> distinct(forget.begin(), forget.end());
    EXPECT_EQ(*n, distinct.size());
    for (auto& [key, link] : links_)
      if (distinct.contains(link.token)) link.forgotten = true;
    ++seen_["results forgotten"];
  }

  // Moves the clock to a held lease's expiry, or just past a backoff, or a little on.
  void advance_to_lease() {
    std::vector<timestamp> expiries;
    for (const auto& [key, t] : tasks_model_)
      if (!t.lease.empty() && !t.completed) expiries.push_back(t.lease_expiry);
    const auto roll = rng_() % 3;
    if (roll == 0 && !expiries.empty()) {
      now_ = std::max(now_, expiries[rng_() % expiries.size()] - std::chrono::microseconds(rng_() % 2));
    } else if (roll == 1) {
      now_ += std::chrono::seconds(1 + rng_() % 3600);  // within the retry backoffs
    } else {
      now_ += std::chrono::minutes(rng_() % 20);  // about a lease
    }
  }

  void expect_estimates_past_now() {
    for (const auto& [key, accepted] : accepted_) {
      const auto s = e_->status(key.first, key.second);
      ASSERT_TRUE(s);
      if (s->status != request_status::in_progress) continue;
      ASSERT_TRUE(s->expected_completion_time) << key.second;
      EXPECT_GT(*s->expected_completion_time, now_) << "an overdue estimate moves past now: " << key.second;
      auto [at, fresh] = estimates_.try_emplace(key, *s->expected_completion_time);
      if (!fresh && at->second != *s->expected_completion_time) ++seen_["overdue estimate moved"];
      at->second = *s->expected_completion_time;
    }
  }

  void expect_tasks_model(int step) {
    for (const auto& [key, accepted] : accepted_) {
      const auto s = e_->status(key.first, key.second);
      ASSERT_TRUE(s);
      const auto t = tasks_model_.find(key);
      const bool recorded = t != tasks_model_.end() && t->second.completed;
      EXPECT_EQ(s->status == request_status::completed, recorded)
          << "after step " << step << ": completed only through record_fulfilment: " << key.second;
    }
    for (const auto& [key, t] : tasks_model_) {
      if (!t.completed || t.token.empty()) continue;
      const auto link = links_.find(key);
      const auto found = e_->results(key.first, t.token, now_);
      if (link == links_.end()) {  // completed without a URL: no link
        EXPECT_EQ(found.error().code(), errc::not_found) << key.second;
        continue;
      }
      ASSERT_TRUE(found) << key.second << ": " << found.error().message();
      EXPECT_EQ(found->subject_request_id, key.second);
      EXPECT_EQ(found->expires, link->second.expires);
      EXPECT_EQ(found->expired, now_ >= link->second.expires) << key.second;
      if (found->expired) ++seen_["results link expired"];
      const std::string other = key.first == "w1" ? "w2" : "w1";
      EXPECT_EQ(e_->results(other, t.token, now_).error().code(), errc::not_found) << "another workspace's token";
    }
  }

  // ---- distribution ----

  // The outputs of the histories: three partners batching differently.
  static output_definition definition_of(const std::string& name) {
    if (name == "Devices")
      return {name, "devices", true, {{{"max_items", "3"}, {"max_age_s", "3600"}}, {{"key", "device-secret-0001"}}, {}}};
    if (name == "People") return {name, "people", true, {{}, {{"key", "people-secret-0002"}}, {}}};
    return {name, "mixed", true, {{{"max_items", "2"}, {"max_age_s", "600"}}, {{"key", "mixed-secret-0003"}}, {}}};
  }
  static constexpr const char* output_names[] = {"Devices", "People", "Mixed"};
  static constexpr const char* forward_owners[] = {"node-a", "node-b"};

  using output_key = std::pair<std::string, std::string>;  // (workspace, name)

  // The model of a batch's current lease, from the claims and outcomes the engine accepted.
  struct lease_model {
    std::string lease;
    std::string owner;
    timestamp expiry;
    output_key output;
  };

  static bool storage_error(const error& e) {
    return e.code() == errc::storage_conflict || e.code() == errc::storage_io;
  }

  void distribution_step(unsigned roll) {
    switch (roll) {
      case 0: case 1: case 9: claim_forwards(); break;
      case 2: record_held_forward(); break;
      case 3: manage_output(); break;
      case 4: redrive_forwards(); break;
      case 5: release_forward_leases(forward_owners[rng_() % 2]); break;
      case 6: advance_to_forward(); break;
      case 7:
        if (rng_() % 3 == 0) restart();
        else claim_forwards();
        break;
      case 8: submit_one(); break;
      default: break;
    }
  }

  void on_forward_claimed(const claimed_forward& c, const std::string& owner) {
    EXPECT_TRUE((outputs_.contains({c.workspace, c.output}))) << "a claim for an output that is not there: " << c.output;
    EXPECT_FALSE(c.subjects.empty());
    EXPECT_GE(c.requests, c.subjects.size());
    EXPECT_GE(c.attempt, 1u);
    EXPECT_FALSE(c.config.credentials.empty());
    const auto it = leases_.find(c.batch_key);
    if (it != leases_.end()) {
      EXPECT_GE(now_, it->second.expiry) << "a batch claimed again before its lease expired: " << c.output;
      ++seen_["batch claimed again after its lease expired"];
    }
    leases_[c.batch_key] = {c.lease, owner, now_ + options_->distribution.lease, {c.workspace, c.output}};
    if (const auto listed = e_->outputs(c.workspace)) {
      for (const auto& o : *listed) {
        if (o.name == c.output) {
          EXPECT_FALSE(o.circuit_open) << "a claim for an output whose circuit is open";
        }
      }
    }
  }

  forward_verdict random_verdict(bool may_split) {
    switch (rng_() % (may_split ? 9 : 8)) {
      case 0: case 1: return {forward_verdict_kind::sent, {}, {}, {}};
      case 2: return {forward_verdict_kind::sent, {}, "job-" + std::to_string(rng_() % 100), "job"};
      case 3: return {forward_verdict_kind::retry, std::chrono::seconds(rng_() % 900), "HTTP 429", {}};
      case 4: return {forward_verdict_kind::retry, {}, "HTTP 503", {}};
      case 5: return {forward_verdict_kind::bad_credentials, {}, "invalid credentials (HTTP 401)", {}};
      case 6: return {forward_verdict_kind::failed, {}, "HTTP 400", {}};
      case 7: return {forward_verdict_kind::retry, {}, {}, {}};  // a timeout
      default: return {forward_verdict_kind::too_large, {}, "HTTP 413", {}};
    }
  }

  // Records random outcomes for claimed batches in one call; checks which are stale against the
  // model of leases; sometimes records the same outcomes again (all stale then).
  void record_forwards(const std::vector<claimed_forward>& claimed, bool may_split = true) {
    if (claimed.empty()) return;
    std::vector<forward_outcome> outcomes;
    std::vector<bool> current;
    std::size_t stale = 0;
    for (const auto& c : claimed) {
      outcomes.push_back({c.batch_key, c.lease, random_verdict(may_split)});
      const auto it = leases_.find(c.batch_key);
      current.push_back(it != leases_.end() && it->second.lease == c.lease);
      stale += !current.back();
    }
    const auto report = e_->record_forwards(outcomes, now_);
    if (!report) {
      EXPECT_TRUE(storage_error(report.error())) << report.error().message();
      return;
    }
    EXPECT_EQ(report->sent + report->retried + report->split + report->failed + report->stale, outcomes.size());
    EXPECT_EQ(report->stale, stale) << "stale exactly when the lease is no longer the batch's";
    for (std::size_t i = 0; i < claimed.size(); ++i)
      if (current[i]) leases_.erase(claimed[i].batch_key);
    if (report->sent) ++seen_["forwards sent"];
    if (report->retried) ++seen_["forwards retried"];
    if (report->split) ++seen_["forwards split"];
    if (report->failed) ++seen_["forwards failed"];
    if (report->stale) ++seen_["forward outcomes stale"];
    if (rng_() % 4 == 0) {
      const auto again = e_->record_forwards(outcomes, now_);
      if (again) {
        EXPECT_EQ(again->stale, outcomes.size());
        ++seen_["forward outcomes recorded twice"];
      }
    }
  }

  void claim_forwards() {
    const std::string owner = forward_owners[rng_() % 2];
    const std::size_t max = 1 + rng_() % 4;
    const auto claimed = e_->claim_forwards(now_, max, owner);
    if (!claimed) {
      EXPECT_TRUE(storage_error(claimed.error())) << claimed.error().message();
      return;
    }
    EXPECT_LE(claimed->size(), max);
    ++seen_[claimed->empty() ? "forward claim of nothing" : "forward claim"];
    for (const auto& c : *claimed) on_forward_claimed(c, owner);
    switch (rng_() % 6) {
      case 0:
        if (!claimed->empty()) ++seen_["forward claims abandoned"];  // the dispatcher died: the leases expire
        break;
      case 1: held_forwards_.insert(held_forwards_.end(), claimed->begin(), claimed->end()); break;
      default: record_forwards(*claimed); break;
    }
  }

  void record_held_forward() {
    if (held_forwards_.empty()) return;
    const std::size_t i = rng_() % held_forwards_.size();
    const claimed_forward c = held_forwards_[i];
    held_forwards_.erase(held_forwards_.begin() + static_cast<std::ptrdiff_t>(i));
    ++seen_["forward outcome recorded late"];
    record_forwards({c});
  }

  void release_forward_leases(const std::string& owner) {
    std::size_t expected = 0;
    for (const auto& [key, l] : leases_) expected += l.owner == owner && l.expiry > now_;
    const auto n = e_->release_forward_leases(owner, now_);
    if (!n) {
      EXPECT_TRUE(storage_error(n.error())) << n.error().message();
      return;
    }
    EXPECT_EQ(*n, expected) << owner;
    if (*n > 0) ++seen_["forward leases released"];
    std::erase_if(leases_, [&](const auto& kv) { return kv.second.owner == owner && kv.second.expiry > now_; });
  }

  void manage_output() {
    const std::string workspace = pick_workspace(), name = output_names[rng_() % 3];
    const output_key key{workspace, name};
    if (!outputs_.contains(key)) {
      output_definition def = definition_of(name);
      def.active = rng_() % 4 != 0;
      const auto added = e_->add_output(workspace, def, now_);
      if (!added) {
        EXPECT_TRUE(storage_error(added.error())) << added.error().message();
        return;
      }
      outputs_.insert(key);
      ++seen_["output added"];
      return;
    }
    const auto roll = rng_() % 8;
    if (roll == 0) {
      const auto removed = e_->remove_output(workspace, name, now_);
      if (!removed) {
        EXPECT_TRUE(storage_error(removed.error())) << removed.error().message();
        return;
      }
      outputs_.erase(key);
      removed_.insert(key);
      std::erase_if(leases_, [&](const auto& kv) { return kv.second.output == key; });
      ++seen_["output removed"];
      return;
    }
    output_change change;
    if (roll == 1) change.active = false;
    if (roll == 2) change.active = true;
    if (roll == 3 && name != "People")
      change.settings = std::map<std::string, std::string>{{"max_items", std::to_string(1 + rng_() % 4)},
                                                           {"max_age_s", rng_() % 2 ? "0" : "600"}};
    if (roll == 4) change.credentials = std::map<std::string, std::string>{{"key", "rotated-" + std::to_string(rng_() % 100)}};
    bool was_open = false;
    if (const auto listed = e_->outputs(workspace)) {
      for (const auto& o : *listed) was_open |= o.name == name && o.circuit_open;
    }
    const auto updated = e_->update_output(workspace, name, change, now_);
    if (!updated) {
      EXPECT_TRUE(storage_error(updated.error())) << updated.error().message();
      return;
    }
    EXPECT_FALSE(updated->circuit_open);
    ++seen_[was_open ? "circuit closed by an update" : "output updated"];
  }

  void redrive_forwards() {
    std::optional<std::string> workspace, output;
    if (rng_() % 2) workspace = pick_workspace();
    if (workspace && rng_() % 2) output = output_names[rng_() % 3];
    const auto dead = e_->dead_forwards(workspace, output).value();
    const auto n = e_->redrive_forwards(now_, workspace, output);
    if (!n) {
      EXPECT_TRUE(storage_error(n.error())) << n.error().message();
      return;
    }
    EXPECT_EQ(*n, dead.size());
    if (*n > 0) ++seen_["dead forwards redriven"];
  }

  // Moves the clock to a lease's expiry, to when work falls due, or a little on.
  void advance_to_forward() {
    const auto roll = rng_() % 3;
    if (roll == 0 && !leases_.empty()) {
      auto it = leases_.begin();
      std::advance(it, rng_() % leases_.size());
      now_ = std::max(now_, it->second.expiry - std::chrono::microseconds(rng_() % 2));
    } else if (roll == 1) {
      const auto due = e_->next_due().value();
      if (due) now_ = std::max(now_, *due);
    } else {
      now_ += std::chrono::seconds(rng_() % 1200);
    }
  }

  // A new engine over the same store, as after a crash; its dispatcher may release its leases.
  void restart() {
    faulty_.set_policy(nullptr);
    e_.reset();
    e_.emplace(engine::open(faulty_, *options_).value());
    faulty_.set_policy(faults_);
    ++seen_["engine restarted"];
    if (rng_() % 2) release_forward_leases(forward_owners[rng_() % 2]);
  }

  void note_delivered(const claimed_callback& c) {
    const auto at = detail::keys::parse_callback_key(c.entry_key);
    ASSERT_TRUE(at) << "a callback entry key that is not one";
    delivered_[{c.workspace, c.subject_request_id, c.url}][at->history_index] = c.body;
  }

  // Without faults: every circuit closed, every dead batch redriven, and every batch claimed and
  // sent until nothing is left to forward.
  void drain_forwards() {
    for (const auto& [workspace, name] : outputs_) ASSERT_TRUE(e_->update_output(workspace, name, {}, now_));
    ASSERT_TRUE(e_->redrive_forwards(now_));
    for (int round = 0; round < 20; ++round) {
      now_ += std::chrono::days(1);  // past every window, backoff and lease
      const auto claimed = e_->claim_forwards(now_, 100'000, "final").value();
      const auto queue = e_->forward_queue().value();
      if (claimed.empty() && queue.queued == 0 && queue.batches == 0) break;
      std::vector<forward_outcome> outcomes;
      for (const auto& c : claimed) {
        on_forward_claimed(c, "final");
        outcomes.push_back({c.batch_key, c.lease, {forward_verdict_kind::sent, {}, {}, {}}});
      }
      EXPECT_EQ(e_->record_forwards(outcomes, now_).value().sent, claimed.size());
      for (const auto& c : claimed) leases_.erase(c.batch_key);
    }
    const auto queue = e_->forward_queue().value();
    EXPECT_EQ(queue.queued, 0u);
    EXPECT_EQ(queue.batches, 0u);
    EXPECT_EQ(queue.dead_batches, 0u);
    EXPECT_EQ(queue.circuits_open, 0u);
    EXPECT_EQ(queue.oldest_due, std::nullopt);
  }

  static std::string extensions_of(const std::string& body) {
    return boost::json::serialize(boost::json::parse(body).at("extensions"));
  }
  static std::string status_of(const std::string& body) {
    return boost::json::serialize(boost::json::parse(body).at("request_status"));
  }

  // Nothing pending, nothing lost; the last callback to each URL announced the final entries.
  void expect_distribution_settled() {
    for (const auto& [key, accepted] : accepted_) {
      const auto s = e_->status(key.first, key.second);
      ASSERT_TRUE(s);
      for (const auto& d : s->distribution) {
        ++seen_["entry " + std::string(to_string(d.status))];
        const bool removed = d.status == distribution_state::failed && removed_.contains({key.first, d.name});
        EXPECT_TRUE(d.status == distribution_state::sent || d.status == distribution_state::skipped || removed)
            << key.second << " for output " << d.name << " ends " << to_string(d.status) << ": "
            << d.status_message.value_or("");
      }
      if (s->distribution.empty()) continue;
      for (auto it = delivered_.lower_bound({key.first, key.second, {}});
           it != delivered_.end() && std::get<0>(it->first) == key.first && std::get<1>(it->first) == key.second; ++it) {
        ASSERT_FALSE(it->second.empty());
        const std::string& last = it->second.rbegin()->second;
        EXPECT_EQ(extensions_of(last), extensions_of(s->body))
            << "the last callback of " << key.second << " to " << std::get<2>(it->first) << " misses its final entries";
        EXPECT_EQ(status_of(last), status_of(s->body)) << key.second;
        ++seen_["forwarded request's last callback checked"];
      }
    }
  }

  std::mt19937_64 rng_;
  memory_storage store_;
  testing::faulty_storage faulty_;
  std::optional<engine> e_;
  timestamp now_ = testing::at("2021-11-29T18:16:24.556805Z");
  std::map<request_key, bool> accepted_;
  faulty_storage_policy faults_;
  outcome_counts& seen_;
  bool tasks_ = false;
  fulfilment_policy policy_;
  std::map<request_key, task_model> tasks_model_;
  std::map<request_key, link_model> links_;
  std::vector<claimed_fulfilment> held_;
  std::map<request_key, timestamp> estimates_;  // in progress, as the last tick left them
  // distribution
  bool distribution_ = false;
  std::optional<engine_options> options_;  // to open the engine again
  std::set<output_key> outputs_;  // the outputs that exist
  std::set<output_key> removed_;  // the outputs removed at some time (their unsent entries failed)
  std::map<std::string, lease_model> leases_;  // batch key -> its current lease
  std::vector<claimed_forward> held_forwards_;
  // (workspace, id, url) -> history index -> body of each callback recorded delivered
  std::map<std::tuple<std::string, std::string, std::string>, std::map<std::uint8_t, std::string>> delivered_;
};

TEST(EngineProperty, RandomHistoriesKeepEveryInvariant) {
  outcome_counts seen;
  for (int seed = 1; seed <= seeds && !::testing::Test::HasFailure(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    random_history(seed, seen).run();
  }
  for (errc code : {errc::duplicate_request_id, errc::identity_conflict, errc::group_full, errc::storage_conflict,
                    errc::storage_io})
    EXPECT_GT(seen["submit " + make_error_code(code).message()], 0) << make_error_code(code).message();
  for (errc code : {errc::not_found, errc::invalid_operation})
    EXPECT_GT(seen["cancel " + make_error_code(code).message()], 0) << make_error_code(code).message();
  EXPECT_GT(seen["submit accepted"], 0);
  EXPECT_GT(seen["cancel accepted"], 0);
  EXPECT_GT(seen["tick with transitions"], 0);
  for (const char* what : {"callbacks delivered", "callbacks retried", "callbacks dead-lettered", "claims abandoned",
                           "outcomes recorded twice", "dead letters redriven"})
    EXPECT_GT(seen[what], 0) << what;
  std::string summary;
  for (const auto& [what, n] : seen) summary += "  " + what + ": " + std::to_string(n) + "\n";
  std::cout << "outcomes over " << seeds << " seeds:\n" << summary;
}

TEST(EngineProperty, RandomHistoriesWithFulfilmentTasksKeepEveryInvariant) {
  outcome_counts seen;
  for (int seed = 1; seed <= seeds && !::testing::Test::HasFailure(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    random_history(seed, seen, true).run();
  }
  EXPECT_GT(seen["submit accepted"], 0);
  for (const char* what : {"fulfilment claim", "fulfilment claim of nothing", "fulfilment completed with a link",
                           "fulfilment completed without a link", "fulfilment retrying", "fulfilment outcome stale",
                           "fulfilment outcome recorded late", "fulfilment leases released",
                           "task claimed again after its lease expired", "results expired", "results forgotten",
                           "results link expired", "overdue estimate moved", "callbacks delivered"})
    EXPECT_GT(seen[what], 0) << what;
  std::string summary;
  for (const auto& [what, n] : seen) summary += "  " + what + ": " + std::to_string(n) + "\n";
  std::cout << "outcomes over " << seeds << " seeds in tasks mode:\n" << summary;
}

TEST(EngineProperty, RandomHistoriesWithDistributionKeepEveryInvariant) {
  outcome_counts seen;
  for (int seed = 1; seed <= distribution_seeds && !::testing::Test::HasFailure(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    random_history(seed, seen, seed % 2 == 0, true).run();
  }
  for (const char* what : {"forward claim", "forward claim of nothing", "forwards sent", "forwards retried",
                           "forwards split", "forwards failed", "forward outcomes stale", "forward outcomes recorded twice",
                           "forward outcome recorded late", "forward claims abandoned", "forward leases released",
                           "batch claimed again after its lease expired", "dead forwards redriven", "output added",
                           "output removed", "output updated", "circuit closed by an update", "engine restarted",
                           "entry sent", "entry skipped", "forwarded request's last callback checked",
                           "callbacks delivered", "fulfilment completed without a link"})
    EXPECT_GT(seen[what], 0) << what;
  std::string summary;
  for (const auto& [what, n] : seen) summary += "  " + what + ": " + std::to_string(n) + "\n";
  std::cout << "outcomes over " << distribution_seeds << " seeds with distribution:\n" << summary;
}

}  // namespace
}  // namespace opendsr
