// The Beast HTTP/1.1 client, with TLS through Asio's OpenSSL stream. All of Beast stays in this
// translation unit.
//
// Pieces and who touches what:
// - exchange: one send(). Its `done` is called once, by whoever first sets `finished` (the
//   connection on success or failure, the total-timeout timer, or the destructor).
// - connection: one TCP (or TLS) connection; every member is touched only on its strand. It runs
//   one exchange at a time: resolve, check, connect, handshake, write, read.
// - origin: per (scheme, host, port), under the client's mutex: how many exchanges hold a slot,
//   the FIFO of exchanges waiting for one, and the kept-alive idle connections.
// A slot is taken when an exchange starts and given back (to the next waiting exchange, or
// dropped) when its connection is done with it; so at most max_connections_per_origin
// connections to an origin exist at once, idle ones included.
#include <opendsr/asio_http_client.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#if OPENDSR_ASIO_OPENSSL
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace opendsr {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;

error network(std::string message) { return error(errc::network_error, std::move(message)); }

class client_impl;
class connection;

struct exchange {
  http_client_request request;
  url_parts url;
  std::string origin;
  clock_type::time_point deadline;
  http_client_completion done;
  std::atomic<bool> finished{false};
  std::weak_ptr<connection> conn;     // guarded by the client's mutex
  std::optional<net::steady_timer> timer;  // the total timeout; armed once, in send()

  // Calls `done` iff no one did before. Returns whether this call did.
  bool finish(result<http_client_response> r) {
    if (finished.exchange(true, std::memory_order_acq_rel)) return false;
    http_client_completion d = std::move(done);
    done = nullptr;
    if (d) d(std::move(r));
    return true;
  }
  bool is_finished() const { return finished.load(std::memory_order_acquire); }
};

struct origin_state {
  std::size_t active = 0;  // exchanges holding a slot
  std::deque<std::shared_ptr<exchange>> waiting;
  std::vector<std::shared_ptr<connection>> idle;  // most recently used last
};

std::string host_header(const url_parts& u) {
  const bool v6 = u.host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + u.host + "]" : u.host;
  if (u.port != (u.https ? 443 : 80)) h += ":" + std::to_string(u.port);
  return h;
}

bool has_line_break(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

net::ip::address to_asio(const ip_address& a) {
  if (!a.v6) return net::ip::address_v4(net::ip::address_v4::bytes_type{a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]});
  net::ip::address_v6::bytes_type b;
  std::copy(a.bytes.begin(), a.bytes.end(), b.begin());
  return net::ip::address_v6(b);
}

ip_address from_asio(const net::ip::address& a) {
  ip_address out;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  } else {
    out.v6 = true;
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  }
  return out;
}

// A stale kept-alive connection: the server closed it while it was idle.
bool is_closed_by_peer(const beast::error_code& ec) {
  return ec == net::error::eof || ec == http::error::end_of_stream || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe
#if OPENDSR_ASIO_OPENSSL
         || ec == net::ssl::error::stream_truncated
#endif
      ;
}

class client_impl final : public http_client {
 public:
  explicit client_impl(asio_http_client_options options);
  ~client_impl() override;

  result<void> init();
  void send(http_client_request request, http_client_completion done) override;

  // Called by a connection, on its strand, once it is done with its exchange.
  void release(const std::shared_ptr<connection>& c, bool reusable);
  // Runs `ex` on a new connection in place of `stale` (a kept-alive connection found closed).
  void retry_on_new_connection(const std::shared_ptr<exchange>& ex);
  // Called by an idle connection's timer, on its strand.
  void idle_expired(const std::shared_ptr<connection>& c, std::uint64_t generation);

  const asio_http_client_options& options() const { return options_; }
  net::io_context& ioc() { return ioc_; }
#if OPENDSR_ASIO_OPENSSL
  net::ssl::context& tls() { return *tls_; }
#endif

