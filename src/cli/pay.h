// `grid pay`: the renter's side of leases paid by payment channel (issue 6,
// docs/channels.md "The lease flow"). For each of the renter's running
// channel leases it signs the voucher the schedule says is due now and posts
// it to the broker, every few seconds, until stopped.
//
// The renter's risk is one interval: a voucher is signed only for the
// interval `now` falls in (market::DueIndex), for exactly the schedule's
// amount (market::VoucherAmount), and only when it is above the best voucher
// the broker already accepted — never ahead of the schedule. If `grid pay`
// stops, the provider's agent stops the workload one interval + grace later.
//
// The decision (NextVoucher) is pure and unit-tested (pay_test.cc); the rest
// is the loop around it. Not thread-safe (one loop, one broker client).
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>

#include "cli/common.h"
#include "core/clock.h"
#include "core/money.h"
#include "core/status.h"
#include "crypto/keys.h"
#include "crypto/voucher.h"
#include "market/channel_policy.h"
#include "market/types.h"

namespace CLI {
class App;
}

namespace grid::cli {

void AddPay(CLI::App& app, Globals& g, Run& run);

// What `grid pay` reads of a lease JSON (GET /v1/leases, /v1/leases/{id}).
struct PayLease {
  int64_t id = 0;
  std::string renter;  // lowercase 0x address
  bool running = false;
  bool ended = false;
  Micros price_per_hour = 0;
  UnixMs start_ms = 0;  // the channel's start_ms: when the lease started running, 0 while pending
  market::ChannelPayment channel;
  market::SignedOrder order;  // what the renter signed when renting
};

// nullopt for a lease not paid by channel; InvalidArgument naming the field
// for a channel lease whose JSON lacks what the schedule needs.
Result<std::optional<PayLease>> DecodePayLease(const boost::json::value& lease);

// What `grid pay` does not take on the broker's word before it signs
// anything: the lease's price is the one the renter signed (the order's
// EIP-712 signature recovers to the renter, on the channel's chain), and
// the voucher interval is the one the broker publishes for every lease
// (GET /v1/channels/config; `interval_ms` 0 skips that check).
// PermissionDenied / Conflict saying which.
Status CheckTerms(const PayLease& l, int64_t interval_ms);

// The most `grid pay` signs for a lease it already paid in this process:
// what it signed then, plus the lease's price for the time since and one
// interval ahead. A broker whose schedule runs faster than the clock
// (a start moved back, a price raised) is refused, not paid.
Micros MostToSign(const PayLease& l, Micros signed_before, UnixMs signed_at_ms, UnixMs now_ms);

// The schedule's terms, exactly as market::TermsOf computes them for the
// broker and the agent.
market::ChannelTerms TermsOfPayLease(const PayLease& l);

struct DueVoucher {
  int64_t index = 0;  // the interval it pays through
  Micros amount = 0;  // cumulative, micro-USD = the token's base units
};

// The voucher to sign at `now_ms`: the one for the interval now falls in,
// when it is above the best voucher accepted. nullopt when nothing is owed
// (the lease is not running, or the accepted voucher already pays this
// far). An error when the due voucher must not be signed: the deposit less
// the margin does not cover it (top the channel up), or the channel expires
// too soon for the provider to redeem it (move its expiry later); the
// message says which.
Result<std::optional<DueVoucher>> NextVoucher(const PayLease& l, UnixMs now_ms);

// Signs `due` for the lease's channel with `key`, which must be the
// channel's signer (PermissionDenied naming both addresses otherwise).
Result<crypto::Voucher> SignDue(const PayLease& l, const crypto::PrivateKey& key, const DueVoucher& due);

}  // namespace grid::cli
