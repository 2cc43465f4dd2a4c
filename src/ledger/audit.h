// Ledger audit: re-derives every balance from the transfers and checks the
// conservation rules of GUIDE.md §3. Pure: the caller streams the transfers
// (from the store, in any order) and reads the report.
//
//  - every stored account's four balances equal the sums of its transfers
//  - no transfer touches an account missing from the stored accounts
//  - Σ debits_posted == Σ credits_posted, Σ debits_pending == Σ credits_pending
//  - no customer account (IsCustomerAccount) has a negative available balance
//  - every transfer amount is positive
//
// Each check adds a human line to `checks`; each violation a line to
// `failures` (at most kMaxFailureLines per kind, then a summary line).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ledger/ledger.h"

namespace grid::ledger {

struct AuditReport {
  std::vector<std::string> checks;    // what was checked, one line each
  std::vector<std::string> failures;  // each violation found
  bool ok() const { return failures.empty(); }
  void Merge(const AuditReport& other);
};

inline constexpr size_t kMaxFailureLines = 20;

// Calls its argument once per transfer.
using TransferStream = std::function<void(const std::function<void(const Transfer&)>&)>;

AuditReport AuditLedger(const std::vector<Account>& stored_accounts, const TransferStream& for_each_transfer);

// Convenience overload for transfers held in memory.
AuditReport AuditLedger(const std::vector<Account>& stored_accounts, const std::vector<Transfer>& transfers);

}  // namespace grid::ledger
