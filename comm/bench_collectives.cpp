// bench-collectives: all-reduce (average), reduce-scatter and all-gather of shards over sizes
// from 8 B to 1 GiB through the communicator, printing time, algbw and busbw as nccl-tests
// defines them (algbw = bytes / time; busbw = algbw * 2(n-1)/n for all-reduce, * (n-1)/n for
// reduce-scatter and all-gather; bytes is the whole vector). Every size's result is checked
// against values each rank computes alone. On the MPI backend, Open MPI's own collective of the
// same size (MPI_Allreduce, MPI_Reduce_scatter, MPI_Allgatherv) is timed beside ours as the
// peer: the ratio is what the [Rank-order sum]'s determinism costs. --json writes one line per
// size for scripts/scaling-model.py.
//
//   mpiexec -n 2 bench-collectives [--backend mpi|nccl] [--ops all_reduce,reduce_scatter,
//       all_gather] [--min-bytes 8] [--max-bytes 1G] [--seconds 0.2] [--json FILE]
#include <mpi.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_session.h"
#include "common/elapsed.h"
#include "common/errors.h"
#include "common/rng.h"
#ifdef DPT_HAVE_NCCL
#include <cuda_runtime.h>

#include "comm/nccl_check.h"
#include "comm/nccl_communicator.h"
#endif

namespace {

namespace po = boost::program_options;
using dpt::comm::DType;
using dpt::comm::ReduceOp;
using dpt::comm::Request;
using dpt::comm::Shard;
using dpt::comm::shard_of;

enum class Op { all_reduce, reduce_scatter, all_gather };
const char* op_name(Op op) {
  switch (op) {
    case Op::all_reduce:
      return "all_reduce";
    case Op::reduce_scatter:
      return "reduce_scatter";
    case Op::all_gather:
      return "all_gather";
  }
  return "?";
}

// nccl-tests' bus-bandwidth factor: the share of the vector each rank's link carries.
double bus_factor(Op op, int n) {
  if (n <= 1) return 0.0;
  return op == Op::all_reduce ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
}

struct Options {
  std::string backend = "mpi";
  std::vector<Op> ops{Op::all_reduce, Op::reduce_scatter, Op::all_gather};
  size_t min_bytes = 8;
  size_t max_bytes = size_t{1} << 30;
  double seconds = 0.2;  // timed per size and implementation, after warm-up
  std::string json;
};

size_t parse_bytes(const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw dpt::UsageError("not a size: '" + text + "' (e.g. 8, 64K, 32M, 1G)");
  }
  const std::string unit = text.substr(pos);
  const double scale = unit.empty() || unit == "B" ? 1.0
                       : unit == "K"               ? 1024.0
                       : unit == "M"               ? 1048576.0
                       : unit == "G"               ? 1073741824.0
                                                   : -1.0;
  if (scale < 0 || v * scale < 4)
    throw dpt::UsageError("not a size of at least 4 bytes: '" + text + "' (e.g. 8, 64K, 1G)");
  return static_cast<size_t>(v * scale);
}

