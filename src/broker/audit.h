// The operator's audit of a store: ledger conservation and every lease's
// bill. Used by `grid admin audit --db PATH` (offline, read-only) and by the
// broker's GET /v1/admin/audit.
#pragma once

#include "core/status.h"
#include "ledger/audit.h"
#include "store/store.h"

namespace grid::broker {

// Reads a consistent view of the store (a snapshot, then the transfers) and
// checks it. The store must not change meanwhile (the broker holds its lock;
// offline there is no writer).
Result<ledger::AuditReport> AuditStore(store::Store& store);

}  // namespace grid::broker
