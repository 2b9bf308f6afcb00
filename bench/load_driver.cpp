// End-to-end load driver for opendsrd (run by hand, not in CI):
//
//   build/<dir>/bench/load_driver --opendsrd build/<dir>/apps/opendsrd [--threads 1] [--seconds 3]
//
// Starts opendsrd in a temporary data directory (durable LMDB, no rate limits, no access log),
// pinned to core 0 with --threads N, and drives it from core 1 with its own non-blocking HTTP/1.1
// keep-alive client at 1, 16 and 64 connections: POST /v3/requests (new ids), GET of a created
// request (signature reused), and GET /v3/discovery (a trivial unsigned route: the bare-HTTP
// reference). Beside it, in the same run, the floors: the OpenSSL and Botan signers' RSA-2048
// signing rates on the same pinned core over a 201-sized body (with as many threads as the
// daemon), and `openssl speed rsa2048` on the same core. --signer picks opendsrd's signer.
// Prints requests/s, p50 and p99 per point, and the ratios.
#include <opendsr/botan.hpp>
#include <opendsr/openssl_signer.hpp>

#include "../tests/api/http_wire.hpp"  // the black-box tests' client: request formatting
#include "../tests/support/request_bodies.hpp"
#include "common/base64.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ::sched_setaffinity(0, sizeof set, &set);
}

struct point {
  double per_second = 0;
  double per_cpu_second = 0;  // per second of the daemon's CPU
  double p50_ms = 0, p99_ms = 0;
  std::size_t done = 0, failed = 0;
};

struct rate {
  double per_second = 0;      // wall clock
  double per_cpu_second = 0;  // per second of CPU the process used: robust to other load on the core
};