 private:
  // Parses and checks the URL (filling ex.url and ex.origin), the method and the header fields.
  result<void> validate(exchange& ex) const;
  void start(const std::shared_ptr<exchange>& ex, std::shared_ptr<connection> c);
  void forget(exchange* ex);
  void complete_all_stopped();

  asio_http_client_options options_;
#if OPENDSR_ASIO_OPENSSL
  std::optional<net::ssl::context> tls_;  // outlives ioc_, whose handlers may hold TLS streams
#endif
  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;

  std::mutex mutex_;  // guards everything below, and exchange::conn
  bool stopped_ = false;
  std::map<std::string, origin_state> origins_;
  std::unordered_map<exchange*, std::shared_ptr<exchange>> live_;  // sent and not yet finished
  std::uint64_t idle_generation_ = 0;

  friend class connection;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(client_impl& client, const url_parts& url, std::string origin)
      : client_(client),
        strand_(net::make_strand(client.ioc())),
        url_(url),
        origin_(std::move(origin)),
        resolver_(strand_),
        idle_timer_(strand_) {
#if OPENDSR_ASIO_OPENSSL
    if (url.https)
      tls_.emplace(strand_, client.tls());
    else
#endif
      tcp_.emplace(strand_);  // also for https without TLS support, which fails in run()
  }

  const std::string& origin() const { return origin_; }
  net::strand<net::io_context::executor_type>& strand() { return strand_; }

  // The generation of the connection's current idle period; guarded by the client's mutex.
  std::uint64_t idle_generation = 0;

  // On the strand: runs one exchange.
  void run(std::shared_ptr<exchange> ex) {
    ex_ = std::move(ex);
    idle_timer_.cancel();
    if (ex_->is_finished()) return abandon(connected_);  // timed out in the queue
    if (connected_) return write();
#if !OPENDSR_ASIO_OPENSSL
    if (url_.https) return fail(network("https is not available: the client was built without TLS"));
#endif
    resolve();
  }

  // On the strand: the exchange's total timeout expired (its `done` was already called).
  void abort(const exchange* ex) {
    if (ex_.get() != ex) return;
    resolver_.cancel();
    close();
  }

  // On the strand: wait for reuse; the connection closes after idle_timeout unless reused.
  void wait_idle(std::uint64_t generation) {
    idle_timer_.expires_after(client_.options().idle_timeout);
    idle_timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      if (!ec) self->client_.idle_expired(self, generation);
    });
  }

  // On the strand.
  void close() {
    beast::error_code ignored;
    idle_timer_.cancel();
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close();
    connected_ = false;
  }

 private:
  beast::tcp_stream& lowest() {
#if OPENDSR_ASIO_OPENSSL
    if (tls_) return beast::get_lowest_layer(*tls_);
#endif
    return *tcp_;
  }

  template <class F>
  void with_stream(F&& f) {
#if OPENDSR_ASIO_OPENSSL
    if (tls_) return f(*tls_);
#endif
    f(*tcp_);
  }

  // Sets the I/O deadline to the exchange's, or to `limit` from now if that is sooner.
  void expire(std::optional<std::chrono::milliseconds> limit = std::nullopt) {
    auto at = ex_->deadline;
    if (limit) at = std::min(at, clock_type::now() + *limit);
    lowest().expires_at(at);
  }

  void resolve() {
    if (auto literal = parse_ip_address(url_.host)) return on_resolved({*literal});
    if (client_.options().resolve) {
      auto r = client_.options().resolve(url_.host);
      if (!r && r.error() == errc::destination_refused) return fail(std::move(r).error());  // refused by policy
      if (!r) return fail(network("could not resolve the destination host: " + r.error().message()));
      return on_resolved(std::move(*r));
    }
    resolver_.async_resolve(url_.host, std::to_string(url_.port), tcp::resolver::numeric_service,
                            [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
                              if (self->ex_->is_finished()) return self->abandon(false);
                              if (ec) return self->fail(network("could not resolve the destination host: " + ec.message()));
                              std::vector<ip_address> addresses;
                              for (const auto& entry : results) addresses.push_back(from_asio(entry.endpoint().address()));
                              self->on_resolved(std::move(addresses));
                            });
  }

  // Connects only to the addresses the policy allows, by endpoint: nothing is looked up again.
  void on_resolved(std::vector<ip_address> addresses) {
    std::vector<tcp::endpoint> endpoints;
    std::optional<error> refusal;
    for (const auto& a : addresses) {
      auto allowed = check_address(client_.options().policy, a);
      if (allowed)
        endpoints.emplace_back(to_asio(a), url_.port);
      else if (!refusal)
        refusal = std::move(allowed).error();
    }
    if (endpoints.empty()) {
      if (refusal) return fail(std::move(*refusal));
      return fail(network("could not resolve the destination host: it has no address"));
    }
#if OPENDSR_ASIO_OPENSSL
    if (tls_) {
      if (auto r = prepare_tls(); !r) return fail(std::move(r).error());
    }
#endif
    expire(client_.options().connect_timeout);
    lowest().async_connect(endpoints, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      self->on_connect(ec);
    });
  }

  void on_connect(beast::error_code ec) {
    if (ex_->is_finished()) return abandon(false);
    if (ec == beast::error::timeout) return fail(network(clock_type::now() >= ex_->deadline
                                                             ? "the exchange with the destination timed out"
                                                             : "connecting to the destination timed out"));
    if (ec) return fail(network("could not connect to the destination: " + ec.message()));
#if OPENDSR_ASIO_OPENSSL
    if (tls_) {
      expire();
      return tls_->async_handshake(net::ssl::stream_base::client,
                                   [self = shared_from_this()](beast::error_code hec) { self->on_handshake(hec); });
    }
#endif
    connected_ = true;
    write();
  }

