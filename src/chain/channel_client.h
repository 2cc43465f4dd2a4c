// ChannelClient: one key's dealings with the PaymentChannels contract
// through a Chain — open a channel (approve, then open), read one, and send
// any of its calls (redeem, close, refund, startClose, finishClose, topUp),
// each waited for until mined.
//
// Contract:
// - Every call is simulated first (the gas estimate), so a call the contract
//   would refuse fails before anything is signed or sent, as Conflict with
//   the contract's error by name ("OverClaim", "NotProvider").
// - A transaction that is mined but failed is Conflict too, with its hash.
// - Waiting polls the node every `poll_ms` until `timeout_ms`; Unavailable
//   when it is not mined in time (it may still be: the hash is in the text).
// - Expiries are unix seconds of the chain's clock (the latest block's
//   timestamp), which is what the contract compares them with.
// Thread safety: not thread-safe (one TxSender, sequential nonces).
#pragma once

#include <cstdint>
#include <optional>

#include "chain/chain.h"
#include "chain/channels.h"
#include "chain/tx_sender.h"

namespace grid::chain {

struct ChannelClientOptions {
  uint64_t chain_id = 0;
  int64_t poll_ms = 200;
  int64_t timeout_ms = 120'000;
};

class ChannelClient {
 public:
  // `chain` must outlive the client.
  ChannelClient(Chain& chain, crypto::PrivateKey key, crypto::Address contract, ChannelClientOptions options = {});

  const crypto::Address& address() const { return sender_.address(); }
  const crypto::Address& contract() const { return contract_; }

  // The channel as the contract holds it now (exists == false once closed).
  Result<channels::ChannelState> Get(const channels::ChannelId& id);

  struct Opened {
    channels::OpenedEvent event;  // the id and terms, from the Opened log
    crypto::Hash32 tx_hash{};
  };
  // Approves `amount` of `token` for the contract and opens a channel to
  // `provider` whose vouchers `signer` signs, refundable from `expiry_s`.
  Result<Opened> Open(const crypto::Address& provider, const crypto::Address& token, const U256& amount,
                      uint64_t expiry_s, const crypto::Address& signer);

  // Approves `amount` (if any) and adds it to the channel's deposit, moving
  // its expiry to `new_expiry_s` (the contract refuses an earlier one).
  Result<Receipt> TopUp(const channels::ChannelId& id, const crypto::Address& token, const U256& amount,
                        uint64_t new_expiry_s);

  // Sends a call of the contract (an Encode… of channels.h) and waits until
  // it is mined: its receipt.
  Result<Receipt> Send(Bytes calldata);

  // The latest block's timestamp.
  Result<uint64_t> ChainTime();

 private:
  Result<Receipt> SendTo(const crypto::Address& to, Bytes calldata);

  Chain& chain_;
  TxSender sender_;
  const crypto::Address contract_;
  const ChannelClientOptions options_;
};

}  // namespace grid::chain
