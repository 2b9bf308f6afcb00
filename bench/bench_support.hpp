// What the benchmarks share: ending a run on a broken setup (die, must); where their stores
// live (a fresh, empty directory for one store, under $OPENDSR_BENCH_DIR when set, a disk to
// measure, else the system's temporary directory) and the store under test (memory, or LMDB
// durable, counting write transactions); pinning and CPU clocks; medians; the start of main()
// and the registration of benchmarks timed in rounds; and, for the delivery benchmarks
// (callbacks, forwards), the lean loopback HTTP server they send to and the client they send with.
#pragma once

#include <opendsr/asio_http_client.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage_wrapper.hpp>

#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace opendsr::bench {

// Prints "<program>: what" and exits 1: a benchmark whose setup failed measures nothing.
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// The value of r, or die() naming `what`.
template <class T>
T must(result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

class scratch_dir {
 public:
  // `name` tells whose directory it is ("intake", "callback").
  explicit scratch_dir(std::string_view name) {
    static int serial = 0;
    const char* root = std::getenv("OPENDSR_BENCH_DIR");
    path_ = (root ? std::filesystem::path(root) : std::filesystem::temp_directory_path()) /
            ("opendsr-" + std::string(name) + "-bench-" + std::to_string(::getpid()) + "-" + std::to_string(serial++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() { std::filesystem::remove_all(path_); }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Warns on stderr when the stores would live on a tmpfs, where durable figures measure no fsync.
inline void warn_if_tmpfs() {
  const char* root = std::getenv("OPENDSR_BENCH_DIR");
  const std::filesystem::path dir = root ? std::filesystem::path(root) : std::filesystem::temp_directory_path();
  constexpr long tmpfs_magic = 0x01021994;
  struct statfs info {};
  if (statfs(dir.c_str(), &info) == 0 && info.f_type == tmpfs_magic)
    std::fprintf(stderr, "%s: WARNING: %s is a tmpfs; the durable figures measure no fsync. "
                         "Set OPENDSR_BENCH_DIR to a directory on a disk.\n", program_invocation_short_name, dir.c_str());
}

// False when OPENDSR_BENCH_PIN=0 or the machine has one CPU: then nothing is pinned.
inline bool pinning() {
  const char* pin = std::getenv("OPENDSR_BENCH_PIN");
  return !(pin && std::string(pin) == "0") && std::thread::hardware_concurrency() >= 2;
}

// Pins the calling thread (and the threads it starts later) to `cpu`.
inline void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity: " + std::string(std::strerror(errno)));
}

// The start of a benchmark program's main(): benchmark::Initialize, then, before any thread
// starts, the main thread (and every thread started later) pinned to CPU 0 unless pinning() is
// off, and warn_if_tmpfs(). Returns false (main returns 1) on an argument the library does not know.
inline bool start_benchmarks(int& argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return false;
  if (pinning()) pin_to(0);
  warn_if_tmpfs();
  return true;
}

// Registers `run` as `name`: `rounds` iterations, each timed by the benchmark (manual time), in
// milliseconds.
template <class Run>
void register_rounds(const std::string& name, std::size_t rounds, Run run) {
  benchmark::RegisterBenchmark(name.c_str(), std::move(run))
      ->UseManualTime()
      ->Iterations(static_cast<benchmark::IterationCount>(rounds))
      ->Unit(benchmark::kMillisecond);
}

// The Asio client with `threads` I/O threads, allowed to send plain HTTP to loopback receivers.
inline std::unique_ptr<http_client> loopback_http_client(std::size_t threads) {
  asio_http_client_options o;
  o.policy.allow_http = true;
  o.policy.allow_loopback = true;
  o.threads = threads;
  return must(make_asio_http_client(o), "making the http client");
}

// User + system CPU of the whole process, in seconds.
inline double process_cpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// The CPU time of a thread's clock (pthread_getcpuclockid), in seconds.
inline double thread_cpu(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// REQUIRES: v is not empty.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

enum class store_kind { memory, lmdb_durable };

// Counts the write transactions begun (claims and records, in a round).
class counting_storage final : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;
  std::atomic<std::size_t> writes{0};
  result<std::unique_ptr<write_transaction>> begin_write() override {
    writes.fetch_add(1, std::memory_order_relaxed);
    return storage_wrapper::begin_write();
  }
};

// A fresh store of `kind`; an LMDB store lives in a scratch_dir named after `name`.
struct store_under_test {
  store_under_test(store_kind kind, std::string_view name) {
    if (kind == store_kind::memory) {
      store = std::make_unique<memory_storage>();
    } else {
      dir.emplace(name);
      lmdb_options o;
      o.path = dir->path();
      o.sync = sync_mode::durable;
      store = must(lmdb_storage::open(o), "opening the LMDB store");
    }
    counted = std::make_unique<counting_storage>(*store);
  }
  std::optional<scratch_dir> dir;
  std::unique_ptr<storage> store;
  std::unique_ptr<counting_storage> counted;
};

// ---- The far end: a lean HTTP/1.1 receiver ----

// One thread, epoll, 127.0.0.1:0, pinned to `cpu` unless it is negative. Answers every whole
// request (header, then Content-Length bytes of body) with the same response bytes (default: 202
// Accepted, empty body), keeping the connection open. Counts the requests and their bytes and
// knows its thread's CPU time. Chunked requests are not supported (the client sends
// Content-Length).
class lean_receiver {
 public:
  static constexpr std::string_view accepted = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

  // `response`: a whole HTTP/1.1 response (status line, header with Content-Length, body).
  explicit lean_receiver(int cpu, std::string response = std::string(accepted)) : response_(std::move(response)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener_ < 0) die("socket: " + std::string(std::strerror(errno)));
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind: " + std::string(std::strerror(errno)));
    if (::listen(listener_, 1024) != 0) die("listen: " + std::string(std::strerror(errno)));
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    add(listener_, EPOLLIN);
    add(wake_, EPOLLIN);
    thread_ = std::thread([this, cpu] {
      if (cpu >= 0) pin_to(cpu);
      run();
    });
    clockid_t id;
    if (pthread_getcpuclockid(thread_.native_handle(), &id) != 0) die("pthread_getcpuclockid failed");
    cpu_clock_ = id;
  }

  ~lean_receiver() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_, &one, sizeof one);
    thread_.join();
    for (auto& [fd, c] : connections_) ::close(fd);
    ::close(epoll_);
    ::close(wake_);
    ::close(listener_);
  }
  lean_receiver(const lean_receiver&) = delete;
  lean_receiver& operator=(const lean_receiver&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::uint64_t requests() const noexcept { return requests_.load(); }
  // Bytes of the requests answered (header and body).
  std::uint64_t request_bytes() const noexcept { return request_bytes_.load(); }

  // The receiver thread's CPU time so far, in seconds.
  double cpu() const { return thread_cpu(cpu_clock_); }

 private:
  struct connection {
    std::string in;
    std::size_t consumed = 0;
    std::size_t whole = 0;  // the length of the request at `consumed` once its header is in, else 0
    std::string out;
  };

  void add(int fd, std::uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.fd = fd;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl: " + std::string(std::strerror(errno)));
  }

  void close_connection(int fd) {
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    connections_.erase(fd);
  }

  void run() {
    epoll_event events[64];
    char buf[16384];
    for (;;) {
      const int n = ::epoll_wait(epoll_, events, 64, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("epoll_wait: " + std::string(std::strerror(errno)));
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_) return;
        if (fd == listener_) {
          for (;;) {
            const int c = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) break;
            int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            connections_[c];
            add(c, EPOLLIN | EPOLLRDHUP);
          }
          continue;
        }
        auto it = connections_.find(fd);
        if (it == connections_.end()) continue;
        connection& c = it->second;
        bool closed = (events[i].events & (EPOLLERR | EPOLLHUP)) != 0;
        for (;;) {
          const ssize_t got = ::read(fd, buf, sizeof buf);
          if (got > 0) {
            c.in.append(buf, static_cast<std::size_t>(got));
            continue;
          }
          if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed = true;
          if (got < 0 && errno == EINTR) continue;
          break;
        }
        answer_whole_requests(c);
        if (!c.out.empty()) {
          const ssize_t put = ::write(fd, c.out.data(), c.out.size());
          // Responses are tiny and the socket buffer empty: a short write means the peer is gone.
          if (put != static_cast<ssize_t>(c.out.size())) closed = true;
          c.out.clear();
        }
        if (closed) close_connection(fd);
      }
    }
  }

  void answer_whole_requests(connection& c) {
    for (;;) {
      const std::string_view in = std::string_view(c.in).substr(c.consumed);
      if (c.whole == 0) {  // look for the header's end once, not again for each read of a large body
        const std::size_t end = in.find("\r\n\r\n");
        if (end == std::string_view::npos) break;
        c.whole = end + 4 + content_length(in.substr(0, end + 2));
      }
      if (in.size() < c.whole) break;
      c.consumed += c.whole;
      request_bytes_.fetch_add(c.whole, std::memory_order_relaxed);
      c.whole = 0;
      c.out += response_;
      requests_.fetch_add(1, std::memory_order_relaxed);
    }
    if (c.consumed == c.in.size()) {
      c.in.clear();
      c.consumed = 0;
    }
  }

  // The Content-Length of a header block ("...\r\n" lines), 0 if absent.
  static std::size_t content_length(std::string_view header) {
    constexpr std::string_view name = "content-length:";
    for (std::size_t at = header.find("\r\n"); at != std::string_view::npos; at = header.find("\r\n", at + 2)) {
      const std::string_view line = header.substr(at + 2, header.find("\r\n", at + 2) - (at + 2));
      if (line.size() < name.size()) continue;
      bool match = true;
      for (std::size_t i = 0; i < name.size() && match; ++i)
        match = static_cast<char>(std::tolower(static_cast<unsigned char>(line[i]))) == name[i];
      if (!match) continue;
      std::size_t v = 0;
      for (char ch : line.substr(name.size()))
        if (ch >= '0' && ch <= '9') v = v * 10 + static_cast<std::size_t>(ch - '0');
      return v;
    }
    return 0;
  }

  const std::string response_;
  int listener_ = -1, wake_ = -1, epoll_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  clockid_t cpu_clock_{};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> request_bytes_{0};
  std::unordered_map<int, connection> connections_;  // the receiver thread's only
};

}  // namespace opendsr::bench
