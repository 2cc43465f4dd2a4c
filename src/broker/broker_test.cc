// Service-level tests of the Broker on a manual clock: the whole command path
// (domain check, store commit, in-memory apply) against the memory store and
// SQLite, including a restart that reloads state from the store.
#include "broker/broker.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "crypto/eip191.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "crypto/siwe.h"
#include "crypto/voucher.h"
#include "market/billing.h"
#include "market/offer_rows.h"

namespace grid::broker {
namespace {

constexpr UnixMs kT0 = 1'800'000'000'000;  // 2027-01-15

struct Account {
  crypto::PrivateKey key;
  std::string addr;
};

Account NewAccount() {
  Account a{crypto::GeneratePrivateKey().value(), ""};
  a.addr = crypto::AddressOf(a.key).ToLowerHex();
  return a;
}

market::MachineSpec Spec(int gpus) {
  market::MachineSpec s;
  s.gpu_name = "H100 SXM 80GB";
  s.num_gpus = gpus;
  s.gpu_ram = 80;
  s.cpu_cores = 64;
  s.cpu_ram = 512;
  s.disk_space = 1000;
  s.inet_up = s.inet_down = 1000;
  s.geolocation = "AU";
  s.datacenter = true;
  s.simulated = true;
  return s;
}

class BrokerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("broker_test_" + std::to_string(::getpid()) + ".db");
    std::filesystem::remove(path_);
    Reopen();
  }
  void TearDown() override {
    broker_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_.string() + suffix);
  }
  void Reopen() {
    broker_.reset();
    std::unique_ptr<store::Store> st;
    if (GetParam() == "memory") {
      if (!memory_) memory_ = store::NewMemoryStore();
      // The memory store lives across "restarts" through a shared wrapper.
      st = std::make_unique<Forward>(memory_.get());
    } else if (GetParam() == "replica") {
      // One replica on a shared database: numbered commits, shared state.
      if (!memory_db_) memory_db_ = store::NewMemoryDatabase();
      if (!memory_) memory_ = store::OpenMemoryReplica(memory_db_);
      st = std::make_unique<Forward>(memory_.get());
    } else {
      st = store::OpenSqliteStore(path_.string()).value();
    }
    broker_ = Broker::Open(std::move(st), &clock_, Options()).value();
  }

  BrokerOptions Options() const {
    BrokerOptions o;
    o.dev = true;
    o.fee_bps = 250;
    o.tick_ms = 60'000;
    o.domain = "127.0.0.1:1";
    o.uri = "http://127.0.0.1:1";
    o.chain_enabled = chain_;
    o.withdraw_daily_limit = 100 * kMicrosPerUnit;
    return o;
  }

  // Forwards to a store owned by the fixture, so it survives Reopen().
  class Forward : public store::Store {
   public:
    explicit Forward(store::Store* s) : s_(s) {}
    Result<store::Snapshot> Load() override { return s_->Load(); }
    Status Commit(const store::ChangeSet& c) override { return s_->Commit(c); }
    Result<std::optional<ledger::Transfer>> FindTransfer(const std::string& id) override { return s_->FindTransfer(id); }
    Result<std::vector<ledger::Transfer>> ListTransfers(const store::TransferQuery& q) override {
      return s_->ListTransfers(q);
    }
    Status ForEachTransfer(const std::function<bool(const ledger::Transfer&)>& v) override {
      return s_->ForEachTransfer(v);
    }
    std::string Describe() const override { return s_->Describe(); }
    bool Shared() const override { return s_->Shared(); }
    Result<int64_t> Head() override { return s_->Head(); }
    Result<store::Changes> ChangesSince(int64_t seq) override { return s_->ChangesSince(seq); }
    Result<int64_t> WaitForChange(int64_t seq, int64_t ms) override { return s_->WaitForChange(seq, ms); }
    Result<bool> HoldLeadership() override { return s_->HoldLeadership(); }
    Status Maintain(int64_t keep, UnixMs now) override { return s_->Maintain(keep, now); }
    Status PutShared(const std::string& k, const std::string& v, UnixMs e) override { return s_->PutShared(k, v, e); }
    Result<std::optional<std::string>> GetShared(const std::string& k, UnixMs now) override {
      return s_->GetShared(k, now);
    }
    Result<std::optional<std::string>> TakeShared(const std::string& k, UnixMs now) override {
      return s_->TakeShared(k, now);
    }
    Result<std::vector<std::pair<std::string, std::string>>> ListShared(const std::string& p, UnixMs now) override {
      return s_->ListShared(p, now);
    }

   private:
    store::Store* s_;
  };

  int64_t ListedMachine(const Account& provider, int gpus, const char* price, UnixMs end_date = 0) {
    auto m = broker_->RegisterMachine(provider.addr, Spec(gpus), "");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    market::ListOfferRequest r{m->machine.id, ParseMoney(price).value(), 1, end_date, 0};
    EXPECT_TRUE(broker_->ListOffer(provider.addr, r).ok());
    return m->machine.id;
  }

  Result<market::Lease> Rent(const Account& renter, int64_t machine, int gpus, uint64_t nonce,
                             const std::string& channel = "") {
    auto offer = broker_->GetOffer(machine * market::kOfferIdBase + gpus);
    if (!offer.ok()) return offer.status();
    market::CreateLeaseRequest req;
    req.offer_id = *offer->row.id;
    req.gpus = gpus;
    req.image = "host";
    req.order = {req.offer_id, gpus, *offer->row.dph_total, nonce, clock_.NowMs() / 1000 + 600, ""};
    crypto::LeaseOrder o{static_cast<uint64_t>(req.offer_id), static_cast<uint32_t>(gpus), *offer->row.dph_total,
                         nonce, req.order.expiry_s};
    auto sig = crypto::SignDigest(renter.key, crypto::LeaseOrderDigest(o, broker_->options().chain_id)).value();
    req.order.signature = crypto::HexEncode(sig);
    if (!channel.empty()) req.channel = market::ChannelPayment{.channel = channel};
    return broker_->CreateLease(renter.addr, req);
  }

  // The ids a search finds, in order (defaults on unless no_default).
  std::vector<int64_t> Search(const std::string& q, bool no_default = false, const std::string& order = "") {
    auto parsed = query::Parse(q);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    auto r = broker_->SearchOffers(*parsed, query::ParseOrder(order).value(), query::kMaxLimit, false, no_default);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<int64_t> ids;
    for (const auto& row : r->result.offers) ids.push_back(*row.id);
    return ids;
  }
  // The rentable offers of one machine (what search shows by default).
  std::vector<int64_t> OffersOf(int64_t machine) { return Search("machine_id=" + std::to_string(machine)); }

  void ExpectAuditOk() {
    auto r = broker_->Audit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& f : r->failures) ADD_FAILURE() << f;
  }

  bool chain_ = false;
  ManualClock clock_{kT0};
  std::filesystem::path path_;
  std::shared_ptr<store::MemoryDatabase> memory_db_;  // "replica": the database memory_ opened
  std::unique_ptr<store::Store> memory_;
  std::unique_ptr<Broker> broker_;
};

