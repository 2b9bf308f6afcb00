// The package builder (adapters/zip/) checked as a controller would: the package is read back from
// a results_files_store, unpacked with the unzip command, each file checked with sha256sum against
// the manifest and the manifest's signature with the openssl command, against the imported data.
#include <opendsr/memory_storage.hpp>
#include <opendsr/openssl_signer.hpp>
#include <opendsr/package_builder.hpp>
#include <opendsr/results_files_store.hpp>
#include <opendsr/subject_data.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view domain = "opendsr.example.com";

// Runs a shell command quietly; returns its exit status.
int run(const std::string& command) {
  int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> lines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Event i as imported; `padding` characters of note make it larger.
std::string event_json(std::size_t i, std::size_t padding = 0) {
  return R"({"event_type":"screen_view","n":)" + std::to_string(i) + R"(,"data":{"screen":"home-)" +
         std::to_string(i % 97) + R"("})" + (padding > 0 ? R"(,"note":")" + std::string(padding, 'x') + "\"" : "") +
         "}";
}

// Resets the process's peak resident set to its current one (Linux >= 4.0); false if refused.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// The process's peak resident set (VmHWM), in KiB.
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

class package_builder_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string templ = (fs::temp_directory_path() / "opendsr-package-keys-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    keys_ = new fs::path(templ);
    ASSERT_EQ(run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=" + std::string(domain) +
                  " -addext subjectAltName=DNS:" + std::string(domain) + " -keyout " + (*keys_ / "key.pem").string() +
                  " -out " + (*keys_ / "cert.pem").string()),
              0);
    ASSERT_EQ(run("openssl x509 -pubkey -noout -in " + (*keys_ / "cert.pem").string() + " -out " +
                  (*keys_ / "pub.pem").string()),
              0);
    auto s = openssl::make_signer({read_file(*keys_ / "key.pem"), read_file(*keys_ / "cert.pem"), std::string(domain),
                                   "https://static.example.com/opendsr_cert.pem"});
    ASSERT_TRUE(s) << s.error().message();
    signer_ = s->release();
  }
  static void TearDownTestSuite() {
    delete signer_;
    if (keys_ != nullptr) fs::remove_all(*keys_);
    delete keys_;
  }

  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "opendsr-package-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    data_ = open_subject_store(storage_).value();
    results_ = results_files_store::open_directory({.directory = dir_ / "results"}).value();
  }
  void TearDown() override {
    results_.reset();
    data_.reset();
    fs::remove_all(dir_);
  }

  // Puts profile `id` with `events` events (event_json(0..events-1)), written in batches.
  void fill(profile_id id, std::size_t events, std::string attributes = R"({"name":"Ada","tier":"gold"})",
            std::size_t padding = 0) {
    profile_write first{.id = id, .attributes = std::move(attributes),
                        .identities = {{identity_type::email, "ada@example.com"}}, .events = {}};
    ASSERT_TRUE(data_->write("ws1", std::span(&first, 1)));
    for (std::size_t i = 0; i < events;) {
      profile_write w{.id = id, .attributes = std::nullopt, .identities = {}, .events = {}};
      for (; i < events && w.events.size() < 5000; ++i) w.events.push_back(event_json(i, padding));
      auto r = data_->write("ws1", std::span(&w, 1));
      ASSERT_TRUE(r) << r.error().message();
    }
  }

  // Builds the package into the results store, commits it, and unzips it into dir_/<name>.
  result<package_summary> build(std::optional<profile_id> id, const std::string& name, package_options options = {}) {
    auto token = make_results_token().value();
    auto writer = results_->begin(token).value();
    auto summary = build_package(*data_, "ws1", id, *signer_, *writer, options);
    if (!summary) return summary;
    EXPECT_EQ(writer->commit().value(), summary->bytes);
    // Read back as the results route would: in chunks from the store.
    auto reader = results_->open(token).value();
    std::ofstream zip(dir_ / (name + ".zip"), std::ios::binary);
    std::vector<char> buffer(4096);
    for (;;) {
      auto n = reader->read(buffer).value();
      if (n == 0) break;
      zip.write(buffer.data(), static_cast<std::streamsize>(n));
    }
    zip.close();
    EXPECT_EQ(run("unzip -q " + (dir_ / (name + ".zip")).string() + " -d " + (dir_ / name).string()), 0);
    return summary;
  }

  std::vector<std::string> listing(const std::string& name) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_ / name)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  // True iff `manifest` verifies against manifest.sig with the certificate's public key.
  bool signature_verifies(const fs::path& unpacked, const fs::path& manifest) {
    const fs::path bin = dir_ / "sig.bin";
    EXPECT_EQ(run("openssl base64 -d -A -in " + (unpacked / "manifest.sig").string() + " -out " + bin.string()), 0);
    return run("openssl dgst -sha256 -verify " + (*keys_ / "pub.pem").string() + " -signature " + bin.string() + " " +
               manifest.string()) == 0;
  }

  // Checks every file the manifest lists with sha256sum and its size; returns the names listed.
  std::vector<std::string> check_manifest(const std::string& name) {
    const fs::path unpacked = dir_ / name;
    auto manifest = boost::json::parse(read_file(unpacked / "manifest.json")).as_object();
    EXPECT_EQ(manifest.at("format").as_string(), "opendsr-package/1");
    EXPECT_EQ(manifest.at("processor_domain").as_string(), domain);
    std::string sums;
    std::vector<std::string> names;
    for (const auto& f : manifest.at("files").as_array()) {
      const auto& o = f.as_object();
      const std::string file(o.at("name").as_string());
      names.push_back(file);
      EXPECT_EQ(static_cast<std::int64_t>(fs::file_size(unpacked / file)), o.at("size").as_int64()) << file;
      sums += std::string(o.at("sha256").as_string()) + "  " + file + "\n";
    }
    write_file(dir_ / (name + ".sha256"), sums);
    EXPECT_EQ(run("cd " + unpacked.string() + " && sha256sum --strict -c " + (dir_ / (name + ".sha256")).string()), 0);
    return names;
  }

  static fs::path* keys_;
  static signer* signer_;
  fs::path dir_;
  memory_storage storage_;
  std::unique_ptr<subject_data> data_;
  std::unique_ptr<results_files_store> results_;
};
fs::path* package_builder_test::keys_ = nullptr;
signer* package_builder_test::signer_ = nullptr;

