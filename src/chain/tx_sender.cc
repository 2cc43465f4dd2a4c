#include "chain/tx_sender.h"

#include <algorithm>

#include "chain/abi.h"

namespace grid::chain {

std::optional<U256> BumpFee(const U256& v) {
  auto times9 = U256::MulSmall(v, 9);
  if (!times9) return std::nullopt;
  auto plus7 = U256::Add(*times9, U256(7));
  if (!plus7) return std::nullopt;
  return U256::DivSmall(*plus7, 8);
}

TxSender::TxSender(Chain& chain, crypto::PrivateKey key, TxSenderOptions options)
    : chain_(chain), key_(key), address_(crypto::AddressOf(key)), options_(std::move(options)) {
  if (options_.chain_id != 0) chain_id_ = options_.chain_id;
}

Result<uint64_t> TxSender::ChainIdOnce() {
  if (!chain_id_) {
    GRID_ASSIGN_OR_RETURN(uint64_t id, chain_.ChainId());
    chain_id_ = id;
  }
  return *chain_id_;
}

Result<uint64_t> TxSender::NextNonce() {
  GRID_ASSIGN_OR_RETURN(uint64_t pending, chain_.GetTransactionCount(address_, BlockTag::kPending));
  return std::max(pending, next_nonce_.value_or(0));
}

Result<TxSender::Fees> TxSender::CurrentFees() {
  GRID_ASSIGN_OR_RETURN(U256 base, chain_.BaseFee());
  GRID_ASSIGN_OR_RETURN(U256 tip, chain_.MaxPriorityFeePerGas());
  if (base >= options_.max_fee_cap) {
    return Conflict("base fee " + base.ToDecimal() + " wei is at or above the fee cap " +
                    options_.max_fee_cap.ToDecimal() + " wei: not sending now");
  }
  tip = std::max(tip, options_.min_priority_fee);
  auto scaled = U256::MulSmall(base, options_.base_fee_multiplier);
  auto max_fee = scaled ? U256::Add(*scaled, tip) : std::nullopt;
  Fees f;
  f.max_fee_per_gas = max_fee ? std::min(*max_fee, options_.max_fee_cap) : options_.max_fee_cap;
  f.max_priority_fee_per_gas = std::min(tip, f.max_fee_per_gas);
  return f;
}

Result<SignedTransaction> TxSender::BuildErc20TransferWithNonce(const crypto::Address& token,
                                                                const crypto::Address& to, const U256& amount,
                                                                uint64_t nonce) {
  return BuildCallWithNonce(token, EncodeTransferCall(to, amount), nonce);
}

Result<SignedTransaction> TxSender::BuildCall(const crypto::Address& contract, Bytes data) {
  GRID_ASSIGN_OR_RETURN(uint64_t nonce, NextNonce());
  GRID_ASSIGN_OR_RETURN(SignedTransaction st, BuildCallWithNonce(contract, std::move(data), nonce));
  next_nonce_ = nonce + 1;
  return st;
}

Result<SignedTransaction> TxSender::BuildCallWithNonce(const crypto::Address& contract, Bytes data, uint64_t nonce) {
  GRID_ASSIGN_OR_RETURN(uint64_t chain_id, ChainIdOnce());
  Transaction tx;
  tx.type = TxType::kEip1559;
  tx.chain_id = chain_id;
  tx.nonce = nonce;
  tx.to = contract;
  tx.data = std::move(data);
  // A revert here (insufficient balance, a contract's check) surfaces
  // before signing, with its reason.
  GRID_ASSIGN_OR_RETURN(uint64_t estimate, chain_.EstimateGas(CallRequest{address_, contract, tx.data, U256()}));
  U256 gas = U256::DivSmall(U256::MulSmall(U256(estimate), 100 + options_.gas_margin_percent).value_or(U256::Max()), 100)
                 .value_or(U256::Max());
  auto gas64 = gas.ToUint64();
  if (!gas64) return Unavailable("gas estimate " + std::to_string(estimate) + " is absurd");
  tx.gas_limit = *gas64;
  GRID_ASSIGN_OR_RETURN(Fees fees, CurrentFees());
  tx.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
  tx.max_fee_per_gas = fees.max_fee_per_gas;
  return SignTransaction(tx, key_);
}

Result<SignedTransaction> TxSender::BuildErc20Transfer(const crypto::Address& token, const crypto::Address& to,
                                                       const U256& amount) {
  GRID_ASSIGN_OR_RETURN(uint64_t nonce, NextNonce());
  GRID_ASSIGN_OR_RETURN(SignedTransaction st, BuildErc20TransferWithNonce(token, to, amount, nonce));
  next_nonce_ = nonce + 1;
  return st;
}

Result<SignedTransaction> TxSender::Bump(const Transaction& tx) {
  Transaction next = tx;
  if (tx.type == TxType::kLegacy) {
    GRID_ASSIGN_OR_RETURN(U256 price, chain_.GasPrice());
    auto bumped = BumpFee(tx.gas_price);
    if (!bumped) return Conflict("gas price cannot be bumped further");
    next.gas_price = std::max(*bumped, price);
    if (next.gas_price > options_.max_fee_cap) {
      return Conflict("bumping gas price to " + next.gas_price.ToDecimal() + " wei would exceed the fee cap " +
                      options_.max_fee_cap.ToDecimal());
    }
    return SignTransaction(next, key_);
  }
  auto tip = BumpFee(tx.max_priority_fee_per_gas);
  auto cap = BumpFee(tx.max_fee_per_gas);
  if (!tip || !cap) return Conflict("fees cannot be bumped further");
  // Also at least what a fresh transaction would offer: if the base fee
  // rose a lot, 12.5% is not enough to get in.
  Result<Fees> now = CurrentFees();
  if (now.ok()) {
    tip = std::max(*tip, now->max_priority_fee_per_gas);
    cap = std::max(*cap, now->max_fee_per_gas);
  } else if (now.status().code() != Code::kConflict) {
    return now.status();
  }
  if (*cap > options_.max_fee_cap) {
    return Conflict("bumping maxFeePerGas to " + cap->ToDecimal() + " wei would exceed the fee cap " +
                    options_.max_fee_cap.ToDecimal() + " wei");
  }
  next.max_priority_fee_per_gas = std::min(*tip, *cap);
  next.max_fee_per_gas = *cap;
  return SignTransaction(next, key_);
}

}  // namespace grid::chain