#if OPENDSR_ASIO_OPENSSL
  // SNI and the name the certificate must carry (an IP address for an IP literal).
  result<void> prepare_tls() {
    SSL* ssl = tls_->native_handle();
    std::string name = url_.host;
    if (!name.empty() && name.back() == '.') name.pop_back();
    if (parse_ip_address(name)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1)
        return error(errc::internal, "could not set the TLS peer address to verify");
    } else {
      if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return network("could not set the TLS server name (SNI)");
      if (SSL_set1_host(ssl, name.c_str()) != 1) return error(errc::internal, "could not set the TLS peer name to verify");
    }
    return {};
  }

  void on_handshake(beast::error_code ec) {
    if (ex_->is_finished()) return abandon(false);
    if (ec == beast::error::timeout) return fail(network("the exchange with the destination timed out (during the TLS handshake)"));
    if (ec) {
      const long verify = SSL_get_verify_result(tls_->native_handle());
      if (verify != X509_V_OK)
        return fail(network(std::string("TLS handshake with the destination failed: certificate verify failed: ") +
                            X509_verify_cert_error_string(verify)));
      return fail(network("TLS handshake with the destination failed: " + ec.message()));
    }
    connected_ = true;
    write();
  }
#endif

  void write() {
    request_ = {};
    request_.version(11);
    const http_client_request& r = ex_->request;
    const http::verb verb = http::string_to_verb(r.method);
    if (verb == http::verb::unknown)
      request_.method_string(r.method);
    else
      request_.method(verb);
    request_.target(ex_->url.target);  // url_ is the origin's; the target is this exchange's
    for (const auto& [name, value] : r.headers) {
      if (iequals_ascii(name, "content-length") || iequals_ascii(name, "transfer-encoding")) continue;
      request_.insert(name, value);
    }
    if (r.headers.get("host") == std::nullopt) request_.set(http::field::host, host_header(url_));
    if (r.headers.get("user-agent") == std::nullopt) request_.set(http::field::user_agent, client_.options().user_agent);
    request_.body() = r.body;
    request_.prepare_payload();
    if (!r.body.empty() || verb == http::verb::post || verb == http::verb::put || verb == http::verb::patch)
      request_.content_length(r.body.size());

    expire();
    with_stream([&](auto& stream) {
      http::async_write(stream, request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->on_write(ec);
      });
    });
  }

  static bool iequals_ascii(std::string_view a, std::string_view b) { return beast::iequals(a, b); }

  void on_write(beast::error_code ec) {
    if (ex_->is_finished()) return abandon(false);
    if (ec) {
      if (served_ > 0 && is_closed_by_peer(ec)) return retry();
      return fail(io_error("writing the request", ec));
    }
    const std::size_t max = client_.options().max_response_bytes;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(max, UINT32_MAX)));
    parser_->body_limit(max);
    if (ex_->request.method == "HEAD") parser_->skip(true);
    with_stream([&](auto& stream) {
      http::async_read_header(stream, buffer_, *parser_, [self = shared_from_this()](beast::error_code rec, std::size_t n) {
        self->on_header(rec, n);
      });
    });
  }

  void on_header(beast::error_code ec, std::size_t header_bytes) {
    if (ex_->is_finished()) return abandon(false);
    if (ec) {
      if (served_ > 0 && header_bytes == 0 && buffer_.size() == 0 && is_closed_by_peer(ec)) return retry();
      return fail(io_error("reading the response", ec));
    }
    parser_->body_limit(client_.options().max_response_bytes - std::min(header_bytes, client_.options().max_response_bytes));
    with_stream([&](auto& stream) {
      http::async_read(stream, buffer_, *parser_, [self = shared_from_this()](beast::error_code rec, std::size_t) {
        self->on_body(rec);
      });
    });
  }

  void on_body(beast::error_code ec) {
    if (ex_->is_finished()) return abandon(false);
    if (ec) return fail(io_error("reading the response", ec));
    auto message = parser_->release();
    http_client_response response;
    response.status = static_cast<int>(message.result_int());
    for (const auto& field : message) response.headers.add(std::string(field.name_string()), std::string(field.value()));
    response.body = std::move(message.body());
    const bool reusable = message.keep_alive() && buffer_.size() == 0;
    ++served_;
    parser_.reset();
    std::shared_ptr<exchange> ex = std::move(ex_);
    if (!reusable) close();
    // Back in the pool before `done` runs, so that a request sent from (or right after) `done`
    // finds it. If the total timeout won the race, the response was still read whole and the
    // connection is clean (its abort, queued behind us, finds another exchange and does nothing).
    client_.release(shared_from_this(), reusable);
    ex->finish(std::move(response));
  }

  // Names what failed, never what was sent or received.
  error io_error(std::string_view doing, const beast::error_code& ec) {
    if (ec == beast::error::timeout) return network("the exchange with the destination timed out");
    if (ec == http::error::header_limit || ec == http::error::body_limit || ec == http::error::buffer_overflow)
      return network("the response is larger than max_response_bytes (" +
                     std::to_string(client_.options().max_response_bytes) + " bytes)");
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == http::error::partial_message)
      return network("the destination closed the connection before the response was complete");
    if (ec.category() == http::make_error_code(http::error::bad_method).category())
      return network("the response is malformed: " + ec.message());
    return network(std::string(doing) + " failed: " + ec.message());
  }

  void fail(error e) {
    std::shared_ptr<exchange> ex = std::move(ex_);
    close();
    ex->finish(std::move(e));
    client_.release(shared_from_this(), false);
  }

  // The exchange already ended (timed out, or the client stopped): give back its slot.
  void abandon(bool reusable) {
    ex_.reset();
    if (!reusable) close();
    client_.release(shared_from_this(), reusable);
  }

  void retry() {
    std::shared_ptr<exchange> ex = std::move(ex_);
    close();
    client_.retry_on_new_connection(ex);
  }

  client_impl& client_;
  net::strand<net::io_context::executor_type> strand_;
  url_parts url_;
  std::string origin_;
  tcp::resolver resolver_;
  net::steady_timer idle_timer_;
  std::optional<beast::tcp_stream> tcp_;
