#include "api/submit_combiner.hpp"

#include <algorithm>

namespace opendsr::detail {

submit_combiner::submit_combiner(engine& e, std::size_t max_batch) : engine_(e), max_batch_(max_batch) {}

std::size_t submit_combiner::waiting() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

result<receipt> submit_combiner::submit(std::string_view workspace, std::string_view body, timestamp received) {
  slot mine{{workspace, body, received}, std::nullopt};
  std::unique_lock lock(mutex_);
  queue_.push_back(&mine);
  committed_.wait(lock, [&] { return mine.output.has_value() || !committing_; });
  if (mine.output) return std::move(*mine.output);

  // Leader: take the oldest waiting submissions (this one among them, unless the queue is
  // longer than a batch: then this thread commits batches until its own is done).
  committing_ = true;
  while (!mine.output) {
    const std::size_t n = std::min(queue_.size(), max_batch_);
    std::vector<slot*> batch(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    lock.unlock();
    std::vector<submission> inputs;
    inputs.reserve(n);
    for (slot* s : batch) inputs.push_back(s->input);
    std::vector<result<receipt>> outputs = engine_.submit_batch(inputs);
    lock.lock();
    for (std::size_t i = 0; i < n; ++i) batch[i]->output = std::move(outputs[i]);
    committed_.notify_all();
  }
  committing_ = false;
  committed_.notify_all();  // a waiter becomes the next leader
  return std::move(*mine.output);
}

}  // namespace opendsr::detail
