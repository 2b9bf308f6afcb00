#include <opendsr/memory_storage.hpp>

#include "storage_keys.hpp"

#include <atomic>
#include <condition_variable>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace opendsr {
namespace detail {
namespace {

// Keys to values; nullopt marks a key erased over an older layer.
using entries = std::map<std::string, std::optional<std::string>, std::less<>>;

// One committed state, stacked on the older state it changes. The bottom layer (no parent)
// holds no erase marks. A layer is immutable while anything but its one owner holds it: a reader,
// or more than one newer layer.
struct layer {
  entries changes;
  std::shared_ptr<layer> parent;
};

// The entries a transaction sees, newest first: a write transaction's own writes, then the
// layers of its snapshot down to the bottom.
using sources = std::vector<const entries*>;
using sources_view = std::span<const entries* const>;

void add_layers(sources& out, const layer* top) {
  for (; top != nullptr; top = top->parent.get()) out.push_back(&top->changes);
}

// The value of key in the merged view of `from`, or nullopt.
std::optional<std::string_view> merged_get(sources_view from, std::string_view key) {
  for (const entries* e : from) {
    if (auto it = e->find(key); it != e->end()) {
      if (!it->second) return std::nullopt;
      return std::string_view(*it->second);
    }
  }
  return std::nullopt;
}

// Visits the merged view of `from` as storage's scan() specifies.
void merged_scan(sources_view from, std::string_view prefix, std::string_view start,
                 const scan_visitor& visit) {
  struct cursor {
    entries::const_iterator at, end;
  };
  std::vector<cursor> heads;
  heads.reserve(from.size());
  for (const entries* e : from) heads.push_back({e->lower_bound(start), e->end()});
  auto in_range = [&](const cursor& c) { return c.at != c.end && c.at->first.starts_with(prefix); };
  for (;;) {
    // The least key among the heads; the newest source holding it decides its value.
    const cursor* least = nullptr;
    for (const cursor& c : heads) {
      if (in_range(c) && (least == nullptr || c.at->first < least->at->first)) least = &c;
    }
    if (least == nullptr) return;
    const std::string& key = least->at->first;
    const std::optional<std::string>& value = least->at->second;
    if (value && !visit(key, *value)) return;
    // `key` names the node itself, which outlives the cursors moving past it.
    for (cursor& c : heads) {
      if (in_range(c) && c.at->first == key) ++c.at;
    }
  }
}

// Moves every entry of `from` into `into`, newer over older. Into a bottom layer an erase mark
// removes the key instead of being stored.
void absorb(layer& into, entries&& from) {
  const bool bottom = into.parent == nullptr;
  auto hint = into.changes.begin();
  while (!from.empty()) {
    auto node = from.extract(from.begin());
    if (bottom && !node.mapped()) {
      into.changes.erase(node.key());
      hint = into.changes.begin();
      continue;
    }
    auto at = into.changes.insert(hint, std::move(node));
    // insert() leaves the node untouched when the key was already there.
    if (node) at->second = std::move(node.mapped());
    hint = std::next(at);
  }
}

// True iff `owner` is the only holder of *p, so p's layer may change in place.
bool sole_owner(const std::shared_ptr<layer>& p) {
  if (p.use_count() != 1) return false;
  // A reader that just let go released its reference with a release decrement; pair it so its
  // reads of the layer happen before our writes to it.
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

}  // namespace

class memory_state {
 public:
  memory_state() : top_(std::make_shared<layer>()) {}

  std::shared_ptr<const layer> snapshot() {
    std::lock_guard lock(mutex_);
    return top_;
  }

  // Blocks until no other write transaction is open, then returns the latest layer, which stays
  // the latest and unchanged until release_writer() or publish().
  const layer* acquire_writer() {
    std::unique_lock lock(mutex_);
    writer_free_.wait(lock, [&] { return !writing_; });
    writing_ = true;
    return top_.get();
  }

  void release_writer() {
    {
      std::lock_guard lock(mutex_);
      writing_ = false;
    }
    writer_free_.notify_one();
  }