#if OPENDSR_ASIO_OPENSSL
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
#endif
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::shared_ptr<exchange> ex_;
  bool connected_ = false;
  std::size_t served_ = 0;  // exchanges completed on this connection
};

client_impl::client_impl(asio_http_client_options options)
    : options_(std::move(options)), ioc_(static_cast<int>(options_.threads)), work_(net::make_work_guard(ioc_)) {}

result<void> client_impl::init() {
  if (options_.threads < 1) return error(errc::invalid_argument, "asio_http_client_options.threads must be at least 1");
  if (options_.max_connections_per_origin < 1)
    return error(errc::invalid_argument, "asio_http_client_options.max_connections_per_origin must be at least 1");
  if (options_.max_response_bytes < 1)
    return error(errc::invalid_argument, "asio_http_client_options.max_response_bytes must be at least 1");
  if (options_.connect_timeout.count() <= 0 || options_.total_timeout.count() <= 0 || options_.idle_timeout.count() <= 0)
    return error(errc::invalid_argument, "asio_http_client_options: every timeout must be positive");
#if OPENDSR_ASIO_OPENSSL
  tls_.emplace(net::ssl::context::tls_client);
  SSL_CTX* ctx = tls_->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
    return error(errc::internal, "could not require TLS 1.2 or later");
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (options_.use_system_trust) SSL_CTX_set_default_verify_paths(ctx);  // a system without a store trusts nothing
  if (!options_.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, options_.ca_file.c_str(), nullptr) != 1)
    return error(errc::invalid_argument, "asio_http_client_options.ca_file cannot be read or holds no PEM certificate");
