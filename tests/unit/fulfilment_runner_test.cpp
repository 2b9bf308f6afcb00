// The fulfilment runner and the data fulfilment over the engine on the memory adapter, with the
// subject store beside it, a results store on files, and a manual clock. The package writer here
// writes the profile's records as lines (the zip builder has its own tests, and the daemon's
// black-box tests run the two together).
#include <opendsr/data_fulfilment.hpp>
#include <opendsr/fulfilment_runner.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/results_files_store.hpp>
#include <opendsr/subject_data.hpp>

#include "../support/engine_fixture.hpp"
#include "../support/request_bodies.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <mutex>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::at;
using testing::make_body;
using testing::uuid_v4;

constexpr std::string_view ws = "ws1";
const timestamp received = at("2021-11-29T18:16:24Z");  // a Monday
const timestamp access_start = at("2021-12-02T00:00:00Z");
const std::string base_url = "https://dsr.example/v3/results/";

// Writes each record of the profile as a line.
result<void> write_lines(subject_data& data, std::string_view workspace, profile_id profile, results_writer& out) {
  result<void> appended;
  OPENDSR_TRY(data.records(workspace, profile, [&](const subject_record& r) {
    appended = out.append(std::string(r.json) + "\n");
    return appended.has_value();
  }));
  return appended;
}

// Fails the first `failures` runs, then forwards; counts the most runs at once.
class flaky_fulfilment final : public fulfilment {
 public:
  flaky_fulfilment(fulfilment& target, int failures) : target_(target), failures_(failures) {}

  result<fulfilment_done> fulfil(const fulfilment_job& job) override {
    const int now = ++running_;
    int seen = most_;
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {}
    std::this_thread::yield();
    result<fulfilment_done> out = failures_.fetch_sub(1) > 0 ? result<fulfilment_done>(error(errc::storage_io, "the disk is away"))
                                                             : target_.fulfil(job);
    --running_;
    ++runs_;
    return out;
  }

  int most() const { return most_; }
  int runs() const { return runs_; }

 private:
  fulfilment& target_;
  std::atomic<int> failures_, running_{0}, most_{0}, runs_{0};
};

class FulfilmentRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fulfilment_runner_test." + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    engine_options o = testing::test_options();
    o.fulfilment.mode = fulfilment_mode::tasks;
    engine_.emplace(engine::open(store_, o).value());
    subjects_ = open_subject_store(store_).value();
    results_ = results_files_store::open_directory({dir_}).value();
    fulfil_ = make_data_fulfilment(*subjects_, *results_, {base_url, write_lines}).value();
    const profile_write alice{.id = 7, .attributes = R"({"name":"Alice"})",
                              .identities = {{identity_type::email, "alice@example.com"}},
                              .events = {R"({"e":1})", R"({"e":2})", R"({"e":3})"}};
    const profile_write bob{.id = 8, .attributes = R"({"name":"Bob"})",
                            .identities = {{identity_type::email, "bob@example.com"}}, .events = {}};
    const profile_write both[] = {alice, bob};
    ASSERT_TRUE(subjects_->write(ws, both));
  }

  void TearDown() override {
    runner_.reset();
    results_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start(fulfilment& f, std::size_t workers = 2) {
    fulfilment_runner_options o;
    o.owner = "node";
    o.workers = workers;
    o.results = results_.get();
    runner_ = fulfilment_runner::start(*engine_, f, clock_, o).value();
  }

  // Polls the runner at the clock's time and waits until it is idle.
  void run() {
    runner_->poll();
    runner_->wait_idle();
  }

  void submit(int n, std::string type, std::string email) {
    ASSERT_TRUE(engine_->submit(ws, make_body({.id = uuid_v4(n), .type = type, .identities = {{"email", email}}}), received));
  }

  std::string package(const std::string& url) {
    auto reader = results_->open(url.substr(base_url.size()));
    if (!reader) return "<" + reader.error().message() + ">";
    std::string out(static_cast<std::size_t>((*reader)->size()), '\0');
    EXPECT_EQ((*reader)->read(out).value(), out.size());
    return out;
  }

  void expect_consistent() {
    const auto problems = testing::store_problems(store_);
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  }

  memory_storage store_;
  manual_clock clock_{received};
  std::filesystem::path dir_;
  std::optional<engine> engine_;
  std::unique_ptr<subject_data> subjects_;
  std::unique_ptr<results_files_store> results_;
  std::unique_ptr<fulfilment> fulfil_;
  std::unique_ptr<fulfilment_runner> runner_;
};

