// The agent's channel duties against the in-memory chain: the on-chain check
// before a lease starts, vouchers into the book, stopping, redeeming,
// closing (also after a restart), retries after chain failures, the
// renter's close, and the worker thread.
#include "agent/channel_keeper.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "crypto/hex.h"
#include "crypto/voucher.h"

namespace grid::agent {
namespace {

namespace json = boost::json;
namespace channels = chain::channels;

constexpr uint64_t kChain = 31337;
constexpr uint64_t kNowS = 1'790'000'000;
constexpr UnixMs kStart = static_cast<UnixMs>(kNowS) * 1000;
constexpr int64_t kLease = 7;
// $2/h in 60 s intervals: 33,333 µUSD per interval.
constexpr Micros kV0 = 33'333, kV1 = 66'666, kV2 = 100'000;

class ChannelKeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("channel_keeper_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    renter_ = crypto::PrivateKeyFromHex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d").value();
    agent_ = crypto::PrivateKeyFromHex("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a").value();
    cfg_.contract = crypto::ParseAddress("0x5FC8d32690cc91D4c39d9d3abcBD16989F875707").value();
    cfg_.token = crypto::ParseAddress("0x5FbDB2315678afecb367f032d93F642f64180aa3").value();
    cfg_.chain_id = kChain;
    id_ = crypto::Keccak256(std::string_view("a channel"));
    chain_ = std::make_shared<FakeChannelChain>(kChain, cfg_.contract, crypto::AddressOf(agent_));
    chain_->SetTimeS(kNowS);
    state_.exists = true;
    state_.renter = crypto::AddressOf(renter_);
    state_.signer = crypto::AddressOf(renter_);
    state_.provider = crypto::AddressOf(agent_);
    state_.token = cfg_.token;
    state_.deposit = chain::U256(1'000'000);
    state_.expiry_s = kNowS + 86'400;
    chain_->Put(id_, state_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ChannelKeeper> Open(Micros threshold = 1'000'000, bool background = false) {
    ChannelKeeperOptions o;
    o.config = cfg_;
    o.payee = crypto::AddressOf(agent_);
    o.redeem_threshold = threshold;
    o.retry_min_ms = 5'000;
    o.background = background;
    auto k = ChannelKeeper::Open(o, chain_, dir_.string(), [this](int64_t id, const std::string& close_tx) {
      synced_.push_back(id);
      close_txs_.push_back(close_tx);
      return sync_status_;
    });
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    return k.ok() ? std::move(*k) : nullptr;
  }

  std::string Sig(Micros amount, const crypto::PrivateKey& key) const {
    return crypto::HexEncode(
        crypto::SignVoucher(key, kChain, cfg_.contract, id_, static_cast<uint64_t>(amount)).value());
  }

  // The lease as the broker's heartbeat shows it; start 0: not running yet.
  json::object Lease(UnixMs start_ms, Micros voucher = 0, const crypto::PrivateKey* signer = nullptr) const {
    json::object ch{{"id", crypto::HexEncode(id_)},
                    {"contract", cfg_.contract.ToLowerHex()},
                    {"chain_id", kChain},
                    {"token", cfg_.token.ToLowerHex()},
                    {"signer", crypto::AddressOf(renter_).ToLowerHex()},
                    {"payee", crypto::AddressOf(agent_).ToLowerHex()},
                    {"deposit", "1.000000"},
                    {"margin", "0.033334"},
                    {"expiry_s", kNowS + 86'400},
                    {"interval_ms", 60'000},
                    {"grace_ms", 60'000},
                    {"expiry_margin_ms", 300'000},
                    {"start_ms", start_ms},
                    {"length_ms", 0},
                    {"voucher", nullptr},
                    {"redeemed", "0.000000"},
                    {"closed", false}};
    if (voucher > 0)
      ch["voucher"] = json::object{{"amount", FormatMoney(voucher)},
                                   {"signature", Sig(voucher, signer ? *signer : renter_)},
                                   {"accepted_at", FormatTime(start_ms)}};
    json::object lease{{"id", kLease},
                       {"state", start_ms ? "running" : "pending"},
                       {"price_per_hour", "2.000000"},
                       {"payment", "channel"},
                       {"channel", std::move(ch)}};
    // Through text, as the agent gets it (numbers come back as int64).
    return json::parse(json::serialize(lease)).as_object();
  }

  // Checked, started, and paid `vouchers` in turn (one interval apart).
  void Run(ChannelKeeper& k, std::initializer_list<Micros> vouchers) {
    Status checked = k.CheckBeforeStart(Lease(0), kStart);
    ASSERT_TRUE(checked.ok()) << checked.ToString();
    ASSERT_TRUE(k.Observe(Lease(kStart), kStart).ok());
    UnixMs t = kStart;
    for (Micros v : vouchers) {
      ASSERT_TRUE(k.Observe(Lease(kStart, v), t).ok());
      t += 60'000;
    }
  }

  std::vector<FakeChannelChain::Sent> Sent(const std::string& kind) const {
    std::vector<FakeChannelChain::Sent> out;
    for (const auto& s : chain_->sent())
      if (s.kind == kind) out.push_back(s);
    return out;
  }

  std::filesystem::path dir_;
  crypto::PrivateKey renter_, agent_;
  chain::ChannelsConfig cfg_;
  channels::ChannelId id_{};
  channels::ChannelState state_;
  std::shared_ptr<FakeChannelChain> chain_;
  std::vector<int64_t> synced_;
  std::vector<std::string> close_txs_;  // with each sync
  Status sync_status_;
  const std::set<int64_t> active_{kLease};
  const std::set<int64_t> none_{};
};

TEST_F(ChannelKeeperTest, ChecksTheChannelOnChainBeforeStart) {
  auto k = Open();
  EXPECT_TRUE(k->CheckBeforeStart(Lease(0), kStart).ok());

  auto refused = [&](auto mutate, const std::string& why) {
    channels::ChannelState st = state_;
    mutate(st);
    chain_->Put(id_, st);
    Status s = k->CheckBeforeStart(Lease(0), kStart);
    EXPECT_FALSE(s.ok()) << why;
    EXPECT_NE(s.code(), Code::kUnavailable) << why << ": a refusal, not a retry";
    EXPECT_NE(s.message().find(why), std::string::npos) << s.message();
    chain_->Put(id_, state_);
  };
  refused([](channels::ChannelState& st) { st.exists = false; }, "does not exist");
  refused([&](channels::ChannelState& st) { st.provider = crypto::AddressOf(renter_); }, "not this host's agent");
  refused([&](channels::ChannelState& st) { st.signer = crypto::AddressOf(agent_); }, "signed by");
  refused([&](channels::ChannelState& st) { st.token = cfg_.contract; }, "holds token");
  refused([](channels::ChannelState& st) { st.close_at_s = kNowS + 3600; }, "started closing");
  refused([](channels::ChannelState& st) { st.paid = chain::U256(1); }, "paid out already");
  refused([](channels::ChannelState& st) { st.expiry_s = kNowS + 300; }, "too soon");
  refused([](channels::ChannelState& st) { st.deposit = chain::U256(33'334); }, "does not exceed the margin");

  json::object lease = Lease(0);
  lease["channel"].as_object()["payee"] = crypto::AddressOf(renter_).ToLowerHex();
  EXPECT_EQ(k->CheckBeforeStart(lease, kStart).code(), Code::kConflict);
  lease = Lease(0);
  lease["channel"].as_object()["contract"] = cfg_.token.ToLowerHex();
  EXPECT_EQ(k->CheckBeforeStart(lease, kStart).code(), Code::kConflict);
  lease = Lease(0);
  lease["channel"].as_object()["token"] = cfg_.contract.ToLowerHex();
  EXPECT_EQ(k->CheckBeforeStart(lease, kStart).code(), Code::kConflict);
  lease = Lease(0);
  lease["channel"].as_object().erase("deposit");
  EXPECT_EQ(k->CheckBeforeStart(lease, kStart).code(), Code::kInvalidArgument) << "a malformed lease is refused";

  chain_->SetDown(true);
  EXPECT_EQ(k->CheckBeforeStart(Lease(0), kStart).code(), Code::kUnavailable) << "a node down is worth a retry";
}

TEST_F(ChannelKeeperTest, TracksWithTheChainsTermsAndAcceptsVouchers) {
  // The chain holds more than the broker said (a top-up): its values count.
  state_.deposit = chain::U256(2'000'000);
  chain_->Put(id_, state_);
  auto k = Open();
  ASSERT_TRUE(k->CheckBeforeStart(Lease(0), kStart).ok());
  ASSERT_TRUE(k->Observe(Lease(0), kStart).ok());
  EXPECT_FALSE(k->Tracks(kLease)) << "not running yet: no start time for the schedule";
  ASSERT_TRUE(k->Observe(Lease(kStart), kStart).ok());
  ASSERT_TRUE(k->Tracks(kLease));
  EXPECT_EQ(k->book().Find(kLease)->channel.terms.deposit, 2'000'000);
  EXPECT_EQ(k->book().Find(kLease)->channel.terms.start_ms, kStart);

  ASSERT_TRUE(k->Observe(Lease(kStart, kV0), kStart).ok());
  EXPECT_EQ(k->book().Find(kLease)->accepted, kV0);
  ASSERT_TRUE(k->Observe(Lease(kStart, kV0), kStart + 1'000).ok()) << "the same voucher again is no error";
  EXPECT_EQ(k->book().Find(kLease)->accepted, kV0);
  // Signed by someone else, or off the schedule: not taken.
  ASSERT_TRUE(k->Observe(Lease(kStart, kV1, &agent_), kStart + 60'000).ok());
  EXPECT_EQ(k->book().Find(kLease)->accepted, kV0);
  ASSERT_TRUE(k->Observe(Lease(kStart, kV1 + 1), kStart + 60'000).ok());
  EXPECT_EQ(k->book().Find(kLease)->accepted, kV0);
  ASSERT_TRUE(k->Observe(Lease(kStart, kV1), kStart + 60'000).ok());
  EXPECT_EQ(k->book().Find(kLease)->accepted, kV1);
}

TEST_F(ChannelKeeperTest, StopsWhenTheVouchersStop) {
  auto k = Open();
  Run(*k, {kV0, kV1});
  // kV1 pays through start + 2 intervals; the grace is one more.
  EXPECT_EQ(k->StopReason(kLease, kStart + 180'000), "");
  std::string why = k->StopReason(kLease, kStart + 180'001);
  EXPECT_NE(why.find("vouchers stopped"), std::string::npos) << why;
  EXPECT_EQ(k->StopReason(99, kStart + 999'999'999), "") << "not a channel lease";
}

TEST_F(ChannelKeeperTest, StopsWithoutAFirstVoucher) {
  auto k = Open();
  Run(*k, {});
  EXPECT_EQ(k->StopReason(kLease, kStart + 60'000), "");
  EXPECT_NE(k->StopReason(kLease, kStart + 60'001), "");
}

TEST_F(ChannelKeeperTest, RedeemsTheBestVoucherAtTheThreshold) {
  auto k = Open(/*threshold=*/50'000);
  Run(*k, {kV0});
  k->Tick(&active_, kStart);
  EXPECT_TRUE(Sent("redeem").empty()) << "33,333 is under the threshold";
  ASSERT_TRUE(k->Observe(Lease(kStart, kV1), kStart + 60'000).ok());
  k->Tick(&active_, kStart + 60'000);
  auto redeems = Sent("redeem");
  ASSERT_EQ(redeems.size(), 1u);
  EXPECT_EQ(redeems[0].cumulative, kV1);
  EXPECT_TRUE(redeems[0].applied) << "the fake contract took the signature";
  EXPECT_EQ(chain_->Get(id_)->paid, chain::U256(kV1));
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV1);
  EXPECT_EQ(synced_, std::vector<int64_t>{kLease});
  EXPECT_EQ(close_txs_, std::vector<std::string>{""}) << "a redeem closes nothing";
  k->Tick(&active_, kStart + 61'000);
  EXPECT_EQ(Sent("redeem").size(), 1u) << "nothing new to redeem";
}

TEST_F(ChannelKeeperTest, RedeemsBeforeTheExpiryWhateverTheThreshold) {
  auto k = Open(/*threshold=*/10'000'000);
  Run(*k, {kV0});
  k->Tick(&active_, kStart);
  EXPECT_TRUE(Sent("redeem").empty());
  // expiry − expiry margin.
  k->Tick(&active_, kStart + 86'400'000 - 300'000);
  ASSERT_EQ(Sent("redeem").size(), 1u);
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV0);
}

TEST_F(ChannelKeeperTest, ClosesWithTheBestVoucherWhenTheLeaseIsGone) {
  auto k = Open();
  Run(*k, {kV0, kV1, kV2});
  k->Tick(&active_, kStart + 120'000);
  EXPECT_TRUE(Sent("close").empty());
  k->Tick(&none_, kStart + 130'000);
  auto closes = Sent("close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].cumulative, kV2);
  EXPECT_TRUE(closes[0].with_signature);
  EXPECT_EQ(chain_->ClosedPaid(id_), kV2);
  EXPECT_FALSE(chain_->Get(id_)->exists);
  EXPECT_FALSE(k->Tracks(kLease)) << "forgotten once closed";
  EXPECT_FALSE(std::filesystem::exists(dir_ / ("voucher-" + std::to_string(kLease) + ".jsonl")));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "closed" / ("voucher-" + std::to_string(kLease) + ".jsonl")))
      << "archived, not deleted";
  EXPECT_EQ(synced_, std::vector<int64_t>{kLease});
  // The broker is told which transaction closed it (the final payout).
  EXPECT_EQ(close_txs_, std::vector<std::string>{crypto::HexEncode(FakeChannelChain::TxHash(1))});
}

TEST_F(ChannelKeeperTest, ClosesAsPaidWithoutAVoucher) {
  auto k = Open();
  Run(*k, {});
  k->Tick(&none_, kStart + 1'000);
  auto closes = Sent("close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].cumulative, 0);
  EXPECT_FALSE(closes[0].with_signature);
  EXPECT_EQ(chain_->ClosedPaid(id_), 0);
  EXPECT_FALSE(k->Tracks(kLease));
}

TEST_F(ChannelKeeperTest, ClosesAsPaidWhenTheBestVoucherWasRedeemed) {
  auto k = Open(/*threshold=*/1);
  Run(*k, {kV0});
  k->Tick(&active_, kStart);
  ASSERT_EQ(k->book().Find(kLease)->redeemed, kV0);
  k->Tick(&none_, kStart + 1'000);
  auto closes = Sent("close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_FALSE(closes[0].with_signature) << "the contract would refuse the same voucher as StaleVoucher";
  EXPECT_EQ(chain_->ClosedPaid(id_), kV0);
  EXPECT_FALSE(k->Tracks(kLease));
}

TEST_F(ChannelKeeperTest, ClosesAfterARestart) {
  {
    auto k = Open();
    Run(*k, {kV0, kV1});
  }  // the agent dies here
  auto k = Open();
  ASSERT_TRUE(k->Tracks(kLease)) << "the book is durable";
  k->Tick(&none_, kStart + 200'000);
  auto closes = Sent("close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].cumulative, kV1);
  EXPECT_EQ(chain_->ClosedPaid(id_), kV1);
  EXPECT_FALSE(k->Tracks(kLease));
}

TEST_F(ChannelKeeperTest, RetriesAChainFailureLater) {
  auto k = Open();
  Run(*k, {kV0, kV1});
  chain_->SetDown(true);
  k->Tick(&none_, kStart + 100'000);
  EXPECT_TRUE(k->Tracks(kLease));
  EXPECT_TRUE(synced_.empty());
  chain_->SetDown(false);
  k->Tick(&none_, kStart + 104'000);
  EXPECT_TRUE(Sent("close").empty()) << "backing off: 5 s after the first failure";
  k->Tick(&none_, kStart + 105'000);
  ASSERT_EQ(Sent("close").size(), 1u);
  EXPECT_EQ(chain_->ClosedPaid(id_), kV1);
  EXPECT_FALSE(k->Tracks(kLease));
}

TEST_F(ChannelKeeperTest, BacksOffLongerAfterEachFailure) {
  auto k = Open(/*threshold=*/1);
  Run(*k, {kV0});
  chain_->SetDown(true);
  UnixMs t = kStart;
  k->Tick(&active_, t);  // fails: again in 5 s
  k->Tick(&active_, t += 5'000);  // fails: again in 10 s
  chain_->SetDown(false);
  k->Tick(&active_, t += 9'999);
  EXPECT_EQ(k->book().Find(kLease)->redeemed, 0);
  k->Tick(&active_, t += 1);
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV0);
}

TEST_F(ChannelKeeperTest, ATransactionMinedWithoutAReceiptCounts) {
  auto k = Open(/*threshold=*/1);
  Run(*k, {kV0});
  chain_->LoseNextReceipts(1);
  k->Tick(&active_, kStart);
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV0) << "the channel was read again after the timeout";
  EXPECT_EQ(Sent("redeem").size(), 1u);
}

TEST_F(ChannelKeeperTest, SomeoneElsesRedeemIsNoticed) {
  auto k = Open(/*threshold=*/1);
  Run(*k, {kV0, kV1});
  channels::ChannelState st = state_;
  st.paid = chain::U256(kV1);  // the broker redeemed the best voucher itself
  chain_->Put(id_, st);
  k->Tick(&active_, kStart + 60'000);
  EXPECT_TRUE(Sent("redeem").empty());
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV1);
}

TEST_F(ChannelKeeperTest, TheRentersCloseRedeemsAtOnceAndStopsTheWorkload) {
  auto k = Open(/*threshold=*/10'000'000);
  Run(*k, {kV0});
  k->Tick(&active_, kStart);  // the first watch: nothing special
  EXPECT_EQ(k->StopReason(kLease, kStart), "");
  channels::ChannelState st = state_;
  st.close_at_s = kNowS + 3'600;
  chain_->Put(id_, st);
  k->Tick(&active_, kStart + 60'000);  // the next watch sees the startClose
  EXPECT_NE(k->StopReason(kLease, kStart + 60'000).find("started closing"), std::string::npos);
  k->Tick(&active_, kStart + 61'000);
  ASSERT_EQ(Sent("redeem").size(), 1u) << "under the threshold, but the window is closing";
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV0);
}

TEST_F(ChannelKeeperTest, AChannelGoneUnderARunningLeaseStopsItOnceConfirmed) {
  auto k = Open();
  Run(*k, {kV0});
  channels::ChannelState gone;
  chain_->Put(id_, gone);
  k->Tick(&active_, kStart);
  EXPECT_EQ(k->StopReason(kLease, kStart), "") << "one read of zeros may be a lagging node";
  k->Tick(&active_, kStart + 10'000);
  EXPECT_EQ(k->StopReason(kLease, kStart + 10'000), "");
  k->Tick(&active_, kStart + ChannelKeeper::kGoneConfirmMs);
  EXPECT_NE(k->StopReason(kLease, kStart + ChannelKeeper::kGoneConfirmMs).find("closed on chain"), std::string::npos);
  k->Tick(&none_, kStart + ChannelKeeper::kGoneConfirmMs + 1'000);
  EXPECT_TRUE(Sent("close").empty()) << "nothing to close";
  EXPECT_FALSE(k->Tracks(kLease));
}

// A lagging node answers all zeros for a live channel once: the agent
// neither forgets its vouchers nor gives up on closing with them.
TEST_F(ChannelKeeperTest, AStaleReadOfAClosedChannelIsNotBelieved) {
  auto k = Open();
  Run(*k, {kV0, kV1});
  const channels::ChannelState live = *chain_->Get(id_);
  chain_->Put(id_, channels::ChannelState{});
  k->Tick(&none_, kStart + 70'000);  // the lease is over: the close finds "nothing"
  EXPECT_TRUE(k->Tracks(kLease)) << "not forgotten on one read";
  EXPECT_TRUE(Sent("close").empty());
  chain_->Put(id_, live);  // the node caught up
  k->Tick(&none_, kStart + 70'000 + ChannelKeeper::kGoneConfirmMs);
  ASSERT_EQ(Sent("close").size(), 1u);
  EXPECT_EQ(chain_->ClosedPaid(id_), kV1) << "closed with the best voucher after all";
  EXPECT_FALSE(k->Tracks(kLease));
}

TEST_F(ChannelKeeperTest, TheBrokerUnreachableStillRedeemsButClosesNothing) {
  auto k = Open(/*threshold=*/1);
  Run(*k, {kV0});
  sync_status_ = Unavailable("broker down");
  k->Tick(nullptr, kStart);
  EXPECT_EQ(k->book().Find(kLease)->redeemed, kV0);
  EXPECT_TRUE(Sent("close").empty());
  EXPECT_TRUE(synced_.empty()) << "no sync while the broker is away";
  k->Tick(&active_, kStart + 1'000);
  EXPECT_EQ(synced_.size(), 1u);
  k->Tick(&active_, kStart + 2'000);
  EXPECT_EQ(synced_.size(), 2u) << "retried while the broker is unavailable";
  sync_status_ = Status::Ok();
  k->Tick(&active_, kStart + 3'000);
  k->Tick(&active_, kStart + 4'000);
  EXPECT_EQ(synced_.size(), 3u) << "done once taken";
}

TEST_F(ChannelKeeperTest, AnUnusedCheckedChannelIsClosedAsPaid) {
  auto k = Open();
  ASSERT_TRUE(k->CheckBeforeStart(Lease(0), kStart).ok());
  k->Tick(&active_, kStart);
  EXPECT_TRUE(Sent("close").empty());
  k->Tick(&none_, kStart + 1'000);  // it failed to start, or was stopped before it ran
  auto closes = Sent("close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_FALSE(closes[0].with_signature);
  EXPECT_EQ(chain_->ClosedPaid(id_), 0);
}

TEST_F(ChannelKeeperTest, TheWorkerThreadRunsTransactionsOffTheLoop) {
  auto k = Open(/*threshold=*/1'000'000, /*background=*/true);
  Run(*k, {kV0, kV1});
  chain_->HoldSends(true);  // the close will wait to be mined
  k->Tick(&none_, kStart + 100'000);
  EXPECT_TRUE(k->Tracks(kLease)) << "Tick returned while the close waits";
  k->Tick(&none_, kStart + 100'500);  // the next heartbeat goes on too, sending nothing twice
  chain_->HoldSends(false);
  k->WaitIdle();
  EXPECT_EQ(chain_->ClosedPaid(id_), kV1);
  k->Tick(&none_, kStart + 101'000);  // applies the outcome
  EXPECT_FALSE(k->Tracks(kLease));
  EXPECT_EQ(synced_, std::vector<int64_t>{kLease});
  EXPECT_EQ(Sent("close").size(), 1u);
}

}  // namespace
}  // namespace grid::agent
