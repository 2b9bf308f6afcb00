// RFC 3339 parsing and formatting, written by hand: GCC 12's libstdc++ has neither
// std::chrono::parse nor std::format, and the grammar is small enough to read directly.
#include <opendsr/time.hpp>

#include <cstddef>
#include <cstdint>

namespace opendsr {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// A cursor over the text. Each reader consumes what it accepts and leaves the rest.
class cursor {
 public:
  explicit cursor(std::string_view text) : text_(text) {}

  bool at_end() const noexcept { return pos_ == text_.size(); }

  // Consumes `c` (or, when given, its alternative spelling `alt`) iff it comes next.
  bool take(char c, char alt = '\0') noexcept {
    if (at_end() || (text_[pos_] != c && (alt == '\0' || text_[pos_] != alt))) return false;
    ++pos_;
    return true;
  }

  // Consumes exactly `n` decimal digits and returns their value, or -1 if fewer are there.
  std::int64_t digits(std::size_t n) noexcept {
    if (text_.size() - pos_ < n) return -1;
    std::int64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      char c = text_[pos_ + i];
      if (c < '0' || c > '9') return -1;
      v = v * 10 + (c - '0');
    }
    pos_ += n;
    return v;
  }

  // Consumes "<first_width digits><sep><2 digits><sep><2 digits>" (a date or a time of day).
  // Returns false, having consumed an unspecified part, if the text does not have that shape.
  bool fields(std::size_t first_width, char sep, std::int64_t& a, std::int64_t& b, std::int64_t& c) noexcept {
    a = digits(first_width);
    if (a < 0 || !take(sep)) return false;
    b = digits(2);
    if (b < 0 || !take(sep)) return false;
    c = digits(2);
    return c >= 0;
  }

  // Consumes one or more decimal digits; returns how many. Writes the first `keep` of them,
  // right-padded with zeros to `keep` digits, to `value`.
  std::size_t fraction(std::size_t keep, std::int64_t& value) noexcept {
    std::size_t n = 0;
    value = 0;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (n < keep) value = value * 10 + (text_[pos_] - '0');
      ++n;
      ++pos_;
    }
    for (std::size_t i = n; i < keep; ++i) value *= 10;
    return n;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

error defect(const char* what) { return error(errc::invalid_argument, what); }

// Appends `v` as at least `width` decimal digits (zero-padded). REQUIRES: v >= 0.
void append_padded(std::string& out, std::int64_t v, int width) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  for (int i = n; i < width; ++i) out.push_back('0');
  while (n > 0) out.push_back(buf[--n]);
}

}  // namespace

result<timestamp> parse_rfc3339(std::string_view text) {
  cursor in(text);
  std::int64_t year, month, day;
  if (!in.fields(4, '-', year, month, day)) return defect("expected a date as YYYY-MM-DD");
  if (month < 1 || month > 12) return defect("month out of range");
  std::chrono::year_month_day date{std::chrono::year(static_cast<int>(year)),
                                   std::chrono::month(static_cast<unsigned>(month)),
                                   std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return defect("day out of range for the month");
  timestamp midnight = std::chrono::sys_days(date);
  if (in.at_end()) return midnight;

  if (!in.take('T', 't')) return defect("expected 'T' between date and time");
  std::int64_t hour, minute, second;
  if (!in.fields(2, ':', hour, minute, second)) return defect("expected a time as HH:MM:SS");
  if (hour > 23) return defect("hour out of range");
  if (minute > 59) return defect("minute out of range");
  if (second > 60) return defect("second out of range");

  std::int64_t micros = 0;
  if (in.take('.')) {
    std::size_t n = in.fraction(6, micros);
    if (n == 0) return defect("expected digits after the decimal point");
    if (n > 9) return defect("more than 9 fraction digits");
  }

  minutes offset{0};
  if (!in.take('Z', 'z')) {
    int sign = in.take('+') ? 1 : in.take('-') ? -1 : 0;
    if (sign == 0) return defect("expected a UTC offset ('Z' or +HH:MM)");
    std::int64_t off_h = in.digits(2);
    if (off_h < 0 || !in.take(':')) return defect("expected a UTC offset as +HH:MM");
    std::int64_t off_m = in.digits(2);
    if (off_m < 0) return defect("expected a UTC offset as +HH:MM");
    if (off_h > 23 || off_m > 59) return defect("UTC offset out of range");
    offset = minutes(sign * (off_h * 60 + off_m));
  }
  if (!in.at_end()) return defect("unexpected text after the timestamp");

  timestamp local_minute = midnight + hours(hour) + minutes(minute);
  timestamp utc_minute = local_minute - offset;
  // An offset can carry 0000-01-01 or 9999-12-31 out of the four-digit years, which
  // format_rfc3339 could not write back.
  constexpr auto first_day = std::chrono::sys_days(std::chrono::year(0) / 1 / 1);
  constexpr auto after_last_day = std::chrono::sys_days(std::chrono::year(10000) / 1 / 1);
  if (utc_minute < first_day || utc_minute >= after_last_day) return defect("instant before year 0000 or after 9999 in UTC");
  if (second == 60) {
    // RFC 3339 places a leap second at 23:59:60 UTC only; it is clamped into the same second
    // as :59, so ordering within the day is kept and no value overflows into the next day.
    if (utc_minute - floor_midnight(utc_minute) != hours(23) + minutes(59))
      return defect("a leap second is only valid at 23:59:60 UTC");
    return utc_minute + seconds(59) + microseconds(999'999);
  }
  return utc_minute + seconds(second) + microseconds(micros);
}

std::string format_rfc3339(timestamp t) {
  const auto day = std::chrono::floor<days>(t);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss<microseconds> time{t - day};

  std::string out;
  out.reserve(32);
  int year = static_cast<int>(date.year());
  if (year < 0) out.push_back('-');
  append_padded(out, year < 0 ? -static_cast<std::int64_t>(year) : year, 4);
  out.push_back('-');
  append_padded(out, static_cast<unsigned>(date.month()), 2);
  out.push_back('-');
  append_padded(out, static_cast<unsigned>(date.day()), 2);
  out.push_back('T');
  append_padded(out, time.hours().count(), 2);
  out.push_back(':');
  append_padded(out, time.minutes().count(), 2);
  out.push_back(':');
  append_padded(out, time.seconds().count(), 2);
  if (time.subseconds().count() != 0) {
    out.push_back('.');
    append_padded(out, time.subseconds().count(), 6);
  }
  out.push_back('Z');
  return out;
}

}  // namespace opendsr
