// The market: machines, their derived offers, and leases with their GPU
// allocations. Pure state machine: no I/O, no clock (time comes in as now_ms),
// no threads; callers serialise access.
//
// Commands come in two steps so nothing is half-applied: Plan*() checks a
// command against the current state and returns the new Machine or Lease
// without changing anything; the broker makes it durable in the store, then
// calls Put() to make it current. Put() keeps the GPU allocation in step.
//
// Invariant: no GPU index of a machine belongs to two active leases.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "market/types.h"

namespace grid::market {

struct ListOfferRequest {
  int64_t machine_id = 0;
  Micros price_per_gpu_hour = 0;
  int min_chunk = 1;
  UnixMs end_date_ms = 0;
  Micros storage_cost = 0;
};

struct CreateLeaseRequest {
  std::string renter;        // lowercase address of the signer
  int64_t offer_id = 0;
  int gpus = 0;              // 0: the offer's own GPU count
  std::string image;
  std::vector<std::string> env;
  std::vector<std::string> command;
  std::vector<int> ports;   // 1..65535, distinct, at most kMaxPortsPerLease
  std::string ssh_key;      // one OpenSSH public key line, or ""
  SignedOrder order;
  int64_t fee_bps = 0;
  // Paid by this payment channel (checked on chain by the broker) instead of
  // escrow: no hold, and no operator fee (the money never passes through the
  // broker). The lease keeps it as its `channel`.
  std::optional<ChannelPayment> channel;
};

// Checks an OpenSSH public key line: "TYPE BASE64 [COMMENT]" with a known
// key type, printable ASCII only, at most 8 KiB.
Status CheckSshPublicKey(std::string_view key);
// Checks a lease's ports: 1..65535, distinct, at most kMaxPortsPerLease.
Status CheckPorts(const std::vector<int>& ports);

class Market {
 public:
  Market() = default;
  // Not copyable: by_id_ points into machines_ (moving keeps the nodes).
  Market(const Market&) = delete;
  Market& operator=(const Market&) = delete;
  Market(Market&&) = default;
  Market& operator=(Market&&) = default;

  // --- machines
  Result<Machine> PlanRegister(const std::string& provider, MachineSpec spec, std::string spec_json,
                               UnixMs now_ms) const;
  Result<Machine> PlanListOffer(const std::string& caller, const ListOfferRequest& req, UnixMs now_ms) const;
  Result<Machine> PlanUnlist(const std::string& caller, int64_t machine_id, UnixMs now_ms) const;
  void Put(Machine machine);
  const Machine* FindMachine(int64_t id) const;
  const std::map<int64_t, Machine>& machines() const { return machines_; }

  // --- offers
  int FreeGpus(int64_t machine_id) const;
  // Visits every rentable-size offer (chunks of the free GPUs of listed
  // machines); stop by returning false. Search goes through the query
  // language's index over market/offer_rows.h instead.
  void ForEachOffer(const std::function<bool(const Offer&)>& visit) const;
  Result<Offer> FindOffer(int64_t offer_id) const;

  // --- leases
  // Checks the offer, the signed order and the free GPUs; picks the lowest
  // free GPU indices. The lease comes back pending with no hold (the broker
  // adds the hold it could place).
  Result<Lease> PlanCreateLease(const CreateLeaseRequest& req, int64_t lease_id, UnixMs now_ms) const;
  // The host reports running / failed / ended. Only the machine's provider.
  Status CheckHostReport(const std::string& caller, const Lease& lease, LeaseState to) const;
  void Put(Lease lease);
  const Lease* FindLease(int64_t id) const;
  const std::map<int64_t, Lease>& leases() const { return leases_; }
  std::vector<const Lease*> ActiveLeases() const;
  // The active leases on one machine, from its GPU allocation: O(GPUs), not
  // O(all leases) (agents ask on every heartbeat).
  std::vector<const Lease*> ActiveLeasesOn(int64_t machine_id) const;
  // Visibility: the renter sees its leases, the provider those on its machines.
  bool CanSee(const std::string& caller, const Lease& lease) const;

  int64_t next_machine_id() const { return next_machine_id_; }
  int64_t next_lease_id() const { return next_lease_id_; }

 private:
  std::map<int64_t, Machine> machines_;
  // The same machines by id in a hash: FindMachine is on every search's and
  // every agent call's path, where the ordered map's walk was 8% of a
  // search-heavy broker's CPU.
  std::unordered_map<int64_t, const Machine*> by_id_;
  std::map<int64_t, Lease> leases_;
  // machine id -> per-GPU active lease id (0 = free). Derived from leases_.
  std::map<int64_t, std::vector<int64_t>> allocation_;
  std::map<int64_t, int> free_count_;
  int64_t next_machine_id_ = 1;
  int64_t next_lease_id_ = 1;
};

// Validates a spec from outside (names the offending field).
Status ValidateSpec(const MachineSpec& spec);

}  // namespace grid::market
