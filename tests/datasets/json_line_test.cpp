// [JSON line member] (datasets/json_line.h): every escape decodes to the right UTF-8 bytes, the
// member is found among values of every type, and each malformed line is refused at its column.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "datasets/json_line.h"

namespace dpt::datasets {
namespace {

using namespace std::string_literals;

// Bytes printed as hex, so a failed comparison of UTF-8 shows which byte differs.
std::string hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof(buf), "%02x ", c);
    out += buf;
  }
  return out;
}

struct StringCase {
  const char* name;
  std::string line;
  std::string want;  // the decoded member "text"
};

TEST(JsonLine, DecodesEveryEscapeToUtf8AndPassesRawBytesThrough) {
  const std::vector<StringCase> cases = {
      {"plain", R"({"text": "hello world"})", "hello world"},
      {"empty", R"({"text": ""})", ""},
      {"quote", R"({"text": "a\"b"})", "a\"b"},
      {"backslash", R"({"text": "a\\b"})", "a\\b"},
      {"slash", R"({"text": "a\/b"})", "a/b"},
      {"backspace", R"({"text": "a\bb"})", "a\bb"},
      {"form feed", R"({"text": "a\fb"})", "a\fb"},
      {"newline", R"({"text": "a\nb"})", "a\nb"},
      {"carriage return", R"({"text": "a\rb"})", "a\rb"},
      {"tab", R"({"text": "a\tb"})", "a\tb"},
      {"all one-character escapes in a row", R"({"text": "\"\\\/\b\f\n\r\t"})", "\"\\/\b\f\n\r\t"},
      {"\\u ASCII", R"({"text": "\u0041\u007a"})", "Az"},
      {"\\u0000 is a NUL byte", R"({"text": "a\u0000b"})", "a\0b"s},
      {"\\u control character", R"({"text": "\u0001\u001f"})", "\x01\x1f"},
      {"\\u00e9 two bytes", R"({"text": "caf\u00e9"})", "caf\xC3\xA9"},
      {"\\u00E9 upper-case hex", R"({"text": "caf\u00E9"})", "caf\xC3\xA9"},
      {"\\u07ff last two-byte", R"({"text": "\u07ff"})", "\xDF\xBF"},
      {"\\u0800 first three-byte", R"({"text": "\u0800"})", "\xE0\xA0\x80"},
      {"\\u20ac euro sign", R"({"text": "\u20ac"})", "\xE2\x82\xAC"},
      {"\\uffff last BMP", R"({"text": "\uffff"})", "\xEF\xBF\xBF"},
      {"surrogate pair emoji U+1F600", R"({"text": "\ud83d\ude00"})", "\xF0\x9F\x98\x80"},
      {"surrogate pair upper-case", R"({"text": "\uD83D\uDE00!"})", "\xF0\x9F\x98\x80!"},
      {"surrogate pair first above BMP U+10000", R"({"text": "\ud800\udc00"})", "\xF0\x90\x80\x80"},
      {"surrogate pair last code point U+10FFFF", R"({"text": "\udbff\udfff"})",
       "\xF4\x8F\xBF\xBF"},
      {"raw UTF-8 passes through", "{\"text\": \"caf\xC3\xA9 \xF0\x9F\x98\x80\"}",
       "caf\xC3\xA9 \xF0\x9F\x98\x80"},
      {"raw invalid UTF-8 passes through (byte tokenizer)", "{\"text\": \"\xFF\xC3\"}", "\xFF\xC3"},
      {"raw DEL (0x7f) is not a control character", "{\"text\": \"a\x7f\"}", "a\x7f"},
      {"escaped and raw mixed", "{\"text\": \"\\u00e9\xC3\xA9\\n\"}", "\xC3\xA9\xC3\xA9\n"},
      {"whitespace around every token", " \t{ \"text\" :\t\"x\" } \r", "x"},
      {"key spelled with an escape", R"({"t\u0065xt": "escaped key"})", "escaped key"},
  };
  std::string text;
  for (const StringCase& c : cases) {
    SCOPED_TRACE(c.name);
    const JsonLineMember m = json_line_member(c.line, "text", &text);
    ASSERT_FALSE(m.error) << "column " << m.error->column << ": " << m.error->what;
    EXPECT_EQ(m.kind, JsonKind::string);
    EXPECT_EQ(hex(text), hex(c.want));
  }
}

