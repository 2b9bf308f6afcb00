// What the fulfilment black-box tests share (tests/api/fulfilment_test.cpp,
// tests/api/fulfilment_crash_test.cpp): opendsrd in --test-mode on a data directory, subject data
// imported over POST /v3/subject-data, requests submitted and read back, results downloaded with
// curl, and a downloaded package checked as a controller would (docs/packages.md) with unzip,
// sha256sum and openssl against the processor certificate in the data directory.
// Time passes only when a test moves the daemon's clock; every other wait is a bounded poll.
#pragma once

#include "../api/daemon_process.hpp"
#include "request_bodies.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::testing {

// The string value of "key" in a flat JSON body ("" if absent or not a string).
inline std::string json_string_of(const std::string& body, std::string_view key) {
  const std::string marker = "\"" + std::string(key) + "\":\"";
  auto at = body.find(marker);
  if (at == std::string::npos) return {};
  at += marker.size();
  return body.substr(at, body.find('"', at) - at);
}

// Waits (bounded) until `done()` holds, polling every few milliseconds.
template <class F>
bool eventually(F done, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    ::poll(nullptr, 0, 5);  // a readiness poll of the daemon, not a wait for simulated time
  }
}

// A Monday evening: access and portability requests start processing on Thursday 00:00Z.
inline const char* const fulfilment_test_start = "2021-11-29T18:00:00Z";

// One opendsrd in test mode on 127.0.0.1:0 over data_dir. Its first start in a data directory
// makes the demo workspace, whose credentials it prints (a restart prints none: keep them).
class fulfilment_daemon {
 public:
  fulfilment_daemon(const fs::path& data_dir, std::vector<std::string> flags = {},
                    std::string start = fulfilment_test_start)
      : dir_(data_dir) {
    std::vector<std::string> args = {"--test-mode", "--listen", "127.0.0.1:0", "--test-start", start, "--threads", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    process_ = std::make_unique<daemon_process>(data_dir, args);
    port_ = process_->wait_ready();
    demo_ = demo_workspace(process_->stdout_text());
  }

  bool ready() const { return port_ != 0; }
  std::uint16_t port() const { return port_; }
  daemon_client api() const { return daemon_client(port_); }
  daemon_process& process() { return *process_; }
  const workspace& demo() const { return demo_; }
  const fs::path& dir() const { return dir_; }

  // POST /v3/subject-data of `lines` (JSON Lines) as `w`; returns the response.
  wire::response import(const std::string& lines, const workspace& w) const {
    return api().exchange(wire::format_request("POST", "/v3/subject-data",
                                               {w.authorization(), "Content-Type: application/x-ndjson"}, lines));
  }

  // Submits a request of `w`; returns its id ("" on failure, which is also a test failure).
  std::string submit(const workspace& w, std::uint64_t n, std::string type,
                     std::vector<std::pair<std::string, std::string>> identities,
                     std::optional<bool> skip_waiting_period = std::nullopt) const {
    const std::string id = uuid_v4(0xf01f11ull << 16 | n);
    auto r = api().post(make_body({.id = id, .type = std::move(type), .identities = std::move(identities),
                                   .skip_waiting_period = skip_waiting_period}),
                        w);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? id : std::string();
  }

  // GET /v3/requests/{id} as `w`: the body.
  std::string request(const std::string& id, const workspace& w) const {
    auto r = api().get("/v3/requests/" + id, &w);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }
  std::string status_of(const std::string& id, const workspace& w) const {
    return json_string_of(request(id, w), "request_status");
  }
  std::string results_url_of(const std::string& id, const workspace& w) const {
    return json_string_of(request(id, w), "results_url");
  }

  // Moves the clock; the route answers once the fulfilment runner is idle. Returns the new time.
  std::string advance(std::uint64_t seconds) const { return move("{\"advance_seconds\":" + std::to_string(seconds) + "}"); }
  std::string set(const std::string& rfc3339) const { return move("{\"set\":\"" + rfc3339 + "\"}"); }

 private:
  std::string move(const std::string& json) const {
    auto r = api().move_clock(json);
    EXPECT_EQ(r.status, 200) << r.body;
    return json_string_of(r.body, "now");
  }

  fs::path dir_;
  std::unique_ptr<daemon_process> process_;
  std::uint16_t port_ = 0;
  workspace demo_;
};

struct download {
  int status = 0;
  std::string content_type;
  std::string body;  // the file curl wrote
};

// GET url with curl (credentials of `w` when given), the body written to `to`.
inline download fetch(const std::string& url, const workspace* w, const fs::path& to) {
  std::error_code ec;
  fs::remove(to, ec);
  std::string command = "curl -s -S --max-time 60 -o " + to.string() + " -w '%{http_code} %{content_type}'";
  if (w) command += " -u '" + w->api_key + ":" + w->secret + "'";
  auto [rc, out] = run(command + " '" + url + "' 2>&1");
  download d;
  EXPECT_EQ(rc, 0) << out;
  if (rc != 0) return d;
  d.status = std::atoi(out.c_str());
  auto space = out.find(' ');
  if (space != std::string::npos) d.content_type = out.substr(space + 1);
  d.body = read_text(to);
  return d;
}

// Every file of `dir` whose name starts with `prefix` (not recursive).
inline std::vector<std::string> entries_starting(const fs::path& dir, std::string_view prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().filename().string().starts_with(prefix)) out.push_back(it->path().filename().string());
  return out;
}

