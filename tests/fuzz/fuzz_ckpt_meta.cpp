// libFuzzer target: a checkpoint's metadata reader and `ckpt verify`'s file check on arbitrary
// files ([Checkpoint layout]). read_meta must give metadata that satisfies what the loaders rely
// on (one rank file per saving rank, plain names inside the directory, ranges covering the
// parameters) or a UsageError; verify_file must pass only a file of the recorded size and CRC.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "checkpoint/format.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "common/crc32c.h"
#include "fuzz_util.h"
#include "storage/h5.h"

using namespace dpt;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  storage::h5_quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz::input_file("meta.h5");
  fuzz::write_input(path, data, size);
  // [Meta checksum]: the first byte picks a checksum file that matches the bytes (HDF5 parses
  // them from memory), one that does not (refused before HDF5 sees them), or none (a checkpoint
  // from before the checksum: HDF5 parses the file).
  const uint32_t crc = crc32c(data, size);
  const int mode = size > 0 ? data[0] % 3 : 2;
  const std::string sum_path = path + checkpoint::kMetaChecksumSuffix;
  ::unlink(sum_path.c_str());
  if (mode < 2) {
    char line[64];
    std::snprintf(line, sizeof(line), "crc32c %08x bytes %zu\n", crc + (mode == 1), size);
    fuzz::write_input(sum_path, reinterpret_cast<const uint8_t*>(line), std::strlen(line));
  }
  bool read = false;
  fuzz::usage_errors_only("read_meta", [&] {
    const checkpoint::CheckpointMeta m = checkpoint::read_meta(path);
    read = true;
    if (m.world_size <= 0 || m.files.size() != static_cast<size_t>(m.world_size)) std::abort();
    uint64_t covered = 0;
    for (int i = 0; i < m.world_size; ++i) {
      const checkpoint::RankFileRecord& f = m.files[static_cast<size_t>(i)];
      if (f.name != checkpoint::rank_file_name(i) || f.lo != covered || f.hi < f.lo) std::abort();
      covered = f.hi;
    }
    if (covered != static_cast<uint64_t>(m.param_count)) std::abort();
  });
  if (read && mode == 1) std::abort();  // bytes that fail their checksum were read
  // The same bytes as a rank file: verify passes exactly when size and CRC are the recorded.
  const uint64_t claimed = size > 1 ? data[1] % 3 : 0;  // 0: true size; 1: one more; 2: CRC off
  bool passed = false;
  fuzz::usage_errors_only("verify_file", [&] {
    checkpoint::verify_file(path, size + (claimed == 1), crc + (claimed == 2));
    passed = true;
  });
  if (passed != (claimed == 0)) std::abort();
  return 0;
}