  // Makes `writes` the latest state and releases the writer.
  // REQUIRES: the caller holds the writer (acquire_writer()).
  void publish(entries&& writes) {
    {
      std::lock_guard lock(mutex_);
      if (sole_owner(top_)) {
        absorb(*top_, std::move(writes));
        // Fold layers no reader holds any more into the ones below them.
        while (top_->parent != nullptr && sole_owner(top_->parent)) {
          std::shared_ptr<layer> below = std::move(top_->parent);
          absorb(*below, std::move(top_->changes));
          top_ = std::move(below);
        }
      } else {
        top_ = std::make_shared<layer>(layer{std::move(writes), std::move(top_)});
      }
      writing_ = false;
    }
    writer_free_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable writer_free_;
  bool writing_ = false;
  // Readers copy this under mutex_; only the writer replaces it or changes its layers.
  std::shared_ptr<layer> top_;
};

namespace {

class memory_read_transaction final : public read_transaction {
 public:
  explicit memory_read_transaction(std::shared_ptr<const layer> snapshot)
      : snapshot_(std::move(snapshot)) {
    add_layers(view_, snapshot_.get());
  }

  result<std::optional<std::string_view>> get(std::string_view key) override {
    OPENDSR_TRY(check_key(key));
    return merged_get(view_, key);
  }

  result<void> scan(std::string_view prefix, std::string_view from,
                    const scan_visitor& visit) override {
    OPENDSR_TRY(check_scan_bounds(prefix, from));
    merged_scan(view_, prefix, scan_start(prefix, from), visit);
    return {};
  }

 private:
  std::shared_ptr<const layer> snapshot_;
  sources view_;
};

class memory_write_transaction final : public write_transaction {
 public:
  explicit memory_write_transaction(memory_state& state) : state_(&state) {
    view_.push_back(&writes_);
    // The latest state stays unchanged while this transaction holds the writer.
    add_layers(view_, state.acquire_writer());
  }

  ~memory_write_transaction() override {
    if (state_ != nullptr) state_->release_writer();
  }

  result<std::optional<std::string_view>> get(std::string_view key) override {
    OPENDSR_TRY(check_open());
    OPENDSR_TRY(check_key(key));
    return merged_get(view_, key);
  }

  result<void> scan(std::string_view prefix, std::string_view from,
                    const scan_visitor& visit) override {
    OPENDSR_TRY(check_open());
    OPENDSR_TRY(check_scan_bounds(prefix, from));
    merged_scan(view_, prefix, scan_start(prefix, from), visit);
    return {};
  }

  result<void> put(std::string_view key, std::string_view value) override {
    OPENDSR_TRY(check_open());
    OPENDSR_TRY(check_key(key));
    auto it = writes_.lower_bound(key);
    if (it != writes_.end() && it->first == key) {
      it->second.emplace(value);
    } else {
      writes_.emplace_hint(it, std::string(key), std::string(value));
    }
    return {};
  }

  result<bool> erase(std::string_view key) override {
    OPENDSR_TRY(check_open());
    OPENDSR_TRY(check_key(key));
    // Over a committed value an erase mark hides it; a key only this transaction wrote just goes.
    const bool committed = merged_get(sources_view(view_).subspan(1), key).has_value();
    if (auto own = writes_.find(key); own != writes_.end()) {
      if (!own->second) return false;
      if (committed) {
        own->second.reset();
      } else {
        writes_.erase(own);
      }
      return true;
    }
    if (!committed) return false;
    writes_.emplace(std::string(key), std::nullopt);
    return true;
  }

  result<void> commit() override {
    OPENDSR_TRY(check_open());
    std::exchange(state_, nullptr)->publish(std::move(writes_));
    return {};
  }

 private:
  result<void> check_open() const {
    if (state_ == nullptr)
      return error(errc::invalid_argument, "the write transaction was already committed");
    return {};
  }

  memory_state* state_;  // null once committed
  entries writes_;
  sources view_;  // writes_, then the layers of the latest state, newest first
};

}  // namespace
}  // namespace detail

memory_storage::memory_storage() : state_(std::make_unique<detail::memory_state>()) {}

memory_storage::~memory_storage() = default;

result<std::unique_ptr<read_transaction>> memory_storage::begin_read() {
  return std::unique_ptr<read_transaction>(
      std::make_unique<detail::memory_read_transaction>(state_->snapshot()));
}

result<std::unique_ptr<write_transaction>> memory_storage::begin_write() {
  return std::unique_ptr<write_transaction>(
      std::make_unique<detail::memory_write_transaction>(*state_));
}

}  // namespace opendsr
