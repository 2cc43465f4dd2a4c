// Broker: the marketplace service. It owns the in-memory market and ledger,
// makes every change durable through the Store before it becomes visible, and
// answers the API's commands. Callers pass the authenticated address; the
// broker checks authorization on the resource itself.
//
// Concurrency: all commands are serialised by one mutex (the SQLite store is a
// single writer anyway); offer searches and reads share it as readers (a
// writer-preferring rwlock, core/rw_mutex.h), so the HTTP threads search side
// by side and a command never waits behind an endless stream of searches. A command is: check against the current state (pure
// domain code), commit the ChangeSet to the store, then apply it in memory.
// If the commit fails nothing changes, so a failure never leaves a partial
// write, and an acknowledged command has been made durable.
//
// Replicas (issue 7): on a Shared() store several brokers run on one
// database. Each keeps the same in-memory state, caught up from the store's
// change log (Sync), and commits only as the entry after the last one it
// applied, so every command is decided on the database's latest state; a
// command that lost the race gets kAborted and is run again after Sync
// (Retrying, and the HTTP layer for requests). What is not in the ledger or
// the market — heartbeats, login nonces, workload output — is kept in the
// store's shared state. One replica, the leader, runs background work
// (settlement, ending leases of lost hosts, the treasury); every replica
// runs the rest. docs/operations.md, "Several brokers".
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/channel_reader.h"
#include "broker/wakeups.h"
#include "core/clock.h"
#include "core/rw_mutex.h"
#include "core/status.h"
#include "crypto/voucher.h"
#include "ledger/audit.h"
#include "ledger/ledger.h"
#include "ledger/withdrawal.h"
#include "market/channel_policy.h"
#include "market/market.h"
#include "query/index.h"
#include "query/query.h"
#include "store/store.h"

