// The deposit watcher and the withdrawal sender against SimChain (an
// in-memory chain with fault hooks) and a real Broker on the memory store:
// confirmations, exactly-once across restarts, reorganisations, a node that
// goes down, dropped and underpriced transactions, reverts.
#include <gtest/gtest.h>

#include "broker/broker.h"
#include "chain/sim_chain.h"
#include "chain/tx_sender.h"
#include "crypto/hex.h"
#include "store/store.h"
#include "treasury/deposit_watcher.h"
#include "treasury/treasury.h"
#include "treasury/withdrawal_sender.h"

namespace grid::treasury {
namespace {

constexpr UnixMs kT0 = 1'800'000'000'000;

crypto::PrivateKey Key() { return crypto::GeneratePrivateKey().value(); }

class TreasuryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = crypto::AddressOf(Key());
    chain::SimChainOptions co;
    co.token = token_;
    chain_ = std::make_unique<chain::SimChain>(co);
    treasury_key_ = Key();
    treasury_ = crypto::AddressOf(treasury_key_);
    broker::BrokerOptions bo;
    bo.chain_enabled = true;
    bo.domain = "127.0.0.1:1";
    bo.uri = "http://127.0.0.1:1";
    broker_ = broker::Broker::Open(store::NewMemoryStore(), &clock_, bo).value();
    chain_->Mine(3);
  }

  DepositWatcher Watcher(uint64_t k = 3) {
    return DepositWatcher(*chain_, *broker_, DepositWatcherOptions{token_, treasury_, k, 2000, 1});
  }
  WithdrawalSender Sender(uint64_t k = 2, int64_t bump_after_ms = 60'000) {
    WithdrawalSenderOptions o;
    o.token = token_;
    o.confirmations = k;
    o.bump_after_ms = bump_after_ms;
    o.tx.chain_id = 31337;
    return WithdrawalSender(*chain_, *broker_, treasury_key_, &clock_, o);
  }

  // A customer's own ERC-20 transfer to `to`, sent (not mined).
  crypto::Hash32 Transfer(const crypto::PrivateKey& from, const crypto::Address& to, uint64_t amount) {
    chain::TxSender s(*chain_, from, chain::TxSenderOptions{.chain_id = 31337});
    auto tx = s.BuildErc20Transfer(token_, to, chain::U256(amount));
    EXPECT_TRUE(tx.ok()) << tx.status().ToString();
    auto sent = chain_->SendRawTransaction(tx->raw);
    EXPECT_TRUE(sent.ok()) << sent.status().ToString();
    return tx->hash;
  }

  Micros Available(const crypto::Address& a) { return broker_->GetBalance(a.ToLowerHex()).available; }

  void ExpectLedgerAudit() {
    auto r = broker_->Audit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& f : r->failures) ADD_FAILURE() << f;
  }
  void ExpectChainAudit() {
    auto r = AuditChainBalance(chain_->TokenBalance(treasury_), broker_->LedgerAccounts(), broker_->OpenWithdrawals());
    for (const auto& f : r.failures) ADD_FAILURE() << f;
  }

  ManualClock clock_{kT0};
  crypto::Address token_, treasury_;
  crypto::PrivateKey treasury_key_;
  std::unique_ptr<chain::SimChain> chain_;
  std::unique_ptr<broker::Broker> broker_;
};

TEST_F(TreasuryTest, DepositCreditedAfterKConfirmationsExactlyOnce) {
  crypto::PrivateKey alice = Key();
  crypto::Address a = crypto::AddressOf(alice);
  chain_->Mint(a, chain::U256(100'000'000));
  Transfer(alice, treasury_, 25'000'000);
  Transfer(alice, crypto::AddressOf(Key()), 1'000'000);  // not to the treasury: ignored
  chain_->Mine(1);  // 1 confirmation
  DepositWatcher w = Watcher(3);
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(Available(a), 0) << "credited before 3 confirmations";
  chain_->Mine(1);
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(Available(a), 0);
  chain_->Mine(1);  // 3 confirmations
  auto p = w.Poll();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->credited, 1);
  EXPECT_EQ(Available(a), 25'000'000);
  // Polling again, and a new watcher (a broker restart) from the stored cursor: nothing twice.
  ASSERT_TRUE(w.Poll().ok());
  DepositWatcher again = Watcher(3);
  chain_->Mine(5);
  auto p2 = again.Poll();
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->credited, 0);
  EXPECT_EQ(Available(a), 25'000'000);
  ExpectLedgerAudit();
  ExpectChainAudit();
}

