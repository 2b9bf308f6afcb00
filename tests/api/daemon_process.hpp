// What the black-box tests share: the built opendsrd as a child process, a client for its API
// over real HTTP on loopback, the workspace credentials the opendsr tool or a first run prints,
// and signature checks by an independent implementation (the openssl command).
// The binaries' paths come from the environment (OPENDSRD, OPENDSR), set by tests/api/meson.build.
#pragma once

#include "http_wire.hpp"

#include "common/base64.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace opendsr::testing {

namespace fs = std::filesystem;

inline std::string env_path(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

inline fs::path make_temp_dir() {
  std::string pattern = (fs::temp_directory_path() / "opendsr-api-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp");
  return pattern;
}

// Removes a directory from make_temp_dir and the daemon logs written beside it (daemon_process
// logs to "<data dir>.log").
inline void remove_temp_dir(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::remove(dir.string() + ".log", ec);
  fs::remove((dir / "data").string() + ".log", ec);
}

// Runs a shell command; returns its exit status and standard output.
inline std::pair<int, std::string> run(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(command.c_str(), "r"), ::pclose);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  int status = ::pclose(p.release());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// The whole file, or "" if it cannot be read.
inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The value after "label" on the line that starts with it (after spaces).
inline std::string value_after(const std::string& text, std::string_view label) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto at = line.find(label);
    if (at == std::string::npos || line.find_first_not_of(' ') != at) continue;
    std::string v = line.substr(at + label.size());
    v.erase(0, v.find_first_not_of(' '));
    return v;
  }
  return {};
}