namespace grid::broker {

struct BrokerOptions {
  bool dev = false;                 // enables the faucet; relaxes search defaults
  int64_t fee_bps = 0;              // operator take rate, basis points
  int64_t tick_ms = 60'000;         // settlement interval
  uint64_t chain_id = 31337;        // SIWE and EIP-712 domain
  std::string domain;               // SIWE domain ("127.0.0.1:8080"); set after listen
  std::string uri;                  // SIWE uri ("http://127.0.0.1:8080")
  int64_t nonce_ttl_ms = 5 * 60'000;
  int64_t token_ttl_ms = 24 * 3600'000LL;
  int64_t clock_skew_ms = 5 * 60'000;
  Micros faucet_max = 10'000 * kMicrosPerUnit;  // per request
  std::vector<std::string> admins;  // lowercase addresses allowed to run the audit
  // Agents (issue 3): heartbeat period, missed beats before "offline", and
  // how long a lease survives its host being offline before host_lost.
  int64_t heartbeat_ms = 10'000;
  int missed_heartbeats = 3;
  int64_t host_grace_ms = 5 * 60'000;
  int64_t reliability_tau_ms = 24 * 3600'000LL;  // EWMA time constant
  // On-chain money (issue 4): withdrawals need a chain (`--chain-rpc`).
  bool chain_enabled = false;
  Micros withdraw_min = 1 * kMicrosPerUnit;                 // per withdrawal
  Micros withdraw_daily_limit = 10'000 * kMicrosPerUnit;    // per account, rolling 24 h
  // Leases paid by payment channel (issue 6): one voucher per interval.
  int64_t channel_interval_ms = market::kDefaultVoucherIntervalMs;
};

// One ERC-20 Transfer(from, treasury, value) log, confirmed K blocks deep.
struct Deposit {
  std::string tx_hash;  // 0x + 64 lowercase hex
  uint32_t log_index = 0;
  std::string from;     // lowercase 0x address: the account credited
  Micros amount = 0;    // token base units (6 decimals) = micro-USD
  uint64_t block_number = 0;
};

struct JoinToken {
  std::string token;  // shown once, at creation
  std::string id;     // first 12 hex digits of its SHA-256: names it afterwards
  std::string provider;
  UnixMs expires_ms = 0;
  bool revoked = false;
};

// What the broker knows of an agent's host right now. Kept in memory: after
// a broker restart every host counts as seen at the restart, so the broker's
// own downtime never ends a lease with host_lost.
struct HostState {
  UnixMs last_seen_ms = 0;
  bool online = true;
  double reliability = 1.0;  // EWMA of being online, time constant reliability_tau_ms
  UnixMs reliability_at_ms = 0;
  std::string health_json;   // the last heartbeat's GPU health, as sent
};

// A lease as the agent sees it: what to run and until when it is paid.
struct AgentLease {
  market::Lease lease;
  UnixMs paid_until_ms = 0;
  int64_t log_offset = 0;  // how much of the workload's output the broker has
};

// What the agent measured of a lease's workload (evidence, not the bill:
// billing stays on allocated GPUs x running wall-seconds).
struct Metering {
  double wall_seconds = 0, cpu_seconds = 0;
  int64_t peak_memory_bytes = 0, oom_kills = 0;
  int64_t net_rx_bytes = 0, net_tx_bytes = 0;
  std::optional<double> gpu_energy_joules;    // where NVML gives energy counters
  std::optional<double> gpu_utilization_pct;  // mean of the host's samples
  bool gpu_simulated = false;                 // the GPU figures come from simulated GPUs
  UnixMs reported_ms = 0;
};

// The tail of a workload's output, relayed by its agent. In memory and
// bounded (kLogKeepBytes per lease): logs are for watching, not an archive.
inline constexpr size_t kLogKeepBytes = 256 * 1024;
struct LeaseLog {
  int64_t start_offset = 0;  // offset of data[0] in the workload's whole output
  std::string data;
  int64_t end_offset() const { return start_offset + static_cast<int64_t>(data.size()); }
  // Appends what is new from `offset`; a repeated chunk (a retry) is
  // skipped, a gap is accepted (the agent's own log may have been cut).
  // Keeps the last kLogKeepBytes.
  void Append(int64_t offset, std::string_view chunk);
};

// Where a started workload's published ports are reachable, as its host
// reports with "running".
struct ReportedEndpoints {
  std::string host;  // an IP address or DNS name renters can reach
  std::vector<market::PortMapping> ports;
};

struct NonceInfo {
  std::string nonce, domain, uri;
  uint64_t chain_id = 0;
};

struct Session {
  std::string token, address;  // address lowercase
  UnixMs expires_ms = 0;
};

// One offer: every field of the query language (market/offer_rows.h), and
// its machine for what the row does not carry (provider, min_chunk, spec).
struct OfferView {
  query::OfferRow row;
  market::Machine machine;
};

// What an offer's JSON takes from its machine (api::OfferMachine), copied
// under the broker's lock so the answer is encoded after it.
struct OfferMachineFields {
  int64_t id = 0;
  std::string provider;
  int min_chunk = 0;
  UnixMs end_date_ms = 0;  // 0: none
  std::string channel_payee;  // api::ChannelPayeeOf
};

// What a search answers (Broker::SearchOffers).
struct OfferSearch {
  query::Query query;   // the effective query: the user's plus the defaults
  query::Order order;   // the effective order
  query::SearchResult result;
  // The machines of result.offers and of the explain's near misses, by id.
  std::vector<OfferMachineFields> machines;
  // The machine with this id among them, or nullptr.
  const OfferMachineFields* Machine(int64_t id) const;
};

struct MachineView {
  market::Machine machine;
  int free_gpus = 0;
  std::optional<HostState> host;  // machines run by an agent
};

class Broker {
 public:
  static Result<std::unique_ptr<Broker>> Open(std::unique_ptr<store::Store> store, const Clock* clock,
                                              BrokerOptions options);

  void SetEndpoint(std::string domain, std::string uri);  // after the listener is bound
  const BrokerOptions& options() const { return options_; }

