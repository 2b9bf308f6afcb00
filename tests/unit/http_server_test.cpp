// Drives the Beast server over real loopback sockets with a plain POSIX client, so that Beast
// is compiled only in the server's translation unit.
#include <opendsr/http_server.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace opendsr {
namespace {

using namespace std::chrono_literals;

// Every wait on the server is bounded by this; a healthy run never comes near it.
constexpr auto bound = 5s;

struct parsed_response {
  int status = 0;
  http_headers headers;
  std::string body;
};

// A blocking HTTP/1.1 client on one loopback connection.
class client {
 public:
  explicit client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{static_cast<time_t>(bound.count()), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool connected() const { return connected_; }

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response; nullopt if the connection ended or the bound passed first.
  std::optional<parsed_response> read_response() {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    parsed_response r;
    std::string head = buffer_.substr(0, end + 2);
    buffer_.erase(0, end + 4);
    std::size_t line_end = head.find("\r\n");
    r.status = std::stoi(head.substr(9, 3));
    for (std::size_t pos = line_end + 2; pos < head.size();) {
      std::size_t eol = head.find("\r\n", pos);
      std::string line = head.substr(pos, eol - pos);
      std::size_t colon = line.find(':');
      r.headers.add(line.substr(0, colon), line.substr(line.find_first_not_of(' ', colon + 1)));
      pos = eol + 2;
    }
    std::size_t length = std::stoul(std::string(r.headers.get("Content-Length").value_or("0")));
    while (buffer_.size() < length)
      if (!fill()) return std::nullopt;
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }

  // True iff the server closed the connection (orderly or by reset) within the bound, having
  // sent nothing more.
  bool closed_by_server() {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  std::string& pending() { return buffer_; }

 private:
  bool fill() {
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  bool connected_ = false;
  std::string buffer_;
};

std::string get(std::string_view target) {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
}

std::string post(std::string_view target, std::string_view body, std::string_view extra_headers = "") {
  return "POST " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
         std::string(extra_headers) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// Echoes requests; refuses some at the header; parks "/async" requests for the test to answer.
class test_handler final : public http_handler {
 public:
  http_head_decision on_head(const http_request& head) override {
    if (head.target == "/limited") {
      auto length = head.headers.get("content-length");
      if (length && std::stoul(std::string(*length)) > 100) return http_response{413, {}, R"({"code":413})"};
    }
    if (head.target == "/async")
      return http_body_handler([this](http_request, http_responder respond) {
        std::lock_guard lock(mutex_);
        parked_.push_back(std::move(respond));
        parked_cv_.notify_all();
      });
    if (head.target == "/drop") return http_body_handler([](http_request, http_responder) {});
    if (head.target == "/throw") throw std::runtime_error("handler failed");
    return http_body_handler([](http_request r, http_responder respond) {
      http_response out{200, {}, r.method + " " + r.target + " " + r.body};
      out.headers.set("X-Header-Count", std::to_string(r.headers.size()));
      respond(std::move(out));
    });
  }

  http_response on_error(const error& e) override {
    int status = e == errc::payload_too_large ? 413 : e == errc::invalid_request ? 400 : 500;
    http_response r{status, {}, R"({"code":)" + std::to_string(status) + R"(,"message":")" + e.message() + "\"}"};
    r.headers.set("Content-Type", "application/json");
    return r;
  }

  // Waits (bounded) for a parked request and returns its responder.
  std::optional<http_responder> take_parked() {
    std::unique_lock lock(mutex_);
    if (!parked_cv_.wait_for(lock, bound, [this] { return !parked_.empty(); })) return std::nullopt;
    http_responder r = std::move(parked_.front());
    parked_.pop_front();
    return r;
  }

 private:
  std::mutex mutex_;
  std::condition_variable parked_cv_;
  std::deque<http_responder> parked_;
};

class HttpServer : public ::testing::Test {
 protected:
  void start(http_server_options options = {}) {
    options.port = 0;
    options.threads = 2;
    auto s = http_server::start(handler_, options);
    ASSERT_TRUE(s) << s.error().message();
    server_ = std::move(*s);
  }
  std::uint16_t port() const { return server_->port(); }

  test_handler handler_;
  std::unique_ptr<http_server> server_;
};

TEST_F(HttpServer, ServesSeveralRequestsOnOneKeptAliveConnection) {
  start();
  client c(port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(post("/v3/requests", "{\"a\":1}")));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, "POST /v3/requests {\"a\":1}");
  EXPECT_EQ(first->headers.get("X-Header-Count"), "3");  // Host, Content-Type, Content-Length
  ASSERT_TRUE(c.send(get("/v3/requests/abc")));
  auto second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body, "GET /v3/requests/abc ");
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(HttpServer, AnswersPipelinedRequestsInOrder) {
  start();
  client c(port());
  ASSERT_TRUE(c.send(get("/one") + get("/two")));
  auto one = c.read_response();
  auto two = c.read_response();
  ASSERT_TRUE(one && two);
  EXPECT_EQ(one->body, "GET /one ");
  EXPECT_EQ(two->body, "GET /two ");
}

TEST_F(HttpServer, AMalformedRequestLineGetsA400JsonBodyAndTheConnectionCloses) {
  start();
  client c(port());
  ASSERT_TRUE(c.send("GARBAGE\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->headers.get("Content-Type"), "application/json");
  EXPECT_TRUE(r->body.starts_with(R"({"code":400,"message":"malformed HTTP request)")) << r->body;
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(HttpServer, AHeaderOverTheLimitGetsA400) {
  start({.max_header_bytes = 1024});
  client c(port());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("larger than 1024 bytes"), std::string::npos) << r->body;
}

TEST_F(HttpServer, ASlowClientThatNeverFinishesItsBodyIsClosedAtTheReadTimeout) {
  start({.read_timeout = 200ms});
  client c(port());
  ASSERT_TRUE(c.send("POST /v3/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"partial\":"));
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(c.pending().empty());
}

TEST_F(HttpServer, AnIdleKeptAliveConnectionIsClosedAtTheIdleTimeout) {
  start({.idle_timeout = 200ms});
  client c(port());
  ASSERT_TRUE(c.send(get("/")));
  ASSERT_TRUE(c.read_response());
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(HttpServer, ABodyOverTheServerLimitGets413) {
  start({.max_body_bytes = 1024 * 1024});
  client c(port());
  std::string body(2 * 1024 * 1024, 'x');
  ASSERT_TRUE(c.send(post("/v3/requests", body)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("larger than 1048576 bytes"), std::string::npos) << r->body;
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(HttpServer, AChunkedBodyOverTheServerLimitGets413) {
  start({.max_body_bytes = 1000});
  client c(port());
  std::string chunk(800, 'x');
  ASSERT_TRUE(c.send("POST /v3/requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" + chunk +
                     "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(HttpServer, TheHandlerRefusesOnContentLengthBeforeTheBodyIsSent) {
  start();
  client c(port());
  // The client waits for 100 Continue before sending its body; it gets the refusal instead.
  ASSERT_TRUE(c.send("POST /limited HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->headers.get("Connection"), "close");
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(HttpServer, TheHandlerRefusesOnContentLengthWhileTheBodyArrives) {
  start();
  client c(port());
  ASSERT_TRUE(c.send(post("/limited", std::string(200'000, 'x'))));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(HttpServer, AnAcceptedExpectationGets100ContinueThenTheResponse) {
  start();
  client c(port());
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"));
  auto cont = c.read_response();
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send("{}"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /echo {}");
}

TEST_F(HttpServer, AHandlerMayRespondLaterFromAnotherThread) {
  start();
  client c(port());
  ASSERT_TRUE(c.send(post("/async", "{}")));
  auto respond = handler_.take_parked();
  ASSERT_TRUE(respond);
  std::thread([r = std::move(*respond)] { r(http_response{201, {}, "created"}); }).join();
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "created");
  ASSERT_TRUE(c.send(get("/after")));  // still kept alive
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
}

TEST_F(HttpServer, ADroppedResponderStillAnswers500) {
  start();
  client c(port());
  ASSERT_TRUE(c.send(post("/drop", "{}")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("dropped without a response"), std::string::npos) << r->body;
}

TEST_F(HttpServer, AThrowingHandlerAnswers500) {
  start();
  client c(port());
  ASSERT_TRUE(c.send(get("/throw")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("handler failed"), std::string::npos) << r->body;
}

TEST_F(HttpServer, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  start({.max_connections = 2});
  auto first = std::make_unique<client>(port());
  client second(port());
  for (client* c : {first.get(), &second}) {  // a response proves the connection was accepted
    ASSERT_TRUE(c->send(get("/")));
    ASSERT_TRUE(c->read_response());
  }
  client third(port());
  EXPECT_TRUE(third.closed_by_server());
  first.reset();
  // The server notices the closed connection asynchronously: poll, bounded, for a free slot.
  std::optional<parsed_response> served;
  for (auto deadline = std::chrono::steady_clock::now() + bound; !served && std::chrono::steady_clock::now() < deadline;) {
    client next(port());
    if (next.send(get("/again"))) served = next.read_response();
  }
  ASSERT_TRUE(served);
  EXPECT_EQ(served->body, "GET /again ");
}

TEST_F(HttpServer, StopClosesIdleConnectionsAndLetsRequestsInProgressFinish) {
  start();
  client idle(port());
  ASSERT_TRUE(idle.send(get("/")));
  ASSERT_TRUE(idle.read_response());
  client busy(port());
  ASSERT_TRUE(busy.send(post("/async", "{}")));
  auto respond = handler_.take_parked();
  ASSERT_TRUE(respond);

  std::atomic<bool> stopped = false;
  std::thread stopper([&] {
    server_->stop();
    stopped = true;
  });
  EXPECT_TRUE(idle.closed_by_server());  // stop() has begun
  EXPECT_FALSE(stopped.load());          // and waits for the request in progress
  (*respond)(http_response{201, {}, "committed"});
  auto r = busy.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "committed");
  EXPECT_EQ(r->headers.get("Connection"), "close");
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_EQ(server_->connections(), 0u);
  client late(port());
  EXPECT_FALSE(late.connected() && late.send(get("/")) && late.read_response());
}

TEST_F(HttpServer, StopClosesRequestsStillWithTheHandlerAfterTheDrainTimeout) {
  start({.drain_timeout = 100ms});
  client busy(port());
  ASSERT_TRUE(busy.send(post("/async", "{}")));
  auto respond = handler_.take_parked();
  ASSERT_TRUE(respond);
  std::thread stopper([&] { server_->stop(); });
  EXPECT_TRUE(busy.closed_by_server());
  (*respond)(http_response{201, {}, "too late"});  // the connection ends; stop() can return
  stopper.join();
  EXPECT_EQ(server_->connections(), 0u);
}

TEST(HttpServerStart, NamesWhatIsWrong) {
  test_handler h;
  auto bad = http_server::start(h, {.address = "not-an-address", .port = 0});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  EXPECT_FALSE(http_server::start(h, {.port = 0, .threads = 0}));
  auto first = http_server::start(h, {.port = 0});
  ASSERT_TRUE(first);
  auto taken = http_server::start(h, {.port = (*first)->port()});
  ASSERT_FALSE(taken);
  EXPECT_NE(taken.error().message().find("cannot bind"), std::string::npos) << taken.error().message();
}

#if OPENDSR_ASIO_TLS
// Runs a shell command; returns what it wrote to stdout.
std::string capture(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char chunk[4096];
    while (std::size_t n = std::fread(chunk, 1, sizeof chunk, p)) out.append(chunk, n);
    ::pclose(p);
  }
  return out;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class HttpsServer : public HttpServer {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "opendsr-tls-XXXXXX").string();
    ASSERT_TRUE(::mkdtemp(templ.data()));
    dir_ = templ;
    const std::string key = (dir_ / "key.pem").string(), cert = (dir_ / "cert.pem").string();
    ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " + cert +
                           " -subj /CN=localhost -days 1 >/dev/null 2>&1")
                              .c_str()),
              0);
    start({.tls = http_server_tls{read_file(cert), read_file(key)}});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs curl; returns the bodies it printed. Its verbose log goes to verbose_log().
  std::string curl(const std::string& args) {
    return capture("curl -sk -v --stderr " + (dir_ / "verbose.log").string() + " --max-time 5 " + args);
  }
  std::string verbose_log() { return read_file(dir_ / "verbose.log"); }
  std::string url(std::string_view path) { return "https://127.0.0.1:" + std::to_string(port()) + std::string(path); }

  std::filesystem::path dir_;
};

TEST_F(HttpsServer, ServesRequestsOverTlsAndKeepsTheConnection) {
  std::string out = curl(url("/one") + " " + url("/two"));
  EXPECT_EQ(out, "GET /one GET /two ");
  EXPECT_NE(verbose_log().find("Re-using existing connection"), std::string::npos) << verbose_log();
}

TEST_F(HttpsServer, ReadsABodyOverTls) {
  std::string body(100'000, 'x');
  std::ofstream(dir_ / "body.json") << body;
  std::string out = curl("-H 'Content-Type: application/json' --data-binary @" + (dir_ / "body.json").string() + " " + url("/post"));
  EXPECT_EQ(out, "POST /post " + body) << verbose_log();
}

TEST_F(HttpsServer, PlainHttpOnTheTlsPortGetsNoHttpAnswer) {
  client c(port());
  ASSERT_TRUE(c.send(get("/")));
  EXPECT_FALSE(c.read_response());
}

TEST(HttpServerStart, RefusesATlsIdentityThatDoesNotParse) {
  test_handler h;
  auto bad = http_server::start(h, {.port = 0, .tls = http_server_tls{"not a certificate", "not a key"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_argument);
}
#endif

}  // namespace
}  // namespace opendsr
