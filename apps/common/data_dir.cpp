#include "common/data_dir.hpp"

#include <opendsr/botan.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace opendsr::app {

std::filesystem::path store_path(const std::filesystem::path& data_dir) { return data_dir / "store"; }
std::filesystem::path default_key_path(const std::filesystem::path& data_dir) { return data_dir / "processor.key"; }
std::filesystem::path default_certificate_path(const std::filesystem::path& data_dir) { return data_dir / "processor.crt"; }
std::filesystem::path example_request_path(const std::filesystem::path& data_dir) { return data_dir / "example-request.json"; }
std::filesystem::path example_data_path(const std::filesystem::path& data_dir) { return data_dir / "example-data.jsonl"; }

result<std::unique_ptr<lmdb_storage>> open_store(const std::filesystem::path& data_dir, sync_mode sync) {
  lmdb_options options;
  options.path = store_path(data_dir);
  options.sync = sync;
  return lmdb_storage::open(options);
}

result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(errc::storage_io, path.string() + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return error(errc::storage_io, path.string() + ": read failed");
  return std::move(text).str();
}

result<void> create_file(const std::filesystem::path& path, std::string_view text, unsigned mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return error(errc::storage_io, path.string() + ": cannot be created: " + std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int cause = errno;
      ::close(fd);
      return error(errc::storage_io, path.string() + ": write failed: " + std::strerror(cause));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return error(errc::storage_io, path.string() + ": write failed: " + std::strerror(errno));
  return {};
}

result<bool> ensure_self_signed(const std::filesystem::path& key, const std::filesystem::path& certificate,
                                std::string_view domain, timestamp now) {
  std::error_code ec;
  const bool has_key = std::filesystem::exists(key, ec), has_certificate = std::filesystem::exists(certificate, ec);
  if (has_key && has_certificate) return false;
  if (has_key || has_certificate)
    return error(errc::invalid_argument, (has_key ? certificate : key).string() + " is missing but " +
                                             (has_key ? key : certificate).string() + " exists; provide both or neither");
  auto pair = botan::generate_self_signed(domain, now);
  if (!pair) return std::move(pair).error();
  OPENDSR_TRY(create_file(key, pair->private_key_pem, 0600));
  OPENDSR_TRY(create_file(certificate, pair->certificate_pem, 0644));
  return true;
}

result<std::string> random_hex(std::size_t bytes) {
  std::ifstream in("/dev/urandom", std::ios::binary);
  std::string raw(bytes, '\0');
  if (!in.read(raw.data(), static_cast<std::streamsize>(bytes))) return error(errc::internal, "/dev/urandom cannot be read");
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes);
  for (unsigned char c : raw) {
    hex.push_back(digits[c >> 4]);
    hex.push_back(digits[c & 15]);
  }
  return hex;
}

result<credentials> add_workspace(workspace_directory& workspaces, std::string_view workspace_id) {
  auto key = random_hex(8);
  if (!key) return std::move(key).error();
  auto secret = random_hex(24);
  if (!secret) return std::move(secret).error();
  credentials c{"key-" + *key, *secret};
  OPENDSR_TRY(workspaces.add(workspace_id, c.api_key, c.secret));
  return c;
}

std::string_view example_data_body() {
  return R"({"mpid":"8675309","identities":{"email":"johndoe@example.com","ios_advertising_id":"EA7583CD-A667-48BC-B806-42ECB2B48606"},"attributes":{"first_name":"John","city":"Springfield"}}
{"mpid":"8675309","event":{"event_name":"app_open","timestamp":"2021-10-30T09:12:00Z"}}
{"mpid":"8675309","event":{"event_name":"purchase","timestamp":"2021-10-30T09:15:41Z","amount":19.99}}
{"mpid":"8675309","event":{"event_name":"app_close","timestamp":"2021-10-30T09:20:03Z"}}
)";
}

std::string_view example_request_body() {
  return R"({
  "regulation": "gdpr",
  "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
  "subject_request_type": "erasure",
  "submitted_time": "2021-11-01T15:00:00Z",
  "subject_identities": {
    "email": {
      "value": "johndoe@example.com",
      "encoding": "raw"
    },
    "ios_advertising_id": {
      "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
      "encoding": "raw"
    }
  },
  "api_version": "3.0",
  "status_callback_urls": [
    "https://exampleurl.com/opendsr/callbacks"
  ],
  "group_id": "my-group",
  "extensions": {
    "opendsr.mparticle.com": {
      "skip_waiting_period": false,
      "subject_identities": {
        "other6": {
          "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
          "encoding": "raw"
        }
      }
    }
  }
}
)";
}

}  // namespace opendsr::app