#endif
  threads_.reserve(options_.threads);
  for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  return {};
}

client_impl::~client_impl() {
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
  }
  complete_all_stopped();
  ioc_.stop();
  for (auto& t : threads_) t.join();
  complete_all_stopped();  // anything a `done` sent while the threads wound down
  // Sockets are closed as their connections go: the idle ones here, the rest with the handlers
  // that hold them, when ioc_ is destroyed.
  std::map<std::string, origin_state> origins;
  {
    std::lock_guard lock(mutex_);
    origins.swap(origins_);
  }
  origins.clear();
}

void client_impl::complete_all_stopped() {
  std::unordered_map<exchange*, std::shared_ptr<exchange>> live;
  {
    std::lock_guard lock(mutex_);
    live.swap(live_);
  }
  for (const auto& [raw, ex] : live) ex->finish(network("client stopped"));
}

void client_impl::forget(exchange* ex) {
  std::lock_guard lock(mutex_);
  live_.erase(ex);
}

void client_impl::send(http_client_request request, http_client_completion done) {
  auto ex = std::make_shared<exchange>();
  ex->deadline = clock_type::now() + options_.total_timeout;
  ex->request = std::move(request);
  // Forgets the exchange, then completes it.
  ex->done = [this, raw = ex.get(), done = std::move(done)](result<http_client_response> r) mutable {
    forget(raw);
    done(std::move(r));
  };

  result<void> accepted = validate(*ex);
  if (accepted) {
    ex->timer.emplace(ioc_);
    ex->timer->expires_at(ex->deadline);
    ex->timer->async_wait([this, weak = std::weak_ptr<exchange>(ex)](beast::error_code ec) {
      if (ec) return;
      auto e = weak.lock();
      if (!e || !e->finish(network("the exchange with the destination timed out"))) return;
      std::shared_ptr<connection> c;
      {
        std::lock_guard lock(mutex_);
        c = e->conn.lock();
      }
      if (c) net::post(c->strand(), [c, e] { c->abort(e.get()); });
    });
  }

  std::shared_ptr<connection> idle;
  bool run_now = false;
  {
    std::lock_guard lock(mutex_);
    live_.emplace(ex.get(), ex);
    if (stopped_) return;  // the destructor completes it
    if (accepted) {
      auto& o = origins_[ex->origin];
      if (o.active < options_.max_connections_per_origin) {
        ++o.active;
        run_now = true;
        if (!o.idle.empty()) {
          idle = std::move(o.idle.back());
          o.idle.pop_back();
        }
      } else {
        o.waiting.push_back(ex);
      }
    }
  }
  if (!accepted) {
    // Never inside send(): on a thread of the client.
    net::post(ioc_, [ex, e = std::move(accepted).error()]() mutable { ex->finish(std::move(e)); });
    return;
  }
  if (run_now) start(ex, std::move(idle));
}

