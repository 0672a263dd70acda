// Stop requests: signal names, what may be requeued, Slurm's time-left forms, and the handlers.
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/errors.h"
#include "job/nodes.h"
#include "job/stop_request.h"
#include "job/time_limit.h"

namespace dpt::job {
namespace {

TEST(StopRequests, SlurmTimeLeftInEveryFormSqueuePrints) {
  EXPECT_EQ(parse_slurm_time_left("45"), 45);
  EXPECT_EQ(parse_slurm_time_left("12:34"), 12 * 60 + 34);
  EXPECT_EQ(parse_slurm_time_left("1:02:03"), 3600 + 2 * 60 + 3);
  EXPECT_EQ(parse_slurm_time_left("2-03:04:05\n"), ((2 * 24 + 3) * 60 + 4) * 60 + 5);
  EXPECT_EQ(parse_slurm_time_left("2-03"), (2 * 24 + 3) * 3600);
  EXPECT_EQ(parse_slurm_time_left("2-03:04"), ((2 * 24 + 3) * 60 + 4) * 60);
  EXPECT_EQ(parse_slurm_time_left("0:00"), 0);
  for (const char* bad :
       {"UNLIMITED", "NOT_SET", "INVALID", "", "1:2:3:4", "1:61", "-5", "1--2", "a:b", "1::2"})
    EXPECT_EQ(parse_slurm_time_left(bad), std::nullopt) << bad;
}

TEST(StopRequests, SignalNamesAndWhatMayBeRequeued) {
  EXPECT_EQ(signal_number("USR2"), SIGUSR2);
  EXPECT_EQ(signal_number("sigusr1"), SIGUSR1);
  EXPECT_EQ(signal_number(std::to_string(SIGHUP)), SIGHUP);
  EXPECT_EQ(signal_number("none"), 0);
  EXPECT_EQ(signal_name(SIGUSR2), "SIGUSR2");
  for (const char* bad : {"TERM", "SIGTERM", "KILL", "9", "", "USR3"})
    EXPECT_THROW(signal_number(bad), UsageError) << bad;
  EXPECT_TRUE(stop_allows_requeue(kStopPreempt));
  EXPECT_TRUE(stop_allows_requeue(kStopTimeLimit));
  EXPECT_FALSE(stop_allows_requeue(kStopTerm | kStopPreempt));  // SIGTERM's sender decides
  EXPECT_FALSE(stop_allows_requeue(0));
  EXPECT_EQ(describe_stop(kStopTerm | kStopPreempt, SIGUSR2, 0),
            "SIGTERM and SIGUSR2 (--preempt-signal)");
}

TEST(StopRequests, SignalReachNamesTheRanksAndHostsThatMissedIt) {
  const std::vector<std::string> hosts = {"node1", "node1", "node2", "node2", "node3"};
  // Everyone saw SIGUSR2; rank 4 also saw SIGTERM, which is not among the reasons here.
  EXPECT_EQ(describe_signal_reach(kStopPreempt, SIGUSR2, {2, 2, 2, 2, 3}, hosts),
            "SIGUSR2 reached all 5 ranks");
  EXPECT_EQ(describe_signal_reach(kStopPreempt, SIGUSR2, {2, 2, 0, 0, 2}, hosts),
            "SIGUSR2 reached 3 of 5 ranks; the others (node2 ranks 2-3) stopped by the agreement");
  EXPECT_EQ(describe_signal_reach(kStopTerm | kStopPreempt, SIGUSR1, {3, 1, 2, 3, 0}, hosts),
            "SIGTERM reached 3 of 5 ranks; the others (node2 ranks 2; node3 ranks 4) stopped by "
            "the agreement; SIGUSR1 reached 3 of 5 ranks; the others (node1 ranks 1; node3 ranks "
            "4) stopped by the agreement");
  // The time limit is rank 0's alone: no reach to speak of.
  EXPECT_EQ(describe_signal_reach(kStopTimeLimit, SIGUSR2, {4, 0, 0, 0, 0}, hosts), "");
  EXPECT_EQ(ranks_by_host(hosts, {0, 1, 2, 4}), "node1 ranks 0-1; node2 ranks 2; node3 ranks 4");
  EXPECT_EQ(ranks_by_host({"b", "a", "b", "b", "a"}, {0, 1, 2, 3, 4}),
            "b ranks 0,2-3; a ranks 1,4");
}

TEST(StopRequests, AStopVoteCarriesEveryKindAndTheMaxIsTheUnion) {
  for (unsigned reasons = 0; reasons < 8; ++reasons)
    EXPECT_EQ(StopVote::of(reasons).reasons(), reasons);
  // What the step's max all-reduce does to two ranks' votes.
  const StopVote a = StopVote::of(kStopTerm), b = StopVote::of(kStopPreempt | kStopTimeLimit);
  const StopVote both{std::max(a.term, b.term), std::max(a.preempt, b.preempt),
                      std::max(a.time_limit, b.time_limit)};
  EXPECT_EQ(both.reasons(), kStopTerm | kStopPreempt | kStopTimeLimit);
}

TEST(StopRequests, ASignalSetsItsFlagAndHandlersAreRestored) {
  struct sigaction before {};
  ASSERT_EQ(::sigaction(SIGUSR1, nullptr, &before), 0);
  {
    StopRequests stop(SIGUSR1);
    EXPECT_EQ(stop.poll(), 0u);
    ASSERT_EQ(::raise(SIGUSR1), 0);
    EXPECT_EQ(stop.poll(), unsigned{kStopPreempt});
    ASSERT_EQ(::raise(SIGTERM), 0);
    EXPECT_EQ(stop.poll(), unsigned{kStopPreempt | kStopTerm});
  }
  struct sigaction after {};
  ASSERT_EQ(::sigaction(SIGUSR1, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

}  // namespace
}  // namespace dpt::job
