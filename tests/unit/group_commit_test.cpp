// The group committer on the memory adapter: every submitter gets its own result (duplicates and
// conflicts inside one batch included), submissions queued behind a commit share the next one,
// a storage failure fails exactly its batch, back-pressure and shutdown.
//
// Nothing sleeps: a gate in the storage stops the writer inside a commit, so a test knows a batch
// is being committed while it queues the next one.
#include <opendsr/group_commit.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/faulty_storage.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <latch>
#include <mutex>
#include <thread>

namespace opendsr {
namespace {

using testing::body_spec;
using testing::make_body;
using testing::uuid_v4;

constexpr std::string_view ws = "3622";
const timestamp received = testing::at("2021-11-29T18:16:24Z");

// Counts successful commits and, while held, stops every commit at its start until released.
// Thread-safe: the writer thread commits while the test thread holds, releases and counts.
class gated_storage final : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
    changed_.notify_all();
  }
  // Waits until a commit is stopped at the gate.
  void wait_for_held_commit() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return waiting_ > 0; });
  }
  std::size_t commits() const {
    std::lock_guard lock(mutex_);
    return commits_;
  }

  result<std::unique_ptr<write_transaction>> begin_write() override {
    auto txn = storage_wrapper::begin_write();
    if (!txn) return std::move(txn).error();
    return std::unique_ptr<write_transaction>(std::make_unique<txn_type>(std::move(*txn), *this));
  }

 private:
  class txn_type final : public write_transaction_wrapper {
   public:
    txn_type(std::unique_ptr<write_transaction> target, gated_storage& owner)
        : write_transaction_wrapper(std::move(target)), owner_(owner) {}
    result<void> commit() override {
      owner_.pass_gate();
      auto done = write_transaction_wrapper::commit();
      if (done) owner_.count_commit();
      return done;
    }

   private:
    gated_storage& owner_;
  };

  void pass_gate() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !held_; });
    --waiting_;
  }
  void count_commit() {
    std::lock_guard lock(mutex_);
    ++commits_;
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  std::size_t waiting_ = 0;
  std::size_t commits_ = 0;
};

// Collects the results of submit_async calls, each under its own index.
class outcomes {
 public:
  explicit outcomes(std::size_t n) : results_(n, error(errc::internal, "not completed")) {}

  group_committer::completion_handler slot(std::size_t i) {
    return [this, i](result<receipt> r) {
      std::lock_guard lock(mutex_);
      results_[i] = std::move(r);
      ++completed_;
      changed_.notify_all();
    };
  }
  // Waits until n handlers ran, and returns the results.
  const std::vector<result<receipt>>& wait_for(std::size_t n) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return completed_ >= n; });
    return results_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<result<receipt>> results_;
  std::size_t completed_ = 0;
};

std::string unique_body(std::uint64_t n) {
  return make_body({.id = uuid_v4(n), .identities = {{"email", "subject" + std::to_string(n) + "@example.com"}}});
}

