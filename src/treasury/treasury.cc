#include "treasury/treasury.h"

#include <sys/stat.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>

#include "chain/channels.h"
#include "chain/rpc/json_rpc_chain.h"
#include "crypto/hex.h"
#include "crypto/keystore.h"
#include "treasury/channel_reader.h"

namespace grid::treasury {

Result<crypto::PrivateKey> LoadTreasuryKey(const std::string& file) {
  if (file.empty()) {
    const char* env = std::getenv("GRID_TREASURY_KEY");
    if (!env || !*env) return InvalidArgument("--treasury-key FILE or GRID_TREASURY_KEY: required with --chain-rpc");
    auto key = crypto::PrivateKeyFromHex(env);
    if (!key.ok()) return InvalidArgument("GRID_TREASURY_KEY: not a hex private key");
    return key;
  }
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return InvalidArgument("--treasury-key " + file + ": cannot read it");
  if ((st.st_mode & 077) != 0)
    return InvalidArgument("--treasury-key " + file + ": readable by others (mode " +
                           std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                           std::to_string(st.st_mode & 7) + "); chmod 600 it");
  auto text = crypto::ReadFileToString(file);
  if (!text.ok()) return InvalidArgument("--treasury-key " + file + ": cannot read it");
  std::string t = *text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  if (!t.empty() && t.front() == '{') {
    const char* pw = std::getenv("GRID_TREASURY_KEY_PASSWORD");
    auto key = crypto::DecryptKeystore(t, pw ? pw : "");
    if (!key.ok()) return InvalidArgument("--treasury-key " + file + ": " + key.status().message());
    return key;
  }
  auto key = crypto::PrivateKeyFromHex(t);
  if (!key.ok()) return InvalidArgument("--treasury-key " + file + ": not a hex private key or a keystore file");
  return key;
}

ledger::AuditReport AuditChainBalance(const chain::U256& onchain, const std::vector<ledger::Account>& accounts,
                                      const std::vector<ledger::Withdrawal>& open_withdrawals) {
  ledger::AuditReport r;
  Int128 treasury = 0, world = 0, liabilities = 0, open = 0;
  for (const auto& a : accounts) {
    if (a.id == ledger::kTreasury) treasury = static_cast<Int128>(a.debits_posted) - a.credits_posted;
    else if (a.id == ledger::kWorld) world = static_cast<Int128>(a.debits_posted) - a.credits_posted;
    else if (ledger::IsCustomerAccount(a.id)) liabilities += static_cast<Int128>(a.credits_posted) - a.debits_posted;
  }
  for (const auto& w : open_withdrawals) open += w.amount;
  auto onchain64 = onchain.ToInt64("on-chain balance");
  if (!onchain64.ok()) {
    r.failures.push_back("chain: the treasury's on-chain balance " + onchain.ToDecimal() + " does not fit the ledger");
    return r;
  }
  Int128 have = *onchain64;
  auto money = [](Int128 v) { return FormatMoney(static_cast<Micros>(v)); };
  r.checks.push_back("chain: treasury holds " + money(have) + " on chain; ledger: deposits − withdrawals = " +
                     money(treasury) + ", open withdrawals " + money(open));
  if (have < treasury - open)
    r.failures.push_back("chain: the treasury holds " + money(have) + " but the ledger says at least " +
                         money(treasury - open) + " (deposits − withdrawals − open withdrawals) must be there");
  else if (have > treasury)
    r.checks.push_back("chain: " + money(have - treasury) +
                       " on chain was not deposited through the ledger (sent to the treasury by other means)");
  Int128 backed = liabilities - world;  // customer money that came from the chain
  r.checks.push_back("chain: customer balances and fees " + money(liabilities) + ", of which the --dev faucet made " +
                     money(world) + " (not backed on chain)");
  if (have < backed)
    r.failures.push_back("chain: the treasury's " + money(have) + " does not cover the " + money(backed) +
                         " customers and fees are owed from deposits");
  return r;
}

Result<std::unique_ptr<Treasury>> Treasury::Start(TreasuryOptions o, broker::Broker& broker, const Clock* clock) {
  std::unique_ptr<Treasury> t(new Treasury(std::move(o), broker, clock));
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, LoadTreasuryKey(t->o_.key_file));
  auto token = crypto::ParseAddress(t->o_.token);
  if (!token.ok()) return InvalidArgument("--token: expected the ERC-20's 0x address");
  t->token_ = *token;
  t->treasury_ = crypto::AddressOf(key);
  GRID_ASSIGN_OR_RETURN(t->chain_, chain::JsonRpcChain::Create(t->o_.rpc_url));
  GRID_ASSIGN_OR_RETURN(uint64_t id, t->chain_->ChainId());
  if (id != t->o_.chain_id)
    return InvalidArgument("--chain-id " + std::to_string(t->o_.chain_id) + ": the node at " + t->o_.rpc_url +
                           " is chain " + std::to_string(id));
  GRID_ASSIGN_OR_RETURN(uint8_t decimals, chain::Erc20Decimals(*t->chain_, t->token_));
  if (decimals != 6)
    return InvalidArgument("--token " + t->o_.token + ": has " + std::to_string(decimals) +
                           " decimals; the ledger counts micro-USD, so the token must have 6");
  t->watcher_ = std::make_unique<DepositWatcher>(
      *t->chain_, broker, DepositWatcherOptions{t->token_, t->treasury_, t->o_.confirmations, 2000, t->o_.start_block});
  WithdrawalSenderOptions wo;
  wo.token = t->token_;
  wo.confirmations = t->o_.confirmations;
  wo.bump_after_ms = t->o_.bump_after_ms;
  wo.tx.chain_id = t->o_.chain_id;
  t->sender_ = std::make_unique<WithdrawalSender>(*t->chain_, broker, key, clock, wo);
  t->status_.treasury = t->treasury_.ToChecksumHex();
  t->status_.token = t->token_.ToChecksumHex();
  t->status_.chain_id = id;
  t->status_.confirmations = t->o_.confirmations;
  t->PollOnce();
  t->thread_ = std::thread([p = t.get()] { p->Loop(); });
  return t;
}

