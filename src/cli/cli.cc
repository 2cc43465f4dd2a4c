#include "cli/cli.h"

#include <openssl/rand.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>
#include <thread>
#include <chrono>

#include "agent/agent.h"
#include "agent/gpu/gpu_probe.h"
#include "api/codec.h"
#include "broker/server.h"
#include "chain/rpc/json_rpc_chain.h"
#include "chain/tx_sender.h"
#include "treasury/treasury.h"
#include "cli/admin.h"
#include "cli/channels.h"
#include "cli/common.h"
#include "cli/pay.h"
#include "client/broker_client.h"
#include "cli/table.h"
#include "core/clock.h"
#include "core/money.h"
#include "market/market.h"
#include "query/query.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "crypto/keystore.h"

namespace grid::cli {

using client::BrokerClient;
using client::KeyFileAddress;
using client::KeyPassword;
using client::LoadKey;
using client::LoginResult;
namespace json = boost::json;
void PrintJson(const json::value& v) { std::printf("%s\n", json::serialize(v).c_str()); }

std::string Str(const json::value& v, std::string_view key) {
  if (!v.is_object()) return "";
  const json::value* f = v.as_object().if_contains(key);
  if (!f || f->is_null()) return "";
  if (f->is_string()) return std::string(f->get_string());
  if (f->is_bool()) return f->get_bool() ? "true" : "false";
  if (f->is_double()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", f->get_double());
    return buf;
  }
  return json::serialize(*f);
}

Result<std::unique_ptr<BrokerClient>> Client(const Globals& g) { return BrokerClient::Create(g.broker, g.key); }

namespace {

std::string Gpus(const json::value& lease) {
  std::string out;
  const json::value* g = lease.as_object().if_contains("gpus");
  if (!g || !g->is_array()) return out;
  for (const auto& x : g->get_array()) out += (out.empty() ? "" : ",") + json::serialize(x);
  return out;
}

// The renter's lease whose signed order carries `nonce`, if any.
Result<std::optional<json::value>> FindLeaseByNonce(BrokerClient& c, uint64_t nonce) {
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c.Key());
  const std::string me = crypto::AddressOf(key).ToLowerHex();
  GRID_ASSIGN_OR_RETURN(json::value all, c.AuthCall("GET", "/v1/leases"));
  const json::value* leases = all.is_object() ? all.as_object().if_contains("leases") : nullptr;
  if (!leases || !leases->is_array()) return std::optional<json::value>();
  for (const json::value& l : leases->get_array()) {
    const json::value* order = l.is_object() ? l.as_object().if_contains("order") : nullptr;
    if (order && Str(l, "renter") == me && Str(*order, "nonce") == std::to_string(nonce))
      return std::optional<json::value>(l);
  }
  return std::optional<json::value>();
}

// ----------------------------------------------------------------- keys

uint64_t ScryptN() {
  // Tests may lower the cost with GRID_SCRYPT_N; real keys use ethers' default.
  if (const char* n = std::getenv("GRID_SCRYPT_N"); n && *n) return std::strtoull(n, nullptr, 10);
  return 131072;
}

Status WriteNewKey(const crypto::PrivateKey& key, const std::string& out, const Globals& g) {
  if (out.empty()) return InvalidArgument("--out FILE is required");
  GRID_ASSIGN_OR_RETURN(std::string ks, crypto::EncryptKeystore(key, KeyPassword(), ScryptN()));
  GRID_RETURN_IF_ERROR(crypto::WriteKeyFile(out, ks));
  std::string addr = crypto::AddressOf(key).ToChecksumHex();
  if (g.json) PrintJson(json::object{{"address", addr}});
  else std::printf("%s\n", addr.c_str());
  return Status::Ok();
}

void AddKeys(CLI::App& app, Globals& g, Run& run) {
  auto* keys = app.add_subcommand("keys", "Create, import and export account keys (Web3 Secret Storage v3 files)");
  keys->require_subcommand(1);
  static std::string out;
  auto* nw = keys->add_subcommand("new", "Create a new key; prints its address");
  nw->add_option("--out", out, "Key file to create (mode 0600)")->required();
  nw->callback([&] {
    run = [&] {
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey k, crypto::GeneratePrivateKey());
      return WriteNewKey(k, out, g);
    };
  });
  auto* im = keys->add_subcommand("import", "Import a hex private key read from stdin");
  im->add_option("--out", out, "Key file to create (mode 0600)")->required();
  im->callback([&] {
    run = [&] {
      std::string hex((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey k, crypto::PrivateKeyFromHex(hex));
      return WriteNewKey(k, out, g);
    };
  });
  auto* ex = keys->add_subcommand("export", "Print the private key of --key (after a warning)");
  ex->callback([&] {
    run = [&] {
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey k, LoadKey(g.key));
      std::fprintf(stderr, "grid: WARNING: anyone who sees this private key controls the account and its money\n");
      std::printf("%s\n", crypto::HexEncode(k.bytes).c_str());
      return Status::Ok();
    };
  });
  auto* ad = keys->add_subcommand("address", "Print the address of --key");
  ad->callback([&] {
    run = [&] {
      GRID_ASSIGN_OR_RETURN(std::string a, KeyFileAddress(g.key));
      GRID_ASSIGN_OR_RETURN(crypto::Address addr, crypto::ParseAddress(a));
      if (g.json) PrintJson(json::object{{"address", addr.ToChecksumHex()}});
      else std::printf("%s\n", addr.ToChecksumHex().c_str());
      return Status::Ok();
    };
  });
}

// ----------------------------------------------------------------- wallet

void PrintBalance(const json::value& b) {
  std::printf("available  %s\nheld       %s\nearned     %s\n", Str(b, "available").c_str(), Str(b, "held").c_str(),
              Str(b, "earned").c_str());
}

void PrintWithdrawals(const json::array& ws) {
  Table t({"ID", "STATE", "AMOUNT", "TO", "TX", "BLOCK", "CREATED", "ERROR"});
  for (const auto& w : ws) {
    const json::array& hashes = w.as_object().at("tx_hashes").as_array();
    std::string tx = Str(w, "mined_tx");
    if (tx.empty() && !hashes.empty()) tx = std::string(hashes.back().as_string());
    t.Add({Str(w, "id"), Str(w, "state"), Str(w, "amount"), Str(w, "to"), tx, Str(w, "mined_block"),
           Str(w, "created_at"), Str(w, "error")});
  }
  std::printf("%s", t.Render().c_str());
}

