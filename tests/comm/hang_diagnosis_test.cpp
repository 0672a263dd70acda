// [Flight recorder] numbering and [Hang diagnosis]'s comparison of ranks, on records made here:
// each kind of peer (missing, disagreeing on the signature, past the collective, behind, never
// heard, with us) is named as such, the summary picks the worst, and the report lists ranks
// compactly.
#include <gtest/gtest.h>

#include <cstring>

#include "comm/flight_recorder.h"
#include "comm/hang_watchdog.h"
#include "comm/heartbeat.h"

namespace dpt::comm {
namespace {

const CollectiveSignature kVotes{CollectiveKind::all_reduce, DType::f64, ReduceOp::max, 56};
const CollectiveSignature kGrads{CollectiveKind::all_reduce, DType::f32, ReduceOp::avg, 30720};

RankRecord record(int rank, uint64_t entered, uint64_t pending, const CollectiveSignature& sig,
                  double heard_s_ago = 0.2) {
  RankRecord r;
  r.rank = rank;
  r.pid = 1000 + rank;
  std::strcpy(r.host, rank < 2 ? "node1" : "node2");
  r.step = 7;
  std::strcpy(r.phase, "step votes");
  r.entered = entered;
  r.completed = pending ? pending - 1 : entered;
  r.pending_seq = pending;
  r.kind = static_cast<uint8_t>(sig.kind);
  r.dtype = static_cast<uint8_t>(sig.dtype);
  r.op = static_cast<uint8_t>(sig.op);
  r.pending_bytes = pending ? sig.bytes : 0;
  r.pending_s = pending ? 4.2 : 0;
  r.phase_s = 4.2;
  r.heard_s_ago = heard_s_ago;
  return r;
}

HangDiagnosis run(const std::vector<RankRecord>& table) {
  return diagnose(table[0], table, 4, 2.2, "node1", 1000);
}

TEST(FlightRecorder, NumbersCollectivesInCallOrderAndReportsTheOldestInFlight) {
  FlightRecorder& f = FlightRecorder::get();
  f.reset();
  const uint64_t a = f.enter(kGrads), b = f.enter(kVotes);
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  f.leave(a);
  f.set_step(3);
  f.set_phase("optimizer");
  ActivitySnapshot s = f.snapshot();
  EXPECT_EQ(s.entered, 2u);
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.pending_seq, 2u);
  EXPECT_TRUE(s.pending == kVotes);
  EXPECT_EQ(s.step, 3);
  EXPECT_STREQ(s.phase, "optimizer");
  f.leave(b);
  f.leave(b);  // a second leave is ignored
  s = f.snapshot();
  EXPECT_EQ(s.pending_seq, 0u);
  EXPECT_EQ(s.completed, 2u);
  for (int i = 0; i < 40; ++i)
    f.leave(f.enter(kGrads));
  const auto h = f.history();
  ASSERT_EQ(h.size(), FlightRecorder::kHistory);
  EXPECT_EQ(h.back().seq, 42u);
  EXPECT_EQ(h.front().seq, 42u - FlightRecorder::kHistory + 1);
  {
    const PhaseScope p("validation");
    EXPECT_STREQ(f.phase(), "validation");
  }
  EXPECT_STREQ(f.phase(), "optimizer");
  f.reset();
}

TEST(HangDiagnosis, AStoppedRankIsMissingWithItsHostPidAndLastActivity) {
  const auto d = run({record(0, 49, 49, kVotes), record(1, 49, 49, kVotes),
                      record(2, 48, 0, kVotes, /*heard_s_ago=*/4.6)});
  ASSERT_EQ(d.peers.size(), 2u);
  EXPECT_EQ(d.peers[0].state, PeerState::with_us);
  EXPECT_EQ(d.peers[1].state, PeerState::missing);
  EXPECT_TRUE(d.service_answered);
  EXPECT_NE(d.peers[1].text.find("rank 2 (node2, pid 1002): missing: not heard from for 4.6 s"),
            std::string::npos)
      << d.peers[1].text;
  EXPECT_EQ(d.summary.rfind("rank 2 is missing", 0), 0u) << d.summary;
  EXPECT_NE(d.headline.find("collective #49 all_reduce(f64 max, 56 B) has not completed"),
            std::string::npos)
      << d.headline;
}

TEST(HangDiagnosis, ADifferentSignatureOrARankPastTheCollectiveDisagrees) {
  auto d = run({record(0, 49, 49, kVotes), record(1, 49, 49, kVotes), record(2, 49, 49, kGrads)});
  EXPECT_EQ(d.peers[1].state, PeerState::disagrees);
  EXPECT_NE(d.peers[1].text.find("its collective #49 is all_reduce(f32 avg, 30.7 KB), here "
                                 "all_reduce(f64 max, 56 B)"),
            std::string::npos)
      << d.peers[1].text;
  EXPECT_EQ(d.summary.rfind("the ranks disagree on collective #49: rank 2 called", 0), 0u);

  d = run({record(0, 49, 49, kVotes), record(1, 50, 50, kGrads), record(2, 49, 49, kVotes)});
  EXPECT_EQ(d.peers[0].state, PeerState::disagrees);
  EXPECT_NE(d.peers[0].text.find("it is past #49, in collective #50"), std::string::npos);
}

TEST(HangDiagnosis, AliveButBehindNeverHeardAndAllTogetherAreToldApart) {
  auto d = run({record(0, 49, 49, kVotes), record(1, 45, 0, kVotes), record(2, 49, 49, kVotes)});
  EXPECT_EQ(d.peers[0].state, PeerState::behind);
  EXPECT_EQ(d.summary.rfind("rank 1 is alive but has not reached #49", 0), 0u) << d.summary;

  d = run({record(0, 49, 49, kVotes), record(1, 49, 49, kVotes), record(2, 0, 0, kVotes, -1)});
  EXPECT_EQ(d.peers[1].state, PeerState::silent);
  EXPECT_EQ(d.summary.rfind("rank 2 never reported", 0), 0u) << d.summary;

  d = run({record(0, 49, 49, kVotes), record(1, 49, 49, kVotes), record(2, 49, 49, kVotes)});
  EXPECT_EQ(d.summary.rfind("every rank waits in #49 with the same signature", 0), 0u);

  // Missing outranks the rest in the summary.
  d = run({record(0, 49, 49, kVotes), record(1, 49, 49, kGrads), record(2, 40, 0, kVotes, 9)});
  EXPECT_EQ(d.summary.rfind("rank 2 is missing", 0), 0u) << d.summary;
}

TEST(HangDiagnosis, NoAnswerFromRankZeroNamesItAsTheLikelyMissingRank) {
  const RankRecord me = record(1, 49, 49, kVotes);
  const auto d = diagnose(me, std::nullopt, 4, 2.2, "node1", 1000);
  EXPECT_TRUE(d.peers.empty());
  EXPECT_FALSE(d.service_answered);
  EXPECT_NE(d.summary.find("the heartbeat service on rank 0 (node1, pid 1000) did not answer"),
            std::string::npos);
}

TEST(HangDiagnosis, TheReportListsRanksCompactlyAndBoundsItsLength) {
  std::vector<RankRecord> table{record(0, 49, 49, kVotes)};
  for (int r = 1; r < 100; ++r) {
    const bool missing = r % 2 == 0 && r > 40;  // 42, 44, ..., 98: 29 missing
    table.push_back(record(r, missing ? 48 : 49, missing ? 0 : 49, kVotes, missing ? 9 : 0.1));
  }
  for (int r = 0; r < 12; ++r)
    table[static_cast<size_t>(r) + 10].heard_s_ago = -1;  // 10-21: never heard
  const std::string text = format_report(0, run(table));
  EXPECT_NE(text.find("train: rank 0:   ranks 1-9, 22-41, 43, 45, "), std::string::npos) << text;
  EXPECT_NE(text.find("... and 9 more rank(s) like these"), std::string::npos) << text;
  EXPECT_NE(text.find("train: rank 0: diagnosis: ranks 42, 44, "), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace dpt::comm
