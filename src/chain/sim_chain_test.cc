// SimChain and TxSender together: what the deposit watcher and withdrawal
// sender will rely on (logs, receipts, nonces, replacement, faults).
#include "chain/sim_chain.h"

#include <gtest/gtest.h>

#include <thread>

#include "chain/abi.h"
#include "chain/tx_sender.h"

namespace grid::chain {
namespace {

crypto::PrivateKey Key(int n) {
  crypto::PrivateKey k;
  k.bytes[31] = uint8_t(n);
  return k;
}

const crypto::Address kToken = crypto::ParseAddress("0x5FbDB2315678afecb367f032d93F642f64180aa3").value();
const crypto::Address kBob = crypto::ParseAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").value();

SimChainOptions Options() {
  SimChainOptions o;
  o.token = kToken;
  return o;
}

Transaction TransferTx(uint64_t nonce, const crypto::Address& to, uint64_t amount, uint64_t fee_gwei = 5) {
  Transaction tx;
  tx.chain_id = 31337;
  tx.nonce = nonce;
  tx.max_priority_fee_per_gas = U256(1'000'000'000);
  tx.max_fee_per_gas = U256(fee_gwei * 1'000'000'000);
  tx.gas_limit = 60'000;
  tx.to = kToken;
  tx.data = EncodeTransferCall(to, U256(amount));
  return tx;
}

TEST(SimChainTest, TransferEmitsLogAndReceipt) {
  SimChain chain(Options());
  auto alice = Key(1);
  crypto::Address a = crypto::AddressOf(alice);
  chain.Mint(a, U256(1000));
  EXPECT_EQ(Erc20BalanceOf(chain, kToken, a).value(), U256(1000));
  EXPECT_EQ(Erc20Decimals(chain, kToken).value(), 6);

  auto st = SignTransaction(TransferTx(0, kBob, 300), alice).value();
  auto sent = chain.SendRawTransaction(st.raw).value();
  EXPECT_EQ(sent.outcome, SendOutcome::kAccepted);
  EXPECT_EQ(sent.tx_hash, st.hash);
  EXPECT_EQ(chain.GetTransactionCount(a, BlockTag::kPending).value(), 1u);
  EXPECT_EQ(chain.GetTransactionCount(a, BlockTag::kLatest).value(), 0u);
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());  // pending
  auto pending = chain.GetTransactionByHash(st.hash).value();
  ASSERT_TRUE(pending.has_value());
  EXPECT_FALSE(pending->block_number.has_value());

  EXPECT_EQ(chain.Mine(), 1u);
  auto receipt = chain.GetTransactionReceipt(st.hash).value();
  ASSERT_TRUE(receipt.has_value());
  EXPECT_TRUE(receipt->success);
  EXPECT_EQ(receipt->block_number, 1u);
  EXPECT_EQ(receipt->block_hash, chain.GetBlock(1).value().hash);
  EXPECT_EQ(receipt->effective_gas_price, U256(2'000'000'000));  // base 1 gwei + tip 1 gwei
  ASSERT_EQ(receipt->logs.size(), 1u);
  auto ev = DecodeTransferLog(receipt->logs[0].topics, receipt->logs[0].data).value();
  EXPECT_EQ(ev.from, a);
  EXPECT_EQ(ev.to, kBob);
  EXPECT_EQ(ev.value, U256(300));
  EXPECT_EQ(chain.TokenBalance(kBob), U256(300));
  EXPECT_EQ(Erc20BalanceOf(chain, kToken, a).value(), U256(700));

  // The watcher's filter: Transfer logs to bob.
  LogFilter f{0, 1, kToken, {TransferEventTopic(), std::nullopt, AddressTopic(kBob)}};
  auto logs = chain.GetLogs(f).value();
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].tx_hash, st.hash);
  f.topics[2] = AddressTopic(a);
  EXPECT_TRUE(chain.GetLogs(f).value().empty());
  EXPECT_EQ(chain.GetBlock(1).value().parent_hash, chain.GetBlock(0).value().hash);
  EXPECT_EQ(chain.GetBlock(1).value().timestamp, chain.GetBlock(0).value().timestamp + 12);
  EXPECT_EQ(chain.GetBlock(2).status().code(), Code::kNotFound);
}

TEST(SimChainTest, InsufficientBalanceRevertsButUsesTheNonce) {
  SimChain chain(Options());
  auto alice = Key(1);
  auto st = SignTransaction(TransferTx(0, kBob, 5), alice).value();
  // Estimation and eth_call see the revert with its reason.
  auto est = chain.EstimateGas(CallRequest{crypto::AddressOf(alice), kToken, st.tx.data, U256()});
  ASSERT_FALSE(est.ok());
  EXPECT_EQ(est.status().code(), Code::kConflict);
  EXPECT_NE(est.status().message().find("transfer amount exceeds balance"), std::string::npos);
  ASSERT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  chain.Mine();
  auto r = chain.GetTransactionReceipt(st.hash).value();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->success);
  EXPECT_TRUE(r->logs.empty());
  EXPECT_EQ(chain.GetTransactionCount(crypto::AddressOf(alice), BlockTag::kLatest).value(), 1u);
}

TEST(SimChainTest, RebroadcastOutcomes) {
  SimChain chain(Options());
  auto alice = Key(1);
  chain.Mint(crypto::AddressOf(alice), U256(100));
  auto st = SignTransaction(TransferTx(0, kBob, 10), alice).value();
  EXPECT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  EXPECT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAlreadyKnown);
  // Another tx with the same nonce and barely higher fees.
  auto cheap = SignTransaction(TransferTx(0, kBob, 11, 5), alice).value();
  EXPECT_EQ(chain.SendRawTransaction(cheap.raw).value().outcome, SendOutcome::kReplacementUnderpriced);
  chain.Mine();
  EXPECT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAlreadyKnown);  // mined
  auto late = SignTransaction(TransferTx(0, kBob, 12, 9), alice).value();
  auto r = chain.SendRawTransaction(late.raw).value();
  EXPECT_EQ(r.outcome, SendOutcome::kNonceTooLow);
  EXPECT_NE(r.node_message.find("nonce too low"), std::string::npos);
  // Wrong chain and garbage are errors.
  Transaction other = TransferTx(1, kBob, 1);
  other.chain_id = 1;
  EXPECT_EQ(chain.SendRawTransaction(SignTransaction(other, alice).value().raw).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(chain.SendRawTransaction(Bytes{0xc0}).status().code(), Code::kInvalidArgument);
}

TEST(SimChainTest, FaultHooks) {
  SimChain chain(Options());
  chain.FailNextCalls(2);
  EXPECT_EQ(chain.BlockNumber().status().code(), Code::kUnavailable);
  EXPECT_EQ(chain.ChainId().status().code(), Code::kUnavailable);
  EXPECT_EQ(chain.BlockNumber().value(), 0u);
  chain.SetDown(true);
  EXPECT_EQ(chain.GetLogs(LogFilter{0, 0}).status().code(), Code::kUnavailable);
  chain.SetDown(false);
  EXPECT_EQ(chain.calls(), 4u);

  auto alice = Key(1);
  chain.Mint(crypto::AddressOf(alice), U256(100));
  auto st = SignTransaction(TransferTx(0, kBob, 10), alice).value();
  ASSERT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  chain.DropMempool();
  EXPECT_EQ(chain.MempoolSize(), 0u);
  EXPECT_FALSE(chain.GetTransactionByHash(st.hash).value().has_value());
  chain.Mine();
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());
  // Rebroadcasting the persisted raw bytes recovers it.
  EXPECT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  chain.Mine();
  EXPECT_TRUE(chain.GetTransactionReceipt(st.hash).value()->success);
}