// An opendsrd child process. Its stdout is read until the "listening" line; stderr goes to a log.
class daemon_process {
 public:
  daemon_process(const fs::path& data_dir, std::vector<std::string> flags) : log_(data_dir.string() + ".log") {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> args = {env_path("OPENDSRD"), "--data-dir", data_dir.string()};
    // A daemon under test delivers only to this machine: without test mode its clock is real, and
    // a request naming a public callback URL (the seed's exampleurl.com) would otherwise be sent
    // there at the next flush. A test that needs another destination policy says so.
    if (std::find(flags.begin(), flags.end(), "--deliver-to") == flags.end()) {
      args.push_back("--deliver-to");
      args.push_back("loopback");
    }
    args.insert(args.end(), flags.begin(), flags.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      int err = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(err, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
  }
  ~daemon_process() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  // Reads stdout until the listening line (a bounded readiness poll); returns the port, or 0 if
  // the process ended or 30 s passed.
  std::uint16_t wait_ready() {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    const std::string marker = "://127.0.0.1:";  // after "listening on http" or "https"
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto at = stdout_.find(marker); at != std::string::npos && stdout_.find('\n', at) != std::string::npos)
        return static_cast<std::uint16_t>(std::stoi(stdout_.substr(at + marker.size())));
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) < 0) return 0;
      if (p.revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return 0;
      stdout_.append(buf, static_cast<std::size_t>(n));
    }
    return 0;
  }

  // Sends `signal` and waits (up to 30 s) for the exit; returns the exit status, -1 otherwise
  // (also when the signal ended the process, as SIGKILL does).
  int stop(int signal = SIGTERM) {
    ::kill(pid_, signal);
    for (int i = 0; i < 3000; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      ::poll(nullptr, 0, 10);  // a bounded wait for a child process, not for simulated time
    }
    return -1;
  }

  const std::string& stdout_text() const { return stdout_; }
  std::string log() const { return read_text(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
  std::string stdout_;
};

struct workspace {
  std::string id, api_key, secret;
  std::string authorization() const { return "Authorization: Basic " + detail::base64_encode(api_key + ":" + secret); }
};

// Adds workspace `id` to the store in data_dir with `opendsr workspace add` (the daemon must not
// be running) and returns its printed credentials in `out`.
inline void add_workspace(const fs::path& data_dir, const std::string& id, workspace& out) {
  auto [status, printed] = run(env_path("OPENDSR") + " workspace add " + id + " --data-dir " + data_dir.string());
  ASSERT_EQ(status, 0) << printed;
  out = {id, value_after(printed, "api key:"), value_after(printed, "secret:")};
  ASSERT_FALSE(out.secret.empty()) << printed;
}

// The demo workspace's credentials, as a first run of opendsrd prints them on stdout.
inline workspace demo_workspace(const std::string& daemon_stdout) {
  return {"demo", value_after(daemon_stdout, "api key:"), value_after(daemon_stdout, "secret:")};
}

// Calls opendsrd's API on 127.0.0.1:port, one connection per call.
class daemon_client {
 public:
  explicit daemon_client(std::uint16_t port) : port_(port) {}

  wire::response exchange(std::string_view bytes) const {
    wire::connection c(port_);
    EXPECT_TRUE(c.send(bytes));
    auto r = c.read();
    EXPECT_TRUE(r) << "no response to: " << bytes.substr(0, 200);
    return r ? *r : wire::response{};
  }
  wire::response get(std::string_view target, const workspace* w) const {
    return exchange(wire::format_request("GET", target, w ? std::vector<std::string>{w->authorization()} : std::vector<std::string>{}));
  }
  wire::response post(const std::string& body, const workspace& w, std::string content_type = "application/json") const {
    return exchange(wire::format_request("POST", "/v3/requests", {w.authorization(), "Content-Type: " + content_type}, body));
  }
  wire::response cancel(const std::string& id, const workspace& w) const {
    return exchange(wire::format_request("DELETE", "/v3/requests/" + id, {w.authorization()}));
  }
  // Test mode: POST /admin/clock with {"advance_seconds": N} or {"set": "RFC3339"}.
  wire::response move_clock(const std::string& json) const {
    return exchange(wire::format_request("POST", "/admin/clock", {"Content-Type: application/json"}, json));
  }

  std::uint16_t port() const { return port_; }

 private:
  std::uint16_t port_;
};

// Saves the certificate the daemon serves at the URL its discovery names as dir/cert.pem, and its
// public key as dir/pub.pem.
inline void save_served_certificate(const daemon_client& daemon, const fs::path& dir) {
  auto discovery = daemon.get("/v3/discovery", nullptr);
  ASSERT_EQ(discovery.status, 200);
  const std::string url_marker = "\"processor_certificate\":\"";
  auto at = discovery.body.find(url_marker);
  ASSERT_NE(at, std::string::npos) << discovery.body;
  std::string url = discovery.body.substr(at + url_marker.size());
  url = url.substr(0, url.find('"'));
  std::string path = url.substr(url.find('/', url.find("://") + 3));
  auto certificate = daemon.get(path, nullptr);
  ASSERT_EQ(certificate.status, 200);
  ASSERT_NE(certificate.body.find("BEGIN CERTIFICATE"), std::string::npos);
  write_file(dir / "cert.pem", certificate.body);
  auto [status, out] = run("openssl x509 -in " + (dir / "cert.pem").string() + " -pubkey -noout > " + (dir / "pub.pem").string());
  ASSERT_EQ(status, 0) << out;
}

// `openssl dgst -sha256 -verify public_key` of `body` against the raw signature bytes, with any
// extra options (e.g. "-sigopt rsa_padding_mode:pss"); files are written in scratch_dir. Returns
// openssl's exit status and its output (stdout and stderr).
inline std::pair<int, std::string> openssl_verify(const fs::path& public_key, std::string_view body, std::string_view raw_signature,
                                                  const fs::path& scratch_dir, std::string_view extra_options = {}) {
  write_file(scratch_dir / "sig.bin", raw_signature);
  write_file(scratch_dir / "body.bin", body);
  return run("openssl dgst -sha256 -verify " + public_key.string() + " " + std::string(extra_options) + " -signature " +
             (scratch_dir / "sig.bin").string() + " " + (scratch_dir / "body.bin").string() + " 2>&1");
}

}  // namespace opendsr::testing
