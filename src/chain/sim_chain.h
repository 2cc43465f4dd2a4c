// SimChain: an in-memory, EVM-less chain behind the Chain interface, for unit
// tests of the layers above (the deposit watcher, the withdrawal sender).
//
// What it models: blocks mined on demand (Mine), with hashes, parents,
// timestamps and a base fee; accounts' nonces; one ERC-20 token at a fixed
// address whose transfer(to, amount) calls arrive as signed raw transactions
// (legacy EIP-155 or EIP-1559), are decoded, checked (chain id, nonce, the fee
// cap against the block's base fee) and applied, emitting a Transfer log and a
// receipt (status 0 when the transfer cannot be applied: insufficient
// balance, bad calldata, gas limit below what a transfer uses). balanceOf and
// decimals answer through Call. A mempool holds what was sent; replacing a
// pooled transaction needs both fees raised by replacement_bump_percent.
//
// What it does not model: an EVM, native ether balances and gas payment, or
// contracts other than the token (a transaction to any other address
// succeeds and does nothing).
//
// Fault hooks: Snapshot/Revert (a reorganisation: blocks after the snapshot
// vanish, and blocks mined later get different hashes), DropMempool,
// FailNextCalls (the node is down for N calls) and SetDown, and "already
// known" for a raw transaction sent twice.
//
// Thread safety: every method, including the test controls, is safe to call
// concurrently (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "chain/chain.h"
#include "chain/tx.h"

namespace grid::chain {

struct SimChainOptions {
  uint64_t chain_id = 31337;
  crypto::Address token;            // the one ERC-20 contract
  uint8_t token_decimals = 6;
  uint64_t genesis_timestamp = 1'700'000'000;
  uint64_t block_time_s = 12;
  U256 base_fee = U256(1'000'000'000);           // 1 gwei, for blocks mined from now on
  U256 suggested_priority_fee = U256(1'000'000'000);
  uint64_t transfer_gas = 51'000;   // what a token transfer uses
  uint64_t replacement_bump_percent = 10;  // geth's txpool default
};

class SimChain : public Chain {
 public:
  explicit SimChain(SimChainOptions options);

  // Chain.
  Result<uint64_t> ChainId() override;
  Result<uint64_t> BlockNumber() override;
  Result<BlockHeader> GetBlock(uint64_t number) override;
  Result<std::vector<Log>> GetLogs(const LogFilter& filter) override;
  Result<uint64_t> GetTransactionCount(const crypto::Address& account, BlockTag tag) override;
  Result<uint64_t> EstimateGas(const CallRequest& call) override;
  Result<Bytes> Call(const CallRequest& call) override;
  Result<U256> GasPrice() override;
  Result<U256> MaxPriorityFeePerGas() override;
  Result<U256> BaseFee() override;
  Result<SendResult> SendRawTransaction(std::span<const uint8_t> raw) override;
  Result<std::optional<Receipt>> GetTransactionReceipt(const crypto::Hash32& tx_hash) override;
  Result<std::optional<TransactionInfo>> GetTransactionByHash(const crypto::Hash32& tx_hash) override;

  // Test controls (never fail, never affected by the fault hooks).
  // Credits tokens directly, with no transaction and no log (test setup).
  void Mint(const crypto::Address& to, const U256& amount);
  U256 TokenBalance(const crypto::Address& owner);
  // Mines `blocks` blocks, each including every pooled transaction that is
  // executable (next nonce of its sender, fee cap >= base fee), in nonce
  // order per sender. Returns the new head number.
  uint64_t Mine(int blocks = 1);
  // The base fee of blocks mined from now on.
  void SetBaseFee(const U256& base_fee);
  void SetSuggestedPriorityFee(const U256& fee);
  size_t MempoolSize();
  // The node forgets every pending transaction (a restart without a
  // persisted pool, or eviction).
  void DropMempool();
  // Saves the whole state (blocks, balances, nonces, mempool); Revert goes
  // back to it and discards it and every later snapshot, like anvil's
  // evm_snapshot/evm_revert. NotFound for an unknown or used id.
  uint64_t Snapshot();
  Status Revert(uint64_t snapshot_id);
  // The next n Chain calls fail with Unavailable, as if the node were down.
  void FailNextCalls(int n);
  // While down, every Chain call fails with Unavailable.
  void SetDown(bool down);
  // Chain calls made so far (including failed ones), for tests of retries.
  uint64_t calls();

 private:
  struct MinedTx {
    SignedTransaction tx;
    Receipt receipt;
  };
  struct State {
    std::vector<BlockHeader> blocks;  // index = number
    std::map<crypto::Address, U256> balances;
    std::map<crypto::Address, uint64_t> nonces;
    std::map<crypto::Hash32, MinedTx> mined;
    std::vector<Log> logs;  // in chain order
    std::vector<SignedTransaction> pool;
  };

  Status Enter();  // counts the call, applies the fault hooks; mu_ held
  U256 FeeCap(const Transaction& tx) const;
  U256 Tip(const Transaction& tx) const;
  uint64_t GasNeeded(const Transaction& tx) const;
  // Applies one transaction to state_ in block `number` at log index base.
  Receipt Apply(const SignedTransaction& st, const BlockHeader& block, uint64_t& log_index);
  Result<Bytes> TokenCall(const std::optional<crypto::Address>& from, std::span<const uint8_t> data,
                          std::string_view method);

  std::mutex mu_;
  const SimChainOptions options_;
  U256 next_base_fee_;
  U256 priority_fee_;
  State state_;
  std::map<uint64_t, State> snapshots_;
  uint64_t next_snapshot_id_ = 1;
  uint64_t salt_ = 0;  // never reverted: blocks mined after a revert get new hashes
  int fail_next_ = 0;
  bool down_ = false;
  uint64_t calls_ = 0;
};

}  // namespace grid::chain
