// Validation of one sample shard against [Sample format]: structure, types, shapes, attributes,
// and a scan of every label, target, length and floating-point input.
#pragma once

#include <string>

#include "datasets/sample_format.h"

namespace dpt::datasets {

// Opens path, checks it against [Sample format] and scans it in blocks of samples. Throws a
// one-line UsageError for every defect, naming the file, the dataset or attribute and the fix:
// the file checks of token shards (missing, unreadable, not HDF5, truncated, locked); no
// /inputs, or /inputs of a rank or type no kind takes; both or neither of /labels and
// /targets; a sample count that differs between /inputs and /labels, /targets or /lengths;
// a negative label or one >= num_classes; NaN or infinity in floating-point inputs or targets;
// a length outside [1, T]; class_names not one string per class; a missing or unsupported
// format_version; an unknown kind. Makes HDF5 calls: [HDF5 thread].
SampleShardFacts inspect_sample_shard(const std::string& path);

}  // namespace dpt::datasets

namespace dpt::datasets {

// Whether path is an HDF5 file with /inputs: a sample shard rather than a token shard. False
// for anything else (token shards, and files the token shard checks will name the defect of).
bool is_sample_shard(const std::string& path);

// Facts as bytes and back, to move them between ranks (length-prefixed fields, in one order).
std::string encode_sample_facts(const SampleShardFacts& f);
SampleShardFacts decode_sample_facts(const std::string& bytes);

}  // namespace dpt::datasets
