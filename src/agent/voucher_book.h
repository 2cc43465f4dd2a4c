// VoucherBook: the agent's durable record of what each channel-paid lease
// has been paid (issue 6, docs/channels.md): the channel, the schedule's
// terms, the best voucher accepted, and what was redeemed on chain.
//
// Accept() is the agent's whole check of a voucher: the signature is the
// channel's signer's over the EIP-712 Voucher in the contract's domain
// (crypto::VerifyVoucher: low s, the right chain and contract), and the
// amount is the schedule's (market::CheckVoucherAmount: only growing, at
// most one interval ahead, under deposit − margin, redeemable before the
// expiry). Only then is it written, and it is on disk (fdatasync) before
// Accept returns: a voucher the agent acted on survives kill -9, so the
// provider can always redeem what it let run.
//
// Storage: one append-only file per lease, `<dir>/voucher-<lease>.jsonl`:
// the first line the channel and terms, then one line per accepted voucher
// or redemption. A torn last line (a crash mid-append) is cut off on load (a
// file without a whole header is removed: its Track never returned); any
// other damage fails Open() naming the file and line. Load re-checks each
// voucher's signature and that amounts grow (a damaged or edited file never
// becomes a claim the chain would refuse); the terms in the header are
// trusted. After a failed write or fdatasync the book refuses every later
// write until it is reopened. Forget() moves a lease's file to
// `<dir>/closed/` once its channel is closed (kept as the provider's record;
// Open() does not read it again).
//
// Thread safety: not thread-safe; the agent's loop owns it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/money.h"
#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"
#include "market/channel_policy.h"

namespace grid::agent {

struct ChannelLease {
  uint64_t chain_id = 0;
  crypto::Address contract;  // the PaymentChannels deployment
  crypto::Hash32 channel{};  // the channel id
  crypto::Address signer;    // whose vouchers pay (as the contract holds it)
  market::ChannelTerms terms;
};

class VoucherBook {
 public:
  // Loads every lease's file under `dir` (created if missing).
  static Result<std::unique_ptr<VoucherBook>> Open(const std::string& dir);

  // Starts keeping a lease's vouchers. InvalidArgument for bad terms;
  // Conflict if the lease is already tracked with other terms (the same
  // terms again is a no-op).
  Status Track(int64_t lease_id, const ChannelLease& channel);

  // Checks and durably records a voucher; returns the interval it pays
  // through. A repeated voucher is Conflict "already accepted" and changes
  // nothing. NotFound for an untracked lease.
  Result<int64_t> Accept(int64_t lease_id, Micros amount, const crypto::Signature& sig, UnixMs now_ms);

  struct State {
    ChannelLease channel;
    Micros accepted = 0;            // the best voucher's amount (0: none yet)
    crypto::Signature signature{};  // its signature
    Micros redeemed = 0;            // paid out on chain so far
  };
  const State* Find(int64_t lease_id) const;
  const std::map<int64_t, State>& leases() const { return leases_; }

  // Records that the chain paid out `amount` in total (a redeem or the
  // close mined). Amounts only grow and never pass what was accepted.
  Status MarkRedeemed(int64_t lease_id, Micros amount);

  // market::MustStop / ShouldRedeem for the lease (false if untracked).
  bool MustStop(int64_t lease_id, UnixMs now_ms) const;
  bool ShouldRedeem(int64_t lease_id, Micros threshold, UnixMs now_ms) const;

  // Stops keeping the lease (its channel is closed): its file moves to
  // `<dir>/closed/`.
  Status Forget(int64_t lease_id);

 private:
  explicit VoucherBook(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(int64_t lease_id) const;
  Status Append(int64_t lease_id, const std::string& line, bool create);
  Status AppendOnce(int64_t lease_id, const std::string& line, bool create);
  Status Load(const std::string& path);

  std::string dir_;
  std::map<int64_t, State> leases_;
  std::string broken_;  // why writes stopped ("" while they work)
};

}  // namespace grid::agent