  // --- auth
  // Replicas: the nonce is in the shared state, so any replica takes the login.
  Result<NonceInfo> NewNonce();
  Result<Session> Login(const std::string& message, const std::string& signature);
  // The lowercase address a bearer token stands for; kUnauthenticated if the
  // token is missing, forged or expired.
  Result<std::string> Authenticate(std::string_view bearer_token) const;

  // --- wallet
  Result<ledger::Balance> Faucet(const std::string& addr, Micros amount, const std::string& idempotency_key);
  ledger::Balance GetBalance(const std::string& addr) const;
  Result<std::vector<ledger::Transfer>> History(const std::string& addr, int limit) const;

  // --- machines and offers
  Result<MachineView> RegisterMachine(const std::string& addr, market::MachineSpec spec, std::string spec_json);
  std::vector<MachineView> ListMachines(const std::string& addr) const;
  Result<MachineView> GetMachine(const std::string& addr, int64_t id) const;
  Result<MachineView> ListOffer(const std::string& addr, const market::ListOfferRequest& req);
  Result<MachineView> Unlist(const std::string& addr, int64_t machine_id);
  // Searches the live offer index. Vast's defaults (verified=true
  // rentable=true rented=false) are appended unless no_default; a --dev
  // broker leaves verified out (nothing is verified yet). An empty order is
  // the default order (dph_total). limit: 0..query::kMaxLimit, else
  // InvalidArgument. The index is kept in step with every acknowledged
  // change, so a search never shows GPUs of a lease already acknowledged.
  Result<OfferSearch> SearchOffers(const query::Query& q, const query::Order& order, int64_t limit, bool explain,
                                   bool no_default);
  // One offer by id, whether rentable or not; NotFound unless its machine
  // is listed in that chunk size.
  Result<OfferView> GetOffer(int64_t offer_id);
  // The number of offers in the index (every chunk size of every listed machine).
  size_t IndexedOffers() const;

  // --- leases
  // With req.channel set (only its `channel` id is read), the lease is paid
  // by that payment channel: it is read on chain and checked first
  // (docs/channels.md, "The broker"); no hold is taken. Conflict when the
  // broker has no channel contract, the host's agent does not accept
  // channel payments, or the channel does not fit; Unavailable when the
  // chain cannot be read.
  Result<market::Lease> CreateLease(const std::string& addr, market::CreateLeaseRequest req);
  Result<market::Lease> GetLease(const std::string& addr, int64_t id) const;
  std::vector<market::Lease> ListLeases(const std::string& addr) const;
  Result<market::Lease> StopLease(const std::string& addr, int64_t id);
  // The host reports `running` (billing starts), or that the workload ended:
  // by itself (`ended`, end reason exited) or with an error (failed).
  // With `running`, the host may say where the workload's ports are
  // reachable (each container port must be one the lease asked for, or 22
  // when it carries an SSH key).
  Result<market::Lease> ReportLease(const std::string& addr, int64_t id, market::LeaseState to,
                                    const std::string& message, bool failed = false,
                                    const std::optional<ReportedEndpoints>& endpoints = std::nullopt);
  int64_t RunningMs(const market::Lease& lease) const;
  UnixMs NowMs() const { return clock_->NowMs(); }

  // --- payment channels (issue 6)
  // The chain's side; set once before serving (the treasury does). Without
  // it, channel leases are refused.
  void SetChannelReader(std::shared_ptr<ChannelReader> reader);
  // The renter's voucher for a running channel lease: checked as the agent
  // checks it (the channel's signer on this chain and contract, then
  // market::CheckVoucherAmount), stored, recorded in the ledger, and the
  // host's long-poll woken. A voucher already accepted returns the lease
  // unchanged.
  Result<market::Lease> SubmitVoucher(const std::string& addr, int64_t lease_id, const crypto::Voucher& voucher);
  // Reads the lease's channel on chain and records what it paid out and
  // whether it is closed. `close_tx` (optional): the transaction that closed
  // it, whose Closed event gives the final payout once the channel is gone.
  // The renter, the provider or the host's agent.
  Result<market::Lease> SyncChannel(const std::string& addr, int64_t lease_id, const std::string& close_tx);