// Deposits and withdrawals on the broker's chain (issue 4).
void AddWalletChain(CLI::App* w, Globals& g, Run& run) {
  static std::string amount, to;
  static bool wait = false, no_wait = false;
  static int timeout_s = 600;
  auto* da = w->add_subcommand("deposit-address", "Where to send the stablecoin: the treasury, the token, the chain");
  da->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/wallet/deposit-address"));
      if (g.json) PrintJson(r);
      else
        std::printf("send %s (token %s, 6 decimals) on chain %s to the treasury %s\n"
                    "credited to the sending address after %s confirmation(s); `grid wallet deposit AMOUNT` does it "
                    "from your key\n",
                    "the stablecoin", Str(r, "token").c_str(), Str(r, "chain_id").c_str(), Str(r, "treasury").c_str(),
                    Str(r, "confirmations").c_str());
      return Status::Ok();
    };
  });
  auto* dp = w->add_subcommand("deposit", "Send AMOUNT of the stablecoin from your key to the treasury and wait for the credit");
  dp->add_option("amount", amount, "Amount in USD, e.g. 25 or 2.50")->required();
  dp->add_flag("--no-wait", no_wait, "Return once the transfer is sent");
  dp->add_option("--timeout", timeout_s, "Seconds to wait for the credit")->check(CLI::Range(1, 86400));
  dp->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(Micros micros, ParseMoney(amount, "amount"));
      if (micros <= 0) return InvalidArgument("amount: must be greater than 0");
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value where, c->AuthCall("GET", "/v1/wallet/deposit-address"));
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c->Key());
      GRID_ASSIGN_OR_RETURN(crypto::Address token, crypto::ParseAddress(Str(where, "token")));
      GRID_ASSIGN_OR_RETURN(crypto::Address treasury, crypto::ParseAddress(Str(where, "treasury")));
      uint64_t chain_id = where.as_object().at("chain_id").to_number<uint64_t>();
      uint64_t k = where.as_object().at("confirmations").to_number<uint64_t>();
      GRID_ASSIGN_OR_RETURN(auto node, chain::JsonRpcChain::Create(Str(where, "rpc_url")));
      GRID_ASSIGN_OR_RETURN(json::value before, c->AuthCall("GET", "/v1/wallet/balance"));
      GRID_ASSIGN_OR_RETURN(Micros avail0, ParseMoney(Str(before, "available"), "balance"));
      GRID_ASSIGN_OR_RETURN(chain::U256 have, chain::Erc20BalanceOf(*node, token, crypto::AddressOf(key)));
      if (have < chain::U256(static_cast<uint64_t>(micros)))
        return Status(Code::kInsufficientFunds, "amount: your address holds " + have.ToDecimal() +
                                                    " base units of the token, less than " + FormatMoney(micros));
      chain::TxSender sender(*node, key, chain::TxSenderOptions{.chain_id = chain_id});
      GRID_ASSIGN_OR_RETURN(chain::SignedTransaction tx,
                            sender.BuildErc20Transfer(token, treasury, chain::U256(static_cast<uint64_t>(micros))));
      GRID_ASSIGN_OR_RETURN(chain::SendResult sent, node->SendRawTransaction(tx.raw));
      if (sent.outcome != chain::SendOutcome::kAccepted && sent.outcome != chain::SendOutcome::kAlreadyKnown)
        return Status(Code::kConflict, "the node refused the transfer: " + sent.node_message);
      std::string hash = crypto::HexEncode(tx.hash);
      std::fprintf(stderr, "sent %s to %s in %s; waiting for %llu confirmation(s) and the credit\n",
                   FormatMoney(micros).c_str(), treasury.ToChecksumHex().c_str(), hash.c_str(),
                   static_cast<unsigned long long>(k));
      if (no_wait) {
        if (g.json) PrintJson(json::object{{"tx_hash", hash}, {"amount", FormatMoney(micros)}, {"credited", false}});
        else std::printf("%s\n", hash.c_str());
        return Status::Ok();
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
      std::string last;
      for (;;) {
        std::string line;
        auto receipt = node->GetTransactionReceipt(tx.hash);
        auto head = node->BlockNumber();
        if (receipt.ok() && *receipt && head.ok()) {
          if (!(*receipt)->success) return Status(Code::kConflict, "the transfer " + hash + " reverted");
          uint64_t conf = *head + 1 - (*receipt)->block_number;
          line = "mined in block " + std::to_string((*receipt)->block_number) + ", " +
                 std::to_string(std::min(conf, k)) + "/" + std::to_string(k) + " confirmations";
        } else {
          line = "waiting to be mined";
        }
        GRID_ASSIGN_OR_RETURN(json::value bal, c->AuthCall("GET", "/v1/wallet/balance"));
        GRID_ASSIGN_OR_RETURN(Micros avail, ParseMoney(Str(bal, "available"), "balance"));
        if (avail >= avail0 + micros) {
          if (g.json)
            PrintJson(json::object{{"tx_hash", hash}, {"amount", FormatMoney(micros)}, {"credited", true},
                                   {"available", Str(bal, "available")}});
          else
            std::printf("credited %s (tx %s); available %s\n", FormatMoney(micros).c_str(), hash.c_str(),
                        Str(bal, "available").c_str());
          return Status::Ok();
        }
        if (line != last) std::fprintf(stderr, "  %s\n", line.c_str());
        last = line;
        if (std::chrono::steady_clock::now() > deadline)
          return Status(Code::kUnavailable, "not credited within " + std::to_string(timeout_s) + " s (tx " + hash +
                                                "); it will be once the broker sees it " + std::to_string(k) +
                                                " blocks deep");
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    };
  });
  auto* wd = w->add_subcommand("withdraw", "Send AMOUNT (earnings first, then your balance) to your address on chain");
  wd->add_option("amount", amount, "Amount in USD")->required();
  wd->add_option("--to", to, "Destination address (default: your own)");
  wd->add_flag("--wait", wait, "Wait until it is confirmed (or failed and refunded)");
  wd->add_option("--timeout", timeout_s, "Seconds to wait with --wait")->check(CLI::Range(1, 86400));
  wd->callback([&] {
    run = [&]() -> Status {
      GRID_RETURN_IF_ERROR(ParseMoney(amount, "amount").status());
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      json::object body{{"amount", amount}};
      if (!to.empty()) body["to"] = to;
      json::value b = std::move(body);
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("POST", "/v1/wallet/withdrawals", &b));
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
      std::string id = Str(r, "id"), last;
      while (wait) {
        std::string state = Str(r, "state");
        if (state == "confirmed") break;
        if (state == "failed") return Status(Code::kConflict, "withdrawal " + id + " failed and was refunded: " + Str(r, "error"));
        if (state != last) std::fprintf(stderr, "  withdrawal %s: %s\n", id.c_str(), state.c_str());
        last = state;
        if (std::chrono::steady_clock::now() > deadline)
          return Status(Code::kUnavailable, "withdrawal " + id + " is still " + state + " after " +
                                                std::to_string(timeout_s) + " s; see `grid wallet withdrawals`");
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        GRID_ASSIGN_OR_RETURN(json::value all, c->AuthCall("GET", "/v1/wallet/withdrawals"));
        for (const auto& x : all.as_object().at("withdrawals").as_array())
          if (Str(x, "id") == id) r = x;
      }
      if (g.json) PrintJson(r);
      else PrintWithdrawals(json::array{r});
      return Status::Ok();
    };
  });
  auto* wl = w->add_subcommand("withdrawals", "Your withdrawals and their transactions");
  wl->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/wallet/withdrawals"));
      if (g.json) PrintJson(r);
      else PrintWithdrawals(r.as_object().at("withdrawals").as_array());
      return Status::Ok();
    };
  });
}

