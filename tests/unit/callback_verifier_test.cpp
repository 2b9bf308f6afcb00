// The controller side of signed callbacks: callback_verifier and callback_handler against a test
// PKI made with the openssl command line (a root, an intermediate, leaves for the processor
// domain), with bodies signed by our OpenSSL signer and, independently, by `openssl dgst`.
#include <opendsr/callback_verifier.hpp>
#include <opendsr/openssl_signer.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view domain = "opendsr.test";

const std::string body =
    R"({"controller_id":"3622","expected_completion_time":"2021-12-09T00:00:00Z","status_callback_url":"https://controller.test/cb","subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798","request_status":"pending","results_url":null,"extensions":null,"api_version":"3.0","group_id":null})";

// The openssl configuration of the test PKI: the extensions of each kind of certificate.
constexpr std::string_view openssl_config = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectAltName = DNS:opendsr.test,DNS:www.opendsr.test
authorityKeyIdentifier = keyid:always
[other_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectAltName = DNS:other.test
authorityKeyIdentifier = keyid:always
[self_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectAltName = DNS:opendsr.test
)";

// Runs a shell command; returns its exit status.
int run(const std::string& command) {
  int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const fs::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The test PKI, made once for the suite (RSA key generation is the slow part).
struct pki {
  fs::path dir;
  timestamp made;              // about when the certificates were issued: every validity starts here
  std::string root;            // self-signed root CA: the trust anchor
  std::string intermediate;    // CA signed by the root
  std::string leaf_key;        // PKCS#8 key of every leaf below
  std::string leaf;            // opendsr.test and www.opendsr.test, 30 days, by the intermediate
  std::string short_leaf;      // opendsr.test, 1 day, by the intermediate
  std::string other_leaf;      // SAN other.test only (CN opendsr.test), by the intermediate
  std::string self_signed;     // opendsr.test, self-signed
  std::string stranger_chain;  // a leaf for opendsr.test and its intermediate from another root

  // Returns an empty string on success, or the command that failed.
  std::string make() {
    made = std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
    const std::string d = dir.string() + "/";
    spit(dir / "openssl.cnf", openssl_config);
    const std::string cnf = " -config " + d + "openssl.cnf ";
    auto key = [&](const std::string& name) {
      return "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + d + name + ".key";
    };
    auto root_ca = [&](const std::string& name) {
      return "openssl req -x509 -new -key " + d + name + ".key -subj '/CN=" + name + "' -days 3650 -sha256" + cnf +
             "-extensions ca_ext -out " + d + name + ".pem";
    };
    auto issue = [&](const std::string& name, const std::string& subject, const std::string& issuer, const std::string& key_name,
                     const std::string& ext, int days, int serial) {
      return "openssl req -new -key " + d + key_name + ".key -subj '/CN=" + subject + "'" + cnf + "-out " + d + name + ".csr && " +
             "openssl x509 -req -in " + d + name + ".csr -CA " + d + issuer + ".pem -CAkey " + d + issuer + ".key -set_serial " +
             std::to_string(serial) + " -days " + std::to_string(days) + " -sha256 -extfile " + d + "openssl.cnf -extensions " + ext +
             " -out " + d + name + ".pem";
    };
    const std::vector<std::string> commands = {
        key("root"), root_ca("root"),
        key("intermediate"), issue("intermediate", "opendsr test intermediate", "root", "intermediate", "ca_ext", 3650, 1),
        key("leaf"), issue("leaf", "opendsr.test", "intermediate", "leaf", "leaf_ext", 30, 2),
        issue("short_leaf", "opendsr.test", "intermediate", "leaf", "leaf_ext", 1, 3),
        issue("other_leaf", "opendsr.test", "intermediate", "leaf", "other_ext", 30, 4),
        "openssl req -x509 -new -key " + d + "leaf.key -subj '/CN=opendsr.test' -days 30 -sha256" + cnf +
            "-extensions self_ext -out " + d + "self_signed.pem",
        key("stranger_root"), root_ca("stranger_root"),
        issue("stranger_leaf", "opendsr.test", "stranger_root", "leaf", "leaf_ext", 30, 5),
    };
    for (const std::string& c : commands)
      if (run(c) != 0) return c;
    root = slurp(dir / "root.pem");
    intermediate = slurp(dir / "intermediate.pem");
    leaf_key = slurp(dir / "leaf.key");
    leaf = slurp(dir / "leaf.pem");
    short_leaf = slurp(dir / "short_leaf.pem");
    other_leaf = slurp(dir / "other_leaf.pem");
    self_signed = slurp(dir / "self_signed.pem");
    stranger_chain = slurp(dir / "stranger_leaf.pem") + slurp(dir / "stranger_root.pem");
    return {};
  }
};

class CallbackVerifier : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string templ = (fs::temp_directory_path() / "opendsr-callback-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    pki_ = new pki;
    pki_->dir = templ;
    const std::string failed = pki_->make();
    ASSERT_EQ(failed, "") << "this openssl command failed";
  }
  static void TearDownTestSuite() {
    fs::remove_all(pki_->dir);
    delete pki_;
  }

  // Options trusting only the test root, for the leaf and its intermediate.
  static callback_verifier_options options(std::string chain = {}) {
    callback_verifier_options o;
    o.allowed_domains = {std::string(domain)};
    o.certificate_chain_pem = chain.empty() ? pki_->leaf + pki_->intermediate : std::move(chain);
    o.use_system_trust = false;
    o.ca_pem = pki_->root;
    return o;
  }

  static std::string sign_with_our_signer(std::string_view bytes) {
    auto s = openssl::make_signer({pki_->leaf_key, pki_->leaf, std::string(domain), "https://opendsr.test/cert.pem"});
    EXPECT_TRUE(s) << s.error().message();
    if (!s) return {};
    auto sig = (*s)->sign(bytes);
    EXPECT_TRUE(sig) << sig.error().message();
    return sig ? *sig : std::string();
  }

  // Signs with `openssl dgst -sha256 -sign` and the given extra options; returns the base64.
  std::string sign_with_openssl_cli(std::string_view bytes, const std::string& extra = {}) const {
    spit(dir_ / "body", bytes);
    const std::string d = dir_.string() + "/";
    EXPECT_EQ(run("openssl dgst -sha256 -sign " + pki_->dir.string() + "/leaf.key " + extra + " -out " + d + "sig.bin " + d + "body"), 0);
    EXPECT_EQ(run("openssl base64 -A -in " + d + "sig.bin -out " + d + "sig.b64"), 0);
    return slurp(dir_ / "sig.b64");
  }

  void SetUp() override {
    dir_ = pki_->dir / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(dir_);
  }

  static pki* pki_;
  manual_clock clock_{pki_ ? pki_->made + 1h : timestamp{}};
  fs::path dir_;
};
pki* CallbackVerifier::pki_ = nullptr;

// An error's message contains `reason`, and its code is unauthorized.
::testing::AssertionResult refused_with(const result<void>& r, std::string_view reason) {
  if (r) return ::testing::AssertionFailure() << "accepted; expected a refusal with \"" << reason << "\"";
  if (r.error().code() != errc::unauthorized)
    return ::testing::AssertionFailure() << "not errc::unauthorized: " << r.error().message();
  if (r.error().message().find(reason) == std::string::npos)
    return ::testing::AssertionFailure() << "message \"" << r.error().message() << "\" does not name \"" << reason << "\"";
  return ::testing::AssertionSuccess();
}

template <class T>
::testing::AssertionResult refused_with(const result<T>& r, errc code, std::string_view reason) {
  if (r) return ::testing::AssertionFailure() << "accepted; expected a refusal with \"" << reason << "\"";
  if (r.error().code() != code) return ::testing::AssertionFailure() << "wrong code: " << r.error().message();
  if (r.error().message().find(reason) == std::string::npos)
    return ::testing::AssertionFailure() << "message \"" << r.error().message() << "\" does not name \"" << reason << "\"";
  return ::testing::AssertionSuccess();
}

TEST_F(CallbackVerifier, AcceptsABodySignedByOurSignerAndByOpensslDgst) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  const std::string ours = sign_with_our_signer(body);
  const std::string theirs = sign_with_openssl_cli(body);
  EXPECT_EQ(ours, theirs);  // PKCS#1 v1.5 is deterministic
  auto ok = v->verify(domain, ours, body);
  EXPECT_TRUE(ok) << ok.error().message();
  ok = v->verify(domain, theirs, body);
  EXPECT_TRUE(ok) << ok.error().message();
  ok = v->verify("OpenDSR.Test", ours, body);  // domains compare ignoring case
  EXPECT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(v->allowed_domains(), std::vector<std::string>{"opendsr.test"});
  EXPECT_GT(v->valid_until(), pki_->made + 29 * 24h);
  EXPECT_LT(v->valid_until(), pki_->made + 31 * 24h);
}

