#include "ledger/audit.h"

#include <map>

namespace grid::ledger {
namespace {

using Wide = Int128;
using UWide = UInt128;

// Sums in 128 bits so a corrupted store cannot overflow the audit itself.
struct Sums {
  Wide debits_posted = 0, credits_posted = 0, debits_pending = 0, credits_pending = 0;
};

std::string I128(Wide v) {
  if (v >= INT64_MIN && v <= INT64_MAX) return FormatMoney(static_cast<Micros>(v));
  bool neg = v < 0;
  UWide m = neg ? static_cast<UWide>(-v) : static_cast<UWide>(v);
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(m % 10)));
    m /= 10;
  } while (m);
  while (digits.size() < 7) digits.insert(digits.begin(), '0');
  digits.insert(digits.end() - 6, '.');
  return (neg ? "-" : "") + digits;
}

// Adds failure lines, capped per kind.
class Failures {
 public:
  explicit Failures(AuditReport& r) : r_(r) {}
  void Add(std::string line) {
    if (++count_ <= kMaxFailureLines) r_.failures.push_back(std::move(line));
  }
  void Finish(const std::string& kind) {
    if (count_ > kMaxFailureLines)
      r_.failures.push_back("… and " + std::to_string(count_ - kMaxFailureLines) + " more " + kind);
    count_ = 0;
  }
 private:
  AuditReport& r_;
  size_t count_ = 0;
};

}  // namespace

void AuditReport::Merge(const AuditReport& other) {
  checks.insert(checks.end(), other.checks.begin(), other.checks.end());
  failures.insert(failures.end(), other.failures.begin(), other.failures.end());
}

AuditReport AuditLedger(const std::vector<Account>& stored_accounts, const TransferStream& for_each_transfer) {
  AuditReport report;
  Failures fail(report);
  std::map<std::string, Sums, std::less<>> sums;
  std::map<std::string, size_t, std::less<>> unknown;  // account id -> transfers touching it
  for (const Account& a : stored_accounts) sums.try_emplace(a.id);
  size_t n_transfers = 0;
  size_t bad_amounts = 0;

  for_each_transfer([&](const Transfer& t) {
    ++n_transfers;
    if (t.amount <= 0) {
      ++bad_amounts;
      fail.Add("transfer " + t.id + ": amount " + FormatMoney(t.amount) + " is not positive");
    }
    for (const std::string* id : {&t.debit, &t.credit}) {
      if (!sums.contains(*id)) ++unknown[*id];
    }
    Sums& d = sums[t.debit];
    Sums& c = sums[t.credit];
    switch (t.kind) {
      case TransferKind::kPosted:
        d.debits_posted += t.amount;
        c.credits_posted += t.amount;
        break;
      case TransferKind::kHold:
        d.debits_pending += t.amount;
        c.credits_pending += t.amount;
        break;
      case TransferKind::kRelease:
        d.debits_pending -= t.amount;
        c.credits_pending -= t.amount;
        break;
      default:
        fail.Add("transfer " + t.id + ": unknown kind " + std::to_string(static_cast<int>(t.kind)));
    }
  });
  fail.Finish("transfers with bad amounts or kinds");
  report.checks.push_back(std::to_string(n_transfers) + " transfers: amounts positive" +
                          (bad_amounts ? " (" + std::to_string(bad_amounts) + " not)" : ""));

  // Balances equal the sums of their transfers.
  size_t mismatched = 0;
  for (const Account& a : stored_accounts) {
    const Sums& s = sums.at(a.id);
    auto cmp = [&](const char* field, Micros stored, Wide derived) {
      if (stored != derived) {
        fail.Add("account " + a.id + ": " + field + " is " + FormatMoney(stored) + " but its transfers sum to " +
                 I128(derived));
        return false;
      }
      return true;
    };
    bool ok = cmp("debits_posted", a.debits_posted, s.debits_posted);
    ok = cmp("credits_posted", a.credits_posted, s.credits_posted) && ok;
    ok = cmp("debits_pending", a.debits_pending, s.debits_pending) && ok;
    ok = cmp("credits_pending", a.credits_pending, s.credits_pending) && ok;
    if (!ok) ++mismatched;
  }
  fail.Finish("balance mismatches");
  report.checks.push_back(std::to_string(stored_accounts.size()) + " accounts: balances equal the sum of their " +
                          std::to_string(n_transfers) + " transfers" +
                          (mismatched ? " (" + std::to_string(mismatched) + " do not)" : ""));

  // Every transfer names stored accounts.
  for (const auto& [id, n] : unknown)
    fail.Add("account " + (id.empty() ? std::string("\"\"") : id) + " is touched by " + std::to_string(n) +
             " transfer(s) but is not stored");
  fail.Finish("unknown accounts");
  report.checks.push_back("every transfer names a stored account" +
                          (unknown.empty() ? std::string() : " (" + std::to_string(unknown.size()) + " do not)"));

  // Conservation, over the stored balances and over the transfers.
  Sums total;
  for (const Account& a : stored_accounts) {
    total.debits_posted += a.debits_posted;
    total.credits_posted += a.credits_posted;
    total.debits_pending += a.debits_pending;
    total.credits_pending += a.credits_pending;
  }
  if (total.debits_posted != total.credits_posted)
    fail.Add("posted: debits sum to " + I128(total.debits_posted) + " but credits to " + I128(total.credits_posted));
  if (total.debits_pending != total.credits_pending)
    fail.Add("pending: debits sum to " + I128(total.debits_pending) + " but credits to " +
             I128(total.credits_pending));
  fail.Finish("conservation failures");
  report.checks.push_back("conservation: posted debits " + I128(total.debits_posted) + " == credits " +
                          I128(total.credits_posted) + ", pending debits " + I128(total.debits_pending) +
                          " == credits " + I128(total.credits_pending));

  // Customer money never negative; pending never negative anywhere.
  size_t customers = 0;
  for (const Account& a : stored_accounts) {
    if (a.debits_pending < 0 || a.credits_pending < 0)
      fail.Add("account " + a.id + ": negative pending balance (debits " + FormatMoney(a.debits_pending) +
               ", credits " + FormatMoney(a.credits_pending) + ")");
    if (!IsCustomerAccount(a.id)) continue;
    ++customers;
    Wide avail = static_cast<Wide>(a.credits_posted) - a.debits_posted - a.debits_pending;
    if (avail < 0) fail.Add("customer account " + a.id + ": available is negative (" + I128(avail) + ")");
  }
  fail.Finish("negative balances");
  report.checks.push_back(std::to_string(customers) + " customer accounts: available never negative");
  return report;
}

AuditReport AuditLedger(const std::vector<Account>& stored_accounts, const std::vector<Transfer>& transfers) {
  return AuditLedger(stored_accounts, [&](const std::function<void(const Transfer&)>& visit) {
    for (const Transfer& t : transfers) visit(t);
  });
}

}  // namespace grid::ledger
