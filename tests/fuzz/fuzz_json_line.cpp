// libFuzzer target: prepare-data's JSON Lines reader ([JSON line member]) on arbitrary lines.
// Beyond not crashing, it must agree with Boost.JSON, an independent parser, on whether a line
// is one valid JSON object and on the kind and decoded text of its member "text", wherever
// both parsers' rules coincide: valid UTF-8, no duplicate top-level names, shallow nesting,
// exponents Boost.JSON can represent.
#include <boost/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/json_line.h"

namespace {

using dpt::datasets::json_line_member;
using dpt::datasets::JsonKind;

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n;
  }
  return true;
}

size_t max_depth(std::string_view s) {
  size_t d = 0, m = 0;
  for (char c : s) {
    if (c == '{' || c == '[') m = std::max(m, ++d);
    if ((c == '}' || c == ']') && d > 0) --d;
  }
  return m;
}

JsonKind kind_of(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::string:
      return JsonKind::string;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
      return JsonKind::number;
    case boost::json::kind::bool_:
      return JsonKind::boolean;
    case boost::json::kind::null:
      return JsonKind::null;
    case boost::json::kind::object:
      return JsonKind::object;
    case boost::json::kind::array:
      return JsonKind::array;
  }
  return JsonKind::missing;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  std::string text;
  std::vector<std::string> keys;
  const auto ours = json_line_member(line, "text", &text, &keys);
  if (!valid_utf8(line) || max_depth(line) > 30 || line.find('\0') != std::string_view::npos)
    return 0;
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return 0;
  boost::json::error_code ec;
  const boost::json::value theirs = boost::json::parse(line, ec);
  // RFC 8259 sets no limit on exponents (Python's json reads 1e-999 as 0.0); Boost.JSON refuses
  // those it cannot represent. Such lines say nothing about our reader.
  if (ec == boost::json::error::exponent_overflow) return 0;
  const bool they_accept = !ec && theirs.is_object();
  if (they_accept != !ours.error) {
    std::fprintf(stderr, "json_line: ours %s, Boost.JSON %s\n",
                 ours.error ? ours.error->what.c_str() : "accepts",
                 ec ? ec.message().c_str() : (theirs.is_object() ? "accepts" : "not an object"));
    std::abort();
  }
  if (!they_accept) return 0;
  const boost::json::value* member = theirs.as_object().if_contains("text");
  const JsonKind want = member ? kind_of(*member) : JsonKind::missing;
  if (want != ours.kind) std::abort();
  if (want == JsonKind::string && std::string(member->as_string()) != text) std::abort();
  return 0;
}
