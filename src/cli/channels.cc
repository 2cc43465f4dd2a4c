// `grid channels …`: payment channels from the command line (issue 6). The
// renter opens a channel to a provider, signs cumulative vouchers, and gets
// the rest back (refund after expiry, or start-close … finish-close); the
// provider redeems vouchers and closes. Every command talks to the chain
// directly with the caller's key; the broker only says where the contract,
// the token and a node are (GET /v1/channels/config) and never holds the
// money.
#include "cli/channels.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chain/channel_client.h"
#include "chain/channel_config.h"
#include "chain/rpc/json_rpc_chain.h"
#include "cli/common.h"
#include "core/clock.h"
#include "core/money.h"
#include "crypto/hex.h"
#include "crypto/voucher.h"
#include "market/channel_policy.h"

namespace grid::cli {
namespace json = boost::json;

namespace {

using Ctx = ChannelsContext;

// What the user pins instead of trusting the broker: the contract (it is
// what `open` approves to pull the deposit) and the node.
struct Pins {
  std::string contract;  // --contract / GRID_CHANNELS_CONTRACT
  std::string rpc;       // --rpc / GRID_CHAIN_RPC
};
Pins& pins() {
  static Pins p;
  return p;
}

// The pins outside `grid channels` (whose options CLI11 parses only when it
// runs): `grid leases create --pay channel` honours the same variables.
std::string PinnedContract() {
  if (!pins().contract.empty()) return pins().contract;
  const char* e = std::getenv("GRID_CHANNELS_CONTRACT");
  return e ? e : "";
}
std::string PinnedRpc() {
  if (!pins().rpc.empty()) return pins().rpc;
  const char* e = std::getenv("GRID_CHAIN_RPC");
  return e ? e : "";
}

// The broker's GET /v1/channels/config, checked against the pins: a broker
// (or whoever sits between it and us on plain http) must not be able to
// point the CLI at another contract than the one the user chose.
Result<chain::ChannelsConfig> Config(client::BrokerClient& c) {
  GRID_ASSIGN_OR_RETURN(json::value raw, c.Call("GET", "/v1/channels/config"));
  auto cfg = chain::ParseChannelsConfig(raw);
  if (!cfg.ok()) return Status(cfg.status().code(), "the broker's " + cfg.status().message());
  if (const std::string pin = PinnedContract(); !pin.empty()) {
    GRID_ASSIGN_OR_RETURN(crypto::Address pinned, crypto::ParseAddress(pin));
    if (pinned != cfg->contract)
      return Status(Code::kConflict, "the broker names the channel contract " + cfg->contract.ToChecksumHex() +
                                         ", not the one you pinned (--contract " + pinned.ToChecksumHex() + ")");
  }
  return *cfg;
}

Result<Ctx> Connect(const Globals& g) {
  GRID_ASSIGN_OR_RETURN(auto c, Client(g));
  return ConnectChannels(*c);
}

Result<chain::channels::ChannelId> ParseChannelId(const std::string& text) {
  chain::channels::ChannelId id{};
  if (text.size() != 66 || text.rfind("0x", 0) != 0)
    return InvalidArgument("channel id: expected 0x and 64 hex digits, got \"" + text + "\"");
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(text, id, "channel id"));
  return id;
}

// A token amount in USD (the stablecoin has 6 decimals: base units are
// micro-USD).
Result<Micros> ParseAmount(const std::string& text, bool allow_zero = false) {
  GRID_ASSIGN_OR_RETURN(Micros m, ParseMoney(text, "amount"));
  if (m < 0 || (m == 0 && !allow_zero)) return InvalidArgument("amount: must be greater than 0, got " + text);
  return m;
}

json::object StateJson(const std::string& id, const chain::channels::ChannelState& s) {
  json::object o{{"channel", id}, {"open", s.exists}};
  if (!s.exists) return o;
  o["renter"] = s.renter.ToChecksumHex();
  o["provider"] = s.provider.ToChecksumHex();
  o["token"] = s.token.ToChecksumHex();
  o["signer"] = s.signer.ToChecksumHex();
  o["deposit"] = TokenMoney(s.deposit);
  o["paid"] = TokenMoney(s.paid);
  o["expiry"] = ChainTimeText(s.expiry_s);
  o["close_at"] = s.close_at_s ? json::value(ChainTimeText(s.close_at_s)) : json::value(nullptr);
  return o;
}

// Checks a voucher against the channel before it is sent: the contract
// would refuse a wrong signer too, but cannot say whose signature it was.
Status CheckVoucher(const Ctx& ctx, const chain::channels::ChannelId& id, Micros amount, const crypto::Signature& sig) {
  GRID_ASSIGN_OR_RETURN(chain::channels::ChannelState st, ctx.client->Get(id));
  if (!st.exists) return NotFound("channel " + crypto::HexEncode(id) + " is not open (closed, or never opened)");
  Status ok = crypto::VerifyVoucher(ctx.chain_id, ctx.contract, id, static_cast<uint64_t>(amount), sig, st.signer);
  if (!ok.ok()) return InvalidArgument("voucher: " + ok.message());
  return Status::Ok();
}

void PrintSent(const Globals& g, const std::string& what, json::object o) {
  if (g.json) PrintJson(o);
  else std::printf("%s (tx %s)\n", what.c_str(), Str(o, "tx_hash").c_str());
}

}  // namespace

