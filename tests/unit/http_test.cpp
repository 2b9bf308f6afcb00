#include <opendsr/http.hpp>

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace opendsr {
namespace {

TEST(HttpHeaders, LookUpIgnoresCase) {
  http_headers h;
  h.add("Content-Type", "application/json");
  EXPECT_EQ(h.get("content-type"), "application/json");
  EXPECT_EQ(h.get("CONTENT-TYPE"), "application/json");
  EXPECT_TRUE(h.contains("cOnTeNt-TyPe"));
  EXPECT_FALSE(h.get("Content-Length").has_value());
  EXPECT_FALSE(h.contains("Content-Typ"));
}

TEST(HttpHeaders, AddKeepsRepeatsAndGetReturnsTheFirst) {
  http_headers h;
  h.add("Via", "a");
  h.add("via", "b");
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.get("VIA"), "a");
}

TEST(HttpHeaders, SetReplacesEverySpelling) {
  http_headers h;
  h.add("Allow", "GET");
  h.add("allow", "POST");
  h.set("ALLOW", "GET, POST");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, "ALLOW");
  EXPECT_EQ(h.get("allow"), "GET, POST");
}

TEST(HttpHeaders, EraseCountsRemovedFields) {
  http_headers h;
  h.add("A", "1");
  h.add("a", "2");
  h.add("B", "3");
  EXPECT_EQ(h.erase("A"), 2u);
  EXPECT_EQ(h.erase("A"), 0u);
  EXPECT_EQ(h.size(), 1u);
}

TEST(Iequals, ComparesAsciiCaseInsensitively) {
  EXPECT_TRUE(iequals("X-OpenDSR-Signature", "x-opendsr-signature"));
  EXPECT_FALSE(iequals("abc", "abd"));
  EXPECT_FALSE(iequals("abc", "ab"));
  EXPECT_FALSE(iequals("[", "{"));  // '[' + 32 == '{': only letters fold
}

// Refuses DELETE at the header; echoes the body of anything else.
class echo_handler final : public http_handler {
 public:
  http_head_decision on_head(const http_request& head) override {
    seen_body_at_head = head.body;
    if (head.method == "DELETE") return http_response{405, {}, "no"};
    return http_body_handler([](http_request r, http_responder respond) {
      respond(http_response{200, {}, r.method + " " + r.target + " " + r.body});
    });
  }
  http_response on_error(const error& e) override { return http_response{400, {}, e.message()}; }
  std::string seen_body_at_head = "unset";
};

// Dispatches one request; returns the response and how many times the responder was called.
std::pair<http_response, int> dispatch_once(http_handler& h, http_request request) {
  http_response out;
  int calls = 0;
  dispatch(h, std::move(request), [&](http_response r) {
    out = std::move(r);
    ++calls;
  });
  return {std::move(out), calls};
}

TEST(Dispatch, HeadSeesNoBodyAndTheBodyHandlerSeesAll) {
  echo_handler h;
  auto [out, calls] = dispatch_once(h, http_request{"POST", "/v3/requests", {}, "{}"});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(h.seen_body_at_head, "");
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(out.body, "POST /v3/requests {}");
}

TEST(Dispatch, AnEarlyResponseSkipsTheBodyHandler) {
  echo_handler h;
  auto [out, calls] = dispatch_once(h, http_request{"DELETE", "/v3/requests/x", {}, "ignored"});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(out.status, 405);
  EXPECT_EQ(out.body, "no");
}

}  // namespace
}  // namespace opendsr