  // --- agents (issue 3)
  Result<JoinToken> CreateJoinToken(const std::string& provider, int64_t ttl_ms);
  Result<JoinToken> RevokeJoinToken(const std::string& provider, const std::string& token_or_id);
  // The agent, logged in as the machine's own address, enrolls with a join
  // token; enrolling again (after a restart) updates the spec and needs no
  // valid token. A removed machine cannot enroll again.
  // `channel_payments`: the agent can redeem and close payment channels
  // (it runs with a chain), so leases on it may be paid by channel.
  Result<MachineView> EnrollMachine(const std::string& agent, const std::string& join_token,
                                    market::MachineSpec spec, std::string spec_json, bool channel_payments = false);
  // The agent lists its own machine at the prices of its config file, as its
  // provider would with `grid machines list-offer`.
  Result<MachineView> AgentListOffer(const std::string& agent, market::ListOfferRequest req);
  // Records a heartbeat; returns the machine's active leases and, in
  // *lease_version, the version WaitForLeaseChange compares with.
  Result<std::vector<AgentLease>> Heartbeat(const std::string& agent, std::string health_json,
                                            int64_t* lease_version = nullptr);
  // The agent's long-poll: `done` is called once, as soon as a lease of the
  // agent's machine is created, changes state or ends (or the machine is
  // removed) after `lease_version`, or at the timeout. Errors (not an
  // enrolled agent) come back at once and `done` is not called.
  Status WaitForLeaseChange(const std::string& agent, int64_t lease_version, int64_t timeout_ms,
                            MachineWakeups::Callback done);
  // The provider revokes a host: no more offers, its agent is refused, and
  // its active leases end with host_lost.
  Result<MachineView> RemoveMachine(const std::string& provider, int64_t machine_id);
  // The agent appends the workload's output (from `offset`) and metering.
  Status AppendLeaseOutput(const std::string& agent, int64_t lease_id, int64_t offset, std::string_view data,
                           const std::optional<Metering>& metering);
  // The renter or provider reads the output from `offset` (clamped to what is
  // kept); next offset = returned start + data size.
  Result<LeaseLog> ReadLeaseOutput(const std::string& addr, int64_t lease_id, int64_t offset, size_t max_bytes) const;
  // Replicas: from the shared state (nullopt when it cannot be read).
  std::optional<Metering> MeteringOf(int64_t lease_id) const;
  // Marks hosts offline after missed heartbeats, updates reliability, ends
  // leases of hosts offline past the grace period (billed to the last beat).
  // On replicas, every replica updates its hosts' state from the shared
  // heartbeats; only the leader (end_lost_leases) ends leases.
  Status CheckHosts(bool end_lost_leases = true);
  std::optional<HostState> HostOf(int64_t machine_id) const;

  // --- on-chain money (issue 4); the chain side is the Treasury service's
  // Credits each deposit exactly once: transfer "deposit:<tx>:<log index>"
  // treasury -> user:<from> (an account is created by its first deposit);
  // deposits already credited are skipped. `meta` (the watcher's cursor) is
  // committed in the same transaction. Returns how many were credited now.
  Result<int> CreditDeposits(const std::vector<Deposit>& deposits,
                             const std::vector<std::pair<std::string, std::string>>& meta);
  // A value the treasury stored with CreditDeposits or SaveChainMeta.
  std::optional<std::string> ChainMeta(const std::string& key) const;
  Status SaveChainMeta(const std::vector<std::pair<std::string, std::string>>& meta);
  // Takes `amount` out of the account's spendable money at once (earnings
  // first, then its balance) as a withdrawal to `to` (default: itself).
  // InvalidArgument under the minimum or over the daily limit;
  // InsufficientFunds over what it has; Conflict without a chain.
  Result<ledger::Withdrawal> RequestWithdrawal(const std::string& addr, Micros amount, const std::string& to);
  std::vector<ledger::Withdrawal> ListWithdrawals(const std::string& addr) const;
  std::vector<ledger::Withdrawal> OpenWithdrawals() const;
  // Every ledger account as it is now (the chain audit).
  std::vector<ledger::Account> LedgerAccounts() const;
  // Records a withdrawal's progress (signed, sent); no money moves.
  Status SaveWithdrawal(const ledger::Withdrawal& w);
  // Ends it: the holds are released, and if confirmed the amount is posted
  // to the treasury. Idempotent for a withdrawal already ended.
  Status EndWithdrawal(ledger::Withdrawal w, bool confirmed);

