// The Beast HTTP/1.1 server. All of Beast stays in this translation unit (it is slow to compile).
#include <opendsr/http_server.hpp>

#include "tls_channel.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace opendsr {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

class session;

// After a response that ends the connection, the server reads (and drops) what the client is
// still sending for up to this many bytes, so that closing with unread data does not reset the
// connection before the client has read the response.
constexpr std::size_t linger_bytes_per_body_limit = 4;

// A streamed response body (http_response::stream) is read and written this many bytes at a time:
// all of it a connection holds, and the longest its strand waits on the reader.
constexpr std::size_t stream_chunk_bytes = 64 * 1024;

}  // namespace

class http_server::impl {
 public:
  impl(http_handler& handler, const http_server_options& options)
      : handler_(handler),
        options_(options),
        ioc_(static_cast<int>(options.threads)),
        work_(net::make_work_guard(ioc_)),
        acceptor_(net::make_strand(ioc_)) {}

  result<void> listen();
  void run();
  void stop();

  // Serve TLS with this context (null: plain HTTP).
  std::shared_ptr<const detail::tls_context> tls_;

  http_handler& handler() { return handler_; }
  const http_server_options& options() const { return options_; }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  std::uint16_t port() const { return port_; }
  std::size_t connections() const { return connections_.load(); }

  // Registers a new connection. Returns false, registering nothing, once stop() has begun.
  bool add(session* s, const std::shared_ptr<session>& p);
  void remove(session* s);

 private:
  void accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  // Runs f(session) on the strand of every open connection.
  template <class F>
  void for_each_session(F f);

  http_handler& handler_;
  http_server_options options_;
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> connections_{0};

  std::mutex mutex_;  // guards sessions_ and stopped_
  std::condition_variable ended_;
  std::unordered_map<session*, std::weak_ptr<session>> sessions_;
  bool stopped_ = false;
};

namespace {

bool is_http_parse_error(const beast::error_code& ec) {
  return ec.category() == beast::http::make_error_code(http::error::bad_method).category();
}

http_request to_request(const http::request_header<>& header) {
  http_request r;
  r.method = std::string(header.method_string());
  r.target = std::string(header.target());
  for (const auto& field : header) r.headers.add(std::string(field.name_string()), std::string(field.value()));
  return r;
}

// The bytes of one connection: the TCP stream itself, or TLS over it. An Asio AsyncReadStream
// and AsyncWriteStream, so Beast reads and writes HTTP through it unchanged. At most one read
// and one write are in progress, never both at once (a session reads, then writes).
class connection {
 public:
  using executor_type = beast::tcp_stream::executor_type;

  connection(tcp::socket socket, std::shared_ptr<const detail::tls_context> tls) : tcp_(std::move(socket)) {
#if OPENDSR_ASIO_TLS
    if (tls) tls_ = std::make_unique<detail::tls_channel>(std::move(tls));
#else
    (void)tls;
#endif
  }

