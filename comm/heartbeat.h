// The heartbeat service of [Hang diagnosis] (comm/hang_watchdog.h): every rank sends what it
// is doing ([Flight recorder]) to a small TCP service on rank 0 every interval; the watchdog
// of any rank asks the service for the whole table when a collective times out.
//
// [Heartbeat channel] Plain TCP sockets, owned by threads of their own, and not MPI: a hang
// report must not depend on the collective that hangs, on MPI's progress (a stopped peer stops
// Open MPI's passive-target one-sided progress too) or on MPI's thread level (FUNNELED: only
// the main thread calls MPI). Rank 0 listens on an ephemeral port of every IPv4 address it
// has; the port, the addresses, its host and pid are broadcast once through the communicator
// when the service starts (a collective). A rank connects to the first address that answers
// (the loopback first on rank 0's host). Messages are a fixed header and fixed-size records
// in the host's byte order: the ranks of one job run one build on one architecture. Nothing
// here ever blocks the training thread: the status thread sends a snapshot, the service
// thread answers; a connection that breaks is dropped, and a rank that cannot reach the
// service trains on without it (the report then says so).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/flight_recorder.h"

namespace dpt::comm {

// One rank's state as the heartbeat carries it (a plain record: it goes over the wire as is).
struct RankRecord {
  int32_t rank = -1;
  int32_t pid = 0;
  char host[64] = {};
  int64_t step = -1;
  char phase[32] = {};
  uint64_t entered = 0, completed = 0, pending_seq = 0;
  uint8_t kind = 0, dtype = 0, op = 0, pad[5] = {};
  uint64_t pending_bytes = 0;
  double pending_s = 0, phase_s = 0, since_last_s = 0;
  // In a table from the service: seconds since the service last heard from this rank (-1: it
  // never did). In a rank's own record: 0.
  double heard_s_ago = -1;

  CollectiveSignature pending_signature() const;
};

// This process's record now: rank, pid, host and the recorder's snapshot.
RankRecord own_record(int rank, const std::string& host);

class Heartbeat {
 public:
  // Collective over comm. `interval_s`: how often each rank reports.
  Heartbeat(Communicator& comm, const std::string& host, double interval_s);
  ~Heartbeat();  // stops the threads; never throws
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // Every rank's record as the service last heard it (rank order, size world), or nothing when
  // the service does not answer within timeout_s.
  std::optional<std::vector<RankRecord>> query(double timeout_s) const;

  int rank() const { return rank_; }
  const std::string& host() const { return host_; }
  double interval_s() const { return interval_s_; }
  // Rank 0, where the service runs.
  const std::string& service_host() const { return service_host_; }
  int service_pid() const { return service_pid_; }

 private:
  void serve();        // rank 0: the service thread
  void send_status();  // every rank: the status thread
  int connect_to_service(double timeout_s) const;

  int rank_, world_;
  std::string host_;
  double interval_s_;
  std::string service_host_;
  int service_pid_ = 0;
  uint16_t port_ = 0;
  std::vector<std::string> addresses_;  // rank 0's, in the order to try
  std::atomic<bool> stop_{false};
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe that wakes the service thread to stop
  std::atomic<int> status_fd_{-1};
  std::thread service_, status_;
};

}  // namespace dpt::comm