  // --- background work
  // Settles every running lease: posts what accrued, tops up holds, ends the
  // leases whose money ran out or whose machine's end date passed.
  Status SettleAll();

  // --- replicas (see the top of this file)
  bool Replicated() const { return replicated_; }
  // Applies every change other replicas committed since the last Sync (a
  // no-op when not Replicated()). Cheap when there is none: one read of the
  // change log's head.
  Status Sync();
  // Waits up to timeout_ms for another replica's commit, then Syncs: the
  // server's watcher thread, which keeps this replica's offer index within
  // about a commit's delay of the others'.
  Status FollowChanges(int64_t timeout_ms);
  // The last change-log entry applied here.
  int64_t AppliedSeq() const { return applied_seq_.load(); }
  // Runs `command` after Sync(), again while it fails with kAborted (another
  // replica committed first), up to a few times.
  Status Retrying(const std::function<Status()>& command);
  // How often a command that lost races to other replicas' commits runs
  // before kAborted reaches the caller.
  static constexpr int kCommandAttempts = 12;
  // A short random pause before running a command again after kAborted
  // (1, 2, 4 … 32 ms at most, jittered), so racing replicas spread out.
  static void PauseBeforeRetry(int attempt);
  // Asks the store whether this replica is the leader (and remembers it for
  // IsLeader). A store error counts as not leading.
  bool CheckLeadership();
  bool IsLeader() const { return leader_.load(); }
  // The leader's housekeeping: trims the change log, drops expired shared state.
  Status Maintain();

  // --- operator
  bool IsAdmin(const std::string& addr) const;
  Result<ledger::AuditReport> Audit();

  struct Stats {
    int64_t machines = 0, listed = 0, leases_active = 0, leases_total = 0, commits = 0, commit_failures = 0;
  };
  Stats GetStats() const;

