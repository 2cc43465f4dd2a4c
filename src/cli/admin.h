// `grid admin …`: operator commands that work on a database directly.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace grid::cli {

struct AuditOutcome {
  bool ok = false;
  std::vector<std::string> checks, failures;
};

// Where the chain audit reads the treasury's balance (grid admin audit --db
// … --chain): a node, the token and the treasury's address.
struct ChainTarget {
  std::string rpc_url, token, treasury;
};

// Opens the database read-only and audits it; with a chain target, also
// checks the treasury's on-chain balance against the ledger.
Result<AuditOutcome> AuditDatabase(const std::string& db, const ChainTarget* chain = nullptr);

}  // namespace grid::cli
