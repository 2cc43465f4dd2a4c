// Chain: the narrow interface through which Gridmarket reads and writes an
// EVM chain (the token's Transfer logs, balances, sending signed
// transactions). Two implementations: JsonRpcChain (chain/rpc/, any node over
// JSON-RPC) and SimChain (an in-memory chain with fault hooks, for tests of
// the deposit watcher and the withdrawal sender).
//
// Contract:
// - Every method may fail with Unavailable when the node cannot be reached
//   or answers garbage; callers retry later. A node's refusal of what we sent
//   is InvalidArgument (or the specific outcomes below), with the method and
//   the node's message in the text.
// - Call and EstimateGas report a revert as Conflict with the decoded reason
//   ("eth_call reverted: Error(\"...\")"); the revert data is not lost: it is
//   in the message as decoded text.
// - SendRawTransaction distinguishes the answers a rebroadcast after a crash
//   gets ("already known", "nonce too low", "replacement underpriced") as
//   SendOutcome values rather than errors, so the caller can reconcile.
// - "Not found" is not an error: GetTransactionReceipt and
//   GetTransactionByHash return nullopt for unknown or pending transactions.
// Thread safety: every implementation is safe to call from several threads
// at once (JsonRpcChain serializes its requests on one connection).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chain/rlp.h"
#include "chain/u256.h"
#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"

namespace grid::chain {

struct BlockHeader {
  uint64_t number = 0;
  crypto::Hash32 hash{};
  crypto::Hash32 parent_hash{};
  uint64_t timestamp = 0;  // seconds since the epoch
  std::optional<U256> base_fee;  // absent before London
};

struct LogFilter {
  uint64_t from_block = 0;
  uint64_t to_block = 0;  // inclusive
  std::optional<crypto::Address> address;
  // Positional: topics[i] must equal the log's topic i; nullopt matches any.
  std::vector<std::optional<crypto::Hash32>> topics;
};

struct Log {
  crypto::Address address;
  std::vector<crypto::Hash32> topics;
  Bytes data;
  uint64_t block_number = 0;
  crypto::Hash32 block_hash{};
  crypto::Hash32 tx_hash{};
  uint64_t log_index = 0;  // position in the block
  bool removed = false;    // true when a reorg dropped it (filters only)
  friend bool operator==(const Log&, const Log&) = default;
};

// eth_call / eth_estimateGas arguments.
struct CallRequest {
  std::optional<crypto::Address> from;
  crypto::Address to;
  Bytes data;
  U256 value;
};

enum class BlockTag { kLatest, kPending };

struct Receipt {
  crypto::Hash32 tx_hash{};
  bool success = false;  // status 1
  uint64_t block_number = 0;
  crypto::Hash32 block_hash{};
  uint64_t gas_used = 0;
  U256 effective_gas_price;
  std::vector<Log> logs;
};

struct TransactionInfo {
  crypto::Hash32 hash{};
  crypto::Address from;
  std::optional<crypto::Address> to;
  uint64_t nonce = 0;
  U256 value;
  Bytes input;
  std::optional<uint64_t> block_number;  // nullopt while pending
  std::optional<crypto::Hash32> block_hash;
};

// What a node said to eth_sendRawTransaction. Everything else it can say is
// an error Status.
enum class SendOutcome {
  kAccepted,               // in the mempool now
  kAlreadyKnown,           // this exact transaction is already pooled (or mined)
  // The nonce is used: another transaction with it was mined, or this very
  // one was (geth and anvil answer "nonce too low" for a mined duplicate,
  // not "already known"). Check the receipt of every hash sent with it.
  kNonceTooLow,
  kReplacementUnderpriced, // another tx holds the nonce and fees are too low
};
std::string_view SendOutcomeName(SendOutcome outcome);

struct SendResult {
  SendOutcome outcome = SendOutcome::kAccepted;
  crypto::Hash32 tx_hash{};  // keccak256(raw), whatever the outcome
  std::string node_message;  // the node's words, for logs (empty if accepted)
};

class Chain {
 public:
  virtual ~Chain() = default;

  virtual Result<uint64_t> ChainId() = 0;
  virtual Result<uint64_t> BlockNumber() = 0;
  // NotFound when the block does not exist (yet).
  virtual Result<BlockHeader> GetBlock(uint64_t number) = 0;
  virtual Result<std::vector<Log>> GetLogs(const LogFilter& filter) = 0;
  virtual Result<uint64_t> GetTransactionCount(const crypto::Address& account, BlockTag tag) = 0;
  virtual Result<uint64_t> EstimateGas(const CallRequest& call) = 0;
  // eth_call at the latest block: the return data.
  virtual Result<Bytes> Call(const CallRequest& call) = 0;
  virtual Result<U256> GasPrice() = 0;
  virtual Result<U256> MaxPriorityFeePerGas() = 0;
  // The base fee of the latest block (Unavailable before London).
  virtual Result<U256> BaseFee() = 0;
  virtual Result<SendResult> SendRawTransaction(std::span<const uint8_t> raw) = 0;
  virtual Result<std::optional<Receipt>> GetTransactionReceipt(const crypto::Hash32& tx_hash) = 0;
  virtual Result<std::optional<TransactionInfo>> GetTransactionByHash(const crypto::Hash32& tx_hash) = 0;
};

// Convenience over Call: the token's balanceOf(owner) and decimals().
Result<U256> Erc20BalanceOf(Chain& chain, const crypto::Address& token, const crypto::Address& owner);
Result<uint8_t> Erc20Decimals(Chain& chain, const crypto::Address& token);

}  // namespace grid::chain