TEST_F(TreasuryTest, NodeDownMeansRetryNotLossOrDoubleCredit) {
  crypto::PrivateKey bob = Key();
  crypto::Address b = crypto::AddressOf(bob);
  chain_->Mint(b, chain::U256(10'000'000));
  DepositWatcher w = Watcher(1);
  for (int i = 0; i < 5; ++i) {
    Transfer(bob, treasury_, 1'000'000);
    chain_->Mine(1);
    chain_->FailNextCalls(i % 3);  // the node is down for a call or two
    (void)w.Poll();
    chain_->FailNextCalls(0);
  }
  chain_->SetDown(true);
  EXPECT_EQ(w.Poll().status().code(), Code::kUnavailable);
  chain_->SetDown(false);
  for (int i = 0; i < 5; ++i) (void)w.Poll();
  EXPECT_EQ(Available(b), 5'000'000);
  ExpectChainAudit();
}

// A reorganisation shallower than K never reaches the ledger; the deposit
// that survives it is credited once.
TEST_F(TreasuryTest, ReorgBelowKCreditsNothingTwice) {
  crypto::PrivateKey carol = Key();
  crypto::Address c = crypto::AddressOf(carol);
  chain_->Mint(c, chain::U256(10'000'000));
  DepositWatcher w = Watcher(3);
  ASSERT_TRUE(w.Poll().ok());
  uint64_t snap = chain_->Snapshot();
  Transfer(carol, treasury_, 4'000'000);
  chain_->Mine(2);  // 2 confirmations: not yet
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(Available(c), 0);
  ASSERT_TRUE(chain_->Revert(snap).ok());  // the deposit's block is gone
  chain_->Mine(4);
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(Available(c), 0);
  EXPECT_TRUE(w.alert().empty());
  Transfer(carol, treasury_, 3'000'000);  // sent again after the reorg
  chain_->Mine(3);
  ASSERT_TRUE(w.Poll().ok());
  EXPECT_EQ(Available(c), 3'000'000);
  ExpectChainAudit();
}

// Deeper than K: a credited block changed. The watcher stops and says so.
TEST_F(TreasuryTest, ReorgDeeperThanKRaisesAnAlertAndStops) {
  crypto::PrivateKey dave = Key();
  crypto::Address d = crypto::AddressOf(dave);
  chain_->Mint(d, chain::U256(10'000'000));
  DepositWatcher w = Watcher(2);
  uint64_t snap = chain_->Snapshot();
  Transfer(dave, treasury_, 5'000'000);
  chain_->Mine(3);
  ASSERT_TRUE(w.Poll().ok());
  ASSERT_EQ(Available(d), 5'000'000);
  ASSERT_TRUE(chain_->Revert(snap).ok());
  chain_->Mine(6);
  auto p = w.Poll();
  EXPECT_EQ(p.status().code(), Code::kInternal);
  EXPECT_NE(w.alert().find("reorganisation deeper than 2"), std::string::npos) << w.alert();
  EXPECT_EQ(Available(d), 5'000'000) << "nothing silently undone";
  // A restarted watcher sees it too.
  DepositWatcher again = Watcher(2);
  EXPECT_EQ(again.Poll().status().code(), Code::kInternal);
  // The chain audit now fails: the treasury lacks what was credited.
  auto r = AuditChainBalance(chain_->TokenBalance(treasury_), broker_->LedgerAccounts(), broker_->OpenWithdrawals());
  EXPECT_FALSE(r.ok());
}

