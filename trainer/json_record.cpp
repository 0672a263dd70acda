// [JSON lines]: Boost.JSON escapes, we print numbers.
#include "trainer/json_record.h"

#include <boost/json/serialize.hpp>
#include <boost/json/string_view.hpp>
#include <cmath>
#include <cstdio>

namespace dpt::trainer {

namespace {

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;
    return 4;
  }
  return 0;
}

// JSON text is UTF-8: a byte that starts no well-formed sequence (a path in another encoding)
// becomes U+FFFD, so the line stays valid; well-formed text passes unchanged.
std::string well_formed_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string quoted(std::string_view s) {
  const std::string text = well_formed_utf8(s);
  return boost::json::serialize(boost::json::string_view(text.data(), text.size()));
}

}  // namespace

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

JsonRecord& JsonRecord::add(std::string_view key, const boost::json::array& value) {
  return raw(key, boost::json::serialize(value));
}

JsonRecord& JsonRecord::raw(std::string_view key, const std::string& json_value) {
  if (!body_.empty()) body_ += ", ";
  body_ += quoted(key);
  body_ += ": ";
  body_ += json_value;
  return *this;
}

JsonRecord& JsonRecord::add(std::string_view key, std::string_view value) {
  return raw(key, quoted(value));
}

JsonRecord& JsonRecord::add(std::string_view key, bool value) {
  return raw(key, value ? "true" : "false");
}

JsonRecord& JsonRecord::add(std::string_view key, double value) {
  return raw(key, json_number(value));
}

}  // namespace dpt::trainer