TEST(JsonLine, FindsTopLevelMemberAmongValuesOfEveryType) {
  const std::vector<StringCase> cases = {
      {"first", R"({"text": "doc", "id": 1})", "doc"},
      {"last", R"({"id": 1, "text": "doc"})", "doc"},
      {"every type before it",
       R"({"s": "x", "i": -12, "f": 3.25e-2, "g": 0, "h": 1E+9, "t": true, "n": false, )"
       R"("z": null, "e": {}, "a": [], "text": "doc"})",
       "doc"},
      {"nested object holding a \"text\" member, braces and quotes in strings",
       R"({"meta": {"text": "inner {\"}", "x": {"y": ["]", "}", "\"{"]}}, "text": "doc"})", "doc"},
      {"arrays of every type around it",
       R"({"a": [1, -0.5, "]\"[", true, false, null, {"text": "no"}, [[]]], "text": "doc", )"
       R"("b": [{"c": [{"d": "}}]]"}]}]})",
       "doc"},
      {"no whitespace at all", R"({"a":[1,{"b":"c"}],"text":"doc","d":null})", "doc"},
  };
  std::string text;
  for (const StringCase& c : cases) {
    SCOPED_TRACE(c.name);
    const JsonLineMember m = json_line_member(c.line, "text", &text);
    ASSERT_FALSE(m.error) << "column " << m.error->column << ": " << m.error->what;
    EXPECT_EQ(m.kind, JsonKind::string);
    EXPECT_EQ(text, c.want);
  }
}

TEST(JsonLine, ReadsTheNamedFieldAndNotAnother) {
  std::string text;
  const std::string line = R"({"text": "not this", "content": "this"})";
  const JsonLineMember m = json_line_member(line, "content", &text);
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.kind, JsonKind::string);
  EXPECT_EQ(text, "this");
}

struct KindCase {
  const char* name;
  std::string line;
  JsonKind want;
};

TEST(JsonLine, ReportsWhatAMissingOrNonStringMemberHeld) {
  const std::vector<KindCase> cases = {
      {"empty object", "{}", JsonKind::missing},
      {"empty object with spaces", "{ \t }", JsonKind::missing},
      {"other members only", R"({"body": "x", "id": 2})", JsonKind::missing},
      {"only nested \"text\" members count as missing", R"({"meta": {"text": "inner"}})",
       JsonKind::missing},
      {"\"text\" only as an array element", R"({"a": ["text", {"text": "x"}]})", JsonKind::missing},
      {"name differs in case", R"({"Text": "x"})", JsonKind::missing},
      {"name is a prefix", R"({"tex": "x", "texts": "y"})", JsonKind::missing},
      {"integer", R"({"text": 42})", JsonKind::number},
      {"negative exponent number", R"({"text": -1.5e-3})", JsonKind::number},
      {"true", R"({"text": true})", JsonKind::boolean},
      {"false", R"({"text": false})", JsonKind::boolean},
      {"null", R"({"text": null})", JsonKind::null},
      {"object", R"({"text": {"text": "inner"}})", JsonKind::object},
      {"empty object value", R"({"text": {}})", JsonKind::object},
      {"array", R"({"text": ["two"]})", JsonKind::array},
      {"empty array", R"({"text": []})", JsonKind::array},
  };
  std::string text;
  for (const KindCase& c : cases) {
    SCOPED_TRACE(c.name);
    const JsonLineMember m = json_line_member(c.line, "text", &text);
    ASSERT_FALSE(m.error) << "column " << m.error->column << ": " << m.error->what;
    EXPECT_EQ(m.kind, c.want) << json_kind_name(m.kind) << " vs " << json_kind_name(c.want);
  }
}

// The tool's message reads "member \"text\" is <name>, not a string".
TEST(JsonLine, KindNamesReadInAMessage) {
  EXPECT_STREQ(json_kind_name(JsonKind::missing), "missing");
  EXPECT_STREQ(json_kind_name(JsonKind::string), "a string");
  EXPECT_STREQ(json_kind_name(JsonKind::number), "a number");
  EXPECT_STREQ(json_kind_name(JsonKind::boolean), "a boolean");
  EXPECT_STREQ(json_kind_name(JsonKind::null), "null");
  EXPECT_STREQ(json_kind_name(JsonKind::object), "an object");
  EXPECT_STREQ(json_kind_name(JsonKind::array), "an array");
}

