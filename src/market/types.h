// Machines, offers and leases: the market's plain data. Pure value types.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/clock.h"
#include "core/money.h"

namespace grid::market {

// What a provider says a machine is. Keys follow the search language's field
// names (Vast.ai's), so a spec file reads like a query. Numbers that are not
// money may be fractional (GB, Mbps); money is never here.
struct MachineSpec {
  std::string gpu_name;          // "H100 SXM 80GB"
  int num_gpus = 0;
  double gpu_ram = 0;            // GB per GPU
  int cpu_cores = 0;
  double cpu_ram = 0;            // GB
  double disk_space = 0;         // GB
  double inet_up = 0;            // Mbps
  double inet_down = 0;          // Mbps
  std::string geolocation;       // ISO 3166-1 alpha-2, upper case
  bool datacenter = false;
  bool simulated = false;        // GPUs are a test fixture, never verifiable
  // Further search fields the provider gave (cuda_vers, gpu_arch, …): kept
  // and echoed, used by the query language (the offer-search issue).
  using Extra = std::variant<bool, int64_t, double, std::string>;
  std::map<std::string, Extra> extra;
};

struct Listing {
  bool listed = false;
  Micros price_per_gpu_hour = 0;     // dph per GPU
  int min_chunk = 1;                 // smallest GPU count rented
  UnixMs end_date_ms = 0;            // 0: none; no lease runs past it
  Micros storage_cost = 0;           // per GB-month, informational for now
};

struct Machine {
  int64_t id = 0;
  std::string provider;              // lowercase 0x address
  MachineSpec spec;
  std::string spec_json;             // the canonical JSON the spec was read from
  Listing listing;
  UnixMs created_ms = 0;
  UnixMs updated_ms = 0;
  // Set when a `grid agent` enrolled this machine: the machine's own account,
  // which authenticates its heartbeats and lease reports. Empty for machines
  // registered by hand.
  std::string agent_address;
  bool removed = false;              // revoked by its provider: no offers, no agent
  // Its agent announced channel payments (it can redeem and close on chain):
  // leases on it may be paid by payment channel (issue 6).
  bool channel_payments = false;
  // Whether the operator verified the machine (Vast's `verified`). Nothing
  // verifies machines yet, so it is always false and not stored; search's
  // default `verified=true` is left out on a --dev broker for that reason.
  bool verified = false;
};

// Whom a payment channel for a lease on `m` must pay: the host's agent
// address when its agent accepts channel payments, else "".
inline std::string_view ChannelPayeeOf(const Machine& m) {
  return m.channel_payments ? std::string_view(m.agent_address) : std::string_view();
}

// An offer is derived, never stored: the free GPUs of a listed machine in a
// chunk size from min_chunk up, at the machine's price. Its id encodes both,
// id = machine_id * kOfferIdBase + num_gpus, so an id stays meaningful
// while GPUs come and go.
inline constexpr int64_t kOfferIdBase = 1000;
inline constexpr int kMaxGpusPerMachine = 999;

struct Offer {
  int64_t id = 0;
  int64_t machine_id = 0;
  int num_gpus = 0;
  Micros dph_total = 0;              // num_gpus * price_per_gpu_hour
  const Machine* machine = nullptr;  // valid until the market changes
};

enum class LeaseState { kPending, kRunning, kEnded };
// kExited: the workload finished by itself (the host reported `ended`).
enum class EndReason { kNone, kRenterStopped, kInsufficientFunds, kEndDate, kHostLost, kFailed, kExited };
std::string_view LeaseStateName(LeaseState s);   // "pending" "running" "ended"
std::string_view EndReasonName(EndReason r);     // "" "renter_stopped" …
bool ParseLeaseState(std::string_view name, LeaseState* out);
bool ParseEndReason(std::string_view name, EndReason* out);

// What the renter signed (EIP-712 LeaseOrder), stored with the lease so every
// lease can be traced to it.
struct SignedOrder {
  int64_t offer_id = 0;
  int gpus = 0;
  Micros price_per_hour = 0;
  uint64_t nonce = 0;
  int64_t expiry_s = 0;              // unix seconds
  std::string signature;             // 0x + 130 hex
};

// A workload's container port and the host port it is reachable on.
struct PortMapping {
  int container_port = 0;
  int host_port = 0;
  bool operator==(const PortMapping&) const = default;
};

inline constexpr int kMaxPortsPerLease = 16;

// A lease paid through a payment channel (issue 6, docs/channels.md) rather
// than the broker's escrow: the channel as it was checked on chain when the
// lease was created, the schedule's terms, the best voucher the broker has
// accepted for it, and what the chain paid out as last synced.
struct ChannelPayment {
  std::string channel;        // 0x + 64 hex, lowercase
  std::string contract;       // the PaymentChannels deployment, lowercase 0x address
  uint64_t chain_id = 0;
  std::string token;          // lowercase 0x address
  std::string signer;         // lowercase 0x address whose vouchers pay
  std::string payee;          // the channel's provider: the host's agent address
  Micros deposit = 0;         // as the contract held it at creation
  UnixMs expiry_ms = 0;       // the channel's expiry (whole seconds)
  int64_t interval_ms = 0;    // one voucher per interval
  int64_t grace_ms = 0;       // running time tolerated past what vouchers pay
  int64_t expiry_margin_ms = 0;  // vouchers must be redeemable this long before expiry
  int64_t length_ms = 0;      // the lease's length when its machine has an end date, else 0
  Micros margin = 0;          // vouchers stay at or below deposit - margin
  Micros voucher = 0;         // the best voucher accepted (cumulative), 0 for none
  std::string voucher_sig;    // its signature (0x + 130 hex), "" for none
  UnixMs voucher_ms = 0;      // when it was accepted
  Micros redeemed = 0;        // paid out to the payee on chain, as last synced
  bool closed = false;        // the channel no longer exists on chain, as last synced
  bool operator==(const ChannelPayment&) const = default;
};

struct Lease {
  int64_t id = 0;
  std::string renter;                // lowercase 0x address
  std::string provider;
  int64_t machine_id = 0;
  std::vector<int> gpus;             // GPU indices on the machine
  Micros price_per_hour = 0;         // for the whole lease, fixed at creation
  int64_t fee_bps = 0;               // operator take, fixed at creation
  std::string image;
  std::vector<std::string> env;      // "K=V"
  std::vector<std::string> command;
  std::vector<int> ports;            // container TCP ports to publish (podman hosts)
  std::string ssh_key;               // the renter's OpenSSH public key; "" for none
  // Where the published ports are reachable, as the host reported at start.
  std::string endpoint_host;
  std::vector<PortMapping> endpoints;
  SignedOrder order;
  LeaseState state = LeaseState::kPending;
  EndReason end_reason = EndReason::kNone;
  UnixMs created_ms = 0;
  UnixMs started_ms = 0;             // when the host reported running; billing starts
  UnixMs ended_ms = 0;
  int64_t billed_ms = 0;             // running time settled so far
  Micros charged = 0;                // cumulative, = AccruedCharge(price, billed_ms)
  Micros fee = 0;                    // cumulative, = FeeOf(charged, fee_bps)
  Micros held = 0;                   // the lease's current escrow hold
  int64_t settlements = 0;           // settlement counter, names transfer ids
  std::string message;               // last note from the host ("exit 1", …)
  // Set when the lease is paid by payment channel (no escrow hold then).
  std::optional<ChannelPayment> channel;

  bool active() const { return state != LeaseState::kEnded; }
};

}  // namespace grid::market
