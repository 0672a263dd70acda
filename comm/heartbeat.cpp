// [Heartbeat channel]: the service on rank 0, the status thread of every rank, and queries.
#include "comm/heartbeat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "common/errors.h"

namespace dpt::comm {

static_assert(std::is_trivially_copyable_v<RankRecord>, "RankRecord goes over the wire as is");

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x48545044;  // "DPTH"
constexpr uint16_t kVersion = 1;
enum MessageType : uint16_t { kStatus = 1, kQuery = 2, kTable = 3 };

struct Header {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint16_t type = 0;
  uint32_t count = 0;  // records that follow
  uint32_t pad = 0;
};

constexpr size_t kAddressText = 2048;  // the broadcast of rank 0's port, pid, host, addresses

void copy_text(char* dst, size_t n, const std::string& src) {
  std::memset(dst, 0, n);
  std::memcpy(dst, src.data(), std::min(n - 1, src.size()));
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Waits until fd is ready for `events` or the deadline passes.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// Whole transfers on a non-blocking socket, bounded by a deadline; false on failure.
template <typename Buffer, typename Io>
bool transfer_all(int fd, Buffer* data, size_t n, short ready, Io io, Clock::time_point deadline) {
  while (n > 0) {
    const ssize_t k = io(fd, data, n);
    if (k > 0) {
      data += k;
      n -= static_cast<size_t>(k);
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_ready(fd, ready, deadline)) return false;
    } else {
      return false;  // an error, or the peer closed the connection
    }
  }
  return true;
}

bool send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const auto send = [](int f, const char* p, size_t len) {
    return ::send(f, p, len, MSG_NOSIGNAL);
  };
  return transfer_all(fd, static_cast<const char*>(data), n, POLLOUT, send, deadline);
}

bool recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  const auto recv = [](int f, char* p, size_t len) { return ::recv(f, p, len, 0); };
  return transfer_all(fd, static_cast<char*>(data), n, POLLIN, recv, deadline);
}

Clock::time_point after(double s) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// This host's IPv4 addresses that are up, the loopback last.
std::vector<std::string> local_addresses() {
  std::vector<std::string> out, loop;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
      if ((a->ifa_flags & IFF_UP) == 0) continue;
      char text[INET_ADDRSTRLEN] = {};
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) continue;
      ((a->ifa_flags & IFF_LOOPBACK) ? loop : out).emplace_back(text);
    }
    ::freeifaddrs(list);
  }
  out.insert(out.end(), loop.begin(), loop.end());
  if (out.empty()) out.emplace_back("127.0.0.1");
  return out;
}

int nonblocking_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

}  // namespace

CollectiveSignature RankRecord::pending_signature() const {
  CollectiveSignature s;
  s.kind = static_cast<CollectiveKind>(kind);
  s.dtype = static_cast<DType>(dtype);
  s.op = static_cast<ReduceOp>(op);
  s.bytes = pending_bytes;
  return s;
}

RankRecord own_record(int rank, const std::string& host) {
  const ActivitySnapshot a = FlightRecorder::get().snapshot();
  RankRecord r;
  r.rank = rank;
  r.pid = static_cast<int32_t>(::getpid());
  copy_text(r.host, sizeof(r.host), host);
  r.step = a.step;
  copy_text(r.phase, sizeof(r.phase), a.phase);
  r.entered = a.entered;
  r.completed = a.completed;
  r.pending_seq = a.pending_seq;
  r.kind = static_cast<uint8_t>(a.pending.kind);
  r.dtype = static_cast<uint8_t>(a.pending.dtype);
  r.op = static_cast<uint8_t>(a.pending.op);
  r.pending_bytes = a.pending.bytes;
  r.pending_s = a.pending_s;
  r.phase_s = a.phase_s;
  r.since_last_s = a.since_last_s;
  r.heard_s_ago = 0;
  return r;
}

Heartbeat::Heartbeat(Communicator& comm, const std::string& host, double interval_s)
    : rank_(comm.rank()), world_(comm.world_size()), host_(host), interval_s_(interval_s) {
  std::string text(kAddressText, '\0');
  if (rank_ == 0) {
    // Set up before the broadcast, so that the address is valid once the others hear it; a
    // failure leaves port 0, which the other ranks take as "no service".
    listen_fd_ = nonblocking_socket();
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    any.sin_port = 0;
    socklen_t len = sizeof(any);
    if (listen_fd_ >= 0 &&
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) == 0 &&
        ::listen(listen_fd_, std::max(16, std::min(world_, 4096))) == 0 &&
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&any), &len) == 0 &&
        ::pipe2(wake_, O_CLOEXEC) == 0) {
      port_ = ntohs(any.sin_port);
    }
    std::ostringstream s;
    s << port_ << " " << ::getpid() << " " << host_;
    for (const std::string& a : local_addresses())
      s << " " << a;
    copy_text(text.data(), text.size(), s.str());
    if (port_ != 0) service_ = std::thread([this] { serve(); });
  }
  comm.broadcast(text.data(), text.size(), DType::u8, 0);
  {
    std::istringstream s(text.c_str());
    s >> port_ >> service_pid_ >> service_host_;
    for (std::string a; s >> a;)
      addresses_.push_back(a);
    // On rank 0's host (or in its network namespace) the loopback answers first.
    if (service_host_ == host_) {
      const auto lo = std::find(addresses_.begin(), addresses_.end(), "127.0.0.1");
      if (lo != addresses_.end()) std::rotate(addresses_.begin(), lo, lo + 1);
    }
  }
  if (port_ != 0) status_ = std::thread([this] { send_status(); });
}

