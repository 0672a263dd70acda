// [Trace file]: merging the ranks' spans into Chrome trace-event JSON.
#include "trainer/trace_file.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "comm/typed_collectives.h"
#include "common/trace.h"
#include "storage/durable.h"

namespace dpt::trainer {

namespace {

namespace json = boost::json;

// This rank's clock minus rank 0's, in ns: each round, every rank reads its clock as it leaves
// a barrier; the median over rounds discards rounds where a rank was descheduled.
std::vector<int64_t> clock_offsets(comm::Communicator& comm) {
  constexpr int kRounds = 9;
  const int n = comm.world_size();
  std::vector<std::vector<int64_t>> diffs(n);
  for (int k = 0; k < kRounds; ++k) {
    comm.barrier();
    const int64_t t = trace::now_ns();
    const std::vector<int64_t> all = comm::all_gather_value(comm, t);
    for (int r = 0; r < n; ++r)
      diffs[r].push_back(all[r] - all[0]);
  }
  std::vector<int64_t> offsets(n);
  for (int r = 0; r < n; ++r) {
    std::nth_element(diffs[r].begin(), diffs[r].begin() + kRounds / 2, diffs[r].end());
    offsets[r] = diffs[r][kRounds / 2];
  }
  return offsets;
}

std::string event_name(const trace::Event& e) {
  if (e.index < 0) return e.name;
  char buf[128];
  std::snprintf(buf, sizeof(buf), e.name, e.index);
  return buf;
}

double us(int64_t ns) {
  return static_cast<double>(ns) / 1000.0;
}

// This rank's events as the JSON text of an array, times relative to
// origin_ns on rank 0's clock. Async begins without an end (the window closed between them)
// and ends without a begin are dropped, so every pair in the file is whole.
std::string rank_events(const std::vector<trace::Event>& events, int rank, const std::string& host,
                        int64_t offset_ns, int64_t origin_ns) {
  json::array out;
  json::object proc{
      {"ph", "M"},
      {"name", "process_name"},
      {"pid", rank},
      {"args",
       {{"name", "rank " + std::to_string(rank) + (host.empty() ? "" : " (" + host + ")")}}}};
  out.push_back(proc);
  out.push_back(json::object{{"ph", "M"},
                             {"name", "process_sort_index"},
                             {"pid", rank},
                             {"args", {{"sort_index", rank}}}});
  std::vector<int> tracks;
  std::vector<int64_t> begun, ended;
  for (const trace::Event& e : events) {
    tracks.push_back(static_cast<int>(e.track));
    if (e.phase == 'b') begun.push_back(e.id);
    if (e.phase == 'e') ended.push_back(e.id);
  }
  std::sort(tracks.begin(), tracks.end());
  tracks.erase(std::unique(tracks.begin(), tracks.end()), tracks.end());
  for (int t : tracks)
    out.push_back(
        json::object{{"ph", "M"},
                     {"name", "thread_name"},
                     {"pid", rank},
                     {"tid", t},
                     {"args", {{"name", trace::track_name(static_cast<trace::Track>(t))}}}});
  std::sort(begun.begin(), begun.end());
  std::sort(ended.begin(), ended.end());
  auto has = [](const std::vector<int64_t>& v, int64_t id) {
    return std::binary_search(v.begin(), v.end(), id);
  };
  for (const trace::Event& e : events) {
    if (e.phase == 'b' && !has(ended, e.id)) continue;
    if (e.phase == 'e' && !has(begun, e.id)) continue;
    json::object o{{"ph", std::string(1, e.phase)},
                   {"name", event_name(e)},
                   {"pid", rank},
                   {"tid", static_cast<int>(e.track)},
                   {"ts", us(e.start_ns - offset_ns - origin_ns)}};
    o["cat"] = e.track == trace::Track::comm || e.track == trace::Track::gpu_comm ? "comm" : "run";
    if (e.phase == 'X') o["dur"] = us(e.dur_ns);
    if (e.phase != 'X') o["id"] = std::to_string(rank) + ":" + std::to_string(e.id);
    json::object args;
    for (const trace::Arg& a : e.args)
      if (a.key != nullptr) args[a.key] = a.value;
    if (!args.empty()) o["args"] = std::move(args);
    out.push_back(std::move(o));
  }
  return json::serialize(out);
}

}  // namespace

bool write_trace_file(comm::Communicator& comm, const std::string& path, const std::string& host,
                      const boost::json::object& other_data) {
  const std::vector<trace::Event> events = trace::Recorder::get().take();
  const std::vector<int64_t> offsets = clock_offsets(comm);
  const int64_t offset = offsets[comm.rank()];
  int64_t first = std::numeric_limits<int64_t>::max();
  for (const trace::Event& e : events)
    first = std::min(first, e.start_ns - offset);
  comm.all_reduce(std::span<int64_t>(&first, 1), comm::ReduceOp::min);
  const std::vector<std::string> parts =
      comm::all_gather_strings(comm, rank_events(events, comm.rank(), host, offset, first));
  if (comm.rank() != 0) return true;

  json::object other = other_data;
  json::array offsets_us;
  for (int64_t o : offsets)
    offsets_us.push_back(us(o));
  other["clock_offsets_us"] = std::move(offsets_us);
  json::array all;
  for (const std::string& p : parts) {
    json::value events = json::parse(p);  // named: a range-for over a temporary's array dangles
    for (json::value& v : events.as_array())
      all.push_back(std::move(v));
  }
  const json::object file{
      {"displayTimeUnit", "ms"}, {"otherData", std::move(other)}, {"traceEvents", std::move(all)}};
  const std::string text = json::serialize(file) + "\n";
  std::string why;
  if (!storage::write_file_atomic(path, text, &why)) {
    std::fprintf(stderr, "train: warning: --trace %s: %s; the run goes on without it\n",
                 path.c_str(), why.c_str());
    return false;
  }
  return true;
}

}  // namespace dpt::trainer
