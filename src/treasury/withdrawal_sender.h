// WithdrawalSender: turns requested withdrawals into ERC-20 transfers from
// the treasury, exactly once (issue 4).
//
// Each Poll walks the open withdrawals (ledger/withdrawal.h has their life):
//   requested -> signed   builds the transfer with the treasury's next nonce
//                         and STORES the signed transaction before sending it;
//   signed    -> sent     sends (or re-sends after a crash) that exact
//                         transaction; "already known" counts as sent;
//   sent      -> ended    once one of its versions has a receipt K blocks
//                         deep: confirmed if it succeeded, failed (money back)
//                         if it reverted. One that is not mined within
//                         bump_after_ms is re-signed with the same nonce and
//                         fees raised 12.5% (stored first, then sent); one
//                         the node dropped is re-sent; one whose nonce
//                         another transaction used is failed (refunded).
// A crash at any point leaves a stored transaction that the next Poll sends
// again, never a second transaction for the same withdrawal: its nonce is
// fixed at the first signature, so at most one version can ever be mined.
//
// Nonces: the next nonce is the larger of the chain's pending count and one
// past the highest nonce of a withdrawal still open, so a transaction the
// node forgot keeps its nonce.
//
// Thread safety: one thread at a time (the treasury's loop).
#pragma once

#include <cstdint>
#include <string>

#include "broker/broker.h"
#include "chain/chain.h"
#include "chain/tx_sender.h"
#include "core/clock.h"

namespace grid::treasury {

struct WithdrawalSenderOptions {
  crypto::Address token;
  uint64_t confirmations = 12;
  int64_t bump_after_ms = 60'000;  // re-sign with higher fees when not mined by then
  chain::TxSenderOptions tx;
};

struct WithdrawalPoll {
  int signed_now = 0, sent = 0, confirmed = 0, failed = 0, bumped = 0;
};

class WithdrawalSender {
 public:
  // `chain`, `broker` and `clock` must outlive the sender.
  WithdrawalSender(chain::Chain& chain, broker::Broker& broker, crypto::PrivateKey treasury_key, const Clock* clock,
                   WithdrawalSenderOptions options);

  // One pass over the open withdrawals. Unavailable when the node cannot be
  // reached; what was stored stays stored, and the next Poll goes on.
  Result<WithdrawalPoll> Poll();

  const crypto::Address& treasury() const { return sender_.address(); }

 private:
  Status Sign(ledger::Withdrawal w, uint64_t nonce, WithdrawalPoll& out);
  // Sends w.raw_tx; updates w to sent when the node has it.
  Status Send(ledger::Withdrawal& w, WithdrawalPoll& out);
  Status Track(ledger::Withdrawal w, uint64_t head, WithdrawalPoll& out);

  chain::Chain& chain_;
  broker::Broker& broker_;
  chain::TxSender sender_;
  const Clock* clock_;
  WithdrawalSenderOptions o_;
};

}  // namespace grid::treasury
