// The broker's side of on-chain money (issue 4): crediting deposits and the
// ledger side of withdrawals. The chain itself (watching logs, signing and
// sending transactions) is the Treasury service's (src/treasury/); these
// commands keep the ledger, the withdrawal records and the watcher's cursor
// consistent, each in one store transaction.
#include <algorithm>
#include <unordered_set>

#include "broker/broker.h"

namespace grid::broker {

namespace {
constexpr int64_t kDayMs = 24 * 3600'000LL;

bool IsHexAddress(const std::string& a) {
  return a.size() == 42 && a[0] == '0' && a[1] == 'x' &&
         a.find_first_not_of("0123456789abcdef", 2) == std::string::npos;
}
}  // namespace

Result<int> Broker::CreditDeposits(const std::vector<Deposit>& deposits,
                                   const std::vector<std::pair<std::string, std::string>>& meta) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  UnixMs now = clock_->NowMs();
  store::ChangeSet cs;
  cs.meta = meta;
  std::unordered_set<std::string> queued;
  for (const Deposit& d : deposits) {
    if (!IsHexAddress(d.from) || d.amount <= 0 || d.tx_hash.size() != 66)
      return Internal("deposit " + d.tx_hash + ":" + std::to_string(d.log_index) + " is malformed");
    std::string id = "deposit:" + d.tx_hash + ":" + std::to_string(d.log_index);
    // Exactly once: the cursor normally keeps a log from coming back; this
    // also covers a watcher that re-reads a range after a crash.
    GRID_ASSIGN_OR_RETURN(std::optional<ledger::Transfer> existing, store_->FindTransfer(id));
    if (existing || !queued.insert(id).second) continue;
    cs.transfers.push_back(ledger::Transfer{id, std::string(ledger::kTreasury), ledger::UserAccount(d.from), d.amount,
                                            ledger::TransferKind::kPosted, 0, now,
                                            "deposit (block " + std::to_string(d.block_number) + ")"});
  }
  int credited = static_cast<int>(cs.transfers.size());
  if (cs.empty()) return 0;
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return credited;
}

std::optional<std::string> Broker::ChainMeta(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = chain_meta_.find(key);
  if (it == chain_meta_.end()) return std::nullopt;
  return it->second;
}

Status Broker::SaveChainMeta(const std::vector<std::pair<std::string, std::string>>& meta) {
  for (const auto& [k, v] : meta)
    if (!k.starts_with("chain:")) return Internal("chain meta key " + k + " must start with chain:");
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  store::ChangeSet cs;
  cs.meta = meta;
  return CommitLocked(std::move(cs));
}

Result<ledger::Withdrawal> Broker::RequestWithdrawal(const std::string& addr, Micros amount, const std::string& to) {
  if (!options_.chain_enabled)
    return Status(Code::kConflict, "this broker has no chain to withdraw to (started without --chain-rpc)");
  if (amount < options_.withdraw_min)
    return InvalidArgument("amount: the minimum withdrawal is " + FormatMoney(options_.withdraw_min));
  std::string dest = to.empty() ? addr : to;
  if (!IsHexAddress(dest)) return InvalidArgument("to: expected a 0x address of 40 hex digits");
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  UnixMs now = clock_->NowMs();
  Micros today = 0;
  for (const auto& [id, w] : withdrawals_)
    if (w.address == addr && w.state != ledger::WithdrawalState::kFailed && w.created_ms > now - kDayMs)
      today += w.amount;
  if (today + amount > options_.withdraw_daily_limit)
    return InvalidArgument("amount: over the daily limit of " + FormatMoney(options_.withdraw_daily_limit) + " (" +
                           FormatMoney(today) + " withdrawn in the last 24 h)");
  ledger::Balance b = ledger_.BalanceOf(addr);
  if (amount > b.earned + b.available)
    return Status(Code::kInsufficientFunds, "amount: " + FormatMoney(amount) + " is more than you can withdraw (" +
                                                FormatMoney(b.earned) + " earned + " + FormatMoney(b.available) +
                                                " available)");
  ledger::Withdrawal w;
  w.id = withdrawals_.empty() ? 1 : withdrawals_.rbegin()->first + 1;
  w.address = addr;
  w.to = dest;
  w.amount = amount;
  w.from_earned = std::min(amount, b.earned);
  w.from_available = amount - w.from_earned;
  w.created_ms = w.updated_ms = now;
  store::ChangeSet cs;
  cs.transfers = ledger::WithdrawalHolds(w);
  for (auto& t : cs.transfers) t.at_ms = now;
  cs.withdrawals.push_back(w);
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return withdrawals_.at(w.id);
}

