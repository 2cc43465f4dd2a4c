#include "market/billing.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "ledger/audit.h"
#include "market/audit.h"

namespace grid::market {
namespace {

using ledger::Transfer;
using ledger::TransferKind;

const std::string kRenter = "0x00000000000000000000000000000000000000cc";
const std::string kProv = "0x00000000000000000000000000000000000000aa";
const std::string kUser = ledger::UserAccount(kRenter);
const std::string kEarn = ledger::EarningsAccount(kProv);
constexpr UnixMs kT0 = 1'700'000'000'000;
constexpr Micros kPerMs = 3'600'000;  // 1 micro-USD per running millisecond
constexpr int64_t kMin = 60'000;

Lease MakeLease(int64_t id, Micros price, int64_t fee_bps, LeaseState state = LeaseState::kRunning) {
  Lease l;
  l.id = id;
  l.renter = kRenter;
  l.provider = kProv;
  l.machine_id = 1;
  l.gpus = {static_cast<int>(id - 1)};
  l.price_per_hour = price;
  l.fee_bps = fee_bps;
  l.state = state;
  l.created_ms = kT0;
  l.started_ms = state == LeaseState::kRunning ? kT0 : 0;
  return l;
}

// A ledger plus leases: every settlement's transfers go through Check (which
// must pass: a failing Check is a billing bug) and Apply.
struct World {
  ledger::Ledger ledger;
  std::vector<Transfer> history;
  std::map<int64_t, Lease> leases;
  int faucets = 0;

