#include "chain/channel_client.h"

#include <chrono>
#include <thread>

#include "crypto/hex.h"

namespace grid::chain {

ChannelClient::ChannelClient(Chain& chain, crypto::PrivateKey key, crypto::Address contract,
                             ChannelClientOptions options)
    : chain_(chain),
      sender_(chain, std::move(key), TxSenderOptions{.chain_id = options.chain_id}),
      contract_(contract),
      options_(options) {}

Result<channels::ChannelState> ChannelClient::Get(const channels::ChannelId& id) {
  GRID_ASSIGN_OR_RETURN(Bytes data, chain_.Call(CallRequest{std::nullopt, contract_, channels::EncodeChannelsCall(id), {}}));
  return channels::DecodeChannelsResult(data);
}

Result<uint64_t> ChannelClient::ChainTime() {
  GRID_ASSIGN_OR_RETURN(uint64_t head, chain_.BlockNumber());
  GRID_ASSIGN_OR_RETURN(BlockHeader block, chain_.GetBlock(head));
  return block.timestamp;
}

Result<Receipt> ChannelClient::Send(Bytes calldata) { return SendTo(contract_, std::move(calldata)); }

Result<Receipt> ChannelClient::SendTo(const crypto::Address& to, Bytes calldata) {
  Result<SignedTransaction> tx = sender_.BuildCall(to, std::move(calldata));
  if (!tx.ok()) {
    // A refused simulation: say which of the contract's errors it was.
    if (tx.status().code() == Code::kConflict)
      return Status(Code::kConflict, channels::NameCustomErrors(tx.status().message()));
    return tx.status();
  }
  Result<SendResult> sent = chain_.SendRawTransaction(tx->raw);
  if (!sent.ok()) {
    sender_.ResetNonce();  // the nonce may be unused: ask the chain next time
    return sent.status();
  }
  if (sent->outcome != SendOutcome::kAccepted && sent->outcome != SendOutcome::kAlreadyKnown) {
    sender_.ResetNonce();
    return Status(Code::kConflict, "the node refused the transaction: " + sent->node_message);
  }
  const std::string hash = crypto::HexEncode(tx->hash);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  for (;;) {
    auto receipt = chain_.GetTransactionReceipt(tx->hash);
    if (receipt.ok() && *receipt) {
      if (!(*receipt)->success) return Status(Code::kConflict, "transaction " + hash + " was mined but reverted");
      return **receipt;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      sender_.ResetNonce();
      return Unavailable("transaction " + hash + " not mined within " + std::to_string(options_.timeout_ms / 1000) +
                         " s (it may still be)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_ms));
  }
}

Result<Receipt> ChannelClient::TopUp(const channels::ChannelId& id, const crypto::Address& token, const U256& amount,
                                     uint64_t new_expiry_s) {
  if (amount != U256()) GRID_RETURN_IF_ERROR(SendTo(token, channels::EncodeApprove(contract_, amount)).status());
  return Send(channels::EncodeTopUp(id, amount, new_expiry_s));
}

Result<ChannelClient::Opened> ChannelClient::Open(const crypto::Address& provider, const crypto::Address& token,
                                                  const U256& amount, uint64_t expiry_s,
                                                  const crypto::Address& signer) {
  GRID_ASSIGN_OR_RETURN(U256 have, Erc20BalanceOf(chain_, token, address()));
  if (have < amount)
    return Status(Code::kInsufficientFunds, "your address holds " + have.ToDecimal() +
                                                " base units of the token, less than the deposit " + amount.ToDecimal());
  GRID_RETURN_IF_ERROR(SendTo(token, channels::EncodeApprove(contract_, amount)).status());
  GRID_ASSIGN_OR_RETURN(Receipt r, Send(channels::EncodeOpen(provider, token, amount, expiry_s, signer)));
  for (const Log& log : r.logs) {
    if (log.address != contract_ || log.topics.empty() || log.topics[0] != channels::OpenedEventTopic()) continue;
    GRID_ASSIGN_OR_RETURN(channels::OpenedEvent e, channels::DecodeOpenedLog(log.topics, log.data));
    return Opened{e, r.tx_hash};
  }
  return Internal("open() was mined (" + crypto::HexEncode(r.tx_hash) + ") without an Opened event");
}

}  // namespace grid::chain