TEST(SimChainTest, SnapshotRevertIsAReorg) {
  SimChain chain(Options());
  auto alice = Key(1);
  chain.Mint(crypto::AddressOf(alice), U256(100));
  chain.Mine(2);
  uint64_t snap = chain.Snapshot();
  auto st = SignTransaction(TransferTx(0, kBob, 10), alice).value();
  ASSERT_TRUE(chain.SendRawTransaction(st.raw).ok());
  chain.Mine();
  crypto::Hash32 old_hash = chain.GetBlock(3).value().hash;
  ASSERT_EQ(chain.GetLogs(LogFilter{0, 10, kToken}).value().size(), 1u);

  ASSERT_TRUE(chain.Revert(snap).ok());
  EXPECT_EQ(chain.BlockNumber().value(), 2u);
  EXPECT_TRUE(chain.GetLogs(LogFilter{0, 10, kToken}).value().empty());
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());
  EXPECT_EQ(chain.TokenBalance(kBob), U256(0));
  chain.Mine();
  EXPECT_NE(chain.GetBlock(3).value().hash, old_hash);  // a different block 3
  EXPECT_EQ(chain.Revert(snap).code(), Code::kNotFound);  // used up
}

TEST(SimChainTest, FeeCapBelowBaseFeeWaits) {
  SimChain chain(Options());
  auto alice = Key(1);
  chain.Mint(crypto::AddressOf(alice), U256(100));
  chain.SetBaseFee(U256(10'000'000'000));  // 10 gwei
  chain.Mine();
  auto st = SignTransaction(TransferTx(0, kBob, 10, 5), alice).value();  // cap 5 gwei
  ASSERT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  chain.Mine(3);
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());
  EXPECT_EQ(chain.MempoolSize(), 1u);
}

TEST(SimChainTest, ConcurrentCallsAreSafe) {
  SimChain chain(Options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        chain.Mine();
        ASSERT_TRUE(chain.BlockNumber().ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(chain.BlockNumber().value(), 800u);
}

// ---- TxSender on SimChain ----

TEST(TxSenderTest, BuildsSendsAndConfirms) {
  SimChain chain(Options());
  auto treasury = Key(7);
  chain.Mint(crypto::AddressOf(treasury), U256(1'000'000));
  TxSender sender(chain, treasury);
  auto st = sender.BuildErc20Transfer(kToken, kBob, U256(250'000)).value();
  EXPECT_EQ(st.tx.type, TxType::kEip1559);
  EXPECT_EQ(st.tx.chain_id, 31337u);
  EXPECT_EQ(st.tx.nonce, 0u);
  EXPECT_EQ(st.tx.gas_limit, 51'000u * 120 / 100);  // estimate + 20%
  EXPECT_EQ(st.tx.max_priority_fee_per_gas, U256(1'000'000'000));
  EXPECT_EQ(st.tx.max_fee_per_gas, U256(3'000'000'000));  // 2·base + tip
  EXPECT_EQ(st.from, crypto::AddressOf(treasury));
  EXPECT_EQ(DecodeSignedTransaction(st.raw).value().tx, st.tx);
  // A second one built before sending the first gets the next nonce.
  auto st2 = sender.BuildErc20Transfer(kToken, kBob, U256(1)).value();
  EXPECT_EQ(st2.tx.nonce, 1u);
  ASSERT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  ASSERT_EQ(chain.SendRawTransaction(st2.raw).value().outcome, SendOutcome::kAccepted);
  chain.Mine();
  EXPECT_TRUE(chain.GetTransactionReceipt(st.hash).value()->success);
  EXPECT_TRUE(chain.GetTransactionReceipt(st2.hash).value()->success);
  EXPECT_EQ(chain.TokenBalance(kBob), U256(250'001));
  EXPECT_EQ(sender.NextNonce().value(), 2u);
}

TEST(TxSenderTest, RefusesWhatWouldRevertAndPassesOutages) {
  SimChain chain(Options());
  TxSender sender(chain, Key(7));
  auto r = sender.BuildErc20Transfer(kToken, kBob, U256(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_NE(r.status().message().find("exceeds balance"), std::string::npos);
  EXPECT_EQ(sender.NextNonce().value(), 0u);  // nothing was handed out
  chain.Mint(crypto::AddressOf(Key(7)), U256(5));
  chain.FailNextCalls(1);
  EXPECT_EQ(sender.BuildErc20Transfer(kToken, kBob, U256(1)).status().code(), Code::kUnavailable);
}

TEST(TxSenderTest, BumpReplacesAStuckTransaction) {
  SimChain chain(Options());
  auto treasury = Key(7);
  chain.Mint(crypto::AddressOf(treasury), U256(1'000));
  TxSender sender(chain, treasury);
  auto st = sender.BuildErc20Transfer(kToken, kBob, U256(10)).value();  // cap 3 gwei
  ASSERT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kAccepted);
  // The base fee jumps before it is mined: stuck.
  chain.SetBaseFee(U256(4'000'000'000));
  chain.Mine(2);
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());

  auto bumped = sender.Bump(st.tx).value();
  EXPECT_EQ(bumped.tx.nonce, st.tx.nonce);
  EXPECT_EQ(bumped.tx.data, st.tx.data);
  EXPECT_EQ(bumped.tx.gas_limit, st.tx.gas_limit);
  EXPECT_GE(bumped.tx.max_fee_per_gas, BumpFee(st.tx.max_fee_per_gas).value());
  EXPECT_GE(bumped.tx.max_priority_fee_per_gas, BumpFee(st.tx.max_priority_fee_per_gas).value());
  EXPECT_EQ(bumped.tx.max_fee_per_gas, U256(9'000'000'000));  // what a new tx offers now: 2·4 + 1
  ASSERT_EQ(chain.SendRawTransaction(bumped.raw).value().outcome, SendOutcome::kAccepted);
  chain.Mine();
  EXPECT_TRUE(chain.GetTransactionReceipt(bumped.hash).value()->success);
  EXPECT_FALSE(chain.GetTransactionReceipt(st.hash).value().has_value());
  // The original, rebroadcast after a crash, is now "nonce too low".
  EXPECT_EQ(chain.SendRawTransaction(st.raw).value().outcome, SendOutcome::kNonceTooLow);
  EXPECT_EQ(chain.TokenBalance(kBob), U256(10));
}

TEST(TxSenderTest, BumpIsAtLeastTwelvePointFivePercentAndRespectsTheCap) {
  SimChain chain(Options());
  auto treasury = Key(7);
  chain.Mint(crypto::AddressOf(treasury), U256(1'000));
  TxSenderOptions o;
  o.max_fee_cap = U256(3'300'000'000);
  TxSender sender(chain, treasury, o);
  auto st = sender.BuildErc20Transfer(kToken, kBob, U256(10)).value();
  EXPECT_EQ(st.tx.max_fee_per_gas, U256(3'000'000'000));
  // 3 gwei · 1.125 = 3.375 gwei > the 3.3 gwei cap.
  auto over = sender.Bump(st.tx);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), Code::kConflict);
  EXPECT_NE(over.status().message().find("fee cap"), std::string::npos);

  EXPECT_EQ(BumpFee(U256(8)).value(), U256(9));
  EXPECT_EQ(BumpFee(U256(9)).value(), U256(11));  // ceil(10.125)
  EXPECT_EQ(BumpFee(U256(0)).value(), U256(0));
  EXPECT_FALSE(BumpFee(U256::Max()).has_value());

  // The cap at or below the base fee: nothing can be built.
  chain.SetBaseFee(U256(4'000'000'000));
  chain.Mine();
  auto none = sender.BuildErc20Transfer(kToken, kBob, U256(1));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kConflict);
}

TEST(TxSenderTest, LegacyBump) {
  SimChain chain(Options());
  auto key = Key(3);
  TxSender sender(chain, key);
  Transaction tx;
  tx.type = TxType::kLegacy;
  tx.chain_id = 31337;
  tx.gas_price = U256(1'000'000'000);
  tx.gas_limit = 21'000;
  tx.to = kBob;
  auto bumped = sender.Bump(tx).value();
  EXPECT_EQ(bumped.tx.type, TxType::kLegacy);
  EXPECT_EQ(bumped.tx.gas_price, U256(2'000'000'000));  // the node's price is above 1.125 gwei
}

}  // namespace
}  // namespace grid::chain
