// DepositWatcher: credits ERC-20 deposits to the treasury exactly once, and
// only once they are K blocks deep (issue 4).
//
// Each Poll scans the token's Transfer(from, to = treasury, value) logs of
// the blocks that have reached K confirmations and were not scanned yet (at
// most max_blocks_per_scan at a time), and hands them to
// Broker::CreditDeposits together with the new cursor, in one store
// transaction: a crash before that commit rescans the same range, a crash
// after it never does, and each (transaction hash, log index) is a transfer
// id the ledger takes once. The cursor is kept in the broker's chain meta:
//   chain:deposits:next_block   the first block not yet scanned
//   chain:deposits:last_hash    the hash of the last block scanned
//
// Reorganisations: nothing is credited before K confirmations, so a reorg of
// fewer than K blocks changes nothing here. Before each scan the watcher
// checks that the last block it scanned still has the hash it had; if not,
// the chain reorganised deeper than K: the watcher stops crediting, raises
// an alert (Poll returns DataLoss-like kInternal, alert() says what), and
// waits for the operator. It never applies such a reorg silently.
//
// Thread safety: one thread at a time (the treasury's loop).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "broker/broker.h"
#include "chain/chain.h"
#include "core/status.h"

namespace grid::treasury {

struct DepositWatcherOptions {
  crypto::Address token;
  crypto::Address treasury;
  uint64_t confirmations = 12;          // K >= 1: the head block has 1
  uint64_t max_blocks_per_scan = 2000;  // eth_getLogs range per call
  uint64_t start_block = 0;             // where a first run begins (0: the current safe head)
};

struct DepositPoll {
  uint64_t head = 0;          // the chain's head at this poll
  uint64_t scanned_to = 0;    // last block scanned (0: none yet)
  int credited = 0;           // deposits credited by this poll
  bool caught_up = false;     // nothing K-deep is left to scan
};

class DepositWatcher {
 public:
  // `chain` and `broker` must outlive the watcher.
  DepositWatcher(chain::Chain& chain, broker::Broker& broker, DepositWatcherOptions options);

  // One scan step. Unavailable when the node cannot be reached (retry);
  // kInternal with the alert's text after a reorg deeper than K.
  Result<DepositPoll> Poll();

  // Non-empty once a reorg deeper than K was seen: what happened.
  const std::string& alert() const { return alert_; }
  // Blocks between the chain's head and the last block scanned (the lag).
  uint64_t lag_blocks() const { return lag_blocks_; }

 private:
  chain::Chain& chain_;
  broker::Broker& broker_;
  DepositWatcherOptions o_;
  std::string alert_;
  uint64_t lag_blocks_ = 0;
};

}  // namespace grid::treasury