TEST_F(TreasuryTest, WithdrawalSignedStoredSentConfirmed) {
  crypto::PrivateKey erin = Key();
  crypto::Address e = crypto::AddressOf(erin);
  chain_->Mint(e, chain::U256(50'000'000));
  Transfer(erin, treasury_, 50'000'000);
  chain_->Mine(3);
  ASSERT_TRUE(Watcher(3).Poll().ok());
  ASSERT_EQ(Available(e), 50'000'000);
  crypto::Address dest = crypto::AddressOf(Key());
  auto w = broker_->RequestWithdrawal(e.ToLowerHex(), 20'000'000, dest.ToLowerHex());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(Available(e), 30'000'000);
  WithdrawalSender s = Sender(2);
  auto p = s.Poll();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->signed_now, 1);
  EXPECT_EQ(p->sent, 1);
  auto stored = broker_->ListWithdrawals(e.ToLowerHex()).at(0);
  EXPECT_EQ(stored.state, ledger::WithdrawalState::kSent);
  EXPECT_EQ(stored.tx_hashes.size(), 1u);
  EXPECT_FALSE(stored.raw_tx.empty());
  ExpectChainAudit();  // open: in flight
  chain_->Mine(1);
  ASSERT_TRUE(s.Poll().ok());
  EXPECT_EQ(broker_->ListWithdrawals(e.ToLowerHex()).at(0).state, ledger::WithdrawalState::kSent) << "1 of 2 confirmations";
  chain_->Mine(1);
  p = s.Poll();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->confirmed, 1);
  stored = broker_->ListWithdrawals(e.ToLowerHex()).at(0);
  EXPECT_EQ(stored.state, ledger::WithdrawalState::kConfirmed);
  EXPECT_EQ(stored.mined_tx, stored.tx_hashes[0]);
  EXPECT_EQ(chain_->TokenBalance(dest), chain::U256(20'000'000));
  EXPECT_EQ(chain_->TokenBalance(treasury_), chain::U256(30'000'000));
  EXPECT_EQ(broker_->GetBalance(e.ToLowerHex()).held, 0);
  ExpectLedgerAudit();
  ExpectChainAudit();
}

// The broker dies between storing the signed transaction and sending it (the
// node is down at that moment): the next sender sends that same transaction;
// one transfer reaches the chain.
TEST_F(TreasuryTest, CrashBetweenSigningAndSendingSendsTheSameTransactionOnce) {
  crypto::PrivateKey f = Key();
  crypto::Address fa = crypto::AddressOf(f);
  chain_->Mint(treasury_, chain::U256(100'000'000));
  ASSERT_TRUE(broker_->CreditDeposits({broker::Deposit{"0x" + std::string(64, 'a'), 0, fa.ToLowerHex(), 100'000'000, 1}}, {}).ok());
  crypto::Address dest = crypto::AddressOf(Key());
  ASSERT_TRUE(broker_->RequestWithdrawal(fa.ToLowerHex(), 10'000'000, dest.ToLowerHex()).ok());
  // "Died after storing": the signed transaction is stored the way Sign()
  // stores it, and never sent.
  {
    auto open = broker_->OpenWithdrawals();
    ASSERT_EQ(open.size(), 1u);
    ledger::Withdrawal w = open[0];
    chain::TxSender ts(*chain_, treasury_key_, chain::TxSenderOptions{.chain_id = 31337});
    auto tx = ts.BuildErc20TransferWithNonce(token_, dest, chain::U256(10'000'000), 0);
    ASSERT_TRUE(tx.ok()) << tx.status().ToString();
    w.state = ledger::WithdrawalState::kSigned;
    w.nonce = 0;
    w.raw_tx = crypto::HexEncode(tx->raw);
    w.tx_hashes = {crypto::HexEncode(tx->hash)};
    ASSERT_TRUE(broker_->SaveWithdrawal(w).ok());
  }
  WithdrawalSender after = Sender(1);  // the restarted broker
  auto p = after.Poll();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->signed_now, 0) << "never signed twice";
  EXPECT_EQ(p->sent, 1);
  // And a rebroadcast of the same bytes (a second restart) is "already known".
  ASSERT_TRUE(after.Poll().ok());
  chain_->Mine(1);
  p = after.Poll();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->confirmed, 1);
  EXPECT_EQ(chain_->TokenBalance(dest), chain::U256(10'000'000));
  EXPECT_EQ(chain_->TokenBalance(treasury_), chain::U256(90'000'000));
  ExpectLedgerAudit();
  ExpectChainAudit();
}