std::vector<ledger::Withdrawal> Broker::ListWithdrawals(const std::string& addr) const {
  std::lock_guard lock(mu_);
  std::vector<ledger::Withdrawal> out;
  for (const auto& [id, w] : withdrawals_)
    if (w.address == addr) out.push_back(w);
  return out;
}

std::vector<ledger::Account> Broker::LedgerAccounts() const {
  std::lock_guard lock(mu_);
  std::vector<ledger::Account> out;
  for (const auto& [id, a] : ledger_.accounts()) out.push_back(a);
  return out;
}

std::vector<ledger::Withdrawal> Broker::OpenWithdrawals() const {
  std::lock_guard lock(mu_);
  std::vector<ledger::Withdrawal> out;
  for (const auto& [id, w] : withdrawals_)
    if (w.open()) out.push_back(w);
  return out;
}

Status Broker::SaveWithdrawal(const ledger::Withdrawal& w) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  auto it = withdrawals_.find(w.id);
  if (it == withdrawals_.end()) return NotFound("withdrawal " + std::to_string(w.id) + " not found");
  if (!it->second.open()) return Status(Code::kConflict, "withdrawal " + std::to_string(w.id) + " has ended");
  if (!w.open()) return Internal("SaveWithdrawal cannot end a withdrawal; use EndWithdrawal");
  const ledger::Withdrawal& cur = it->second;
  if (w.amount != cur.amount || w.address != cur.address || w.to != cur.to)
    return Internal("withdrawal " + std::to_string(w.id) + ": amount, owner and destination are fixed");
  // Only ever forward from what is stored: once signed, its nonce is fixed
  // and its transaction hashes only grow (a fee bump adds one). A sender
  // that decided on an older copy (another replica's leader, before a
  // hand-over) is refused here, before it sends anything.
  const bool prefix = w.tx_hashes.size() >= cur.tx_hashes.size() &&
                      std::equal(cur.tx_hashes.begin(), cur.tx_hashes.end(), w.tx_hashes.begin());
  if (w.state < cur.state || (cur.state != ledger::WithdrawalState::kRequested && w.nonce != cur.nonce) || !prefix)
    return Conflict("withdrawal " + std::to_string(w.id) + " changed since it was read (now " +
                    std::string(ledger::WithdrawalStateName(cur.state)) + ", nonce " + std::to_string(cur.nonce) +
                    "); read it again");
  store::ChangeSet cs;
  ledger::Withdrawal next = w;
  next.updated_ms = clock_->NowMs();
  cs.withdrawals.push_back(std::move(next));
  return CommitLocked(std::move(cs));
}

Status Broker::EndWithdrawal(ledger::Withdrawal w, bool confirmed) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  auto it = withdrawals_.find(w.id);
  if (it == withdrawals_.end()) return NotFound("withdrawal " + std::to_string(w.id) + " not found");
  if (!it->second.open()) return Status::Ok();
  const ledger::Withdrawal& cur = it->second;
  if (w.amount != cur.amount || w.from_earned != cur.from_earned || w.from_available != cur.from_available)
    return Internal("withdrawal " + std::to_string(w.id) + ": its amounts are fixed");
  UnixMs now = clock_->NowMs();
  w.state = confirmed ? ledger::WithdrawalState::kConfirmed : ledger::WithdrawalState::kFailed;
  w.updated_ms = now;
  store::ChangeSet cs;
  cs.transfers = ledger::WithdrawalEnd(w, confirmed);
  for (auto& t : cs.transfers) t.at_ms = now;
  cs.withdrawals.push_back(std::move(w));
  return CommitLocked(std::move(cs));
}

}  // namespace grid::broker