void AddWallet(CLI::App& app, Globals& g, Run& run) {
  auto* w = app.add_subcommand("wallet", "Balances, history, deposits and withdrawals, and (on a --dev broker) the faucet");
  w->require_subcommand(1);
  static std::string amount, idem;
  static int limit = 1000;
  auto* f = w->add_subcommand("faucet", "Credit test money (only on a broker started with --dev)");
  f->add_option("amount", amount, "Amount in USD, e.g. 100 or 2.50")->required();
  f->add_option("--idempotency-key", idem, "Repeat-safe request id");
  f->callback([&] {
    run = [&]() -> Status {
      GRID_RETURN_IF_ERROR(ParseMoney(amount, "amount").status());
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      // Always send an idempotency key, so a retried request credits once.
      std::string key = idem;
      if (key.empty()) {
        uint8_t r[16];
        if (RAND_bytes(r, sizeof r) != 1) return Internal("no randomness");
        key = crypto::HexEncode(r, false);
      }
      json::value body = json::object{{"amount", amount}, {"idempotency_key", key}};
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("POST", "/v1/wallet/faucet", &body));
      if (g.json) PrintJson(r);
      else PrintBalance(r);
      return Status::Ok();
    };
  });
  AddWalletChain(w, g, run);
  auto* b = w->add_subcommand("balance", "Available, held (escrow) and earned money");
  b->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/wallet/balance"));
      if (g.json) PrintJson(r);
      else PrintBalance(r);
      return Status::Ok();
    };
  });
  auto* h = w->add_subcommand("history", "Every ledger entry of this account, newest first");
  h->add_option("--limit", limit, "At most this many entries")->check(CLI::Range(1, 10000));
  h->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/wallet/history?limit=" + std::to_string(limit)));
      if (g.json) {
        PrintJson(r);
        return Status::Ok();
      }
      std::string me = Str(r, "address");
      Table t({"TIME", "KIND", "MEMO", "AMOUNT", "ACCOUNT", "LEASE", "ID"});
      for (const auto& e : r.as_object().at("entries").as_array()) {
        // Show each entry's effect on this account's spendable money: a hold
        // takes from it, a release gives back, a posted transfer moves it.
        std::string debit = Str(e, "debit"), credit = Str(e, "credit"), kind = Str(e, "kind");
        bool out = debit.ends_with(me);
        if (kind == "release") out = !out;
        t.Add({Str(e, "at"), kind, Str(e, "memo"), (out ? "-" : "+") + Str(e, "amount"),
               debit.ends_with(me) ? debit : credit, Str(e, "lease_id"), Str(e, "id")});
      }
      std::printf("%s", t.Render().c_str());
      return Status::Ok();
    };
  });
}

// ----------------------------------------------------------------- machines

void PrintMachines(const json::array& ms) {
  Table t({"ID", "GPUS", "GPU", "GPU_RAM", "GEO", "LISTED", "PRICE/GPU/H", "CHUNK", "FREE", "END_DATE", "SIMULATED"});
  for (const auto& m : ms) {
    const json::value& s = m.as_object().at("spec");
    t.Add({Str(m, "id"), Str(s, "num_gpus"), Str(s, "gpu_name"), Str(s, "gpu_ram"), Str(s, "geolocation"),
           Str(m, "listed"), Str(m, "price_gpu"), Str(m, "min_chunk"), Str(m, "free_gpus"), Str(m, "end_date"),
           Str(m, "simulated") == "true" ? "yes (simulated)" : "no"});
  }
  std::printf("%s", t.Render().c_str());
}

void AddMachines(CLI::App& app, Globals& g, Run& run) {
  auto* ms = app.add_subcommand("machines", "Register machines and list their GPUs for rent (providers)");
  ms->require_subcommand(1);
  static std::string spec, price, end_date, price_disk;
  static int64_t id = 0;
  static int min_chunk = 1;
  auto* reg = ms->add_subcommand("register", "Register a machine from a JSON spec (search-language field names)");
  reg->add_option("--spec", spec, "Spec file, e.g. {\"gpu_name\":\"RTX 4090\",\"num_gpus\":1,…}")->required();
  reg->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(std::string text, crypto::ReadFileToString(spec));
      GRID_ASSIGN_OR_RETURN(api::DecodedSpec decoded, api::DecodeMachineSpec(text));  // fail before any network
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      json::value body = json::parse(decoded.canonical_json);
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("POST", "/v1/machines", &body));
      if (g.json) PrintJson(r);
      else if (g.quiet) std::printf("%s\n", Str(r, "id").c_str());
      else PrintMachines(json::array{r});
      return Status::Ok();
    };
  });
  auto* ls = ms->add_subcommand("list", "Your machines");
  ls->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/machines"));
      if (g.json) PrintJson(r);
      else PrintMachines(r.as_object().at("machines").as_array());
      return Status::Ok();
    };
  });
  auto* lo = ms->add_subcommand("list-offer", "List a machine's free GPUs for rent at a price per GPU-hour");
  lo->add_option("machine_id", id, "Machine id")->required();
  lo->add_option("--price-gpu", price, "USD per GPU-hour, e.g. 2.10")->required();
  lo->add_option("--min-chunk", min_chunk, "Smallest GPU count rented")->check(CLI::Range(1, 999));
  lo->add_option("--end-date", end_date, "No lease runs past this date (YYYY-MM-DD or RFC 3339)");
  lo->add_option("--price-disk", price_disk, "USD per GB-month of disk");
  lo->callback([&] {
    run = [&]() -> Status {
      GRID_RETURN_IF_ERROR(ParseMoney(price, "--price-gpu").status());
      if (!price_disk.empty()) GRID_RETURN_IF_ERROR(ParseMoney(price_disk, "--price-disk").status());
      UnixMs t;
      if (!end_date.empty() && !ParseTime(end_date, &t))
        return InvalidArgument("--end-date: expected YYYY-MM-DD or an RFC 3339 time");
      json::object body{{"price_gpu", price}, {"min_chunk", min_chunk}};
      if (!end_date.empty()) body["end_date"] = end_date;
      if (!price_disk.empty()) body["price_disk"] = price_disk;
      json::value b = body;
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("PUT", "/v1/machines/" + std::to_string(id) + "/offer", &b));
      if (g.json) PrintJson(r);
      else PrintMachines(json::array{r});
      return Status::Ok();
    };
  });
  auto* rm = ms->add_subcommand("remove", "Revoke a host: no more offers, its agent is refused, its leases end");
  rm->add_option("machine_id", id, "Machine id")->required();
  rm->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("DELETE", "/v1/machines/" + std::to_string(id)));
      if (g.json) PrintJson(r);
      else std::printf("machine %s removed\n", Str(r, "id").c_str());
      return Status::Ok();
    };
  });
  auto* ul = ms->add_subcommand("unlist", "Stop offering a machine (running leases go on)");
  ul->add_option("machine_id", id, "Machine id")->required();
  ul->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("DELETE", "/v1/machines/" + std::to_string(id) + "/offer"));
      if (g.json) PrintJson(r);
      else PrintMachines(json::array{r});
      return Status::Ok();
    };
  });
}

// ----------------------------------------------------------------- offers

// "8x H100 SXM 80GB"
std::string GpusLabel(const json::value& o) { return Str(o, "num_gpus") + "x " + Str(o, "gpu_name"); }

// A number field for a table: "-" when null.
std::string Cell(const json::value& o, std::string_view key) {
  std::string s = Str(o, key);
  return s.empty() ? "-" : s;
}

