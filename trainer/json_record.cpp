// [JSON lines]: Boost.JSON escapes, we print numbers.
#include "trainer/json_record.h"

#include <boost/json/serialize.hpp>
#include <boost/json/string_view.hpp>
#include <cmath>
#include <cstdio>

namespace dpt::trainer {

namespace {
std::string quoted(std::string_view s) {
  return boost::json::serialize(boost::json::string_view(s.data(), s.size()));
}
}  // namespace

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
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
