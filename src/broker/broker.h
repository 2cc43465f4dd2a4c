// Broker: the marketplace service. It owns the in-memory market and ledger,
// makes every change durable through the Store before it becomes visible, and
// answers the API's commands. Callers pass the authenticated address; the
// broker checks authorization on the resource itself.
//
// Concurrency: all commands are serialised by one mutex (the SQLite store is a
// single writer anyway). A command is: check against the current state (pure
// domain code), commit the ChangeSet to the store, then apply it in memory.
// If the commit fails nothing changes, so a failure never leaves a partial
// write, and an acknowledged command has been made durable.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/status.h"
#include "ledger/audit.h"
#include "ledger/ledger.h"
#include "market/market.h"
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
};

struct NonceInfo {
  std::string nonce, domain, uri;
  uint64_t chain_id = 0;
};

struct Session {
  std::string token, address;  // address lowercase
  UnixMs expires_ms = 0;
};

struct OfferView {
  market::Offer offer;
  market::Machine machine;
  bool rentable = true;  // its GPUs are free now (search shows only these)
};

struct MachineView {
  market::Machine machine;
  int free_gpus = 0;
};

struct AuditResult {
  ledger::AuditReport report;
};

class Broker {
 public:
  static Result<std::unique_ptr<Broker>> Open(std::unique_ptr<store::Store> store, const Clock* clock,
                                              BrokerOptions options);

  void SetEndpoint(std::string domain, std::string uri);  // after the listener is bound
  const BrokerOptions& options() const { return options_; }

  // --- auth
  NonceInfo NewNonce();
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
  std::vector<OfferView> SearchOffers(const market::OfferFilter& filter) const;
  Result<OfferView> GetOffer(int64_t offer_id) const;

  // --- leases
  Result<market::Lease> CreateLease(const std::string& addr, market::CreateLeaseRequest req);
  Result<market::Lease> GetLease(const std::string& addr, int64_t id) const;
  std::vector<market::Lease> ListLeases(const std::string& addr) const;
  Result<market::Lease> StopLease(const std::string& addr, int64_t id);
  // The host reports `running` (billing starts), or that the workload ended:
  // by itself (`ended`, end reason exited) or with an error (failed).
  Result<market::Lease> ReportLease(const std::string& addr, int64_t id, market::LeaseState to,
                                    const std::string& message, bool failed = false);
  int64_t RunningMs(const market::Lease& lease) const;

  // --- background work
  // Settles every running lease: posts what accrued, tops up holds, ends the
  // leases whose money ran out or whose machine's end date passed.
  Status SettleAll();

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
  Status CommitLocked(store::ChangeSet changes);
  Result<market::Lease> EndLeaseLocked(const market::Lease& lease, market::EndReason reason, UnixMs bill_until_ms);
  std::string SignToken(const std::string& address, UnixMs expires_ms) const;

  std::unique_ptr<store::Store> store_;
  const Clock* clock_;
  BrokerOptions options_;
  std::string token_secret_;

  mutable std::mutex mu_;
  market::Market market_;
  ledger::Ledger ledger_;
  std::unordered_map<std::string, UnixMs> nonces_;  // SIWE nonce -> expiry
  int64_t commits_ = 0, commit_failures_ = 0;
};

}  // namespace grid::broker
