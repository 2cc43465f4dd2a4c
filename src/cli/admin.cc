#include "cli/admin.h"

#include "chain/rpc/json_rpc_chain.h"
#include "treasury/treasury.h"

#include "broker/audit.h"
#include "store/store.h"

namespace grid::cli {

Result<AuditOutcome> AuditDatabase(const std::string& db, const ChainTarget* chain) {
  GRID_ASSIGN_OR_RETURN(auto store, store::OpenStore(db, /*read_only=*/true));
  GRID_ASSIGN_OR_RETURN(ledger::AuditReport r, broker::AuditStore(*store));
  if (chain) {
    GRID_ASSIGN_OR_RETURN(crypto::Address token, crypto::ParseAddress(chain->token));
    GRID_ASSIGN_OR_RETURN(crypto::Address treasury, crypto::ParseAddress(chain->treasury));
    GRID_ASSIGN_OR_RETURN(auto node, chain::JsonRpcChain::Create(chain->rpc_url));
    GRID_ASSIGN_OR_RETURN(chain::U256 balance, chain::Erc20BalanceOf(*node, token, treasury));
    GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store->Load());
    std::vector<ledger::Withdrawal> open;
    for (const auto& w : snap.withdrawals)
      if (w.open()) open.push_back(w);
    r.Merge(treasury::AuditChainBalance(balance, snap.accounts, open));
  }
  return AuditOutcome{r.ok(), r.checks, r.failures};
}

}  // namespace grid::cli
