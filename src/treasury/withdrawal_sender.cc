#include "treasury/withdrawal_sender.h"

#include <algorithm>
#include <cstdio>

#include "chain/tx.h"
#include "crypto/hex.h"

namespace grid::treasury {

using ledger::Withdrawal;
using ledger::WithdrawalState;

WithdrawalSender::WithdrawalSender(chain::Chain& chain, broker::Broker& broker, crypto::PrivateKey treasury_key,
                                   const Clock* clock, WithdrawalSenderOptions options)
    : chain_(chain), broker_(broker), sender_(chain, treasury_key, options.tx), clock_(clock), o_(std::move(options)) {
  o_.confirmations = std::max<uint64_t>(1, o_.confirmations);
}

Result<WithdrawalPoll> WithdrawalSender::Poll() {
  WithdrawalPoll out;
  std::vector<Withdrawal> open = broker_.OpenWithdrawals();
  if (open.empty()) return out;
  GRID_ASSIGN_OR_RETURN(uint64_t head, chain_.BlockNumber());
  // Next nonce: the chain's pending count, or past every nonce we still own.
  std::optional<uint64_t> next_nonce;
  for (Withdrawal& w : open) {
    if (w.state == WithdrawalState::kRequested) {
      if (!next_nonce) {
        GRID_ASSIGN_OR_RETURN(uint64_t pending, chain_.GetTransactionCount(sender_.address(), chain::BlockTag::kPending));
        next_nonce = pending;
        for (const Withdrawal& o : open)  // signing in this loop changes no other's nonce
          if (o.state != WithdrawalState::kRequested) next_nonce = std::max(*next_nonce, o.nonce + 1);
      }
      GRID_RETURN_IF_ERROR(Sign(w, (*next_nonce)++, out));
    } else if (w.state == WithdrawalState::kSigned) {
      GRID_RETURN_IF_ERROR(Send(w, out));
    } else {
      GRID_RETURN_IF_ERROR(Track(w, head, out));
    }
  }
  return out;
}

Status WithdrawalSender::Sign(Withdrawal w, uint64_t nonce, WithdrawalPoll& out) {
  GRID_ASSIGN_OR_RETURN(crypto::Address to, crypto::ParseAddress(w.to));
  auto built = sender_.BuildErc20TransferWithNonce(o_.token, to, chain::U256(static_cast<uint64_t>(w.amount)), nonce);
  if (!built.ok()) {
    // eth_estimateGas reverts when the treasury cannot pay: the money goes
    // back to the customer with the reason, rather than waiting forever.
    if (built.status().code() == Code::kConflict) {
      w.error = built.status().message();
      ++out.failed;
      return broker_.EndWithdrawal(std::move(w), /*confirmed=*/false);
    }
    return built.status();
  }
  w.state = WithdrawalState::kSigned;
  w.nonce = nonce;
  w.raw_tx = crypto::HexEncode(built->raw);
  w.tx_hashes.push_back(crypto::HexEncode(built->hash));
  // Stored before it is sent: after a crash this transaction, not a new
  // one, is what goes out.
  GRID_RETURN_IF_ERROR(broker_.SaveWithdrawal(w));
  ++out.signed_now;
  return Send(w, out);
}

Status WithdrawalSender::Send(Withdrawal& w, WithdrawalPoll& out) {
  GRID_ASSIGN_OR_RETURN(chain::Bytes raw, crypto::HexDecode(w.raw_tx));
  GRID_ASSIGN_OR_RETURN(chain::SendResult r, chain_.SendRawTransaction(raw));
  switch (r.outcome) {
    case chain::SendOutcome::kAccepted:
    case chain::SendOutcome::kAlreadyKnown:
      break;
    case chain::SendOutcome::kNonceTooLow:
    case chain::SendOutcome::kReplacementUnderpriced:
      // The nonce is taken: by an earlier version of this withdrawal (then a
      // receipt will show it) or, after a lost record, by something else.
      // Tracking decides; nothing is signed anew.
      break;
  }
  if (w.state == WithdrawalState::kSigned) {
    w.state = WithdrawalState::kSent;
    w.sent_ms = clock_->NowMs();
    GRID_RETURN_IF_ERROR(broker_.SaveWithdrawal(w));
    ++out.sent;
  }
  return Status::Ok();
}

Status WithdrawalSender::Track(Withdrawal w, uint64_t head, WithdrawalPoll& out) {
  // Any version may be the one mined.
  for (const std::string& h : w.tx_hashes) {
    crypto::Hash32 hash{};
    GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(h, hash, "tx hash"));
    GRID_ASSIGN_OR_RETURN(std::optional<chain::Receipt> receipt, chain_.GetTransactionReceipt(hash));
    if (!receipt) continue;
    if (head + 1 < receipt->block_number + o_.confirmations) return Status::Ok();  // not deep enough yet
    w.mined_tx = h;
    w.mined_block = receipt->block_number;
    if (receipt->success) {
      ++out.confirmed;
      return broker_.EndWithdrawal(std::move(w), /*confirmed=*/true);
    }
    w.error = "the token transfer " + h + " reverted in block " + std::to_string(receipt->block_number);
    ++out.failed;
    return broker_.EndWithdrawal(std::move(w), /*confirmed=*/false);
  }
  // Not mined. If the treasury's nonce has moved past ours, another
  // transaction took it (a record lost or restored from an old backup, a key
  // used elsewhere): none of our versions can ever be mined, so the money
  // goes back.
  GRID_ASSIGN_OR_RETURN(uint64_t used, chain_.GetTransactionCount(sender_.address(), chain::BlockTag::kLatest));
  if (used > w.nonce) {
    w.error = "the treasury's nonce " + std::to_string(w.nonce) +
              " was used by another transaction; none of this withdrawal's transactions can be mined";
    std::fprintf(stderr, "grid broker: withdrawal %lld failed and refunded: %s\n", static_cast<long long>(w.id),
                 w.error.c_str());
    ++out.failed;
    return broker_.EndWithdrawal(std::move(w), /*confirmed=*/false);
  }
  // Is the latest version still known to the node?
  crypto::Hash32 latest{};
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(w.tx_hashes.back(), latest, "tx hash"));
  GRID_ASSIGN_OR_RETURN(std::optional<chain::TransactionInfo> info, chain_.GetTransactionByHash(latest));
  UnixMs now = clock_->NowMs();
  if (now - w.sent_ms >= o_.bump_after_ms) {
    GRID_ASSIGN_OR_RETURN(chain::Bytes raw, crypto::HexDecode(w.raw_tx));
    GRID_ASSIGN_OR_RETURN(chain::SignedTransaction cur, chain::DecodeSignedTransaction(raw));
    GRID_ASSIGN_OR_RETURN(chain::SignedTransaction bumped, sender_.Bump(cur.tx));
    w.raw_tx = crypto::HexEncode(bumped.raw);
    w.tx_hashes.push_back(crypto::HexEncode(bumped.hash));
    w.sent_ms = now;
    GRID_RETURN_IF_ERROR(broker_.SaveWithdrawal(w));  // stored first, as always
    ++out.bumped;
    std::fprintf(stderr, "grid broker: withdrawal %lld not mined after %lld s: re-sent with higher fees as %s\n",
                 static_cast<long long>(w.id), static_cast<long long>(o_.bump_after_ms / 1000),
                 w.tx_hashes.back().c_str());
    return Send(w, out);
  }
  if (!info) {
    // The node forgot it (restart, eviction): send the same bytes again.
    return Send(w, out);
  }
  return Status::Ok();
}

}  // namespace grid::treasury
