// Group commit for concurrent POST /requests.
//
// A durable commit costs an fsync (about 0.3 ms on LMDB) whether it holds one request or a
// hundred. The combiner lets submissions that arrive together share one: the first caller that
// finds no commit in progress becomes the leader and commits every waiting submission (its own
// included) with engine::submit_batch; the others wait for their own result and return it on
// their own thread, so each still renders and signs its response there, in parallel.
#pragma once

#include <opendsr/engine.hpp>

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <vector>

namespace opendsr::detail {

// Thread safety: submit() may be called from any thread concurrently; it blocks until its
// submission is committed (or refused). A batch holds at most max_batch submissions.
class submit_combiner {
 public:
  // REQUIRES: max_batch >= 1; the engine outlives the combiner.
  submit_combiner(engine& e, std::size_t max_batch);

  // As engine::submit(workspace, body, received), committed together with the submissions of
  // other threads waiting at the same time.
  result<receipt> submit(std::string_view workspace, std::string_view body, timestamp received);

  // Submissions waiting for a leader to take them now (for observation and tests).
  std::size_t waiting() const;

 private:
  struct slot {
    submission input;
    std::optional<result<receipt>> output;
  };

  engine& engine_;
  std::size_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable committed_;
  std::vector<slot*> queue_;  // waiting for a leader, in arrival order
  bool committing_ = false;
};

}  // namespace opendsr::detail