TEST_F(package_builder_test, controller_checks_a_package_of_25000_events) {
  fill(42, 25'000);
  auto summary = build(42, "pkg");
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_EQ(summary->events, 25'000u);
  EXPECT_EQ(summary->event_files, 3u);
  EXPECT_FALSE(summary->empty);

  EXPECT_EQ(listing("pkg"), (std::vector<std::string>{"events-1.jsonl", "events-2.jsonl", "events-3.jsonl",
                                                      "manifest.json", "manifest.sig", "profile.jsonl"}));
  EXPECT_EQ(check_manifest("pkg"),
            (std::vector<std::string>{"profile.jsonl", "events-1.jsonl", "events-2.jsonl", "events-3.jsonl"}));
  EXPECT_TRUE(signature_verifies(dir_ / "pkg", dir_ / "pkg" / "manifest.json"));

  EXPECT_EQ(lines(dir_ / "pkg" / "profile.jsonl"), std::vector<std::string>{R"({"name":"Ada","tier":"gold"})"});
  std::size_t next = 0;
  for (int file = 1; file <= 3; ++file) {
    auto got = lines(dir_ / "pkg" / ("events-" + std::to_string(file) + ".jsonl"));
    EXPECT_EQ(got.size(), file < 3 ? 10'000u : 5'000u);
    for (const auto& line : got) {
      ASSERT_EQ(line, event_json(next)) << "event " << next;
      ++next;
    }
  }
  EXPECT_EQ(next, 25'000u);

  // A flipped byte in the manifest no longer verifies.
  std::string tampered = read_file(dir_ / "pkg" / "manifest.json");
  tampered[tampered.size() / 2] ^= 0x01;
  write_file(dir_ / "tampered.json", tampered);
  EXPECT_FALSE(signature_verifies(dir_ / "pkg", dir_ / "tampered.json"));
}

TEST_F(package_builder_test, files_split_by_bytes) {
  fill(7, 100);
  const std::size_t line = event_json(10).size() + 1;  // events 10..99 have the same length
  package_options options;
  options.max_events_per_file = 1000;
  options.max_bytes_per_file = 30 * line;
  auto summary = build(7, "pkg", options);
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_GE(summary->event_files, 4u);
  std::size_t total = 0;
  for (std::size_t f = 1; f <= summary->event_files; ++f) {
    const fs::path p = dir_ / "pkg" / ("events-" + std::to_string(f) + ".jsonl");
    EXPECT_LE(fs::file_size(p), 30 * line);
    total += lines(p).size();
  }
  EXPECT_EQ(total, 100u);
  check_manifest("pkg");
}

TEST_F(package_builder_test, no_profile_is_empty_txt_and_a_signed_manifest) {
  auto summary = build(std::nullopt, "none");
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_TRUE(summary->empty);
  EXPECT_EQ(summary->events, 0u);
  EXPECT_EQ(listing("none"), (std::vector<std::string>{"empty.txt", "manifest.json", "manifest.sig"}));
  EXPECT_EQ(check_manifest("none"), std::vector<std::string>{"empty.txt"});
  EXPECT_TRUE(signature_verifies(dir_ / "none", dir_ / "none" / "manifest.json"));
}

TEST_F(package_builder_test, profile_without_data_is_empty_txt) {
  fill(9, 0, "{ }");
  auto summary = build(9, "bare");
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_TRUE(summary->empty);
  EXPECT_EQ(listing("bare"), (std::vector<std::string>{"empty.txt", "manifest.json", "manifest.sig"}));
  check_manifest("bare");
}

TEST_F(package_builder_test, unknown_profile_and_bad_options_are_errors) {
  auto writer = results_->begin(make_results_token().value()).value();
  auto missing = build_package(*data_, "ws1", 12345, *signer_, *writer);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::not_found);
  package_options zero;
  zero.max_events_per_file = 0;
  auto bad = build_package(*data_, "ws1", std::nullopt, *signer_, *writer, zero);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  EXPECT_NE(bad.error().message().find("max_events_per_file"), std::string::npos);
  package_options nowhere;
  nowhere.scratch_directory = dir_ / "no" / "such" / "dir";
  auto scratch = build_package(*data_, "ws1", std::nullopt, *signer_, *writer, nowhere);
  ASSERT_FALSE(scratch);
  EXPECT_EQ(scratch.error(), errc::storage_io);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool built_with_address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool built_with_address_sanitizer = true;
#else
constexpr bool built_with_address_sanitizer = false;
#endif
#else
constexpr bool built_with_address_sanitizer = false;
#endif

TEST_F(package_builder_test, memory_stays_bounded_with_100000_events) {
  // About 43 MB of events, held by the memory store: the build must not hold them a second time.
  constexpr std::size_t padding = 360;
  fill(1, 100'000, R"({"name":"Ada"})", padding);
  // Measure the build's own peak, not the fill's (when the kernel refuses, the peak so far).
  const bool reset = reset_peak_rss();
  const long before = peak_rss_kib();
  ASSERT_GT(before, 0);
  const auto start = std::chrono::steady_clock::now();
  auto summary = build(1, "big");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(summary) << summary.error().message();
  EXPECT_EQ(summary->events, 100'000u);
  EXPECT_EQ(summary->event_files, 10u);
  const long growth = peak_rss_kib() - before;
  std::printf("100,000 events (%.1f MB of lines): %llu bytes of zip in %.2f s, peak RSS growth %ld KiB%s\n",
              100'000.0 * static_cast<double>(event_json(99'999, padding).size() + 1) / 1e6,
              static_cast<unsigned long long>(summary->bytes), std::chrono::duration<double>(elapsed).count(), growth,
              reset ? "" : " (VmHWM reset refused: measured above the fill's peak)");
  // AddressSanitizer keeps freed blocks in its quarantine (256 MiB by default), so there the peak
  // RSS counts what the build freed, not what it held: the bound is checked without ASan (the
  // default build), and the build still runs under it for memory errors.
  if (!built_with_address_sanitizer) {
    EXPECT_LT(growth, 16L << 10);
  }
  EXPECT_EQ(check_manifest("big").size(), 11u);
  auto last = lines(dir_ / "big" / "events-10.jsonl");
  ASSERT_EQ(last.size(), 10'000u);
  EXPECT_EQ(last.back(), event_json(99'999, padding));
}

}  // namespace
}  // namespace opendsr
