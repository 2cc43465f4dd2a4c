// Leases paid by payment channel (issue 6, docs/channels.md): the voucher
// schedule both sides follow and the checks a provider's agent applies, so
// that neither side is owed more than one interval at any time.
//
// The schedule. Time 0 is when the lease starts running; interval k
// (k = 0, 1, …) is [k·I, (k+1)·I). At the start of interval k the renter's
// side signs the voucher for k: the cumulative amount that pays through the
// END of k, AccruedCharge(price, min((k+1)·I, length)) — the ledger's own
// rounding rule (floor(price × ms / 3,600,000)), so a channel lease costs to
// the micro-dollar what a custodial lease of the same length costs. The
// renter is one interval ahead; the provider holds a signed claim on
// everything the workload has used so far.
//
// The agent's side:
// - CheckVoucherAmount: an amount only grows, equals the schedule's amount
//   for some interval no further ahead than the next one (a voucher may come
//   up to one interval early, for clock skew: it then pays through at most
//   two intervals past now), stays at or below
//   deposit − margin, and the channel's expiry is far enough away that the
//   voucher can still be redeemed (expiry − expiry_margin after the
//   interval it pays for).
// - MustStop: when the best voucher no longer covers now − grace (the
//   renter stopped signing), the workload stops: the provider's loss is at
//   most `grace` of running time.
// - ShouldRedeem: redeem once the unredeemed amount reaches the threshold,
//   and always before the channel's expiry − expiry_margin.
// The signature is checked separately (crypto::VerifyVoucher), against the
// channel's signer as the contract holds it.
//
// Pure: no I/O, no clock (now comes in); thread-safe.
#pragma once

#include <cstdint>

#include "core/clock.h"
#include "core/money.h"
#include "core/status.h"
#include "market/types.h"

namespace grid::market {

inline constexpr int64_t kDefaultVoucherIntervalMs = 60'000;

struct ChannelTerms {
  Micros price_per_hour = 0;
  int64_t interval_ms = kDefaultVoucherIntervalMs;
  UnixMs start_ms = 0;  // when the lease started running
  // The lease's length if it has an end date (billing stops there), else 0.
  int64_t length_ms = 0;
  Micros deposit = 0;  // the channel's deposit, as the contract holds it
  // Vouchers stay at or below deposit − margin, so a top-up can be asked for
  // before the deposit runs out.
  Micros margin = 0;
  UnixMs channel_expiry_ms = 0;  // from then on the renter may refund
  // A voucher must be redeemable this long before the expiry.
  int64_t expiry_margin_ms = 0;
  // Running time tolerated past what the vouchers pay for.
  int64_t grace_ms = 0;
};

// The terms of a channel-paid lease, as the broker stored them and every
// party's lease view carries them (start_ms is the lease's started_ms: 0
// while pending).
ChannelTerms TermsOf(const Lease& lease);

// The margin, grace and expiry margin the broker gives a channel lease: the
// margin is one interval of the lease (so a top-up can be asked for before
// the deposit runs dry), the grace one interval (a voucher more than one
// interval late stops the workload), the expiry margin 5 minutes.
inline constexpr int64_t kChannelExpiryMarginMs = 5 * 60'000;
Result<Micros> ChannelMargin(Micros price_per_hour, int64_t interval_ms);

// InvalidArgument naming the first bad term (non-positive price or interval,
// negative margin, grace or length, margin not below the deposit).
Status ValidateTerms(const ChannelTerms& t);

// The cumulative amount of interval k's voucher (k >= 0).
Result<Micros> VoucherAmount(const ChannelTerms& t, int64_t k);

// The interval `now` falls in (0 before the start): the voucher the renter
// owes at `now`.
int64_t DueIndex(const ChannelTerms& t, UnixMs now_ms);

// The deposit a channel needs to carry a lease for `hold_ms` of running
// time: that much of it, plus the margin.
Result<Micros> DepositFor(Micros price_per_hour, int64_t hold_ms, Micros margin);

// The agent's check of a voucher's amount (see the top comment). `accepted`
// is the best amount accepted so far (0 for none). Returns the interval the
// voucher pays through; an amount equal to `accepted` is Conflict "already
// accepted" (a duplicate delivery: nothing to store). Conflict also when the
// channel expires too soon for it.
Result<int64_t> CheckVoucherAmount(const ChannelTerms& t, Micros accepted, Micros amount, UnixMs now_ms);

// The moment the vouchers accepted so far pay through: start + the longest
// running time AccruedCharge(price, ·) keeps within `accepted` (capped at
// the lease's length).
UnixMs PaidThrough(const ChannelTerms& t, Micros accepted);

// Whether the workload must stop now: it has run `grace` past what the
// vouchers pay for.
bool MustStop(const ChannelTerms& t, Micros accepted, UnixMs now_ms);

// Whether the agent should redeem the best voucher now: the unredeemed part
// reached `threshold`, or the channel's expiry − expiry_margin has come.
bool ShouldRedeem(const ChannelTerms& t, Micros accepted, Micros redeemed, Micros threshold, UnixMs now_ms);

}  // namespace grid::market