TEST_F(CallbackVerifier, RefusesAFlippedBodyByteAndAnotherBody) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  const std::string sig = sign_with_our_signer(body);
  for (std::size_t i : {std::size_t{0}, body.size() / 2, body.size() - 1}) {
    std::string flipped = body;
    flipped[i] ^= 0x01;
    EXPECT_TRUE(refused_with(v->verify(domain, sig, flipped), "signature does not verify")) << "byte " << i;
  }
  EXPECT_TRUE(refused_with(v->verify(domain, sig, body + " "), "signature does not verify"));
  EXPECT_TRUE(refused_with(v->verify(domain, sig, ""), "signature does not verify"));
}

TEST_F(CallbackVerifier, RefusesAPssSignatureOfTheSameBody) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  const std::string pss = sign_with_openssl_cli(body, "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32");
  ASSERT_EQ(pss.size(), 344u);
  // openssl itself verifies it as PSS, so the signature is good; only the padding is wrong.
  ASSERT_EQ(run("openssl x509 -pubkey -noout -in " + pki_->dir.string() + "/leaf.pem -out " + dir_.string() + "/pub.pem"), 0);
  ASSERT_EQ(run("openssl dgst -sha256 -verify " + dir_.string() + "/pub.pem -sigopt rsa_padding_mode:pss -signature " +
                dir_.string() + "/sig.bin " + dir_.string() + "/body"),
            0);
  EXPECT_TRUE(refused_with(v->verify(domain, pss, body), "signature does not verify"));
}

