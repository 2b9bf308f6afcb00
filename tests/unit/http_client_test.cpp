// The Beast/OpenSSL http_client against real loopback receivers (tests/support): responses as
// they are, no redirects, timeouts, size caps, refused connections, concurrency, keep-alive,
// the per-origin cap, the outbound policy at intake and after resolution, and TLS verification
// against a Botan TLS server with certificates made by the openssl CLI.
#include <opendsr/asio_http_client.hpp>

#include "../support/loopback_receiver.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace opendsr {
namespace {

using namespace std::chrono_literals;
using testing::loopback_receiver;
using testing::scripted_response;

// Every wait is bounded by this; a healthy run never comes near it.
constexpr auto bound = 10s;

// Collects completions; waits for them with a bound.
class completions {
 public:
  http_client_completion callback() {
    return [this](result<http_client_response> r) {
      std::lock_guard lock(mutex_);
      results_.push_back(std::move(r));
      done_.notify_all();
    };
  }

  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = bound) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, timeout, [&] { return results_.size() >= count; });
  }

  std::size_t size() {
    std::lock_guard lock(mutex_);
    return results_.size();
  }

  std::vector<result<http_client_response>> take() {
    std::lock_guard lock(mutex_);
    return std::move(results_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<result<http_client_response>> results_;
};

asio_http_client_options loopback_http() {
  asio_http_client_options o;
  o.policy.allow_http = true;
  o.policy.allow_loopback = true;
  o.threads = 2;
  return o;
}

std::unique_ptr<http_client> make_client(asio_http_client_options o) {
  auto c = make_asio_http_client(std::move(o));
  EXPECT_TRUE(c) << c.error().message();
  return c ? std::move(*c) : nullptr;
}

std::unique_ptr<loopback_receiver> make_receiver(testing::loopback_receiver_options o = {}) {
  auto r = loopback_receiver::start(std::move(o));
  EXPECT_TRUE(r) << r.error().message();
  return r ? std::move(*r) : nullptr;
}

// Sends one request and waits (bounded) for its completion.
result<http_client_response> exchange(http_client& client, http_client_request request) {
  completions c;
  client.send(std::move(request), c.callback());
  if (!c.wait_for(1)) return error(errc::internal, "no completion within the test's bound");
  return std::move(c.take().front());
}

http_client_request post(std::string url, std::string body = "{}") {
  http_client_request r;
  r.url = std::move(url);
  r.body = std::move(body);
  r.headers.set("Content-Type", "application/json");
  return r;
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Polls `condition` until it holds or `timeout` passes; for state with no notification (the
// server's count of open connections).
template <class F>
bool eventually(F condition, std::chrono::milliseconds timeout = bound) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(HttpClient, ReturnsEachStatusWithItsHeadersAndBody) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  scripted_response ok{200, {}, R"({"ok":true})"};
  ok.headers.set("X-Reply", "yes");
  ok.headers.set("Content-Type", "application/json");
  receiver->respond("/cb", ok);
  receiver->respond("/cb", scripted_response{404, {}, "no such thing"});
  receiver->respond("/cb", scripted_response{503, {}, "later"});
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);

  auto first = exchange(*client, post(receiver->url("/cb?a=1&b=2"), R"({"status":"pending"})"));
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, R"({"ok":true})");
  EXPECT_EQ(first->headers.get("x-reply"), "yes");
  EXPECT_EQ(first->headers.get("Content-Type"), "application/json");

  auto second = exchange(*client, post(receiver->url("/cb")));
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(second->status, 404);
  EXPECT_EQ(second->body, "no such thing");

  auto third = exchange(*client, post(receiver->url("/cb")));
  ASSERT_TRUE(third) << third.error().message();
  EXPECT_EQ(third->status, 503);
  EXPECT_EQ(third->body, "later");

  // The default answer of an empty script.
  auto fourth = exchange(*client, post(receiver->url("/other")));
  ASSERT_TRUE(fourth) << fourth.error().message();
  EXPECT_EQ(fourth->status, 202);
  EXPECT_EQ(fourth->body, "");

  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].sequence, 1u);
  EXPECT_EQ(got[3].sequence, 4u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].target, "/cb?a=1&b=2");
  EXPECT_EQ(got[0].body, R"({"status":"pending"})");
  EXPECT_EQ(got[0].headers.get("Host"), "127.0.0.1:" + std::to_string(receiver->port()));
  EXPECT_EQ(got[0].headers.get("User-Agent"), "opendsr");
  EXPECT_EQ(got[0].headers.get("Content-Length"), "20");
  EXPECT_EQ(got[0].headers.get("Content-Type"), "application/json");
}

