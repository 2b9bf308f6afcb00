// Black-box tests of fulfilment (issue 9): the built opendsrd in --test-mode imports subject data
// over POST /v3/subject-data, fulfils access and portability requests with a signed zip package
// served at results_url, and erases a profile so that none of its values remain in the LMDB
// files. Packages are checked with unzip, sha256sum and openssl (docs/packages.md); links with
// curl. Time passes only when a test moves the daemon's clock (the route answers once the
// fulfilment runner is idle, so a status read right after sees the outcome).
#include "daemon_fixture.hpp"
#include "daemon_process.hpp"

#include "../support/fulfilment_daemon.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace opendsr::testing {
namespace {

class Fulfilment : public daemon_fixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(daemon_fixture::SetUp());
    ASSERT_NO_FATAL_FAILURE(add_workspace(data_, "other", other_));
    ASSERT_NO_FATAL_FAILURE(start_daemon({"--no-demo"}));
  }

  void import(const std::string& lines) {
    auto r = daemon_->import(lines, demo_);
    ASSERT_EQ(r.status, 200) << r.body;
  }

  // The LMDB files of the data directory.
  std::vector<fs::path> lmdb_files() const {
    std::vector<fs::path> out;
    for (auto& e : fs::recursive_directory_iterator(data_))
      if (e.path().filename() == "data.mdb" || e.path().filename() == "lock.mdb") out.push_back(e.path());
    return out;
  }
  bool any_lmdb_file_contains(const std::string& needle) const {
    for (const auto& f : lmdb_files())
      if (file_contains(f, needle)) return true;
    return false;
  }

  workspace other_;
  std::uint64_t serial_ = 0;
};

std::string event_line(int mpid, int n) {
  return "{\"type\":\"view\",\"n\":" + std::to_string(n) + ",\"mpid\":\"" + std::to_string(mpid) + "\",\"path\":\"/p/" +
         std::to_string(n * 7) + "\"}";
}