TEST_F(CallbackVerifier, RefusesADomainNotOnTheAllowList) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  const std::string sig = sign_with_our_signer(body);
  EXPECT_TRUE(refused_with(v->verify("www.opendsr.test", sig, body), "processor domain not allowed: www.opendsr.test"));
  EXPECT_TRUE(refused_with(v->verify("evil.test", sig, body), "processor domain not allowed"));
  EXPECT_TRUE(refused_with(v->verify("opendsr.test.", sig, body), "processor domain not allowed"));
  EXPECT_TRUE(refused_with(v->verify("", sig, body), "processor domain not allowed"));
  // A domain that is not a host name is refused without being echoed.
  auto odd = v->verify("opendsr.test\r\nX: <script>", sig, body);
  EXPECT_TRUE(refused_with(odd, "processor domain not allowed"));
  EXPECT_EQ(odd.error().message(), "processor domain not allowed");

  // Both names of the certificate may be allowed at once.
  auto o = options();
  o.allowed_domains = {"opendsr.test", "WWW.opendsr.test"};
  auto both = callback_verifier::make(o, clock_);
  ASSERT_TRUE(both) << both.error().message();
  auto ok = both->verify("www.opendsr.test", sig, body);
  EXPECT_TRUE(ok) << ok.error().message();
}