TEST(HttpClient, SendsTheMethodAndKeepsTheCallersHostAndUserAgent) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  http_client_request get;
  get.method = "GET";
  get.url = receiver->url("/");
  get.headers.set("User-Agent", "mine/1");
  get.headers.set("Host", "callbacks.example");
  get.headers.set("Content-Length", "999");  // replaced: the client frames the body itself
  auto r = exchange(*client, get);
  ASSERT_TRUE(r) << r.error().message();
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "GET");
  EXPECT_EQ(got[0].target, "/");
  EXPECT_EQ(got[0].headers.get("User-Agent"), "mine/1");
  EXPECT_EQ(got[0].headers.get("Host"), "callbacks.example");
  EXPECT_NE(got[0].headers.get("Content-Length"), "999");
}

TEST(HttpClient, DoesNotFollowRedirects) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  scripted_response moved{302, {}, {}};
  moved.headers.set("Location", receiver->url("/elsewhere"));
  receiver->respond("/cb", moved);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  auto r = exchange(*client, post(receiver->url("/cb")));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->headers.get("Location"), receiver->url("/elsewhere"));
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].target, "/cb");
}

TEST(HttpClient, AReceiverThatNeverAnswersTimesOut) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  receiver->respond("/cb", scripted_response::never());
  auto o = loopback_http();
  o.total_timeout = 300ms;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  const auto start = std::chrono::steady_clock::now();
  auto r = exchange(*client, post(receiver->url("/cb"), "SECRET-BODY"));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
  EXPECT_TRUE(contains(r.error().message(), "timed out")) << r.error().message();
  EXPECT_FALSE(contains(r.error().message(), "SECRET-BODY"));
  EXPECT_GE(took, 300ms);
  EXPECT_EQ(receiver->requests().size(), 1u);
}

TEST(HttpClient, AResponseOverMaxResponseBytesIsANetworkError) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  receiver->respond("/big", scripted_response{200, {}, std::string(4096, 'B') + "RESPONSE-BODY"});
  scripted_response big_header{200, {}, {}};
  big_header.headers.set("X-Padding", std::string(2048, 'h'));
  receiver->respond("/big-header", big_header);
  receiver->respond("/fits", scripted_response{200, {}, std::string(500, 'f')});
  auto o = loopback_http();
  o.max_response_bytes = 1024;
  auto client = make_client(o);
  ASSERT_TRUE(client);

  for (std::string path : {"/big", "/big-header"}) {
    auto r = exchange(*client, post(receiver->url(path)));
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error(), errc::network_error);
    EXPECT_TRUE(contains(r.error().message(), "larger than max_response_bytes")) << r.error().message();
    EXPECT_FALSE(contains(r.error().message(), "BBBB"));
    EXPECT_FALSE(contains(r.error().message(), "hhhh"));
  }
  auto fits = exchange(*client, post(receiver->url("/fits")));
  ASSERT_TRUE(fits) << fits.error().message();
  EXPECT_EQ(fits->body.size(), 500u);
}

TEST(HttpClient, AClosedPortIsANetworkError) {
  std::uint16_t port;
  {
    auto receiver = make_receiver();
    ASSERT_TRUE(receiver);
    port = receiver->port();
  }  // stopped: nothing listens there now
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://127.0.0.1:" + std::to_string(port) + "/cb"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
  EXPECT_TRUE(contains(r.error().message(), "could not connect")) << r.error().message();
  EXPECT_TRUE(contains(r.error().message(), "refused")) << r.error().message();
}

