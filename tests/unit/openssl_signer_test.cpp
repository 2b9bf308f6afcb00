// The OpenSSL signer against the Botan signer (byte-identical signatures from the same key) and
// against the openssl command line (an independent verifier).
#include <opendsr/botan.hpp>
#include <opendsr/openssl_signer.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view domain = "opendsr.example.com";
constexpr std::string_view url = "https://static.example.com/opendsr_cert.pem";

const std::string body =
    R"({"controller_id":"3622","expected_completion_time":"2021-12-09T00:00:00Z","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798"})";

// Runs a shell command; returns its exit status.
int run(const std::string& command) {
  int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class OpensslSigner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto kc = botan::generate_self_signed(domain, std::chrono::sys_days(std::chrono::year(2025) / 1 / 1));
    ASSERT_TRUE(kc) << kc.error().message();
    key_ = new botan::key_and_certificate(std::move(*kc));
  }
  static void TearDownTestSuite() { delete key_; }

  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "opendsr-openssl-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, std::string_view bytes) const {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  static openssl::signer_options options() {
    return {key_->private_key_pem, key_->certificate_pem, std::string(domain), std::string(url)};
  }

  static std::unique_ptr<signer> make() {
    auto s = openssl::make_signer(options());
    EXPECT_TRUE(s) << s.error().message();
    return s ? std::move(*s) : nullptr;
  }

  static botan::key_and_certificate* key_;
  fs::path dir_;
};
botan::key_and_certificate* OpensslSigner::key_ = nullptr;

TEST_F(OpensslSigner, SignsTheSameBytesAsTheBotanSigner) {
  auto ours = make();
  auto theirs = botan::make_signer({key_->private_key_pem, key_->certificate_pem, std::string(domain), std::string(url)});
  ASSERT_TRUE(ours);
  ASSERT_TRUE(theirs) << theirs.error().message();
  for (const std::string& bytes : {body, std::string(), std::string(5000, '\xff')}) {
    auto sig = ours->sign(bytes);
    ASSERT_TRUE(sig) << sig.error().message();
    EXPECT_EQ(sig->size(), 344u);
    EXPECT_EQ(sig->find('\n'), std::string::npos);
    EXPECT_EQ(*sig, *(*theirs)->sign(bytes));
    EXPECT_EQ(*sig, *ours->sign(bytes));  // the pooled context is reusable
  }
  EXPECT_EQ(ours->processor_domain(), domain);
  EXPECT_EQ(ours->certificate_url(), url);
  EXPECT_EQ(ours->certificate_pem(), key_->certificate_pem);
}

TEST_F(OpensslSigner, OpensslDgstVerifiesTheSignatureAndRejectsAFlippedByte) {
  auto s = make();
  ASSERT_TRUE(s);
  auto sig = s->sign(body);
  ASSERT_TRUE(sig);
  auto b64 = write("sig.b64", *sig + "\n");
  auto bin = dir_ / "sig.bin";
  ASSERT_EQ(run("openssl base64 -d -A -in " + b64.string() + " -out " + bin.string()), 0);
  auto pub = dir_ / "pub.pem";
  ASSERT_EQ(run("openssl x509 -pubkey -noout -in " + write("cert.pem", key_->certificate_pem).string() + " -out " + pub.string()), 0);
  const std::string verify = "openssl dgst -sha256 -verify " + pub.string() + " -signature " + bin.string() + " ";
  EXPECT_EQ(run(verify + write("body.json", body).string()), 0);
  std::string flipped = body;
  flipped[10] ^= 0x01;
  EXPECT_NE(run(verify + write("flipped.json", flipped).string()), 0);
  auto botan_verdict = botan::verify(key_->certificate_pem, flipped, *sig);
  ASSERT_TRUE(botan_verdict);
  EXPECT_FALSE(*botan_verdict);
}

TEST_F(OpensslSigner, SignsCorrectlyFromManyThreadsAtOnce) {
  auto s = make();
  ASSERT_TRUE(s);
  constexpr int threads = 4, per_thread = 3;
  std::vector<std::thread> workers;
  std::vector<int> good(threads, 0);
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        std::string msg = body + std::to_string(t * 10 + i);
        auto sig = s->sign(msg);
        if (!sig) continue;
        auto verdict = botan::verify(key_->certificate_pem, msg, *sig);
        if (verdict && *verdict) ++good[t];
      }
    });
  for (auto& w : workers) w.join();
  EXPECT_EQ(good, std::vector<int>(threads, per_thread));
}

TEST_F(OpensslSigner, MakeSignerNamesEachDefect) {
  auto other = botan::generate_private_key();
  ASSERT_TRUE(other);
  ASSERT_EQ(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + (dir_ / "ec.pem").string()), 0);
  std::ifstream ec_file(dir_ / "ec.pem");
  const std::string ec_key((std::istreambuf_iterator<char>(ec_file)), std::istreambuf_iterator<char>());
  std::string truncated = key_->private_key_pem.substr(0, key_->private_key_pem.size() / 2);
  struct bad_case {
    openssl::signer_options options;
    std::string expected;
  };
  const std::string d(domain), u(url);
  const bad_case cases[] = {
      {{"garbage", key_->certificate_pem, d, u}, "the private key does not parse: error:"},
      {{truncated, key_->certificate_pem, d, u}, "the private key does not parse: error:"},
      {{ec_key, key_->certificate_pem, d, u}, "the private key is EC, not RSA"},
      {{key_->private_key_pem, "garbage", d, u}, "the certificate does not parse: error:"},
      {{*other, key_->certificate_pem, d, u}, "the private key does not match the certificate"},
      {{key_->private_key_pem, key_->certificate_pem, "opendsr.other.com", u}, "not issued to opendsr.other.com"},
      {{key_->private_key_pem, key_->certificate_pem, "", u}, "domain is empty"},
      {{key_->private_key_pem, key_->certificate_pem, d, ""}, "URL is empty"},
  };
  for (const auto& c : cases) {
    auto s = openssl::make_signer(c.options);
    ASSERT_FALSE(s) << c.expected;
    EXPECT_EQ(s.error(), errc::invalid_argument);
    EXPECT_NE(s.error().message().find(c.expected), std::string::npos) << s.error().message();
    // The message names the defect, never the key.
    EXPECT_EQ(s.error().message().find("MII"), std::string::npos) << s.error().message();
  }
}

}  // namespace
}  // namespace opendsr