TEST_F(CallbackVerifier, RefusesACertificateThatDoesNotChainToATrustAnchor) {
  // Self-signed, not an anchor.
  EXPECT_TRUE(refused_with(callback_verifier::make(options(pki_->self_signed), clock_), errc::unauthorized,
                           "certificate not trusted: self-signed certificate"));
  // Another root's chain.
  EXPECT_TRUE(refused_with(callback_verifier::make(options(pki_->stranger_chain), clock_), errc::unauthorized,
                           "certificate not trusted"));
  // The intermediate missing from the chain.
  EXPECT_TRUE(refused_with(callback_verifier::make(options(pki_->leaf), clock_), errc::unauthorized,
                           "certificate not trusted: unable to get local issuer certificate"));
  // The root sent in the chain does not make itself an anchor.
  auto o = options(pki_->leaf + pki_->intermediate + pki_->root);
  o.ca_pem = pki_->stranger_chain;
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::unauthorized, "certificate not trusted"));
  o.ca_pem = pki_->root;
  EXPECT_TRUE(callback_verifier::make(o, clock_));
  // The system store does not know the test root either.
  o = options();
  o.use_system_trust = true;
  o.ca_pem.clear();
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::unauthorized, "certificate not trusted"));
  // A self-signed test certificate is accepted when it is given as the anchor (test mode).
  o = options(pki_->self_signed);
  o.ca_pem = pki_->self_signed;
  auto test_mode = callback_verifier::make(o, clock_);
  ASSERT_TRUE(test_mode) << test_mode.error().message();
  auto ok = test_mode->verify(domain, sign_with_our_signer(body), body);
  EXPECT_TRUE(ok) << ok.error().message();
  // The system store plus the test root: trusted.
  o = options();
  o.use_system_trust = true;
  auto with_system = callback_verifier::make(o, clock_);
  EXPECT_TRUE(with_system) << with_system.error().message();
}

TEST_F(CallbackVerifier, RefusesAnExpiredCertificateAtConstructionAndAtVerify) {
  const std::string sig = sign_with_our_signer(body);
  // The one-day leaf two days on: refused at construction; the 30-day leaf is still good then.
  manual_clock later(pki_->made + 48h);
  EXPECT_TRUE(refused_with(callback_verifier::make(options(pki_->short_leaf + pki_->intermediate), later), errc::unauthorized,
                           "certificate expired"));
  auto still_good = callback_verifier::make(options(), later);
  ASSERT_TRUE(still_good) << still_good.error().message();
  EXPECT_TRUE(still_good->verify(domain, sig, body));

  // Made while valid, then time passes its notAfter: verify() refuses.
  auto v = callback_verifier::make(options(pki_->short_leaf + pki_->intermediate), clock_);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->verify(domain, sig, body));
  EXPECT_LT(v->valid_until(), pki_->made + 25h);
  clock_.set(v->valid_until() - 1us);
  EXPECT_TRUE(v->verify(domain, sig, body));
  clock_.set(v->valid_until());
  EXPECT_TRUE(refused_with(v->verify(domain, sig, body), "certificate expired"));
  clock_.set(pki_->made + 48h);
  EXPECT_TRUE(refused_with(v->verify(domain, sig, body), "certificate expired"));

  // Before notBefore.
  manual_clock earlier(pki_->made - 48h);
  EXPECT_TRUE(refused_with(callback_verifier::make(options(), earlier), errc::unauthorized, "certificate not yet valid"));
}

TEST_F(CallbackVerifier, RefusesACertificateForAnotherName) {
  // other_leaf's SAN is other.test; its CN opendsr.test is not consulted.
  EXPECT_TRUE(refused_with(callback_verifier::make(options(pki_->other_leaf + pki_->intermediate), clock_), errc::unauthorized,
                           "certificate not issued to opendsr.test"));
  // Every allowed domain must be a name of the certificate.
  auto o = options();
  o.allowed_domains = {"opendsr.test", "other.test"};
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::unauthorized, "certificate not issued to other.test"));
  // A name in the SAN is matched whole, not as a suffix.
  o.allowed_domains = {"test"};
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::unauthorized, "certificate not issued to test"));
}