Heartbeat::~Heartbeat() {
  stop_.store(true);
  if (wake_[1] >= 0) {
    const char c = 1;
    (void)!::write(wake_[1], &c, 1);
  }
  if (status_.joinable()) status_.join();
  if (service_.joinable()) service_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1], status_fd_.load()})
    if (fd >= 0) ::close(fd);
}

int Heartbeat::connect_to_service(double timeout_s) const {
  const auto deadline = after(timeout_s);
  for (const std::string& a : addresses_) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    if (::inet_pton(AF_INET, a.c_str(), &to.sin_addr) != 1) continue;
    const int fd = nonblocking_socket();
    if (fd < 0) return -1;
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    if (rc != 0 && errno == EINPROGRESS) {
      // An address that does not answer gets a slice of the time, not all of it.
      const auto slice = std::min(deadline, after(std::max(0.5, timeout_s / 4)));
      int err = ETIMEDOUT;
      socklen_t len = sizeof(err);
      if (wait_ready(fd, POLLOUT, slice)) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
    }
    if (rc == 0) return fd;
    ::close(fd);
    if (Clock::now() >= deadline) break;
  }
  return -1;
}

void Heartbeat::send_status() {
  // The service may start listening a moment after the broadcast; try for a while.
  int fd = connect_to_service(10.0);
  if (fd < 0) {
    std::fprintf(stderr,
                 "train: warning: rank %d cannot reach the heartbeat service of rank 0 (%s, port "
                 "%u): a hang report will not show what this rank was doing\n",
                 rank_, service_host_.c_str(), static_cast<unsigned>(port_));
    return;
  }
  status_fd_.store(fd);
  while (!stop_.load()) {
    const RankRecord r = own_record(rank_, host_);
    Header h;
    h.type = kStatus;
    h.count = 1;
    char msg[sizeof(Header) + sizeof(RankRecord)];
    std::memcpy(msg, &h, sizeof(h));
    std::memcpy(msg + sizeof(h), &r, sizeof(r));
    if (!send_all(fd, msg, sizeof(msg), after(std::max(1.0, interval_s_)))) {
      status_fd_.store(-1);
      ::close(fd);
      return;  // the service is gone (rank 0 ended or hangs): nothing more to tell it
    }
    for (auto t = Clock::now(); !stop_.load() && seconds_since(t) < interval_s_;)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Heartbeat::serve() {
  std::vector<RankRecord> table(static_cast<size_t>(world_));
  std::vector<Clock::time_point> heard(table.size());
  std::vector<bool> ever(table.size(), false);
  struct Conn {
    int fd;
    std::string in;
  };
  std::vector<Conn> conns;
  const auto drop = [&](size_t i) {
    ::close(conns[i].fd);
    conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
  };
  while (!stop_.load()) {
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Conn& c : conns)
      fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    if (fds[1].revents & POLLIN) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        conns.push_back({fd, {}});
      }
    }
    // Connections accepted just now have no entry in fds: they are read on the next turn.
    for (size_t k = fds.size(); k-- > 2;) {
      if (fds[k].revents == 0) continue;
      const size_t i = k - 2;
      char buf[8192];
      const ssize_t n = ::recv(conns[i].fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(i);
        continue;
      }
      std::string& in = conns[i].in;
      in.append(buf, static_cast<size_t>(n));
      bool bad = false;
      while (!bad && in.size() >= sizeof(Header)) {
        Header h;
        std::memcpy(&h, in.data(), sizeof(h));
        if (h.magic != kMagic || h.version != kVersion || h.count > 1) {
          bad = true;
          break;
        }
        const size_t size = sizeof(Header) + h.count * sizeof(RankRecord);
        if (in.size() < size) break;
        if (h.type == kStatus && h.count == 1) {
          RankRecord r;
          std::memcpy(&r, in.data() + sizeof(Header), sizeof(r));
          if (r.rank >= 0 && r.rank < world_) {
            table[static_cast<size_t>(r.rank)] = r;
            heard[static_cast<size_t>(r.rank)] = Clock::now();
            ever[static_cast<size_t>(r.rank)] = true;
          }
        } else if (h.type == kQuery) {
          Header t;
          t.type = kTable;
          t.count = static_cast<uint32_t>(world_);
          std::string out(reinterpret_cast<const char*>(&t), sizeof(t));
          for (size_t r = 0; r < table.size(); ++r) {
            RankRecord rec = table[r];
            rec.rank = static_cast<int32_t>(r);
            rec.heard_s_ago = ever[r] ? seconds_since(heard[r]) : -1.0;
            out.append(reinterpret_cast<const char*>(&rec), sizeof(rec));
          }
          if (!send_all(conns[i].fd, out.data(), out.size(), after(2.0))) bad = true;
        } else {
          bad = true;
        }
        in.erase(0, size);
      }
      if (bad) drop(i);
    }
  }
}

std::optional<std::vector<RankRecord>> Heartbeat::query(double timeout_s) const {
  if (port_ == 0) return std::nullopt;
  const auto deadline = after(timeout_s);
  const int fd = connect_to_service(timeout_s);
  if (fd < 0) return std::nullopt;
  std::optional<std::vector<RankRecord>> out;
  Header h;
  h.type = kQuery;
  Header t;
  if (send_all(fd, &h, sizeof(h), deadline) && recv_all(fd, &t, sizeof(t), deadline) &&
      t.magic == kMagic && t.version == kVersion && t.type == kTable &&
      t.count == static_cast<uint32_t>(world_)) {
    std::vector<RankRecord> table(t.count);
    if (recv_all(fd, table.data(), table.size() * sizeof(RankRecord), deadline))
      out = std::move(table);
  }
  ::close(fd);
  return out;
}

}  // namespace dpt::comm