// Number of regular files directly in `dir` whose name does not start with '.' (the results
// store's .lock, partials).
inline std::size_t file_count(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_regular_file() && !it->path().filename().string().starts_with(".")) ++n;
  return n;
}

// The lines of a text (no trailing empty line).
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// What a package should hold: the profile's attributes line and its events in order, or nothing
// (empty.txt).
struct expected_package {
  bool empty = false;
  std::string attributes = {};
  std::vector<std::string> events = {};
};

// Checks the zip at `zip` as a controller would (docs/packages.md): unzipped into `work`, its file
// set, profile.jsonl and the events files hold `expected`; `sha256sum -c` of the manifest's
// entries passes; manifest.sig verifies with openssl against the processor certificate of
// `data_dir` (processor.crt), and fails after one flipped byte of manifest.json.
inline void expect_valid_package(const fs::path& zip, const fs::path& work, const fs::path& data_dir,
                                 const expected_package& expected) {
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work);
  auto [unzip_rc, unzip_out] = run("unzip -q -o " + zip.string() + " -d " + work.string() + " 2>&1");
  ASSERT_EQ(unzip_rc, 0) << unzip_out;
  auto [list_rc, listing] = run("unzip -Z1 " + zip.string());
  ASSERT_EQ(list_rc, 0) << listing;
  std::vector<std::string> names = lines_of(listing);
  std::sort(names.begin(), names.end());

  const std::string manifest = read_text(work / "manifest.json");
  ASSERT_FALSE(manifest.empty());
  // The manifest's files: each {"name": "...", "size": N, "sha256": "..."}.
  std::vector<std::string> listed;
  std::string checklist;
  for (std::size_t at = manifest.find("\"name\""); at != std::string::npos; at = manifest.find("\"name\"", at + 1)) {
    auto q1 = manifest.find('"', manifest.find(':', at) + 1);
    auto q2 = manifest.find('"', q1 + 1);
    const std::string name = manifest.substr(q1 + 1, q2 - q1 - 1);
    auto h = manifest.find("\"sha256\"", q2);
    auto h1 = manifest.find('"', manifest.find(':', h) + 1);
    const std::string hash = manifest.substr(h1 + 1, 64);
    listed.push_back(name);
    checklist += hash + "  " + name + "\n";
  }
  std::vector<std::string> expected_names = listed;
  expected_names.push_back("manifest.json");
  expected_names.push_back("manifest.sig");
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(names, expected_names) << manifest;

  // Every file is the one the manifest names.
  write_file(work / "checklist.txt", checklist);
  auto [sum_rc, sum_out] = run("cd " + work.string() + " && sha256sum --strict -c checklist.txt 2>&1");
  EXPECT_EQ(sum_rc, 0) << sum_out;
  fs::remove(work / "checklist.txt", ec);

  // The content.
  if (expected.empty) {
    EXPECT_EQ(listed, std::vector<std::string>{"empty.txt"}) << manifest;
    EXPECT_FALSE(read_text(work / "empty.txt").empty());
  } else {
    ASSERT_FALSE(listed.empty());
    EXPECT_EQ(listed[0], "profile.jsonl") << manifest;
    EXPECT_EQ(read_text(work / "profile.jsonl"), expected.attributes + "\n");
    std::vector<std::string> events;
    for (std::size_t i = 1; i < listed.size(); ++i) {
      EXPECT_EQ(listed[i], "events-" + std::to_string(i) + ".jsonl") << manifest;
      for (auto& line : lines_of(read_text(work / listed[i]))) events.push_back(std::move(line));
    }
    EXPECT_EQ(events.size(), expected.events.size());
    EXPECT_TRUE(events == expected.events) << "events differ from the imported ones (order or content)";
    EXPECT_NE(manifest.find("\"events\": " + std::to_string(expected.events.size())), std::string::npos) << manifest;
  }

  // The signature, with openssl: the certificate's key, the base64-decoded manifest.sig.
  const fs::path pub = work / ".." / (work.filename().string() + "-pub.pem");
  const fs::path sig = work / ".." / (work.filename().string() + "-sig.bin");
  auto [key_rc, key_out] = run("openssl x509 -pubkey -noout -in " + (data_dir / "processor.crt").string() + " -out " +
                               pub.string() + " 2>&1");
  ASSERT_EQ(key_rc, 0) << key_out;
  auto [b64_rc, b64_out] = run("openssl base64 -d -A -in " + (work / "manifest.sig").string() + " -out " + sig.string() + " 2>&1");
  ASSERT_EQ(b64_rc, 0) << b64_out;
  const std::string verify = "openssl dgst -sha256 -verify " + pub.string() + " -signature " + sig.string() + " ";
  auto [ok_rc, ok_out] = run(verify + (work / "manifest.json").string() + " 2>&1");
  EXPECT_EQ(ok_rc, 0) << ok_out;
  EXPECT_NE(ok_out.find("Verified OK"), std::string::npos) << ok_out;
  std::string flipped = manifest;
  flipped[flipped.size() / 2] ^= 0x01;
  write_file(work / "manifest.flipped", flipped);
  auto [bad_rc, bad_out] = run(verify + (work / "manifest.flipped").string() + " 2>&1");
  EXPECT_NE(bad_rc, 0) << bad_out;
  EXPECT_EQ(bad_out.find("Verified OK"), std::string::npos) << bad_out;
}

