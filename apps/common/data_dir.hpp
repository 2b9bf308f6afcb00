// The data directory shared by opendsrd and the opendsr tool, and what both do with it.
//
// Layout of DIR (default ./opendsr-data):
//   DIR/store/           the LMDB store: requests, timers, callbacks and workspaces (hashed secrets)
//   DIR/processor.key    the RSA-2048 private key, PKCS#8 PEM, mode 0600
//   DIR/processor.crt    its certificate (self-signed on first run; replace with a CA's)
//   DIR/example-request.json   the seed's example request, for the first-run curl line
// Only one process may hold the store at a time (lmdb_storage's owner lock): stop opendsrd before
// changing workspaces with the opendsr tool.
#pragma once

#include <opendsr/lmdb_storage.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>
#include <opendsr/workspaces.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace opendsr::app {

std::filesystem::path store_path(const std::filesystem::path& data_dir);
std::filesystem::path default_key_path(const std::filesystem::path& data_dir);
std::filesystem::path default_certificate_path(const std::filesystem::path& data_dir);
std::filesystem::path example_request_path(const std::filesystem::path& data_dir);
std::filesystem::path example_data_path(const std::filesystem::path& data_dir);

// Opens (creating when absent) the data directory's store.
result<std::unique_ptr<lmdb_storage>> open_store(const std::filesystem::path& data_dir, sync_mode sync);

// Returns the whole file; errc::storage_io naming the path if it cannot be read.
result<std::string> read_file(const std::filesystem::path& path);

// Creates `path` (it must not exist) with `mode` and writes `text`; errc::storage_io naming the
// path otherwise.
result<void> create_file(const std::filesystem::path& path, std::string_view text, unsigned mode);

// Returns iff both files exist; if neither does, creates an RSA-2048 key (mode 0600) and a
// self-signed certificate for `domain` valid from `now` for a year, and returns true. One file
// without the other is errc::invalid_argument: the pair is not ours to guess.
result<bool> ensure_self_signed(const std::filesystem::path& key, const std::filesystem::path& certificate,
                                std::string_view domain, timestamp now);

// `bytes` random bytes from the operating system, as lowercase hex.
result<std::string> random_hex(std::size_t bytes);

struct credentials {
  std::string api_key;
  std::string secret;
};

// Adds a workspace with a fresh random API key and secret (the secret is stored hashed only and
// returned this once).
result<credentials> add_workspace(workspace_directory& workspaces, std::string_view workspace_id);

// The example request of the OpenDSR v3 documentation (seed 000), as printed there: its
// extension is keyed "opendsr.mparticle.com", which opendsrd interprets by default.
std::string_view example_request_body();

// Subject data for the example request's subject (docs/import.md's JSON Lines): a profile with
// its email and IDFA and three events, so that an access request for them yields a package.
std::string_view example_data_body();

}  // namespace opendsr::app