TEST(HttpClient, AConnectionThatIsNotAcceptedTimesOutAfterConnectTimeout) {
  // A listener whose accept queue is full: Linux drops further SYNs, so connecting hangs.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &length), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {  // a backlog of 0 still queues one; fill it
    fillers.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    ::connect(fillers.back(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  auto o = loopback_http();
  o.connect_timeout = 200ms;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/cb"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
  EXPECT_TRUE(contains(r.error().message(), "connecting to the destination timed out")) << r.error().message();
  for (int fd : fillers) ::close(fd);
  ::close(listener);
}

TEST(HttpClient, ManyConcurrentSendsAllComplete) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  constexpr std::size_t n = 200;
  completions c;
  std::vector<std::thread> senders;
  for (std::size_t t = 0; t < 4; ++t)
    senders.emplace_back([&, t] {
      for (std::size_t i = t; i < n; i += 4) client->send(post(receiver->url("/cb/" + std::to_string(i)), std::to_string(i)), c.callback());
    });
  for (auto& s : senders) s.join();
  ASSERT_TRUE(c.wait_for(n)) << c.size() << " of " << n;
  for (auto& r : c.take()) {
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->status, 202);
  }
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), n);
  std::vector<bool> seen(n);
  for (const auto& g : got) {
    const std::size_t i = std::stoul(g.body);
    EXPECT_EQ(g.target, "/cb/" + g.body);
    seen[i] = true;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), static_cast<long>(n));
  // Never more connections than the per-origin cap (8 by default).
  EXPECT_LE(receiver->open_connections(), 8u);
}

TEST(HttpClient, ReusesAKeptAliveConnectionAndClosesItWhenDestroyed) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  for (int i = 0; i < 5; ++i) {
    auto r = exchange(*client, post(receiver->url("/cb")));
    ASSERT_TRUE(r) << r.error().message();
  }
  EXPECT_EQ(receiver->requests().size(), 5u);
  EXPECT_EQ(receiver->open_connections(), 1u);  // one connection served all five
  client.reset();
  EXPECT_TRUE(eventually([&] { return receiver->open_connections() == 0; })) << "the client leaked a connection";
}

TEST(HttpClient, ClosesAnIdleConnectionAfterIdleTimeout) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto o = loopback_http();
  o.idle_timeout = 50ms;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  ASSERT_TRUE(exchange(*client, post(receiver->url("/cb"))));
  EXPECT_TRUE(eventually([&] { return receiver->open_connections() == 0; }));
  // And a later exchange opens a new one.
  auto r = exchange(*client, post(receiver->url("/cb")));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(receiver->requests().size(), 2u);
}

TEST(HttpClient, RetriesOnceOnANewConnectionWhenTheKeptAliveOneWasClosed) {
  testing::loopback_receiver_options ro;
  ro.idle_timeout = 50ms;  // the receiver closes idle connections long before the client would
  auto receiver = make_receiver(ro);
  ASSERT_TRUE(receiver);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  ASSERT_TRUE(exchange(*client, post(receiver->url("/cb"), "first")));
  ASSERT_TRUE(eventually([&] { return receiver->open_connections() == 0; }));
  // The client's pooled connection is now closed at the far end.
  auto r = exchange(*client, post(receiver->url("/cb"), "second"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 202);
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].body, "second");
}

TEST(HttpClient, UsesTheSystemResolver) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  // "localhost" may resolve to ::1 as well, where nothing listens: the client tries each
  // address that passed the policy.
  auto r = exchange(*client, post("http://localhost:" + std::to_string(receiver->port()) + "/cb"));
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(receiver->requests().size(), 1u);
  EXPECT_EQ(receiver->requests()[0].headers.get("Host"), "localhost:" + std::to_string(receiver->port()));
}

