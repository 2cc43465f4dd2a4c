// TxSender: builds and signs transactions from one key (ERC-20 transfers and other contract calls): the next
// nonce, EIP-1559 fees from the chain's base fee and priority fee under a
// cap, the gas limit from an estimate plus a margin — and replaces a
// transaction that does not confirm with the same nonce and higher fees.
//
// Contract:
// - Pure building blocks: nothing here sends or stores. The caller persists
//   the SignedTransaction (raw bytes and nonce) before sending it, so a crash
//   between signing and sending can be reconciled (rebroadcast the same raw
//   bytes: "already known" / "nonce too low" tell what happened).
// - Fees: maxPriorityFeePerGas = max(node's suggestion, min_priority_fee),
//   maxFeePerGas = base_fee_multiplier · baseFee + priority, both capped at
//   max_fee_cap. Conflict when the cap is at or below the current base fee
//   (the transaction could not be mined now; raise the cap or wait).
// - Bump raises both fees by at least 12.5% (nodes require 10%; 12.5% is also
//   the most the base fee can rise per block), and to at least what a new
//   transaction would offer now; Conflict when that exceeds the cap.
// - Errors from the chain pass through (Unavailable: retry later).
// Thread safety: not thread-safe; one TxSender per key, used by one thread
// (the nonces it hands out must be sequential anyway).
#pragma once

#include <cstdint>
#include <optional>

#include "chain/chain.h"
#include "chain/tx.h"

namespace grid::chain {

struct TxSenderOptions {
  uint64_t chain_id = 0;       // 0: ask the node once (eth_chainId)
  U256 max_fee_cap = U256(500'000'000'000);  // 500 gwei per gas, the most we ever offer
  U256 min_priority_fee = U256(0);
  uint64_t base_fee_multiplier = 2;   // headroom for base fee rises before inclusion
  uint64_t gas_margin_percent = 20;   // added to eth_estimateGas
};

class TxSender {
 public:
  // `chain` must outlive the sender.
  TxSender(Chain& chain, crypto::PrivateKey key, TxSenderOptions options = {});

  const crypto::Address& address() const { return address_; }

  // The nonce for the next new transaction: the chain's pending count, or
  // one past the last nonce this sender built if that is higher (several
  // transactions built before any is sent).
  Result<uint64_t> NextNonce();
  // Forgets the locally handed-out nonces (after DropMempool-like losses, or
  // when the caller decided to abandon built transactions).
  void ResetNonce() { next_nonce_.reset(); }

  // An EIP-1559 token.transfer(to, amount) from this key with NextNonce().
  Result<SignedTransaction> BuildErc20Transfer(const crypto::Address& token, const crypto::Address& to,
                                               const U256& amount);
  // The same with an explicit nonce (reconciliation, tests); does not touch
  // the local nonce counter.
  Result<SignedTransaction> BuildErc20TransferWithNonce(const crypto::Address& token, const crypto::Address& to,
                                                        const U256& amount, uint64_t nonce);

  // An EIP-1559 call of `contract` with calldata `data` (no value) with
  // NextNonce(); the gas estimate runs the call first, so a revert is a
  // Conflict naming its reason before anything is signed.
  Result<SignedTransaction> BuildCall(const crypto::Address& contract, Bytes data);
  Result<SignedTransaction> BuildCallWithNonce(const crypto::Address& contract, Bytes data, uint64_t nonce);

  // A replacement for `tx` (same nonce, recipient, data and gas limit) with
  // fees raised as in the contract. Legacy transactions get gasPrice raised.
  Result<SignedTransaction> Bump(const Transaction& tx);

  // The fees a new transaction would offer now.
  struct Fees {
    U256 max_priority_fee_per_gas;
    U256 max_fee_per_gas;
  };
  Result<Fees> CurrentFees();

 private:
  Result<uint64_t> ChainIdOnce();

  Chain& chain_;
  const crypto::PrivateKey key_;
  const crypto::Address address_;
  const TxSenderOptions options_;
  std::optional<uint64_t> chain_id_;
  std::optional<uint64_t> next_nonce_;
};

// ceil(v · 9 / 8): the 12.5% replacement bump; nullopt on overflow.
std::optional<U256> BumpFee(const U256& v);

}  // namespace grid::chain
