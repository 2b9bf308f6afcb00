#include <opendsr/time.hpp>

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace opendsr {
namespace {

using namespace std::chrono;

timestamp utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0, long us = 0) {
  return sys_days(year(y) / month(mo) / day(d)) + hours(h) + minutes(mi) + seconds(s) + microseconds(us);
}

timestamp parsed(std::string_view text) {
  auto r = parse_rfc3339(text);
  EXPECT_TRUE(r) << text << ": " << (r ? "" : r.error().message());
  return r ? *r : timestamp{};
}

TEST(ParseRfc3339, UtcDateTime) {
  EXPECT_EQ(parsed("2021-11-01T15:00:00Z"), utc(2021, 11, 1, 15));
  EXPECT_EQ(parsed("2021-11-01t15:00:00z"), utc(2021, 11, 1, 15));
}

TEST(ParseRfc3339, NumericOffsetsConvertToUtc) {
  EXPECT_EQ(parsed("2021-11-01T15:00:00+02:00"), utc(2021, 11, 1, 13));
  EXPECT_EQ(parsed("2021-11-01T15:00:00-05:30"), utc(2021, 11, 1, 20, 30));
  EXPECT_EQ(parsed("2021-11-01T15:00:00+00:00"), utc(2021, 11, 1, 15));
  EXPECT_EQ(parsed("2021-11-01T15:00:00-00:00"), utc(2021, 11, 1, 15));
  // The offset may carry the instant into another day, month and year.
  EXPECT_EQ(parsed("2021-12-31T23:30:00-01:00"), utc(2022, 1, 1, 0, 30));
  EXPECT_EQ(parsed("2022-01-01T00:30:00+23:59"), utc(2021, 12, 31, 0, 31));
}

TEST(ParseRfc3339, FractionsUpToNineDigitsTruncatedToMicroseconds) {
  EXPECT_EQ(parsed("2021-11-29T18:16:24.5Z"), utc(2021, 11, 29, 18, 16, 24, 500000));
  EXPECT_EQ(parsed("2021-11-29T18:16:24.556805Z"), utc(2021, 11, 29, 18, 16, 24, 556805));
  EXPECT_EQ(parsed("2021-11-29T18:16:24.5568051Z"), utc(2021, 11, 29, 18, 16, 24, 556805));
  EXPECT_EQ(parsed("2021-11-29T18:16:24.999999999Z"), utc(2021, 11, 29, 18, 16, 24, 999999));
  EXPECT_EQ(parsed("2021-11-29T18:16:24.000001+01:00"), utc(2021, 11, 29, 17, 16, 24, 1));
}

TEST(ParseRfc3339, DateOnlyMeansMidnightUtc) {
  EXPECT_EQ(parsed("2022-01-05"), utc(2022, 1, 5));
  EXPECT_EQ(parsed("2024-02-29"), utc(2024, 2, 29));
}

TEST(ParseRfc3339, LeapSecondClampsToLastMicrosecondOfTheMinute) {
  EXPECT_EQ(parsed("2016-12-31T23:59:60Z"), utc(2016, 12, 31, 23, 59, 59, 999999));
  EXPECT_EQ(parsed("2016-12-31T23:59:60.5Z"), utc(2016, 12, 31, 23, 59, 59, 999999));
  EXPECT_EQ(parsed("2016-12-31T18:59:60-05:00"), utc(2016, 12, 31, 23, 59, 59, 999999));
}

TEST(ParseRfc3339, Extremes) {
  EXPECT_EQ(parsed("0000-01-01T00:00:00Z"), utc(0, 1, 1));
  EXPECT_EQ(parsed("9999-12-31T23:59:59.999999Z"), utc(9999, 12, 31, 23, 59, 59, 999999));
  EXPECT_EQ(parsed("0000-01-01T01:30:00+01:00"), utc(0, 1, 1, 0, 30));
  EXPECT_EQ(parsed("9999-12-31T22:30:00-01:00"), utc(9999, 12, 31, 23, 30));
}

class ParseRfc3339Rejects : public ::testing::TestWithParam<std::string_view> {};

TEST_P(ParseRfc3339Rejects, WithInvalidArgumentAndAMessage) {
  auto r = parse_rfc3339(GetParam());
  ASSERT_FALSE(r) << GetParam() << " parsed as " << format_rfc3339(*r);
  EXPECT_EQ(r.error().code(), errc::invalid_argument);
  EXPECT_FALSE(r.error().message().empty());
  EXPECT_NE(r.error().message(), make_error_code(errc::invalid_argument).message());
}

INSTANTIATE_TEST_SUITE_P(Malformed, ParseRfc3339Rejects, ::testing::Values(
    "", "2021", "2021-11", "21-11-01", "2021-1-01", "2021-11-1", "2021/11/01", "20211101",
    "2021-11-01T", "2021-11-01T15", "2021-11-01T15:00", "2021-11-01T15:00Z", "2021-11-01 15:00:00Z",
    "2021-11-01T15:00:00", "2021-11-01T15:00:00+02", "2021-11-01T15:00:00+0200", "2021-11-01T15:00:00.Z",
    "2021-11-01T15:00:00,5Z", "2021-11-01T15:00:00.1234567890Z", "2021-11-01T15:00:00ZZ",
    "2021-11-01T15:00:00Z ", " 2021-11-01T15:00:00Z", "2021-11-01x", "2021-11-01T15:00:00UTC",
    "+2021-11-01", "-001-11-01", "２０２１-11-01"));

INSTANTIATE_TEST_SUITE_P(OutOfRange, ParseRfc3339Rejects, ::testing::Values(
    "2021-13-01", "2021-00-01", "2021-01-00", "2021-01-32", "2021-02-29", "2021-02-30", "2021-04-31",
    "1900-02-29", "2021-11-01T24:00:00Z", "2021-11-01T23:60:00Z", "2021-11-01T23:59:61Z",
    "2021-11-01T15:00:00+24:00", "2021-11-01T15:00:00+01:60", "2021-11-01T12:00:60Z",
    "2016-12-31T23:59:60+01:00", "0000-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"));

TEST(FormatRfc3339, WholeSecondsWithoutFraction) {
  EXPECT_EQ(format_rfc3339(utc(2021, 12, 9)), "2021-12-09T00:00:00Z");
  EXPECT_EQ(format_rfc3339(utc(1970, 1, 1)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(utc(9999, 12, 31, 23, 59, 59)), "9999-12-31T23:59:59Z");
}

TEST(FormatRfc3339, SixFractionDigitsOtherwise) {
  EXPECT_EQ(format_rfc3339(utc(2021, 11, 29, 18, 16, 24, 556805)), "2021-11-29T18:16:24.556805Z");
  EXPECT_EQ(format_rfc3339(utc(2021, 11, 29, 18, 16, 24, 500000)), "2021-11-29T18:16:24.500000Z");
  EXPECT_EQ(format_rfc3339(utc(2021, 11, 29, 18, 16, 24, 1)), "2021-11-29T18:16:24.000001Z");
}

TEST(FormatRfc3339, BeforeTheEpochAndSmallYears) {
  EXPECT_EQ(format_rfc3339(utc(1969, 12, 31, 23, 59, 59, 999999)), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339(utc(33, 3, 4, 5, 6, 7)), "0033-03-04T05:06:07Z");
}

TEST(Rfc3339, FormatThenParseIsIdentity) {
  for (timestamp t : {utc(2021, 11, 29, 18, 16, 24, 556805), utc(2000, 2, 29), utc(1969, 7, 20, 20, 17, 40, 7)})
    EXPECT_EQ(parsed(format_rfc3339(t)), t);
}

TEST(Midnight, FloorAndCeil) {
  EXPECT_EQ(floor_midnight(utc(2021, 11, 29, 18, 16)), utc(2021, 11, 29));
  EXPECT_EQ(ceil_midnight(utc(2021, 11, 29, 18, 16)), utc(2021, 11, 30));
  EXPECT_EQ(ceil_midnight(utc(2021, 11, 29)), utc(2021, 11, 29));
}

}  // namespace
}  // namespace opendsr