TEST(HttpClient, HonoursTheCapPerOrigin) {
  auto held = make_receiver();
  auto other = make_receiver();
  ASSERT_TRUE(held && other);
  held->respond("/hold", scripted_response::never());
  held->respond("/hold", scripted_response::never());
  auto o = loopback_http();
  o.max_connections_per_origin = 2;
  o.total_timeout = 2s;
  auto client = make_client(o);
  ASSERT_TRUE(client);

  // When the first held exchange ends, the receiver still has only the two held requests: the
  // third cannot have been sent while they held both slots. (When the second ends, the first's
  // slot may already have gone to the third.)
  std::atomic<std::size_t> seen_at_end_a{0}, seen_at_end_b{0};
  completions ends;
  for (auto* seen : {&seen_at_end_a, &seen_at_end_b})
    client->send(post(held->url("/hold")), [&, seen, cb = ends.callback()](result<http_client_response> r) {
      seen->store(held->requests().size());
      cb(std::move(r));
    });
  ASSERT_TRUE(held->wait_for(2, bound));
  completions third;
  client->send(post(held->url("/third")), third.callback());
  // Another origin is not held up by this one's cap.
  auto elsewhere = exchange(*client, post(other->url("/cb")));
  ASSERT_TRUE(elsewhere) << elsewhere.error().message();
  EXPECT_EQ(held->requests().size(), 2u);
  EXPECT_EQ(third.size(), 0u);

  ASSERT_TRUE(ends.wait_for(2));
  for (auto& r : ends.take()) {
    ASSERT_FALSE(r);
    EXPECT_TRUE(contains(r.error().message(), "timed out")) << r.error().message();
  }
  EXPECT_EQ(std::min(seen_at_end_a.load(), seen_at_end_b.load()), 2u);
  EXPECT_LE(std::max(seen_at_end_a.load(), seen_at_end_b.load()), 3u);
  ASSERT_TRUE(third.wait_for(1));  // sent once a slot freed, or timed out in the queue
}

TEST(HttpClient, QueuedExchangesRunInOrder) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto o = loopback_http();
  o.max_connections_per_origin = 1;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  completions c;
  for (int i = 0; i < 20; ++i) client->send(post(receiver->url("/q"), std::to_string(i)), c.callback());
  ASSERT_TRUE(c.wait_for(20));
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)].body, std::to_string(i));
}

TEST(HttpClient, HttpIsRefusedUnlessAllowed) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto o = loopback_http();
  o.policy.allow_http = false;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post(receiver->url("/cb")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  EXPECT_TRUE(contains(r.error().message(), "https only")) << r.error().message();
  EXPECT_TRUE(receiver->requests().empty());
  EXPECT_EQ(receiver->open_connections(), 0u);
}

TEST(HttpClient, ALoopbackAddressIsRefusedAfterResolvingAName) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto o = loopback_http();
  o.policy.allow_loopback = false;
  std::atomic<int> lookups{0};
  o.resolve = [&](const std::string& host) -> result<std::vector<ip_address>> {
    ++lookups;
    if (host != "callbacks.test") return error(errc::network_error, "unknown name");
    return std::vector<ip_address>{*parse_ip_address("127.0.0.1")};
  };
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://callbacks.test:" + std::to_string(receiver->port()) + "/cb"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  EXPECT_TRUE(contains(r.error().message(), "loopback")) << r.error().message();
  EXPECT_FALSE(contains(r.error().message(), "callbacks.test"));
  EXPECT_EQ(lookups.load(), 1);
  EXPECT_TRUE(receiver->requests().empty());
  EXPECT_EQ(receiver->open_connections(), 0u);
}

TEST(HttpClient, ConnectsOnlyToTheResolvedAddressesThatPass) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  auto o = loopback_http();
  // Loopback allowed, metadata not: the name resolves to both; only loopback is tried.
  o.resolve = [](const std::string&) -> result<std::vector<ip_address>> {
    return std::vector<ip_address>{*parse_ip_address("169.254.169.254"), *parse_ip_address("127.0.0.1")};
  };
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://callbacks.test:" + std::to_string(receiver->port()) + "/cb"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(receiver->requests().size(), 1u);
}

TEST(HttpClient, AHostTheResolverRefusesIsRefusedNotRetried) {
  auto o = loopback_http();
  o.resolve = [](const std::string&) -> result<std::vector<ip_address>> {
    return error(errc::destination_refused, "delivery is limited to this machine");
  };
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://partner.example.com/scrub"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  EXPECT_EQ(r.error().message(), "delivery is limited to this machine");
}

