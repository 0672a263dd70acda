// [Typed collectives] Small structs, vectors of them, and strings over the byte collectives of
// the communicator, so that callers exchange what they mean instead of packing fields into
// integer arrays by hand. Trivially copyable values travel as their bytes: every rank runs the
// same binary, so layout and byte order agree. Reductions take structs that list their members
// (all of one arithmetic type) and reduce member by member.
// All are collective: every rank calls them in the same order ([Collective contract]), and all
// work on host memory (the MPI backend's; the NCCL backend takes device buffers).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "comm/communicator.h"

namespace dpt::comm {

template <typename T>
concept WireValue = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;

// A struct that lists its members for a reduction: `auto fields() { return std::tie(a, b, c); }`,
// every member of one arithmetic type (checked when it is reduced). Listing them, rather than
// reducing the struct's bytes, keeps padding and members of another type out of the reduction.
template <typename T>
concept FieldStruct = requires(T& t) {
  t.fields();
};

// Every rank's value, in rank order.
template <WireValue T>
std::vector<T> all_gather_value(Communicator& comm, const T& mine) {
  std::vector<T> all(static_cast<size_t>(comm.world_size()));
  comm.all_gather(&mine, all.data(), sizeof(T), DType::u8);
  return all;
}

// Every rank's vector of the same length n, concatenated in rank order (world_size * n values).
// The lengths are agreed first: ranks that differ throw RuntimeFailure on every rank instead of
// exchanging mismatched buffers.
template <WireValue T>
std::vector<T> all_gather_vector(Communicator& comm, const std::vector<T>& mine) {
  check_same_length(comm, mine.size(), "all_gather_vector");
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

// Member by member over the ranks: value.x = op over ranks of value.x, for every listed member.
template <FieldStruct T>
void all_reduce_fields(Communicator& comm, T& value, ReduceOp op) {
  auto refs = value.fields();
  using Refs = decltype(refs);
  constexpr size_t n = std::tuple_size_v<Refs>;
  using F = std::remove_reference_t<std::tuple_element_t<0, Refs>>;
  std::array<F, n> buf;
  [&]<size_t... I>(std::index_sequence<I...>) {
    static_assert((std::is_same_v<std::tuple_element_t<I, Refs>, F&> && ...),
                  "fields() must list members of one type");
    static_assert(std::is_arithmetic_v<F>, "fields() must list arithmetic members");
    ((buf[I] = std::get<I>(refs)), ...);
  }
  (std::make_index_sequence<n>{});
  comm.all_reduce(buf.data(), n, dtype_of<F>(), op);
  [&]<size_t... I>(std::index_sequence<I...>) {
    ((std::get<I>(refs) = buf[I]), ...);
  }
  (std::make_index_sequence<n>{});
}

// Collective: throws RuntimeFailure on every rank when the ranks' n differ.
void check_same_length(Communicator& comm, uint64_t n, const char* what);

// Root's string on every rank.
void broadcast_string(Communicator& comm, std::string& s, int root);
// Every rank's string, in rank order (any lengths).
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine);

}  // namespace dpt::comm