TEST_F(CallbackVerifier, RefusesMissingAndGarbledHeaders) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  const std::string sig = sign_with_our_signer(body);
  EXPECT_TRUE(refused_with(v->verify(std::nullopt, sig, body), "missing X-OpenDSR-Processor-Domain"));
  EXPECT_TRUE(refused_with(v->verify(domain, std::nullopt, body), "missing X-OpenDSR-Signature"));
  const std::string garbled[] = {
      "",
      sig.substr(0, 76) + "\r\n " + sig.substr(76),     // folded over two lines, as the [OD] examples print it
      sig.substr(0, 76) + "\n" + sig.substr(76),        // a bare line break
      " " + sig,                                        // leading space
      sig.substr(0, sig.size() - 1),                    // padding cut
      sig.substr(0, 10) + "-_" + sig.substr(12),        // the URL-safe alphabet
      sig.substr(0, 10) + "=" + sig.substr(11),         // padding inside
      "====",
      std::string(8000, 'A'),                           // far too long
  };
  for (const std::string& g : garbled)
    EXPECT_TRUE(refused_with(v->verify(domain, g, body), "X-OpenDSR-Signature is not one line of standard base64")) << g;
  // Valid base64 that is not a signature of this key: wrong length, or another body's.
  EXPECT_TRUE(refused_with(v->verify(domain, "AAAA", body), "signature does not verify"));
  EXPECT_TRUE(refused_with(v->verify(domain, sig.substr(0, sig.size() - 4), body), "signature does not verify"));
  EXPECT_TRUE(refused_with(v->verify(domain, std::string(340, 'A') + "AA==", body), "signature does not verify"));
  EXPECT_TRUE(refused_with(v->verify(domain, sign_with_our_signer("{}"), body), "signature does not verify"));

  // The same through an http_request: names are case-insensitive, and repeated headers refused.
  http_request r{"POST", "/cb", {}, body};
  r.headers.add("x-opendsr-processor-domain", "opendsr.test");
  r.headers.add("X-OPENDSR-SIGNATURE", sig);
  auto ok = v->verify(r);
  EXPECT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(v->check_headers(r));
  http_request twice = r;
  twice.headers.add("X-OpenDSR-Signature", sig);
  EXPECT_TRUE(refused_with(v->verify(twice), "X-OpenDSR-Signature sent more than once"));
  twice = r;
  twice.headers.add("X-OpenDSR-Processor-Domain", "opendsr.test");
  EXPECT_TRUE(refused_with(v->check_headers(twice), "X-OpenDSR-Processor-Domain sent more than once"));
  http_request bare{"POST", "/cb", {}, body};
  EXPECT_TRUE(refused_with(v->verify(bare), "missing X-OpenDSR-Processor-Domain"));
}

TEST_F(CallbackVerifier, MakeNamesEachUnusableOption) {
  auto o = options();
  o.allowed_domains.clear();
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::invalid_argument, "no allowed processor domain"));
  o = options();
  o.allowed_domains = {"*.opendsr.test"};
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::invalid_argument, "is not a host name"));
  o = options();
  o.allowed_domains = {"opendsr.test,other.test"};
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::invalid_argument, "is not a host name"));
  o = options();
  o.ca_pem.clear();
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::invalid_argument, "no trust anchor"));
  EXPECT_TRUE(refused_with(callback_verifier::make(options("garbage"), clock_), errc::invalid_argument,
                           "the certificate chain holds no certificate"));
  std::string truncated = pki_->leaf.substr(0, pki_->leaf.size() / 2) + "\n-----END CERTIFICATE-----\n";
  EXPECT_TRUE(refused_with(callback_verifier::make(options(truncated), clock_), errc::invalid_argument,
                           "the certificate chain does not parse"));
  o = options();
  o.ca_pem = "not a PEM";
  EXPECT_TRUE(refused_with(callback_verifier::make(o, clock_), errc::invalid_argument, "the CA certificates holds no certificate"));
}

TEST_F(CallbackVerifier, VerifiesFromManyThreadsAtOnce) {
  auto v = callback_verifier::make(options(), clock_);
  ASSERT_TRUE(v) << v.error().message();
  auto s = openssl::make_signer({pki_->leaf_key, pki_->leaf, std::string(domain), "https://opendsr.test/cert.pem"});
  ASSERT_TRUE(s) << s.error().message();
  constexpr int threads = 4, per_thread = 25;
  std::vector<std::thread> workers;
  std::vector<int> accepted(threads, 0), refused(threads, 0);
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const std::string msg = body + std::to_string(t * 1000 + i);
        auto sig = (*s)->sign(msg);
        if (!sig) continue;
        if (v->verify(domain, *sig, msg)) ++accepted[t];
        if (!v->verify(domain, *sig, msg + "x")) ++refused[t];
      }
    });
  for (auto& w : workers) w.join();
  EXPECT_EQ(accepted, std::vector<int>(threads, per_thread));
  EXPECT_EQ(refused, std::vector<int>(threads, per_thread));
}

