// The broker's side of leases paid by payment channel (issue 6,
// docs/channels.md "The broker"): checking a channel before a lease starts
// on it, accepting the renter's vouchers, and following what the chain paid
// out. The broker never holds channel money; it keeps the record both sides
// and the audit read.
#include <algorithm>

#include "broker/broker.h"
#include "crypto/hex.h"
#include "market/billing.h"

namespace grid::broker {

using market::Lease;
using market::LeaseState;

namespace {

bool IsLowerHex(const std::string& s, size_t digits) {
  return s.size() == digits + 2 && s[0] == '0' && s[1] == 'x' &&
         s.find_first_not_of("0123456789abcdef", 2) == std::string::npos;
}

}  // namespace

void Broker::SetChannelReader(std::shared_ptr<ChannelReader> reader) {
  std::lock_guard lock(mu_);
  channels_ = std::move(reader);
}

Result<market::ChannelPayment> Broker::CheckChannelLocked(const std::string& renter, const Lease& lease,
                                                          const std::string& id, const OnChainChannel& c,
                                                          UnixMs now) const {
  const market::Machine* m = market_.FindMachine(lease.machine_id);
  const std::string payee(m ? market::ChannelPayeeOf(*m) : std::string_view());
  if (payee.empty())
    return Conflict("pay.channel: machine " + std::to_string(lease.machine_id) +
                    "'s agent does not accept channel payments (leave out \"pay\" to pay from your balance)");
  auto refuse = [&](const std::string& why) { return Conflict("pay.channel " + id + ": " + why); };
  if (!c.exists)
    return refuse("no such channel on contract " + channels_->contract() + " (never opened, or already closed)");
  if (c.renter != renter) return refuse("it was opened by " + c.renter + ", not by you");
  if (c.provider != payee)
    return refuse("it pays " + c.provider + ", but machine " + std::to_string(lease.machine_id) + "'s agent is " +
                  payee + " (offers name it as channel_payee)");
  if (c.token != channels_->token())
    return refuse("it holds token " + c.token + ", but this broker settles in " + channels_->token());
  if (c.paid != 0) return refuse("it has paid out " + FormatMoney(c.paid) + " already; a lease needs a fresh channel");
  if (c.close_at_s != 0) return refuse("its renter's close is pending");
  const int64_t interval = options_.channel_interval_ms;
  // The channel must carry 10 minutes of the lease, and at least its first
  // voucher (one interval), plus the margin.
  const int64_t carry_ms = std::max(market::kHoldMs, interval);
  GRID_ASSIGN_OR_RETURN(Micros margin, market::ChannelMargin(lease.price_per_hour, interval));
  GRID_ASSIGN_OR_RETURN(Micros need, market::DepositFor(lease.price_per_hour, carry_ms, margin));
  if (c.deposit < need)
    return Status(Code::kInsufficientFunds,
                  "pay.channel " + id + ": its deposit " + FormatMoney(c.deposit) + " is below the " +
                      FormatMoney(need) + " this lease needs (" + std::to_string(carry_ms / 60'000) +
                      " minutes of it plus one interval's margin); top it up");
  const int64_t min_expiry_ms = now + carry_ms + market::kChannelExpiryMarginMs;
  if (c.expiry_s > INT64_MAX / 1000 || c.expiry_s * 1000 < min_expiry_ms)
    return refuse("it expires at " + FormatTime(c.expiry_s > INT64_MAX / 1000 ? 0 : c.expiry_s * 1000) +
                  "; it must stay open until at least " + FormatTime(min_expiry_ms) +
                  " (" + std::to_string(carry_ms / 60'000) + " minutes of the lease plus the 5-minute redemption margin)");
  market::ChannelPayment p;
  p.channel = id;
  p.contract = channels_->contract();
  p.chain_id = channels_->chain_id();
  p.token = c.token;
  p.signer = c.signer;
  p.payee = payee;
  p.deposit = c.deposit;
  p.expiry_ms = c.expiry_s * 1000;
  p.interval_ms = interval;
  p.grace_ms = interval;
  p.expiry_margin_ms = market::kChannelExpiryMarginMs;
  p.margin = margin;
  Lease probe = lease;
  probe.channel = p;
  GRID_RETURN_IF_ERROR(market::ValidateTerms(market::TermsOf(probe)));
  return p;
}

Result<Lease> Broker::SubmitVoucher(const std::string& addr, int64_t id, const crypto::Voucher& v) {
  Lease before;
  {
    std::shared_lock lock(mu_);
    const Lease* l = market_.FindLease(id);
    if (!l || !market_.CanSee(addr, *l)) return NotFound("lease " + std::to_string(id) + " not found");
    if (l->renter != addr) return PermissionDenied("only the renter sends vouchers for lease " + std::to_string(id));
    if (!l->channel) return Conflict("lease " + std::to_string(id) + " is paid from escrow, not by payment channel");
    before = *l;
  }
  const market::ChannelPayment& c = *before.channel;
  const std::string channel = crypto::HexEncode(v.channel_id);
  if (channel != c.channel)
    return InvalidArgument("channel_id: lease " + std::to_string(id) + " is paid by channel " + c.channel + ", not " +
                           channel);
  if (v.cumulative > static_cast<uint64_t>(INT64_MAX))
    return InvalidArgument("cumulative: " + std::to_string(v.cumulative) + " is out of range");
  // The signature outside the lock: it is the expensive part and the
  // channel's signer, chain and contract never change.
  GRID_ASSIGN_OR_RETURN(crypto::Address contract, crypto::ParseAddress(c.contract));
  GRID_ASSIGN_OR_RETURN(crypto::Address signer, crypto::ParseAddress(c.signer));
  if (Status s = crypto::VerifyVoucher(c.chain_id, contract, v, signer); !s.ok())
    return Status(s.code(), "voucher: " + s.message());
  const Micros amount = static_cast<Micros>(v.cumulative);

  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const Lease* l = market_.FindLease(id);
  if (!l) return NotFound("lease " + std::to_string(id) + " not found");
  if (!l->active()) return Conflict("lease " + std::to_string(id) + " has ended");
  if (l->state != LeaseState::kRunning)
    return Conflict("lease " + std::to_string(id) + " is not running yet: the first voucher is due when it starts");
  if (amount == l->channel->voucher) return *l;  // delivered again: already recorded
  const UnixMs now = clock_->NowMs();
  // A host that stopped answering may have died with the workload: the
  // renter is not asked to pay ahead for it. If it comes back within the
  // grace, vouchers resume; if not, the lease ends when the accepted ones
  // run out (settlement's MustStop) or the host is declared lost.
  if (auto h = hosts_.find(l->machine_id); h != hosts_.end() &&
                                          (!h->second.online || now - h->second.last_seen_ms > l->channel->interval_ms))
    return Conflict("lease " + std::to_string(id) + "'s host has not been heard from since " +
                    FormatTime(h->second.last_seen_ms) + ": no voucher is taken until it is back");
  GRID_RETURN_IF_ERROR(market::CheckVoucherAmount(market::TermsOf(*l), l->channel->voucher, amount, now).status());
  Lease next = *l;
  store::ChangeSet cs;
  cs.transfers = market::VoucherTransfers(next, amount, now);
  next.channel->voucher = amount;
  next.channel->voucher_sig = crypto::HexEncode(v.signature);
  next.channel->voucher_ms = now;
  cs.leases.push_back(std::move(next));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return *market_.FindLease(id);
}

Result<Lease> Broker::SyncChannel(const std::string& addr, int64_t id, const std::string& close_tx) {
  if (!close_tx.empty() && !IsLowerHex(close_tx, 64))
    return InvalidArgument("close_tx: expected 0x and 64 lowercase hex digits");
  std::shared_ptr<ChannelReader> reader;
  std::string channel;
  {
    std::shared_lock lock(mu_);
    const Lease* l = market_.FindLease(id);
    const market::Machine* am = AgentMachineLocked(addr);
    bool host_agent = l && am && am->id == l->machine_id;
    if (!l || !(market_.CanSee(addr, *l) || host_agent)) return NotFound("lease " + std::to_string(id) + " not found");
    if (!l->channel) return Conflict("lease " + std::to_string(id) + " is paid from escrow, not by payment channel");
    if (!channels_) return Conflict("this broker has no payment-channel contract (start it with --channels)");
    reader = channels_;
    channel = l->channel->channel;
  }
  GRID_ASSIGN_OR_RETURN(OnChainChannel c, reader->Read(channel));
  std::optional<Micros> final_paid;
  if (!close_tx.empty()) {
    GRID_ASSIGN_OR_RETURN(final_paid, reader->FindClose(close_tx, channel));
    if (!final_paid) return InvalidArgument("close_tx: " + close_tx + " is not a mined close of channel " + channel);
  }

  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const Lease* l = market_.FindLease(id);
  if (!l) return NotFound("lease " + std::to_string(id) + " not found");
  Lease next = *l;
  market::ChannelPayment& p = *next.channel;
  // What was paid out only grows; a closed channel reads as all zeros, so
  // its final payout comes from the Closed event, if given.
  if (c.exists) p.redeemed = std::max(p.redeemed, c.paid);
  if (final_paid) p.redeemed = std::max(p.redeemed, *final_paid);
  if (!c.exists) p.closed = true;
  if (p == *l->channel) return *l;
  store::ChangeSet cs;
  cs.leases.push_back(std::move(next));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return *market_.FindLease(id);
}

}  // namespace grid::broker
