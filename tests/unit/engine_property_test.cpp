// Property test: random interleavings of submit, batch submit, cancel, tick, callback delivery
// (claims, delivered and failed outcomes, claims abandoned as by a crash, outcomes recorded twice,
// dead letters redriven) and the passage of time, over a small pool of workspaces, ids, identities and groups (so duplicates, conflicts and
// full groups happen often), on a store whose commits fail at random (conflicts that the engine
// retries, and I/O errors that fail the operation). After every few steps the invariant checker
// scans the whole store; the answers are checked against a model of which ids were accepted.
#include <opendsr/engine.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/faulty_storage.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

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

// How often each kind of answer came up, over all seeds: the histories must reach every case.
using outcome_counts = std::map<std::string, int>;

class random_history {
 public:
  random_history(std::uint64_t seed, outcome_counts& seen) : rng_(seed), faulty_(store_), seen_(seen) {
    engine_options o = testing::test_options();
    o.max_group_size = 4;
    o.tick_batch_size = 1 + rng_() % 4;
    o.callbacks.max_attempts = 1 + rng_() % 3;  // dead letters happen
    o.max_transaction_attempts = 3;
    e_.emplace(engine::open(faulty_, o).value());
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
      switch (rng_() % 13) {
        case 0: case 1: case 2: case 3: submit_one(); break;
        case 4: submit_several(); break;
        case 5: cancel(); break;
        case 6: case 7: advance(); break;
        case 8: case 9: tick(); break;
        case 10: redrive(); break;
        default: deliver(); break;
      }
      if (step % check_every == 0) expect_consistent(step);
    }
    // Without faults, everything ends terminal within a month, and every callback is delivered
    // once the dead letters are redriven and the receivers answer.
    faulty_.set_policy(nullptr);
    now_ += std::chrono::days(30);
    ASSERT_TRUE(e_->tick(now_));
    ASSERT_TRUE(e_->redrive_callbacks(now_));
    for (int round = 0; round < 10; ++round, now_ += std::chrono::days(1)) {  // past every backoff and lease
      const auto claimed = e_->claim_callbacks(now_, 1000, "final").value();
      std::vector<callback_outcome> outcomes;
      for (const auto& c : claimed) outcomes.push_back({c.entry_key, c.lease, true, "sig", {}});
      EXPECT_EQ(e_->record_callbacks(outcomes, now_).value().delivered, claimed.size());
    }
    EXPECT_EQ(e_->callback_queue().value().queued, 0u);
    EXPECT_EQ(e_->next_due().value(), std::nullopt);
    for (const auto& [key, accepted] : accepted_) {
      const auto s = e_->status(key.first, key.second);
      ASSERT_TRUE(s);
      EXPECT_TRUE(is_terminal(s->status));
    }
    expect_consistent(steps_per_seed);
  }

 private:
  using request_key = std::pair<std::string, std::string>;

  std::string pick_workspace() { return rng_() % 2 ? "w1" : "w2"; }
  std::string pick_id() { return uuid_v4(rng_() % 80); }

  std::string random_body(const std::string& id) {
    static const char* types[] = {"erasure", "access", "portability"};
    testing::body_spec s{.id = id, .type = types[rng_() % 3]};
    s.identities = {{"email", std::to_string(rng_() % 4) + "@example.com"}};
    if (rng_() % 3 == 0) s.identities.emplace_back("ios_advertising_id", "IDFA-" + std::to_string(rng_() % 2));
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
    if (r) {
      // Nothing the tick can do is left due; what is due is callbacks, and once a dispatcher has
      // claimed them all, nothing at all is due until later.
      faulty_.set_policy(nullptr);
      const auto claimed = e_->claim_callbacks(now_, 100'000, "tick-check").value();
      const auto due = e_->next_due().value();
      EXPECT_TRUE(!due || *due > now_);
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
  }

  std::mt19937_64 rng_;
  memory_storage store_;
  testing::faulty_storage faulty_;
  std::optional<engine> e_;
  timestamp now_ = testing::at("2021-11-29T18:16:24.556805Z");
  std::map<request_key, bool> accepted_;
  faulty_storage_policy faults_;
  outcome_counts& seen_;
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

}  // namespace
}  // namespace opendsr
