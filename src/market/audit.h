// Lease audit: checks every lease against the billing rules and its own
// ledger transfers (GUIDE.md §3). Pure; the caller streams the transfers.
//
//  - escrow.credits_pending == Σ held of active leases; every held >= 0;
//    ended leases hold nothing
//  - charged == AccruedCharge(price_per_hour, billed_ms),
//    fee == FeeOf(charged, fee_bps)
//  - per lease, posted transfers to the provider's earnings == charged - fee,
//    to the fee account == fee (so together == charged)
//  - per lease, its holds minus its releases == held
//  - no transfer names a lease that does not exist
//  - no GPU index of a machine is in two active leases
#pragma once

#include <vector>

#include "ledger/audit.h"
#include "market/types.h"

namespace grid::market {

using ledger::AuditReport;

// Only transfers with lease_id != 0 are looked at; passing the whole ledger
// history is fine.
AuditReport AuditLeases(const std::vector<Lease>& leases, const ledger::Account& escrow,
                        const ledger::TransferStream& for_each_transfer);

AuditReport AuditLeases(const std::vector<Lease>& leases, const ledger::Account& escrow,
                        const std::vector<ledger::Transfer>& transfers);

}  // namespace grid::market