// --- callback_handler, through dispatch() ---

class CallbackHandler : public CallbackVerifier {
 protected:
  void SetUp() override {
    CallbackVerifier::SetUp();
    auto v = callback_verifier::make(options(), clock_);
    ASSERT_TRUE(v) << v.error().message();
    verifier_ = std::make_unique<callback_verifier>(std::move(*v));
    sig_ = sign_with_our_signer(body);
  }

  callback_handler make_handler(std::function<result<void>(const verified_callback&)> on_callback = {}) {
    callback_handler_options o;
    o.on_callback = on_callback ? std::move(on_callback) : [this](const verified_callback& c) -> result<void> {
      received_.push_back({std::string(c.processor_domain), std::string(c.target), std::string(c.body)});
      return {};
    };
    o.on_refused = [this](int status, const error& e) { refusals_.emplace_back(status, e.message()); };
    o.max_body_bytes = 4096;
    return callback_handler(*verifier_, std::move(o));
  }

  http_request callback(std::string method = "POST") const {
    http_request r{std::move(method), "/dsr/callbacks", {}, body};
    r.headers.add("Content-Type", "application/json");
    r.headers.add("Content-Length", std::to_string(body.size()));
    r.headers.add("X-OpenDSR-Processor-Domain", std::string(domain));
    r.headers.add("X-OpenDSR-Signature", sig_);
    return r;
  }

  static http_response answer(http_handler& h, http_request r) {
    std::optional<http_response> response;
    dispatch(h, std::move(r), [&](http_response x) { response = std::move(x); });
    EXPECT_TRUE(response);
    return response ? std::move(*response) : http_response{};
  }

  struct received {
    std::string domain, target, body;
  };
  std::unique_ptr<callback_verifier> verifier_;
  std::string sig_;
  std::vector<received> received_;
  std::vector<std::pair<int, std::string>> refusals_;
};

TEST_F(CallbackHandler, AnswersAVerifiedCallback202AndHandsItOver) {
  auto h = make_handler();
  auto r = answer(h, callback());
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  ASSERT_EQ(received_.size(), 1u);
  EXPECT_EQ(received_[0].domain, domain);
  EXPECT_EQ(received_[0].target, "/dsr/callbacks");
  EXPECT_EQ(received_[0].body, body);
  EXPECT_TRUE(refusals_.empty());
}

TEST_F(CallbackHandler, AnswersAFailedVerification401NamingTheReason) {
  auto h = make_handler();
  auto flipped = callback();
  flipped.body[5] ^= 0x01;
  auto r = answer(h, flipped);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers.get("Content-Type"), "application/json");
  EXPECT_NE(r.body.find("\"code\":401"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("signature does not verify"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("controller_id"), std::string::npos) << "the body is never echoed";

  auto stranger = callback();
  stranger.headers.set("X-OpenDSR-Processor-Domain", "evil.test");
  r = answer(h, stranger);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("processor domain not allowed"), std::string::npos) << r.body;

  // Refused on the header alone: the body handler never runs.
  auto unsigned_callback = callback();
  unsigned_callback.headers.erase("X-OpenDSR-Signature");
  auto decision = h.on_head([&] {
    auto head = unsigned_callback;
    head.body.clear();
    return head;
  }());
  ASSERT_TRUE(std::holds_alternative<http_response>(decision));
  EXPECT_EQ(std::get<http_response>(decision).status, 401);
  EXPECT_NE(std::get<http_response>(decision).body.find("missing X-OpenDSR-Signature"), std::string::npos);

  EXPECT_TRUE(received_.empty());
  ASSERT_EQ(refusals_.size(), 3u);
  EXPECT_EQ(refusals_[0], (std::pair<int, std::string>{401, "signature does not verify"}));
  EXPECT_EQ(refusals_[2], (std::pair<int, std::string>{401, "missing X-OpenDSR-Signature"}));
}

