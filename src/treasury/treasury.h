// Treasury: the broker's link to the chain (issue 4). It owns the Chain
// connection, the DepositWatcher and the WithdrawalSender, and runs them on
// one background thread every poll period; and it audits the ledger against
// the treasury's on-chain balance.
//
// Start() checks the node before anything runs: its chain id must be the
// one configured, and the token must have 6 decimals (one base unit is one
// micro-USD, the ledger's unit). The treasury key is read from a file that
// only its owner can read (mode 0600: a hex private key, or a keystore v3
// file decrypted with GRID_TREASURY_KEY_PASSWORD) or from the environment
// variable GRID_TREASURY_KEY; it is never logged.
//
// Thread safety: Status() and AuditChain() may be called from any thread;
// the polling thread is the only user of the watcher and the sender.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "broker/broker.h"
#include "broker/routes.h"
#include "chain/chain.h"
#include "core/clock.h"
#include "ledger/audit.h"
#include "treasury/deposit_watcher.h"
#include "treasury/withdrawal_sender.h"

namespace grid::treasury {

struct TreasuryOptions {
  std::string rpc_url;
  uint64_t chain_id = 31337;
  std::string token;          // the ERC-20's 0x address
  std::string key_file;       // "" -> GRID_TREASURY_KEY
  uint64_t confirmations = 12;
  int64_t poll_ms = 1000;
  int64_t bump_after_ms = 60'000;
  uint64_t start_block = 0;   // first block a fresh broker scans (0: the safe head at start)
  std::string channels;       // the PaymentChannels contract's 0x address, "" for none
};

// The treasury key: --treasury-key FILE (mode 0600 or stricter) or
// GRID_TREASURY_KEY. Errors never contain key material.
Result<crypto::PrivateKey> LoadTreasuryKey(const std::string& file);

struct TreasuryStatus {
  std::string treasury, token;  // checksummed addresses
  uint64_t chain_id = 0, confirmations = 0;
  uint64_t head = 0, scanned_to = 0, lag_blocks = 0;
  int64_t deposits_credited = 0;  // since start
  int64_t withdrawals_confirmed = 0, withdrawals_failed = 0, withdrawals_bumped = 0;  // since start
  std::string alert;       // a reorg deeper than K, or "" 
  std::string last_error;  // the last poll's error ("" when it went well)
};

// The chain's side of the audit: the treasury's token balance against the
// ledger. `chain` and `ledger` data come from the caller.
//  - treasury (ledger) = deposits credited − withdrawals confirmed;
//  - on chain, the treasury holds that, less withdrawals sent and not yet
//    confirmed: treasury − open withdrawals ≤ on-chain ≤ treasury (equal when
//    none is open), plus whatever was sent to it without being a deposit the
//    ledger saw (reported, not a failure);
//  - the on-chain balance covers every customer balance and unswept fees,
//    except money the --dev faucet made (reported as unbacked).
ledger::AuditReport AuditChainBalance(const chain::U256& onchain_balance, const std::vector<ledger::Account>& accounts,
                                      const std::vector<ledger::Withdrawal>& open_withdrawals);

class Treasury {
 public:
  static Result<std::unique_ptr<Treasury>> Start(TreasuryOptions options, broker::Broker& broker, const Clock* clock);
  ~Treasury();  // stops the thread
  Treasury(const Treasury&) = delete;
  Treasury& operator=(const Treasury&) = delete;

  TreasuryStatus Status() const;
  // Reads the on-chain balance now and audits the ledger against it.
  Result<ledger::AuditReport> AuditChain();
  // One round of deposits and withdrawals now (tests; the thread does this).
  void PollOnce();

 private:
  Treasury(TreasuryOptions o, broker::Broker& broker, const Clock* clock) : o_(std::move(o)), broker_(broker), clock_(clock) {}
  void Loop();

  TreasuryOptions o_;
  broker::Broker& broker_;
  const Clock* clock_;
  std::unique_ptr<chain::Chain> chain_;
  crypto::Address token_, treasury_;
  std::unique_ptr<DepositWatcher> watcher_;
  std::unique_ptr<WithdrawalSender> sender_;

  mutable std::mutex mu_;  // guards status_ and poll serialisation
  std::mutex poll_mu_;
  TreasuryStatus status_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Starts a Treasury and describes it for the API (`grid broker --chain-rpc`).
Result<std::shared_ptr<const broker::ChainApi>> StartChainApi(TreasuryOptions options, broker::Broker& broker,
                                                              const Clock* clock);

}  // namespace grid::treasury