Options parse(int argc, char** argv, bool* help, bool print_help) {
  Options o;
  std::string ops = "all_reduce,reduce_scatter,all_gather", min_b = "8", max_b = "1G";
  po::options_description d(
      "bench-collectives: collective bandwidth through the communicator (nccl-tests' "
      "algbw and busbw), every result checked\n\nUsage: mpiexec -n RANKS bench-collectives "
      "[options]");
  d.add_options()("help,h", "print this help")(
      "backend", po::value(&o.backend)->default_value(o.backend),
      "mpi (host buffers; Open MPI's own collective beside it) or nccl (device buffers, one "
      "GPU per rank)")("ops", po::value(&ops)->default_value(ops), "comma-separated operations")(
      "min-bytes", po::value(&min_b)->default_value(min_b), "smallest vector (K, M, G suffixes)")(
      "max-bytes", po::value(&max_b)->default_value(max_b), "largest vector; sizes double")(
      "seconds", po::value(&o.seconds)->default_value(o.seconds),
      "time each size and implementation for about this long")(
      "json", po::value(&o.json), "also write one JSON object per size to this file (rank 0)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, d), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw dpt::UsageError(std::string(e.what()) + "; see --help");
  }
  *help = vm.count("help") > 0;
  if (*help) {
    if (!print_help) return o;
    std::ostringstream s;
    s << d;
    std::printf("%s", s.str().c_str());
    return o;
  }
  o.min_bytes = parse_bytes(min_b);
  o.max_bytes = parse_bytes(max_b);
  if (o.min_bytes > o.max_bytes) throw dpt::UsageError("--min-bytes is larger than --max-bytes");
  if (!(o.seconds > 0)) throw dpt::UsageError("--seconds must be positive");
  if (o.backend != "mpi" && o.backend != "nccl")
    throw dpt::UsageError("--backend must be 'mpi' or 'nccl', got '" + o.backend + "'");
  o.ops.clear();
  std::stringstream ss(ops);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item == "all_reduce")
      o.ops.push_back(Op::all_reduce);
    else if (item == "reduce_scatter")
      o.ops.push_back(Op::reduce_scatter);
    else if (item == "all_gather")
      o.ops.push_back(Op::all_gather);
    else
      throw dpt::UsageError("--ops: unknown operation '" + item +
                            "' (all_reduce, reduce_scatter, all_gather)");
  }
  return o;
}

// Element i of `rank`'s vector: a multiple of 1/8 in [-128, 128], so sums over up to 2^16 ranks
// are exact in f32 in any order, and the expected result is computed here without a gather.
float value(int rank, size_t i) {
  return static_cast<float>(static_cast<int64_t>(dpt::random_u64(0xbe9c, rank, i) % 2049) - 1024) *
         0.125f;
}