 private:
  Broker(std::unique_ptr<store::Store> store, const Clock* clock, BrokerOptions options);
  Status LoadState();
  // Commits the change set, then applies it to memory. Requires mu_ held.
  // On replicas, commits it as the change-log entry after applied_seq_.
  Status CommitLocked(store::ChangeSet changes);
  // Puts committed rows into memory: machines, leases, withdrawals, meta
  // (ledger balances are the caller's). Wakes agents and refreshes offers.
  void ApplyRowsLocked(std::vector<market::Machine> machines, std::vector<market::Lease> leases,
                       std::vector<ledger::Withdrawal> withdrawals,
                       const std::vector<std::pair<std::string, std::string>>& meta,
                       bool refresh_offers = true);
  // Rows another replica committed (or a whole reload): machine specs
  // decoded, balances restored, agents and join tokens learnt.
  Status ApplyRemoteLocked(store::Snapshot rows, bool refresh_offers = true);
  void LearnMetaLocked(const std::string& key, const std::string& value);
  // Replicas: advances the long-poll version of every machine the entry
  // wrote (or whose leases it wrote) to the entry's number.
  void WakeByEntryLocked(const store::Changes::Entry& entry);
  // Settles these leases (those still active) as of now_ms, in one commit
  // (one per lease if that fails).
  Status SettleGroup(std::span<const int64_t> ids, UnixMs now_ms);
  // Locks mu_ (exclusively) for a command that may commit; on replicas,
  // first applies what other replicas committed, under the lock.
  Result<std::unique_lock<WriterPreferringMutex>> LockForCommand();
  // Replicas: what others committed after `from` (nullopt: nothing), read
  // without the lock; and applying it under the lock.
  Result<std::optional<store::Changes>> ReadChanges(int64_t from);
  Status ApplyChangesLocked(store::Changes changes);
  // A shared heartbeat ("beat:<machine>" -> "<ms> <health json>") into hosts_.
  void MergeBeatLocked(const std::string& key, const std::string& value);
  Status CheckHostsOnce(bool end_lost_leases);
  Result<market::Lease> EndLeaseLocked(const market::Lease& lease, market::EndReason reason, UnixMs bill_until_ms);
  const market::Machine* AgentMachineLocked(const std::string& agent) const;
  Result<market::Lease> ReportAsProviderLocked(const std::string& provider, const market::Lease& lease,
                                               market::LeaseState to, const std::string& message, bool failed,
                                               const std::optional<ReportedEndpoints>& endpoints);
  bool HiddenLocked(int64_t machine_id) const;  // offline: its offers are not rentable
  // The search index: a machine's rows as they are now, and keeping them so.
  std::vector<query::OfferRow> OfferRowsLocked(const market::Machine& m, UnixMs now_ms) const;
  void RefreshOffersLocked(int64_t machine_id);
  // Machines whose end date passed since their rows were made: their offers
  // stop being rentable. Called before every read of the index.
  void ExpireEndDatesLocked(UnixMs now_ms);
  // With `lock` (shared) held: expires passed end dates first (taking mu_
  // exclusively for that, then shared again) and returns the time the
  // index is current for.
  UnixMs ReadLockAfterExpiry(std::shared_lock<WriterPreferringMutex>& lock);
  MachineView ViewLocked(const market::Machine& m) const;
  // Commits one machine's new state and returns its view.
  Result<MachineView> CommitMachineLocked(market::Machine machine);
  std::string SignToken(const std::string& address, UnixMs expires_ms) const;
  // The payment of a new channel lease from what the chain says: every check
  // of docs/channels.md ("The broker"). Requires mu_ held.
  Result<market::ChannelPayment> CheckChannelLocked(const std::string& renter, const market::Lease& lease,
                                                    const std::string& channel_id, const OnChainChannel& onchain,
                                                    UnixMs now_ms) const;

  std::unique_ptr<store::Store> store_;
  std::shared_ptr<ChannelReader> channels_;  // set before serving; then read-only
  const Clock* clock_;
  BrokerOptions options_;
  std::string token_secret_;

  mutable WriterPreferringMutex mu_;
  market::Market market_;
  ledger::Ledger ledger_;
  std::unordered_map<std::string, UnixMs> nonces_;  // SIWE nonce -> expiry
  std::unordered_map<std::string, JoinToken> join_tokens_;  // by SHA-256 hex of the token
  std::unordered_map<std::string, int64_t> agents_;   // agent address -> machine id
  std::unordered_map<int64_t, HostState> hosts_;     // machine id -> host state
  std::unordered_map<int64_t, LeaseLog> logs_;       // lease id -> output tail
  std::unordered_map<int64_t, Metering> metering_;   // lease id -> last evidence
  UnixMs started_ms_ = 0;
  std::unique_ptr<MachineWakeups> wakeups_;  // bumped in CommitLocked
  // Every offer, as rows of the query language, updated under mu_ before a
  // change is acknowledged (CommitLocked, host online/offline/reliability).
  query::OfferIndex index_;
  // (end date, machine id) of machines whose rows still count as before
  // their end date; and each such machine's entry.
  std::set<std::pair<UnixMs, int64_t>> end_dates_;
  std::unordered_map<int64_t, UnixMs> end_date_of_;
  std::map<int64_t, ledger::Withdrawal> withdrawals_;
  std::map<std::string, std::string> chain_meta_;  // meta keys "chain:*"
  int64_t commits_ = 0, commit_failures_ = 0;
  // Replicas.
  bool replicated_ = false;             // store_->Shared(); set at Open
  std::atomic<int64_t> applied_seq_{0};  // written under mu_ (exclusive)
  std::atomic<bool> leader_{false};
};

}  // namespace grid::broker