double process_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// utime + stime of another process, from /proc (clock-tick resolution).
double cpu_seconds_of(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  unsigned long utime = 0, stime = 0;
  // fields after ")": state(3) ... utime(14) stime(15)
  if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return 0;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Keeps `connections` keep-alive connections busy for `seconds`, each sending the next request
// from make_request() as soon as the previous response is complete.
point drive(pid_t daemon_pid, std::uint16_t port, int connections, double seconds, const std::function<std::string()>& make_request,
            int expected_status) {
  struct conn {
    int fd;
    std::string out, in;
    std::size_t sent = 0;
    steady::time_point started;
  };
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<conn> conns(static_cast<std::size_t>(connections));
  std::vector<double> latencies;
  point p;
  auto send_next = [&](conn& c) {
    c.out = make_request();
    c.sent = 0;
    c.started = steady::now();
    while (c.sent < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n <= 0) break;  // a request is small; the socket buffer takes it whole
      c.sent += static_cast<std::size_t>(n);
    }
  };
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(conns[i].fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
    int one = 1;
    ::setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  const double cpu_before = cpu_seconds_of(daemon_pid);
  const auto start = steady::now();
  const auto end = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  for (auto& c : conns) send_next(c);
  int open = connections;
  std::vector<epoll_event> events(static_cast<std::size_t>(connections));
  while (open > 0) {
    int n = ::epoll_wait(ep, events.data(), connections, 1000);
    for (int e = 0; e < n; ++e) {
      conn& c = conns[events[e].data.u64];
      char buf[65536];
      ssize_t got = ::recv(c.fd, buf, sizeof buf, 0);
      if (got <= 0) {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        --open;
        ++p.failed;
        continue;
      }
      c.in.append(buf, static_cast<std::size_t>(got));
      auto head_end = c.in.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      auto cl = c.in.find("Content-Length: ");
      if (cl == std::string::npos || cl > head_end) cl = c.in.find("content-length: ");
      std::size_t length = cl < head_end ? std::stoul(c.in.substr(cl + 16)) : 0;
      if (c.in.size() < head_end + 4 + length) continue;
      const int status = std::stoi(c.in.substr(9, 3));
      c.in.erase(0, head_end + 4 + length);
      const auto now = steady::now();
      if (status == expected_status) {
        ++p.done;
        latencies.push_back(std::chrono::duration<double, std::milli>(now - c.started).count());
      } else {
        ++p.failed;
      }
      if (now < end) {
        send_next(c);
      } else {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        --open;
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  const double cpu = cpu_seconds_of(daemon_pid) - cpu_before;
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
  std::sort(latencies.begin(), latencies.end());
  p.per_second = static_cast<double>(p.done) / elapsed;
  p.per_cpu_second = cpu > 0 ? static_cast<double>(p.done) / cpu : 0;
  if (!latencies.empty()) {
    p.p50_ms = latencies[latencies.size() / 2];
    p.p99_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
  }
  return p;
}

// `signer`'s aggregate rate over `body` with `threads` threads on the calling thread's core(s),
// for `seconds`. As many threads as the daemon has: on a core shared with other processes the
// scheduler gives each thread its share, so fewer threads would understate the floor.
rate signing_rate(const opendsr::result<std::unique_ptr<opendsr::signer>>& signer, const std::string& body, int threads, double seconds) {
  if (!signer) throw std::runtime_error(signer.error().message());
  std::atomic<std::size_t> total{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      (void)(*signer)->sign(body);  // builds this thread's signing object outside the measurement
      while (!go.load()) std::this_thread::yield();
      const auto start = steady::now();
      std::size_t n = 0;
      while (std::chrono::duration<double>(steady::now() - start).count() < seconds) {
        if (!(*signer)->sign(body)) throw std::runtime_error("sign failed");
        ++n;
      }
      total += n;
    });
  const double cpu_before = process_cpu_seconds();
  go = true;
  for (auto& w : workers) w.join();
  const double cpu = process_cpu_seconds() - cpu_before;
  return {static_cast<double>(total.load()) / seconds, static_cast<double>(total.load()) / cpu};
}

// `openssl speed rsa2048` signs/s on core 0, or 0 if it cannot be run.
double openssl_rate(int seconds) {
  std::string cmd = "taskset -c 0 openssl speed -seconds " + std::to_string(seconds) + " rsa2048 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof line, p)) {
    // "rsa 2048 bits 0.000321s 0.000010s   3115.3  99999.0"
    if (std::strncmp(line, "rsa 2048 bits", 13) == 0 || std::strncmp(line, "rsa  2048 bits", 14) == 0) {
      double sign_s, verify_s, signs, verifies;
      const char* at = std::strstr(line, "bits") + 4;
      if (std::sscanf(at, " %lfs %lfs %lf %lf", &sign_s, &verify_s, &signs, &verifies) == 4) rate = signs;
    }
  }
  ::pclose(p);
  return rate;
}

struct daemon_child {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::string authorization;
};

daemon_child start_daemon(const std::string& path, const fs::path& dir, const std::string& signer, int threads) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  daemon_child d;
  d.pid = ::fork();
  if (d.pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    pin_to(0);
    std::string t = std::to_string(threads), data = dir.string();
    ::execl(path.c_str(), path.c_str(), "--data-dir", data.c_str(), "--listen", "127.0.0.1:0", "--signer", signer.c_str(), "--threads", t.c_str(),
            "--no-access-log", "--calls-per-minute", "0", "--new-requests-per-day", "0", "--deliver-to", "loopback",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  const std::string marker = "listening on http://127.0.0.1:";
  while (text.find(marker) == std::string::npos || text.find('\n', text.find(marker)) == std::string::npos) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) throw std::runtime_error("opendsrd did not start");
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  d.port = static_cast<std::uint16_t>(std::stoi(text.substr(text.find(marker) + marker.size())));
  auto value = [&](std::string label) {
    auto at = text.find(label) + label.size();
    at = text.find_first_not_of(' ', at);
    return text.substr(at, text.find('\n', at) - at);
  };
  d.authorization = "Authorization: Basic " + opendsr::detail::base64_encode(value("api key:") + ":" + value("secret:"));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  std::string opendsrd;
  std::string signer = "openssl";
  int threads = 1;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    if (flag == "--opendsrd") opendsrd = argv[i + 1];
    else if (flag == "--signer") signer = argv[i + 1];
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  if (opendsrd.empty()) {
    std::fprintf(stderr, "usage: load_driver --opendsrd PATH [--signer openssl|botan (default openssl)] [--threads N (default 1)] [--seconds S per point (default 3)]\n");
    return 2;
  }
  char pattern[] = "/tmp/opendsr-load-XXXXXX";
  if (!::mkdtemp(pattern)) return 1;
  const fs::path dir = pattern;

  pin_to(0);
  std::printf("floors on core 0 (same run):\n");
  const std::string sample_body = opendsr::testing::make_body({.id = opendsr::testing::uuid_v4(1)});
  const std::string signed_body = std::string(420, 'x') + sample_body;  // about a 201 body's size
  auto pair = opendsr::botan::generate_self_signed("localhost", opendsr::timestamp(std::chrono::seconds(1'767'225'600)));
  if (!pair) throw std::runtime_error(pair.error().message());
  const opendsr::botan::signer_options botan_options{pair->private_key_pem, pair->certificate_pem, "localhost", "https://localhost/c.pem"};
  const rate botan = signing_rate(opendsr::botan::make_signer(botan_options), signed_body, threads, seconds);
  std::printf("  Botan RSA-2048 PKCS#1 v1.5 SHA-256 sign, %d threads: %.0f /s, %.0f per CPU second\n", threads, botan.per_second,
              botan.per_cpu_second);
  const opendsr::openssl::signer_options openssl_options{botan_options.private_key_pem, botan_options.certificate_pem,
                                                         botan_options.processor_domain, botan_options.certificate_url};
  const rate openssl_signer = signing_rate(opendsr::openssl::make_signer(openssl_options), signed_body, threads, seconds);
  std::printf("  OpenSSL signer, same key and body, %d threads: %.0f /s, %.0f per CPU second\n", threads,
              openssl_signer.per_second, openssl_signer.per_cpu_second);
  const double openssl = openssl_rate(static_cast<int>(seconds));
  std::printf("  openssl speed rsa2048 sign: %.0f /s\n", openssl);

  daemon_child d = start_daemon(opendsrd, dir / "data", signer, threads);
  pin_to(1);
  std::printf("opendsrd --signer %s --threads %d on core 0 (durable LMDB), driver on core 1, %.0f s per point\n", signer.c_str(),
              threads, seconds);
  std::printf("%-10s %5s %10s %12s %9s %9s %7s\n", "route", "conns", "req/s", "req/CPU-s", "p50 ms", "p99 ms", "errors");

  std::uint64_t serial = 0;
  std::vector<std::string> created;
  double best_post = 0, best_get = 0, best_bare = 0, best_post_cpu = 0, best_get_cpu = 0, best_bare_cpu = 0;
  for (int connections : {1, 16, 64}) {
    auto post = drive(d.pid, d.port, connections, seconds, [&] {
      std::string id = opendsr::testing::uuid_v4(0x10ad0000 + ++serial);
      if (created.size() < 1000) created.push_back(id);
      std::string body = opendsr::testing::make_body({.id = id, .identities = {{"email", "load" + std::to_string(serial) + "@example.com"}}});
      return opendsr::wire::format_request("POST", "/v3/requests", {d.authorization, "Content-Type: application/json"}, body);
    }, 201);
    std::printf("%-10s %5d %10.0f %12.0f %9.2f %9.2f %7zu\n", "POST", connections, post.per_second, post.per_cpu_second, post.p50_ms, post.p99_ms, post.failed);
    best_post = std::max(best_post, post.per_second);
    best_post_cpu = std::max(best_post_cpu, post.per_cpu_second);
  }
  for (int connections : {1, 16, 64}) {
    std::size_t next = 0;
    auto get = drive(d.pid, d.port, connections, seconds, [&] {
      return opendsr::wire::format_request("GET", "/v3/requests/" + created[next++ % created.size()], {d.authorization});
    }, 200);
    std::printf("%-10s %5d %10.0f %12.0f %9.2f %9.2f %7zu\n", "GET", connections, get.per_second, get.per_cpu_second, get.p50_ms, get.p99_ms, get.failed);
    best_get = std::max(best_get, get.per_second);
    best_get_cpu = std::max(best_get_cpu, get.per_cpu_second);
  }
  for (int connections : {1, 16, 64}) {
    auto bare = drive(d.pid, d.port, connections, seconds, [&] { return opendsr::wire::format_request("GET", "/v3/discovery", {}); }, 200);
    std::printf("%-10s %5d %10.0f %12.0f %9.2f %9.2f %7zu\n", "discovery", connections, bare.per_second, bare.per_cpu_second, bare.p50_ms, bare.p99_ms, bare.failed);
    best_bare = std::max(best_bare, bare.per_second);
    best_bare_cpu = std::max(best_bare_cpu, bare.per_cpu_second);
  }
  // Wall-clock ratios hold when the two cores are otherwise idle; per-CPU-second ratios compare
  // the work each figure costs, whatever else ran on the core.
  std::printf("ratios (best point of each)                 wall   per CPU second\n");
  std::printf("  POST on one core / Botan signing       : %5.2f  %5.2f\n", best_post / botan.per_second,
              best_post_cpu / botan.per_cpu_second);
  std::printf("  POST on one core / OpenSSL signer      : %5.2f  %5.2f\n", best_post / openssl_signer.per_second,
              best_post_cpu / openssl_signer.per_cpu_second);
  if (openssl > 0) std::printf("  POST on one core / openssl speed       : %5.2f\n", best_post / openssl);
  std::printf("  GET / discovery (bare route)           : %5.2f  %5.2f\n", best_get / best_bare, best_get_cpu / best_bare_cpu);

  ::kill(d.pid, SIGTERM);
  int status = 0;
  ::waitpid(d.pid, &status, 0);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
