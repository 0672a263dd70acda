// `train --trace FILE`: the [Timeline] spans of every rank merged by rank 0 into one Chrome
// trace-event JSON file, which Perfetto (ui.perfetto.dev) and chrome://tracing open.
#pragma once

#include <string>

#include <boost/json/object.hpp>

#include "comm/communicator.h"

namespace dpt::trainer {

// [Trace file] Collective. Takes every rank's recorded spans, aligns the ranks' clocks to rank
// 0's (the median over rounds of barrier-exit times: exact on one host, within a barrier's exit
// skew across hosts), and has rank 0 write one JSON object:
//   {"displayTimeUnit": "ms", "otherData": {other_data..., "clock_offsets_us": [...]},
//    "traceEvents": [...]}
// with one process per rank ("rank r (host)", pid r) and one thread per track, times in
// microseconds from the first span. Complete spans are "X" events; overlapping spans of one
// track (buckets in flight) are async "b"/"e" pairs. Returns false (and rank 0 prints a
// warning) when rank 0 could not write the file: the trace is a by-product, the run goes on.
// `host` names this rank's process ("rank r (host)"); empty leaves it out.
bool write_trace_file(comm::Communicator& comm, const std::string& path, const std::string& host,
                      const boost::json::object& other_data);

}  // namespace dpt::trainer
