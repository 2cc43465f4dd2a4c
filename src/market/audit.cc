#include "market/audit.h"

#include <map>
#include <set>
#include <utility>

namespace grid::market {
namespace {

__extension__ using Wide = Int128;

std::string W(Wide v) {
  if (v >= INT64_MIN && v <= INT64_MAX) return FormatMoney(static_cast<Micros>(v));
  return v < 0 ? "(below -9223372036854.775808)" : "(above 9223372036854.775807)";
}

struct PerLease {
  Wide to_earnings = 0;  // posted to the provider's earnings
  Wide to_fee = 0;       // posted to the fee account
  Wide other_posted = 0; // posted elsewhere (refunds are releases, so none expected)
  Wide vouchers = 0;     // a channel lease's vouchers: channel:<renter> -> channel:<provider>
  Wide held = 0;         // holds minus releases
  size_t transfers = 0;
};

// A lease paid by payment channel (the caller has checked that custody
// posted and held nothing for it): no fee, and its ledger record matches
// its best voucher.
template <typename Fail>
void CheckChannelLease(const Lease& l, const PerLease& p, const std::string& name, Fail& fail) {
  const ChannelPayment& c = *l.channel;
  if (l.fee_bps != 0 || l.fee != 0) fail(name + "paid by channel but has a fee (" + FormatMoney(l.fee) + ")");
  if (p.vouchers != c.voucher)
    fail(name + "voucher transfers add up to " + W(p.vouchers) + " but the best voucher is " + FormatMoney(c.voucher));
  if (static_cast<Wide>(c.voucher) > static_cast<Wide>(c.deposit) - c.margin)
    fail(name + "voucher " + FormatMoney(c.voucher) + " is over the deposit " + FormatMoney(c.deposit) +
         " less the margin " + FormatMoney(c.margin));
  if (l.charged > c.voucher)
    fail(name + "charged " + FormatMoney(l.charged) + " but the vouchers pay only " + FormatMoney(c.voucher));
  if (c.redeemed < 0) fail(name + "redeemed is negative (" + FormatMoney(c.redeemed) + ")");
}

}  // namespace

AuditReport AuditLeases(const std::vector<Lease>& leases, const ledger::Account& escrow,
                        const ledger::TransferStream& for_each_transfer) {
  AuditReport report;
  size_t failures = 0;
  auto fail = [&](std::string line) {
    if (++failures <= ledger::kMaxFailureLines) report.failures.push_back(std::move(line));
  };
  std::map<int64_t, const Lease*> by_id;
  for (const Lease& l : leases) {
    if (!by_id.emplace(l.id, &l).second) fail("lease " + std::to_string(l.id) + " appears twice");
  }
  std::map<int64_t, PerLease> per;
  std::map<int64_t, size_t> orphans;
  size_t n_transfers = 0;
  for_each_transfer([&](const ledger::Transfer& t) {
    if (t.lease_id == 0) return;
    ++n_transfers;
    auto it = by_id.find(t.lease_id);
    if (it == by_id.end()) {
      ++orphans[t.lease_id];
      return;
    }
    const Lease& l = *it->second;
    PerLease& p = per[t.lease_id];
    ++p.transfers;
    switch (t.kind) {
      case ledger::TransferKind::kPosted:
        if (l.channel && t.debit == ledger::ChannelAccount(l.renter) &&
            t.credit == ledger::ChannelAccount(l.provider))
          p.vouchers += t.amount;
        else if (t.credit == ledger::EarningsAccount(l.provider))
          p.to_earnings += t.amount;
        else if (t.credit == ledger::kFee)
          p.to_fee += t.amount;
        else
          p.other_posted += t.amount;
        break;
      case ledger::TransferKind::kHold:
        p.held += t.amount;
        break;
      case ledger::TransferKind::kRelease:
        p.held -= t.amount;
        break;
    }
  });
  for (const auto& [id, n] : orphans)
    fail(std::to_string(n) + " transfer(s) name lease " + std::to_string(id) + ", which does not exist");
  report.checks.push_back(std::to_string(n_transfers) + " lease transfers name existing leases");

  // Escrow holds exactly the active leases' holds.
  Wide active_held = 0;
  size_t active = 0;
  for (const Lease& l : leases) {
    if (!l.active()) continue;
    ++active;
    active_held += l.held;
  }
  if (active_held != escrow.credits_pending)
    fail("escrow holds " + FormatMoney(escrow.credits_pending) + " pending but the " + std::to_string(active) +
         " active leases hold " + W(active_held));
  report.checks.push_back("escrow pending " + FormatMoney(escrow.credits_pending) + " == the holds of " +
                          std::to_string(active) + " active leases");

  // Each lease against the billing rules and its transfers.
  size_t bad_leases = 0;
  for (const Lease& l : leases) {
    const std::string name = "lease " + std::to_string(l.id) + ": ";
    size_t before = failures;
    if (l.held < 0) fail(name + "held is negative (" + FormatMoney(l.held) + ")");
    if (!l.active() && l.held != 0) fail(name + "ended but still holds " + FormatMoney(l.held));
    auto charged = AccruedCharge(l.price_per_hour, l.billed_ms);
    if (!charged || *charged != l.charged)
      fail(name + "charged " + FormatMoney(l.charged) + " but " + std::to_string(l.billed_ms) + " ms at " +
           FormatMoney(l.price_per_hour) + "/h accrue " + (charged ? FormatMoney(*charged) : "(overflow)"));
    auto fee = FeeOf(l.charged, l.fee_bps);
    if (!fee || *fee != l.fee)
      fail(name + "fee " + FormatMoney(l.fee) + " but " + std::to_string(l.fee_bps) + " bps of " +
           FormatMoney(l.charged) + " is " + (fee ? FormatMoney(*fee) : "(invalid)"));
    PerLease p;
    if (auto it = per.find(l.id); it != per.end()) p = it->second;
    // What custody posted for the lease: its charge, except for a lease paid
    // by channel, whose money never passes through the broker.
    const Micros posted = l.channel ? 0 : l.charged;
    const Micros posted_fee = l.channel ? 0 : l.fee;
    if (p.to_earnings != static_cast<Wide>(posted) - posted_fee)
      fail(name + "provider earned " + W(p.to_earnings) + " but charged - fee is " +
           W(static_cast<Wide>(posted) - posted_fee));
    if (p.to_fee != posted_fee)
      fail(name + "fee transfers sum to " + W(p.to_fee) + " but fee is " + FormatMoney(posted_fee));
    if (p.to_earnings + p.to_fee != posted)
      fail(name + "posted to earnings and fee " + W(p.to_earnings + p.to_fee) + " but charged is " +
           FormatMoney(posted));
    if (p.other_posted != 0) fail(name + W(p.other_posted) + " posted to neither earnings nor fee");
    if (p.held != l.held)
      fail(name + "holds minus releases are " + W(p.held) + " but held is " + FormatMoney(l.held));
    if (l.channel) CheckChannelLease(l, p, name, fail);
    if (failures != before) ++bad_leases;
  }
  report.checks.push_back(std::to_string(leases.size()) +
                          " leases: charged and fee follow the accrual rule, earnings + fee == charged, "
                          "holds - releases == held, ended leases hold nothing; leases paid by channel move no "
                          "custodial money, their voucher transfers add up to the best voucher, which stays "
                          "within deposit - margin and covers the charge" +
                          (bad_leases ? " (" + std::to_string(bad_leases) + " do not)" : ""));

  // GPU allocation.
  std::map<std::pair<int64_t, int>, int64_t> owner;
  size_t gpus = 0;
  for (const Lease& l : leases) {
    if (!l.active()) continue;
    for (int g : l.gpus) {
      ++gpus;
      auto [it, fresh] = owner.emplace(std::make_pair(l.machine_id, g), l.id);
      if (!fresh)
        fail("GPU " + std::to_string(g) + " of machine " + std::to_string(l.machine_id) + " is in active leases " +
             std::to_string(it->second) + " and " + std::to_string(l.id));
    }
  }
  report.checks.push_back(std::to_string(gpus) + " GPUs of active leases: none in two leases");
  if (failures > ledger::kMaxFailureLines)
    report.failures.push_back("… and " + std::to_string(failures - ledger::kMaxFailureLines) + " more");
  return report;
}

AuditReport AuditLeases(const std::vector<Lease>& leases, const ledger::Account& escrow,
                        const std::vector<ledger::Transfer>& transfers) {
  return AuditLeases(leases, escrow, [&](const std::function<void(const ledger::Transfer&)>& visit) {
    for (const ledger::Transfer& t : transfers) visit(t);
  });
}

}  // namespace grid::market