Result<ChannelsContext> ConnectChannels(client::BrokerClient& c) {
  Ctx ctx;
  GRID_ASSIGN_OR_RETURN(chain::ChannelsConfig cfg, Config(c));
  ctx.contract = cfg.contract;
  ctx.chain_id = cfg.chain_id;
  ctx.token = cfg.token;
  const std::string pinned_rpc = PinnedRpc();
  const std::string rpc = pinned_rpc.empty() ? cfg.rpc_url : pinned_rpc;
  GRID_ASSIGN_OR_RETURN(ctx.node, chain::JsonRpcChain::Create(rpc));
  GRID_RETURN_IF_ERROR(chain::CheckChannelsNode(*ctx.node, cfg, rpc));
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c.Key());
  ctx.client = std::make_unique<chain::ChannelClient>(*ctx.node, key, ctx.contract,
                                                      chain::ChannelClientOptions{.chain_id = ctx.chain_id});
  return ctx;
}

Status CheckTokenBalance(ChannelsContext& ctx, Micros amount) {
  GRID_ASSIGN_OR_RETURN(chain::U256 have, chain::Erc20BalanceOf(*ctx.node, ctx.token, ctx.client->address()));
  if (have < TokenUnits(amount))
    return Status(Code::kInsufficientFunds, "your address " + ctx.client->address().ToChecksumHex() + " holds " +
                                                TokenMoney(have) + " of the token, less than the deposit " +
                                                FormatMoney(amount));
  return Status::Ok();
}

chain::U256 TokenUnits(Micros m) { return chain::U256(static_cast<uint64_t>(m)); }

// The deposit fits in int64 micro-USD for any channel this CLI opened
// (uint96 on chain allows more: those are shown in base units).
std::string TokenMoney(const chain::U256& v) {
  auto u = v.ToUint64();
  if (!u || *u > static_cast<uint64_t>(INT64_MAX)) return v.ToDecimal() + " base units";
  return FormatMoney(static_cast<Micros>(*u));
}

std::string ChainTimeText(uint64_t unix_s) { return FormatTime(static_cast<UnixMs>(unix_s) * 1000); }

Result<int64_t> ParseDurationS(const std::string& text, const std::string& what) {
  auto bad = [&] {
    return InvalidArgument(what + ": expected a whole number and a unit (s, m, h, d), e.g. 24h; got \"" + text + "\"");
  };
  if (text.size() < 2) return bad();
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return bad();
  }
  int64_t n = 0;
  const char* end = text.data() + text.size() - 1;
  auto r = std::from_chars(text.data(), end, n);
  if (r.ec != std::errc() || r.ptr != end || n <= 0) return bad();
  // Beyond the contract's uint48 seconds long before int64 overflows.
  if (n > (int64_t{1} << 40) / unit) return InvalidArgument(what + ": " + text + " is too long");
  return n * unit;
}