TEST_P(BrokerTest, RentRunStopBillsExactlyAndSurvivesRestart) {
  Account prov = NewAccount(), renter = NewAccount();
  int64_t m = ListedMachine(prov, 8, "2.10");
  ASSERT_TRUE(broker_->Faucet(renter.addr, ParseMoney("100").value(), "k1").ok());
  auto lease = Rent(renter, m, 8, 1);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->held, market::InitialHold(16'800'000).value());
  EXPECT_EQ(broker_->GetBalance(renter.addr).held, 2'800'000);
  EXPECT_TRUE(OffersOf(m).empty());

  clock_.AdvanceMs(5'000);  // pending time is never billed
  ASSERT_TRUE(broker_->ReportLease(prov.addr, lease->id, market::LeaseState::kRunning, "").ok());
  clock_.AdvanceMs(61'500);
  ASSERT_TRUE(broker_->SettleAll().ok());
  Reopen();  // everything acknowledged is in the store
  clock_.AdvanceMs(30'250);
  auto stopped = broker_->StopLease(renter.addr, lease->id);
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_EQ(stopped->billed_ms, 91'750);
  Micros charged = AccruedCharge(16'800'000, 91'750).value();
  EXPECT_EQ(stopped->charged, charged);
  EXPECT_EQ(stopped->fee, FeeOf(charged, 250).value());
  auto rb = broker_->GetBalance(renter.addr);
  EXPECT_EQ(rb.available, 100'000'000 - charged);
  EXPECT_EQ(rb.held, 0);
  EXPECT_EQ(broker_->GetBalance(prov.addr).earned, charged - stopped->fee);
  EXPECT_EQ(OffersOf(m).size(), 8u);  // GPUs are back
  ExpectAuditOk();
}

TEST_P(BrokerTest, FaucetIsIdempotentPerKey) {
  Account a = NewAccount();
  ASSERT_TRUE(broker_->Faucet(a.addr, 5'000'000, "same").ok());
  ASSERT_TRUE(broker_->Faucet(a.addr, 5'000'000, "same").ok());
  EXPECT_EQ(broker_->GetBalance(a.addr).available, 5'000'000);
  auto diff = broker_->Faucet(a.addr, 6'000'000, "same");
  EXPECT_EQ(diff.status().code(), Code::kIdempotencyMismatch);
  EXPECT_EQ(broker_->GetBalance(a.addr).available, 5'000'000);
}

TEST_P(BrokerTest, MoneyRunningOutEndsTheLeaseWithinWhatTheRenterHad) {
  Account prov = NewAccount(), renter = NewAccount();
  int64_t m = ListedMachine(prov, 1, "36");  // $36/h = 1 cent per second
  ASSERT_TRUE(broker_->Faucet(renter.addr, 7'000'000, "k").ok());  // 7 USD: the 6 USD hold + 1
  auto lease = Rent(renter, m, 1, 7);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(broker_->ReportLease(prov.addr, lease->id, market::LeaseState::kRunning, "").ok());
  for (int i = 0; i < 20; ++i) {
    clock_.AdvanceMs(60'000);
    ASSERT_TRUE(broker_->SettleAll().ok());
  }
  auto l = broker_->GetLease(renter.addr, lease->id).value();
  EXPECT_EQ(l.state, market::LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, market::EndReason::kInsufficientFunds);
  EXPECT_LE(l.charged, 7'000'000);
  EXPECT_GE(broker_->GetBalance(renter.addr).available, 0);
  EXPECT_EQ(broker_->GetBalance(renter.addr).available + l.charged, 7'000'000);
  ExpectAuditOk();
}

TEST_P(BrokerTest, EndDateEndsTheLeaseBilledToTheEndDate) {
  Account prov = NewAccount(), renter = NewAccount();
  int64_t m = ListedMachine(prov, 2, "1.00", kT0 + 90'000);
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  auto lease = Rent(renter, m, 2, 9);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(broker_->ReportLease(prov.addr, lease->id, market::LeaseState::kRunning, "").ok());
  clock_.AdvanceMs(120'000);
  ASSERT_TRUE(broker_->SettleAll().ok());
  auto l = broker_->GetLease(renter.addr, lease->id).value();
  EXPECT_EQ(l.state, market::LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, market::EndReason::kEndDate);
  EXPECT_EQ(l.billed_ms, 90'000);
  EXPECT_TRUE(OffersOf(m).empty());  // past its end date
  ExpectAuditOk();
}

TEST_P(BrokerTest, AuthorizationIsCheckedOnTheLease) {
  Account prov = NewAccount(), renter = NewAccount(), other = NewAccount();
  int64_t m = ListedMachine(prov, 1, "1.00");
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  auto lease = Rent(renter, m, 1, 3).value();
  EXPECT_EQ(broker_->GetLease(other.addr, lease.id).status().code(), Code::kNotFound);
  EXPECT_EQ(broker_->StopLease(other.addr, lease.id).status().code(), Code::kNotFound);
  EXPECT_EQ(broker_->StopLease(prov.addr, lease.id).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(broker_->ReportLease(renter.addr, lease.id, market::LeaseState::kRunning, "").status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(broker_->ReportLease(other.addr, lease.id, market::LeaseState::kRunning, "").status().code(),
            Code::kNotFound);
  EXPECT_TRUE(broker_->GetLease(prov.addr, lease.id).ok());
  // A replayed order nonce is refused, even for another offer.
  ListedMachine(prov, 1, "1.00");
  EXPECT_EQ(Rent(renter, m + 1, 1, 3).status().code(), Code::kConflict);
  // An order signed by someone else is refused.
  auto offer = broker_->GetOffer((m + 1) * market::kOfferIdBase + 1).value();
  market::CreateLeaseRequest req{.offer_id = *offer.row.id, .gpus = 1, .image = "host"};
  req.order = {*offer.row.id, 1, *offer.row.dph_total, 99, kT0 / 1000 + 600, ""};
  crypto::LeaseOrder o{static_cast<uint64_t>(*offer.row.id), 1, *offer.row.dph_total, 99, req.order.expiry_s};
  req.order.signature = crypto::HexEncode(crypto::SignDigest(other.key, crypto::LeaseOrderDigest(o, 31337)).value());
  EXPECT_EQ(broker_->CreateLease(renter.addr, req).status().code(), Code::kPermissionDenied);
}

TEST_P(BrokerTest, SiweLoginNonceIsSingleUseAndTokensExpire) {
  Account a = NewAccount();
  NonceInfo n = broker_->NewNonce().value();
  crypto::SiweMessage m;
  m.domain = n.domain;
  m.address = crypto::AddressOf(a.key).ToChecksumHex();
  m.statement = "Sign in to Gridmarket.";
  m.uri = n.uri;
  m.chain_id = n.chain_id;
  m.nonce = n.nonce;
  m.issued_at = FormatTime(clock_.NowMs());
  std::string text = crypto::FormatSiwe(m);
  std::string sig = crypto::HexEncode(crypto::SignDigest(a.key, crypto::PersonalMessageHash(text)).value());
  auto s = broker_->Login(text, sig);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(broker_->Authenticate(s->token).value(), a.addr);
  EXPECT_EQ(broker_->Login(text, sig).status().code(), Code::kUnauthenticated);  // replay
  std::string forged = s->token;
  forged.back() = forged.back() == '0' ? '1' : '0';
  EXPECT_EQ(broker_->Authenticate(forged).status().code(), Code::kUnauthenticated);
  Reopen();  // tokens outlive a restart (the secret is stored)
  EXPECT_TRUE(broker_->Authenticate(s->token).ok());
  clock_.AdvanceMs(broker_->options().token_ttl_ms + 1);
  EXPECT_EQ(broker_->Authenticate(s->token).status().code(), Code::kUnauthenticated);
}

Deposit Dep(const std::string& from, Micros amount, int tx, uint32_t log = 0) {
  char hash[67];
  std::snprintf(hash, sizeof hash, "0x%064x", tx);
  return Deposit{hash, log, from, amount, 100};
}

// Deposits are credited exactly once, across restarts, with the watcher's
// cursor in the same commit; an unknown address gets an account.
TEST_P(BrokerTest, DepositsAreCreditedExactlyOnce) {
  Account a = NewAccount(), b = NewAccount();
  auto n = broker_->CreditDeposits({Dep(a.addr, 5'000'000, 1), Dep(a.addr, 1'000'000, 1, 3), Dep(b.addr, 7, 2)},
                                   {{"chain:cursor", "100"}});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(broker_->GetBalance(a.addr).available, 6'000'000);
  EXPECT_EQ(broker_->GetBalance(b.addr).available, 7);
  EXPECT_EQ(broker_->ChainMeta("chain:cursor"), "100");
  Reopen();
  EXPECT_EQ(broker_->ChainMeta("chain:cursor"), "100");
  // The same logs again (a watcher re-reading a range), one of them twice in
  // the batch: nothing more is credited.
  auto again = broker_->CreditDeposits({Dep(a.addr, 5'000'000, 1), Dep(a.addr, 5'000'000, 1), Dep(b.addr, 7, 2)},
                                       {{"chain:cursor", "101"}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  EXPECT_EQ(broker_->GetBalance(a.addr).available, 6'000'000);
  EXPECT_EQ(broker_->ChainMeta("chain:cursor"), "101");
  EXPECT_EQ(broker_->CreditDeposits({Dep("0xnot-an-address", 1, 9)}, {}).status().code(), Code::kInternal);
  ExpectAuditOk();
}

TEST_P(BrokerTest, WithdrawalNeedsAChainAMinimumAndTheMoney) {
  Account a = NewAccount();
  ASSERT_TRUE(broker_->CreditDeposits({Dep(a.addr, 50'000'000, 1)}, {}).ok());
  EXPECT_EQ(broker_->RequestWithdrawal(a.addr, 10'000'000, "").status().code(), Code::kConflict);  // no chain
  chain_ = true;
  Reopen();
  EXPECT_EQ(broker_->RequestWithdrawal(a.addr, 999'999, "").status().code(), Code::kInvalidArgument);  // < 1.00
  EXPECT_EQ(broker_->RequestWithdrawal(a.addr, 50'000'001, "").status().code(), Code::kInsufficientFunds);
  EXPECT_EQ(broker_->RequestWithdrawal(a.addr, 10'000'000, "0x1234").status().code(), Code::kInvalidArgument);
  auto w = broker_->RequestWithdrawal(a.addr, 30'000'000, "");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->to, a.addr);
  EXPECT_EQ(w->state, ledger::WithdrawalState::kRequested);
  EXPECT_EQ(broker_->GetBalance(a.addr).available, 20'000'000);
  EXPECT_EQ(broker_->GetBalance(a.addr).held, 30'000'000);
  ExpectAuditOk();
}

TEST_P(BrokerTest, WithdrawalDailyLimit) {
  chain_ = true;
  Reopen();
  Account a = NewAccount();
  ASSERT_TRUE(broker_->CreditDeposits({Dep(a.addr, 500'000'000, 1)}, {}).ok());
  ASSERT_TRUE(broker_->RequestWithdrawal(a.addr, 60'000'000, "").ok());
  auto over = broker_->RequestWithdrawal(a.addr, 40'000'001, "");
  EXPECT_EQ(over.status().code(), Code::kInvalidArgument);
  EXPECT_NE(over.status().message().find("daily limit"), std::string::npos) << over.status().message();
  ASSERT_TRUE(broker_->RequestWithdrawal(a.addr, 40'000'000, "").ok());
  clock_.AdvanceMs(24 * 3600'000LL + 1);
  EXPECT_TRUE(broker_->RequestWithdrawal(a.addr, 100'000'000, "").ok());
}

// Earnings go first; a confirmed withdrawal leaves the treasury, a failed one
// comes back; ending twice changes nothing; everything survives a restart.
TEST_P(BrokerTest, WithdrawalsEndConfirmedOrRefunded) {
  chain_ = true;
  Reopen();
  Account renter = NewAccount(), provider = NewAccount();
  ASSERT_TRUE(broker_->CreditDeposits({Dep(renter.addr, 100'000'000, 1), Dep(provider.addr, 5'000'000, 2)}, {}).ok());
  int64_t m = ListedMachine(provider, 1, "36");
  auto lease = Rent(renter, m, 1, 1);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(broker_->ReportLease(provider.addr, lease->id, market::LeaseState::kRunning, "").ok());
  clock_.AdvanceMs(100'000);  // 100 s at 36/h = 1.00
  ASSERT_TRUE(broker_->StopLease(renter.addr, lease->id).ok());
  ledger::Balance pb = broker_->GetBalance(provider.addr);
  EXPECT_EQ(pb.earned, 975'000);  // 2.5 % fee
  auto w = broker_->RequestWithdrawal(provider.addr, 2'000'000, "0x00000000000000000000000000000000000000aa");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->from_earned, 975'000);
  EXPECT_EQ(w->from_available, 1'025'000);
  ledger::Withdrawal signed_w = *w;
  signed_w.state = ledger::WithdrawalState::kSent;
  signed_w.nonce = 7;
  signed_w.raw_tx = "0x02";
  signed_w.tx_hashes = {"0xaa"};
  ASSERT_TRUE(broker_->SaveWithdrawal(signed_w).ok());
  Reopen();
  ASSERT_EQ(broker_->OpenWithdrawals().size(), 1u);
  EXPECT_EQ(broker_->OpenWithdrawals()[0].nonce, 7u);
  ledger::Withdrawal bad = signed_w;
  bad.amount += 1;
  EXPECT_EQ(broker_->SaveWithdrawal(bad).code(), Code::kInternal);
  ASSERT_TRUE(broker_->EndWithdrawal(signed_w, /*confirmed=*/true).ok());
  EXPECT_TRUE(broker_->EndWithdrawal(signed_w, /*confirmed=*/false).ok());  // already ended: no-op
  pb = broker_->GetBalance(provider.addr);
  EXPECT_EQ(pb.earned, 0);
  EXPECT_EQ(pb.available, 3'975'000);
  EXPECT_EQ(pb.held, 0);
  EXPECT_EQ(broker_->ListWithdrawals(provider.addr)[0].state, ledger::WithdrawalState::kConfirmed);
  EXPECT_EQ(broker_->SaveWithdrawal(signed_w).code(), Code::kConflict);

  auto w2 = broker_->RequestWithdrawal(provider.addr, 3'000'000, "");
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE(broker_->EndWithdrawal(*w2, /*confirmed=*/false).ok());
  EXPECT_EQ(broker_->GetBalance(provider.addr).available, 3'975'000);
  EXPECT_TRUE(broker_->OpenWithdrawals().empty());
  ExpectAuditOk();
}

INSTANTIATE_TEST_SUITE_P(Stores, BrokerTest, ::testing::Values("memory", "sqlite", "replica"),
                         [](const auto& info) { return info.param; });

// Two replicas on one database (issue 7): broker_ and other_.
class ReplicasTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    other_ = Broker::Open(store::OpenMemoryReplica(memory_db_), &clock_, Options()).value();
  }
  void TearDown() override {
    other_.reset();
    BrokerTest::TearDown();
  }
  // Runs the fixture's helpers (which use broker_) on the other replica.
  template <typename F>
  auto OnOther(F f) {
    std::swap(broker_, other_);
    auto r = f();
    std::swap(broker_, other_);
    return r;
  }
  std::unique_ptr<Broker> other_;
};

TEST_P(ReplicasTest, EachReplicaDecidesOnTheLatestState) {
  Account prov = NewAccount(), r1 = NewAccount(), r2 = NewAccount();
  int64_t m = ListedMachine(prov, 1, "1.50");  // through broker_
  ASSERT_TRUE(broker_->Faucet(r1.addr, ParseMoney("10").value(), "a").ok());
  ASSERT_TRUE(other_->Sync().ok());
  EXPECT_EQ(broker_->AppliedSeq(), other_->AppliedSeq());
  EXPECT_EQ(1u, OnOther([&] { return OffersOf(m); }).size()) << "the other replica's index has the offer";
  EXPECT_EQ(ParseMoney("10").value(), other_->GetBalance(r1.addr).available);
  ASSERT_TRUE(other_->Faucet(r2.addr, ParseMoney("10").value(), "b").ok());

  // broker_ has not seen r2's credit, and needs no Sync: a command catches
  // up under the lock before it decides. The other replica then sees the
  // GPU taken and refuses the second renter.
  auto lease = Rent(r1, m, 1, 1);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(ParseMoney("10").value(), broker_->GetBalance(r2.addr).available);
  auto second = OnOther([&] { return Rent(r2, m, 1, 1); });
  EXPECT_EQ(Code::kNotAvailable, second.status().code()) << second.status().ToString();
  EXPECT_TRUE(OnOther([&] { return OffersOf(m); }).empty());
  auto seen = other_->GetLease(r1.addr, lease->id);
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(r1.addr, seen->renter);
  ExpectAuditOk();
}

// A store on which another replica commits right before each of the first
// `races` numbered commits: the broker's command lost the race each time.
class RacingStore : public store::Store {
 public:
  RacingStore(std::unique_ptr<store::Store> own, std::unique_ptr<store::Store> rival, int races)
      : own_(std::move(own)), rival_(std::move(rival)), races_(races) {}
  Status Commit(const store::ChangeSet& c) override {
    if (c.after_seq && races_ > 0) {
      --races_;
      store::ChangeSet foreign;
      foreign.meta = {{"chain:race", std::to_string(races_)}};
      foreign.after_seq = rival_->Head().value();
      EXPECT_TRUE(rival_->Commit(foreign).ok());
    }
    return own_->Commit(c);
  }
  Result<store::Snapshot> Load() override { return own_->Load(); }
  Result<std::optional<ledger::Transfer>> FindTransfer(const std::string& id) override {
    return own_->FindTransfer(id);
  }
  Result<std::vector<ledger::Transfer>> ListTransfers(const store::TransferQuery& q) override {
    return own_->ListTransfers(q);
  }
  Status ForEachTransfer(const std::function<bool(const ledger::Transfer&)>& v) override {
    return own_->ForEachTransfer(v);
  }
  std::string Describe() const override { return own_->Describe(); }
  bool Shared() const override { return true; }
  Result<int64_t> Head() override { return own_->Head(); }
  Result<store::Changes> ChangesSince(int64_t seq) override { return own_->ChangesSince(seq); }
  Result<std::vector<std::pair<std::string, std::string>>> ListShared(const std::string& p, UnixMs now) override {
    return own_->ListShared(p, now);
  }

 private:
  std::unique_ptr<store::Store> own_, rival_;
  int races_;
};

TEST_P(ReplicasTest, ACommandThatLostARaceRunsAgainOrWritesNothing) {
  Account a = NewAccount();
  auto racing = Broker::Open(std::make_unique<RacingStore>(store::OpenMemoryReplica(memory_db_),
                                                           store::OpenMemoryReplica(memory_db_), 3),
                             &clock_, Options())
                    .value();
  EXPECT_EQ(Code::kAborted, racing->Faucet(a.addr, ParseMoney("5").value(), "k").status().code())
      << "the first attempt lost: nothing written";
  EXPECT_EQ(0, racing->GetBalance(a.addr).available);
  Status s = racing->Retrying([&] { return racing->Faucet(a.addr, ParseMoney("5").value(), "k").status(); });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ParseMoney("5").value(), racing->GetBalance(a.addr).available);
  EXPECT_EQ(racing->ChainMeta("chain:race"), "0") << "it saw every rival commit";
  ASSERT_TRUE(broker_->Sync().ok());
  EXPECT_EQ(ParseMoney("5").value(), broker_->GetBalance(a.addr).available) << "credited once";

  // Losing every time: the caller gets kAborted, and nothing was credited.
  auto loser = Broker::Open(std::make_unique<RacingStore>(store::OpenMemoryReplica(memory_db_),
                                                          store::OpenMemoryReplica(memory_db_), 100),
                            &clock_, Options())
                   .value();
  Account b = NewAccount();
  Status lost = loser->Retrying([&] { return loser->Faucet(b.addr, ParseMoney("5").value(), "k2").status(); });
  EXPECT_EQ(Code::kAborted, lost.code()) << lost.ToString();
  ASSERT_TRUE(broker_->Sync().ok());
  EXPECT_EQ(0, broker_->GetBalance(b.addr).available);
  ExpectAuditOk();
}

TEST_P(ReplicasTest, LoginNonceHeartbeatsAndOutputAreShared) {
  // A nonce from one replica signs in on the other, once.
  NonceInfo n = broker_->NewNonce().value();
  Account user = NewAccount();
  crypto::SiweMessage msg;
  msg.domain = n.domain;
  msg.address = crypto::AddressOf(user.key).ToChecksumHex();
  msg.uri = n.uri;
  msg.version = "1";
  msg.chain_id = n.chain_id;
  msg.nonce = n.nonce;
  msg.issued_at = FormatTime(clock_.NowMs());
  std::string text = crypto::FormatSiwe(msg);
  std::string sig = crypto::HexEncode(crypto::SignDigest(user.key, crypto::PersonalMessageHash(text)).value());
  ASSERT_TRUE(other_->Login(text, sig).ok());
  EXPECT_EQ(Code::kUnauthenticated, broker_->Login(text, sig).status().code()) << "single use across replicas";

  // An agent that beats only on other_ stays online on broker_ (the leader).
  Account prov = NewAccount(), agent = NewAccount();
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000).value();
  ASSERT_TRUE(other_->Sync().ok());
  auto enrolled = other_->EnrollMachine(agent.addr, token.token, Spec(1), "");
  ASSERT_TRUE(enrolled.ok()) << enrolled.status().ToString();
  ASSERT_TRUE(broker_->Sync().ok());
  for (int i = 0; i < 10; ++i) {
    clock_.AdvanceMs(10'000);
    ASSERT_TRUE(other_->Heartbeat(agent.addr, "{}").ok());
    ASSERT_TRUE(broker_->CheckHosts().ok());
  }
  ASSERT_TRUE(broker_->HostOf(enrolled->machine.id).has_value());
  EXPECT_TRUE(broker_->HostOf(enrolled->machine.id)->online);
  EXPECT_EQ(clock_.NowMs(), broker_->HostOf(enrolled->machine.id)->last_seen_ms);

  // Output sent to one replica is read on the other.
  ASSERT_TRUE(broker_->AgentListOffer(agent.addr, {0, ParseMoney("1").value(), 1, 0, 0}).ok());
  Account renter = NewAccount();
  ASSERT_TRUE(broker_->Faucet(renter.addr, ParseMoney("10").value(), "r").ok());
  auto lease = Rent(renter, enrolled->machine.id, 1, 7);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(other_->Sync().ok());
  Metering meter;
  meter.peak_memory_bytes = 4096;
  ASSERT_TRUE(other_->AppendLeaseOutput(agent.addr, lease->id, 0, "hello \xff world", meter).ok());
  ASSERT_TRUE(other_->AppendLeaseOutput(agent.addr, lease->id, 6, "\xff world!", std::nullopt).ok());
  auto out = broker_->ReadLeaseOutput(renter.addr, lease->id, 0, 100);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ("hello \xff world!", out->data);
  ASSERT_TRUE(broker_->MeteringOf(lease->id).has_value());
  EXPECT_EQ(4096, broker_->MeteringOf(lease->id)->peak_memory_bytes);
  EXPECT_EQ(14, other_->Heartbeat(agent.addr, "{}").value()[0].log_offset) << "the agent resumes where it left off";
}

// An agent's heartbeat and its long-poll may reach different replicas (a
// load balancer): the version means the same on both.
TEST_P(ReplicasTest, LongPollVersionsAgreeAcrossReplicas) {
  Account prov = NewAccount(), agent = NewAccount(), renter = NewAccount();
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000).value();
  auto enrolled = broker_->EnrollMachine(agent.addr, token.token, Spec(1), "");
  ASSERT_TRUE(enrolled.ok()) << enrolled.status().ToString();
  ASSERT_TRUE(broker_->AgentListOffer(agent.addr, {0, ParseMoney("1").value(), 1, 0, 0}).ok());
  ASSERT_TRUE(broker_->Faucet(renter.addr, ParseMoney("10").value(), "r").ok());
  ASSERT_TRUE(other_->Sync().ok());
  int64_t version = -1;
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}", &version).ok());
  int64_t other_version = -2;
  ASSERT_TRUE(other_->Heartbeat(agent.addr, "{}", &other_version).ok());
  EXPECT_EQ(version, other_version);

  std::atomic<int> answers{0};
  std::atomic<bool> changed{false};
  ASSERT_TRUE(other_->WaitForLeaseChange(agent.addr, version, 60'000, [&](bool c, int64_t) {
                       changed = c;
                       ++answers;
                     }).ok());
  EXPECT_EQ(0, answers.load()) << "nothing changed: the wait is parked, not answered at once";
  ASSERT_TRUE(Rent(renter, enrolled->machine.id, 1, 1).ok());  // through broker_
  ASSERT_TRUE(other_->Sync().ok());
  EXPECT_EQ(1, answers.load()) << "the other replica's commit wakes the wait";
  EXPECT_TRUE(changed.load());
}

TEST_P(ReplicasTest, OneLeaderAndItPassesOn) {
  EXPECT_TRUE(broker_->CheckLeadership());
  EXPECT_FALSE(other_->CheckLeadership());
  EXPECT_FALSE(other_->IsLeader());
  broker_.reset();
  memory_.reset();  // the leader's "connection" closes
  EXPECT_TRUE(other_->CheckLeadership());
}

INSTANTIATE_TEST_SUITE_P(Stores, ReplicasTest, ::testing::Values("replica"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grid::broker

namespace grid::broker {
namespace {

TEST_P(BrokerTest, HostReportsEndOrFailureWithTheirOwnReasons) {
  Account prov = NewAccount(), renter = NewAccount();
  int64_t m = ListedMachine(prov, 2, "1.00");
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  auto a = Rent(renter, m, 1, 1).value();
  auto b = Rent(renter, m, 1, 2).value();
  ASSERT_TRUE(broker_->ReportLease(prov.addr, a.id, market::LeaseState::kRunning, "").ok());
  clock_.AdvanceMs(10'000);
  auto ended = broker_->ReportLease(prov.addr, a.id, market::LeaseState::kEnded, "exit 0").value();
  EXPECT_EQ(ended.end_reason, market::EndReason::kExited);
  EXPECT_EQ(ended.billed_ms, 10'000);
  auto failed = broker_->ReportLease(prov.addr, b.id, market::LeaseState::kEnded, "image not found", true).value();
  EXPECT_EQ(failed.end_reason, market::EndReason::kFailed);
  EXPECT_EQ(failed.charged, 0);  // never ran, never billed
  EXPECT_EQ(failed.message, "image not found");
  EXPECT_EQ(broker_->ReportLease(prov.addr, b.id, market::LeaseState::kRunning, "").status().code(), Code::kConflict);
  ExpectAuditOk();
}

}  // namespace
}  // namespace grid::broker

namespace grid::broker {
namespace {

// Many leases of one renter settle in one group: each sees the balance the
// previous one left, so the renter is never overdrawn and the audit holds.
TEST_P(BrokerTest, GroupedSettlementOfOneRenterNeverOverdraws) {
  Account prov = NewAccount(), renter = NewAccount();
  int64_t m = ListedMachine(prov, 8, "36");  // 1 cent per GPU-second
  // Enough for the 8 holds (6 USD each) and a little more.
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  std::vector<int64_t> leases;
  for (int i = 0; i < 8; ++i) {
    auto l = Rent(renter, m, 1, 100 + i);
    ASSERT_TRUE(l.ok()) << i << ": " << l.status().ToString();
    ASSERT_TRUE(broker_->ReportLease(prov.addr, l->id, market::LeaseState::kRunning, "").ok());
    leases.push_back(l->id);
  }
  for (int tick = 0; tick < 12; ++tick) {
    clock_.AdvanceMs(60'000);
    ASSERT_TRUE(broker_->SettleAll().ok());
    ASSERT_GE(broker_->GetBalance(renter.addr).available, 0);
  }
  Micros charged = 0;
  for (int64_t id : leases) {
    auto l = broker_->GetLease(renter.addr, id).value();
    EXPECT_EQ(l.state, market::LeaseState::kEnded);
    EXPECT_EQ(l.end_reason, market::EndReason::kInsufficientFunds);
    charged += l.charged;
  }
  EXPECT_EQ(broker_->GetBalance(renter.addr).available + charged, 50'000'000);
  ExpectAuditOk();
}

}  // namespace
}  // namespace grid::broker

namespace grid::broker {
namespace {

// An agent enrolls with its provider's join token, heartbeats, goes offline
// when its beats stop (offers leave search), and past the grace period its
// leases end host_lost, billed only to the last heartbeat.
TEST_P(BrokerTest, AgentEnrollsHeartbeatsAndIsLost) {
  Account prov = NewAccount(), renter = NewAccount(), agent = NewAccount(), other_agent = NewAccount();
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(broker_->EnrollMachine(agent.addr, "gjt_wrong", Spec(2), "").status().code(), Code::kUnauthenticated);
  auto m = broker_->EnrollMachine(agent.addr, token->token, Spec(2), "");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->machine.provider, prov.addr);
  EXPECT_EQ(m->machine.agent_address, agent.addr);
  ASSERT_TRUE(m->host.has_value());
  int64_t id = m->machine.id;
  market::ListOfferRequest lr{id, 1'000'000, 1, 0, 0};
  ASSERT_TRUE(broker_->ListOffer(prov.addr, lr).ok());
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  auto lease = Rent(renter, id, 1, 1).value();
  auto beat = broker_->Heartbeat(agent.addr, "{}");
  ASSERT_TRUE(beat.ok());
  ASSERT_EQ(beat->size(), 1u);
  EXPECT_EQ((*beat)[0].lease.id, lease.id);
  EXPECT_EQ((*beat)[0].paid_until_ms, 0);  // not running yet
  // The agent reports for its provider.
  ASSERT_TRUE(broker_->ReportLease(agent.addr, lease.id, market::LeaseState::kRunning, "").ok());
  EXPECT_EQ(broker_->ReportLease(other_agent.addr, lease.id, market::LeaseState::kEnded, "").status().code(),
            Code::kNotFound);
  EXPECT_GT(broker_->Heartbeat(agent.addr, "{}").value()[0].paid_until_ms, clock_.NowMs());
  UnixMs last_beat = clock_.NowMs();

  // Three missed beats: offline, its offers leave search, no new leases.
  clock_.AdvanceMs(31'000);
  ASSERT_TRUE(broker_->CheckHosts().ok());
  EXPECT_FALSE(broker_->HostOf(id)->online);
  EXPECT_LT(broker_->HostOf(id)->reliability, 1.0);
  EXPECT_TRUE(OffersOf(id).empty());
  EXPECT_EQ(Rent(renter, id, 1, 2).status().code(), Code::kNotAvailable);
  // Back before the grace period ends: online again, the lease goes on.
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  last_beat = clock_.NowMs();
  ASSERT_TRUE(broker_->CheckHosts().ok());
  EXPECT_TRUE(broker_->HostOf(id)->online);
  EXPECT_EQ(OffersOf(id).size(), 1u);
  // Then gone for good: past the 5-minute grace the lease ends host_lost.
  clock_.AdvanceMs(5 * 60'000 + 1);
  ASSERT_TRUE(broker_->SettleAll().ok());  // a tick meanwhile bills up to now...
  ASSERT_TRUE(broker_->CheckHosts().ok());
  auto l = broker_->GetLease(renter.addr, lease.id).value();
  EXPECT_EQ(l.state, market::LeaseState::kEnded);
  EXPECT_EQ(l.end_reason, market::EndReason::kHostLost);
  EXPECT_EQ(l.billed_ms, last_beat - l.started_ms) << "not billed after the last heartbeat";
  ExpectAuditOk();

  // Re-enrolling after a restart needs no valid token; a revoked token stops
  // new machines only; a removed machine is refused.
  ASSERT_TRUE(broker_->RevokeJoinToken(prov.addr, token->id).ok());
  EXPECT_TRUE(broker_->EnrollMachine(agent.addr, "", Spec(2), "").ok());
  EXPECT_EQ(broker_->EnrollMachine(other_agent.addr, token->token, Spec(1), "").status().code(),
            Code::kUnauthenticated);
  Reopen();  // tokens and enrollments are durable
  EXPECT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  EXPECT_EQ(broker_->EnrollMachine(other_agent.addr, token->token, Spec(1), "").status().code(),
            Code::kUnauthenticated);
  EXPECT_EQ(broker_->RemoveMachine(renter.addr, id).status().code(), Code::kNotFound);
  ASSERT_TRUE(broker_->RemoveMachine(prov.addr, id).ok());
  EXPECT_EQ(broker_->Heartbeat(agent.addr, "{}").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(broker_->EnrollMachine(agent.addr, "", Spec(2), "").status().code(), Code::kPermissionDenied);
  EXPECT_TRUE(OffersOf(id).empty());
  ExpectAuditOk();
}

}  // namespace
}  // namespace grid::broker

namespace grid::broker {
namespace {

// The chain as a map: what broker tests need of payment channels.
class FakeChannels final : public ChannelReader {
 public:
  const std::string& contract() const override { return contract_; }
  const std::string& token() const override { return token_; }
  uint64_t chain_id() const override { return 31337; }
  Result<OnChainChannel> Read(const std::string& id) override {
    std::lock_guard lock(mu_);
    ++reads;
    if (down) return Unavailable("node down");
    auto it = channels.find(id);
    return it == channels.end() ? OnChainChannel{} : it->second;
  }
  Result<std::optional<Micros>> FindClose(const std::string& tx, const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = closes.find({tx, id});
    if (it == closes.end()) return std::optional<Micros>();
    return std::optional<Micros>(it->second);
  }

  std::mutex mu_;
  const std::string contract_ = "0x" + std::string(40, 'c');
  const std::string token_ = "0x" + std::string(40, 'd');
  std::map<std::string, OnChainChannel> channels;
  std::map<std::pair<std::string, std::string>, Micros> closes;  // (tx, channel) -> paid
  bool down = false;
  int reads = 0;
};

std::string ChannelId(char c) { return "0x" + std::string(64, c); }

crypto::Voucher SignedVoucher(const Account& signer, const std::string& channel, Micros amount) {
  crypto::Voucher v;
  EXPECT_TRUE(crypto::HexDecodeExact(channel, v.channel_id, "channel").ok());
  v.cumulative = static_cast<uint64_t>(amount);
  v.signature = crypto::SignVoucher(signer.key, 31337, crypto::ParseAddress("0x" + std::string(40, 'c')).value(),
                                    v.channel_id, v.cumulative)
                    .value();
  return v;
}

// A lease paid by payment channel, end to end through the broker: the
// on-chain checks, no custody, vouchers on the schedule, billing capped at
// what they pay, the end when they stop, the record and the audit.
TEST_P(BrokerTest, ChannelLeaseIsCheckedOnChainAndPaidByVouchers) {
  Account prov = NewAccount(), renter = NewAccount(), agent = NewAccount(), stranger = NewAccount();
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000).value();
  auto m = broker_->EnrollMachine(agent.addr, token.token, Spec(2), "", /*channel_payments=*/true);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const int64_t id = m->machine.id;
  // 7.20/h for the 2-GPU offer: 2 micro-USD per running millisecond.
  ASSERT_TRUE(broker_->ListOffer(prov.addr, {id, 3'600'000, 1, 0, 0}).ok());
  const int64_t by_hand = ListedMachine(prov, 2, "3.60");  // no agent: no channels

  const std::string c = ChannelId('a');
  OnChainChannel good;
  good.exists = true;
  good.renter = renter.addr;
  good.provider = agent.addr;
  good.token = "0x" + std::string(40, 'd');
  good.signer = renter.addr;
  good.deposit = 20 * 60'000 * 2;  // 20 minutes
  good.expiry_s = kT0 / 1000 + 86'400;
  EXPECT_EQ(Rent(renter, id, 2, 1, c).status().code(), Code::kConflict) << "no chain: refused";

  auto fake = std::make_shared<FakeChannels>();
  broker_->SetChannelReader(fake);
  struct Bad {
    const char* name;
    std::function<void(OnChainChannel&)> edit;
    Code code;
  };
  std::vector<Bad> bad = {
      {"not opened", [](OnChainChannel& x) { x.exists = false; }, Code::kConflict},
      {"someone else's", [&](OnChainChannel& x) { x.renter = stranger.addr; }, Code::kConflict},
      {"pays another host", [&](OnChainChannel& x) { x.provider = prov.addr; }, Code::kConflict},
      {"another token", [](OnChainChannel& x) { x.token = "0x" + std::string(40, 'e'); }, Code::kConflict},
      {"already paid out", [](OnChainChannel& x) { x.paid = 1; }, Code::kConflict},
      {"close pending", [](OnChainChannel& x) { x.close_at_s = kT0 / 1000 + 3600; }, Code::kConflict},
      // 10 minutes (1.2) + one interval (0.12) is the least.
      {"deposit short", [](OnChainChannel& x) { x.deposit = 1'320'000 - 1; }, Code::kInsufficientFunds},
      {"expires too soon", [](OnChainChannel& x) { x.expiry_s = kT0 / 1000 + 14 * 60; }, Code::kConflict},
  };
  uint64_t nonce = 10;
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    OnChainChannel x = good;
    b.edit(x);
    fake->channels[c] = x;
    auto r = Rent(renter, id, 2, ++nonce, c);
    EXPECT_EQ(r.status().code(), b.code) << r.status().ToString();
    EXPECT_EQ(OffersOf(id).size(), 2u) << "nothing was leased";
  }
  fake->down = true;
  EXPECT_EQ(Rent(renter, id, 2, ++nonce, c).status().code(), Code::kUnavailable);
  fake->down = false;
  good.deposit = 1'320'000;  // exactly enough
  fake->channels[c] = good;
  fake->channels[ChannelId('b')] = good;
  fake->channels[ChannelId('b')].provider = "0x" + std::string(40, '0');
  EXPECT_EQ(Rent(renter, by_hand, 2, ++nonce, ChannelId('b')).status().code(), Code::kConflict);

  // The renter has no balance at all: a channel lease needs none.
  auto lease = Rent(renter, id, 2, ++nonce, c);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->held, 0);
  EXPECT_EQ(lease->fee_bps, 0);
  ASSERT_TRUE(lease->channel.has_value());
  const market::ChannelPayment& ch = *lease->channel;
  EXPECT_EQ(ch.payee, agent.addr);
  EXPECT_EQ(ch.contract, fake->contract());
  EXPECT_EQ(ch.deposit, 1'320'000);
  EXPECT_EQ(ch.margin, 120'000);
  EXPECT_EQ(ch.interval_ms, 60'000);
  EXPECT_EQ(ch.grace_ms, 60'000);
  EXPECT_EQ(broker_->GetBalance(renter.addr).held, 0);
  EXPECT_EQ(Rent(renter, id, 1, ++nonce, c).status().code(), Code::kConflict) << "one channel, one lease";
  EXPECT_EQ(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 120'000)).status().code(),
            Code::kConflict)
      << "not running yet";

  ASSERT_TRUE(broker_->ReportLease(agent.addr, lease->id, market::LeaseState::kRunning, "").ok());
  int64_t version = 0;
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}", &version).ok());
  // Interval 0's voucher pays the first minute: 120,000.
  EXPECT_EQ(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(stranger, c, 120'000)).status().code(),
            Code::kUnauthenticated);
  EXPECT_EQ(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 120'001)).status().code(),
            Code::kInvalidArgument)
      << "off the schedule";
  EXPECT_EQ(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 360'000)).status().code(),
            Code::kInvalidArgument)
      << "too far ahead";
  EXPECT_EQ(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, ChannelId('b'), 120'000))
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(broker_->SubmitVoucher(stranger.addr, lease->id, SignedVoucher(renter, c, 120'000)).status().code(),
            Code::kNotFound);
  auto v0 = broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 120'000));
  ASSERT_TRUE(v0.ok()) << v0.status().ToString();
  EXPECT_EQ(v0->channel->voucher, 120'000);
  EXPECT_TRUE(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 120'000)).ok())
      << "a repeated delivery is fine";
  int64_t version_after = 0;
  auto beat = broker_->Heartbeat(agent.addr, "{}", &version_after).value();
  EXPECT_GT(version_after, version) << "the voucher woke the host's long-poll";
  EXPECT_EQ(beat[0].lease.channel->voucher, 120'000);
  EXPECT_EQ(beat[0].paid_until_ms, clock_.NowMs() + 2 * 60'000) << "a minute paid, plus a minute's grace";

  // 90 s in, billing stops at the paid minute; the next voucher moves it on.
  // But not while the host is quiet (no heartbeat for more than an
  // interval): the renter is not asked to pay ahead for a host that may be
  // gone.
  clock_.AdvanceMs(90'000);
  auto quiet = broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 240'000));
  EXPECT_EQ(quiet.status().code(), Code::kConflict) << quiet.status().ToString();
  EXPECT_NE(quiet.status().message().find("has not been heard from"), std::string::npos);
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  ASSERT_TRUE(broker_->SettleAll().ok());
  EXPECT_EQ(broker_->GetLease(renter.addr, lease->id)->charged, 120'000);
  ASSERT_TRUE(broker_->SubmitVoucher(renter.addr, lease->id, SignedVoucher(renter, c, 240'000)).ok());
  ASSERT_TRUE(broker_->SettleAll().ok());
  EXPECT_EQ(broker_->GetLease(renter.addr, lease->id)->charged, 180'000);
  Reopen();  // vouchers are durable
  broker_->SetChannelReader(fake);
  EXPECT_EQ(broker_->GetLease(renter.addr, lease->id)->channel->voucher, 240'000);
  ExpectAuditOk();

  // The renter stops signing: past two paid minutes + the grace, it ends.
  clock_.AdvanceMs(89'000);
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  ASSERT_TRUE(broker_->SettleAll().ok());
  EXPECT_TRUE(broker_->GetLease(renter.addr, lease->id)->active());
  clock_.AdvanceMs(2'000);
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  ASSERT_TRUE(broker_->SettleAll().ok());
  auto ended = broker_->GetLease(renter.addr, lease->id).value();
  EXPECT_EQ(ended.state, market::LeaseState::kEnded);
  EXPECT_EQ(ended.end_reason, market::EndReason::kInsufficientFunds);
  EXPECT_EQ(ended.charged, 240'000) << "charged what the vouchers paid, no more";
  EXPECT_EQ(OffersOf(id).size(), 2u);

  // The record: both sides' history shows the vouchers; no custody moved.
  auto history = broker_->History(renter.addr, 100).value();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].id, "lease:" + std::to_string(lease->id) + ":voucher:240000");
  EXPECT_EQ(history[0].amount, 120'000);
  EXPECT_EQ(broker_->History(prov.addr, 100).value().size(), 2u);
  EXPECT_EQ(broker_->GetBalance(prov.addr).earned, 0);

  // Syncing with the chain: a redeem, then the close and its payout.
  good.paid = 120'000;
  fake->channels[c] = good;
  EXPECT_EQ(broker_->SyncChannel(stranger.addr, lease->id, "").status().code(), Code::kNotFound);
  auto synced = broker_->SyncChannel(agent.addr, lease->id, "");
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_EQ(synced->channel->redeemed, 120'000);
  EXPECT_FALSE(synced->channel->closed);
  fake->channels.erase(c);
  const std::string tx = "0x" + std::string(64, '7');
  EXPECT_EQ(broker_->SyncChannel(renter.addr, lease->id, tx).status().code(), Code::kInvalidArgument)
      << "that transaction closed nothing";
  fake->closes[{tx, c}] = 240'000;
  synced = broker_->SyncChannel(renter.addr, lease->id, tx);
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_EQ(synced->channel->redeemed, 240'000);
  EXPECT_TRUE(synced->channel->closed);
  Reopen();
  EXPECT_TRUE(broker_->GetLease(renter.addr, lease->id)->channel->closed);
  ExpectAuditOk();
}

// Output pages never split a UTF-8 character, and the kept tail is bounded.
TEST_P(BrokerTest, LeaseOutputIsBoundedAndPagedOnCharacterBoundaries) {
  Account prov = NewAccount(), renter = NewAccount(), agent = NewAccount();
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000).value();
  int64_t id = broker_->EnrollMachine(agent.addr, token.token, Spec(1), "").value().machine.id;
  ASSERT_TRUE(broker_->ListOffer(prov.addr, {id, 1'000'000, 1, 0, 0}).ok());
  ASSERT_TRUE(broker_->Faucet(renter.addr, 50'000'000, "k").ok());
  auto lease = Rent(renter, id, 1, 1).value();
  std::string text = "h\xC3\xA9llo";  // "héllo": é is two bytes
  ASSERT_TRUE(broker_->AppendLeaseOutput(agent.addr, lease.id, 0, text, std::nullopt).ok());
  ASSERT_TRUE(broker_->AppendLeaseOutput(agent.addr, lease.id, 0, text, std::nullopt).ok());  // a retry
  auto page = broker_->ReadLeaseOutput(renter.addr, lease.id, 0, 2).value();
  EXPECT_EQ(page.data, "h");  // not "h\xC3"
  page = broker_->ReadLeaseOutput(renter.addr, lease.id, 2, 100).value();
  EXPECT_EQ(page.start_offset, 3);  // skipped the continuation byte
  EXPECT_EQ(page.data, "llo");
  EXPECT_EQ(broker_->ReadLeaseOutput(prov.addr, lease.id, 0, 100).value().data, text);
  EXPECT_EQ(broker_->ReadLeaseOutput(agent.addr, lease.id, 0, 100).status().code(), Code::kNotFound);
  EXPECT_EQ(broker_->AppendLeaseOutput(renter.addr, lease.id, 0, "x", std::nullopt).code(), Code::kNotFound);
  std::string big(kLogKeepBytes, 'x');
  ASSERT_TRUE(broker_->AppendLeaseOutput(agent.addr, lease.id, 6, big, Metering{1, 0.5, 1024, 0, 0}).ok());
  auto tail = broker_->ReadLeaseOutput(renter.addr, lease.id, 0, kLogKeepBytes * 2).value();
  EXPECT_EQ(tail.data.size(), kLogKeepBytes);
  EXPECT_EQ(tail.start_offset, 6);
  EXPECT_EQ(broker_->MeteringOf(lease.id)->peak_memory_bytes, 1024);
}

}  // namespace
}  // namespace grid::broker

namespace grid::broker {
namespace {

// The live index is in step with the market after every command: each
// machine's rows found by search equal market::OfferRowsOf computed afresh
// from the machine, its free GPUs and its host, and no other rows exist.
class SearchIndexTest : public BrokerTest {
 protected:
  void ExpectInStep(const std::string& where) {
    SCOPED_TRACE(where);
    auto all = broker_->SearchOffers({}, {}, query::kMaxLimit, false, /*no_default=*/true);
    ASSERT_TRUE(all.ok());
    std::map<int64_t, query::OfferRow> got;
    for (auto& r : all->result.offers) got.emplace(*r.id, r);
    EXPECT_EQ(static_cast<size_t>(all->result.total), got.size());
    size_t expected = 0;
    for (const Account* p : providers_) {
      for (const MachineView& v : broker_->ListMachines(p->addr)) {
        market::OfferHostInfo host;
        if (v.host) host = {v.host->online, v.host->reliability};
        for (const query::OfferRow& want : market::OfferRowsOf(v.machine, v.free_gpus, host, clock_.NowMs())) {
          ++expected;
          auto it = got.find(*want.id);
          if (it == got.end()) {
            ADD_FAILURE() << "offer " << *want.id << " missing from the index";
            continue;
          }
          for (const auto& f : query::Fields())
            EXPECT_EQ(it->second.Get(f.id), want.Get(f.id)) << "offer " << *want.id << " field " << f.name;
          auto one = broker_->GetOffer(*want.id);
          ASSERT_TRUE(one.ok());
          EXPECT_EQ(one->row.Get(query::FieldId::kRentable), want.Get(query::FieldId::kRentable));
        }
      }
    }
    EXPECT_EQ(got.size(), expected);
  }
  std::vector<const Account*> providers_;
};

TEST_P(SearchIndexTest, InStepWithEveryChange) {
  Account prov = NewAccount(), renter = NewAccount(), agent = NewAccount();
  providers_ = {&prov};
  ASSERT_TRUE(broker_->Faucet(renter.addr, 500'000'000, "k").ok());
  auto reg = broker_->RegisterMachine(prov.addr, Spec(8), "");
  ASSERT_TRUE(reg.ok());
  const int64_t m = reg->machine.id;
  ExpectInStep("registered, not listed");
  EXPECT_TRUE(Search("", true).empty());
  ASSERT_TRUE(broker_->ListOffer(prov.addr, {m, 2'000'000, 2, 0, 0}).ok());
  ExpectInStep("listed");
  EXPECT_EQ(OffersOf(m), (std::vector<int64_t>{m * 1000 + 2, m * 1000 + 4, m * 1000 + 6, m * 1000 + 8}));
  ASSERT_TRUE(broker_->ListOffer(prov.addr, {m, 3'000'000, 4, kT0 + 2 * 86'400'000, 0}).ok());
  ExpectInStep("new price, chunk and end date");
  EXPECT_EQ(Search("dph<12.01 machine_id=" + std::to_string(m)), (std::vector<int64_t>{m * 1000 + 4}));

  // A lease: its GPUs leave search as soon as it is acknowledged.
  auto lease = Rent(renter, m, 4, 1);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ExpectInStep("leased");
  EXPECT_EQ(OffersOf(m), (std::vector<int64_t>{m * 1000 + 4}));
  EXPECT_EQ(Search("rented=true", true), (std::vector<int64_t>{m * 1000 + 8}));
  ASSERT_TRUE(broker_->ReportLease(prov.addr, lease->id, market::LeaseState::kRunning, "").ok());
  ExpectInStep("running");
  Reopen();  // the index is rebuilt from the store
  ExpectInStep("after a restart");
  EXPECT_EQ(OffersOf(m), (std::vector<int64_t>{m * 1000 + 4}));
  ASSERT_TRUE(broker_->StopLease(renter.addr, lease->id).ok());
  ExpectInStep("stopped");
  EXPECT_EQ(OffersOf(m), (std::vector<int64_t>{m * 1000 + 4, m * 1000 + 8}));
  auto failing = Rent(renter, m, 8, 2);
  ASSERT_TRUE(failing.ok());
  EXPECT_TRUE(OffersOf(m).empty());
  ASSERT_TRUE(broker_->ReportLease(prov.addr, failing->id, market::LeaseState::kEnded, "boom", true).ok());
  ExpectInStep("failed");
  EXPECT_EQ(OffersOf(m).size(), 2u);

  // An agent's host: reliability, offline and back.
  auto token = broker_->CreateJoinToken(prov.addr, 3600'000);
  auto enrolled = broker_->EnrollMachine(agent.addr, token->token, Spec(2), "");
  ASSERT_TRUE(enrolled.ok());
  const int64_t a = enrolled->machine.id;
  ASSERT_TRUE(broker_->AgentListOffer(agent.addr, {0, 1'000'000, 1, 0, 0}).ok());
  ExpectInStep("agent listed");
  EXPECT_EQ(Search("reliability>=1"), (std::vector<int64_t>{a * 1000 + 1, a * 1000 + 2}));
  clock_.AdvanceMs(31'000);
  ASSERT_TRUE(broker_->CheckHosts().ok());
  ExpectInStep("host offline");
  EXPECT_TRUE(OffersOf(a).empty());
  EXPECT_EQ(Search("machine_id=" + std::to_string(a) + " rentable=false", true).size(), 2u);
  ASSERT_TRUE(broker_->Heartbeat(agent.addr, "{}").ok());
  ExpectInStep("host back");
  EXPECT_EQ(OffersOf(a).size(), 2u);
  EXPECT_TRUE(Search("reliability>=1").empty()) << "reliability fell while it was offline";

  // The end date passes with no command at all: the offers stop being rentable.
  clock_.AdvanceMs(2 * 86'400'000);
  EXPECT_TRUE(OffersOf(m).empty());
  ExpectInStep("past the end date");
  ASSERT_TRUE(broker_->Unlist(prov.addr, a).ok());
  ExpectInStep("unlisted");
  ASSERT_TRUE(broker_->RemoveMachine(prov.addr, m).ok());
  ExpectInStep("removed");
  EXPECT_TRUE(Search("", true).empty());
}

TEST_P(SearchIndexTest, DefaultsOrderLimitAndExplain) {
  Account prov = NewAccount();
  int64_t m1 = ListedMachine(prov, 2, "2.00");
  int64_t m2 = ListedMachine(prov, 1, "1.50");
  auto q = query::Parse("num_gpus>=2 dph<3").value();
  auto r = broker_->SearchOffers(q, {}, 64, true, false);
  ASSERT_TRUE(r.ok());
  // --dev: verified is left out of the defaults.
  EXPECT_EQ(query::Format(r->query), "num_gpus>=2 dph_total<3 rentable=true rented=false");
  EXPECT_EQ(query::FormatOrder(r->order), "dph_total");
  EXPECT_EQ(r->result.total, 0);
  ASSERT_TRUE(r->result.explain.has_value());
  EXPECT_NE(r->result.explain->summary.find("dph_total<3"), std::string::npos) << r->result.explain->summary;
  // Each clause alone is to blame for a near miss: without num_gpus>=2 the
  // cheapest is m2's GPU, without dph<3 it is m1's two GPUs.
  ASSERT_EQ(r->result.explain->near_misses.size(), 2u);
  EXPECT_EQ(*r->result.explain->near_misses[0].row.id, m2 * 1000 + 1);
  EXPECT_EQ(*r->result.explain->near_misses[1].row.id, m1 * 1000 + 2);
  EXPECT_TRUE(r->Machine(m1) && r->Machine(m2)) << "near misses come with their machine";
  auto all = broker_->SearchOffers({}, query::ParseOrder("dph-").value(), 2, false, false).value();
  EXPECT_EQ(all.result.total, 3);
  ASSERT_EQ(all.result.offers.size(), 2u);
  EXPECT_EQ(*all.result.offers[0].id, m1 * 1000 + 2);
  EXPECT_EQ(*all.result.offers[1].id, m1 * 1000 + 1);
  EXPECT_EQ(all.machines.size(), 1u);
  EXPECT_EQ(broker_->SearchOffers({}, {}, query::kMaxLimit + 1, false, false).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(broker_->SearchOffers({}, {}, -1, false, false).status().code(), Code::kInvalidArgument);
}

// Searches share the broker's lock as readers; leases, stops and an end
// date passing (which a search itself applies, taking the lock to write)
// run beside them. A search that starts after a change was acknowledged
// sees it, and every search sees one consistent state.
TEST_P(SearchIndexTest, ConcurrentSearchesSeeAcknowledgedChanges) {
  Account prov = NewAccount(), renter = NewAccount();
  ASSERT_TRUE(broker_->Faucet(renter.addr, 500'000'000, "k").ok());
  const int64_t m = ListedMachine(prov, 8, "1.00");
  const int64_t e = ListedMachine(prov, 2, "1.00", kT0 + 5'000);
  const std::string mq = "machine_id=" + std::to_string(m), eq = "machine_id=" + std::to_string(e);
  // Even: stable; (phase / 2) odd: 4 of m's GPUs leased. `expired`: the
  // clock is past e's end date.
  std::atomic<int> phase{0};
  std::atomic<bool> expired{false}, done{false};
  std::atomic<int> checked{0};
  auto searcher = [&] {
    while (!done) {
      const int before = phase.load();
      const bool past = expired.load();
      auto q = query::Parse(mq + " rentable=true").value();
      auto r = broker_->SearchOffers(q, {}, 64, false, true);
      auto qe = query::Parse(eq + " rentable=true").value();
      auto re = broker_->SearchOffers(qe, {}, 64, false, true);
      if (!r.ok() || !re.ok()) {
        ADD_FAILURE() << "search failed";
        return;
      }
      // m's offers are always 1..free GPUs, in order.
      const auto& offers = r->result.offers;
      for (size_t i = 0; i < offers.size(); ++i)
        if (*offers[i].id != m * 1000 + static_cast<int64_t>(i) + 1) ADD_FAILURE() << "offer " << *offers[i].id;
      if (before % 2 == 0 && phase.load() == before) {
        const size_t want = (before / 2) % 2 == 1 ? 4 : 8;
        if (offers.size() != want) ADD_FAILURE() << "phase " << before << ": " << offers.size() << " offers";
      }
      if (past && !re->result.offers.empty()) ADD_FAILURE() << "an offer past its end date is rentable";
      ++checked;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back(searcher);
  for (int round = 0; round < 20; ++round) {
    ++phase;
    auto lease = Rent(renter, m, 4, 100 + round);
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    ++phase;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ++phase;
    ASSERT_TRUE(broker_->StopLease(renter.addr, lease->id).ok());
    ++phase;
    if (round == 10) {
      clock_.AdvanceMs(10'000);
      expired = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(checked.load(), 0);
  EXPECT_TRUE(OffersOf(e).empty());
  ExpectAuditOk();
}

INSTANTIATE_TEST_SUITE_P(Stores, SearchIndexTest, ::testing::Values("memory", "sqlite", "replica"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grid::broker
