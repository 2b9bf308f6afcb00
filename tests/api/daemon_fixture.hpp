// The fixture the fulfilment and distribution tests share: a temporary directory (dir_) with a
// data directory (data_) holding the workspace "demo" (demo_), and one opendsrd on it (daemon_),
// started in test mode by start_daemon(). For the crash tests: the clock moved from a thread of
// its own (move_clock_async) and the daemon SIGKILLed (kill).
//
// A fixture that adds to SetUp() calls daemon_fixture::SetUp() first, under
// ASSERT_NO_FATAL_FAILURE; one that adds to TearDown() stops what it started, then calls
// daemon_fixture::TearDown(), which joins the mover, stops the daemon (SIGKILL, if still running)
// and removes the directory.
#pragma once

#include "daemon_process.hpp"
#include "http_wire.hpp"

#include "../support/fulfilment_daemon.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace opendsr::testing {

class daemon_fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(env_path("OPENDSRD").empty()) << "OPENDSRD must name the opendsrd binary";
    dir_ = make_temp_dir();
    data_ = dir_ / "data";
    ASSERT_NO_FATAL_FAILURE(add_workspace(data_, "demo", demo_));
  }
  void TearDown() override {
    join_mover();
    daemon_.reset();  // SIGKILL, if still running
    remove_temp_dir(dir_);
  }

  // Starts (or restarts) opendsrd on data_ with `flags`, its clock at `at`: a test-mode clock
  // starts where --test-start says, so a restart names the time the last run had reached.
  void start_daemon(std::vector<std::string> flags, std::string at = fulfilment_test_start) {
    daemon_ = std::make_unique<fulfilment_daemon>(data_, std::move(flags), std::move(at));
    ASSERT_TRUE(daemon_->ready()) << daemon_->process().stdout_text() << daemon_->process().log();
  }

  // POST /admin/clock from a thread of its own, on its own connection: the answer comes once the
  // daemon's workers are idle, or never (the daemon is killed first).
  void move_clock_async(const std::string& json) {
    join_mover();
    mover_ = std::thread([port = daemon_->port(), json] {
      try {
        wire::connection c(port);
        if (c.send(wire::format_request("POST", "/admin/clock", {"Content-Type: application/json"}, json)))
          (void)c.read(std::chrono::seconds(120));
      } catch (const std::exception&) {
      }
    });
  }
  void join_mover() {
    if (mover_.joinable()) mover_.join();
  }

  // SIGKILLs the daemon (expecting it still ran), then joins the mover.
  void kill() {
    EXPECT_EQ(daemon_->process().stop(SIGKILL), -1);
    join_mover();
    daemon_.reset();
  }

  fs::path dir_, data_;
  workspace demo_;
  std::unique_ptr<fulfilment_daemon> daemon_;
  std::thread mover_;
};

}  // namespace opendsr::testing