void PrintOffers(const json::array& offers) {
  Table t({"ID", "GPUS", "$/H", "$/GPU-H", "GPU_RAM", "RELIABILITY", "GEO", "CUDA", "RENTABLE", "SIMULATED"});
  for (const auto& o : offers)
    t.Add({Str(o, "id"), GpusLabel(o), Str(o, "dph_total"), Str(o, "dph_per_gpu"), Cell(o, "gpu_ram"),
           Cell(o, "reliability"), Cell(o, "geolocation"), Cell(o, "cuda_vers"),
           Str(o, "rentable") == "true" ? "yes" : Str(o, "rented") == "true" ? "no (rented)" : "no",
           // Simulated GPUs are test fixtures: never let one pass for real hardware.
           Str(o, "simulated") == "true" ? "SIMULATED" : "no"});
  std::printf("%s", t.Render().c_str());
}

void PrintExplain(const json::value& ex) {
  const json::object& e = ex.as_object();
  std::printf("explain: %s offers in the market\n", Str(ex, "offers").c_str());
  if (const json::value* cs = e.if_contains("clauses"); cs && cs->is_array()) {
    size_t width = 0;
    for (const auto& c : cs->as_array()) width = std::max(width, Str(c, "clause").size() + (Str(c, "default") == "true" ? 10 : 0));
    for (const auto& c : cs->as_array()) {
      std::string name = Str(c, "clause") + (Str(c, "default") == "true" ? " (default)" : "");
      std::printf("  %-*s  excludes %s (alone %s)\n", static_cast<int>(width), name.c_str(), Str(c, "excludes").c_str(),
                  Str(c, "alone").c_str());
    }
  }
  if (const json::value* nm = e.if_contains("near_misses"); nm && nm->is_array() && !nm->as_array().empty()) {
    std::printf("nearest offers, each missing by one clause:\n");
    for (const auto& n : nm->as_array()) {
      const json::value* o = n.as_object().if_contains("offer");
      if (!o) continue;
      std::printf("  without %s: offer %s, %s at $%s/h on machine %s%s\n", Str(n, "clause").c_str(),
                  Str(*o, "id").c_str(), GpusLabel(*o).c_str(), Str(*o, "dph_total").c_str(),
                  Str(*o, "machine_id").c_str(), Str(*o, "simulated") == "true" ? " (SIMULATED)" : "");
    }
  }
  std::printf("%s\n", Str(ex, "summary").c_str());
}

void AddOffers(CLI::App& app, Globals& g, Run& run) {
  auto* os = app.add_subcommand("offers", "Find GPUs to rent");
  os->require_subcommand(1);
  static std::vector<std::string> words;
  static std::string order;
  static int limit = 64;
  static bool no_default = false, explain = false;
  auto* s = os->add_subcommand(
      "search",
      "Search offers with Vast.ai's query language: grid offers search 'gpu_name=RTX_4090 num_gpus>=4 reliability>0.98' "
      "-o 'dph,reliability-'");
  s->add_option("query", words,
                "Clauses FIELD OP VALUE, all ANDed (one quoted argument or several); defaults verified=true "
                "rentable=true rented=false are added unless -n");
  s->add_option("-o,--order", order, "Sort: comma-separated fields, a trailing '-' for descending (default dph_total)");
  s->add_option("--limit", limit, "At most this many offers (default 64)")->check(CLI::Range(0, 10000));
  s->add_flag("-n,--no-default", no_default, "Do not add the default clauses");
  s->add_flag("--explain", explain, "Say how many offers each clause excludes, and why nothing matched");
  s->callback([&] {
    run = [&]() -> Status {
      std::string text;
      for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
      // Fail on a bad query before any network, with the parser's message.
      GRID_RETURN_IF_ERROR(query::Parse(text).status());
      GRID_RETURN_IF_ERROR(query::ParseOrder(order).status());
      std::string q = "/v1/offers?q=" + net::UrlEncode(text) + "&limit=" + std::to_string(limit);
      if (!order.empty()) q += "&order=" + net::UrlEncode(order);
      if (no_default) q += "&no_default=1";
      if (explain) q += "&explain=1";
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->Call("GET", q));
      const json::object& obj = r.as_object();
      if (g.json) {
        json::object out{{"offers", obj.at("offers")}, {"total", obj.at("total")}};
        if (const json::value* ex = obj.if_contains("explain")) out["explain"] = *ex;
        PrintJson(out);
        return Status::Ok();
      }
      const json::array& offers = obj.at("offers").as_array();
      if (offers.empty()) std::printf("no offers match\n");
      else PrintOffers(offers);
      std::printf("%zu of %s offers shown; query: %s; order: %s\n", offers.size(), Str(r, "total").c_str(),
                  Str(r, "query").c_str(), Str(r, "order").c_str());
      if (const json::value* ex = obj.if_contains("explain")) PrintExplain(*ex);
      return Status::Ok();
    };
  });
}

// ----------------------------------------------------------------- leases

void PrintLeases(const json::array& ls) {
  Table t({"ID", "STATE", "END_REASON", "MACHINE", "GPUS", "$/H", "CHARGED", "BILLED_S", "STARTED", "ENDED"});
  for (const auto& l : ls)
    t.Add({Str(l, "id"), Str(l, "state"), Str(l, "end_reason"), Str(l, "machine_id"), Gpus(l),
           Str(l, "price_per_hour"), Str(l, "charged"), Str(l, "billed_seconds"), Str(l, "started_at"),
           Str(l, "ended_at")});
  std::printf("%s", t.Render().c_str());
}

// `grid leases show`: the table row, then how to reach the workload and
// what its host measured.
void PrintLeaseDetail(const json::value& l) {
  PrintLeases(json::array{l});
  const json::object& o = l.as_object();
  if (std::string m = Str(l, "message"); !m.empty()) std::printf("message: %s\n", m.c_str());
  std::printf("image: %s\n", Str(l, "image").c_str());
  if (const json::value* ssh = o.if_contains("ssh"); ssh && ssh->is_object()) {
    std::printf("ssh: %s  (host %s, port %s)\n", Str(*ssh, "command").c_str(), Str(*ssh, "host").c_str(),
                Str(*ssh, "port").c_str());
  } else if (const json::value* k = o.if_contains("ssh_key"); k && k->is_string()) {
    std::printf("ssh: not reachable yet (the host reports its port when the workload runs)\n");
  }
  if (const json::value* eps = o.if_contains("endpoints"); eps && eps->is_array()) {
    for (const auto& e : eps->as_array())
      std::printf("port %s -> %s:%s\n", Str(e, "container_port").c_str(), Str(e, "host").c_str(),
                  Str(e, "host_port").c_str());
  }
  if (const json::value* m = o.if_contains("metering"); m && m->is_object()) {
    std::printf("metering (reported by the host):");
    for (const auto& [k, v] : m->as_object()) {
      // Doubles as people write them (12.098, not Boost.JSON's 1.2098E1).
      std::string text;
      if (v.is_double()) {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, v.get_double());
        text.assign(buf, r.ptr);
      } else {
        text = v.is_string() ? std::string(v.get_string()) : json::serialize(v);
      }
      std::printf(" %s=%s", std::string(k).c_str(), text.c_str());
    }
    std::printf("\n");
  }
}