TEST_F(Fulfilment, AccessAndPortabilityPackagesVerifyAndTheLinkExpires) {
  const std::string attributes = R"({"name":"Ana","tier":"gold","visits":3})";
  std::string lines = R"({"mpid":"42","identities":{"email":"ana-5c1d@example.com","controller_customer_id":"c-42"},"attributes":)" +
                      attributes + "}\n";
  std::vector<std::string> events;
  for (int i = 0; i < 25; ++i) {
    events.push_back(event_line(42, i));
    lines += "{\"mpid\":\"42\",\"event\":" + events.back() + "}\n";
  }
  lines += R"({"mpid":"43","identities":{"email":"bo-empty-5c1d@example.com"}})" "\n";
  ASSERT_NO_FATAL_FAILURE(import(lines));

  // An email alone does not reach a profile holding a customer ID (docs/subject-data.md): both.
  const std::string access =
      daemon_->submit(demo_, ++serial_, "access", {{"email", "ana-5c1d@example.com"}, {"controller_customer_id", "c-42"}});
  const std::string portability = daemon_->submit(demo_, ++serial_, "portability", {{"controller_customer_id", "c-42"}});
  const std::string empty = daemon_->submit(demo_, ++serial_, "access", {{"email", "bo-empty-5c1d@example.com"}});
  EXPECT_EQ(daemon_->status_of(access, demo_), "pending");

  // Access and portability start processing on Thursday 00:00Z; the runner builds the packages.
  daemon_->set("2021-12-02T00:00:00Z");
  const std::string base = "http://127.0.0.1:" + std::to_string(daemon_->port()) + "/v3/results/";
  std::vector<std::string> urls;
  for (const auto& id : {access, portability, empty}) {
    EXPECT_EQ(daemon_->status_of(id, demo_), "completed") << daemon_->request(id, demo_);
    urls.push_back(daemon_->results_url_of(id, demo_));
    EXPECT_TRUE(urls.back().starts_with(base)) << urls.back();
    EXPECT_GT(urls.back().size(), base.size());
  }
  ASSERT_EQ(urls.size(), 3u);
  EXPECT_NE(urls[0], urls[1]);
  // The finished request keeps no identity in its record.
  EXPECT_EQ(daemon_->request(access, demo_).find("ana-5c1d@example.com"), std::string::npos);

  const expected_package full{.empty = false, .attributes = attributes, .events = events};
  for (std::size_t i = 0; i < urls.size(); ++i) {
    SCOPED_TRACE(urls[i]);
    const fs::path zip = dir_ / ("package-" + std::to_string(i) + ".zip");
    auto d = fetch(urls[i], &demo_, zip);
    ASSERT_EQ(d.status, 200) << d.body.substr(0, 300);
    EXPECT_EQ(d.content_type, "application/zip");
    ASSERT_NO_FATAL_FAILURE(expect_valid_package(zip, dir_ / ("unzipped-" + std::to_string(i)), data_,
                                                 i < 2 ? full : expected_package{.empty = true}));
    // Without credentials 401; with another workspace's 404.
    EXPECT_EQ(fetch(urls[i], nullptr, dir_ / "x").status, 401);
    auto foreign = fetch(urls[i], &other_, dir_ / "x");
    EXPECT_EQ(foreign.status, 404);
    EXPECT_EQ(foreign.body.find("PK"), std::string::npos);
  }
  // A token of the right shape that was never issued: 404.
  const std::string token = urls[0].substr(base.size());
  std::string unknown = token;
  unknown[0] = unknown[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(fetch(base + unknown, &demo_, dir_ / "x").status, 404);

  // The packages sit in DIR/results, one file a link, until they expire.
  const fs::path results = data_ / "results";
  EXPECT_EQ(file_count(results), 3u);
  EXPECT_TRUE(entries_starting(results, ".partial-").empty());

  // Day 6 after completion: still there.
  daemon_->advance(6 * 86400);
  {
    auto d = fetch(urls[0], &demo_, dir_ / "day6.zip");
    EXPECT_EQ(d.status, 200);
    ASSERT_NO_FATAL_FAILURE(expect_valid_package(dir_ / "day6.zip", dir_ / "day6", data_, full));
  }
  // Seven days after completion (and a second): 410 with the OpenDSR error body, files gone.
  daemon_->set("2021-12-09T00:00:01Z");
  for (const auto& url : urls) {
    auto gone = fetch(url, &demo_, dir_ / "x");
    EXPECT_EQ(gone.status, 410) << gone.body;
    EXPECT_EQ(gone.content_type.substr(0, 16), "application/json") << gone.content_type;
    EXPECT_NE(gone.body.find("\"code\":410"), std::string::npos) << gone.body;
    EXPECT_NE(gone.body.find("GoneException"), std::string::npos) << gone.body;
    EXPECT_NE(gone.body.find("expired"), std::string::npos) << gone.body;
    // Another workspace still learns nothing.
    EXPECT_EQ(fetch(url, &other_, dir_ / "x").status, 404);
  }
  EXPECT_EQ(file_count(results), 0u) << "expired packages are still in " << results;
}

TEST_F(Fulfilment, AnAccessRequestMatchingNothingCompletesWithALinkThatAnswers404) {
  ASSERT_NO_FATAL_FAILURE(import(R"({"mpid":"7","identities":{"email":"someone@example.com"},"attributes":{"a":1}})" "\n"));
  const std::string id = daemon_->submit(demo_, ++serial_, "access", {{"email", "nobody-here@example.com"}});
  daemon_->set("2021-12-02T00:00:00Z");
  EXPECT_EQ(daemon_->status_of(id, demo_), "completed") << daemon_->request(id, demo_);
  const std::string url = daemon_->results_url_of(id, demo_);
  ASSERT_FALSE(url.empty()) << daemon_->request(id, demo_);
  auto d = fetch(url, &demo_, dir_ / "x");
  EXPECT_EQ(d.status, 404) << d.body;
  EXPECT_NE(d.body.find("NotFoundException"), std::string::npos) << d.body;
  EXPECT_EQ(fetch(url, nullptr, dir_ / "x").status, 401);
  EXPECT_EQ(file_count(data_ / "results"), 0u);
}

TEST_F(Fulfilment, ErasureLeavesNoValueOfTheSubjectInTheStoreFiles) {
  std::string lines =
      R"({"mpid":"501","identities":{"email":"erase-me-7f3a@example.com","controller_customer_id":"cust-erase-7f3a"},"attributes":{"nick":"attr-erase-7f3a"}})" "\n"
      R"({"mpid":"502","identities":{"email":"keep-me-9b2c@example.com","controller_customer_id":"cust-keep-9b2c"},"attributes":{"nick":"attr-keep-9b2c"}})" "\n";
  for (int i = 0; i < 20; ++i) {
    lines += "{\"mpid\":\"501\",\"event\":{\"secret\":\"payload-erase-7f3a-" + std::to_string(i) + "\"}}\n";
    lines += "{\"mpid\":\"502\",\"event\":{\"kept\":\"payload-keep-9b2c-" + std::to_string(i) + "\"}}\n";
  }
  ASSERT_NO_FATAL_FAILURE(import(lines));
  const std::vector<std::string> erased = {"erase-me-7f3a@example.com", "cust-erase-7f3a", "attr-erase-7f3a", "payload-erase-7f3a"};
  const std::vector<std::string> kept = {"keep-me-9b2c@example.com", "cust-keep-9b2c", "attr-keep-9b2c", "payload-keep-9b2c"};
  ASSERT_FALSE(lmdb_files().empty()) << data_;
  for (const auto& v : erased) EXPECT_TRUE(any_lmdb_file_contains(v)) << v << " before the erasure";

  const std::string id = daemon_->submit(
      demo_, ++serial_, "erasure", {{"email", "erase-me-7f3a@example.com"}, {"controller_customer_id", "cust-erase-7f3a"}}, true);
  // Skipping the waiting period, the erasure starts processing at the next midnight.
  daemon_->set("2021-11-30T00:00:00Z");
  EXPECT_EQ(daemon_->status_of(id, demo_), "completed") << daemon_->request(id, demo_);
  EXPECT_EQ(daemon_->results_url_of(id, demo_), "");

  // Before any request names the identities again: no trace in data.mdb or lock.mdb, by a byte
  // search here and by grep (which skips the holes of data.mdb, sparse up to its map size, where
  // strings would read all of it), while the profile that was not erased is still found by both
  // (so the search can fail).
  const auto grep_count = [](const fs::path& f, const std::vector<std::string>& values) {
    std::string command = "grep -c -F";
    for (const auto& v : values) command += " -e '" + v + "'";
    return run(command + " " + f.string()).second;
  };
  for (const auto& f : lmdb_files()) {
    const auto found = found_in_file(f, erased);
    for (std::size_t i = 0; i < erased.size(); ++i) EXPECT_FALSE(found[i]) << erased[i] << " remains in " << f;
    EXPECT_EQ(grep_count(f, erased), "0\n") << f;
  }
  const auto found = found_in_file(data_ / "store" / "data.mdb", kept);
  for (std::size_t i = 0; i < kept.size(); ++i) EXPECT_TRUE(found[i]) << kept[i] << " is gone too";
  EXPECT_NE(grep_count(data_ / "store" / "data.mdb", {"keep-me-9b2c"}), "0\n");

  // An access request for the same identities finds nothing; the kept profile is still served.
  const std::string again = daemon_->submit(demo_, ++serial_, "access", {{"email", "erase-me-7f3a@example.com"}});
  const std::string by_customer = daemon_->submit(demo_, ++serial_, "access", {{"controller_customer_id", "cust-erase-7f3a"}});
  const std::string keep = daemon_->submit(demo_, ++serial_, "access", {{"controller_customer_id", "cust-keep-9b2c"}});
  daemon_->set("2021-12-02T00:00:00Z");
  for (const auto& r : {again, by_customer}) {
    EXPECT_EQ(daemon_->status_of(r, demo_), "completed");
    EXPECT_EQ(fetch(daemon_->results_url_of(r, demo_), &demo_, dir_ / "x").status, 404);
  }
  EXPECT_EQ(daemon_->status_of(keep, demo_), "completed");
  auto d = fetch(daemon_->results_url_of(keep, demo_), &demo_, dir_ / "keep.zip");
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(file_count(data_ / "results"), 1u);
}

}  // namespace
}  // namespace opendsr::testing