  executor_type get_executor() { return tcp_.get_executor(); }
  beast::tcp_stream& transport() { return tcp_; }

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return net::async_compose<Handler, void(beast::error_code, std::size_t)>(read_op<MutableBuffers>{*this, buffers},
                                                                              handler, tcp_);
  }

  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return net::async_compose<Handler, void(beast::error_code, std::size_t)>(write_op<ConstBuffers>{*this, buffers},
                                                                              handler, tcp_);
  }

 private:
  static beast::error_code tls_error() { return boost::system::errc::make_error_code(boost::system::errc::protocol_error); }

  // Plain: one read from the socket. TLS: write what the channel has to send (handshake
  // replies), then hand out decrypted bytes, reading and decrypting until there are some.
  template <class MutableBuffers>
  struct read_op {
    connection& c;
    MutableBuffers buffers;
    enum class step { start, reading, flushing, done } at = step::start;
    std::size_t copied = 0;
    beast::error_code result = {};

    template <class Self>
    void operator()(Self& self, beast::error_code ec = {}, std::size_t n = 0) {
      if (!c.tls_) {
        if (at == step::start) {
          at = step::reading;
          return c.tcp_.async_read_some(buffers, std::move(self));
        }
        return self.complete(ec, n);
      }
#if OPENDSR_ASIO_TLS
      switch (at) {
        case step::done: return self.complete(result, copied);
        case step::reading:
          if (ec) return self.complete(ec, 0);
          if (!c.tls_->received(c.cipher_.data(), n)) result = tls_error();
          break;
        case step::flushing:
          if (ec) return self.complete(ec, 0);
          c.tls_->output().clear();
          break;
        case step::start: break;
      }
      std::string& out = c.tls_->output();
      if (!out.empty()) {  // handshake records, or an alert to send before failing
        at = step::flushing;
        return net::async_write(c.tcp_, net::buffer(out), std::move(self));
      }
      std::string& in = c.tls_->input();
      if (!in.empty()) {
        copied = net::buffer_copy(buffers, net::buffer(in));
        in.erase(0, copied);
        result = {};
      } else if (!result && c.tls_->closed()) {
        result = net::error::eof;
      }
      if (copied > 0 || result) {
        if (at != step::start) return self.complete(result, copied);
        at = step::done;  // complete later, not inside the initiating call
        return net::post(c.tcp_.get_executor(), std::move(self));
      }
      at = step::reading;
      c.tcp_.async_read_some(net::buffer(c.cipher_), std::move(self));
#endif
    }
  };

  // Plain: one write to the socket. TLS: encrypt everything, write all the records.
  template <class ConstBuffers>
  struct write_op {
    connection& c;
    ConstBuffers buffers;
    enum class step { start, writing, failed } at = step::start;
    std::size_t size = 0;

    template <class Self>
    void operator()(Self& self, beast::error_code ec = {}, std::size_t n = 0) {
      if (!c.tls_) {
        if (at == step::start) {
          at = step::writing;
          return c.tcp_.async_write_some(buffers, std::move(self));
        }
        return self.complete(ec, n);
      }
#if OPENDSR_ASIO_TLS
      if (at == step::failed) return self.complete(tls_error(), 0);
      if (at == step::writing) {
        c.tls_->output().clear();
        return self.complete(ec, ec ? 0 : size);
      }
      for (auto b : beast::buffers_range_ref(buffers)) {
        if (!c.tls_->send(static_cast<const char*>(b.data()), b.size())) {
          at = step::failed;
          return net::post(c.tcp_.get_executor(), std::move(self));
        }
        size += b.size();
      }
      at = step::writing;
      net::async_write(c.tcp_, net::buffer(c.tls_->output()), std::move(self));
#endif
    }
  };

  beast::tcp_stream tcp_;
#if OPENDSR_ASIO_TLS
  std::unique_ptr<detail::tls_channel> tls_;
  std::array<char, 16 * 1024> cipher_;
#else
  std::unique_ptr<int> tls_;  // always null: built without TLS
#endif
};