  void Apply(const std::vector<Transfer>& batch) {
    Status s = ledger.Check(batch);
    ASSERT_TRUE(s.ok()) << "billing produced a batch the ledger rejects: " << s.ToString();
    ledger.Apply(batch);
    history.insert(history.end(), batch.begin(), batch.end());
  }
  void Fund(Micros amount) {
    Transfer t{"faucet:" + std::to_string(++faucets), std::string(ledger::kWorld), kUser, amount,
               TransferKind::kPosted, 0, 0, "faucet"};
    Apply({t});
  }
  Micros Available() const { return ledger.Get(kUser).available(); }
  // Starts a lease with its initial hold (as the broker does).
  Lease& Start(Lease l) {
    Micros hold = InitialHold(l.price_per_hour).value();
    hold = std::min(hold, Available());
    Apply(HoldTransfers(l, hold));
    l.held = hold;
    return leases[l.id] = l;
  }
  Result<Settlement> Tick(int64_t id, UnixMs now, SettleOptions o = {}) {
    o.now_ms = now;
    o.renter_available = Available();
    auto r = Settle(leases.at(id), o);
    if (!r.ok()) return r;
    Apply(r->transfers);
    leases[id] = r->lease;
    return r;
  }
  Micros Posted(int64_t lease_id, const std::string& credit) const {
    Micros sum = 0;
    for (const Transfer& t : history)
      if (t.lease_id == lease_id && t.kind == TransferKind::kPosted && t.credit == credit) sum += t.amount;
    return sum;
  }
  void ExpectAudits() const {
    std::vector<ledger::Account> accounts;
    for (const auto& [id, a] : ledger.accounts()) accounts.push_back(a);
    auto r = ledger::AuditLedger(accounts, history);
    std::vector<Lease> ls;
    for (const auto& [id, l] : leases) ls.push_back(l);
    r.Merge(AuditLeases(ls, ledger.Get(ledger::kEscrow), history));
    for (const auto& f : r.failures) ADD_FAILURE() << "audit: " << f;
  }
};

TEST(Billing, InitialHoldIsTenMinutes) {
  EXPECT_EQ(InitialHold(kPerMs).value(), 600'000);
  EXPECT_EQ(InitialHold(1'000'000).value(), 166'666);  // floor(1e6 / 6)
  EXPECT_EQ(InitialHold(0).value(), 0);
  EXPECT_FALSE(InitialHold(-1).ok());
  EXPECT_EQ(InitialHold(INT64_MAX).value(), INT64_MAX / 6);
}

TEST(Billing, HoldTransfers) {
  Lease l = MakeLease(7, kPerMs, 0, LeaseState::kPending);
  EXPECT_TRUE(HoldTransfers(l, 0).empty());
  EXPECT_TRUE(HoldTransfers(l, -5).empty());
  auto t = HoldTransfers(l, 123);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].id, "lease:7:hold");
  EXPECT_EQ(t[0].debit, kUser);
  EXPECT_EQ(t[0].credit, ledger::kEscrow);
  EXPECT_EQ(t[0].amount, 123);
  EXPECT_EQ(t[0].kind, TransferKind::kHold);
  EXPECT_EQ(t[0].lease_id, 7);
}

TEST(Billing, RunningMs) {
  Lease l = MakeLease(1, kPerMs, 0);
  EXPECT_EQ(RunningMs(l, kT0 + 5000), 5000);
  l.billed_ms = 9000;
  EXPECT_EQ(RunningMs(l, kT0 + 5000), 9000);  // never goes back
  l.state = LeaseState::kPending;
  EXPECT_EQ(RunningMs(l, kT0 + 50'000), 9000);
  l.state = LeaseState::kEnded;
  EXPECT_EQ(RunningMs(l, kT0 + 50'000), 9000);
}

TEST(Billing, TicksPostCumulativeAccruedDeltas) {
  // An awkward price so every tick rounds.
  const Micros price = 1'234'567;
  const int64_t bps = 777;
  World w;
  w.Fund(100'000'000);
  w.Start(MakeLease(1, price, bps));
  UnixMs now = kT0;
  Micros earned_so_far = 0, fee_so_far = 0;
  for (int i = 0; i < 50; ++i) {
    now += 59'000 + 1'237 * (i % 3);
    Micros before_charged = w.leases[1].charged;
    auto r = w.Tick(1, now);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const Lease& l = w.leases[1];
    ASSERT_EQ(l.state, LeaseState::kRunning);
    EXPECT_EQ(l.billed_ms, now - kT0);
    EXPECT_EQ(l.charged, AccruedCharge(price, now - kT0).value());
    EXPECT_EQ(l.fee, FeeOf(l.charged, bps).value());
    EXPECT_EQ(l.settlements, i + 1);
    // This tick's transfers: release of the delta, earn + fee summing to it.
    Micros released = 0, earn = 0, fee = 0;
    for (const Transfer& t : r->transfers) {
      EXPECT_EQ(t.lease_id, 1);
      EXPECT_EQ(t.at_ms, now);
      EXPECT_EQ(t.id.rfind("lease:1:s" + std::to_string(i + 1) + ":", 0), 0u) << t.id;
      if (t.kind == TransferKind::kRelease) released += t.amount;
      if (t.credit == kEarn) earn += t.amount;
      if (t.credit == ledger::kFee) fee += t.amount;
    }
    EXPECT_EQ(released, l.charged - before_charged);
    EXPECT_EQ(earn + fee, l.charged - before_charged);
    earned_so_far += earn;
    fee_so_far += fee;
    EXPECT_EQ(fee_so_far, FeeOf(l.charged, bps).value());
    EXPECT_EQ(earned_so_far, l.charged - l.fee);
    // Plenty of money: the hold is back at 10 minutes.
    EXPECT_EQ(l.held, InitialHold(price).value());
  }
  EXPECT_EQ(w.Posted(1, kEarn) + w.Posted(1, std::string(ledger::kFee)), w.leases[1].charged);
  EXPECT_EQ(w.ledger.Get(kUser).debits_posted, w.leases[1].charged);
  w.ExpectAudits();
}

TEST(Billing, RepeatedTickAtSameTimeChargesNothing) {
  World w;
  w.Fund(10'000'000);
  w.Start(MakeLease(1, kPerMs, 100));
  ASSERT_TRUE(w.Tick(1, kT0 + kMin).ok());
  auto r = w.Tick(1, kT0 + kMin);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->transfers.empty());
  // A clock that steps back bills nothing and never un-bills.
  r = w.Tick(1, kT0 + kMin - 5000);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->transfers.empty());
  EXPECT_EQ(w.leases[1].billed_ms, kMin);
  EXPECT_EQ(w.leases[1].charged, kMin);
}

TEST(Billing, HoldIsToppedUpTowardsTenMinutes) {
  World w;
  w.Fund(600'000 + 30'000);  // the initial hold plus 30 s
  w.Start(MakeLease(1, kPerMs, 0));
  EXPECT_EQ(w.Available(), 30'000);
  auto r = w.Tick(1, kT0 + kMin);  // 60'000 charged out of the hold
  ASSERT_TRUE(r.ok());
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.state, LeaseState::kRunning);
  EXPECT_EQ(l.held, 600'000 - 60'000 + 30'000);  // topped up with all there was
  EXPECT_EQ(w.Available(), 0);
  bool topup = false;
  for (const Transfer& t : r->transfers)
    if (t.kind == TransferKind::kHold) {
      topup = true;
      EXPECT_EQ(t.amount, 30'000);
    }
  EXPECT_TRUE(topup);
  // A deposit later tops it fully back up.
  w.Fund(1'000'000);
  ASSERT_TRUE(w.Tick(1, kT0 + 2 * kMin).ok());
  EXPECT_EQ(w.leases[1].held, 600'000);
  EXPECT_EQ(w.Available(), 1'000'000 - 90'000);
  w.ExpectAudits();
}

TEST(Billing, EndsWhenTheHoldCannotCoverTheNextTick) {
  World w;
  w.Fund(600'000);  // exactly ten minutes, nothing to top up with
  w.Start(MakeLease(1, kPerMs, 1000));
  for (int i = 1; i <= 9; ++i) {
    ASSERT_TRUE(w.Tick(1, kT0 + i * kMin).ok());
    ASSERT_EQ(w.leases[1].state, LeaseState::kRunning) << i;
    EXPECT_EQ(w.leases[1].held, 600'000 - i * kMin);
  }
  // After 9.5 minutes only 30 s is left: less than a tick, so it ends.
  auto r = w.Tick(1, kT0 + 9 * kMin + 30'000);
  ASSERT_TRUE(r.ok());
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.state, LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, EndReason::kInsufficientFunds);
  EXPECT_EQ(l.ended_ms, kT0 + 9 * kMin + 30'000);
  EXPECT_EQ(l.charged, 9 * kMin + 30'000);
  EXPECT_EQ(l.held, 0);
  EXPECT_EQ(w.Available(), 30'000);  // the rest of the hold came back
  EXPECT_EQ(w.ledger.Get(std::string(ledger::kEscrow)).credits_pending, 0);
  EXPECT_EQ(w.Tick(1, kT0 + 20 * kMin).status().code(), Code::kConflict);
  w.ExpectAudits();
}

TEST(Billing, LateTickBillsOnlyWhatTheRenterHad) {
  World w;
  w.Fund(600'000 + 45'000);
  w.Start(MakeLease(1, kPerMs, 2500));
  // The broker was down for 30 minutes: 1'800'000 accrued, the renter had 645'000.
  auto r = w.Tick(1, kT0 + 30 * kMin);
  ASSERT_TRUE(r.ok());
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.state, LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, EndReason::kInsufficientFunds);
  EXPECT_EQ(l.billed_ms, 645'000);
  EXPECT_EQ(l.charged, 645'000);
  EXPECT_EQ(l.fee, FeeOf(645'000, 2500).value());
  EXPECT_EQ(l.held, 0);
  EXPECT_EQ(w.Available(), 0);
  EXPECT_EQ(w.ledger.Get(kUser).posted_balance(), 0);
  EXPECT_EQ(w.Posted(1, kEarn), 645'000 - l.fee);
  w.ExpectAudits();
}

TEST(Billing, LateTickAtAnAwkwardPriceStopsAtTheLastCoveredMillisecond) {
  const Micros price = 7'000'003;  // not a divisor of an hour
  for (Micros extra : {Micros{0}, Micros{1}, Micros{2}, Micros{999}, Micros{12'345}}) {
    SCOPED_TRACE(extra);
    World w;
    Micros hold = InitialHold(price).value();
    w.Fund(hold + extra);
    w.Start(MakeLease(1, price, 0));
    ASSERT_TRUE(w.Tick(1, kT0 + 60 * kMin).ok());
    const Lease& l = w.leases[1];
    EXPECT_EQ(l.end_reason, EndReason::kInsufficientFunds);
    EXPECT_LE(l.charged, hold + extra);
    EXPECT_EQ(l.charged, AccruedCharge(price, l.billed_ms).value());
    // One more millisecond would have cost more than the renter had.
    EXPECT_GT(AccruedCharge(price, l.billed_ms + 1).value(), hold + extra);
    EXPECT_GE(w.Available(), 0);
    w.ExpectAudits();
  }
}

TEST(Billing, EndRefundsTheWholeHold) {
  World w;
  w.Fund(5'000'000);
  w.Start(MakeLease(1, kPerMs, 1000));
  ASSERT_TRUE(w.Tick(1, kT0 + kMin).ok());
  SettleOptions o;
  o.end = true;  // no reason: the renter stopped it
  auto r = w.Tick(1, kT0 + kMin + 1234, o);
  ASSERT_TRUE(r.ok());
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.state, LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, EndReason::kRenterStopped);
  EXPECT_EQ(l.charged, kMin + 1234);
  EXPECT_EQ(l.held, 0);
  ASSERT_FALSE(r->transfers.empty());
  EXPECT_EQ(r->transfers.back().memo, "refund");
  EXPECT_EQ(w.ledger.Get(kUser).debits_pending, 0);
  EXPECT_EQ(w.Available(), 5'000'000 - (kMin + 1234));
  w.ExpectAudits();
}

TEST(Billing, PendingLeaseEndingIsNotBilled) {
  World w;
  w.Fund(1'000'000);
  w.Start(MakeLease(1, kPerMs, 1000, LeaseState::kPending));
  auto tick = w.Tick(1, kT0 + 5 * kMin);  // still pending: nothing happens
  ASSERT_TRUE(tick.ok());
  EXPECT_TRUE(tick->transfers.empty());
  EXPECT_EQ(w.leases[1].state, LeaseState::kPending);
  SettleOptions o;
  o.end = true;
  o.end_reason = EndReason::kFailed;
  auto r = w.Tick(1, kT0 + 10 * kMin, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->transfers.size(), 1u);
  EXPECT_EQ(r->transfers[0].kind, TransferKind::kRelease);
  EXPECT_EQ(r->transfers[0].amount, 600'000);
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.end_reason, EndReason::kFailed);
  EXPECT_EQ(l.charged, 0);
  EXPECT_EQ(l.billed_ms, 0);
  EXPECT_EQ(w.Available(), 1'000'000);
  w.ExpectAudits();
}

TEST(Billing, BillUntilCapsRunningTime) {
  World w;
  w.Fund(5'000'000);
  w.Start(MakeLease(1, kPerMs, 0));
  ASSERT_TRUE(w.Tick(1, kT0 + kMin).ok());
  SettleOptions o;
  o.end = true;
  o.end_reason = EndReason::kHostLost;
  o.bill_until_ms = kT0 + 3 * kMin;  // the last heartbeat
  auto r = w.Tick(1, kT0 + 9 * kMin, o);
  ASSERT_TRUE(r.ok());
  const Lease& l = w.leases[1];
  EXPECT_EQ(l.end_reason, EndReason::kHostLost);
  EXPECT_EQ(l.billed_ms, 3 * kMin);
  EXPECT_EQ(l.charged, 3 * kMin);
  EXPECT_EQ(l.ended_ms, kT0 + 9 * kMin);
  // A cap before what was already billed never un-bills.
  World w2;
  w2.Fund(5'000'000);
  w2.Start(MakeLease(1, kPerMs, 0));
  ASSERT_TRUE(w2.Tick(1, kT0 + 5 * kMin).ok());
  o.bill_until_ms = kT0 + 2 * kMin;
  ASSERT_TRUE(w2.Tick(1, kT0 + 6 * kMin, o).ok());
  EXPECT_EQ(w2.leases[1].charged, 5 * kMin);
  // A cap without ending (end_date in the future of the tick is no cap).
  World w3;
  w3.Fund(5'000'000);
  w3.Start(MakeLease(1, kPerMs, 0));
  SettleOptions cap;
  cap.bill_until_ms = kT0 + 10 * kMin;
  ASSERT_TRUE(w3.Tick(1, kT0 + 4 * kMin, cap).ok());
  EXPECT_EQ(w3.leases[1].billed_ms, 4 * kMin);
  w.ExpectAudits();
  w2.ExpectAudits();
  w3.ExpectAudits();
}

TEST(Billing, SettlingAnEndedLeaseIsAConflict) {
  Lease l = MakeLease(1, kPerMs, 0, LeaseState::kEnded);
  SettleOptions o;
  o.now_ms = kT0;
  EXPECT_EQ(Settle(l, o).status().code(), Code::kConflict);
  o.end = true;
  EXPECT_EQ(Settle(l, o).status().code(), Code::kConflict);
}

TEST(Billing, TransferIdsAreUniqueAcrossSettlements) {
  World w;
  w.Fund(700'000);
  w.Start(MakeLease(1, kPerMs, 1500));
  for (int i = 1; i < 100 && w.leases[1].active(); ++i) ASSERT_TRUE(w.Tick(1, kT0 + i * 45'000).ok());
  std::set<std::string> ids;
  for (const Transfer& t : w.history) EXPECT_TRUE(ids.insert(t.id).second) << t.id;
  EXPECT_FALSE(w.leases[1].active());
}

TEST(Billing, RichRenterIsNotMistakenForBroke) {
  // charged + held + available must not overflow into a negative budget.
  Lease l = MakeLease(1, kPerMs, 0);
  l.held = 600'000;
  SettleOptions o;
  o.now_ms = kT0 + kMin;
  o.renter_available = INT64_MAX - 100;
  auto r = Settle(l, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->lease.state, LeaseState::kRunning);
  EXPECT_EQ(r->lease.charged, kMin);
  EXPECT_EQ(r->lease.held, 600'000);
}

TEST(Billing, FeeRatesAtTheEdges) {
  for (int64_t bps : {int64_t{0}, int64_t{1}, int64_t{9'999}, int64_t{10'000}}) {
    SCOPED_TRACE(bps);
    World w;
    w.Fund(10'000'000);
    w.Start(MakeLease(1, 1'000'003, bps));
    for (int i = 1; i <= 7; ++i) ASSERT_TRUE(w.Tick(1, kT0 + i * 61'111).ok());
    const Lease& l = w.leases[1];
    EXPECT_EQ(w.Posted(1, std::string(ledger::kFee)), FeeOf(l.charged, bps).value());
    EXPECT_EQ(w.Posted(1, kEarn), l.charged - l.fee);
    w.ExpectAudits();
  }
}

// Random sequences of ticks, deposits, ends and host losses over several
// leases of one renter; the ledger checks every batch, and the audits hold.
TEST(BillingProperty, RandomTicksKeepTheBooks) {
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    auto pick = [&](uint64_t n) { return static_cast<int64_t>(rng() % n); };
    World w;
    w.Fund(pick(3'000'000) + 1);
    const std::vector<Micros> prices = {1, 999, 1'000'000, 1'234'567, kPerMs, 7'000'003, 250'000'000};
    int64_t next_id = 1;
    UnixMs now = kT0;
    for (int step = 0; step < 400; ++step) {
      ASSERT_FALSE(::testing::Test::HasFatalFailure()) << "step " << step;
      now += pick(4) == 0 ? pick(40 * kMin) : pick(2 * kMin);
      int op = static_cast<int>(pick(20));
      std::vector<int64_t> active;
      for (const auto& [id, l] : w.leases)
        if (l.active()) active.push_back(id);
      if (op == 0) {
        w.Fund(pick(5'000'000) + 1);
      } else if (op <= 2 || active.empty()) {
        Micros price = prices[static_cast<size_t>(pick(prices.size()))];
        if (w.Available() < InitialHold(price).value()) continue;  // the broker would refuse
        Lease l = MakeLease(next_id++, price, pick(3) == 0 ? 0 : pick(10'001),
                            pick(3) == 0 ? LeaseState::kPending : LeaseState::kRunning);
        l.created_ms = l.started_ms = now;
        w.Start(l);
      } else {
        int64_t id = active[static_cast<size_t>(pick(active.size()))];
        SettleOptions o;
        o.tick_ms = pick(4) == 0 ? 30'000 : 60'000;
        if (op == 3) {
          o.end = true;
        } else if (op == 4) {
          o.end = true;
          o.end_reason = EndReason::kHostLost;
          o.bill_until_ms = now - pick(5 * kMin);
        } else if (op == 5 && w.leases[id].state == LeaseState::kPending) {
          w.leases[id].state = LeaseState::kRunning;  // the host reports running
          w.leases[id].started_ms = now;
        }
        Lease before = w.leases[id];
        auto r = w.Tick(id, now, o);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        const Lease& l = w.leases[id];
        ASSERT_GE(l.billed_ms, before.billed_ms);
        ASSERT_GE(l.charged, before.charged);
        if (before.state == LeaseState::kRunning) {
          UnixMs until = o.bill_until_ms > 0 ? std::min(now, o.bill_until_ms) : now;
          ASSERT_LE(l.billed_ms, std::max(before.billed_ms, until - l.started_ms));
        }
      }
      // Invariants after every step.
      ASSERT_GE(w.Available(), 0) << "step " << step;
      Micros held = 0;
      for (const auto& [id, l] : w.leases) {
        ASSERT_GE(l.held, 0);
        if (l.active()) {
          held += l.held;
        } else {
          ASSERT_EQ(l.held, 0);
        }
        ASSERT_EQ(l.charged, AccruedCharge(l.price_per_hour, l.billed_ms).value());
      }
      ASSERT_EQ(w.ledger.Get(std::string(ledger::kEscrow)).credits_pending, held) << "step " << step;
      ASSERT_EQ(w.ledger.Get(kUser).debits_pending, held) << "step " << step;
    }
    Micros charged = 0;
    for (const auto& [id, l] : w.leases) {
      charged += l.charged;
      EXPECT_EQ(w.Posted(id, kEarn) + w.Posted(id, std::string(ledger::kFee)), l.charged) << "lease " << id;
      EXPECT_EQ(w.Posted(id, std::string(ledger::kFee)), l.fee) << "lease " << id;
    }
    EXPECT_EQ(w.ledger.Get(kEarn).credits_posted + w.ledger.Get(std::string(ledger::kFee)).credits_posted, charged);
    w.ExpectAudits();
  }
}

}  // namespace
}  // namespace grid::market

namespace grid::market {
namespace {

// A lease paid by payment channel: 1 micro-USD per ms, vouchers of one
// minute, a one-minute grace.
Lease ChannelLease() {
  Lease l = MakeLease(1, kPerMs, 0);
  l.channel = ChannelPayment{.channel = "0xc1", .deposit = 100 * kMin, .expiry_ms = kT0 + 1000 * kMin,
                             .interval_ms = kMin, .grace_ms = kMin, .expiry_margin_ms = 5 * kMin, .margin = kMin};
  return l;
}

TEST(ChannelBilling, MovesNoMoneyAndChargesWhatTheVouchersPay) {
  Lease l = ChannelLease();
  l.channel->voucher = 2 * kMin;  // pays through 2 minutes
  SettleOptions o;
  o.now_ms = kT0 + 90'000;
  auto s = Settle(l, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->transfers.empty());
  EXPECT_EQ(s->lease.billed_ms, 90'000);
  EXPECT_EQ(s->lease.charged, 90'000);
  EXPECT_EQ(s->lease.held, 0);
  EXPECT_EQ(s->lease.state, LeaseState::kRunning);
  // Past what the voucher pays, within the grace: billing stops at the
  // voucher, the lease goes on.
  o.now_ms = kT0 + 2 * kMin + 30'000;
  s = Settle(s->lease, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->lease.charged, 2 * kMin);
  EXPECT_EQ(s->lease.state, LeaseState::kRunning);
  // Past the grace: it ends for want of vouchers, charged what they paid.
  o.now_ms = kT0 + 3 * kMin + 1;
  s = Settle(s->lease, o);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->transfers.empty());
  EXPECT_EQ(s->lease.state, LeaseState::kEnded);
  EXPECT_EQ(s->lease.end_reason, EndReason::kInsufficientFunds);
  EXPECT_EQ(s->lease.charged, 2 * kMin);
  EXPECT_EQ(s->lease.fee, 0);
}

TEST(ChannelBilling, EndingOnRequestBillsToNowWithinTheVouchers) {
  Lease l = ChannelLease();
  l.channel->voucher = 3 * kMin;
  SettleOptions o;
  o.now_ms = kT0 + 100'000;
  o.end = true;
  o.end_reason = EndReason::kRenterStopped;
  auto s = Settle(l, o);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->transfers.empty());
  EXPECT_EQ(s->lease.state, LeaseState::kEnded);
  EXPECT_EQ(s->lease.end_reason, EndReason::kRenterStopped);
  EXPECT_EQ(s->lease.charged, 100'000);
  // A pending channel lease ends unbilled.
  Lease p = ChannelLease();
  p.state = LeaseState::kPending;
  p.started_ms = 0;
  s = Settle(p, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->lease.charged, 0);
  EXPECT_EQ(s->lease.state, LeaseState::kEnded);
}

TEST(ChannelBilling, VoucherTransfersRecordTheIncrease) {
  Lease l = ChannelLease();
  auto t = VoucherTransfers(l, kMin, kT0);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].id, "lease:1:voucher:60000");
  EXPECT_EQ(t[0].debit, ledger::ChannelAccount(kRenter));
  EXPECT_EQ(t[0].credit, ledger::ChannelAccount(kProv));
  EXPECT_EQ(t[0].amount, kMin);
  EXPECT_EQ(t[0].kind, TransferKind::kPosted);
  EXPECT_EQ(t[0].lease_id, 1);
  l.channel->voucher = kMin;
  t = VoucherTransfers(l, 2 * kMin, kT0);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].amount, kMin);
  EXPECT_TRUE(VoucherTransfers(l, kMin, kT0).empty());
  EXPECT_TRUE(VoucherTransfers(MakeLease(2, kPerMs, 0), kMin, kT0).empty());  // not a channel lease
  // Channel accounts are outside custody: the ledger lets the renter's go
  // below zero (the money is in the contract, not here).
  ledger::Ledger ledger;
  EXPECT_TRUE(ledger.Check(VoucherTransfers(ChannelLease(), kMin, kT0)).ok());
}

TEST(PaidUntil, ForAChannelLeaseIsTheVoucherPlusTheGrace) {
  Lease l = ChannelLease();
  EXPECT_EQ(PaidUntil(l), kT0 + kMin);  // no voucher yet: the grace
  l.channel->voucher = 2 * kMin;
  EXPECT_EQ(PaidUntil(l), kT0 + 3 * kMin);
}

TEST(PaidUntil, IsWhereTheHoldRunsOut) {
  Lease l;
  l.state = LeaseState::kRunning;
  l.started_ms = 1'000'000;
  l.price_per_hour = 36'000'000;  // 10 micro-USD per ms
  l.charged = 50'000;             // 5 s billed
  l.held = 100'000;               // 10 s more
  EXPECT_EQ(PaidUntil(l), 1'000'000 + 15'000);
  EXPECT_EQ(AccruedCharge(l.price_per_hour, PaidUntil(l) - l.started_ms).value(), l.charged + l.held);
  EXPECT_GT(AccruedCharge(l.price_per_hour, PaidUntil(l) + 1 - l.started_ms).value(), l.charged + l.held);
  l.state = LeaseState::kPending;
  EXPECT_EQ(PaidUntil(l), 0);
}

}  // namespace
}  // namespace grid::market
