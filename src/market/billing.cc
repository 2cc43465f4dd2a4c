#include "market/billing.h"

#include <algorithm>

#include "market/channel_policy.h"

namespace grid::market {
namespace {

std::string Tid(const Lease& l, int64_t seq, std::string_view what) {
  return "lease:" + std::to_string(l.id) + ":s" + std::to_string(seq) + ":" + std::string(what);
}

ledger::Transfer Make(const Lease& l, std::string id, std::string debit, std::string credit, Micros amount,
                      ledger::TransferKind kind, UnixMs at, std::string memo) {
  return ledger::Transfer{std::move(id), std::move(debit), std::move(credit), amount, kind, l.id, at,
                          std::move(memo)};
}

}  // namespace

int64_t MaxElapsedFor(Micros price, Micros budget) {
  if (price <= 0) return INT64_MAX;
  // floor(p*e/H) <= B  <=>  p*e < (B+1)*H  <=>  e <= ceil((B+1)*H/p) - 1
  Int128 num = (static_cast<Int128>(budget) + 1) * kMsPerHour;
  Int128 e = (num + price - 1) / price - 1;
  return e > INT64_MAX ? INT64_MAX : static_cast<int64_t>(e);
}

Result<Micros> InitialHold(Micros price_per_hour) {
  auto h = AccruedCharge(price_per_hour, kHoldMs);
  if (!h) return InvalidArgument("price too large");
  return *h;
}

std::vector<ledger::Transfer> HoldTransfers(const Lease& lease, Micros amount) {
  if (amount <= 0) return {};
  return {Make(lease, "lease:" + std::to_string(lease.id) + ":hold", ledger::UserAccount(lease.renter),
               std::string(ledger::kEscrow), amount, ledger::TransferKind::kHold, lease.created_ms, "hold")};
}

std::vector<ledger::Transfer> VoucherTransfers(const Lease& lease, Micros amount, UnixMs now_ms) {
  if (!lease.channel || amount <= lease.channel->voucher) return {};
  return {Make(lease, "lease:" + std::to_string(lease.id) + ":voucher:" + std::to_string(amount),
               ledger::ChannelAccount(lease.renter), ledger::ChannelAccount(lease.provider),
               amount - lease.channel->voucher, ledger::TransferKind::kPosted, now_ms,
               "voucher on channel " + lease.channel->channel)};
}

UnixMs PaidUntil(const Lease& lease) {
  if (lease.state != LeaseState::kRunning) return 0;
  if (lease.channel) {
    const ChannelTerms t = TermsOf(lease);
    UnixMs through = PaidThrough(t, lease.channel->voucher);
    return through > INT64_MAX - t.grace_ms ? INT64_MAX : through + t.grace_ms;
  }
  Micros budget = lease.charged + lease.held;
  int64_t elapsed = MaxElapsedFor(lease.price_per_hour, budget);
  if (elapsed > INT64_MAX - lease.started_ms) return INT64_MAX;
  return lease.started_ms + elapsed;
}

int64_t RunningMs(const Lease& lease, UnixMs now_ms) {
  if (lease.state != LeaseState::kRunning) return lease.billed_ms;
  return std::max<int64_t>(lease.billed_ms, now_ms - lease.started_ms);
}

namespace {

// Settle() for a lease paid by payment channel: no money moves.
Result<Settlement> SettleChannel(const Lease& in, const SettleOptions& o) {
  Settlement out{in, {}};
  Lease& l = out.lease;
  ++l.settlements;
  bool end = o.end;
  EndReason reason = o.end_reason;
  if (l.state == LeaseState::kRunning) {
    const ChannelTerms t = TermsOf(l);
    UnixMs until = o.now_ms;
    if (o.bill_until_ms > 0) until = std::min(until, o.bill_until_ms);
    int64_t elapsed = std::max<int64_t>(l.billed_ms, until - l.started_ms);
    // Never charge past what the vouchers pay for: running time beyond it is
    // the provider's risk (at most the grace), not a debt of the renter's.
    int64_t payable = std::max<int64_t>(l.billed_ms, PaidThrough(t, l.channel->voucher) - l.started_ms);
    elapsed = std::min(elapsed, payable);
    if (!end && MustStop(t, l.channel->voucher, o.now_ms)) {
      end = true;
      reason = EndReason::kInsufficientFunds;
    }
    auto charged = AccruedCharge(l.price_per_hour, elapsed);
    if (!charged) return Internal("charge overflow on lease " + std::to_string(l.id));
    l.billed_ms = elapsed;
    l.charged = *charged;
  }
  if (end) {
    l.state = LeaseState::kEnded;
    l.end_reason = reason == EndReason::kNone ? EndReason::kRenterStopped : reason;
    l.ended_ms = o.now_ms;
  }
  return out;
}

}  // namespace

Result<Settlement> Settle(const Lease& in, const SettleOptions& o) {
  if (in.state == LeaseState::kEnded) return Conflict("lease " + std::to_string(in.id) + " has already ended");
  if (in.channel) return SettleChannel(in, o);
  Settlement out{in, {}};
  Lease& l = out.lease;
  const int64_t seq = ++l.settlements;
  const std::string user = ledger::UserAccount(l.renter);
  const std::string escrow(ledger::kEscrow);
  Micros available = o.renter_available;
  bool end = o.end;
  EndReason reason = o.end_reason;

  if (l.state == LeaseState::kRunning) {
    UnixMs until = o.now_ms;
    if (o.bill_until_ms > 0) until = std::min(until, o.bill_until_ms);
    int64_t elapsed = std::max<int64_t>(l.billed_ms, until - l.started_ms);
    // Never bill beyond what the renter has: the hold plus what it can add.
    // Summed in 128 bits and saturated: a plain int64 sum overflows for a
    // very large balance and would end the lease as if the renter were broke.
    __extension__ using Wide = Int128;
    Wide wide_budget = static_cast<Wide>(l.charged) + l.held + std::max<Micros>(0, available);
    Micros budget = wide_budget > INT64_MAX ? INT64_MAX : static_cast<Micros>(wide_budget);
    int64_t affordable = std::max<int64_t>(l.billed_ms, MaxElapsedFor(l.price_per_hour, budget));
    if (elapsed > affordable) {
      elapsed = affordable;
      end = true;
      reason = EndReason::kInsufficientFunds;
    }
    auto charged = AccruedCharge(l.price_per_hour, elapsed);
    if (!charged) return Internal("charge overflow on lease " + std::to_string(l.id));
    auto fee = FeeOf(*charged, l.fee_bps);
    if (!fee) return Internal("fee overflow on lease " + std::to_string(l.id));
    Micros delta = *charged - l.charged;
    Micros fee_delta = *fee - l.fee;
    if (delta > 0) {
      if (delta > l.held) {  // a late tick: hold the shortfall first
        Micros extra = delta - l.held;
        out.transfers.push_back(Make(l, Tid(l, seq, "cover"), user, escrow, extra, ledger::TransferKind::kHold,
                                     o.now_ms, "hold"));
        l.held += extra;
        available -= extra;
      }
      out.transfers.push_back(Make(l, Tid(l, seq, "release"), user, escrow, delta,
                                   ledger::TransferKind::kRelease, o.now_ms, "charge"));
      l.held -= delta;
      if (delta - fee_delta > 0)
        out.transfers.push_back(Make(l, Tid(l, seq, "earn"), user, ledger::EarningsAccount(l.provider),
                                     delta - fee_delta, ledger::TransferKind::kPosted, o.now_ms, "charge"));
      if (fee_delta > 0)
        out.transfers.push_back(Make(l, Tid(l, seq, "fee"), user, std::string(ledger::kFee), fee_delta,
                                     ledger::TransferKind::kPosted, o.now_ms, "fee"));
    }
    l.billed_ms = elapsed;
    l.charged = *charged;
    l.fee = *fee;
    if (!end) {
      // Top the hold up towards 10 minutes of running.
      Micros target = AccruedCharge(l.price_per_hour, kHoldMs).value_or(0);
      Micros topup = std::min(std::max<Micros>(0, target - l.held), std::max<Micros>(0, available));
      if (topup > 0) {
        out.transfers.push_back(Make(l, Tid(l, seq, "topup"), user, escrow, topup, ledger::TransferKind::kHold,
                                     o.now_ms, "hold"));
        l.held += topup;
        available -= topup;
      }
      Micros next_tick = AccruedCharge(l.price_per_hour, o.tick_ms).value_or(INT64_MAX);
      if (l.held < next_tick) {
        end = true;
        reason = EndReason::kInsufficientFunds;
      }
    }
  }

  if (end) {
    if (l.held > 0)
      out.transfers.push_back(Make(l, Tid(l, seq, "refund"), user, escrow, l.held, ledger::TransferKind::kRelease,
                                   o.now_ms, "refund"));
    l.held = 0;
    l.state = LeaseState::kEnded;
    l.end_reason = reason == EndReason::kNone ? EndReason::kRenterStopped : reason;
    l.ended_ms = o.now_ms;
  }
  return out;
}

}  // namespace grid::market
