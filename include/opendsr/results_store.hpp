// The results store seam: where a finished access or portability package lives until its link
// expires, keyed by an unguessable token (the {token} of /v3/results/{token}, spec §1.7).
//
// The store keeps opaque bytes; it knows nothing of zips, workspaces or expiry. Whoever builds the
// package writes it through a results_writer; the results route streams it back through a
// results_reader; the expiry timer removes it.
//
// Contract
// - Tokens: a token is exactly results_token_size characters of the URL-safe base64 alphabet
//   (RFC 4648 §5: A-Z a-z 0-9 - _), no padding, encoding results_token_bytes bytes from the
//   operating system's CSPRNG (make_results_token()). Every method that takes a token first checks
//   is_results_token(); any other string (empty, wrong length, '/', '.', "../x") is
//   errc::invalid_argument, so a token can never name a path outside the store.
// - Writing: begin(token) returns a writer. append() adds bytes in chunks of any size; a store
//   holds no more than a chunk of them in memory, so a package may be far larger than memory.
//   Until commit() returns success nothing of the package is visible under the token: open()
//   still answers what it answered before (not_found, or the previous package).
// - commit() makes the package durable (its bytes reach stable storage) and then visible under
//   the token, atomically: a reader sees the whole old package or the whole new one, never a part.
//   Committing a token that already holds a package replaces it (a package rebuilt after a crash
//   keeps its link); a reader that opened the old one reads the old bytes to its end. When
//   several writers commit the same token, the last commit wins.
// - abandon(), or destroying a writer that was not committed, discards what it wrote and leaves
//   nothing behind. A writer whose append() or commit() failed is over: it has discarded its
//   bytes, and later calls fail with the same error. After commit() or abandon(), append() and
//   commit() fail with errc::invalid_argument.
// - open(token) returns a reader of the committed package, with its size, or errc::not_found.
// - remove(token) deletes the package; returns true iff one existed (removing twice is fine).
//   Readers already open keep reading it.
// - Crashes: a crash (of the process or the machine) at any moment leaves each token either with
//   no package or with a whole committed one; the bytes of unfinished writers are leftovers that
//   the store removes when it is next opened (an adapter says how many it removed).
// - Errors: invalid_argument (a bad token, a call on a finished writer), not_found, storage_io
//   (the medium failed; the message names the path and the operation, never a package's bytes),
//   storage_full (no space left), storage_locked (another process owns the store).
//
// Thread safety: a results_store's methods may be called from any thread concurrently. A writer
// or reader is used by one thread at a time.
// Ownership: writers and readers are owned by the caller and must be destroyed before the store.
#pragma once

#include <opendsr/result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

// The random bytes a token carries: 192 bits.
inline constexpr std::size_t results_token_bytes = 24;
// The characters of a token: results_token_bytes in URL-safe base64 without padding.
inline constexpr std::size_t results_token_size = results_token_bytes / 3 * 4;

// Returns a new token: results_token_bytes from getrandom(2) (the kernel's CSPRNG), in URL-safe
// base64. Errors: internal (the kernel gave no random bytes).
result<std::string> make_results_token();

// True iff `token` has the form make_results_token() returns.
bool is_results_token(std::string_view token) noexcept;

class results_writer {
 public:
  // Destroying a writer that was not committed abandons it.
  virtual ~results_writer() = default;
  results_writer() = default;
  results_writer(const results_writer&) = delete;
  results_writer& operator=(const results_writer&) = delete;

  // Appends `bytes` to the package.
  virtual result<void> append(std::string_view bytes) = 0;

  // Makes the package durable, then visible under the token. Returns its size in bytes.
  virtual result<std::uint64_t> commit() = 0;

  // Discards the package. Does nothing after commit() or a previous abandon().
  virtual void abandon() noexcept = 0;

  // The bytes appended so far.
  virtual std::uint64_t size() const noexcept = 0;
};

class results_reader {
 public:
  virtual ~results_reader() = default;
  results_reader() = default;
  results_reader(const results_reader&) = delete;
  results_reader& operator=(const results_reader&) = delete;

  // The package's size in bytes, fixed when it was opened.
  virtual std::uint64_t size() const noexcept = 0;

  // Reads the next bytes into `buffer` and returns how many: at most buffer.size(), fewer only
  // at the end of the package, 0 iff the package is read to its end.
  virtual result<std::size_t> read(std::span<char> buffer) = 0;
};

class results_store {
 public:
  virtual ~results_store() = default;
  results_store() = default;
  results_store(const results_store&) = delete;
  results_store& operator=(const results_store&) = delete;

  // Starts a package for `token`. Nothing is visible under the token until the writer commits.
  virtual result<std::unique_ptr<results_writer>> begin(std::string_view token) = 0;

  // Opens the package committed under `token`. Errors: not_found when there is none.
  virtual result<std::unique_ptr<results_reader>> open(std::string_view token) = 0;

  // Deletes the package under `token`. Returns true iff one existed.
  virtual result<bool> remove(std::string_view token) = 0;

  // The tokens that hold a committed package, in no particular order (for an expiry timer that
  // re-arms after a restart, or a sweep of packages whose request is gone).
  virtual result<std::vector<std::string>> list() = 0;
};

}  // namespace opendsr
