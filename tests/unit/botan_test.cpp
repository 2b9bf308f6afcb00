#include <opendsr/botan.hpp>

#include <gtest/gtest.h>

#include <botan/data_src.h>
#include <botan/x509cert.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view domain = "opendsr.example.com";
constexpr std::string_view url = "https://static.example.com/opendsr_cert.pem";
const timestamp jan_2025 = std::chrono::sys_days(std::chrono::year(2025) / 1 / 1);

// A scratch directory for files handed to openssl; removed with the fixture.
class scratch_dir {
 public:
  scratch_dir() {
    std::string templ = (fs::temp_directory_path() / "opendsr-botan-XXXXXX").string();
    if (!mkdtemp(templ.data())) std::abort();
    path_ = templ;
  }
  ~scratch_dir() { fs::remove_all(path_); }
  fs::path write(const std::string& name, std::string_view bytes) const {
    fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path_ / name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The value of a result, or nullopt for an error: comparable with EXPECT_EQ.
template <class T>
std::optional<T> value_of(result<T> r) {
  if (!r) return std::nullopt;
  return *r;
}

// Runs a shell command; returns its exit status.
int run(const std::string& command) {
  int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string base64_decode_with_openssl(const scratch_dir& dir, std::string_view b64) {
  dir.write("sig.b64", std::string(b64) + "\n");
  EXPECT_EQ(run("openssl base64 -d -A -in " + (dir.path() / "sig.b64").string() + " -out " +
                (dir.path() / "sig.bin").string()),
            0);
  return dir.read("sig.bin");
}

class BotanAdapter : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto kc = botan::generate_self_signed(domain, jan_2025);
    ASSERT_TRUE(kc) << kc.error().message();
    key_ = new botan::key_and_certificate(std::move(*kc));
  }
  static void TearDownTestSuite() { delete key_; }

  static std::unique_ptr<signer> make() {
    auto s = botan::make_signer({key_->private_key_pem, key_->certificate_pem, std::string(domain), std::string(url)});
    EXPECT_TRUE(s) << s.error().message();
    return s ? std::move(*s) : nullptr;
  }

  static botan::key_and_certificate* key_;
};
botan::key_and_certificate* BotanAdapter::key_ = nullptr;

const std::string body =
    R"({"controller_id":"3622","expected_completion_time":"2021-12-09T00:00:00Z","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798"})";

TEST_F(BotanAdapter, SignatureRoundTripsAndIsOneLineOf344Characters) {
  auto s = make();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->processor_domain(), domain);
  EXPECT_EQ(s->certificate_url(), url);
  EXPECT_EQ(s->certificate_pem(), key_->certificate_pem);
  auto sig = s->sign(body);
  ASSERT_TRUE(sig) << sig.error().message();
  EXPECT_EQ(sig->size(), 344u);
  EXPECT_EQ(sig->find('\n'), std::string::npos);
  EXPECT_EQ(value_of(botan::verify(key_->certificate_pem, body, *sig)), true);
  // PKCS#1 v1.5 is deterministic: the same bytes give the same signature.
  EXPECT_EQ(*s->sign(body), *sig);
}