void AddLeases(CLI::App& app, Globals& g, Run& run) {
  auto* ls = app.add_subcommand("leases", "Rent GPUs, follow and stop leases");
  ls->require_subcommand(1);
  static int64_t offer = 0, id = 0;
  static int gpus = 0;
  static std::string image, state, message;
  static std::vector<std::string> env, command;
  static std::vector<int> ports;
  static std::string ssh_key_file;
  auto* cr = ls->add_subcommand("create", "Rent an offer: OFFER_ID [--gpus N] --image IMAGE [--env K=V]… [-- CMD ARGS…]");
  cr->add_option("offer_id", offer, "Offer id from `grid offers search`")->required();
  cr->add_option("command", command, "Command to run (after --)");
  cr->add_option("--gpus", gpus, "GPU count (default: the offer's)")->check(CLI::Range(1, 999));
  cr->add_option("--image", image, "Image to run ('host' runs from the host's file system)")->required();
  // One value per use: otherwise CLI11 lets a repeatable option swallow the
  // "--" that starts the command.
  cr->add_option("--env", env, "Environment variable K=V (repeatable)")->allow_extra_args(false);
  cr->add_option("-p,--port", ports, "Container TCP port to publish on the host (repeatable; podman hosts)")
      ->check(CLI::Range(1, 65535))
      ->allow_extra_args(false);
  cr->add_option("--ssh-key", ssh_key_file,
                 "OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub): the container runs an sshd for it (podman hosts); "
                 "`grid leases show` prints the ssh command");
  static std::string pay_mode = "escrow", deposit, channel_expiry, signer_key_file;
  cr->add_option("--pay", pay_mode,
                 "escrow (default: your broker balance) or channel (a payment channel from your key to the host; "
                 "run `grid pay` to sign its vouchers)")
      ->check(CLI::IsMember({"escrow", "channel"}));
  cr->add_option("--deposit", deposit, "--pay channel: USD to lock (default: 1 hour of the lease + one voucher interval as margin)");
  cr->add_option("--channel-expiry", channel_expiry,
                 "--pay channel: when what is unused becomes refundable, e.g. 24h (default), 90m, 2d");
  cr->add_option("--signer-key", signer_key_file,
                 "--pay channel: key file of a session key (holding no funds) that signs the vouchers; default: --key");
  cr->callback([&] {
    run = [&]() -> Status {
      const bool by_channel = pay_mode == "channel";
      if (!by_channel && (!deposit.empty() || !channel_expiry.empty() || !signer_key_file.empty()))
        return InvalidArgument("--deposit, --channel-expiry and --signer-key go with --pay channel");
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value o, c->Call("GET", "/v1/offers/" + std::to_string(offer)));
      GRID_ASSIGN_OR_RETURN(Micros per_gpu, ParseMoney(Str(o, "dph_per_gpu"), "offer price"));
      int n = gpus > 0 ? gpus : static_cast<int>(std::stoi(Str(o, "num_gpus")));
      auto price = CheckedMul(per_gpu, n);
      if (!price) return InvalidArgument("price overflow");
      std::string ssh_key;
      if (!ssh_key_file.empty()) {
        auto text = crypto::ReadFileToString(ssh_key_file);
        if (!text.ok()) return InvalidArgument("--ssh-key " + ssh_key_file + ": " + text.status().message());
        ssh_key = *text;
        while (!ssh_key.empty() && (ssh_key.back() == '\n' || ssh_key.back() == '\r')) ssh_key.pop_back();
        if (ssh_key.find("PRIVATE KEY") != std::string::npos)
          return InvalidArgument("--ssh-key " + ssh_key_file + ": this is a private key; give the .pub file");
        if (Status s = market::CheckSshPublicKey(ssh_key); !s.ok())
          return InvalidArgument("--ssh-key " + ssh_key_file + ": " + s.message());
      }
      // Paid by channel: the channel is opened (on chain, from the renter's
      // key) before the order is signed, so the order's 10 minutes are not
      // spent waiting for the two transactions.
      std::optional<LeaseChannel> channel;
      if (by_channel) {
        LeaseChannelRequest req;
        GRID_ASSIGN_OR_RETURN(req.payee, ChannelPayeeOf(o));
        std::optional<Micros> asked;
        if (!deposit.empty()) {
          GRID_ASSIGN_OR_RETURN(asked, ParseMoney(deposit, "--deposit"));
        }
        GRID_ASSIGN_OR_RETURN(json::value config, c->Call("GET", "/v1/channels/config"));
        GRID_ASSIGN_OR_RETURN(req.deposit, ChannelLeaseDeposit(*price, VoucherIntervalMs(config), asked));
        if (!channel_expiry.empty()) {
          GRID_ASSIGN_OR_RETURN(req.expiry_in_s, ParseDurationS(channel_expiry, "--channel-expiry"));
        }
        req.signer_key = signer_key_file;
        GRID_ASSIGN_OR_RETURN(channel, OpenLeaseChannel(*c, req, !g.json && !g.quiet));
      }
      // Sign exactly what is being bought: the offer at its current price.
      uint64_t nonce = 0;
      if (RAND_bytes(reinterpret_cast<unsigned char*>(&nonce), sizeof nonce) != 1) return Internal("no randomness");
      nonce >>= 1;  // keep it printable as a positive int64 too
      crypto::LeaseOrder order{static_cast<uint64_t>(offer), static_cast<uint32_t>(n), *price, nonce,
                               SystemClock().NowMs() / 1000 + 600};
      GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, c->Key());
      // The broker's chain id is part of the signed domain.
      GRID_ASSIGN_OR_RETURN(json::value info, c->Call("POST", "/v1/auth/nonce"));
      uint64_t chain_id = info.as_object().at("chain_id").to_number<uint64_t>();
      GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::SignDigest(key, crypto::LeaseOrderDigest(order, chain_id)));
      json::array env_a, cmd_a, ports_a;
      for (const auto& e : env) env_a.push_back(json::string(e));
      for (const auto& x : command) cmd_a.push_back(json::string(x));
      for (int p : ports) ports_a.push_back(p);
      json::value body = json::object{
          {"offer_id", offer}, {"gpus", n}, {"image", image}, {"env", env_a}, {"command", cmd_a},
          {"ports", ports_a}, {"ssh_key", ssh_key.empty() ? json::value(nullptr) : json::value(ssh_key)},
          {"order", json::object{{"offer_id", offer}, {"gpus", n}, {"price_per_hour", FormatMoney(*price)},
                                 {"nonce", std::to_string(nonce)}, {"expiry", order.expiry_unix_s},
                                 {"signature", crypto::HexEncode(sig)}}}};
      if (channel) body.as_object()["pay"] = json::object{{"channel", channel->id}};
      auto created = c->AuthCall("POST", "/v1/leases", &body);
      if (!created.ok() && created.status().code() == Code::kConflict) {
        // Sent again after a broker took it but its answer was lost (the
        // failover of a --broker list): the broker refuses the nonce it has
        // seen. The nonce is this command's own, so a lease that carries it
        // is the one this command created.
        if (auto mine = FindLeaseByNonce(*c, nonce); mine.ok() && *mine) created = std::move(**mine);
      }
      if (!created.ok() && channel)
        // The deposit is locked on chain and no lease uses it: say how to
        // get it back rather than leave the user guessing.
        return Status(created.status().code(),
                      created.status().message() + "\nthe channel " + channel->id + " was opened with " +
                          FormatMoney(channel->deposit) + " but no lease uses it; " +
                          RecoverDepositHint(channel->id, channel->expiry_s));
      GRID_ASSIGN_OR_RETURN(json::value r, std::move(created));
      if (g.json) PrintJson(r);
      else if (g.quiet) std::printf("%s\n", Str(r, "id").c_str());
      else PrintLeases(json::array{r});
      if (channel && !g.json && !g.quiet)
        std::printf("paid by channel %s: %s locked for %s, refundable from %s (tx %s)\n"
                    "now run `grid pay` and keep it running: it signs a voucher each minute, and without them the "
                    "host stops the lease\n",
                    channel->id.c_str(), FormatMoney(channel->deposit).c_str(), channel->payee.ToChecksumHex().c_str(),
                    FormatTime(static_cast<UnixMs>(channel->expiry_s) * 1000).c_str(), channel->tx_hash.c_str());
      return Status::Ok();
    };
  });
  auto* li = ls->add_subcommand("list", "Your leases (as renter or provider)");
  li->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/leases"));
      if (g.json) PrintJson(r);
      else PrintLeases(r.as_object().at("leases").as_array());
      return Status::Ok();
    };
  });
  auto show_like = [&](CLI::App* sub, std::string method, std::string suffix) {
    sub->add_option("lease_id", id, "Lease id")->required();
    sub->callback([&, method, suffix] {
      run = [&, method, suffix]() -> Status {
        GRID_ASSIGN_OR_RETURN(auto c, Client(g));
        GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall(method, "/v1/leases/" + std::to_string(id) + suffix));
        if (g.json) PrintJson(r);
        else PrintLeaseDetail(r);
        return Status::Ok();
      };
    });
  };
  show_like(ls->add_subcommand("show", "One lease"), "GET", "");
  show_like(ls->add_subcommand("stop", "Stop a lease you rent; billing stops now"), "POST", "/stop");
  static bool follow = false;
  auto* lg = ls->add_subcommand("logs", "The workload's output (stdout and stderr), relayed by its host");
  lg->add_option("lease_id", id, "Lease id")->required();
  lg->add_flag("-f,--follow", follow, "Keep printing new output until the lease ends");
  lg->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      int64_t offset = 0;
      for (;;) {
        GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/leases/" + std::to_string(id) +
                                                                     "/logs?offset=" + std::to_string(offset)));
        const json::object& o = r.as_object();
        std::string data(o.at("data").as_string());
        std::fwrite(data.data(), 1, data.size(), stdout);
        std::fflush(stdout);
        offset = o.at("next_offset").as_int64();
        if (!data.empty()) continue;  // more may be waiting
        if (!follow) return Status::Ok();
        GRID_ASSIGN_OR_RETURN(json::value l, c->AuthCall("GET", "/v1/leases/" + std::to_string(id)));
        if (Str(l, "state") == "ended") {
          // One last read: the host ships the final output before it reports the end.
          GRID_ASSIGN_OR_RETURN(json::value last, c->AuthCall("GET", "/v1/leases/" + std::to_string(id) +
                                                                          "/logs?offset=" + std::to_string(offset)));
          std::string rest(last.as_object().at("data").as_string());
          std::fwrite(rest.data(), 1, rest.size(), stdout);
          return Status::Ok();
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    };
  });
  auto* rp = ls->add_subcommand("report", "Host side: report a lease's state (running, failed, ended)");
  rp->add_option("lease_id", id, "Lease id")->required();
  rp->add_option("--state", state, "running | failed | ended")->required();
  rp->add_option("--message", message, "A note for the renter");
  rp->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      json::value body = json::object{{"state", state}, {"message", message}};
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("POST", "/v1/leases/" + std::to_string(id) + "/status", &body));
      if (g.json) PrintJson(r);
      else PrintLeases(json::array{r});
      return Status::Ok();
    };
  });
}