TEST_F(CallbackHandler, AnswersOtherMethods405AndLargeBodies413) {
  auto h = make_handler();
  for (const char* method : {"GET", "PUT", "post"}) {
    auto r = answer(h, callback(method));
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.headers.get("Allow"), "POST");
    EXPECT_NE(r.body.find("\"code\":405"), std::string::npos) << r.body;
  }
  auto big = callback();
  big.headers.set("Content-Length", "5000");
  EXPECT_EQ(answer(h, big).status, 413);
  big.headers.erase("Content-Length");  // chunked: the size is known only once read
  big.body = std::string(5000, ' ');
  EXPECT_EQ(answer(h, big).status, 413);
  EXPECT_EQ(h.on_error(error(errc::invalid_request, "bad header")).status, 400);
  EXPECT_TRUE(received_.empty());
  EXPECT_EQ(refusals_.size(), 6u);
}

TEST_F(CallbackHandler, AnswersWhatOnCallbackDecides) {
  auto h = make_handler([](const verified_callback&) -> result<void> { return error(errc::invalid_json, "not a status object"); });
  auto r = answer(h, callback());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not a status object"), std::string::npos) << r.body;
  ASSERT_EQ(refusals_.size(), 1u);
  EXPECT_EQ(refusals_[0].first, 400);
}

// --- `opendsr verify-callback`, the built binary (OPENDSR_TOOL, set by meson test) ---

class VerifyCallbackCommand : public CallbackVerifier {
 protected:
  void SetUp() override {
    CallbackVerifier::SetUp();
    const char* tool = std::getenv("OPENDSR_TOOL");
    if (!tool) GTEST_SKIP() << "OPENDSR_TOOL is not set (run through meson test with the apps built)";
    const std::string d = dir_.string() + "/";
    spit(dir_ / "chain.pem", pki_->leaf + pki_->intermediate);
    spit(dir_ / "root.pem", pki_->root);
    spit(dir_ / "body.json", body);
    spit(dir_ / "sig.b64", sign_with_our_signer(body) + "\n");
    base_ = std::string(tool) + " verify-callback --domain opendsr.test,www.opendsr.test --cert " + d + "chain.pem --ca-file " +
            d + "root.pem --no-system-trust ";
  }

