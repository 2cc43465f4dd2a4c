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

// Opens the database read-only and audits it.
Result<AuditOutcome> AuditDatabase(const std::string& db);

}  // namespace grid::cli
