// JsonRpcChain: the Chain interface over Ethereum JSON-RPC 2.0 on HTTP, to
// any EVM node (anvil, geth, reth, a hosted provider).
//
// Contract:
// - Each Chain method is one JSON-RPC request with a fresh id; the answer's
//   id must match. Errors name the method and carry the node's own message:
//     Unavailable      the node cannot be reached, timed out (timeout_ms per
//                      call), answered HTTP 5xx/429, or sent something that is
//                      not a well-formed answer (bad JSON, wrong id, a missing
//                      or malformed field);
//     Conflict         eth_call / eth_estimateGas reverted; the message holds
//                      the decoded reason (Error(string), Panic(uint256)) from
//                      the error's data, or the node's text;
//     InsufficientFunds the sender cannot pay for gas (eth_sendRawTransaction);
//     InvalidArgument  any other JSON-RPC error (the node refused our input).
// - eth_sendRawTransaction maps the answers a rebroadcast gets to
//   SendOutcome: "already known"/"known transaction"/"already imported" →
//   kAlreadyKnown, "nonce too low" → kNonceTooLow, "replacement transaction
//   underpriced" → kReplacementUnderpriced. The tx hash is computed locally
//   (keccak256 of the raw bytes), so it is known whatever the node said.
// - Only http:// URLs for now (net::HttpClient has no TLS yet); an https URL
//   is InvalidArgument at Create.
// Thread safety: safe to call from several threads; requests are serialized
// on the one kept-alive connection (a mutex), which is what a single node
// connection allows anyway.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "chain/chain.h"

namespace grid::chain {

struct JsonRpcChainOptions {
  int timeout_ms = 10'000;  // per call: connect + request + response
  size_t max_response_bytes = 64 << 20;  // eth_getLogs answers can be large
};

class JsonRpcChain : public Chain {
 public:
  static Result<std::unique_ptr<JsonRpcChain>> Create(std::string_view url, JsonRpcChainOptions options = {});
  ~JsonRpcChain() override;
  JsonRpcChain(const JsonRpcChain&) = delete;
  JsonRpcChain& operator=(const JsonRpcChain&) = delete;

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

  const std::string& url() const;

  struct Impl;

 private:
  explicit JsonRpcChain(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How eth_sendRawTransaction's error message reads (exposed for tests):
// the outcome, or nullopt when it is a real error.
std::optional<SendOutcome> ClassifySendError(std::string_view node_message);

}  // namespace grid::chain
