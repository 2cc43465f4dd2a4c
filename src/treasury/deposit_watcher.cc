#include "treasury/deposit_watcher.h"

#include <algorithm>
#include <cstdio>

#include "chain/abi.h"
#include "crypto/hex.h"

namespace grid::treasury {

namespace {
constexpr const char* kNextBlock = "chain:deposits:next_block";
constexpr const char* kLastHash = "chain:deposits:last_hash";

std::optional<uint64_t> ParseU64(const std::optional<std::string>& s) {
  if (!s || s->empty() || s->find_first_not_of("0123456789") != std::string::npos || s->size() > 19)
    return std::nullopt;
  return std::stoull(*s);
}
}  // namespace

DepositWatcher::DepositWatcher(chain::Chain& chain, broker::Broker& broker, DepositWatcherOptions options)
    : chain_(chain), broker_(broker), o_(std::move(options)) {
  o_.confirmations = std::max<uint64_t>(1, o_.confirmations);
  o_.max_blocks_per_scan = std::max<uint64_t>(1, o_.max_blocks_per_scan);
}

Result<DepositPoll> DepositWatcher::Poll() {
  if (!alert_.empty()) return Internal(alert_);
  DepositPoll out;
  GRID_ASSIGN_OR_RETURN(out.head, chain_.BlockNumber());
  // The newest block with K confirmations (the head has one).
  if (out.head + 1 < o_.confirmations) {
    out.caught_up = true;
    return out;
  }
  const uint64_t safe = out.head + 1 - o_.confirmations;

  std::optional<uint64_t> next = ParseU64(broker_.ChainMeta(kNextBlock));
  if (!next) {
    // A first run: from the configured block, or from what is safe now
    // (deposits made before the broker ever watched are not scanned unless
    // the operator says where to start).
    next = o_.start_block > 0 ? o_.start_block : safe + 1;
    GRID_RETURN_IF_ERROR(broker_.SaveChainMeta({{kNextBlock, std::to_string(*next)}}));
  }

  // The last block scanned must still be the one we scanned.
  if (*next > 0) {
    if (auto want = broker_.ChainMeta(kLastHash); want && !want->empty()) {
      GRID_ASSIGN_OR_RETURN(chain::BlockHeader last, chain_.GetBlock(*next - 1));
      std::string have = crypto::HexEncode(last.hash);
      if (have != *want) {
        alert_ = "chain reorganisation deeper than " + std::to_string(o_.confirmations) +
                 " confirmations: block " + std::to_string(*next - 1) + " was " + *want + " when its deposits were "
                 "credited and is now " + have + "; deposit crediting is stopped until an operator checks the "
                 "treasury (grid admin audit --chain)";
        std::fprintf(stderr, "grid broker: ALERT: %s\n", alert_.c_str());
        return Internal(alert_);
      }
    }
  }

  lag_blocks_ = out.head >= *next ? out.head - *next + 1 : 0;
  out.scanned_to = *next > 0 ? *next - 1 : 0;
  if (*next > safe) {
    out.caught_up = true;
    return out;
  }
  const uint64_t to = std::min(safe, *next + o_.max_blocks_per_scan - 1);
  chain::LogFilter f;
  f.from_block = *next;
  f.to_block = to;
  f.address = o_.token;
  f.topics = {chain::TransferEventTopic(), std::nullopt, chain::AddressTopic(o_.treasury)};
  GRID_ASSIGN_OR_RETURN(std::vector<chain::Log> logs, chain_.GetLogs(f));
  GRID_ASSIGN_OR_RETURN(chain::BlockHeader last, chain_.GetBlock(to));

  std::vector<broker::Deposit> deposits;
  for (const chain::Log& log : logs) {
    if (log.removed || log.address != o_.token) continue;
    // A log from a block that is no longer the one at its height: the chain
    // moved between the two calls; scan again next time.
    if (log.block_number == to && log.block_hash != last.hash)
      return Unavailable("the chain changed during the scan of block " + std::to_string(to) + "; retrying");
    auto ev = chain::DecodeTransferLog(log.topics, log.data);
    if (!ev.ok() || ev->to != o_.treasury) continue;  // not an ERC-20 transfer to us
    auto amount = ev->value.ToInt64("deposit amount");
    std::string where = crypto::HexEncode(log.tx_hash) + ":" + std::to_string(log.log_index);
    if (!amount.ok()) {
      alert_ = "deposit " + where + " of " + ev->value.ToDecimal() + " base units does not fit the ledger";
      std::fprintf(stderr, "grid broker: ALERT: %s\n", alert_.c_str());
      return Internal(alert_);
    }
    if (*amount == 0) continue;  // a zero transfer credits nothing
    deposits.push_back(broker::Deposit{crypto::HexEncode(log.tx_hash), static_cast<uint32_t>(log.log_index),
                                       ev->from.ToLowerHex(), *amount, log.block_number});
  }
  GRID_ASSIGN_OR_RETURN(out.credited, broker_.CreditDeposits(
                                          deposits, {{kNextBlock, std::to_string(to + 1)},
                                                     {kLastHash, crypto::HexEncode(last.hash)}}));
  out.scanned_to = to;
  out.caught_up = to == safe;
  lag_blocks_ = out.head - to;
  return out;
}

}  // namespace grid::treasury
