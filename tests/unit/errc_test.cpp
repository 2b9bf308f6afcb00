#include <opendsr/errc.hpp>
#include <opendsr/result.hpp>

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace opendsr {
namespace {

TEST(Errc, EveryValueHasADistinctMessage) {
  std::set<std::string> seen;
  for (int v = static_cast<int>(errc::invalid_json); v <= static_cast<int>(errc::internal); ++v) {
    std::error_code ec = make_error_code(static_cast<errc>(v));
    EXPECT_STREQ(ec.category().name(), "opendsr");
    std::string m = ec.message();
    EXPECT_NE(m, "Unknown opendsr error.") << "errc value " << v << " has no message";
    EXPECT_TRUE(seen.insert(m).second) << "errc value " << v << " repeats a message: " << m;
  }
  EXPECT_EQ(make_error_code(static_cast<errc>(0)).message(), "Unknown opendsr error.");
}

TEST(Errc, ConvertsToErrorCode) {
  std::error_code ec = errc::not_found;
  EXPECT_EQ(ec, make_error_code(errc::not_found));
  EXPECT_NE(ec, make_error_code(errc::invalid_request));
}

TEST(Result, CarriesValueOrError) {
  result<int> ok = 3;
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 3);
  result<int> bad = error(errc::invalid_request, "regulation: must be \"gdpr\" or \"ccpa\"");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), errc::invalid_request);
  EXPECT_EQ(bad.error().message(), "regulation: must be \"gdpr\" or \"ccpa\"");
  result<void> v = errc::storage_io;
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message(), "The storage could not be read or written.");
}

result<int> propagate(result<void> step) {
  OPENDSR_TRY(step);
  return 1;
}

TEST(Result, TryPropagatesTheError) {
  EXPECT_EQ(*propagate({}), 1);
  EXPECT_EQ(propagate(errc::storage_full).error().code(), errc::storage_full);
}

}  // namespace
}  // namespace opendsr