std::string RecoverDepositHint(const std::string& channel_id, uint64_t expiry_s) {
  return "get the deposit back with `grid channels start-close " + channel_id +
         "` and, one hour later, `grid channels finish-close " + channel_id + "` (or `grid channels refund " +
         channel_id + "` from " + ChainTimeText(expiry_s) + ")";
}

Result<crypto::Address> ChannelPayeeOf(const json::value& offer) {
  const std::string payee = Str(offer, "channel_payee");
  if (payee.empty())
    return Status(Code::kConflict, "offer " + Str(offer, "id") +
                                       ": its host does not accept payment by channel (no channel_payee); "
                                       "rent it without --pay channel, or pick another offer");
  auto addr = crypto::ParseAddress(payee);
  if (!addr.ok()) return InvalidArgument("offer " + Str(offer, "id") + ": channel_payee: " + addr.status().message());
  return *addr;
}

Result<Micros> ChannelLeaseDeposit(Micros price_per_hour, int64_t interval_ms, std::optional<Micros> requested) {
  GRID_ASSIGN_OR_RETURN(Micros margin, market::ChannelMargin(price_per_hour, interval_ms));
  GRID_ASSIGN_OR_RETURN(Micros minimum, market::DepositFor(price_per_hour, kLeaseChannelMinHoldMs, margin));
  if (!requested) return market::DepositFor(price_per_hour, kLeaseChannelDefaultHoldMs, margin);
  if (*requested < minimum)
    return InvalidArgument("--deposit " + FormatMoney(*requested) + " is below what the broker requires: " +
                           FormatMoney(minimum) + " (10 minutes at " + FormatMoney(price_per_hour) +
                           "/h plus one voucher interval's margin)");
  return *requested;
}

Status CheckLeaseChannelExpiry(int64_t expiry_in_s) {
  const int64_t min_s = (kLeaseChannelMinHoldMs + market::kChannelExpiryMarginMs) / 1000;
  if (expiry_in_s < min_s)
    return InvalidArgument("--channel-expiry: the broker needs the channel open at least " +
                           std::to_string(min_s / 60) +
                           " minutes (10 minutes of the lease + the provider's 5 minutes to redeem)");
  return Status::Ok();
}

int64_t VoucherIntervalMs(const json::value& config) {
  const json::object* o = config.if_object();
  const json::value* v = o ? o->if_contains("interval_ms") : nullptr;
  if (v && v->is_int64() && v->get_int64() > 0) return v->get_int64();
  return market::kDefaultVoucherIntervalMs;  // a broker from before the interval was published
}

Result<LeaseChannel> OpenLeaseChannel(client::BrokerClient& c, const LeaseChannelRequest& req, bool progress) {
  GRID_RETURN_IF_ERROR(CheckLeaseChannelExpiry(req.expiry_in_s));
  GRID_ASSIGN_OR_RETURN(ChannelsContext ctx, ConnectChannels(c));
  crypto::Address signer = ctx.client->address();
  if (!req.signer_key.empty()) {
    // Decrypted, not read from the file's "address" field: a wrong signer
    // would make every voucher of the channel worthless.
    auto key = client::LoadKey(req.signer_key);
    if (!key.ok()) return Status(key.status().code(), "--signer-key " + req.signer_key + ": " + key.status().message());
    signer = crypto::AddressOf(*key);
  }
  GRID_RETURN_IF_ERROR(CheckTokenBalance(ctx, req.deposit));
  GRID_ASSIGN_OR_RETURN(uint64_t now_s, ctx.client->ChainTime());
  const uint64_t expiry = now_s + static_cast<uint64_t>(req.expiry_in_s);
  if (progress)
    std::fprintf(stderr, "opening a channel: %s to %s (approve, then open; waiting for both to be mined)\n",
                 FormatMoney(req.deposit).c_str(), req.payee.ToChecksumHex().c_str());
  GRID_ASSIGN_OR_RETURN(auto opened, ctx.client->Open(req.payee, ctx.token, TokenUnits(req.deposit), expiry, signer));
  const auto& e = opened.event;
  auto deposit = e.deposit.ToUint64();
  return LeaseChannel{.id = crypto::HexEncode(e.id),
                      .payee = e.provider,
                      .signer = e.signer,
                      .deposit = deposit ? static_cast<Micros>(*deposit) : req.deposit,
                      .expiry_s = e.expiry_s,
                      .tx_hash = crypto::HexEncode(opened.tx_hash)};
}

