// Reads one string member out of one JSON Lines line (RFC 8259 object per line), for
// prepare-data's --text-field; the rest of the line is checked and skipped, never built.
//
// [JSON line member] What json_line_member() accepts and returns:
//   - The line holds exactly one JSON object, optionally surrounded by JSON whitespace; anything
//     after the closing '}' is a syntax error.
//   - Only top-level members are matched by name; a member of the same name inside a nested
//     object is part of that value and is skipped.
//   - A repeated member: the last one wins, as in Python's json, for its kind and its text.
//   - Strings decode every escape to UTF-8; \uXXXX surrogate pairs become one 4-byte code point,
//     and a lone surrogate (high without a low, or a low on its own) is a syntax error. Raw bytes
//     >= 0x80 pass through unchecked: the byte-level tokenizer takes bytes, valid UTF-8 or not.
//     Raw control characters (< 0x20) inside strings are a syntax error, as RFC 8259 says.
//   - Nesting deeper than kJsonMaxDepth levels is a syntax error (the parser recurses).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dpt::datasets {

inline constexpr int kJsonMaxDepth = 512;

// What the requested member held.
enum class JsonKind { missing, string, number, boolean, null, object, array };

// "missing", "a string", "a number", "a boolean", "null", "an object", "an array": reads in
// "member \"text\" is <name>".
const char* json_kind_name(JsonKind kind);

// A syntax error: `column` is the 1-based byte offset in the line where it was found.
struct JsonLineError {
  size_t column = 0;
  std::string what;
};

struct JsonLineMember {
  JsonKind kind = JsonKind::missing;  // meaningful only when !error
  std::optional<JsonLineError> error;
};

// Parses `line` ([JSON line member]) and reports what its top-level member `field` held. When
// that is a string (and the line parsed), its decoded bytes are in *text; otherwise *text holds
// nothing to use. Pass the same string for every line to reuse its capacity. With `keys`, appends
// every top-level member name in line order, duplicates included (for a "no such member" message).
JsonLineMember json_line_member(std::string_view line, std::string_view field, std::string* text,
                                std::vector<std::string>* keys = nullptr);

}  // namespace dpt::datasets