TEST_F(BotanAdapter, AFlippedByteFailsVerification) {
  auto s = make();
  ASSERT_TRUE(s);
  std::string sig = *s->sign(body);
  std::string tampered = body;
  tampered[10] ^= 0x01;
  EXPECT_EQ(value_of(botan::verify(key_->certificate_pem, tampered, sig)), false);
  std::string bad_sig = sig;
  bad_sig[5] = bad_sig[5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(value_of(botan::verify(key_->certificate_pem, body, bad_sig)), false);
  EXPECT_EQ(value_of(botan::verify(key_->certificate_pem, body, "not base64 at all!")), false);
  EXPECT_EQ(value_of(botan::verify(key_->certificate_pem, body, "")), false);
}

TEST_F(BotanAdapter, VerifyRejectsACertificateThatDoesNotParse) {
  auto r = botan::verify("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", body, "AAAA");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
}

TEST_F(BotanAdapter, OpensslVerifiesTheSignatureAndSignsTheSameBytes) {
  auto s = make();
  ASSERT_TRUE(s);
  scratch_dir dir;
  std::string sig = *s->sign(body);
  auto cert = dir.write("cert.pem", key_->certificate_pem);
  auto key = dir.write("key.pem", key_->private_key_pem);
  auto data = dir.write("body.json", body);
  base64_decode_with_openssl(dir, sig);
  auto pub = dir.path() / "pub.pem";
  ASSERT_EQ(run("openssl x509 -pubkey -noout -in " + cert.string() + " -out " + pub.string()), 0);
  auto verify = "openssl dgst -sha256 -verify " + pub.string() + " -signature " + (dir.path() / "sig.bin").string() + " ";
  EXPECT_EQ(run(verify + data.string()), 0);
  std::string tampered = body;
  tampered.back() = ']';
  EXPECT_NE(run(verify + dir.write("tampered.json", tampered).string()), 0);
  // An independent implementation signs the same bytes to the same signature.
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + key.string() + " -out " + (dir.path() / "openssl.bin").string() +
                " " + data.string()),
            0);
  EXPECT_EQ(dir.read("openssl.bin"), dir.read("sig.bin"));
}

TEST_F(BotanAdapter, SignsFromManyThreadsAtOnce) {
  auto s = make();
  ASSERT_TRUE(s);
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        std::string msg = body + std::to_string(t * 10 + i);
        auto sig = s->sign(msg);
        if (sig && value_of(botan::verify(key_->certificate_pem, msg, *sig)) == true) ++good[t];
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(good, std::vector<int>(4, 3));
}

TEST_F(BotanAdapter, WrapperForwardsEveryCall) {
  auto s = make();
  ASSERT_TRUE(s);
  signer_wrapper w(*s);
  EXPECT_EQ(w.processor_domain(), domain);
  EXPECT_EQ(w.certificate_url(), url);
  EXPECT_EQ(w.certificate_pem(), key_->certificate_pem);
  EXPECT_EQ(*w.sign(body), *s->sign(body));
}

TEST_F(BotanAdapter, SelfSignedCertificateNamesTheDomainAndStartsNow) {
  Botan::DataSource_Memory source(key_->certificate_pem);
  Botan::X509_Certificate cert(source);
  EXPECT_TRUE(cert.matches_dns_name(std::string(domain)));
  EXPECT_FALSE(cert.matches_dns_name("other.example.com"));
  EXPECT_EQ(cert.not_before().time_since_epoch(),
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(jan_2025.time_since_epoch()).count()));
  EXPECT_EQ(cert.not_after().time_since_epoch() - cert.not_before().time_since_epoch(), 365u * 86400u);
  EXPECT_TRUE(key_->private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

TEST_F(BotanAdapter, MakeSignerNamesEachDefect) {
  auto other = botan::generate_private_key();
  ASSERT_TRUE(other);
  struct bad_case {
    botan::signer_options options;
    std::string expected;
  };
  std::string d(domain), u(url);
  const bad_case cases[] = {
      {{*other, key_->certificate_pem, d, u}, "does not match the certificate"},
      {{key_->private_key_pem, key_->certificate_pem, "opendsr.other.com", u}, "not issued to opendsr.other.com"},
      {{"garbage", key_->certificate_pem, d, u}, "private key does not parse"},
      {{key_->private_key_pem, "garbage", d, u}, "certificate does not parse"},
      {{key_->private_key_pem, key_->certificate_pem, "", u}, "domain is empty"},
      {{key_->private_key_pem, key_->certificate_pem, d, ""}, "URL is empty"},
  };
  for (const auto& c : cases) {
    auto s = botan::make_signer(c.options);
    ASSERT_FALSE(s) << c.expected;
    EXPECT_EQ(s.error(), errc::invalid_argument);
    EXPECT_NE(s.error().message().find(c.expected), std::string::npos) << s.error().message();
  }
}

TEST_F(BotanAdapter, MakeSignerRefusesANonRsaKey) {
  scratch_dir dir;
  auto ec = dir.path() / "ec.pem";
  ASSERT_EQ(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + ec.string()), 0);
  auto s = botan::make_signer({dir.read("ec.pem"), key_->certificate_pem, std::string(domain), std::string(url)});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("not RSA"), std::string::npos) << s.error().message();
}

