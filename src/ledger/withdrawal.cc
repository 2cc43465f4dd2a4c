#include "ledger/withdrawal.h"

#include "ledger/ledger.h"

namespace grid::ledger {

std::string_view WithdrawalStateName(WithdrawalState s) {
  switch (s) {
    case WithdrawalState::kRequested: return "requested";
    case WithdrawalState::kSigned: return "signed";
    case WithdrawalState::kSent: return "sent";
    case WithdrawalState::kConfirmed: return "confirmed";
    case WithdrawalState::kFailed: return "failed";
  }
  return "?";
}

bool ParseWithdrawalState(std::string_view name, WithdrawalState* out) {
  for (auto s : {WithdrawalState::kRequested, WithdrawalState::kSigned, WithdrawalState::kSent,
                 WithdrawalState::kConfirmed, WithdrawalState::kFailed}) {
    if (WithdrawalStateName(s) == name) {
      *out = s;
      return true;
    }
  }
  return false;
}

namespace {
std::string Prefix(const Withdrawal& w) { return "withdraw:" + std::to_string(w.id) + ":"; }

// The (account, amount) parts of a withdrawal: earnings first.
std::vector<std::pair<std::string, Micros>> Parts(const Withdrawal& w) {
  std::vector<std::pair<std::string, Micros>> parts;
  if (w.from_earned > 0) parts.emplace_back(EarningsAccount(w.address), w.from_earned);
  if (w.from_available > 0) parts.emplace_back(UserAccount(w.address), w.from_available);
  return parts;
}
}  // namespace

std::vector<Transfer> WithdrawalHolds(const Withdrawal& w) {
  std::vector<Transfer> out;
  for (const auto& [account, amount] : Parts(w)) {
    std::string which = account.starts_with("earnings:") ? "earned" : "available";
    out.push_back(Transfer{Prefix(w) + "hold:" + which, account, std::string(kTreasury), amount, TransferKind::kHold, 0,
                           0, "withdrawal hold"});
  }
  return out;
}

std::vector<Transfer> WithdrawalEnd(const Withdrawal& w, bool confirmed) {
  std::vector<Transfer> out;
  for (const auto& [account, amount] : Parts(w)) {
    std::string which = account.starts_with("earnings:") ? "earned" : "available";
    out.push_back(Transfer{Prefix(w) + "release:" + which, account, std::string(kTreasury), amount,
                           TransferKind::kRelease, 0, 0, confirmed ? "withdrawal sent" : "withdrawal failed: refund"});
    if (confirmed)
      out.push_back(Transfer{Prefix(w) + "post:" + which, account, std::string(kTreasury), amount,
                             TransferKind::kPosted, 0, 0, "withdrawal"});
  }
  return out;
}

}  // namespace grid::ledger