Treasury::~Treasury() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

TreasuryStatus Treasury::Status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Treasury::PollOnce() {
  std::lock_guard poll(poll_mu_);
  // Replicas: only the leader watches deposits and sends withdrawals, on
  // state caught up with the others' commits. (A commit that still races
  // one is refused whole, kAborted, and the next poll does it again.)
  if (!broker_.CheckLeadership()) return;  // asked of the database now, not remembered
  if (grid::Status s = broker_.Sync(); !s.ok()) {
    std::fprintf(stderr, "grid broker: chain: catching up: %s\n", s.message().c_str());
    return;
  }
  std::string error;
  // Deposits until caught up (bounded), then withdrawals.
  for (int round = 0; round < 10; ++round) {
    auto d = watcher_->Poll();
    std::lock_guard lock(mu_);
    status_.alert = watcher_->alert();
    if (!d.ok()) {
      error = "deposits: " + d.status().message();
      break;
    }
    status_.head = d->head;
    status_.scanned_to = d->scanned_to;
    status_.lag_blocks = watcher_->lag_blocks();
    status_.deposits_credited += d->credited;
    if (d->caught_up) break;
  }
  auto w = sender_->Poll();
  std::lock_guard lock(mu_);
  if (!w.ok()) {
    error += (error.empty() ? "" : "; ") + std::string("withdrawals: ") + w.status().message();
  } else {
    status_.withdrawals_confirmed += w->confirmed;
    status_.withdrawals_failed += w->failed;
    status_.withdrawals_bumped += w->bumped;
  }
  if (!error.empty() && error != status_.last_error) std::fprintf(stderr, "grid broker: chain: %s\n", error.c_str());
  status_.last_error = error;
}