TEST_F(FulfilmentRunnerTest, ExportsErasesAndExpires) {
  start(*fulfil_);
  submit(1, "access", "alice@example.com");
  submit(2, "portability", "nobody@example.com");
  submit(3, "erasure", "bob@example.com");
  clock_.set(access_start);
  ASSERT_TRUE(engine_->tick(clock_.now()));
  run();
  EXPECT_TRUE(engine_->fulfilment_tasks()->empty());

  const auto alice = engine_->status(ws, uuid_v4(1)).value();
  EXPECT_EQ(alice.status, request_status::completed);
  ASSERT_TRUE(alice.results_url);
  EXPECT_TRUE(alice.results_url->starts_with(base_url));
  EXPECT_EQ(package(*alice.results_url), "{\"name\":\"Alice\"}\n{\"e\":1}\n{\"e\":2}\n{\"e\":3}\n");

  // Nothing matched: completed, with a link that names no package.
  const auto nobody = engine_->status(ws, uuid_v4(2)).value();
  EXPECT_EQ(nobody.status, request_status::completed);
  ASSERT_TRUE(nobody.results_url);
  EXPECT_EQ(results_->open(nobody.results_url->substr(base_url.size())).error().code(), errc::not_found);

  // Erasure waits out its 7 days, then erases.
  EXPECT_EQ(engine_->status(ws, uuid_v4(3))->status, request_status::pending);
  clock_.set(at("2021-12-07T00:00:00Z"));
  ASSERT_TRUE(engine_->tick(clock_.now()));
  run();
  const auto bob = engine_->status(ws, uuid_v4(3)).value();
  EXPECT_EQ(bob.status, request_status::completed);
  EXPECT_EQ(bob.results_url, std::nullopt);
  EXPECT_EQ(subjects_->resolve(ws, std::vector<identity>{{identity_type::email, "bob@example.com"}}).value(), std::nullopt);
  EXPECT_EQ(subjects_->identities(ws, 8).error().code(), errc::not_found);
  expect_consistent();

  // Seven days after completion the packages are deleted and the links expire.
  const std::string token = alice.results_url->substr(base_url.size());
  clock_.set(access_start + std::chrono::days(7) - 1s);
  run();
  EXPECT_TRUE(results_->open(token));
  clock_.set(access_start + std::chrono::days(7));
  run();
  EXPECT_EQ(results_->open(token).error().code(), errc::not_found);
  EXPECT_TRUE(engine_->results(ws, token, clock_.now())->expired);
  EXPECT_TRUE(engine_->expired_results(clock_.now(), 10)->empty());
  expect_consistent();
}

TEST_F(FulfilmentRunnerTest, FailuresAreRetriedAfterTheirBackoff) {
  flaky_fulfilment flaky(*fulfil_, 1);
  start(flaky);
  submit(1, "access", "alice@example.com");
  clock_.set(access_start);
  ASSERT_TRUE(engine_->tick(clock_.now()));
  run();
  auto tasks = engine_->fulfilment_tasks().value();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].last_error, "the disk is away");
  EXPECT_EQ(engine_->status(ws, uuid_v4(1))->status, request_status::in_progress);
  run();  // not due yet: nothing runs
  EXPECT_EQ(flaky.runs(), 1);
  clock_.set(tasks[0].due);
  run();
  EXPECT_EQ(flaky.runs(), 2);
  EXPECT_EQ(engine_->status(ws, uuid_v4(1))->status, request_status::completed);
  expect_consistent();
}

TEST_F(FulfilmentRunnerTest, RunsAtMostWorkersJobsAtOnceAndFinishesThemAll) {
  flaky_fulfilment counting(*fulfil_, 0);
  start(counting, 3);
  for (int i = 1; i <= 20; ++i) submit(i, "access", "alice" + std::to_string(i) + "@example.com");
  clock_.set(access_start);
  ASSERT_TRUE(engine_->tick(clock_.now()));
  run();
  EXPECT_EQ(counting.runs(), 20);
  EXPECT_LE(counting.most(), 3);
  for (int i = 1; i <= 20; ++i) EXPECT_EQ(engine_->status(ws, uuid_v4(i))->status, request_status::completed);
  expect_consistent();
}

TEST_F(FulfilmentRunnerTest, StartReleasesTheLeasesOfItsOwnerAndStopFinishesRunningJobs) {
  submit(1, "access", "alice@example.com");
  clock_.set(access_start);
  ASSERT_TRUE(engine_->tick(clock_.now()));
  // A runner of the same name claimed the job and died.
  ASSERT_EQ(engine_->claim_fulfilments(clock_.now(), 10, "node")->size(), 1u);
  start(*fulfil_);
  run();  // released at start: runs at once, not after the 30-minute lease
  EXPECT_EQ(engine_->status(ws, uuid_v4(1))->status, request_status::completed);
  runner_->stop();
  runner_->stop();  // idempotent
  EXPECT_EQ(runner_->running(), 0u);
  EXPECT_EQ(fulfilment_runner::start(*engine_, *fulfil_, clock_, {.owner = "x", .workers = 0}).error().code(),
            errc::invalid_argument);
  EXPECT_EQ(make_data_fulfilment(*subjects_, *results_, {"ftp://x/", write_lines}).error().code(), errc::invalid_argument);
  EXPECT_EQ(make_data_fulfilment(*subjects_, *results_, {base_url, nullptr}).error().code(), errc::invalid_argument);
}

}  // namespace
}  // namespace opendsr