// One connection. Every member is touched only on the connection's strand.
class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, std::shared_ptr<const detail::tls_context> tls, http_server::impl& server)
      : stream_(std::move(socket), std::move(tls)), server_(server) {}

  ~session() { server_.remove(this); }

  void start() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&session::read_header, shared_from_this()));
  }

  // Closes the connection if it is waiting for a request or ending, or in any state if `always`.
  void close_if_idle(bool always) {
    if (always || phase_ == phase::awaiting_request || phase_ == phase::closing) close();
  }

  auto executor() { return stream_.get_executor(); }

  // Called through a responder, from any thread.
  void complete(http_response response) {
    net::dispatch(stream_.get_executor(), [self = shared_from_this(), r = std::move(response)]() mutable {
      self->write(std::move(r));
    });
  }

  http_server::impl& server() { return server_; }

 private:
  enum class phase { awaiting_request, reading, handling, writing, closing };

  // A responder's shared state: if the handler drops every copy without calling it, the client
  // still gets an answer.
  struct completion {
    explicit completion(std::shared_ptr<session> s) : owner(std::move(s)) {}
    ~completion() {
      if (!done.exchange(true)) owner->complete(owner->error_response(error(errc::internal, "the request was dropped without a response")));
    }
    // Completes once; the first caller takes the session, so that a responder kept after its
    // call does not keep the connection alive.
    void complete(http_response r) {
      if (done.exchange(true)) return;
      std::shared_ptr<session> s = std::move(owner);
      s->complete(std::move(r));
    }
    std::shared_ptr<session> owner;
    std::atomic<bool> done{false};
  };

  const http_server_options& options() const { return server_.options(); }

  void read_header() {
    if (server_.stopping()) return close();
    phase_ = phase::awaiting_request;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options().max_header_bytes));
    parser_->body_limit(options().max_body_bytes);
    stream_.transport().expires_after(first_request_ ? options().read_timeout : options().idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_, beast::bind_front_handler(&session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    first_request_ = false;
    if (ec) return on_read_error(ec);
    phase_ = phase::reading;
    const auto& header = parser_->get();
    keep_alive_ = header.keep_alive();
    head_request_ = header.method() == http::verb::head;
    http_head_decision decision = call_handler([&] { return server_.handler().on_head(to_request(header)); });
    if (auto* early = std::get_if<http_response>(&decision)) {
      if (!parser_->is_done()) unread_input_ = true;  // the body stays unread
      return write(std::move(*early));
    }
    body_handler_ = std::move(std::get<http_body_handler>(decision));
    if (parser_->is_done()) return on_body({}, 0);
    auto expect = header[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      continue_.emplace(http::status::continue_, header.version());
      stream_.transport().expires_after(options().write_timeout);
      return http::async_write(stream_, *continue_, [self = shared_from_this()](beast::error_code wec, std::size_t) {
        if (wec) return self->close();
        self->read_body();
      });
    }
    read_body();
  }

  void read_body() {
    stream_.transport().expires_after(options().read_timeout);
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    phase_ = phase::handling;
    stream_.transport().expires_never();
    auto message = parser_->release();
    http_request request = to_request(message.base());
    request.body = std::move(message.body());
    http_body_handler handler = std::move(body_handler_);
    auto state = std::make_shared<completion>(shared_from_this());
    http_responder respond = [state](http_response r) { state->complete(std::move(r)); };
    // The responder may run inline, writing before this returns: nothing follows the call.
    try {
      handler(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      state->complete(error_response(error(errc::internal, e.what())));
    }
  }

  // A failed read: a closed or timed-out connection ends quietly; a bad request is answered.
  void on_read_error(const beast::error_code& ec) {
    if (ec == http::error::body_limit) {
      unread_input_ = true;
      return write(error_response(error(errc::payload_too_large,
                                        "the request body is larger than " + std::to_string(options().max_body_bytes) + " bytes")));
    }
    if (ec == http::error::header_limit) {
      unread_input_ = true;
      return write(error_response(error(errc::invalid_request,
                                        "the request header is larger than " + std::to_string(options().max_header_bytes) + " bytes")));
    }
    if (is_http_parse_error(ec) && ec != http::error::end_of_stream && ec != http::error::partial_message) {
      unread_input_ = true;
      return write(error_response(error(errc::invalid_request, "malformed HTTP request: " + ec.message())));
    }
    close();  // end of stream, timeout, reset, or closed by stop()
  }

  template <class F>
  auto call_handler(F f) -> decltype(f()) {
    try {
      return f();
    } catch (const std::exception& e) {
      keep_alive_ = false;
      return error_response(error(errc::internal, e.what()));
    }
  }

  http_response error_response(const error& e) {
    try {
      return server_.handler().on_error(e);
    } catch (const std::exception&) {
      return http_response{500, {}, {}};
    }
  }

  // Writes the response header and a body held in memory; a streamed body follows in chunks
  // (write_chunk). Each write has write_timeout to complete.
  void write(http_response r) {
    if (phase_ == phase::closing) return;
    phase_ = phase::writing;
    try {
      build_response(std::move(r));
    } catch (const std::exception&) {  // a status or field Beast refuses, or a body given twice
      keep_alive_ = false;
      body_reader_.reset();
      build_response(http_response{500, {}, {}});
    }
    stream_.transport().expires_after(options().write_timeout);
    http::async_write(stream_, response_, beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void build_response(http_response r) {
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(r.status));
    for (const auto& [name, value] : r.headers) response_.insert(name, value);
    response_.keep_alive(keep_alive_ && !unread_input_ && !server_.stopping());
    // A response to HEAD has the header of the response to GET, and no body (RFC 9110, 9.3.2).
    if (r.stream) {
      if (!r.body.empty()) throw std::invalid_argument("an http_response has both a body and a stream");
      response_.content_length(r.stream->size());
      if (!head_request_ && r.stream->size() > 0) {
        body_reader_ = std::move(r.stream);
        body_left_ = body_reader_->size();
      }
    } else if (head_request_) {
      response_.content_length(r.body.size());
    } else {
      response_.body() = std::move(r.body);
      response_.prepare_payload();
    }
  }

  // The header (and any body in memory), or a chunk of a streamed body, was written.
  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return close();
    if (body_reader_) return write_chunk();
    if (response_.keep_alive()) return read_header();
    if (unread_input_ && !server_.stopping()) return linger();
    close();
  }

  // Reads the next chunk of a streamed body and writes it; after the last, ends the body. A reader
  // that fails or ends early closes the connection: the client sees fewer bytes than
  // Content-Length announced, never a wrong body.
  void write_chunk() {
    if (body_left_ == 0) {
      body_reader_.reset();
      chunk_.reset();
      return on_write({}, 0);
    }
    if (!chunk_) chunk_ = std::make_unique<char[]>(stream_chunk_bytes);
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(stream_chunk_bytes, body_left_));
    result<std::size_t> got = errc::internal;
    try {
      got = body_reader_->read(std::span<char>(chunk_.get(), want));
    } catch (const std::exception& e) {
      got = error(errc::internal, e.what());
    }
    if (!got || *got == 0 || *got > want) {
      body_reader_.reset();
      chunk_.reset();
      return close();
    }
    body_left_ -= *got;
    stream_.transport().expires_after(options().write_timeout);
    net::async_write(stream_, net::buffer(chunk_.get(), *got), beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  // Ends the connection after a response to a request whose input was not all read: stop
  // sending, then read and drop whatever the client still sends (bounded in bytes and time)
  // until it closes its side. Closing at once would reset the connection, and the client could
  // lose the response.
  void linger() {
    phase_ = phase::closing;
    beast::error_code ec;
    stream_.transport().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close();
    lingered_ = buffer_.size();
    buffer_.consume(buffer_.size());
    stream_.transport().expires_after(options().read_timeout);
    linger_read();
  }

  void linger_read() {
    stream_.transport().async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->lingered_ += n;
      if (ec || self->lingered_ > linger_bytes_per_body_limit * self->options().max_body_bytes) return self->close();
      self->linger_read();
    });
  }

  void close() {
    phase_ = phase::closing;
    beast::error_code ec;
    stream_.transport().socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.transport().close();
  }

  connection stream_;
  http_server::impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  http::response<http::string_body> response_;
  std::shared_ptr<http_body_reader> body_reader_;  // the rest of a streamed body, while it is sent
  std::uint64_t body_left_ = 0;                    // bytes of it not yet read
  std::unique_ptr<char[]> chunk_;                  // stream_chunk_bytes, while a body is streamed
  http_body_handler body_handler_;
  phase phase_ = phase::awaiting_request;
  bool first_request_ = true;
  bool keep_alive_ = true;     // as the client asked
  bool head_request_ = false;  // the request being answered is a HEAD
  bool unread_input_ = false;  // the request was answered before all of it was read
  std::size_t lingered_ = 0;
  std::array<char, 16 * 1024> scratch_;
};

}  // namespace