void Treasury::Loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(o_.poll_ms), [&] { return stopping_; })) {
    lock.unlock();
    PollOnce();
    lock.lock();
  }
}

Result<std::shared_ptr<const broker::ChainApi>> StartChainApi(TreasuryOptions options, broker::Broker& broker,
                                                              const Clock* clock) {
  std::string rpc = options.rpc_url;
  std::string channels;
  std::shared_ptr<ChainChannelReader> reader;
  if (!options.channels.empty()) {
    // The contract must answer channels(id) as PaymentChannels does, on the
    // same node: a wrong address fails here, not at a renter's first open.
    auto address = crypto::ParseAddress(options.channels);
    if (!address.ok()) return InvalidArgument("--channels: " + address.status().message());
    auto token = crypto::ParseAddress(options.token);
    if (!token.ok()) return InvalidArgument("--token: " + token.status().message());
    GRID_ASSIGN_OR_RETURN(std::unique_ptr<chain::JsonRpcChain> node, chain::JsonRpcChain::Create(rpc));
    auto answer = node->Call(chain::CallRequest{std::nullopt, *address, chain::channels::EncodeChannelsCall({}), {}});
    if (!answer.ok())
      return InvalidArgument("--channels: " + address->ToChecksumHex() + " does not answer channels(): " +
                             answer.status().message());
    if (auto st = chain::channels::DecodeChannelsResult(*answer); !st.ok())
      return InvalidArgument("--channels: " + address->ToChecksumHex() + " is not a PaymentChannels contract (" +
                             st.status().message() + ")");
    channels = address->ToChecksumHex();
    // The broker reads channels for lease checks on its own connection, so
    // a slow call never holds up the treasury's polling.
    reader = std::make_shared<ChainChannelReader>(std::move(node), *address, *token, options.chain_id);
  }
  GRID_ASSIGN_OR_RETURN(std::unique_ptr<Treasury> t, Treasury::Start(std::move(options), broker, clock));
  std::shared_ptr<Treasury> owner(std::move(t));
  auto api = std::make_shared<broker::ChainApi>();
  TreasuryStatus s = owner->Status();
  api->treasury = s.treasury;
  api->token = s.token;
  api->rpc_url = rpc;
  api->chain_id = s.chain_id;
  api->confirmations = s.confirmations;
  api->channels = channels;
  if (reader) broker.SetChannelReader(reader);
  Treasury* raw = owner.get();
  api->audit = [raw] { return raw->AuditChain(); };
  api->status_json = [raw] {
    TreasuryStatus st = raw->Status();
    boost::json::object o{{"treasury", st.treasury},
                          {"token", st.token},
                          {"chain_id", st.chain_id},
                          {"confirmations", st.confirmations},
                          {"head", st.head},
                          {"scanned_to", st.scanned_to},
                          {"lag_blocks", st.lag_blocks},
                          {"deposits_credited", st.deposits_credited},
                          {"withdrawals_confirmed", st.withdrawals_confirmed},
                          {"withdrawals_failed", st.withdrawals_failed},
                          {"withdrawals_bumped", st.withdrawals_bumped},
                          {"alert", st.alert.empty() ? boost::json::value(nullptr) : boost::json::value(st.alert)},
                          {"last_error",
                           st.last_error.empty() ? boost::json::value(nullptr) : boost::json::value(st.last_error)}};
    return boost::json::serialize(o);
  };
  api->owner = owner;
  return std::shared_ptr<const broker::ChainApi>(api);
}

Result<ledger::AuditReport> Treasury::AuditChain() {
  GRID_ASSIGN_OR_RETURN(chain::U256 balance, chain::Erc20BalanceOf(*chain_, token_, treasury_));
  return AuditChainBalance(balance, broker_.LedgerAccounts(), broker_.OpenWithdrawals());
}

}  // namespace grid::treasury