  // Runs the tool with `flags`; returns its exit status and sets out_ to its stdout.
  int tool(const std::string& flags) {
    const fs::path out = dir_ / "stdout";
    int status = std::system((base_ + flags + " >" + out.string() + " 2>/dev/null").c_str());
    out_ = slurp(out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string base_, out_;
};

TEST_F(VerifyCallbackCommand, OneShotPrints202Or401WithTheReason) {
  const std::string d = dir_.string() + "/";
  const std::string one = "--body " + d + "body.json --signature-file " + d + "sig.b64 --processor-domain ";
  EXPECT_EQ(tool(one + "opendsr.test"), 0);
  EXPECT_EQ(out_, "202 Accepted\n");
  EXPECT_EQ(tool("--body " + d + "body.json --signature " + sign_with_our_signer(body) + " --processor-domain opendsr.test"), 0);
  EXPECT_EQ(out_, "202 Accepted\n");

  std::string flipped = body;
  flipped[3] ^= 0x01;
  spit(dir_ / "flipped.json", flipped);
  EXPECT_EQ(tool("--body " + d + "flipped.json --signature-file " + d + "sig.b64 --processor-domain opendsr.test"), 1);
  EXPECT_EQ(out_, "401 signature does not verify\n");
  EXPECT_EQ(tool(one + "evil.test"), 1);
  EXPECT_EQ(out_, "401 processor domain not allowed: evil.test\n");
  spit(dir_ / "pss.b64", sign_with_openssl_cli(body, "-sigopt rsa_padding_mode:pss"));
  EXPECT_EQ(tool("--body " + d + "body.json --signature-file " + d + "pss.b64 --processor-domain opendsr.test"), 1);
  EXPECT_EQ(out_, "401 signature does not verify\n");

  // The certificate refused at startup.
  spit(dir_ / "self.pem", pki_->self_signed);
  base_.replace(base_.find(d + "chain.pem"), (d + "chain.pem").size(), d + "self.pem");
  EXPECT_EQ(tool(one + "opendsr.test"), 1);
  EXPECT_EQ(out_, "401 certificate not trusted: self-signed certificate\n");

  // Usage errors exit 2 and print nothing on stdout.
  EXPECT_EQ(tool("--body " + d + "body.json --processor-domain opendsr.test"), 2);
  EXPECT_EQ(tool(""), 2);
  EXPECT_EQ(out_, "");
}

TEST_F(VerifyCallbackCommand, CertUrlIsFetchedUnderTheOutboundPolicy) {
  // The http_client refuses loopback and plain http before connecting; both are failures (exit 1,
  // nothing on stdout), not verdicts. --cert and --cert-url together are a usage error.
  const std::string d = dir_.string() + "/";
  const std::string one = " --body " + d + "body.json --signature-file " + d + "sig.b64 --processor-domain opendsr.test";
  const std::string cert = "--cert " + d + "chain.pem";
  base_.replace(base_.find(cert), cert.size(), "");
  const fs::path err = dir_ / "stderr";
  auto tool_err = [&](const std::string& flags) {
    int status = std::system((base_ + flags + " >" + (dir_ / "stdout").string() + " 2>" + err.string()).c_str());
    out_ = slurp(dir_ / "stdout");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(tool_err("--cert-url https://127.0.0.1:9/opendsr_cert.pem" + one), 1);
  EXPECT_EQ(out_, "");
  EXPECT_NE(slurp(err).find("loopback"), std::string::npos) << slurp(err);
  EXPECT_EQ(tool_err("--cert-url http://opendsr.test/opendsr_cert.pem" + one), 1);
  EXPECT_NE(slurp(err).find("https only"), std::string::npos) << slurp(err);
  EXPECT_EQ(tool_err(cert + " --cert-url https://opendsr.test/c.pem" + one), 2);
}

TEST_F(VerifyCallbackCommand, ListenAnswersCallbacksAndPrintsALineForEach) {
  if (run("curl --version") != 0) GTEST_SKIP() << "curl is not installed";
  // Started with its stdout on a pipe; each line is read as it is printed, so nothing sleeps.
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl("/bin/sh", "sh", "-c", ("exec " + base_ + "--listen 127.0.0.1:0").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* lines = fdopen(out[0], "r");
  ASSERT_NE(lines, nullptr);
  auto next_line = [&] {
    char buffer[512];
    return std::fgets(buffer, sizeof buffer, lines) ? std::string(buffer) : std::string();
  };
  const std::string banner = next_line();
  ASSERT_NE(banner.find("listening on http://127.0.0.1:"), std::string::npos) << banner;
  const std::string port = banner.substr(banner.find("127.0.0.1:") + 10, banner.find(" for") - banner.find("127.0.0.1:") - 10);
  const std::string d = dir_.string() + "/";
  auto post = [&](const std::string& headers, const std::string& body_file) {
    const fs::path reply = dir_ / "reply";
    EXPECT_EQ(std::system(("curl -s -o " + reply.string() + " -w '%{http_code}' -X POST --data-binary @" + d + body_file + " " +
                           headers + " http://127.0.0.1:" + port + "/dsr/callbacks >" + d + "code")
                              .c_str()),
              0);
    return slurp(dir_ / "code") + " " + slurp(reply);
  };
  const std::string signed_headers = "-H 'X-OpenDSR-Processor-Domain: opendsr.test' -H \"X-OpenDSR-Signature: " +
                                     sign_with_our_signer(body) + "\" -H 'Content-Type: application/json'";
  EXPECT_EQ(post(signed_headers, "body.json"), "202 {}");
  EXPECT_EQ(next_line(), "202 opendsr.test POST /dsr/callbacks (" + std::to_string(body.size()) + " bytes)\n");
  spit(dir_ / "other.json", body + " ");
  const std::string refused = post(signed_headers, "other.json");
  EXPECT_EQ(refused.substr(0, 4), "401 ");
  EXPECT_NE(refused.find("signature does not verify"), std::string::npos) << refused;
  EXPECT_EQ(next_line(), "401 signature does not verify\n");
  EXPECT_EQ(post("", "body.json").substr(0, 4), "401 ");
  EXPECT_EQ(next_line(), "401 missing X-OpenDSR-Processor-Domain\n");

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(next_line(), "stopped (SIGTERM)\n");
  EXPECT_EQ(next_line(), "");  // end of output
  std::fclose(lines);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace opendsr
