// The double-entry ledger: accounts with posted and pending amounts, in the
// TigerBeetle style (GUIDE.md §3). Pure: no I/O, no clock, no threads.
//
// Every movement of money is a Transfer from a debit account to a credit
// account. An account's balances are the sums of the transfers that touched
// it, so conservation can be checked by re-adding them (see audit.h).
//
//   world            money entering (faucet, later deposits) and leaving
//   user:<addr>      a renter's spendable money; debits_pending = its holds
//   escrow           the other side of every hold (credits_pending)
//   earnings:<addr>  what a provider has earned
//   fee              the operator's take
//   channel:<addr>   leases paid by payment channel (issue 6): each voucher's
//                    increase moves from the renter's channel account to the
//                    provider's. Outside custody, like world: the money is in
//                    the channel contract, never here; the record makes
//                    history and the audit cover both payment modes.
//
// A lease's escrow is pending money: kHold moves amount into pending on both
// sides, kRelease moves it back out. Settlement releases part of a hold and
// posts the same amount to the provider and the operator, in one batch.
//
// Thread safety: none. The broker serialises commands and applies a batch only
// after the store has made it durable.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/money.h"
#include "core/status.h"

namespace grid::ledger {

inline constexpr std::string_view kWorld = "world";
inline constexpr std::string_view kEscrow = "escrow";
inline constexpr std::string_view kFee = "fee";
std::string UserAccount(std::string_view address);      // "user:0xabc…" (lowercase)
std::string EarningsAccount(std::string_view address);  // "earnings:0xabc…"
std::string ChannelAccount(std::string_view address);   // "channel:0xabc…"

// Accounts whose credits must always cover their debits (customer money).
// world and escrow may go "negative" in their own sense; they are the
// counterparties. fee and earnings only ever receive.
bool IsCustomerAccount(std::string_view account_id);

struct Account {
  std::string id;
  Micros debits_posted = 0;
  Micros credits_posted = 0;
  Micros debits_pending = 0;
  Micros credits_pending = 0;

  Micros posted_balance() const { return credits_posted - debits_posted; }
  // What a customer can still spend or hold.
  Micros available() const { return credits_posted - debits_posted - debits_pending; }
  bool operator==(const Account&) const = default;
};

enum class TransferKind {
  kPosted = 0,   // debit.debits_posted += a; credit.credits_posted += a
  kHold = 1,     // debit.debits_pending += a; credit.credits_pending += a
  kRelease = 2,  // debit.debits_pending -= a; credit.credits_pending -= a
};
std::string_view TransferKindName(TransferKind kind);  // "posted" "hold" "release"
bool ParseTransferKind(std::string_view name, TransferKind* out);

struct Transfer {
  std::string id;        // unique, idempotency key ("lease:7:settle:3", "faucet:…")
  std::string debit;     // account id
  std::string credit;    // account id
  Micros amount = 0;     // > 0
  TransferKind kind = TransferKind::kPosted;
  int64_t lease_id = 0;  // 0 when not about a lease
  int64_t at_ms = 0;     // when it was applied (set by the service)
  std::string memo;      // "faucet", "hold", "charge", "fee", "refund", …
  bool operator==(const Transfer&) const = default;
};

// Balances of one address as the API shows them.
struct Balance {
  Micros available = 0;  // user:<addr>, spendable
  Micros held = 0;       // held on user: and earnings: (leases' escrow, withdrawals under way)
  Micros earned = 0;     // earnings:<addr>, withdrawable
};

class Ledger {
 public:
  // Validates a batch against current balances as if applied in order, all or
  // nothing. Errors: kInvalidArgument (non-positive amount, same account,
  // unknown kind), kInsufficientFunds (a customer account would overdraw, or a
  // release exceeds what is pending), kInternal (overflow).
  Status Check(const std::vector<Transfer>& batch) const;

  // Applies a batch that Check() accepted. Asserts (aborts) otherwise: applying
  // an unchecked batch is a bug, and money must not be silently wrong.
  void Apply(const std::vector<Transfer>& batch);

  // Restores an account's stored balances (at start-up, from the store).
  void Restore(const Account& account);

  const Account* Find(std::string_view id) const;
  Account Get(std::string_view id) const;  // zero account if absent
  Balance BalanceOf(std::string_view address) const;
  const std::map<std::string, Account, std::less<>>& accounts() const { return accounts_; }

  // The accounts a batch touches, with their balances after applying it (for
  // the store to persist in the same transaction). Requires Check() ok.
  std::vector<Account> Preview(const std::vector<Transfer>& batch) const;

 private:
  std::map<std::string, Account, std::less<>> accounts_;
};

}  // namespace grid::ledger
