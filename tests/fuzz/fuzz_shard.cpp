// libFuzzer target: the shard validators on arbitrary files ([Shard format], [Sample format],
// [Foreign data]). The input is written to a file and inspected as a token shard and as a
// sample shard; each must give its facts or a UsageError naming the file. Facts it gives must
// be consistent with the file (the validator read what it claims).
#include <cstdint>
#include <cstdlib>

#include "datasets/sample_inspect.h"
#include "datasets/shard_inspect.h"
#include "fuzz_util.h"
#include "storage/h5.h"

using namespace dpt;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  storage::h5_quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz::input_file("shard.h5");
  fuzz::write_input(path, data, size);
  fuzz::usage_errors_only("token shard", [&] {
    const datasets::ShardFacts f = datasets::inspect_shard(path);
    if (f.file_size != size || f.num_tokens == 0 || f.min_id > f.max_id ||
        f.max_id >= static_cast<uint64_t>(f.vocab_size))
      std::abort();
  });
  fuzz::usage_errors_only("sample shard", [&] {
    const datasets::SampleShardFacts f = datasets::inspect_sample_shard(path);
    if (f.file_size != size || f.num_samples == 0) std::abort();
    // What the index stores reads back as the same facts.
    if (datasets::encode_sample_facts(datasets::decode_sample_facts(
            datasets::encode_sample_facts(f))) != datasets::encode_sample_facts(f))
      std::abort();
  });
  return 0;
}