// ----------------------------------------------------------------- broker, login, admin

void AddBroker(CLI::App& app, Run& run) {
  static broker::ServerOptions o;
  static std::string tick = "60";
  auto* b = app.add_subcommand("broker", "Run a broker: the market, the ledger and the API");
  b->add_option("--db", o.db, "SQLite file (or sqlite:PATH), or postgres://USER@HOST:PORT/DB")->envname("GRID_DB");
  b->add_option("--listen", o.listen, "HOST:PORT to listen on (port 0 picks a free port)");
  b->add_flag("--dev", o.broker.dev, "Development mode: opens the faucet");
  b->add_option("--fee-bps", o.broker.fee_bps, "Operator take rate in basis points")->check(CLI::Range(0, 10000));
  b->add_option("--tick", tick, "Settlement interval in seconds (decimals allowed, e.g. 0.5)");
  b->add_option("--chain-id", o.broker.chain_id, "Chain id for SIWE and signed orders");
  b->add_option("--admin", o.broker.admins, "Address allowed to run the audit API (repeatable)");
  b->add_option("--threads", o.threads, "HTTP threads")->check(CLI::Range(1, 64));
  static std::string heartbeat = "10", grace = "300";
  b->add_option("--heartbeat", heartbeat, "Agents' heartbeat period in seconds (offline after 3 missed)");
  b->add_option("--host-grace", grace, "Seconds a lease survives its host being offline (then host_lost)");
  // On-chain money (issue 4).
  static treasury::TreasuryOptions chain;
  static std::string confirmations, chain_poll = "1", bump_after = "60", withdraw_min = "1",
                     withdraw_limit = "10000";
  b->add_option("--chain-rpc", chain.rpc_url, "JSON-RPC URL of an EVM node: deposits and withdrawals in --token");
  b->add_option("--token", chain.token, "The stablecoin's ERC-20 address (6 decimals)");
  b->add_option("--treasury-key", chain.key_file,
                "File with the treasury's private key (hex or keystore v3; mode 0600); default: env GRID_TREASURY_KEY");
  b->add_option("--confirmations", confirmations, "Blocks a deposit or withdrawal must be deep (default 12; 1 with --dev)");
  b->add_option("--chain-poll", chain_poll, "Seconds between looks at the chain");
  b->add_option("--channels", chain.channels, "The PaymentChannels contract's address (needs --chain-rpc)");
  static std::string channel_interval = "60";
  b->add_option("--channel-interval", channel_interval,
                "Seconds per voucher of leases paid by payment channel (one interval is also their grace)");
  b->add_option("--chain-start-block", chain.start_block, "First block a new broker scans for deposits (default: now)");
  b->add_option("--bump-after", bump_after, "Seconds before an unmined withdrawal is re-sent with higher fees");
  b->add_option("--withdraw-min", withdraw_min, "Smallest withdrawal, USD");
  b->add_option("--withdraw-daily-limit", withdraw_limit, "Most an account withdraws in 24 h, USD");
  b->callback([&] {
    run = [&]() -> Status {
      if (!chain.rpc_url.empty()) {
        if (chain.token.empty()) return InvalidArgument("--token: required with --chain-rpc");
        chain.chain_id = o.broker.chain_id;
        if (confirmations.empty()) chain.confirmations = o.broker.dev ? 1 : 12;
        else {
          GRID_ASSIGN_OR_RETURN(Micros k, ParseMoney(confirmations, "--confirmations"));
          if (k % kMicrosPerUnit != 0 || k < kMicrosPerUnit || k > 1000 * kMicrosPerUnit)
            return InvalidArgument("--confirmations: a whole number from 1 to 1000");
          chain.confirmations = static_cast<uint64_t>(k / kMicrosPerUnit);
        }
        GRID_ASSIGN_OR_RETURN(Micros poll, ParseMoney(chain_poll, "--chain-poll"));
        GRID_ASSIGN_OR_RETURN(Micros bump, ParseMoney(bump_after, "--bump-after"));
        chain.poll_ms = std::max<int64_t>(10, poll / 1000);
        chain.bump_after_ms = std::max<int64_t>(1000, bump / 1000);
        GRID_ASSIGN_OR_RETURN(o.broker.withdraw_min, ParseMoney(withdraw_min, "--withdraw-min"));
        GRID_ASSIGN_OR_RETURN(o.broker.withdraw_daily_limit, ParseMoney(withdraw_limit, "--withdraw-daily-limit"));
        o.broker.chain_enabled = true;
        o.start_chain = [](broker::Broker& b, const Clock* clock) { return treasury::StartChainApi(chain, b, clock); };
      } else if (!chain.token.empty() || !chain.key_file.empty() || !chain.channels.empty()) {
        return InvalidArgument("--token, --treasury-key and --channels need --chain-rpc");
      }
      GRID_ASSIGN_OR_RETURN(Micros interval, ParseMoney(channel_interval, "--channel-interval"));
      if (interval < 1000 * 1000 || interval > 3600 * kMicrosPerUnit)
        return InvalidArgument("--channel-interval: 1 to 3600 seconds");
      o.broker.channel_interval_ms = interval / 1000;
      GRID_ASSIGN_OR_RETURN(Micros tick_micros, ParseMoney(tick, "--tick"));  // seconds with <= 6 decimals
      o.broker.tick_ms = tick_micros / 1000;
      GRID_ASSIGN_OR_RETURN(Micros hb, ParseMoney(heartbeat, "--heartbeat"));
      GRID_ASSIGN_OR_RETURN(Micros gr, ParseMoney(grace, "--host-grace"));
      o.broker.heartbeat_ms = hb / 1000;
      o.broker.host_grace_ms = gr / 1000;
      int rc = broker::RunServer(o);
      if (rc != 0) std::exit(rc);
      return Status::Ok();
    };
  });
}

