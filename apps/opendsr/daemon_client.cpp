#include "daemon_client.hpp"

// Engine internals (the tool is built with opendsr's own sources, not as an embedder).
#include "common/base64.hpp"

#include <opendsr/asio_http_client.hpp>
#include <opendsr/outbound_policy.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <thread>

namespace opendsr::app {

result<daemon_client> daemon_client::open(const daemon_client_options& options) {
  std::string base = options.url;
  while (base.ends_with('/')) base.pop_back();
  asio_http_client_options client_options;
  // The operator names the daemon, usually on this machine or its network: loopback, private
  // addresses and plain http are allowed here (never cloud metadata).
  client_options.policy.allow_http = true;
  client_options.policy.allow_loopback = true;
  client_options.policy.allow_private = true;
  client_options.max_connections_per_origin = 1;
  client_options.total_timeout = options.timeout;
  client_options.max_response_bytes = options.max_response_bytes;
  if (auto checked = check_url(client_options.policy, base + "/"); !checked)
    return error(errc::invalid_argument, "--url: " + checked.error().message());
  auto client = make_asio_http_client(std::move(client_options));
  if (!client) return std::move(client).error();
  return daemon_client(std::move(*client), std::move(base),
                       "Basic " + detail::base64_encode(options.api_key + ":" + options.api_secret));
}

result<http_client_response> daemon_client::send(std::string method, std::string_view path,
                                                 std::string_view content_type, std::string body) {
  // 429 and 503 mean the daemon did not take the request: wait as it asks and send it again.
  for (int attempt = 1;; ++attempt) {
    http_client_request request;
    request.method = method;
    request.url = base_ + std::string(path);
    request.headers.add("Authorization", authorization_);
    if (!content_type.empty()) request.headers.add("Content-Type", std::string(content_type));
    request.body = body;
    std::promise<result<http_client_response>> done;
    auto answer = done.get_future();
    client_->send(std::move(request), [&done](result<http_client_response> r) { done.set_value(std::move(r)); });
    auto r = answer.get();
    if (!r) return std::move(r).error();
    if ((r->status == 429 || r->status == 503) && attempt < 20) {
      long wait = 1;
      if (auto after = r->headers.get("Retry-After")) wait = std::clamp(std::atol(std::string(*after).c_str()), 1L, 60L);
      std::this_thread::sleep_for(std::chrono::seconds(wait));
      continue;
    }
    return r;
  }
}

error daemon_client::refusal(const http_client_response& r) {
  if (r.status == 401)
    return error(errc::unauthorized, "opendsrd refused the credentials (401): check --api-key and --api-secret");
  // errors[0].message of an OpenDSR error body, when it is one.
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(r.body, ec);
  const boost::json::object* o = ec ? nullptr : v.if_object();
  if (o && o->contains("error")) o = o->at("error").if_object();  // the wrapped form
  const boost::json::array* errors = o && o->contains("errors") ? o->at("errors").if_array() : nullptr;
  const boost::json::object* first = errors && !errors->empty() ? errors->front().if_object() : nullptr;
  const boost::json::value* message = first ? first->if_contains("message") : nullptr;
  std::string shown = message && message->is_string() ? std::string(message->get_string()) : r.body.substr(0, 300);
  std::replace_if(shown.begin(), shown.end(), [](char c) { return c < 0x20 || c == 0x7f; }, ' ');
  return error(errc::network_error, "opendsrd answered " + std::to_string(r.status) + ": " + shown);
}

std::string percent_encode_segment(std::string_view segment) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

}  // namespace opendsr::app