// The engine over faulty_storage (for injected failures) over the gate over memory.
class GroupCommitTest : public ::testing::Test {
 protected:
  std::unique_ptr<group_committer> start(group_commit_options o = {}) {
    return group_committer::start(engine_, o).value();
  }
  void expect_consistent() {
    const auto problems = testing::store_problems(memory_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }
  // Holds the gate and submits one request, whose batch then waits in its commit.
  void occupy_writer(group_committer& c, outcomes& first) {
    gate_.hold();
    ASSERT_TRUE(c.submit_async(ws, unique_body(0), received, first.slot(0)));
    gate_.wait_for_held_commit();
  }

  struct queued_results {
    std::vector<result<receipt>> results;  // [0] the held submission's, [i + 1] bodies[i]'s
    std::size_t commits;                   // commits after the held one
  };
  // Queues `bodies` while the writer is held in a commit, then lets it go.
  queued_results commit_behind_held_commit(group_committer& c, const std::vector<std::string>& bodies) {
    outcomes out(bodies.size() + 1);
    occupy_writer(c, out);
    const std::size_t before = gate_.commits();
    for (std::size_t i = 0; i < bodies.size(); ++i)
      EXPECT_TRUE(c.submit_async(ws, bodies[i], received, out.slot(i + 1)));
    gate_.release();
    auto results = out.wait_for(bodies.size() + 1);
    return {std::move(results), gate_.commits() - before - 1};
  }
  static std::vector<std::string> unique_bodies(std::size_t first, std::size_t count) {
    std::vector<std::string> out;
    for (std::size_t i = first; i < first + count; ++i) out.push_back(unique_body(i));
    return out;
  }

  memory_storage memory_;
  gated_storage gate_{memory_};
  testing::faulty_storage faults_{gate_};
  engine engine_ = engine::open(faults_, testing::test_options()).value();
};

TEST_F(GroupCommitTest, OptionsAreValidated) {
  auto no_batch = group_committer::start(engine_, {.max_batch_size = 0});
  ASSERT_FALSE(no_batch);
  EXPECT_EQ(no_batch.error().code(), errc::invalid_argument);
  EXPECT_NE(no_batch.error().message().find("max_batch_size"), std::string::npos);
  auto no_queue = group_committer::start(engine_, {.max_queued = 0});
  ASSERT_FALSE(no_queue);
  EXPECT_NE(no_queue.error().message().find("max_queued"), std::string::npos);
}

TEST_F(GroupCommitTest, LoneSubmissionIsCommittedAtOnceWithTheEnginesReceipt) {
  auto c = start();
  const std::size_t before = gate_.commits();
  const std::string body = unique_body(1);
  const auto r = c->submit(ws, body, received);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(gate_.commits(), before + 1);
  EXPECT_EQ(r->subject_request_id, uuid_v4(1));
  EXPECT_EQ(r->received_time, received);
  // The same receipt as the engine's own submit gives for the same body on an equal store.
  memory_storage other;
  engine direct = engine::open(other, testing::test_options()).value();
  EXPECT_EQ(r->body, direct.submit(ws, body, received)->body);
  EXPECT_EQ(engine_.status(ws, uuid_v4(1))->status, request_status::pending);
}

TEST_F(GroupCommitTest, SubmissionsThatFailBeforeTheTransactionNeverReachTheWriter) {
  auto c = start();
  const std::size_t before = gate_.commits();
  EXPECT_EQ(c->submit(ws, "{", received).error().code(), errc::invalid_json);
  EXPECT_EQ(c->submit("", unique_body(1), received).error().code(), errc::invalid_argument);
  const auto refused = c->submit_async(ws, R"({"regulation":"gdpr"})", received, [](result<receipt>) { FAIL(); });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), errc::invalid_request);
  EXPECT_EQ(gate_.commits(), before);
}

TEST_F(GroupCommitTest, SubmissionsQueuedDuringACommitShareTheNextOne) {
  auto c = start();
  const auto [results, commits] = commit_behind_held_commit(*c, unique_bodies(1, 20));
  EXPECT_EQ(commits, 1u);  // all 20 together
  for (std::size_t i = 0; i <= 20; ++i) {
    ASSERT_TRUE(results[i]) << i << ": " << results[i].error().message();
    EXPECT_EQ(results[i]->subject_request_id, uuid_v4(i));
  }
  expect_consistent();
}

TEST_F(GroupCommitTest, BatchesAreCappedAtMaxBatchSize) {
  auto c = start({.max_batch_size = 8});
  const auto [results, commits] = commit_behind_held_commit(*c, unique_bodies(1, 20));
  for (const auto& r : results) EXPECT_TRUE(r) << r.error().message();
  EXPECT_EQ(commits, 3u);  // 8 + 8 + 4
}

TEST_F(GroupCommitTest, RefusalsInsideOneBatchAreEachSubmissionsOwn) {
  engine_options o = testing::test_options();
  o.max_group_size = 2;
  engine_ = engine::open(faults_, o).value();
  auto c = start();
  const auto [r, commits] = commit_behind_held_commit(*c, {
      make_body({.id = uuid_v4(1), .identities = {{"email", "a@example.com"}}}),
      make_body({.id = uuid_v4(1), .identities = {{"email", "other@example.com"}}}),  // same id
      make_body({.id = uuid_v4(2), .identities = {{"email", "a@example.com"}}}),      // same identities
      make_body({.id = uuid_v4(3), .identities = {{"email", "c@example.com"}}, .group_id = "g"}),
      make_body({.id = uuid_v4(4), .identities = {{"email", "d@example.com"}}, .group_id = "g"}),
      make_body({.id = uuid_v4(5), .identities = {{"email", "e@example.com"}}, .group_id = "g"}),  // third of 2
  });
  EXPECT_EQ(commits, 1u);
  ASSERT_TRUE(r[1]);
  EXPECT_EQ(r[1]->subject_request_id, uuid_v4(1));
  EXPECT_EQ(r[2].error().code(), errc::duplicate_request_id);
  EXPECT_EQ(r[3].error().code(), errc::identity_conflict);
  EXPECT_NE(r[3].error().message().find(uuid_v4(1)), std::string::npos);
  EXPECT_TRUE(r[4]);
  EXPECT_TRUE(r[5]);
  EXPECT_EQ(r[6].error().code(), errc::group_full);
  EXPECT_EQ(engine_.group(ws, "g")->members.size(), 2u);
  expect_consistent();
}

