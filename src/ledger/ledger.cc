#include "ledger/ledger.h"

#include <cstdio>
#include <cstdlib>

namespace grid::ledger {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Applies one transfer to a working set of accounts. Shared by Check (on a
// copy) and Apply, so the two can never disagree.
Status ApplyOne(std::map<std::string, Account, std::less<>>& accounts, const Transfer& t) {
  if (t.amount <= 0) return InvalidArgument("transfer " + t.id + ": amount must be positive");
  if (t.debit == t.credit) return InvalidArgument("transfer " + t.id + ": debit and credit are the same account");
  if (t.debit.empty() || t.credit.empty()) return InvalidArgument("transfer " + t.id + ": missing account");
  Account& d = accounts.try_emplace(t.debit, Account{t.debit}).first->second;
  Account& c = accounts.try_emplace(t.credit, Account{t.credit}).first->second;
  auto add = [&](Micros& field, Micros delta) -> bool {
    auto r = CheckedAdd(field, delta);
    if (!r) return false;
    field = *r;
    return true;
  };
  switch (t.kind) {
    case TransferKind::kPosted:
      if (!add(d.debits_posted, t.amount) || !add(c.credits_posted, t.amount))
        return Internal("transfer " + t.id + ": balance overflow");
      break;
    case TransferKind::kHold:
      if (!add(d.debits_pending, t.amount) || !add(c.credits_pending, t.amount))
        return Internal("transfer " + t.id + ": balance overflow");
      break;
    case TransferKind::kRelease:
      if (d.debits_pending < t.amount || c.credits_pending < t.amount)
        return Status(Code::kInsufficientFunds, "transfer " + t.id + ": release exceeds what is held");
      d.debits_pending -= t.amount;
      c.credits_pending -= t.amount;
      break;
    default:
      return InvalidArgument("transfer " + t.id + ": unknown kind");
  }
  if (IsCustomerAccount(d.id)) {
    // available = credits_posted - debits_posted - debits_pending must stay >= 0.
    Int128 avail = static_cast<Int128>(d.credits_posted) - d.debits_posted - d.debits_pending;
    if (avail < 0)
      return Status(Code::kInsufficientFunds, "insufficient funds in " + d.id + " for " + FormatMoney(t.amount));
  }
  return Status::Ok();
}

}  // namespace

std::string UserAccount(std::string_view address) { return "user:" + Lower(address); }
std::string EarningsAccount(std::string_view address) { return "earnings:" + Lower(address); }
std::string ChannelAccount(std::string_view address) { return "channel:" + Lower(address); }

bool IsCustomerAccount(std::string_view id) {
  return id.starts_with("user:") || id.starts_with("earnings:") || id == kFee;
}

std::string_view TransferKindName(TransferKind kind) {
  switch (kind) {
    case TransferKind::kPosted: return "posted";
    case TransferKind::kHold: return "hold";
    case TransferKind::kRelease: return "release";
  }
  return "unknown";
}

bool ParseTransferKind(std::string_view name, TransferKind* out) {
  for (auto k : {TransferKind::kPosted, TransferKind::kHold, TransferKind::kRelease}) {
    if (TransferKindName(k) == name) {
      *out = k;
      return true;
    }
  }
  return false;
}

Status Ledger::Check(const std::vector<Transfer>& batch) const {
  std::map<std::string, Account, std::less<>> touched;
  for (const Transfer& t : batch) {
    for (const std::string& id : {t.debit, t.credit}) {
      if (!touched.contains(id)) touched.emplace(id, Get(id));
    }
    GRID_RETURN_IF_ERROR(ApplyOne(touched, t));
  }
  return Status::Ok();
}

std::vector<Account> Ledger::Preview(const std::vector<Transfer>& batch) const {
  std::map<std::string, Account, std::less<>> touched;
  for (const Transfer& t : batch) {
    for (const std::string& id : {t.debit, t.credit}) {
      if (!touched.contains(id)) touched.emplace(id, Get(id));
    }
    Status s = ApplyOne(touched, t);
    if (!s.ok()) {
      std::fprintf(stderr, "ledger: Preview of an unchecked batch: %s\n", s.ToString().c_str());
      std::abort();
    }
  }
  std::vector<Account> out;
  out.reserve(touched.size());
  for (auto& [id, a] : touched) out.push_back(a);
  return out;
}

void Ledger::Apply(const std::vector<Transfer>& batch) {
  for (Account& a : Preview(batch)) accounts_[a.id] = std::move(a);
}

void Ledger::Restore(const Account& account) { accounts_[account.id] = account; }

const Account* Ledger::Find(std::string_view id) const {
  auto it = accounts_.find(id);
  return it == accounts_.end() ? nullptr : &it->second;
}

Account Ledger::Get(std::string_view id) const {
  const Account* a = Find(id);
  return a ? *a : Account{std::string(id)};
}

Balance Ledger::BalanceOf(std::string_view address) const {
  Account user = Get(UserAccount(address));
  Account earnings = Get(EarningsAccount(address));
  // Holds on either account (a lease's escrow, a withdrawal on its way) are
  // not spendable.
  return Balance{user.available(), user.debits_pending + earnings.debits_pending, earnings.available()};
}

}  // namespace grid::ledger