// Which of `needles` occur anywhere in the file's bytes (a byte search, as `strings | grep` but
// also across non-printable neighbours). The file is read in chunks; holes of a sparse file (an
// LMDB data.mdb grown to its map size) are skipped with SEEK_DATA/SEEK_HOLE.
inline std::vector<bool> found_in_file(const fs::path& file, const std::vector<std::string>& needles) {
  std::vector<bool> found(needles.size(), false);
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open " << file;
    return found;
  }
  std::size_t overlap = 0;
  for (const auto& n : needles) overlap = std::max(overlap, n.size());
  std::string window;
  std::vector<char> chunk(1 << 20);
  off_t at = 0;
  for (;;) {
    const off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0) break;  // ENXIO: no data after `at`
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (data > at) window.clear();  // a hole separates the extents
    for (off_t pos = data; pos < hole;) {
      const ssize_t n = ::pread(fd, chunk.data(), std::min<std::size_t>(chunk.size(), static_cast<std::size_t>(hole - pos)), pos);
      if (n <= 0) break;
      window.append(chunk.data(), static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < needles.size(); ++i)
        if (!found[i] && window.find(needles[i]) != std::string::npos) found[i] = true;
      if (window.size() > overlap) window.erase(0, window.size() - overlap);
      pos += n;
    }
    at = hole;
  }
  ::close(fd);
  return found;
}

inline bool file_contains(const fs::path& file, const std::string& needle) { return found_in_file(file, {needle})[0]; }

}  // namespace opendsr::testing