TEST_F(GroupCommitTest, StorageFailureFailsExactlyThatBatch) {
  auto c = start();
  outcomes out(5);
  occupy_writer(*c, out);
  for (std::size_t i = 1; i <= 3; ++i)
    ASSERT_TRUE(c->submit_async(ws, unique_body(i), received, out.slot(i)));
  // The held commit has passed the fault policy already: the next commit is the queued batch's.
  faults_.fail_next_commits(1, errc::storage_io);
  gate_.release();
  out.wait_for(4);
  ASSERT_TRUE(c->submit_async(ws, unique_body(4), received, out.slot(4)));
  const auto& r = out.wait_for(5);
  EXPECT_TRUE(r[0]) << r[0].error().message();
  for (std::size_t i = 1; i <= 3; ++i) {
    ASSERT_FALSE(r[i]);
    EXPECT_EQ(r[i].error().code(), errc::storage_io);
    EXPECT_EQ(engine_.status(ws, uuid_v4(i)).error().code(), errc::not_found);
  }
  EXPECT_TRUE(r[4]) << r[4].error().message();
  EXPECT_TRUE(engine_.status(ws, uuid_v4(0)));
  EXPECT_TRUE(engine_.status(ws, uuid_v4(4)));
  expect_consistent();
}

TEST_F(GroupCommitTest, FullQueueRefusesWithUnavailable) {
  auto c = start({.max_queued = 3});
  outcomes out(4);
  occupy_writer(*c, out);  // taken by the writer: no longer queued
  for (std::size_t i = 1; i <= 3; ++i)
    ASSERT_TRUE(c->submit_async(ws, unique_body(i), received, out.slot(i)));
  const auto refused = c->submit_async(ws, unique_body(9), received, [](result<receipt>) { FAIL(); });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), errc::unavailable);
  EXPECT_TRUE(is_retryable(refused.error().code()));
  EXPECT_EQ(c->submit(ws, unique_body(10), received).error().code(), errc::unavailable);
  gate_.release();
  for (const auto& r : out.wait_for(4)) EXPECT_TRUE(r) << r.error().message();
  EXPECT_TRUE(c->submit(ws, unique_body(11), received));  // room again
  EXPECT_EQ(engine_.status(ws, uuid_v4(9)).error().code(), errc::not_found);
}

TEST_F(GroupCommitTest, StopCommitsEverythingQueuedThenRefuses) {
  auto c = start({.max_batch_size = 4, .max_queued = 100000});
  outcomes out(100000);
  occupy_writer(*c, out);
  std::size_t queued = 1;
  for (; queued <= 10; ++queued)
    ASSERT_TRUE(c->submit_async(ws, unique_body(queued), received, out.slot(queued)));
  std::thread stopper([&] { c->stop(); });
  // Submissions keep being taken until stop() has begun; then they are refused.
  for (;; ++queued) {
    ASSERT_LT(queued, 100000u);
    const auto r = c->submit_async(ws, unique_body(queued), received, out.slot(queued));
    if (!r) {
      EXPECT_EQ(r.error().code(), errc::unavailable);
      EXPECT_NE(r.error().message().find("shutting down"), std::string::npos) << r.error().message();
      break;
    }
    std::this_thread::yield();
  }
  gate_.release();
  stopper.join();
  // stop() returned: every accepted submission was committed and completed.
  const auto& results = out.wait_for(queued);
  for (std::size_t i = 0; i < queued; ++i) {
    ASSERT_TRUE(results[i]) << i << ": " << results[i].error().message();
    EXPECT_TRUE(engine_.status(ws, uuid_v4(i))) << i;
  }
  EXPECT_EQ(c->submit(ws, unique_body(5000), received).error().code(), errc::unavailable);
  c->stop();  // idempotent
  expect_consistent();
}