TEST(HttpClient, AFailedLookupIsANetworkError) {
  auto o = loopback_http();
  o.resolve = [](const std::string&) -> result<std::vector<ip_address>> {
    return error(errc::network_error, "no such name");
  };
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post("http://nowhere.test/cb"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
  EXPECT_TRUE(contains(r.error().message(), "could not resolve")) << r.error().message();

  o.resolve = [](const std::string&) -> result<std::vector<ip_address>> { return std::vector<ip_address>{}; };
  client = make_client(o);
  ASSERT_TRUE(client);
  r = exchange(*client, post("http://nowhere.test/cb"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
}

TEST(HttpClient, RefusesBadRequestsWithoutCallingBackInsideSend) {
  auto client = make_client(loopback_http());
  ASSERT_TRUE(client);
  for (auto request : {post("ftp://example.com/"), post("http://user@127.0.0.1/")}) {
    std::atomic<std::thread::id> called_on{};
    completions c;
    client->send(request, [&, cb = c.callback()](result<http_client_response> r) {
      called_on = std::this_thread::get_id();
      cb(std::move(r));
    });
    ASSERT_TRUE(c.wait_for(1));
    auto r = std::move(c.take().front());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(called_on.load(), std::this_thread::get_id()) << "done ran inside send()";
  }
  http_client_request injected = post("http://127.0.0.1:9/");
  injected.headers.set("X-Evil", "a\r\nX-Injected: 1");
  auto r = exchange(*client, injected);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
}

TEST(HttpClient, DestroyingTheClientCompletesEveryPendingExchange) {
  auto receiver = make_receiver();
  ASSERT_TRUE(receiver);
  for (int i = 0; i < 3; ++i) receiver->respond("/hold", scripted_response::never());
  auto o = loopback_http();
  o.max_connections_per_origin = 2;  // two in flight, one queued
  auto client = make_client(o);
  ASSERT_TRUE(client);
  completions c;
  for (int i = 0; i < 3; ++i) client->send(post(receiver->url("/hold")), c.callback());
  ASSERT_TRUE(receiver->wait_for(2, bound));
  client.reset();
  EXPECT_EQ(c.size(), 3u);  // before the destructor returned
  for (auto& r : c.take()) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::network_error);
    EXPECT_EQ(r.error().message(), "client stopped");
  }
}

TEST(HttpClient, ValidatesItsOptions) {
  auto o = loopback_http();
  o.threads = 0;
  auto c = make_asio_http_client(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), errc::invalid_argument);
  EXPECT_TRUE(contains(c.error().message(), "threads"));

  o = loopback_http();
  o.max_connections_per_origin = 0;
  c = make_asio_http_client(o);
  ASSERT_FALSE(c);
  EXPECT_TRUE(contains(c.error().message(), "max_connections_per_origin"));

#if OPENDSR_ASIO_OPENSSL
  o = loopback_http();
  o.ca_file = "/nonexistent/ca.pem";
  c = make_asio_http_client(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), errc::invalid_argument);
  EXPECT_TRUE(contains(c.error().message(), "ca_file"));

  const auto empty = std::filesystem::temp_directory_path() / ("opendsr-empty-ca-" + std::to_string(::getpid()) + ".pem");
  std::ofstream(empty) << "not a certificate\n";
  o.ca_file = empty.string();
  c = make_asio_http_client(o);
  std::filesystem::remove(empty);
  ASSERT_FALSE(c);
  EXPECT_TRUE(contains(c.error().message(), "ca_file"));
#endif
}

#if OPENDSR_ASIO_TLS && OPENDSR_ASIO_OPENSSL

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A test CA, a second CA that signs nothing we serve, and leaves made with the openssl CLI.
class HttpClientTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / ("opendsr-http-client-tls-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string d = dir_.string();
    const std::string key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ";
    auto ca = [&](const std::string& name) {
      return key + d + "/" + name + ".key && openssl req -x509 -new -key " + d + "/" + name + ".key -subj /CN=" + name +
             " -days 2 -out " + d + "/" + name + ".pem -addext basicConstraints=critical,CA:TRUE"
             " -addext keyUsage=critical,keyCertSign,cRLSign";
    };
    auto leaf = [&](const std::string& name, const std::string& san) {
      return key + d + "/" + name + ".key && openssl req -new -key " + d + "/" + name + ".key -subj /CN=" + name +
             " -out " + d + "/" + name + ".csr && printf 'subjectAltName=" + san +
             "\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > " + d + "/" + name +
             ".ext && openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.pem -CAkey " + d +
             "/ca.key -set_serial 0x" + std::to_string(name.size()) + "01 -days 2 -extfile " + d + "/" + name +
             ".ext -out " + d + "/" + name + ".pem";
    };
    const std::string script = "(" + ca("ca") + " && " + ca("other-ca") + " && " +
                               leaf("leaf", "IP:127.0.0.1,DNS:localhost") + " && " +
                               leaf("other", "DNS:other.test") + ") >" + d + "/log 2>&1";
    made_ = std::system(script.c_str()) == 0;
  }

  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  void SetUp() override {
    if (!made_) GTEST_FAIL() << "the openssl CLI could not make the test certificates (see " << (dir_ / "log") << ")";
  }

  static std::unique_ptr<loopback_receiver> serve(const std::string& leaf) {
    testing::loopback_receiver_options o;
    o.tls = http_server_tls{read_file(dir_ / (leaf + ".pem")), read_file(dir_ / (leaf + ".key"))};
    return make_receiver(std::move(o));
  }

  static asio_http_client_options trusting(const std::string& ca) {
    asio_http_client_options o;
    o.policy.allow_loopback = true;  // https only
    o.use_system_trust = false;
    o.ca_file = (dir_ / (ca + ".pem")).string();
    o.resolve = [](const std::string&) -> result<std::vector<ip_address>> {
      return std::vector<ip_address>{*parse_ip_address("127.0.0.1")};
    };
    return o;
  }

  static std::string at(const std::string& host, const loopback_receiver& r) {
    return "https://" + host + ":" + std::to_string(r.port()) + "/cb";
  }

  static inline std::filesystem::path dir_;
  static inline bool made_ = false;
};