// Durations such as "90s", "30m", "24h", "7d"; a bare number is seconds.
Result<int64_t> ParseDurationSeconds(const std::string& text, std::string_view what) {
  if (text.empty()) return InvalidArgument(std::string(what) + ": empty");
  int64_t unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 's': unit = 1; digits.pop_back(); break;
    case 'm': unit = 60; digits.pop_back(); break;
    case 'h': unit = 3600; digits.pop_back(); break;
    case 'd': unit = 86400; digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
    return InvalidArgument(std::string(what) + ": expected a duration such as 90s, 30m, 24h or 7d");
  return std::stoll(digits) * unit;
}

void AddProvider(CLI::App& app, Globals& g, Run& run) {
  auto* p = app.add_subcommand("provider", "Provider tools: join tokens that enroll `grid agent` hosts");
  p->require_subcommand(1);
  auto* jt = p->add_subcommand("join-token", "Tokens that let agents enroll machines under your account");
  jt->require_subcommand(1);
  static std::string ttl = "24h", token;
  auto* cr = jt->add_subcommand("create", "Create a join token (one token serves a whole fleet)");
  cr->add_option("--ttl", ttl, "Lifetime, e.g. 24h, 7d (1 minute to 365 days)");
  cr->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(int64_t secs, ParseDurationSeconds(ttl, "--ttl"));
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      json::value body = json::object{{"ttl_seconds", secs}};
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("POST", "/v1/provider/join-tokens", &body));
      if (g.json) PrintJson(json::object{{"token", Str(r, "token")}, {"id", Str(r, "id")}, {"expires_at", Str(r, "expires_at")}});
      else std::printf("%s\n(id %s, expires %s; shown once — keep it like a password)\n", Str(r, "token").c_str(),
                       Str(r, "id").c_str(), Str(r, "expires_at").c_str());
      return Status::Ok();
    };
  });
  auto* rv = jt->add_subcommand("revoke", "Stop new enrollments with a token (enrolled hosts stay)");
  rv->add_option("token", token, "The token, or its id")->required();
  rv->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("DELETE", "/v1/provider/join-tokens/" + net::UrlEncode(token)));
      if (g.json) PrintJson(r);
      else std::printf("join token %s revoked\n", Str(r, "id").c_str());
      return Status::Ok();
    };
  });
}

void AddAgent(CLI::App& app, Globals& g, Run& run) {
  static agent::AgentOptions o;
  auto* a = app.add_subcommand("agent", "Run the provider agent on a GPU host (one per host)");
  a->add_option("--join-token", o.join_token, "Join token from `grid provider join-token create` (first run)")
      ->envname("GRID_JOIN_TOKEN");
  a->add_option("--state-dir", o.state_dir, "Machine key and workload state")->required();
  a->add_option("--simulate-gpus", o.simulate_gpus,
                "Simulated GPUs for hosts without any, e.g. 8xH100-SXM-80GB (test fixture; listed as simulated)");
  a->add_option("--runtime", o.runtime,
                "Workload runtime: process (the host's own file system, --image host) or podman (container images)")
      ->check(CLI::IsMember({"process", "podman"}));
  a->add_option("--public-host", o.public_host,
                "Address renters use to reach published ports and SSH (default: this host's address as the broker "
                "sees it)");
  a->add_option("--geolocation", o.site.geolocation, "Two-letter country code of this host");
  a->add_flag("--datacenter", o.site.datacenter, "This host is in a data center");
  a->add_option("--inet-up", o.site.inet_up_mbps, "Upload bandwidth, Mbps");
  a->add_option("--inet-down", o.site.inet_down_mbps, "Download bandwidth, Mbps");
  a->add_option("--grace", o.grace_ms, "Milliseconds between SIGTERM and SIGKILL when a lease stops");
  static std::string config;
  a->add_option("--config", config,
                "JSON file: geolocation, datacenter, inet_up, inet_down, price_gpu, min_chunk, end_date, "
                "price_disk, simulate_gpus, grace_ms, runtime, public_host, chain_rpc, channel_redeem_threshold (flags "
                "given on the command line win)");
  a->add_option("--price-gpu", o.price_gpu, "List the machine at this USD per GPU-hour once enrolled");
  a->add_option("--min-chunk", o.min_chunk, "Smallest GPU count rented (with --price-gpu)");
  a->add_option("--end-date", o.end_date, "No lease runs past this date (with --price-gpu)");
  a->add_option("--chain-rpc", o.chain_rpc,
                "EVM node of the broker's chain: take leases paid by payment channel, redeeming and closing them "
                "with this agent's key (its address needs native coin for gas)")
      ->envname("GRID_CHAIN_RPC");
  a->add_option("--channel-redeem-threshold", o.channel_redeem_threshold,
                "Redeem a channel's vouchers once this much USD is unredeemed (default 5.00; always before the "
                "channel's expiry)");
  a->callback([&, a] {
    run = [&, a]() -> Status {
      o.broker_url = g.broker;
      if (!config.empty()) {
        // The file first, then the flags given on the command line again on top.
        agent::AgentOptions from_file = o;
        GRID_RETURN_IF_ERROR(agent::LoadAgentConfig(config, &from_file));
        auto given = [&](const char* flag) { return a->count(flag) > 0; };
        if (!given("--geolocation")) o.site.geolocation = from_file.site.geolocation;
        if (!given("--datacenter")) o.site.datacenter = from_file.site.datacenter;
        if (!given("--inet-up")) o.site.inet_up_mbps = from_file.site.inet_up_mbps;
        if (!given("--inet-down")) o.site.inet_down_mbps = from_file.site.inet_down_mbps;
        if (!given("--price-gpu")) o.price_gpu = from_file.price_gpu;
        if (!given("--min-chunk")) o.min_chunk = from_file.min_chunk;
        if (!given("--end-date")) o.end_date = from_file.end_date;
        if (!given("--simulate-gpus")) o.simulate_gpus = from_file.simulate_gpus;
        if (!given("--grace")) o.grace_ms = from_file.grace_ms;
        if (!given("--runtime")) o.runtime = from_file.runtime;
        if (!given("--public-host")) o.public_host = from_file.public_host;
        if (!given("--chain-rpc")) o.chain_rpc = from_file.chain_rpc;
        if (!given("--channel-redeem-threshold")) o.channel_redeem_threshold = from_file.channel_redeem_threshold;
        o.price_disk = from_file.price_disk;
      }
      if (o.site.geolocation.empty()) return InvalidArgument("--geolocation (or \"geolocation\" in --config) is required");
      if (!o.price_gpu.empty()) GRID_RETURN_IF_ERROR(ParseMoney(o.price_gpu, "--price-gpu").status());
      GRID_ASSIGN_OR_RETURN(Micros threshold, ParseMoney(o.channel_redeem_threshold, "--channel-redeem-threshold"));
      if (threshold <= 0) return InvalidArgument("--channel-redeem-threshold: must be greater than 0");
      int rc = agent::RunAgent(o);
      if (rc != 0) std::exit(rc);
      return Status::Ok();
    };
  });
}