result<void> client_impl::validate(exchange& ex) const {
  auto u = check_url(options_.policy, ex.request.url);
  if (!u) return std::move(u).error();
  ex.url = std::move(*u);
  ex.origin = (ex.url.https ? "https://" : "http://") + host_header(ex.url);
  const std::string& method = ex.request.method;
  if (method.empty() || method.find_first_of(std::string_view(" \r\n\0", 4)) != std::string::npos)
    return error(errc::invalid_argument, "the request method is empty or has a space or a line break");
  for (const auto& [name, value] : ex.request.headers)
    if (name.empty() || name.find_first_of(std::string_view(" :\r\n\0", 5)) != std::string::npos || has_line_break(value))
      return error(errc::invalid_argument, "a request header has an empty name, a space or ':' in its name, or a line break");
  return {};
}

void client_impl::start(const std::shared_ptr<exchange>& ex, std::shared_ptr<connection> c) {
  if (!c) c = std::make_shared<connection>(*this, ex->url, ex->origin);
  {
    std::lock_guard lock(mutex_);
    ex->conn = c;
  }
  net::post(c->strand(), [c, ex] { c->run(ex); });
}

void client_impl::retry_on_new_connection(const std::shared_ptr<exchange>& ex) { start(ex, nullptr); }

void client_impl::release(const std::shared_ptr<connection>& c, bool reusable) {
  std::shared_ptr<exchange> next;
  std::shared_ptr<connection> next_connection;
  {
    std::lock_guard lock(mutex_);
    auto it = origins_.find(c->origin());
    if (it == origins_.end()) return;  // the client is stopping
    origin_state& o = it->second;
    if (reusable && !stopped_) {
      c->idle_generation = ++idle_generation_;
      o.idle.push_back(c);
      c->wait_idle(c->idle_generation);  // we are on c's strand
    }
    while (!o.waiting.empty()) {
      std::shared_ptr<exchange> e = std::move(o.waiting.front());
      o.waiting.pop_front();
      if (!e->is_finished()) {
        next = std::move(e);
        break;
      }
    }
    if (next) {
      if (!o.idle.empty()) {
        next_connection = std::move(o.idle.back());
        o.idle.pop_back();
      }
    } else {
      --o.active;
      if (o.active == 0 && o.idle.empty() && o.waiting.empty()) origins_.erase(it);
    }
  }
  if (next) start(next, std::move(next_connection));
}

void client_impl::idle_expired(const std::shared_ptr<connection>& c, std::uint64_t generation) {
  {
    std::lock_guard lock(mutex_);
    auto it = origins_.find(c->origin());
    if (it == origins_.end() || c->idle_generation != generation) return;
    auto& idle = it->second.idle;
    auto at = std::find(idle.begin(), idle.end(), c);
    if (at == idle.end()) return;  // taken for an exchange meanwhile
    idle.erase(at);
    if (it->second.active == 0 && idle.empty() && it->second.waiting.empty()) origins_.erase(it);
  }
  c->close();
}

}  // namespace

result<std::unique_ptr<http_client>> make_asio_http_client(asio_http_client_options options) {
  auto client = std::make_unique<client_impl>(std::move(options));
  OPENDSR_TRY(client->init());
  return std::unique_ptr<http_client>(std::move(client));
}

}  // namespace opendsr
