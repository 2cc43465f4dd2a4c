// A withdrawal: money leaving Gridmarket as an ERC-20 transfer from the
// treasury to an address the customer names (issue 4). Pure data and rules:
// no I/O, no clock.
//
// Life of a withdrawal, and the ledger transfers of each step:
//   requested  the amount leaves the customer's spendable money at once: a
//              hold from earnings:<addr> (what it earned first) and/or
//              user:<addr> to the treasury account, "withdraw:<id>:hold:*".
//   signed     the broker signed the transfer (nonce, fees) and stored the
//              raw transaction BEFORE sending it, so a crash between signing
//              and sending, or sending and recording, rebroadcasts the same
//              transaction instead of signing a second one.
//   sent       a node accepted it (or already knew it).
//   confirmed  its receipt succeeded and is K blocks deep: the hold is
//              released and the amount posted to the treasury account
//              ("withdraw:<id>:post:*"), the money has left.
//   failed     it reverted (or could not be sent at all): the hold is
//              released, the money is spendable again.
// A transaction that does not confirm is re-signed with the same nonce and
// higher fees; every hash tried is kept, since any of them may be mined.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/money.h"

namespace grid::ledger {

// The treasury: the broker's on-chain token balance. Deposits are posted
// treasury -> user:<addr>; withdrawals user:<addr> (or earnings:) -> treasury.
// Its debits_posted - credits_posted is what the chain should hold.
inline constexpr std::string_view kTreasury = "treasury";

enum class WithdrawalState { kRequested = 0, kSigned = 1, kSent = 2, kConfirmed = 3, kFailed = 4 };
std::string_view WithdrawalStateName(WithdrawalState s);  // "requested" "signed" "sent" "confirmed" "failed"
bool ParseWithdrawalState(std::string_view name, WithdrawalState* out);

struct Withdrawal {
  int64_t id = 0;
  std::string address;       // the customer (lowercase 0x address)
  std::string to;            // where the tokens go (lowercase 0x address)
  Micros amount = 0;         // token base units = micro-USD (6 decimals)
  Micros from_earned = 0;    // the part held from earnings:<address>
  Micros from_available = 0; // the part held from user:<address>
  WithdrawalState state = WithdrawalState::kRequested;
  uint64_t nonce = 0;        // the treasury's nonce, fixed at the first signature
  std::string raw_tx;        // the latest signed transaction, 0x hex
  std::vector<std::string> tx_hashes;  // every signed version, oldest first
  std::string mined_tx;      // the hash that was mined ("" until then)
  uint64_t mined_block = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t sent_ms = 0;       // when the latest version was (re)sent
  std::string error;         // why it failed
  bool operator==(const Withdrawal&) const = default;

  bool open() const { return state != WithdrawalState::kConfirmed && state != WithdrawalState::kFailed; }
};

// The transfers that take `amount` out of spendable money for withdrawal
// `id`: earned money first, then available. Empty if amount <= 0.
std::vector<struct Transfer> WithdrawalHolds(const Withdrawal& w);
// The transfers of its end: release the holds, and if it confirmed, post the
// amount to the treasury.
std::vector<struct Transfer> WithdrawalEnd(const Withdrawal& w, bool confirmed);

}  // namespace grid::ledger
