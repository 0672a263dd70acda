// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78, init ~0, final xor ~0): the
// iSCSI/ext4 CRC, used to checksum multi-GB checkpoint files, so it has a fast hardware path.
//
// [CRC-32C contract]
// - crc32c() and crc32c_portable() return the same value for every input; only speed differs.
// - The `crc` argument is a previous result (0 to start), so a file can be checksummed in pieces
//   in order: crc = crc32c(piece, n, crc).
// - Safe to call from any thread; the CPU check runs once, on the first call.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpt {

// CRC-32C of n bytes, chained: crc32c(b, nb, crc32c(a, na)) == crc32c of a followed by b.
// crc32c("123456789", 9) == 0xE3069283. Uses the SSE4.2 crc32 instruction where the CPU has it.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// The table-driven (slicing-by-8) version, always available: the reference the tests compare
// the hardware path with.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);

}  // namespace dpt