void AddLogin(CLI::App& app, Globals& g, Run& run) {
  auto* l = app.add_subcommand("login", "Sign in with Ethereum (EIP-4361) and cache the session token");
  l->callback([&] {
    run = [&]() -> Status {
      GRID_ASSIGN_OR_RETURN(auto c, Client(g));
      GRID_ASSIGN_OR_RETURN(LoginResult r, c->Login());
      if (g.json) PrintJson(json::object{{"token", r.token}, {"address", r.address}, {"expires_at", r.expires_at}});
      else std::printf("logged in to %s as %s until %s\n", c->broker_url().c_str(), r.address.c_str(), r.expires_at.c_str());
      return Status::Ok();
    };
  });
}

void AddAdmin(CLI::App& app, Globals& g, Run& run) {
  auto* a = app.add_subcommand("admin", "Operator tools");
  a->require_subcommand(1);
  static std::string db;
  static bool with_chain = false;
  static ChainTarget target;
  auto* au = a->add_subcommand("audit", "Check the ledger's conservation, every lease's bill and (--chain) the treasury");
  au->add_option("--db", db,
                 "Audit this database offline, read-only: SQLite PATH or postgres://USER@HOST:PORT/DB (else ask the "
                 "broker)");
  au->add_flag("--chain", with_chain,
               "Also check the treasury's on-chain balance against the ledger (through the broker: its chain; "
               "with --db: --chain-rpc, --token and --treasury)");
  au->add_option("--chain-rpc", target.rpc_url, "With --db --chain: an EVM node");
  au->add_option("--token", target.token, "With --db --chain: the stablecoin's address");
  au->add_option("--treasury", target.treasury, "With --db --chain: the treasury's address");
  au->callback([&] {
    run = [&]() -> Status {
      AuditOutcome out;
      if (!db.empty()) {
        if (with_chain && (target.rpc_url.empty() || target.token.empty() || target.treasury.empty()))
          return InvalidArgument("--db --chain needs --chain-rpc, --token and --treasury");
        GRID_ASSIGN_OR_RETURN(out, AuditDatabase(db, with_chain ? &target : nullptr));
      } else {
        GRID_ASSIGN_OR_RETURN(auto c, Client(g));
        GRID_ASSIGN_OR_RETURN(json::value r, c->AuthCall("GET", "/v1/admin/audit"));
        out.ok = r.as_object().at("ok").as_bool();
        for (const auto& x : r.as_object().at("checks").as_array()) out.checks.emplace_back(x.as_string());
        for (const auto& x : r.as_object().at("failures").as_array()) out.failures.emplace_back(x.as_string());
        bool has_chain = std::any_of(out.checks.begin(), out.checks.end(),
                                     [](const std::string& x) { return x.rfind("chain:", 0) == 0; });
        if (with_chain && !has_chain)
          return Status(Code::kConflict, "--chain: this broker runs without a chain (no --chain-rpc)");
      }
      if (g.json) {
        json::array c, f;
        for (auto& x : out.checks) c.push_back(json::string(x));
        for (auto& x : out.failures) f.push_back(json::string(x));
        PrintJson(json::object{{"ok", out.ok}, {"checks", c}, {"failures", f}});
      } else {
        for (auto& x : out.checks) std::printf("ok    %s\n", x.c_str());
        for (auto& x : out.failures) std::printf("FAIL  %s\n", x.c_str());
        std::printf("%s\n", out.ok ? "audit passed" : "audit FAILED");
      }
      if (!out.ok) return Status(Code::kConflict, "audit failed: " + std::to_string(out.failures.size()) + " problem(s)");
      return Status::Ok();
    };
  });
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"grid: the Gridmarket GPU marketplace (broker, provider and renter tools)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "grid 0.1.0");
  Globals g;
  if (const char* b = std::getenv("GRID_BROKER"); b && *b) g.broker = b;
  app.add_option("--key", g.key, "Key file (Web3 Secret Storage v3)")->envname("GRID_KEY");
  app.add_option("--broker", g.broker,
                 "Broker URL, or a comma-separated list of replicas tried in turn when one is down (env GRID_BROKER)");
  app.add_flag("--json", g.json, "Print the API's JSON");
  app.add_flag("-q,--quiet", g.quiet, "Print only the new object's id");
  // Options given after the subcommand apply too (`grid leases list --json`).
  app.fallthrough();
  Run run;
  AddBroker(app, run);
  AddKeys(app, g, run);
  AddLogin(app, g, run);
  AddWallet(app, g, run);
  AddMachines(app, g, run);
  AddProvider(app, g, run);
  AddAgent(app, g, run);
  AddOffers(app, g, run);
  AddLeases(app, g, run);
  AddAdmin(app, g, run);
  AddChannels(app, g, run);
  AddPay(app, g, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!run) return 2;
  Status s;
  try {
    s = run();
  } catch (const std::exception& e) {
    // A response missing a field we rely on: say so instead of aborting.
    s = Internal(std::string("unexpected response from the broker: ") + e.what());
  }
  if (!s.ok()) {
    std::fprintf(stderr, "grid: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace grid::cli
