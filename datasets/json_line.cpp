// A small recursive-descent JSON parser that decodes one top-level string member of a JSON
// Lines line and only checks everything else ([JSON line member], json_line.h).
#include "datasets/json_line.h"

#include <cstdio>

namespace dpt::datasets {
namespace {

// Thrown inside the parser and turned into JsonLineError at the one entry point: unwinding
// the recursion is simpler than threading a status through every level.
struct SyntaxError {
  size_t pos;
  std::string what;
};

class Parser {
 public:
  Parser(std::string_view line, std::string_view field) : s_(line), field_(field) {}

  JsonKind parse(std::string* text, std::vector<std::string>* keys) {
    JsonKind found = JsonKind::missing;
    skip_ws();
    if (at_end() || s_[i_] != '{') fail("a line must hold one JSON object ({...})");
    ++i_;
    skip_ws();
    if (!at_end() && s_[i_] == '}') {
      ++i_;
    } else {
      for (;;) {
        skip_ws();
        if (at_end() || s_[i_] != '"') fail("expected a member name in double quotes");
        string(&key_);
        if (keys) keys->push_back(key_);
        skip_ws();
        expect(':', "after a member name");
        skip_ws();
        if (key_ == field_) {
          found = value(text);
        } else {
          value(nullptr);
        }
        skip_ws();
        if (!at_end() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        expect('}', "or ',' after an object member");
        break;
      }
    }
    skip_ws();
    if (!at_end()) fail("unexpected text after the object");
    return found;
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  [[noreturn]] void fail(const std::string& what) const { throw SyntaxError{i_, what}; }

  std::string show_here() const {
    if (at_end()) return "end of line";
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    char buf[16];
    if (c >= 0x20 && c < 0x7f) {
      std::snprintf(buf, sizeof(buf), "'%c'", c);
    } else {
      std::snprintf(buf, sizeof(buf), "byte 0x%02x", c);
    }
    return buf;
  }

  void expect(char c, const char* context) {
    if (at_end() || s_[i_] != c) {
      fail(std::string("expected '") + c + "' " + context + ", found " + show_here());
    }
    ++i_;
  }

  void skip_ws() {
    while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) {
      ++i_;
    }
  }

  JsonKind value(std::string* text) {
    if (at_end()) fail("expected a value, found end of line");
    const char c = s_[i_];
    if (c == '"') {
      string(text);
      return JsonKind::string;
    }
    if (c == '{' || c == '[') {
      container();
      return c == '{' ? JsonKind::object : JsonKind::array;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      number();
      return JsonKind::number;
    }
    if (literal("true") || literal("false")) return JsonKind::boolean;
    if (literal("null")) return JsonKind::null;
    fail("expected a value, found " + show_here());
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  void digits(const char* what) {
    const size_t start = i_;
    while (!at_end() && s_[i_] >= '0' && s_[i_] <= '9')
      ++i_;
    if (i_ == start) fail(std::string("expected digits ") + what + ", found " + show_here());
  }

  void number() {
    if (s_[i_] == '-') ++i_;
    if (!at_end() && s_[i_] == '0') {
      ++i_;  // no leading zeros: "0" stands alone
    } else {
      digits("in a number");
    }
    if (!at_end() && s_[i_] == '.') {
      ++i_;
      digits("after a decimal point");
    }
    if (!at_end() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!at_end() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits("in an exponent");
    }
  }

  // An object or array that is skipped: checked, nothing kept.
  void container() {
    if (++depth_ > kJsonMaxDepth) {
      fail("nesting deeper than " + std::to_string(kJsonMaxDepth) + " levels");
    }
    const char close = s_[i_] == '{' ? '}' : ']';
    ++i_;
    skip_ws();
    if (!at_end() && s_[i_] == close) {
      ++i_;
      --depth_;
      return;
    }
    for (;;) {
      skip_ws();
      if (close == '}') {
        if (at_end() || s_[i_] != '"') fail("expected a member name in double quotes");
        string(nullptr);
        skip_ws();
        expect(':', "after a member name");
        skip_ws();
      }
      value(nullptr);
      skip_ws();
      if (!at_end() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      expect(close, close == '}' ? "or ',' after an object member" : "or ',' after an element");
      break;
    }
    --depth_;
  }

  unsigned hex4() {
    if (s_.size() - i_ < 4) fail("\\u needs 4 hex digits");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        --i_;
        fail("\\u needs 4 hex digits, found " + show_here());
      }
    }
    return v;
  }

  static void put_utf8(std::string* out, unsigned cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // A string starting at '"'; decoded into *out when out is not null. Runs of plain bytes are
  // appended at once, so long documents cost one pass.
  void string(std::string* out) {
    ++i_;
    if (out) out->clear();
    for (;;) {
      const size_t start = i_;
      while (!at_end() && s_[i_] != '"' && s_[i_] != '\\' &&
             static_cast<unsigned char>(s_[i_]) >= 0x20) {
        ++i_;
      }
      if (out) out->append(s_.data() + start, i_ - start);
      if (at_end()) fail("unterminated string");
      if (s_[i_] == '"') {
        ++i_;
        return;
      }
      if (s_[i_] != '\\') fail("unescaped control character " + show_here() + " in a string");
      ++i_;
      if (at_end()) fail("unterminated string");
      const char e = s_[i_++];
      if (e == 'u') {
        unsigned cp = hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          i_ -= 6;
          fail("lone low surrogate \\u" + std::string(s_.substr(i_ + 2, 4)));
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          // UTF-16 surrogate pair: one code point above U+FFFF.
          const size_t high_at = i_ - 6;
          unsigned low = 0;
          if (s_.substr(i_, 2) == "\\u") {
            i_ += 2;
            low = hex4();
          }
          if (low < 0xDC00 || low > 0xDFFF) {
            i_ = high_at;
            fail("high surrogate \\u" + std::string(s_.substr(i_ + 2, 4)) +
                 " not followed by a low surrogate \\uDC00..\\uDFFF");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        if (out) put_utf8(out, cp);
        continue;
      }
      // The one-character escapes and what they stand for.
      static constexpr std::string_view kEscaped = "\"\\/bfnrt";
      static constexpr std::string_view kPlain = "\"\\/\b\f\n\r\t";
      const size_t k = kEscaped.find(e);
      if (k == std::string_view::npos) {
        --i_;
        fail("invalid escape: backslash followed by " + show_here());
      }
      if (out) out->push_back(kPlain[k]);
    }
  }

  std::string_view s_;
  std::string_view field_;
  size_t i_ = 0;
  int depth_ = 0;
  std::string key_;
};

}  // namespace

const char* json_kind_name(JsonKind kind) {
  switch (kind) {
    case JsonKind::missing:
      return "missing";
    case JsonKind::string:
      return "a string";
    case JsonKind::number:
      return "a number";
    case JsonKind::boolean:
      return "a boolean";
    case JsonKind::null:
      return "null";
    case JsonKind::object:
      return "an object";
    case JsonKind::array:
      return "an array";
  }
  return "?";
}

JsonLineMember json_line_member(std::string_view line, std::string_view field, std::string* text,
                                std::vector<std::string>* keys) {
  JsonLineMember result;
  if (text) text->clear();
  try {
    result.kind = Parser(line, field).parse(text, keys);
  } catch (const SyntaxError& e) {
    result.error = JsonLineError{e.pos + 1, e.what};
  }
  return result;
}

}  // namespace dpt::datasets
