// A minimal blocking HTTP/1.1 client over a loopback TCP socket, for the black-box tests and the
// load driver: it writes raw bytes (so tests can send malformed or partial requests) and reads
// one response framed by Content-Length (opendsrd always sends one).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace opendsr::wire {

struct response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `name` (ASCII case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return v;
    }
    return std::nullopt;
  }
};

class connection {
 public:
  // Connects to 127.0.0.1:port; throws std::runtime_error if it cannot.
  explicit connection(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect to port " + std::to_string(port));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Returns false if the peer closed the connection.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response; nullopt if the connection closed (or `timeout` passed) before a whole
  // one arrived.
  std::optional<response> read(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(timeout)) return std::nullopt;
    response r;
    std::string_view head(buffer_.data(), head_end);
    std::size_t line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    r.status = std::stoi(std::string(status_line.substr(9, 3)));
    std::size_t length = 0;
    while (line_end != std::string_view::npos) {
      head.remove_prefix(line_end + 2);
      line_end = head.find("\r\n");
      std::string_view line = head.substr(0, line_end);
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string value(line.substr(colon + 1));
      value.erase(0, value.find_first_not_of(' '));
      r.headers.emplace_back(std::string(line.substr(0, colon)), value);
    }
    if (auto cl = r.header("Content-Length")) length = std::stoul(*cl);
    const std::size_t total = head_end + 4 + length;
    while (buffer_.size() < total)
      if (!fill(timeout)) return std::nullopt;
    r.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, total);
    return r;
  }

  // True iff the peer closes the connection (EOF or reset) within `timeout`, discarding any data.
  bool closed_within(std::chrono::milliseconds timeout) {
    buffer_.clear();
    while (fill(timeout)) buffer_.clear();
    return eof_;
  }

 private:
  bool fill(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char chunk[16384];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  std::string buffer_;
  bool eof_ = false;
};

// Serializes a request with Host, Content-Length (when there is a body) and the given extra
// header lines ("Name: value").
inline std::string format_request(std::string_view method, std::string_view target, const std::vector<std::string>& headers,
                                  std::string_view body = {}) {
  std::string out = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) out += h + "\r\n";
  if (!body.empty() || method == "POST") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace opendsr::wire