// Wrong elements over all ranks (collective over `mpi`): `got` is the whole vector after an
// all-reduce or all-gather, this rank's shard after a reduce-scatter. Sums of multiples of 1/8
// are exact in any order, so == compares.
size_t wrong_elements(Op op, const float* got, size_t count, int n, int rank, MPI_Comm mpi) {
  auto sum = [n](size_t i) {
    float s = 0;
    for (int r = 0; r < n; ++r)
      s += value(r, i);
    return s;
  };
  uint64_t wrong = 0;
  const Shard mine = shard_of(count, n, rank);
  if (op == Op::all_reduce) {
    for (size_t i = 0; i < count; ++i)
      wrong += got[i] != sum(i);
  } else if (op == Op::reduce_scatter) {
    for (size_t i = 0; i < mine.count; ++i)
      wrong += got[i] != sum(mine.offset + i);
  } else {
    for (int r = 0; r < n; ++r) {
      const Shard s = shard_of(count, n, r);
      for (size_t i = s.offset; i < s.offset + s.count; ++i)
        wrong += got[i] != value(r, i);
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_UINT64_T, MPI_SUM, mpi);
  return wrong;
}

// Median-free timing, as nccl-tests does: `iters` back-to-back operations, the mean time per
// operation, then the slowest rank's mean (a collective ends when its last rank ends).
struct Timing {
  double us = 0;
  int iters = 0;
};

class Bench {
 public:
  Bench(MPI_Comm mpi, double seconds) : mpi_(mpi), seconds_(seconds) {}

  // Collective: iterations agreed so every rank runs the same number of operations.
  template <typename Run, typename Sync>
  Timing time(Run run, Sync sync) {
    for (int w = 0; w < 3; ++w)
      run();
    sync();
    MPI_Barrier(mpi_);
    auto t0 = dpt::SteadyClock::now();
    run();
    sync();
    double one_s = dpt::seconds_since(t0);
    MPI_Allreduce(MPI_IN_PLACE, &one_s, 1, MPI_DOUBLE, MPI_MAX, mpi_);
    const int iters = static_cast<int>(std::clamp(seconds_ / std::max(one_s, 1e-9), 1.0, 10000.0));
    MPI_Barrier(mpi_);
    t0 = dpt::SteadyClock::now();
    for (int k = 0; k < iters; ++k)
      run();
    sync();
    double us = dpt::seconds_since(t0) * 1e6 / iters;
    MPI_Allreduce(MPI_IN_PLACE, &us, 1, MPI_DOUBLE, MPI_MAX, mpi_);
    return {us, iters};
  }

 private:
  MPI_Comm mpi_;
  double seconds_;
};

struct Row {
  Op op;
  size_t bytes, count;
  Timing ours, peer;  // peer.iters == 0: no peer
  size_t wrong = 0;
};

void print_header(const std::string& backend, int n) {
  std::printf(
      "# bench-collectives: backend %s, %d rank(s), f32; time is the slowest rank's mean "
      "per operation\n",
      backend.c_str(), n);
  std::printf("# %-14s %12s %11s %11s %11s %11s %11s %8s %6s\n", "op", "bytes", "count", "time(us)",
              "algbw(GB/s)", "busbw(GB/s)", "peer(us)", "ours/peer", "wrong");
}

void print_row(const Row& r, int n) {
  const double algbw = r.bytes / (r.ours.us * 1e-6) / 1e9;
  char peer[32] = "-", ratio[32] = "-";
  if (r.peer.iters > 0) {
    std::snprintf(peer, sizeof(peer), "%.1f", r.peer.us);
    std::snprintf(ratio, sizeof(ratio), "%.2f", r.ours.us / r.peer.us);
  }
  std::printf("  %-14s %12zu %11zu %11.1f %11.3f %11.3f %11s %8s %6zu\n", op_name(r.op), r.bytes,
              r.count, r.ours.us, algbw, algbw * bus_factor(r.op, n), peer, ratio, r.wrong);
  std::fflush(stdout);
}

std::string json_line(const Row& r, const std::string& backend, int n) {
  const double algbw = r.bytes / (r.ours.us * 1e-6) / 1e9;
  boost::json::object o{{"backend", backend},
                        {"op", op_name(r.op)},
                        {"ranks", n},
                        {"bytes", r.bytes},
                        {"time_us", r.ours.us},
                        {"algbw_GBps", algbw},
                        {"busbw_GBps", algbw * bus_factor(r.op, n)},
                        {"peer_time_us", nullptr},
                        {"wrong", r.wrong}};
  if (r.peer.iters > 0) o["peer_time_us"] = r.peer.us;
  return boost::json::serialize(o);
}

// The MPI backend: ours through MpiCommunicator, the peer through Open MPI's collective.
Row run_mpi(Op op, size_t count, MPI_Comm mpi, dpt::comm::MpiCommunicator& comm, Bench& bench) {
  const int n = comm.world_size(), rank = comm.rank();
  const Shard mine = shard_of(count, n, rank);
  Row row{op, count * sizeof(float), count, {}, {}, 0};
  std::vector<float> buf(count), shard(std::max<size_t>(mine.count, 1));
  std::vector<int> counts(n), displs(n);
  for (int r = 0; r < n; ++r) {
    const Shard s = shard_of(count, n, r);
    counts[r] = static_cast<int>(s.count);
    displs[r] = static_cast<int>(s.offset);
  }
  auto fill = [&] {
    for (size_t i = 0; i < count; ++i)
      buf[i] = value(rank, i);
  };
  auto nothing = [] {};
  fill();
  // Timed on live data; avg keeps repeated in-place all-reduces finite.
  switch (op) {
    case Op::all_reduce:
      row.ours = bench.time([&] { comm.all_reduce(buf.data(), count, DType::f32, ReduceOp::avg); },
                            nothing);
      row.peer = bench.time(
          [&] {
            MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                          mpi);
          },
          nothing);
      break;
    case Op::reduce_scatter:
      row.ours = bench.time(
          [&] { comm.reduce_scatter(buf.data(), shard.data(), count, DType::f32, ReduceOp::avg); },
          nothing);
      row.peer = bench.time(
          [&] {
            MPI_Reduce_scatter(buf.data(), shard.data(), counts.data(), MPI_FLOAT, MPI_SUM, mpi);
          },
          nothing);
      break;
    case Op::all_gather:
      row.ours = bench.time(
          [&] { comm.all_gather_shards(buf.data() + mine.offset, buf.data(), count, DType::f32); },
          nothing);
      row.peer = bench.time(
          [&] {
            MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf.data(), counts.data(), displs.data(),
                           MPI_FLOAT, mpi);
          },
          nothing);
      break;
  }
  // The check, on fresh data: sums of multiples of 1/8 are exact in any order.
  fill();
  if (op == Op::all_reduce) {
    comm.all_reduce(buf.data(), count, DType::f32, ReduceOp::sum);
  } else if (op == Op::reduce_scatter) {
    comm.reduce_scatter(buf.data(), shard.data(), count, DType::f32, ReduceOp::sum);
  } else {
    std::fill(buf.begin(), buf.end(), -1e30f);
    for (size_t i = 0; i < mine.count; ++i)
      shard[i] = value(rank, mine.offset + i);
    comm.all_gather_shards(shard.data(), buf.data(), count, DType::f32);
  }
  row.wrong =
      wrong_elements(op, op == Op::reduce_scatter ? shard.data() : buf.data(), count, n, rank, mpi);
  return row;
}

