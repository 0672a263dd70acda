// [Typed collectives] Small structs, vectors of them, and strings over the byte collectives of
// the communicator, so that callers exchange what they mean instead of packing fields into
// integer arrays by hand. Trivially copyable values travel as their bytes: every rank runs the
// same binary, so layout and byte order agree. Reductions take structs whose members are all of
// one arithmetic type (named `Field` in the struct) and reduce member by member.
// All are collective: every rank calls them in the same order ([Collective contract]).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/communicator.h"

namespace dpt::comm {

template <typename T>
concept WireValue = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;

// A struct of `Field` members and nothing else (no padding): reducible member by member.
template <typename T>
concept FieldStruct = WireValue<T> && std::is_standard_layout_v<T> && requires {
  typename T::Field;
} && std::is_arithmetic_v<typename T::Field> && sizeof(T) % sizeof(typename T::Field) == 0;

// Every rank's value, in rank order.
template <WireValue T>
std::vector<T> all_gather_value(Communicator& comm, const T& mine) {
  std::vector<T> all(static_cast<size_t>(comm.world_size()));
  comm.all_gather(&mine, all.data(), sizeof(T), DType::u8);
  return all;
}

// Every rank's vector of the same length n, concatenated in rank order (world_size * n values).
template <WireValue T>
std::vector<T> all_gather_vector(Communicator& comm, const std::vector<T>& mine) {
  std::vector<T> all(mine.size() * static_cast<size_t>(comm.world_size()));
  if (!mine.empty()) comm.all_gather(mine.data(), all.data(), mine.size() * sizeof(T), DType::u8);
  return all;
}

// Root's value on every rank.
template <WireValue T>
void broadcast_value(Communicator& comm, T& value, int root) {
  comm.broadcast(&value, sizeof(T), DType::u8, root);
}

// Root's vector, its length included, on every rank.
template <WireValue T>
void broadcast_vector(Communicator& comm, std::vector<T>& v, int root) {
  uint64_t n = v.size();
  broadcast_value(comm, n, root);
  v.resize(static_cast<size_t>(n));
  if (n > 0) comm.broadcast(v.data(), v.size() * sizeof(T), DType::u8, root);
}

// Member by member over the ranks: value.x = op over ranks of value.x, for every member x.
template <FieldStruct T>
void all_reduce_fields(Communicator& comm, T& value, ReduceOp op) {
  using F = typename T::Field;
  std::array<F, sizeof(T) / sizeof(F)> fields;
  std::memcpy(fields.data(), static_cast<const void*>(&value), sizeof(T));
  comm.all_reduce(fields.data(), fields.size(), dtype_of<F>(), op);
  std::memcpy(static_cast<void*>(&value), fields.data(), sizeof(T));
}

// Root's string on every rank.
void broadcast_string(Communicator& comm, std::string& s, int root);
// Every rank's string, in rank order (any lengths).
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine);

}  // namespace dpt::comm
