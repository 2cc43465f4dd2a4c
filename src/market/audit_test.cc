#include "market/audit.h"

#include <gtest/gtest.h>

#include "market/billing.h"

namespace grid::market {
namespace {

using ledger::Transfer;
using ledger::TransferKind;

const std::string kRenter = "0x00000000000000000000000000000000000000cc";
const std::string kProv = "0x00000000000000000000000000000000000000aa";
constexpr UnixMs kT0 = 1'700'000'000'000;

// Three leases on one machine, settled through the real billing and ledger:
// lease 1 ended (renter stopped), lease 2 running, lease 3 pending.
struct Books {
  ledger::Ledger ledger;
  std::vector<Transfer> transfers;
  std::vector<Lease> leases;
  ledger::Account escrow;

  void Apply(const std::vector<Transfer>& b) {
    ASSERT_TRUE(ledger.Check(b).ok());
    ledger.Apply(b);
    transfers.insert(transfers.end(), b.begin(), b.end());
  }
  Lease Start(int64_t id, std::vector<int> gpus, LeaseState state) {
    Lease l;
    l.id = id;
    l.renter = kRenter;
    l.provider = kProv;
    l.machine_id = 1;
    l.gpus = std::move(gpus);
    l.price_per_hour = 1'234'567;
    l.fee_bps = 1000;
    l.state = state;
    l.created_ms = l.started_ms = kT0;
    l.held = InitialHold(l.price_per_hour).value();
    Apply(HoldTransfers(l, l.held));
    return l;
  }
  Lease Tick(const Lease& l, UnixMs now, bool end = false) {
    SettleOptions o;
    o.now_ms = now;
    o.renter_available = ledger.Get(ledger::UserAccount(kRenter)).available();
    o.end = end;
    auto r = Settle(l, o);
    EXPECT_TRUE(r.ok());
    Apply(r->transfers);
    return r->lease;
  }
};

Books Good() {
  Books b;
  b.Apply({Transfer{"faucet", std::string(ledger::kWorld), ledger::UserAccount(kRenter), 50'000'000,
                    TransferKind::kPosted, 0, 0, "faucet"}});
  Lease l1 = b.Start(1, {0, 1}, LeaseState::kRunning);
  Lease l2 = b.Start(2, {2, 3}, LeaseState::kRunning);
  Lease l3 = b.Start(3, {4}, LeaseState::kPending);
  for (int i = 1; i <= 5; ++i) {
    l1 = b.Tick(l1, kT0 + i * 61'000);
    l2 = b.Tick(l2, kT0 + i * 59'000);
  }
  l1 = b.Tick(l1, kT0 + 400'000, /*end=*/true);
  // Lease 4 is paid by payment channel: two vouchers, settled twice.
  Lease l4;
  l4.id = 4;
  l4.renter = kRenter;
  l4.provider = kProv;
  l4.machine_id = 1;
  l4.gpus = {5};
  l4.price_per_hour = 3'600'000;
  l4.state = LeaseState::kRunning;
  l4.created_ms = l4.started_ms = kT0;
  l4.channel = ChannelPayment{.channel = "0xc4", .deposit = 10'000'000, .expiry_ms = kT0 + 86'400'000,
                              .interval_ms = 60'000, .grace_ms = 60'000, .margin = 60'000};
  for (Micros v : {60'000, 120'000}) {
    b.Apply(VoucherTransfers(l4, v, kT0));
    l4.channel->voucher = v;
  }
  l4 = b.Tick(l4, kT0 + 90'000);
  b.leases = {l1, l2, l3, l4};
  b.escrow = b.ledger.Get(ledger::kEscrow);
  return b;
}

bool Reports(const AuditReport& r, const std::string& needle) {
  for (const auto& f : r.failures)
    if (f.find(needle) != std::string::npos) return true;
  return false;
}

std::string Dump(const AuditReport& r) {
  std::string s;
  for (const auto& c : r.checks) s += "check: " + c + "\n";
  for (const auto& f : r.failures) s += "FAIL: " + f + "\n";
  return s;
}

Lease& ById(std::vector<Lease>& ls, int64_t id) {
  for (Lease& l : ls)
    if (l.id == id) return l;
  throw std::logic_error("no lease");
}

TEST(AuditLeases, SettledBooksPass) {
  Books b = Good();
  ASSERT_EQ(b.leases[0].state, LeaseState::kEnded);
  ASSERT_GT(b.leases[1].charged, 0);
  ASSERT_EQ(b.leases[3].charged, 90'000);  // the channel lease: 90 s at 1 micro-USD/ms
  AuditReport r = AuditLeases(b.leases, b.escrow, b.transfers);
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_GE(r.checks.size(), 4u);
  // And the whole ledger audits clean too.
  std::vector<ledger::Account> accounts;
  for (const auto& [id, a] : b.ledger.accounts()) accounts.push_back(a);
  AuditReport lr = ledger::AuditLedger(accounts, b.transfers);
  EXPECT_TRUE(lr.ok()) << Dump(lr);
}

TEST(AuditLeases, EmptyPasses) {
  AuditReport r = AuditLeases({}, ledger::Account{std::string(ledger::kEscrow)}, std::vector<Transfer>{});
  EXPECT_TRUE(r.ok()) << Dump(r);
}

TEST(AuditLeases, StreamsTransfers) {
  Books b = Good();
  AuditReport r = AuditLeases(b.leases, b.escrow, [&](const std::function<void(const Transfer&)>& visit) {
    for (const Transfer& t : b.transfers) visit(t);
  });
  EXPECT_TRUE(r.ok()) << Dump(r);
}

TEST(AuditLeases, DetectsEachKindOfCorruption) {
  struct Corruption {
    const char* name;
    std::function<void(Books&)> corrupt;
    const char* want;
  };
  auto drop = [](Books& b, const std::string& suffix) {
    std::erase_if(b.transfers, [&](const Transfer& t) { return t.id.ends_with(suffix); });
  };
  std::vector<Corruption> cases = {
      {"escrow off by one", [](Books& b) { b.escrow.credits_pending += 1; }, "active leases hold"},
      {"negative held", [](Books& b) { ById(b.leases, 3).held = -5; }, "held is negative"},
      {"ended lease still holds", [](Books& b) { ById(b.leases, 1).held = 7; }, "ended but still holds"},
      {"charged off the accrual rule", [](Books& b) { ById(b.leases, 2).charged += 1; }, "accrue"},
      {"billed_ms edited", [](Books& b) { ById(b.leases, 2).billed_ms += 10'000; }, "accrue"},
      {"fee off the rule", [](Books& b) { ById(b.leases, 2).fee -= 1; }, "bps of"},
      {"bad fee rate", [](Books& b) { ById(b.leases, 2).fee_bps = 20'000; }, "(invalid)"},
      {"earnings transfer changed",
       [](Books& b) {
         for (Transfer& t : b.transfers)
           if (t.lease_id == 2 && t.credit == ledger::EarningsAccount(kProv)) {
             t.amount += 3;
             break;
           }
       },
       "provider earned"},
      {"fee transfer lost", [&](Books& b) { drop(b, ":s3:fee"); }, "fee transfers sum to"},
      {"posted elsewhere",
       [](Books& b) {
         b.transfers.push_back(Transfer{"x", ledger::UserAccount(kRenter), ledger::UserAccount("0x1"), 5,
                                        TransferKind::kPosted, 2, 0, "oops"});
       },
       "posted to neither"},
      {"hold transfer lost", [&](Books& b) { drop(b, "lease:2:hold"); }, "holds minus releases"},
      {"refund lost", [&](Books& b) { drop(b, ":refund"); }, "holds minus releases"},
      {"transfer of an unknown lease",
       [](Books& b) {
         b.transfers.push_back(Transfer{"x", ledger::UserAccount(kRenter), std::string(ledger::kEscrow), 5,
                                        TransferKind::kHold, 99, 0, "hold"});
       },
       "lease 99, which does not exist"},
      {"lease listed twice", [](Books& b) { b.leases.push_back(b.leases[1]); }, "appears twice"},
      {"GPU in two active leases", [](Books& b) { ById(b.leases, 3).gpus = {3}; },
       "GPU 3 of machine 1 is in active leases 2 and 3"},
      {"voucher record lost", [&](Books& b) { drop(b, "lease:4:voucher:120000"); }, "voucher transfers add up to"},
      {"voucher edited", [](Books& b) { ById(b.leases, 4).channel->voucher += 1; }, "voucher transfers add up to"},
      {"voucher over the deposit",
       [](Books& b) {
         Lease& l = ById(b.leases, 4);
         l.channel->deposit = l.channel->voucher;
       },
       "over the deposit"},
      {"channel lease charged past its vouchers",
       [](Books& b) {
         Lease& l = ById(b.leases, 4);
         l.billed_ms = 200'000;
         l.charged = 200'000;
       },
       "the vouchers pay only"},
      {"channel lease with a fee",
       [](Books& b) {
         Lease& l = ById(b.leases, 4);
         l.fee_bps = 100;
         l.fee = FeeOf(l.charged, 100).value();
       },
       "paid by channel but has a fee"},
      {"channel lease paid from custody",
       [](Books& b) {
         b.transfers.push_back(Transfer{"x", ledger::UserAccount(kRenter), ledger::EarningsAccount(kProv), 5,
                                        TransferKind::kPosted, 4, 0, "charge"});
       },
       "provider earned"},
      {"channel lease holding escrow",
       [](Books& b) {
         b.transfers.push_back(Transfer{"x", ledger::UserAccount(kRenter), std::string(ledger::kEscrow), 5,
                                        TransferKind::kHold, 4, 0, "hold"});
       },
       "holds minus releases"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Books b = Good();
    c.corrupt(b);
    AuditReport r = AuditLeases(b.leases, b.escrow, b.transfers);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(Reports(r, c.want)) << Dump(r);
  }
}

TEST(AuditLeases, EndedLeasesMayShareGpusWithActiveOnes) {
  Books b = Good();
  ById(b.leases, 1).gpus = {2, 3};  // ended: its GPUs went to lease 2
  AuditReport r = AuditLeases(b.leases, b.escrow, b.transfers);
  EXPECT_TRUE(r.ok()) << Dump(r);
  // Same GPU index on another machine is fine too.
  ById(b.leases, 3).gpus = {2};
  ById(b.leases, 3).machine_id = 2;
  r = AuditLeases(b.leases, b.escrow, b.transfers);
  EXPECT_TRUE(r.ok()) << Dump(r);
}

}  // namespace
}  // namespace grid::market
