#include "api/rate_limiter.hpp"

#include <opendsr/clock.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace opendsr::detail {
namespace {

using namespace std::chrono_literals;

const timestamp day_start = std::chrono::sys_days(std::chrono::year(2021) / 11 / 29);

// Admits n calls; returns how many were allowed.
int admit_n(rate_limiter& limiter, std::string_view ws, timestamp now, int n, bool new_request = false) {
  int allowed = 0;
  for (int i = 0; i < n; ++i) allowed += limiter.admit(ws, now, new_request).allowed;
  return allowed;
}

TEST(RateLimiter, AllowsAThousandCallsAMinuteAndRefusesTheNext) {
  rate_limiter limiter({});
  manual_clock clock(day_start + 10h);
  for (int i = 1; i <= 1000; ++i) {
    rate_decision d = limiter.admit("3622", clock.now(), i % 2 == 0);
    ASSERT_TRUE(d.allowed) << "call " << i;
    if (i == 500) {
      EXPECT_EQ(d.percentage_used, 50);
    }
    if (i == 1000) {
      EXPECT_EQ(d.percentage_used, 100);
    }
  }
  clock.advance(59s);
  rate_decision refused = limiter.admit("3622", clock.now(), false);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 1s);
  clock.advance(refused.retry_after);
  rate_decision again = limiter.admit("3622", clock.now(), false);
  EXPECT_TRUE(again.allowed);
  EXPECT_EQ(again.percentage_used, 0);  // this call alone: 1 of 1,000 rounds down
}

TEST(RateLimiter, RetryAfterCountsFromTheOldestCallsThatMustLeave) {
  rate_limiter limiter({});
  manual_clock clock(day_start + 10h);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 400), 400);
  clock.advance(20s);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 600), 600);
  clock.advance(10s);
  rate_decision d = limiter.admit("w", clock.now(), false);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 30s);  // the 400 of t=0 leave at t=60
  clock.advance(29s);
  EXPECT_FALSE(limiter.admit("w", clock.now(), false).allowed);
  clock.advance(1s);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 401), 400);  // the 600 of t=20 are still in
}

TEST(RateLimiter, RetryAfterIsWholeSecondsRoundedUp) {
  rate_limiter limiter({.calls_per_window = 2, .window = 60s, .new_requests_per_day = 0});
  manual_clock clock(day_start + 10h + 250ms);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 2), 2);
  clock.advance(30s);
  rate_decision d = limiter.admit("w", clock.now(), false);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 30s);  // the step of 10:00:00 leaves at 10:01:00: 29.75 s rounds up
  clock.advance(29750ms);
  EXPECT_TRUE(limiter.admit("w", clock.now(), false).allowed);
}

TEST(RateLimiter, ARefusedCallCountsAgainstNothing) {
  rate_limiter limiter({.calls_per_window = 2, .window = 60s, .new_requests_per_day = 0});
  manual_clock clock(day_start);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 2), 2);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 50), 0);
  clock.advance(60s);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 3), 2);
}

TEST(RateLimiter, NewRequestsAreCountedPerUtcDay) {
  rate_limiter limiter({.calls_per_window = 0, .window = 60s, .new_requests_per_day = 3});
  manual_clock clock(day_start + 23h + 59min);
  EXPECT_EQ(admit_n(limiter, "w", clock.now(), 3, true), 3);
  rate_decision d = limiter.admit("w", clock.now(), true);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 60s);
  EXPECT_TRUE(limiter.admit("w", clock.now(), false).allowed) << "reads are not new requests";
  clock.advance(59s + 999999us);  // 23:59:59.999999
  d = limiter.admit("w", clock.now(), true);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 1s);
  clock.advance(1us);  // 00:00:00 of the next UTC day
  rate_decision next = limiter.admit("w", clock.now(), true);
  EXPECT_TRUE(next.allowed);
  EXPECT_EQ(next.percentage_used, 33);
}

TEST(RateLimiter, PercentageIsThatOfTheCloserLimit) {
  rate_limiter limiter({.calls_per_window = 100, .window = 60s, .new_requests_per_day = 4});
  manual_clock clock(day_start);
  EXPECT_EQ(limiter.admit("w", clock.now(), true).percentage_used, 25);    // day 1/4, window 1/100
  EXPECT_EQ(limiter.admit("w", clock.now(), false).percentage_used, 25);   // day 1/4, window 2/100
}

TEST(RateLimiter, WorkspacesAreCountedApart) {
  rate_limiter limiter({.calls_per_window = 5, .window = 60s, .new_requests_per_day = 0});
  timestamp now = day_start;
  EXPECT_EQ(admit_n(limiter, "a", now, 6), 5);
  EXPECT_EQ(admit_n(limiter, "b", now, 6), 5);
}

TEST(RateLimiter, ZeroDisablesALimit) {
  rate_limiter limiter({.calls_per_window = 0, .window = 60s, .new_requests_per_day = 0});
  EXPECT_EQ(admit_n(limiter, "w", day_start, 5000, true), 5000);
  EXPECT_EQ(limiter.admit("w", day_start, true).percentage_used, 0);
}

TEST(RateLimiter, TimeGoingBackwardsNeverDoubleCounts) {
  rate_limiter limiter({.calls_per_window = 3, .window = 60s, .new_requests_per_day = 0});
  EXPECT_EQ(admit_n(limiter, "w", day_start + 120s, 3), 3);
  EXPECT_EQ(admit_n(limiter, "w", day_start, 3), 3);  // the later calls are in the "future"
  EXPECT_EQ(admit_n(limiter, "w", day_start, 1), 0);
}

TEST(RateLimiter, CountsExactlyUnderConcurrency) {
  rate_limiter limiter({});
  std::atomic<int> allowed = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] { allowed += admit_n(limiter, "w", day_start, 500); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 1000);
}

TEST(RateLimiter, ValidateRefusesAWindowUnderOneSecond) {
  EXPECT_TRUE(validate({}));
  auto r = validate({.calls_per_window = 1, .window = 0s, .new_requests_per_day = 1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
}

}  // namespace
}  // namespace opendsr::detail
