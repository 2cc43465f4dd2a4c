#include "ledger/audit.h"

#include <gtest/gtest.h>

#include <random>

namespace grid::ledger {
namespace {

using K = TransferKind;

Transfer T(std::string id, std::string debit, std::string credit, Micros amount, K kind = K::kPosted) {
  Transfer t;
  t.id = std::move(id);
  t.debit = std::move(debit);
  t.credit = std::move(credit);
  t.amount = amount;
  t.kind = kind;
  return t;
}

const std::string W(kWorld), E(kEscrow), F(kFee);
const std::string kAlice = UserAccount("0xa");
const std::string kEarn = EarningsAccount("0xb");

// A consistent history, built through the real ledger.
struct History {
  Ledger ledger;
  std::vector<Transfer> transfers;
  void Add(std::vector<Transfer> batch) {
    ASSERT_TRUE(ledger.Check(batch).ok()) << ledger.Check(batch).ToString();
    ledger.Apply(batch);
    transfers.insert(transfers.end(), batch.begin(), batch.end());
  }
  std::vector<Account> Accounts() const {
    std::vector<Account> out;
    for (const auto& [id, a] : ledger.accounts()) out.push_back(a);
    return out;
  }
};

History Good() {
  History h;
  h.Add({T("f", W, kAlice, 1000)});
  h.Add({T("h", kAlice, E, 600, K::kHold)});
  h.Add({T("r", kAlice, E, 100, K::kRelease), T("e", kAlice, kEarn, 90), T("x", kAlice, F, 10)});
  return h;
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

TEST(AuditLedger, ConsistentHistoryPasses) {
  History h = Good();
  AuditReport r = AuditLedger(h.Accounts(), h.transfers);
  EXPECT_TRUE(r.ok()) << Dump(r);
  ASSERT_GE(r.checks.size(), 4u);
  EXPECT_NE(std::find(r.checks.begin(), r.checks.end(), "5 accounts: balances equal the sum of their 5 transfers"),
            r.checks.end())
      << Dump(r);
}

TEST(AuditLedger, EmptyLedgerPasses) {
  AuditReport r = AuditLedger({}, std::vector<Transfer>{});
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_FALSE(r.checks.empty());
}

TEST(AuditLedger, StreamsTransfers) {
  History h = Good();
  int calls = 0;
  AuditReport r = AuditLedger(h.Accounts(), [&](const std::function<void(const Transfer&)>& visit) {
    ++calls;
    for (const Transfer& t : h.transfers) visit(t);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(r.ok()) << Dump(r);
}

TEST(AuditLedger, RandomHistoriesPass) {
  const std::vector<std::string> ids = {W, E, F, kAlice, UserAccount("0xc"), kEarn};
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    History h;
    for (int i = 0; i < 500; ++i) {
      Transfer t = T(std::to_string(i), ids[rng() % ids.size()], ids[rng() % ids.size()], 1 + rng() % 100,
                     static_cast<K>(rng() % 3));
      if (h.ledger.Check({t}).ok()) h.Add({t});
    }
    AuditReport r = AuditLedger(h.Accounts(), h.transfers);
    EXPECT_TRUE(r.ok()) << Dump(r);
  }
}

// Each corruption must be reported, with a line naming it.
TEST(AuditLedger, DetectsEachKindOfCorruption) {
  struct Corruption {
    const char* name;
    std::function<void(std::vector<Account>&, std::vector<Transfer>&)> corrupt;
    const char* want;
  };
  std::vector<Corruption> cases = {
      {"balance edited", [](auto& a, auto&) { for (auto& x : a) if (x.id == kAlice) x.credits_posted += 5; },
       "credits_posted is"},
      {"pending edited", [](auto& a, auto&) { for (auto& x : a) if (x.id == E) x.credits_pending -= 1; },
       "credits_pending is"},
      {"transfer lost", [](auto&, auto& t) { t.erase(t.begin() + 3); }, "transfers sum to"},
      {"transfer duplicated", [](auto&, auto& t) { t.push_back(t.back()); }, "transfers sum to"},
      {"account missing", [](auto& a, auto&) { std::erase_if(a, [](const Account& x) { return x.id == kEarn; }); },
       "earnings:0xb is touched by 1 transfer(s) but is not stored"},
      {"unknown account", [](auto&, auto& t) { t.push_back(T("z", W, "user:0xghost", 1)); }, "user:0xghost"},
      {"zero amount", [](auto&, auto& t) { t.push_back(T("z", W, kAlice, 0)); }, "is not positive"},
      {"negative amount", [](auto&, auto& t) { t[0].amount = -t[0].amount; }, "is not positive"},
      {"debits != credits posted", [](auto& a, auto&) { for (auto& x : a) if (x.id == W) x.debits_posted += 1; },
       "posted: debits sum to"},
      {"debits != credits pending",
       [](auto& a, auto&) { for (auto& x : a) if (x.id == kAlice) x.debits_pending += 1; }, "pending: debits sum to"},
      {"customer overdrawn", [](auto& a, auto& t) {
         // A consistent but overdrawn customer: spends money it never had.
         t.push_back(T("o", kEarn, W, 500));
         for (auto& x : a) {
           if (x.id == kEarn) x.debits_posted += 500;
           if (x.id == W) x.credits_posted += 500;
         }
       }, "customer account earnings:0xb: available is negative"},
      {"negative pending", [](auto& a, auto& t) {
         t.push_back(T("o", W, E, 700, K::kRelease));
         for (auto& x : a) {
           if (x.id == W) x.debits_pending -= 700;
           if (x.id == E) x.credits_pending -= 700;
         }
       }, "negative pending"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    History h = Good();
    auto accounts = h.Accounts();
    auto transfers = h.transfers;
    c.corrupt(accounts, transfers);
    AuditReport r = AuditLedger(accounts, transfers);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(Reports(r, c.want)) << Dump(r);
  }
}

TEST(AuditLedger, CapsFailureLines) {
  std::vector<Transfer> t;
  for (int i = 0; i < 100; ++i) t.push_back(T("z" + std::to_string(i), W, kAlice, 0));
  AuditReport r = AuditLedger({Account{W}, Account{kAlice}}, t);
  EXPECT_FALSE(r.ok());
  EXPECT_LE(r.failures.size(), kMaxFailureLines + 1);
  EXPECT_TRUE(Reports(r, "and 80 more")) << Dump(r);
}

TEST(AuditReport, Merge) {
  AuditReport a{{"x"}, {}}, b{{"y"}, {"bad"}};
  EXPECT_TRUE(a.ok());
  a.Merge(b);
  EXPECT_EQ(a.checks, (std::vector<std::string>{"x", "y"}));
  EXPECT_FALSE(a.ok());
}

}  // namespace
}  // namespace grid::ledger
