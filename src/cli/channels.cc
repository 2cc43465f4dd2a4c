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
#include <cstdio>
#include <string>

#include "chain/channel_client.h"
#include "chain/rpc/json_rpc_chain.h"
#include "cli/common.h"
#include "core/clock.h"
#include "core/money.h"
#include "crypto/hex.h"
#include "crypto/voucher.h"

namespace grid::cli {
namespace json = boost::json;

namespace {

// What a channels command needs: the broker's view of the chain, a node,
// and the caller's key.
struct Ctx {
  uint64_t chain_id = 0;
  crypto::Address contract, token;
  std::unique_ptr<chain::JsonRpcChain> node;
  std::unique_ptr<chain::ChannelClient> client;
};

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

// The broker's GET /v1/channels/config, checked against the pins: a broker
// (or whoever sits between it and us on plain http) must not be able to
// point the CLI at another contract than the one the user chose.
Result<json::value> Config(client::BrokerClient& c, crypto::Address* contract, uint64_t* chain_id) {
  GRID_ASSIGN_OR_RETURN(json::value cfg, c.Call("GET", "/v1/channels/config"));
  GRID_ASSIGN_OR_RETURN(*contract, crypto::ParseAddress(Str(cfg, "contract")));
  *chain_id = cfg.as_object().at("chain_id").to_number<uint64_t>();
  if (!pins().contract.empty()) {
    GRID_ASSIGN_OR_RETURN(crypto::Address pinned, crypto::ParseAddress(pins().contract));
    if (pinned != *contract)
      return Status(Code::kConflict, "the broker names the channel contract " + contract->ToChecksumHex() +
                                         ", not the one you pinned (--contract " + pinned.ToChecksumHex() + ")");
  }
  return cfg;
}

Result<Ctx> Connect(const Globals& g) {
  GRID_ASSIGN_OR_RETURN(auto c, Client(g));
  Ctx ctx;
  GRID_ASSIGN_OR_RETURN(json::value cfg, Config(*c, &ctx.contract, &ctx.chain_id));
  GRID_ASSIGN_OR_RETURN(ctx.token, crypto::ParseAddress(Str(cfg, "token")));
  const std::string rpc = pins().rpc.empty() ? Str(cfg, "rpc_url") : pins().rpc;
  GRID_ASSIGN_OR_RETURN(ctx.node, chain::JsonRpcChain::Create(rpc));
  GRID_ASSIGN_OR_RETURN(uint64_t node_chain, ctx.node->ChainId());
  if (node_chain != ctx.chain_id)
    return Status(Code::kConflict, "the node at " + rpc + " is chain " + std::to_string(node_chain) +
                                       ", the broker's channels are on chain " + std::to_string(ctx.chain_id));
  GRID_ASSIGN_OR_RETURN(uint8_t decimals, chain::Erc20Decimals(*ctx.node, ctx.token));
  if (decimals != 6)
    return Status(Code::kConflict, "the token " + ctx.token.ToChecksumHex() + " has " + std::to_string(decimals) +
                                       " decimals; amounts here are USD with 6");
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c->Key());
  ctx.client = std::make_unique<chain::ChannelClient>(*ctx.node, key, ctx.contract,
                                                      chain::ChannelClientOptions{.chain_id = ctx.chain_id});
  return ctx;
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

chain::U256 Units(Micros m) { return chain::U256(static_cast<uint64_t>(m)); }

// Base units back to a money string; the deposit fits in int64 micro-USD for
// any channel this CLI opened (uint96 on chain allows more).
std::string Money(const chain::U256& v) {
  auto u = v.ToUint64();
  if (!u || *u > static_cast<uint64_t>(INT64_MAX)) return v.ToDecimal() + " base units";
  return FormatMoney(static_cast<Micros>(*u));
}

std::string TimeOf(uint64_t unix_s) { return FormatTime(static_cast<UnixMs>(unix_s) * 1000); }

json::object StateJson(const std::string& id, const chain::channels::ChannelState& s) {
  json::object o{{"channel", id}, {"open", s.exists}};
  if (!s.exists) return o;
  o["renter"] = s.renter.ToChecksumHex();
  o["provider"] = s.provider.ToChecksumHex();
  o["token"] = s.token.ToChecksumHex();
  o["signer"] = s.signer.ToChecksumHex();
  o["deposit"] = Money(s.deposit);
  o["paid"] = Money(s.paid);
  o["expiry"] = TimeOf(s.expiry_s);
  o["close_at"] = s.close_at_s ? json::value(TimeOf(s.close_at_s)) : json::value(nullptr);
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
      GRID_ASSIGN_OR_RETURN(chain::U256 have, chain::Erc20BalanceOf(*ctx.node, ctx.token, ctx.client->address()));
      if (have < Units(deposit))
        return Status(Code::kInsufficientFunds, "amount: your address holds " + Money(have) +
                                                    " of the token, less than the deposit " + FormatMoney(deposit));
      GRID_ASSIGN_OR_RETURN(uint64_t now_s, ctx.client->ChainTime());
      const uint64_t expiry = now_s + static_cast<uint64_t>(hours * 3600);
      GRID_ASSIGN_OR_RETURN(auto opened, ctx.client->Open(to, ctx.token, Units(deposit), expiry, who));
      const auto& e = opened.event;
      json::object o{{"channel", crypto::HexEncode(e.id)},
                     {"tx_hash", crypto::HexEncode(opened.tx_hash)},
                     {"renter", e.renter.ToChecksumHex()},
                     {"provider", e.provider.ToChecksumHex()},
                     {"token", e.token.ToChecksumHex()},
                     {"signer", e.signer.ToChecksumHex()},
                     {"deposit", Money(e.deposit)},
                     {"expiry", TimeOf(e.expiry_s)}};
      if (g.json) PrintJson(o);
      else if (g.quiet) std::printf("%s\n", Str(o, "channel").c_str());
      else
        std::printf("channel %s: %s to %s, refundable from %s (tx %s)\n", Str(o, "channel").c_str(),
                    Money(e.deposit).c_str(), e.provider.ToChecksumHex().c_str(), TimeOf(e.expiry_s).c_str(),
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
      GRID_ASSIGN_OR_RETURN(chain::Receipt r, ctx.client->TopUp(cid, st.token, Units(add), expiry));
      GRID_ASSIGN_OR_RETURN(auto after, ctx.client->Get(cid));
      PrintSent(g, "deposit " + Money(after.deposit) + ", refundable from " + TimeOf(after.expiry_s),
                json::object{{"channel", id},
                             {"tx_hash", crypto::HexEncode(r.tx_hash)},
                             {"deposit", Money(after.deposit)},
                             {"expiry", TimeOf(after.expiry_s)}});
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
      crypto::Address contract;
      uint64_t chain_id = 0;
      GRID_RETURN_IF_ERROR(Config(*c, &contract, &chain_id).status());
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c->Key());
      GRID_ASSIGN_OR_RETURN(crypto::Signature s,
                            crypto::SignVoucher(key, chain_id, contract, cid, static_cast<uint64_t>(cumulative)));
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
      GRID_ASSIGN_OR_RETURN(chain::Receipt r, ctx.client->Send(chain::channels::EncodeRedeem(cid, Units(cumulative), s)));
      GRID_ASSIGN_OR_RETURN(auto st, ctx.client->Get(cid));
      PrintSent(g, "redeemed: paid " + Money(st.paid) + " in total",
                json::object{{"channel", id}, {"tx_hash", crypto::HexEncode(r.tx_hash)}, {"paid", Money(st.paid)}});
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
                            ctx.client->Send(chain::channels::EncodeClose(cid, Units(cumulative), sig_bytes)));
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
          o["close_at"] = st.close_at_s ? json::value(TimeOf(st.close_at_s)) : json::value(nullptr);
        }
        PrintSent(g, std::string(call.name) + " done", std::move(o));
        return Status::Ok();
      };
    });
  }
}

}  // namespace grid::cli