TEST_F(HttpClientTls, AcceptsALeafFromTheConfiguredCa) {
  auto receiver = serve("leaf");
  ASSERT_TRUE(receiver);
  receiver->respond("/cb", scripted_response{200, {}, "over tls"});
  auto client = make_client(trusting("ca"));
  ASSERT_TRUE(client);
  auto r = exchange(*client, post(receiver->url("/cb"), "{\"tls\":true}"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "over tls");
  // By name too (SAN DNS:localhost), and on the kept-alive connection.
  auto by_name = exchange(*client, post(at("localhost", *receiver)));
  ASSERT_TRUE(by_name) << by_name.error().message();
  auto got = receiver->requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "{\"tls\":true}");
}

TEST_F(HttpClientTls, RefusesALeafFromAnUntrustedCa) {
  auto receiver = serve("leaf");
  ASSERT_TRUE(receiver);
  for (auto o : {trusting("other-ca"), [] {
                   auto system = trusting("ca");
                   system.ca_file.clear();
                   system.use_system_trust = true;  // our test CA is not in the system's store
                   return system;
                 }()}) {
    auto client = make_client(o);
    ASSERT_TRUE(client);
    auto r = exchange(*client, post(receiver->url("/cb")));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::network_error);
    EXPECT_TRUE(contains(r.error().message(), "certificate verify failed")) << r.error().message();
  }
  EXPECT_TRUE(receiver->requests().empty());
}

TEST_F(HttpClientTls, RefusesALeafForAnotherName) {
  auto other = serve("other");  // issued to other.test, served at 127.0.0.1
  ASSERT_TRUE(other);
  auto client = make_client(trusting("ca"));
  ASSERT_TRUE(client);
  auto r = exchange(*client, post(other->url("/cb")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::network_error);
  EXPECT_TRUE(contains(r.error().message(), "certificate verify failed")) << r.error().message();
  EXPECT_TRUE(contains(r.error().message(), "IP address mismatch")) << r.error().message();

  // A name the leaf does not carry, resolved to the right address.
  auto leaf = serve("leaf");
  ASSERT_TRUE(leaf);
  r = exchange(*client, post(at("callbacks.test", *leaf)));
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message(), "hostname mismatch")) << r.error().message();
  EXPECT_TRUE(other->requests().empty());
  EXPECT_TRUE(leaf->requests().empty());
}

TEST_F(HttpClientTls, HttpsIsStillSubjectToThePolicy) {
  auto receiver = serve("leaf");
  ASSERT_TRUE(receiver);
  auto o = trusting("ca");
  o.policy.allow_loopback = false;
  auto client = make_client(o);
  ASSERT_TRUE(client);
  auto r = exchange(*client, post(receiver->url("/cb")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  r = exchange(*client, post(at("callbacks.test", *receiver)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::destination_refused);
  EXPECT_TRUE(receiver->requests().empty());
}

#endif  // OPENDSR_ASIO_TLS && OPENDSR_ASIO_OPENSSL

}  // namespace
}  // namespace opendsr