// The node forgets the transaction (restart without its pool): it is sent
// again. Not mined for a while (fees too low): re-signed with higher fees,
// same nonce; exactly one version is mined.
TEST_F(TreasuryTest, DroppedThenUnderpricedTransactionIsResentAndBumped) {
  crypto::Address g = crypto::AddressOf(Key());
  chain_->Mint(treasury_, chain::U256(40'000'000));
  ASSERT_TRUE(broker_->CreditDeposits({broker::Deposit{"0x" + std::string(64, 'b'), 0, g.ToLowerHex(), 40'000'000, 1}}, {}).ok());
  ASSERT_TRUE(broker_->RequestWithdrawal(g.ToLowerHex(), 15'000'000, "").ok());
  WithdrawalSender s = Sender(1, /*bump_after_ms=*/30'000);
  ASSERT_TRUE(s.Poll().ok());
  EXPECT_EQ(chain_->MempoolSize(), 1u);
  chain_->DropMempool();
  ASSERT_TRUE(s.Poll().ok());
  EXPECT_EQ(chain_->MempoolSize(), 1u) << "re-sent after the node forgot it";
  // Base fee jumps far above the fee cap: nothing is mined.
  chain_->SetBaseFee(chain::U256(uint64_t{1'000'000'000'000}));
  chain_->Mine(1);
  ASSERT_TRUE(s.Poll().ok());
  EXPECT_EQ(broker_->OpenWithdrawals().size(), 1u);
  clock_.AdvanceMs(30'000);
  auto p = s.Poll();  // past bump_after: re-signed with higher fees, same nonce
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->bumped, 1);
  auto w = broker_->OpenWithdrawals();
  ASSERT_EQ(w.size(), 1u);
  ASSERT_EQ(w[0].tx_hashes.size(), 2u);
  EXPECT_EQ(chain_->MempoolSize(), 1u) << "the replacement took the nonce's place";
  chain_->SetBaseFee(chain::U256(uint64_t{1'000'000'000}));
  chain_->Mine(1);
  ASSERT_TRUE(s.Poll().ok());
  auto done = broker_->ListWithdrawals(g.ToLowerHex()).at(0);
  EXPECT_EQ(done.state, ledger::WithdrawalState::kConfirmed);
  EXPECT_EQ(chain_->TokenBalance(g), chain::U256(15'000'000)) << "exactly one version mined";
  ExpectLedgerAudit();
  ExpectChainAudit();
}

// The treasury cannot pay (its tokens are not there): the estimate reverts,
// and the money goes back to the customer with the reason.
TEST_F(TreasuryTest, RevertedWithdrawalReturnsTheMoney) {
  crypto::Address h = crypto::AddressOf(Key());
  // Credited in the ledger but never on chain (as after a deep reorg).
  ASSERT_TRUE(broker_->CreditDeposits({broker::Deposit{"0x" + std::string(64, 'c'), 0, h.ToLowerHex(), 9'000'000, 1}}, {}).ok());
  ASSERT_TRUE(broker_->RequestWithdrawal(h.ToLowerHex(), 9'000'000, "").ok());
  EXPECT_EQ(Available(h), 0);
  auto p = Sender(1).Poll();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto w = broker_->ListWithdrawals(h.ToLowerHex()).at(0);
  EXPECT_EQ(w.state, ledger::WithdrawalState::kFailed);
  EXPECT_FALSE(w.error.empty());
  EXPECT_EQ(Available(h), 9'000'000);
  ExpectLedgerAudit();
}

// Another transaction takes the withdrawal's nonce (the key used elsewhere,
// or a record restored from an old backup): the withdrawal can never be
// mined, so it fails and the money comes back; nothing is sent twice.
TEST_F(TreasuryTest, NonceTakenByAnotherTransactionRefunds) {
  crypto::Address j = crypto::AddressOf(Key());
  chain_->Mint(treasury_, chain::U256(20'000'000));
  ASSERT_TRUE(broker_->CreditDeposits({broker::Deposit{"0x" + std::string(64, 'd'), 0, j.ToLowerHex(), 20'000'000, 1}}, {}).ok());
  ASSERT_TRUE(broker_->RequestWithdrawal(j.ToLowerHex(), 5'000'000, "").ok());
  WithdrawalSender s = Sender(1);
  ASSERT_TRUE(s.Poll().ok());
  chain_->DropMempool();
  // The same key sends something else with nonce 0, and it is mined.
  chain::TxSender other(*chain_, treasury_key_, chain::TxSenderOptions{.chain_id = 31337});
  auto tx = other.BuildErc20TransferWithNonce(token_, crypto::AddressOf(Key()), chain::U256(1), 0);
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(chain_->SendRawTransaction(tx->raw).ok());
  chain_->Mine(1);
  auto p = s.Poll();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->failed, 1);
  auto w = broker_->ListWithdrawals(j.ToLowerHex()).at(0);
  EXPECT_EQ(w.state, ledger::WithdrawalState::kFailed);
  EXPECT_NE(w.error.find("nonce 0 was used by another transaction"), std::string::npos) << w.error;
  EXPECT_EQ(Available(j), 20'000'000);
  EXPECT_EQ(chain_->TokenBalance(j), chain::U256(0));
  ExpectLedgerAudit();
}

TEST(TreasuryKeyTest, FileMustBePrivateAndErrorsNeverShowTheKey) {
  char tmpl[] = "/tmp/grid-treasury-key-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  const std::string hex = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
  ASSERT_EQ(write(fd, hex.data(), hex.size()), static_cast<ssize_t>(hex.size()));
  close(fd);
  chmod(tmpl, 0644);
  auto open = LoadTreasuryKey(tmpl);
  EXPECT_EQ(open.status().code(), Code::kInvalidArgument);
  EXPECT_NE(open.status().message().find("chmod 600"), std::string::npos);
  EXPECT_EQ(open.status().message().find("4c0883"), std::string::npos);
  chmod(tmpl, 0600);
  auto key = LoadTreasuryKey(tmpl);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(crypto::AddressOf(*key).ToChecksumHex(), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
  std::string garbage = "0xnot-a-key-but-secret";
  FILE* fp = fopen(tmpl, "w");
  fputs(garbage.c_str(), fp);
  fclose(fp);
  auto bad = LoadTreasuryKey(tmpl);
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.status().message().find("secret"), std::string::npos);
  unlink(tmpl);
}

TEST(AuditChainBalanceTest, OnChainMustCoverTheLedger) {
  using ledger::Account;
  std::vector<Account> accounts = {
      {.id = "treasury", .debits_posted = 100, .credits_posted = 30},  // 100 in, 30 out
      {.id = "world", .debits_posted = 5},                              // faucet
      {.id = "user:0xa", .credits_posted = 75},
  };
  EXPECT_TRUE(AuditChainBalance(chain::U256(70), accounts, {}).ok());
  EXPECT_FALSE(AuditChainBalance(chain::U256(69), accounts, {}).ok());
  EXPECT_TRUE(AuditChainBalance(chain::U256(80), accounts, {}).ok());  // extra sent to it: reported only
  ledger::Withdrawal open;
  open.amount = 10;
  EXPECT_FALSE(AuditChainBalance(chain::U256(60), accounts, {}).ok());
  EXPECT_FALSE(AuditChainBalance(chain::U256(60), accounts, {open}).ok()) << "60 < 75 - 5 owed";
  accounts[2].credits_posted = 65;
  EXPECT_TRUE(AuditChainBalance(chain::U256(60), accounts, {open}).ok());
}

}  // namespace
}  // namespace grid::treasury