void AddChannels(CLI::App& app, Globals& g, Run& run) {
  auto* ch = app.add_subcommand("channels", "Payment channels: pay a provider by signed vouchers, on chain, "
                                            "without the broker holding the money");
  ch->require_subcommand(1);
  ch->add_option("--contract", pins().contract,
                 "The PaymentChannels address you trust; refuse a broker that names another")
      ->envname("GRID_CHANNELS_CONTRACT");
  ch->add_option("--rpc", pins().rpc, "Your own EVM node (default: the one the broker names)")->envname("GRID_CHAIN_RPC");
  static std::string provider, amount, id, sig, signer;
  static double hours = 24;

  auto* op = ch->add_subcommand("open", "Deposit AMOUNT into a new channel to PROVIDER (approve + open, from your key)");
  op->add_option("provider", provider, "The provider's address")->required();
  op->add_option("amount", amount, "Deposit in USD, e.g. 10 or 2.50")->required();
  op->add_option("--hours", hours, "Hours until you may refund what is not paid (default 24)")
      ->check(CLI::Range(0.01, 24.0 * 366));
  op->add_option("--signer", signer, "Address whose vouchers pay (a session key); default: your own");
  op->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(crypto::Address to, crypto::ParseAddress(provider));
      GRID_ASSIGN_OR_RETURN(Micros deposit, ParseAmount(amount));
      GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
      crypto::Address who = ctx.client->address();
      if (!signer.empty()) {
        GRID_ASSIGN_OR_RETURN(who, crypto::ParseAddress(signer));
      }
      GRID_RETURN_IF_ERROR(CheckTokenBalance(ctx, deposit));
      GRID_ASSIGN_OR_RETURN(uint64_t now_s, ctx.client->ChainTime());
      const uint64_t expiry = now_s + static_cast<uint64_t>(hours * 3600);
      GRID_ASSIGN_OR_RETURN(auto opened, ctx.client->Open(to, ctx.token, TokenUnits(deposit), expiry, who));
      const auto& e = opened.event;
      json::object o{{"channel", crypto::HexEncode(e.id)},
                     {"tx_hash", crypto::HexEncode(opened.tx_hash)},
                     {"renter", e.renter.ToChecksumHex()},
                     {"provider", e.provider.ToChecksumHex()},
                     {"token", e.token.ToChecksumHex()},
                     {"signer", e.signer.ToChecksumHex()},
                     {"deposit", TokenMoney(e.deposit)},
                     {"expiry", ChainTimeText(e.expiry_s)}};
      if (g.json) PrintJson(o);
      else if (g.quiet) std::printf("%s\n", Str(o, "channel").c_str());
      else
        std::printf("channel %s: %s to %s, refundable from %s (tx %s)\n", Str(o, "channel").c_str(),
                    TokenMoney(e.deposit).c_str(), e.provider.ToChecksumHex().c_str(),
                    ChainTimeText(e.expiry_s).c_str(),
                    Str(o, "tx_hash").c_str());
      return Status::Ok();
    };
  });

  static double top_hours = 0;
  auto* tu = ch->add_subcommand("top-up", "Renter: add AMOUNT to a channel's deposit and/or move its expiry later");
  tu->add_option("id", id, "Channel id (0x…)")->required();
  tu->add_option("amount", amount, "USD to add (0: only move the expiry)")->required();
  tu->add_option("--hours", top_hours, "Refundable from this many hours from now (default: the expiry stays)")
      ->check(CLI::Range(0.01, 24.0 * 366));
  tu->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
      GRID_ASSIGN_OR_RETURN(Micros add, ParseAmount(amount, /*allow_zero=*/true));
      GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
      GRID_ASSIGN_OR_RETURN(auto st, ctx.client->Get(cid));
      if (!st.exists) return NotFound("channel " + id + " is not open (closed, or never opened)");
      uint64_t expiry = st.expiry_s;
      if (top_hours > 0) {
        GRID_ASSIGN_OR_RETURN(uint64_t now_s, ctx.client->ChainTime());
        expiry = std::max(expiry, now_s + static_cast<uint64_t>(top_hours * 3600));
      }
      if (add == 0 && expiry == st.expiry_s) return InvalidArgument("top-up: nothing to do (amount 0 and no later --hours)");
      GRID_ASSIGN_OR_RETURN(chain::Receipt r, ctx.client->TopUp(cid, st.token, TokenUnits(add), expiry));
      GRID_ASSIGN_OR_RETURN(auto after, ctx.client->Get(cid));
      PrintSent(g, "deposit " + TokenMoney(after.deposit) + ", refundable from " + ChainTimeText(after.expiry_s),
                json::object{{"channel", id},
                             {"tx_hash", crypto::HexEncode(r.tx_hash)},
                             {"deposit", TokenMoney(after.deposit)},
                             {"expiry", ChainTimeText(after.expiry_s)}});
      return Status::Ok();
    };
  });

  auto* sh = ch->add_subcommand("show", "A channel as the contract holds it");
  sh->add_option("id", id, "Channel id (0x…)")->required();
  sh->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
      GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
      GRID_ASSIGN_OR_RETURN(auto st, ctx.client->Get(cid));
      json::object o = StateJson(id, st);
      if (g.json) {
        PrintJson(o);
      } else if (!st.exists) {
        std::printf("channel %s: not open (closed, or never opened)\n", id.c_str());
      } else {
        std::printf("channel %s\n  renter    %s\n  provider  %s\n  signer    %s\n  deposit   %s\n  paid      %s\n"
                    "  refundable from %s\n",
                    id.c_str(), Str(o, "renter").c_str(), Str(o, "provider").c_str(), Str(o, "signer").c_str(),
                    Str(o, "deposit").c_str(), Str(o, "paid").c_str(), Str(o, "expiry").c_str());
        if (st.close_at_s) std::printf("  renter's close final at %s\n", Str(o, "close_at").c_str());
      }
      return Status::Ok();
    };
  });

  auto* vo = ch->add_subcommand("voucher", "Sign a voucher paying AMOUNT in total (cumulative) on a channel");
  vo->add_option("id", id, "Channel id (0x…)")->required();
  vo->add_option("amount", amount, "Cumulative amount in USD")->required();
  vo->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
      GRID_ASSIGN_OR_RETURN(Micros cumulative, ParseAmount(amount));
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(chain::ChannelsConfig cfg, Config(*c));
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c->Key());
      GRID_ASSIGN_OR_RETURN(crypto::Signature s, crypto::SignVoucher(key, cfg.chain_id, cfg.contract, cid,
                                                                     static_cast<uint64_t>(cumulative)));
      std::string hex = crypto::HexEncode(s);
      if (g.json) PrintJson(json::object{{"channel", id}, {"amount", FormatMoney(cumulative)}, {"signature", hex}});
      else std::printf("%s\n", hex.c_str());
      return Status::Ok();
    };
  });

  auto* rd = ch->add_subcommand("redeem", "Pay the provider a voucher's AMOUNT less what it was paid (anyone may send it)");
  rd->add_option("id", id, "Channel id (0x…)")->required();
  rd->add_option("amount", amount, "The voucher's cumulative amount in USD")->required();
  rd->add_option("signature", sig, "The voucher's signature (0x…, 65 bytes)")->required();
  rd->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
      GRID_ASSIGN_OR_RETURN(Micros cumulative, ParseAmount(amount));
      GRID_ASSIGN_OR_RETURN(crypto::Signature s, crypto::ParseSignature(sig));
      GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
      GRID_RETURN_IF_ERROR(CheckVoucher(ctx, cid, cumulative, s));
      GRID_ASSIGN_OR_RETURN(chain::Receipt r,
                            ctx.client->Send(chain::channels::EncodeRedeem(cid, TokenUnits(cumulative), s)));
      GRID_ASSIGN_OR_RETURN(auto st, ctx.client->Get(cid));
      PrintSent(g, "redeemed: paid " + TokenMoney(st.paid) + " in total",
                json::object{
                    {"channel", id}, {"tx_hash", crypto::HexEncode(r.tx_hash)}, {"paid", TokenMoney(st.paid)}});
      return Status::Ok();
    };
  });

  static std::string close_amount, close_sig;
  static bool as_paid = false;
  auto* cl = ch->add_subcommand("close", "Provider: end the channel, paid AMOUNT by the voucher, the rest refunded");
  cl->add_option("id", id, "Channel id (0x…)")->required();
  cl->add_option("amount", close_amount, "The last voucher's cumulative amount in USD");
  cl->add_option("signature", close_sig, "The last voucher's signature");
  cl->add_flag("--as-paid", as_paid, "Close without a voucher: what was redeemed is all you are paid");
  cl->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
      if (close_amount.empty() != close_sig.empty())
        return InvalidArgument("close: give both AMOUNT and SIGNATURE of the last voucher, or neither");
      if (close_amount.empty() && !as_paid)
        return InvalidArgument("close: without a voucher you give up anything not yet redeemed; say --as-paid");
      if (!close_amount.empty() && as_paid) return InvalidArgument("close: --as-paid takes no voucher");
      Micros cumulative = 0;
      crypto::Signature s{};
      if (!close_amount.empty()) {
        GRID_ASSIGN_OR_RETURN(cumulative, ParseAmount(close_amount));
        GRID_ASSIGN_OR_RETURN(s, crypto::ParseSignature(close_sig));
      }
      GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
      std::span<const uint8_t> sig_bytes;
      if (!close_amount.empty()) {
        GRID_RETURN_IF_ERROR(CheckVoucher(ctx, cid, cumulative, s));
        sig_bytes = s;
      }
      GRID_ASSIGN_OR_RETURN(chain::Receipt r,
                            ctx.client->Send(chain::channels::EncodeClose(cid, TokenUnits(cumulative), sig_bytes)));
      PrintSent(g, "closed", json::object{{"channel", id}, {"tx_hash", crypto::HexEncode(r.tx_hash)}});
      return Status::Ok();
    };
  });

  struct RenterCall {
    const char* name;
    const char* help;
    std::vector<uint8_t> (*encode)(const chain::channels::ChannelId&);
  };
  static const RenterCall kRenterCalls[] = {
      {"refund", "Renter, from the expiry on: everything not paid comes back", chain::channels::EncodeRefund},
      {"start-close", "Renter: start a close that is final after the challenge window (1 hour)",
       chain::channels::EncodeStartClose},
      {"finish-close", "Renter, after the challenge window: everything not paid comes back",
       chain::channels::EncodeFinishClose},
  };
  for (const RenterCall& call : kRenterCalls) {
    auto* sub = ch->add_subcommand(call.name, call.help);
    sub->add_option("id", id, "Channel id (0x…)")->required();
    sub->callback([&g, &run, &call] {
      run = [&g, &call]() -> Status {
        GRID_ASSIGN_OR_RETURN(auto cid, ParseChannelId(id));
        GRID_ASSIGN_OR_RETURN(Ctx ctx, Connect(g));
        GRID_ASSIGN_OR_RETURN(chain::Receipt r, ctx.client->Send(call.encode(cid)));
        json::object o{{"channel", id}, {"tx_hash", crypto::HexEncode(r.tx_hash)}};
        if (std::string_view(call.name) == "start-close") {
          GRID_ASSIGN_OR_RETURN(auto st, ctx.client->Get(cid));
          o["close_at"] = st.close_at_s ? json::value(ChainTimeText(st.close_at_s)) : json::value(nullptr);
        }
        PrintSent(g, std::string(call.name) + " done", std::move(o));
        return Status::Ok();
      };
    });
  }
}

}  // namespace grid::cli
