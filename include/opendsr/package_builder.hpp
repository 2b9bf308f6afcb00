// The package builder: turns a profile's records into the access/portability package a controller
// downloads from results_url (spec §1.7, issue 9), a zip of JSON Lines files with a signed manifest.
// docs/packages.md gives the format, an example manifest and the controller's openssl checks.
//
// Built when the `zip` feature is enabled (library opendsr_zip, on Debian's libzip-dev).
//
// Contract
// - The zip's entries, in this order:
//   - `profile.jsonl`: one line, the profile's attributes record (a JSON object);
//   - `events-1.jsonl`, `events-2.jsonl`, ...: the profile's events, one JSON object a line, in the
//     order they were added; a file holds at most options.max_events_per_file events and, unless
//     one event alone is larger, at most options.max_bytes_per_file bytes;
//   - `empty.txt` instead of all of the above when there is no profile (nullopt) or the profile
//     holds no data (its attributes are `{}` and it has no events);
//   - `manifest.json`: every entry above with its size in bytes and its SHA-256 in lowercase hex;
//   - `manifest.sig`: signer.sign() of manifest.json's exact bytes (RSASSA-PKCS1-v1_5 with
//     SHA-256, standard base64 on one line, no newline), checkable with `openssl dgst -sha256
//     -verify` against the processor's certificate.
//   A line of a .jsonl file is the stored JSON with any raw CR or LF replaced by a space (JSON
//   allows them only as whitespace between tokens, so the value is unchanged).
// - Memory stays bounded whatever the number of events: records() streams them in pages; each
//   entry is written to a file in a scratch directory of its own (mkdtemp, mode 0700) while it is
//   hashed; libzip builds the archive from those files on disk; the archive is then appended to
//   `out` in chunks of options.copy_chunk_bytes. The scratch directory is removed before return,
//   on success or failure. Disk use is about twice the package's uncompressed size.
// - `out` receives the whole archive and is NOT committed: the caller commits it (or abandons it
//   on error: after a failure `out` may hold part of an archive).
// - Errors: the subject_data's (errc::not_found when the profile is gone, e.g. erased meanwhile)
//   and the signer's pass through; the scratch files are errc::storage_io (errc::storage_full on
//   ENOSPC/EDQUOT) with the path and the cause; libzip's failures are errc::storage_io with
//   libzip's reason; a bad option is errc::invalid_argument naming it; `out`'s errors pass
//   through. No message contains an identity value, an attribute or an event.
//
// Thread safety: build_package() may run on several threads at once (each call has its own scratch
// directory), on different writers. It blocks for the whole build: run it off the engine's
// threads.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/results_store.hpp>
#include <opendsr/signer.hpp>
#include <opendsr/subject_data.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

namespace opendsr {

struct package_options {
  // Events per events-N.jsonl file. Default: 10,000. REQUIRES: > 0.
  std::size_t max_events_per_file = 10'000;
  // Bytes per events-N.jsonl file; a file always holds at least one event. Default: 64 MiB.
  // REQUIRES: > 0.
  std::uint64_t max_bytes_per_file = 64u << 20;
  // Where the per-build scratch directory is made. Empty (the default): the system's temporary
  // directory (std::filesystem::temp_directory_path()). Put it on the results store's file system
  // to spare the temporary one.
  std::filesystem::path scratch_directory;
  // The size of the chunks appended to the writer. Default: 64 KiB. REQUIRES: > 0.
  std::size_t copy_chunk_bytes = 64u << 10;
};

// What a build produced.
struct package_summary {
  // The archive's size in bytes: what was appended to the writer.
  std::uint64_t bytes = 0;
  // The events exported and the events-N.jsonl files that hold them.
  std::uint64_t events = 0;
  std::size_t event_files = 0;
  // True iff the package is empty.txt and the manifest (no profile, or a profile without data).
  bool empty = false;
};

// Builds the package of `profile` in `workspace` (nullopt: nothing matched the identities) and
// appends it to `out`, which it does not commit.
result<package_summary> build_package(subject_data& data, std::string_view workspace,
                                      std::optional<profile_id> profile, const signer& signer,
                                      results_writer& out, const package_options& options = {});

}  // namespace opendsr