result<void> http_server::impl::listen() {
  beast::error_code ec;
  auto address = net::ip::make_address(options_.address, ec);
  if (ec) return error(errc::invalid_argument, "not an IP address: " + options_.address);
  tcp::endpoint endpoint(address, options_.port);
  const std::string where = options_.address + ":" + std::to_string(options_.port);
  auto check = [&](const char* step) -> result<void> {
    if (ec) return error(errc::invalid_argument, std::string("cannot ") + step + " " + where + ": " + ec.message());
    return {};
  };
  acceptor_.open(endpoint.protocol(), ec);
  OPENDSR_TRY(check("open a socket for"));
  acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  OPENDSR_TRY(check("set SO_REUSEADDR on"));
  acceptor_.bind(endpoint, ec);
  OPENDSR_TRY(check("bind"));
  acceptor_.listen(net::socket_base::max_listen_connections, ec);
  OPENDSR_TRY(check("listen on"));
  port_ = acceptor_.local_endpoint().port();
  return {};
}

void http_server::impl::run() {
  accept();
  for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
}

void http_server::impl::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), beast::bind_front_handler(&impl::on_accept, this));
}

void http_server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;  // stop() closed the acceptor
  if (!ec) {
    if (connections_.load() >= options_.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);  // over the limit: the client sees the connection end at once
    } else {
      auto s = std::make_shared<session>(std::move(socket), tls_, *this);
      if (add(s.get(), s)) s->start();
    }
  }
  accept();  // an error on one connection (e.g. reset before accept) does not stop the server
}