TEST_F(BotanAdapter, CertificateRequestIsSignedAndNamesTheDomain) {
  auto csr = botan::make_certificate_request(key_->private_key_pem, domain);
  ASSERT_TRUE(csr) << csr.error().message();
  EXPECT_TRUE(csr->starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
  scratch_dir dir;
  auto path = dir.write("req.pem", *csr);
  EXPECT_EQ(run("openssl req -verify -noout -in " + path.string()), 0);
  EXPECT_EQ(run("openssl req -noout -subject -in " + path.string() + " | grep -q 'CN *= *opendsr.example.com'"), 0);
  EXPECT_FALSE(botan::make_certificate_request("garbage", domain));
  EXPECT_FALSE(botan::make_certificate_request(key_->private_key_pem, ""));
}

TEST(BotanSecretHasher, HashesAndChecks) {
  auto h = botan::make_secret_hasher({.memory_kib = 64, .iterations = 1, .parallelism = 1});
  ASSERT_TRUE(h);
  auto a = (*h)->hash("example-api-secret");
  auto b = (*h)->hash("example-api-secret");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->starts_with("$argon2id$"));
  EXPECT_NE(*a, *b) << "each hash has its own salt";
  EXPECT_EQ(value_of((*h)->check("example-api-secret", *a)), true);
  EXPECT_EQ(value_of((*h)->check("example-api-secret", *b)), true);
  EXPECT_EQ(value_of((*h)->check("example-api-secreT", *a)), false);
  EXPECT_EQ(value_of((*h)->check("", *a)), false);
  EXPECT_EQ(a->find("example-api-secret"), std::string::npos);
}

TEST(BotanSecretHasher, ChecksHashesMadeWithOtherParameters) {
  auto strong = botan::make_secret_hasher();
  auto weak = botan::make_secret_hasher({.memory_kib = 64, .iterations = 1, .parallelism = 1});
  ASSERT_TRUE(strong && weak);
  auto h = (*strong)->hash("s3cret");
  ASSERT_TRUE(h);
  EXPECT_NE(h->find("m=19456,t=2,p=1"), std::string::npos) << *h;
  EXPECT_EQ(value_of((*weak)->check("s3cret", *h)), true);
}

TEST(BotanSecretHasher, RejectsForeignHashesAndBadParameters) {
  auto h = botan::make_secret_hasher({.memory_kib = 64, .iterations = 1, .parallelism = 1});
  ASSERT_TRUE(h);
  for (std::string_view stored : {"", "$2a$12$abcdefghijklmnopqrstuv", "$argon2id$v=19$m=64,t=1,p=1$!!$!!", "$argon2id$"}) {
    auto r = (*h)->check("x", stored);
    ASSERT_FALSE(r) << stored;
    EXPECT_EQ(r.error(), errc::invalid_argument);
  }
  EXPECT_FALSE(botan::make_secret_hasher({.memory_kib = 7, .iterations = 1, .parallelism = 1}));
  EXPECT_FALSE(botan::make_secret_hasher({.memory_kib = 64, .iterations = 0, .parallelism = 1}));
  EXPECT_FALSE(botan::make_secret_hasher({.memory_kib = 64, .iterations = 1, .parallelism = 0}));
}

}  // namespace
}  // namespace opendsr