// Documented in [JSON line member]: the last of repeated members wins, as in Python's json,
// for both its kind and its text.
TEST(JsonLine, LastOfRepeatedMembersWins) {
  std::string text;
  JsonLineMember m =
      json_line_member(R"({"text": "first", "id": 1, "text": "second"})", "text", &text);
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.kind, JsonKind::string);
  EXPECT_EQ(text, "second");

  m = json_line_member(R"({"text": "first", "text": 5})", "text", &text);
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.kind, JsonKind::number);

  m = json_line_member(R"({"text": null, "text": "late"})", "text", &text);
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.kind, JsonKind::string);
  EXPECT_EQ(text, "late");
}

// prepare-data reuses one string for every line of a file.
TEST(JsonLine, ReusedTextHoldsOnlyTheCurrentLine) {
  std::string text;
  ASSERT_FALSE(json_line_member(R"({"text": "a long first document"})", "text", &text).error);
  ASSERT_FALSE(json_line_member(R"({"text": "b"})", "text", &text).error);
  EXPECT_EQ(text, "b");
  ASSERT_FALSE(json_line_member(R"({"text": ""})", "text", &text).error);
  EXPECT_EQ(text, "");
}

TEST(JsonLine, CollectsTopLevelMemberNamesInLineOrder) {
  std::string text;
  std::vector<std::string> keys;
  const JsonLineMember m = json_line_member(R"({"b": 1, "a": {"inner": 2}, "b": [3], "\u00e9": 4})",
                                            "text", &text, &keys);
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.kind, JsonKind::missing);
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "a", "b", "\xC3\xA9"}));
}

struct ErrorCase {
  const char* name;
  std::string line;
  size_t column;      // 1-based byte column
  const char* words;  // a part of the description
};

