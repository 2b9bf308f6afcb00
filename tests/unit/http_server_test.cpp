// Drives the Beast server over real loopback sockets with a plain POSIX client, so that Beast
// is compiled only in the server's translation unit.
#include <opendsr/http_server.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
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
#include <span>
#include <string>
#include <thread>
#include <unordered_map>

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

// A blocking HTTP/1.1 client on one loopback connection. A receive_buffer (bytes) other than 0
// caps the socket's receive buffer, so that a server writing faster than the client reads is held
// back by TCP within a small bound.
class client {
 public:
  explicit client(std::uint16_t port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{static_cast<time_t>(bound.count()), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
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

  // Reads one response (with no body if it answers a HEAD request); nullopt if the connection
  // ended or the bound passed first.
  std::optional<parsed_response> read_response(bool to_head = false) {
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
    std::size_t length = to_head ? 0 : std::stoul(std::string(r.headers.get("Content-Length").value_or("0")));
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

  // Bytes received on the connection so far; safe to read from any thread.
  const std::atomic<std::uint64_t>& received() const { return received_; }

 private:
  bool fill() {
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    received_ += static_cast<std::uint64_t>(n);
    return true;
  }

  int fd_;
  bool connected_ = false;
  std::string buffer_;
  std::atomic<std::uint64_t> received_{0};
};

// The byte at `offset` of a streamed test body: a pattern that a chunk sent twice, skipped or out
// of order would break.
char pattern_byte(std::uint64_t offset) {
  return static_cast<char>(((offset ^ (offset >> 8) ^ (offset >> 16)) * 31 + 7) & 0xff);
}

std::string pattern(std::uint64_t size) {
  std::string s(size, '\0');
  for (std::uint64_t i = 0; i < size; ++i) s[i] = pattern_byte(i);
  return s;
}

constexpr std::uint64_t mib = 1024 * 1024;

// A streamed body of the pattern. It may fail, or end early, once `stop_at` bytes were read; it
// records how the server reads it, and how far its reads ran ahead of what `client` received.
class pattern_reader final : public http_body_reader {
 public:
  enum class ending { complete, error_at, end_at };

  explicit pattern_reader(std::uint64_t size, ending e = ending::complete, std::uint64_t stop_at = 0)
      : size_(size), ending_(e), stop_at_(e == ending::complete ? size : stop_at) {}

  std::uint64_t size() const noexcept override { return size_; }

  result<std::size_t> read(std::span<char> buffer) override {
    ++reads_;
    largest_request_ = std::max<std::uint64_t>(largest_request_, buffer.size());
    const std::uint64_t at = produced_;
    if (at >= stop_at_) {
      if (ending_ == ending::error_at) return error(errc::internal, "the package file could not be read");
      return std::size_t{0};
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), stop_at_ - at));
    for (std::size_t i = 0; i < n; ++i) buffer[i] = pattern_byte(at + i);
    produced_ = at + n;
    if (client_) lead_ = std::max<std::uint64_t>(lead_, produced_ - std::min<std::uint64_t>(produced_, client_->load()));
    return n;
  }

  // Measures the lead of the reads over what this counter says the client received.
  void watch(const std::atomic<std::uint64_t>& client_received) { client_ = &client_received; }

  std::uint64_t reads() const { return reads_; }
  std::uint64_t produced() const { return produced_; }
  std::uint64_t largest_request() const { return largest_request_; }
  std::uint64_t lead() const { return lead_; }

 private:
  const std::uint64_t size_;
  const ending ending_;
  const std::uint64_t stop_at_;
  const std::atomic<std::uint64_t>* client_ = nullptr;
  std::atomic<std::uint64_t> reads_{0}, produced_{0}, largest_request_{0}, lead_{0};
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
  // Answers requests for `target` with a response streamed from `body`.
  void stream(std::string target, std::shared_ptr<http_body_reader> body) {
    std::lock_guard lock(mutex_);
    streams_[std::move(target)] = std::move(body);
  }

  http_head_decision on_head(const http_request& head) override {
    {
      std::lock_guard lock(mutex_);
      if (auto it = streams_.find(head.target); it != streams_.end()) {
        http_response r{200, {}, {}, it->second};
        r.headers.set("Content-Type", "application/zip");
        return r;
      }
    }
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
  std::unordered_map<std::string, std::shared_ptr<http_body_reader>> streams_;
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

TEST_F(HttpServer, StreamsABodyInChunksWithItsContentLengthAndKeepsTheConnection) {
  start();
  auto body = std::make_shared<pattern_reader>(20 * mib);
  handler_.stream("/package.zip", body);
  client c(port(), 128 * 1024);
  body->watch(c.received());
  ASSERT_TRUE(c.send(get("/package.zip")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers.get("Content-Length"), std::to_string(20 * mib));
  EXPECT_EQ(r->headers.get("Content-Type"), "application/zip");
  EXPECT_EQ(r->body.size(), 20 * mib);
  EXPECT_TRUE(r->body == pattern(20 * mib)) << "the streamed body differs from the pattern";
  // Read in chunks of 64 KiB at most, and never far ahead of the client: the server holds a chunk
  // and TCP's buffers (a 4 MiB send buffer at most), never the body.
  EXPECT_LE(body->largest_request(), 64u * 1024);
  EXPECT_GE(body->reads(), 20 * mib / (64 * 1024));
  EXPECT_LT(body->lead(), 6 * mib);
  ASSERT_TRUE(c.send(get("/after")));  // still kept alive
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
}

TEST_F(HttpServer, AnEmptyStreamedBodySendsContentLengthZero) {
  start();
  auto body = std::make_shared<pattern_reader>(0);
  handler_.stream("/empty.zip", body);
  client c(port());
  ASSERT_TRUE(c.send(get("/empty.zip") + get("/after")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers.get("Content-Length"), "0");
  EXPECT_EQ(r->body, "");
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
}

TEST_F(HttpServer, AHeadRequestGetsTheContentLengthOfAStreamedBodyWithoutItsBytes) {
  start();
  auto body = std::make_shared<pattern_reader>(20 * mib);
  handler_.stream("/package.zip", body);
  client c(port());
  ASSERT_TRUE(c.send("HEAD /package.zip HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto r = c.read_response(/*to_head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers.get("Content-Length"), std::to_string(20 * mib));
  ASSERT_TRUE(c.send(get("/after")));  // the next response follows the header at once
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
  EXPECT_EQ(body->reads(), 0u);
}

TEST_F(HttpServer, AHeadRequestGetsTheContentLengthOfABodyInMemoryWithoutItsBytes) {
  start();
  client c(port());
  ASSERT_TRUE(c.send("HEAD /head HTTP/1.1\r\nHost: localhost\r\n\r\n" + get("/after")));
  auto r = c.read_response(/*to_head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers.get("Content-Length"), std::to_string(std::string("HEAD /head ").size()));
  auto after = c.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
}

TEST_F(HttpServer, AStreamedBodyWhoseReaderFailsMidwayEndsTheConnectionShortOfContentLength) {
  start();
  handler_.stream("/failing.zip", std::make_shared<pattern_reader>(20 * mib, pattern_reader::ending::error_at, 1 * mib + 100));
  client c(port());
  ASSERT_TRUE(c.send(get("/failing.zip")));
  EXPECT_FALSE(c.read_response());  // the connection ended before Content-Length bytes
  EXPECT_TRUE(c.closed_by_server());
  const std::string& received = c.pending();  // the body's bytes, after the header
  EXPECT_EQ(received.size(), 1 * mib + 100);  // every byte read was sent, and no other
  EXPECT_TRUE(received == pattern(received.size()));
}

TEST_F(HttpServer, AStreamedBodyThatEndsEarlyEndsTheConnectionShortOfContentLength) {
  start();
  handler_.stream("/short.zip", std::make_shared<pattern_reader>(1 * mib, pattern_reader::ending::end_at, 100'000));
  client c(port());
  ASSERT_TRUE(c.send(get("/short.zip")));
  EXPECT_FALSE(c.read_response());
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(c.pending() == pattern(100'000));  // the body's bytes, after the header
}

TEST_F(HttpServer, AResponseWithBothABodyAndAStreamAnswers500) {
  start();
  class both final : public http_handler {
    http_head_decision on_head(const http_request&) override {
      return http_response{200, {}, "in memory", std::make_shared<pattern_reader>(10)};
    }
    http_response on_error(const error&) override { return {}; }
  } h;
  auto s = http_server::start(h, {.port = 0});
  ASSERT_TRUE(s);
  client c((*s)->port());
  ASSERT_TRUE(c.send(get("/")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->headers.get("Connection"), "close");
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

TEST_F(HttpsServer, StreamsABodyOverTlsAndKeepsTheConnection) {
  auto body = std::make_shared<pattern_reader>(20 * mib);
  handler_.stream("/package.zip", body);
  const std::string file = (dir_ / "package.zip").string();
  std::string out = curl("-o " + file + " " + url("/package.zip") + " " + url("/after"));
  EXPECT_EQ(out, "GET /after ") << verbose_log();
  std::string received = read_file(file);
  EXPECT_EQ(received.size(), 20 * mib);
  EXPECT_TRUE(received == pattern(20 * mib)) << "the streamed body differs from the pattern";
  EXPECT_NE(verbose_log().find("Content-Length: " + std::to_string(20 * mib)), std::string::npos) << verbose_log();
  EXPECT_NE(verbose_log().find("Re-using existing connection"), std::string::npos) << verbose_log();
  EXPECT_LE(body->largest_request(), 64u * 1024);
}

TEST_F(HttpsServer, AStreamedBodyWhoseReaderFailsOverTlsEndsShortOfContentLength) {
  handler_.stream("/failing.zip", std::make_shared<pattern_reader>(20 * mib, pattern_reader::ending::error_at, 1 * mib));
  const std::string file = (dir_ / "failing.zip").string();
  curl("-o " + file + " " + url("/failing.zip"));
  std::string received = read_file(file);
  EXPECT_LT(received.size(), 20 * mib);
  EXPECT_TRUE(received == pattern(received.size()));
  EXPECT_NE(verbose_log().find("transfer closed with"), std::string::npos) << verbose_log();
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
