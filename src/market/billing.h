// Billing: how a lease's escrow hold and charges become ledger transfers.
// Pure functions of a lease, the renter's available balance and `now`.
//
// The rules (GUIDE.md §3, issue 2):
//  - charged(t) = floor(price_per_hour * billed_ms / 3,600,000), cumulative;
//    the fee is FeeOf(charged) the same cumulative way; the provider earns
//    charged - fee. So charged == earned + fee for every lease, always.
//  - A lease starts only if the renter can hold kHoldMs (10 minutes) of it.
//  - Each settlement posts what accrued since the last one out of the hold and
//    tops the hold back up towards kHoldMs from the available balance. When
//    the money left cannot cover the next settlement interval, the lease ends
//    with insufficient_funds, billed exactly to its end; if what accrued is
//    more than the renter has (a late tick), billing stops at the last
//    millisecond the money covers — never beyond what the renter had.
#pragma once

#include <vector>

#include "core/status.h"
#include "core/clock.h"
#include "ledger/ledger.h"
#include "market/types.h"

namespace grid::market {

inline constexpr int64_t kHoldMs = 10 * 60 * 1000;

// The longest running time (ms) whose AccruedCharge at `price` stays within
// `budget`; INT64_MAX for a price of 0.
int64_t MaxElapsedFor(Micros price, Micros budget);

// The hold a lease at this price needs to start (10 minutes of it).
Result<Micros> InitialHold(Micros price_per_hour);

// Transfers placing a new lease's initial hold.
std::vector<ledger::Transfer> HoldTransfers(const Lease& lease, Micros amount);

struct SettleOptions {
  UnixMs now_ms = 0;
  Micros renter_available = 0;   // the renter's available balance before this
  int64_t tick_ms = 60'000;      // the settlement interval
  bool end = false;              // end the lease now (with end_reason)
  EndReason end_reason = EndReason::kNone;
  UnixMs bill_until_ms = 0;      // if > 0, bill no running time after this
                                 // (host_lost: the last heartbeat; end_date)
};

struct Settlement {
  Lease lease;                               // the lease after settling
  std::vector<ledger::Transfer> transfers;   // to apply atomically
};

// Settles a lease: posts what accrued, tops up or releases the hold, ends it
// if asked or if the money ran out. A pending lease that ends is not billed.
// An ended lease is an error (kConflict).
//
// A lease paid by payment channel (lease.channel) moves no money here: its
// billed time and charge advance the same way, but never past what the best
// accepted voucher pays for (market::PaidThrough), and it ends with
// insufficient_funds once that voucher no longer covers now − grace
// (market::MustStop: the renter stopped signing). No transfers.
Result<Settlement> Settle(const Lease& lease, const SettleOptions& opts);

// The ledger's record of a voucher accepted for a channel lease: the
// increase over the last accepted amount, posted from the renter's channel
// account to the provider's (ledger.h), id "lease:<id>:voucher:<amount>".
// Nothing when the amount does not grow.
std::vector<ledger::Transfer> VoucherTransfers(const Lease& lease, Micros amount, UnixMs now_ms);

// Running time the lease has to its credit at `now` (0 unless running).
int64_t RunningMs(const Lease& lease, UnixMs now_ms);

// The moment the money already held for a running lease runs out: what the
// agent may keep the workload running to if the broker becomes unreachable.
// 0 for a lease that is not running. For a channel lease: what the best
// voucher pays through, plus the grace.
UnixMs PaidUntil(const Lease& lease);

}  // namespace grid::market
