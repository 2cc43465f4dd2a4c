#include "ledger/withdrawal.h"

#include <gtest/gtest.h>

#include "ledger/ledger.h"

namespace grid::ledger {
namespace {

const std::string kAddr = "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

// A ledger where kAddr deposited 100 and earned 30.
Ledger Funded() {
  Ledger l;
  std::vector<Transfer> setup = {
      {"deposit:0x1:0", std::string(kTreasury), UserAccount(kAddr), 100'000'000, TransferKind::kPosted, 0, 0, "deposit"},
      {"earn", "escrow", EarningsAccount(kAddr), 30'000'000, TransferKind::kPosted, 0, 0, "charge"},
  };
  EXPECT_TRUE(l.Check(setup).ok());
  l.Apply(setup);
  return l;
}

Withdrawal W(Micros earned, Micros available) {
  Withdrawal w;
  w.id = 4;
  w.address = kAddr;
  w.amount = earned + available;
  w.from_earned = earned;
  w.from_available = available;
  return w;
}

TEST(WithdrawalTest, StateNamesRoundTrip) {
  for (auto s : {WithdrawalState::kRequested, WithdrawalState::kSigned, WithdrawalState::kSent,
                 WithdrawalState::kConfirmed, WithdrawalState::kFailed}) {
    WithdrawalState back{};
    ASSERT_TRUE(ParseWithdrawalState(WithdrawalStateName(s), &back));
    EXPECT_EQ(back, s);
  }
  WithdrawalState x{};
  EXPECT_FALSE(ParseWithdrawalState("Sent", &x));
}

TEST(WithdrawalTest, HoldThenConfirmMovesTheMoneyToTheTreasury) {
  Ledger l = Funded();
  Withdrawal w = W(30'000'000, 20'000'000);
  auto holds = WithdrawalHolds(w);
  ASSERT_EQ(holds.size(), 2u);
  ASSERT_TRUE(l.Check(holds).ok());
  l.Apply(holds);
  EXPECT_EQ(l.BalanceOf(kAddr).available, 80'000'000);
  EXPECT_EQ(l.BalanceOf(kAddr).earned, 0);
  EXPECT_EQ(l.Get(kTreasury).credits_pending, 50'000'000);
  auto end = WithdrawalEnd(w, /*confirmed=*/true);
  ASSERT_TRUE(l.Check(end).ok());
  l.Apply(end);
  EXPECT_EQ(l.BalanceOf(kAddr).available, 80'000'000);
  EXPECT_EQ(l.Get(kTreasury).credits_pending, 0);
  // The treasury's net: 100 deposited, 50 withdrawn.
  const Account& t = l.Get(kTreasury);
  EXPECT_EQ(t.debits_posted - t.credits_posted, 50'000'000);
}

TEST(WithdrawalTest, HoldThenFailReturnsTheMoney) {
  Ledger l = Funded();
  Withdrawal w = W(10'000'000, 5'000'000);
  l.Apply(WithdrawalHolds(w));
  auto end = WithdrawalEnd(w, /*confirmed=*/false);
  ASSERT_EQ(end.size(), 2u);  // releases only
  ASSERT_TRUE(l.Check(end).ok());
  l.Apply(end);
  EXPECT_EQ(l.BalanceOf(kAddr).available, 100'000'000);
  EXPECT_EQ(l.BalanceOf(kAddr).earned, 30'000'000);
  EXPECT_EQ(l.Get(kTreasury).credits_pending, 0);
}

TEST(WithdrawalTest, MoreThanTheBalanceIsRefused) {
  Ledger l = Funded();
  EXPECT_EQ(l.Check(WithdrawalHolds(W(30'000'001, 0))).code(), Code::kInsufficientFunds);
  EXPECT_EQ(l.Check(WithdrawalHolds(W(0, 100'000'001))).code(), Code::kInsufficientFunds);
  EXPECT_TRUE(WithdrawalHolds(W(0, 0)).empty());
}

}  // namespace
}  // namespace grid::ledger
