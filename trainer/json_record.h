// [JSON lines] One JSON object on one line, the form of every record the metrics file holds.
// Keys and strings are escaped by Boost.JSON's serializer (quotes, backslashes, control
// characters), after bytes that are not well-formed UTF-8 (a path in another encoding) became
// U+FFFD, so any path or message makes a valid line. Numbers are printed here: floating values
// with %.9g (9 significant digits, plain for ordinary magnitudes and with an exponent below 1e-4
// or from 1e9), so the same float always prints the same text and two runs compare as strings,
// and null for NaN and infinities (JSON has neither). Boost.JSON 1.81 prints every double with
// an exponent (0.001 as 1E-3), valid but hard to read in a file people look at.
#pragma once

#include <boost/json.hpp>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace dpt::trainer {

class JsonRecord {
 public:
  JsonRecord& add(std::string_view key, std::string_view value);
  JsonRecord& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  JsonRecord& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  JsonRecord& add(std::string_view key, bool value);
  JsonRecord& add(std::string_view key, double value);
  template <std::integral T>
  requires(!std::same_as<T, bool>) JsonRecord& add(std::string_view key, T value) {
    return raw(key, std::to_string(value));
  }

  // An array of integers or strings (serialized by Boost.JSON: integers print exactly).
  JsonRecord& add(std::string_view key, const boost::json::array& value);

  // The object, without a newline: {"step": 3, "loss": 2.71828183}
  std::string text() const { return "{" + body_ + "}"; }

 private:
  JsonRecord& raw(std::string_view key, const std::string& json_value);
  std::string body_;
};

// A JSON number with 9 significant digits, or null for NaN and infinities.
std::string json_number(double v);

}  // namespace dpt::trainer