TEST(JsonLine, RefusesMalformedLinesAtTheirByteColumn) {
  const std::vector<ErrorCase> cases = {
      // Not one object.
      {"empty line", "", 1, "a line must hold one JSON object"},
      {"array at top level", R"(["text"])", 1, "a line must hold one JSON object"},
      {"string at top level", R"("text")", 1, "a line must hold one JSON object"},
      {"bare word", "text", 1, "a line must hold one JSON object"},
      // Truncated lines.
      {"only an open brace", "{", 2, "expected a member name"},
      {"truncated in a member name", R"({"te)", 5, "unterminated string"},
      {"truncated before the colon", R"({"text")", 8, "expected ':' after a member name"},
      {"truncated before the value", R"({"text": )", 10, "expected a value, found end of line"},
      {"truncated inside the string", R"({"text": "abc)", 14, "unterminated string"},
      {"truncated after a backslash", R"({"text": "abc\)", 15, "unterminated string"},
      {"truncated in \\u", R"({"text": "\u00)", 13, "\\u needs 4 hex digits"},
      {"truncated before the closing brace", R"({"text": "abc")", 15,
       "expected '}' or ',' after an object member, found end of line"},
      {"truncated in a nested array", R"({"a": [1, 2)", 12, "expected ']' or ',' after an element"},
      {"truncated in a nested object", R"({"a": {"b": 1)", 14,
       "expected '}' or ',' after an object member"},
      {"truncated literal", R"({"text": tru)", 10, "expected a value, found 't'"},
      // Trailing garbage.
      {"text after the object", R"({"text": "a"} x)", 15, "unexpected text after the object"},
      {"second object", R"({"text": "a"}{"text": "b"})", 14, "unexpected text after the object"},
      {"extra closing brace", R"({"text": "a"}})", 14, "unexpected text after the object"},
      {"trailing comma", R"({"text": "one",})", 16, "expected a member name in double quotes"},
      {"trailing comma in an array", R"({"a": [1,], "text": "x"})", 10,
       "expected a value, found ']'"},
      // Control characters must be escaped inside strings, skipped ones included.
      {"raw tab in the member", "{\"text\": \"a\tb\"}", 12,
       "unescaped control character byte 0x09 in a string"},
      {"raw 0x01 in the member", "{\"text\": \"a\x01\"}", 12,
       "unescaped control character byte 0x01"},
      {"raw 0x1f after UTF-8 (columns count bytes)", "{\"text\": \"\xC3\xA9\x1f\"}", 13,
       "unescaped control character byte 0x1f"},
      {"raw control character in a skipped string", "{\"a\": \"\x02\", \"text\": \"x\"}", 8,
       "unescaped control character byte 0x02"},
      {"raw control character in a key", "{\"te\x03xt\": \"x\"}", 5,
       "unescaped control character byte 0x03"},
      // Escapes.
      {"unknown escape", R"({"text": "a\x"})", 13, "invalid escape: backslash followed by 'x'"},
      {"single-quote escape", R"({"text": "a\'"})", 13, "invalid escape"},
      {"bad hex digit", R"({"text": "\u00g1"})", 15, "\\u needs 4 hex digits, found 'g'"},
      // Lone surrogates (no code point to encode) are refused at their backslash.
      {"lone low surrogate", R"({"text": "a\ude00"})", 12, "lone low surrogate \\ude00"},
      {"high surrogate then text", R"({"text": "a\ud83dx"})", 12,
       "high surrogate \\ud83d not followed by a low surrogate"},
      {"high surrogate at the end of the string", R"({"text": "\ud83d"})", 11,
       "high surrogate \\ud83d"},
      {"high surrogate then a non-surrogate", R"({"text": "\ud83d\u0041"})", 11,
       "high surrogate \\ud83d"},
      {"two high surrogates", R"({"text": "\ud83d\ud83d"})", 11, "high surrogate \\ud83d"},
      {"high surrogate then another escape", R"({"text": "\ud83d\n"})", 11,
       "high surrogate \\ud83d"},
      {"reversed pair", R"({"text": "\ude00\ud83d"})", 11, "lone low surrogate"},
      {"lone surrogate in a skipped string", R"({"a": "\udc00", "text": "x"})", 8,
       "lone low surrogate"},
      // Numbers and literals.
      {"leading zero", R"({"text": 01})", 11, "expected '}' or ','"},
      {"minus alone", R"({"text": -})", 11, "expected digits in a number"},
      {"plus sign", R"({"text": +1})", 10, "expected a value, found '+'"},
      {"no digits after the point", R"({"text": 1.})", 12, "expected digits after a decimal point"},
      {"no digits in the exponent", R"({"text": 1e+})", 13, "expected digits in an exponent"},
      {"leading point", R"({"text": .5})", 10, "expected a value, found '.'"},
      {"capitalized literal", R"({"text": True})", 10, "expected a value, found 'T'"},
      {"NaN", R"({"text": NaN})", 10, "expected a value, found 'N'"},
      // Object syntax.
      {"single-quoted name", R"({'text': "x"})", 2, "expected a member name in double quotes"},
      {"unquoted name", R"({text: "x"})", 2, "expected a member name in double quotes"},
      {"missing colon", R"({"text" "x"})", 9, "expected ':' after a member name, found '\"'"},
      {"missing comma", R"({"a": 1 "text": "x"})", 9, "expected '}' or ','"},
      {"array closed by a brace", R"({"a": [1}, "text": "x"})", 9,
       "expected ']' or ',' after an element, found '}'"},
      {"non-ASCII byte where a value belongs", "{\"text\": \xC3\xA9}", 10,
       "expected a value, found byte 0xc3"},
  };
  std::string text;
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    const JsonLineMember m = json_line_member(c.line, "text", &text);
    ASSERT_TRUE(m.error) << "accepted as " << json_kind_name(m.kind);
    EXPECT_EQ(m.error->column, c.column) << m.error->what;
    EXPECT_NE(m.error->what.find(c.words), std::string::npos) << m.error->what;
  }
}

// Each level of a skipped value is one level of recursion; 512 are allowed, 513 refused.
TEST(JsonLine, AcceptsNestingTo512LevelsAndRefusesDeeper) {
  auto nested = [](int depth) {
    return R"({"a": )" + std::string(depth, '[') + std::string(depth, ']') + R"(, "text": "x"})";
  };
  std::string text;
  JsonLineMember m = json_line_member(nested(kJsonMaxDepth), "text", &text);
  ASSERT_FALSE(m.error) << m.error->what;
  EXPECT_EQ(text, "x");

  m = json_line_member(nested(kJsonMaxDepth + 1), "text", &text);
  ASSERT_TRUE(m.error);
  EXPECT_EQ(m.error->column, 7u + kJsonMaxDepth);  // at the 513th '['
  EXPECT_NE(m.error->what.find("nesting deeper than 512 levels"), std::string::npos);
}

}  // namespace
}  // namespace dpt::datasets
