#include "cli/admin.h"

#include "broker/audit.h"
#include "store/store.h"

namespace grid::cli {

Result<AuditOutcome> AuditDatabase(const std::string& db) {
  GRID_ASSIGN_OR_RETURN(auto store, store::OpenStore(db, /*read_only=*/true));
  GRID_ASSIGN_OR_RETURN(ledger::AuditReport r, broker::AuditStore(*store));
  return AuditOutcome{r.ok(), r.checks, r.failures};
}

}  // namespace grid::cli