TEST_F(GroupCommitTest, HandlersMaySubmitAgain) {
  auto c = start();
  outcomes out(2);
  auto second = out.slot(1);
  ASSERT_TRUE(c->submit_async(ws, unique_body(0), received, [&](result<receipt> r) {
    out.slot(0)(std::move(r));
    EXPECT_TRUE(c->submit_async(ws, unique_body(1), received, second));
  }));
  for (const auto& r : out.wait_for(2)) EXPECT_TRUE(r) << r.error().message();
}

// Many threads at once, blocking and asynchronous, with ids and identity sets shared between
// threads: each submitter gets the result of its own submission. Batches of at most 4 leave
// blocked submitters queued behind more than one batch (they sleep on the next batch's word and
// must still be woken by their own).
TEST_F(GroupCommitTest, ConcurrentSubmittersEachGetTheirOwnResult) {
  constexpr std::size_t threads = 8;
  constexpr std::size_t per_thread = 40;
  auto c = start({.max_batch_size = 4});
  const std::size_t before = gate_.commits();
  // Submission j of thread t, by j % 4: 0 unique; 1 an id every thread uses; 2 an identity set
  // every thread uses; 3 a member of one of three groups.
  auto id_of = [](std::size_t t, std::size_t j) { return uuid_v4(j % 4 == 1 ? 100000 + j : 1000 * (t + 1) + j); };
  auto body_of = [&](std::size_t t, std::size_t j) {
    body_spec s{.id = id_of(t, j), .identities = {{"email", "t" + std::to_string(t) + "j" + std::to_string(j) + "@x.com"}}};
    if (j % 4 == 2) s.identities = {{"email", "shared" + std::to_string(j) + "@x.com"}};
    if (j % 4 == 3) s.group_id = "g" + std::to_string(j % 3);
    return make_body(s);
  };
  std::vector<std::vector<result<receipt>>> results(threads);
  std::latch go(threads);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<std::string> bodies;
      for (std::size_t j = 0; j < per_thread; ++j) bodies.push_back(body_of(t, j));
      go.arrive_and_wait();
      if (t % 2 == 0) {
        for (const std::string& b : bodies) results[t].push_back(c->submit(ws, b, received));
      } else {
        outcomes mine(per_thread);
        for (std::size_t j = 0; j < per_thread; ++j)
          ASSERT_TRUE(c->submit_async(ws, bodies[j], received, mine.slot(j)));
        results[t] = mine.wait_for(per_thread);
      }
    });
  for (auto& th : pool) th.join();

  std::size_t accepted = 0;
  for (std::size_t j = 0; j < per_thread; ++j) {
    std::size_t winners = 0;
    for (std::size_t t = 0; t < threads; ++t) {
      ASSERT_EQ(results[t].size(), per_thread);
      const auto& r = results[t][j];
      if (r) {
        ++winners;
        EXPECT_EQ(r->subject_request_id, id_of(t, j));
        EXPECT_TRUE(engine_.status(ws, id_of(t, j)));
      } else if (j % 4 == 1) {
        EXPECT_EQ(r.error().code(), errc::duplicate_request_id) << r.error().message();
      } else {
        EXPECT_EQ(r.error().code(), errc::identity_conflict) << t << "/" << j << ": " << r.error().message();
        EXPECT_EQ(j % 4, 2u);
      }
    }
    EXPECT_EQ(winners, j % 4 == 1 || j % 4 == 2 ? 1u : threads) << j;
    accepted += winners;
  }
  std::size_t grouped = 0;
  for (const char* g : {"g0", "g1", "g2"}) grouped += engine_.group(ws, g)->members.size();
  EXPECT_EQ(grouped, threads * per_thread / 4);
  const std::size_t commits = gate_.commits() - before;
  EXPECT_GE(commits, (threads * per_thread + 3) / 4);  // no batch exceeds max_batch_size
  EXPECT_LE(commits, threads * per_thread);
  ::testing::Test::RecordProperty("commits", static_cast<int>(commits));
  ::testing::Test::RecordProperty("accepted", static_cast<int>(accepted));
  expect_consistent();
}

}  // namespace
}  // namespace opendsr
