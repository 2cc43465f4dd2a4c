#include "broker/audit.h"

#include "market/audit.h"

namespace grid::broker {

Result<ledger::AuditReport> AuditStore(store::Store& store) {
  GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store.Load());
  Status stream_status;
  ledger::TransferStream stream = [&](const std::function<void(const ledger::Transfer&)>& visit) {
    Status s = store.ForEachTransfer([&](const ledger::Transfer& t) {
      visit(t);
      return true;
    });
    if (!s.ok() && stream_status.ok()) stream_status = s;
  };
  ledger::AuditReport report = ledger::AuditLedger(snap.accounts, stream);
  GRID_RETURN_IF_ERROR(stream_status);
  ledger::Account escrow{std::string(ledger::kEscrow)};
  for (const auto& a : snap.accounts)
    if (a.id == ledger::kEscrow) escrow = a;
  report.Merge(market::AuditLeases(snap.leases, escrow, stream));
  GRID_RETURN_IF_ERROR(stream_status);
  return report;
}

}  // namespace grid::broker
