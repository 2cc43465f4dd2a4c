// `grid channels …` (channels.cc), and the pieces of it that other renter
// commands share (`grid leases create --pay channel` opens a channel the
// same way `grid channels open` does).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "chain/channel_client.h"
#include "chain/rpc/json_rpc_chain.h"
#include "chain/u256.h"
#include "cli/common.h"
#include "client/broker_client.h"
#include "core/money.h"
#include "crypto/keys.h"

namespace CLI {
class App;
}

namespace grid::cli {

void AddChannels(CLI::App& app, Globals& g, Run& run);

// The broker's channel deployment, a node on its chain, and a
// ChannelClient acting with the caller's key.
struct ChannelsContext {
  uint64_t chain_id = 0;
  crypto::Address contract, token;
  std::unique_ptr<chain::JsonRpcChain> node;
  std::unique_ptr<chain::ChannelClient> client;
};

// Reads GET /v1/channels/config (refusing a contract other than the one the
// user pinned with --contract / GRID_CHANNELS_CONTRACT), connects to the node
// (the pinned --rpc / GRID_CHAIN_RPC, else the broker's rpc_url), and checks
// that the node is on the broker's chain and that the token has 6 decimals
// (amounts here are micro-USD). The client signs with `c`'s key.
Result<ChannelsContext> ConnectChannels(client::BrokerClient& c);

// InsufficientFunds when the client's address holds less than `amount` of
// the token: said before anything is signed, in USD.
Status CheckTokenBalance(ChannelsContext& ctx, Micros amount);

// Token base units (6 decimals: micro-USD) and back to a money string.
chain::U256 TokenUnits(Micros m);
std::string TokenMoney(const chain::U256& v);

// A unix-seconds time as the CLI prints times.
std::string ChainTimeText(uint64_t unix_s);

// "24h", "90m", "3600s", "2d" (a positive whole number and one unit) in
// seconds; InvalidArgument naming `what` otherwise.
Result<int64_t> ParseDurationS(const std::string& text, const std::string& what);

// How a renter gets a channel's deposit back when nothing will use it: the
// commands to run, with the channel's expiry, for the user to copy.
std::string RecoverDepositHint(const std::string& channel_id, uint64_t expiry_s);

// ---- leases paid by channel (`grid leases create --pay channel`)

// The broker's rules for a channel lease (docs/channels.md, "The broker"):
// the deposit must carry 10 minutes of the lease plus the margin (one
// voucher interval), and the channel must stay open 10 minutes plus the
// expiry margin.
inline constexpr int64_t kLeaseChannelMinHoldMs = 10 * 60'000;
inline constexpr int64_t kLeaseChannelDefaultHoldMs = 60 * 60'000;
inline constexpr int64_t kLeaseChannelDefaultExpiryS = 24 * 3600;

// The address an offer's channel is opened to (its "channel_payee": the
// host's agent); Conflict saying so when the host does not accept channel
// payments (null or absent).
Result<crypto::Address> ChannelPayeeOf(const boost::json::value& offer);

// The deposit for a lease at `price_per_hour`: `requested` if given, else
// one hour of the lease; plus the margin (one voucher interval of the
// lease), and never below what the broker requires (InvalidArgument when
// `requested` is below it, naming the minimum).
Result<Micros> ChannelLeaseDeposit(Micros price_per_hour, int64_t interval_ms, std::optional<Micros> requested);

// The voucher interval a broker's GET /v1/channels/config publishes (60 s
// when it does not).
int64_t VoucherIntervalMs(const boost::json::value& config);

// InvalidArgument when a channel expiring `expiry_in_s` from now could not
// carry a lease (the broker's minimum).
Status CheckLeaseChannelExpiry(int64_t expiry_in_s);

struct LeaseChannelRequest {
  crypto::Address payee;
  Micros deposit = 0;
  int64_t expiry_in_s = kLeaseChannelDefaultExpiryS;  // from the chain's now
  std::string signer_key;  // key file of the voucher signer; "" = the renter's key
};
struct LeaseChannel {
  std::string id;  // 0x + 64 hex
  crypto::Address payee, signer;
  Micros deposit = 0;
  uint64_t expiry_s = 0;
  std::string tx_hash;
};
// Opens the channel a lease will be paid through, from the renter's key
// (`c`'s): checks the chain and token (ConnectChannels) and the balance,
// then approve + open. With `progress`, a line on stderr says what is sent
// (two transactions to wait for).
Result<LeaseChannel> OpenLeaseChannel(client::BrokerClient& c, const LeaseChannelRequest& req, bool progress);

}  // namespace grid::cli