#ifdef DPT_HAVE_NCCL
// The NCCL backend: device buffers on this rank's GPU (local rank modulo visible devices); the
// host waits on the communicator's stream ([Watchdog]) once per timed batch.
Row run_nccl(Op op, size_t count, dpt::comm::NcclCommunicator& comm, Bench& bench, int rank,
             MPI_Comm mpi) {
  const int n = comm.world_size();
  const Shard mine = shard_of(count, n, rank);
  Row row{op, count * sizeof(float), count, {}, {}, 0};
  float *dbuf = nullptr, *dshard = nullptr;
  DPT_CHECK_CUDA(cudaMalloc(&dbuf, count * sizeof(float)));
  DPT_CHECK_CUDA(cudaMalloc(&dshard, std::max<size_t>(mine.count, 1) * sizeof(float)));
  std::vector<float> host(count);
  auto fill = [&] {
    for (size_t i = 0; i < count; ++i)
      host[i] = value(rank, i);
    // Finished before NCCL's non-blocking stream reads it ([Host copies], kernels/device_buffer.h).
    DPT_CHECK_CUDA(cudaMemcpy(dbuf, host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
    DPT_CHECK_CUDA(cudaDeviceSynchronize());
  };
  fill();
  std::vector<Request> pending;
  pending.reserve(10000);
  auto sync = [&] {
    comm.synchronize();
    pending.clear();
  };
  switch (op) {
    case Op::all_reduce:
      row.ours = bench.time([&] { comm.all_reduce(dbuf, count, DType::f32, ReduceOp::avg); }, sync);
      break;
    case Op::reduce_scatter:
      row.ours = bench.time(
          [&] {
            pending.push_back(comm.ireduce_scatter(dbuf, dshard, count, DType::f32, ReduceOp::avg));
          },
          sync);
      break;
    case Op::all_gather:
      row.ours = bench.time(
          [&] {
            pending.push_back(comm.iall_gather_shards(dbuf + mine.offset, dbuf, count, DType::f32));
          },
          sync);
      break;
  }
  fill();
  if (op == Op::all_reduce) {
    comm.all_reduce(dbuf, count, DType::f32, ReduceOp::sum);
  } else if (op == Op::reduce_scatter) {
    comm.reduce_scatter(dbuf, dshard, count, DType::f32, ReduceOp::sum);
  } else {
    comm.all_gather_shards(dbuf + mine.offset, dbuf, count, DType::f32);
  }
  comm.synchronize();
  const bool shard_only = op == Op::reduce_scatter;
  std::vector<float> got(shard_only ? mine.count : count);
  DPT_CHECK_CUDA(cudaMemcpy(got.data(), shard_only ? dshard : dbuf, got.size() * sizeof(float),
                            cudaMemcpyDeviceToHost));
  row.wrong = wrong_elements(op, got.data(), count, n, rank, mpi);
  cudaFree(dbuf);
  cudaFree(dshard);
  return row;
}
#endif

int run(int argc, char** argv, dpt::comm::MpiSession& session) {
  dpt::comm::MpiCommunicator world(MPI_COMM_WORLD);
  bool help = false;
  Options o;
  // Every rank parses the same arguments; run_agreed has rank 0 alone report a bad one.
  dpt::comm::run_agreed(world, [&] { o = parse(argc, argv, &help, world.rank() == 0); });
  if (help) return 0;
  MPI_Comm peer_comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &peer_comm);
  const int n = world.world_size();
  std::unique_ptr<std::ofstream> json;
  dpt::comm::run_agreed(world, [&] {  // a failure on rank 0 ends every rank
    if (world.rank() != 0 || o.json.empty()) return;
    json = std::make_unique<std::ofstream>(o.json);
    if (!*json) throw dpt::UsageError("--json " + o.json + ": cannot open for writing");
  });
  if (world.rank() == 0) print_header(o.backend, n);
  Bench bench(peer_comm, o.seconds);
#ifdef DPT_HAVE_NCCL
  std::unique_ptr<dpt::comm::NcclCommunicator> nccl;
  if (o.backend == "nccl") {
    int devices = 0;
    DPT_CHECK_CUDA(cudaGetDeviceCount(&devices));
    const int local = session.placement().local_rank;
    nccl = std::make_unique<dpt::comm::NcclCommunicator>(world, local % std::max(devices, 1));
  }
#else
  (void)session;
  if (o.backend == "nccl")
    throw dpt::UsageError("--backend nccl: this build has no NCCL; use --backend mpi");
#endif
  size_t total_wrong = 0;
  for (Op op : o.ops) {
    for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
      const size_t count = bytes / sizeof(float);
      Row row{};
#ifdef DPT_HAVE_NCCL
      if (nccl)
        row = run_nccl(op, count, *nccl, bench, world.rank(), peer_comm);
      else
#endif
        row = run_mpi(op, count, peer_comm, world, bench);
      total_wrong += row.wrong;
      if (world.rank() == 0) {
        print_row(row, n);
        if (json) *json << json_line(row, o.backend, n) << "\n" << std::flush;
      }
    }
  }
#ifdef DPT_HAVE_NCCL
  if (nccl) nccl->destroy();
#endif
  MPI_Comm_free(&peer_comm);
  if (world.rank() == 0)
    std::printf("# %s: %zu wrong element(s) over all sizes\n",
                total_wrong == 0 ? "check passed" : "CHECK FAILED", total_wrong);
  return total_wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<dpt::comm::MpiSession> session;
  try {
    session.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-collectives: failure starting MPI: %s\n", e.what());
    return 1;
  }
  int code = 0;
  try {
    code = run(argc, argv, *session);
  } catch (const dpt::comm::AgreedFailure& e) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) std::fprintf(stderr, "bench-collectives: error: %s\n", e.what());
    code = e.exit_code();
  } catch (const dpt::UsageError& e) {
    std::fprintf(stderr, "bench-collectives: %s\n", e.what());
    code = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-collectives: error: %s\n", e.what());
    code = 1;
  }
  session->finalize();
  return code;
}