bool http_server::impl::add(session* s, const std::shared_ptr<session>& p) {
  std::lock_guard lock(mutex_);
  if (stopped_) return false;
  sessions_.emplace(s, p);
  connections_.fetch_add(1);
  return true;
}

void http_server::impl::remove(session* s) {
  std::lock_guard lock(mutex_);
  if (sessions_.erase(s) == 0) return;  // never added: stop() had begun
  connections_.fetch_sub(1);
  ended_.notify_all();
}

template <class F>
void http_server::impl::for_each_session(F f) {
  std::vector<std::shared_ptr<session>> live;
  {
    std::lock_guard lock(mutex_);
    live.reserve(sessions_.size());
    for (auto& [raw, weak] : sessions_)
      if (auto s = weak.lock()) live.push_back(std::move(s));
  }
  // Posted and released outside the lock: once the posted call has run on another thread, the
  // reference here may be the last one, and ~session takes the lock (remove()).
  for (auto& s : live) net::post(s->executor(), [s, f] { f(*s); });
}

void http_server::impl::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  stopping_.store(true, std::memory_order_release);
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
  for_each_session([](session& s) { s.close_if_idle(false); });
  std::unique_lock lock(mutex_);
  if (!ended_.wait_for(lock, options_.drain_timeout, [this] { return sessions_.empty(); })) {
    lock.unlock();
    for_each_session([](session& s) { s.close_if_idle(true); });
    lock.lock();
    ended_.wait(lock, [this] { return sessions_.empty(); });
  }
  lock.unlock();
  work_.reset();
  for (auto& t : threads_) t.join();
}

result<std::unique_ptr<http_server>> http_server::start(http_handler& handler, const http_server_options& options) {
  if (options.threads == 0) return error(errc::invalid_argument, "http server: threads must be at least 1");
  if (options.max_connections == 0) return error(errc::invalid_argument, "http server: max_connections must be at least 1");
  if (options.max_header_bytes == 0 || options.max_header_bytes > UINT32_MAX)
    return error(errc::invalid_argument, "http server: max_header_bytes must be 1 to 4294967295");
  auto i = std::make_unique<impl>(handler, options);
  if (options.tls) {
#if OPENDSR_ASIO_TLS
    auto context = detail::make_tls_context(options.tls->certificate_pem, options.tls->private_key_pem);
    if (!context) return std::move(context).error();
    i->tls_ = std::move(*context);
#else
    return error(errc::invalid_argument, "http server: TLS needs the asio adapter built with Botan");
#endif
  }
  OPENDSR_TRY(i->listen());
  i->run();
  return std::unique_ptr<http_server>(new http_server(std::move(i)));
}

http_server::http_server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
http_server::~http_server() { stop(); }
void http_server::stop() { impl_->stop(); }
std::uint16_t http_server::port() const noexcept { return impl_->port(); }
std::size_t http_server::connections() const noexcept { return impl_->connections(); }

}  // namespace opendsr
