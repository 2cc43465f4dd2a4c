#include "broker/broker.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>
#include <cmath>
#include <random>
#include <thread>
#include <sstream>

#include <algorithm>

#include "api/codec.h"
#include "broker/audit.h"
#include "crypto/eip191.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "crypto/siwe.h"
#include "market/audit.h"
#include "market/billing.h"
#include "market/offer_rows.h"

namespace grid::broker {
namespace {

using market::Lease;
using market::LeaseState;

std::string RandomHex(size_t bytes) {
  std::vector<uint8_t> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) std::abort();  // no CSPRNG: cannot go on safely
  return crypto::HexEncode(buf, false);
}

// SIWE nonces: alphanumeric, at least 8 characters (EIP-4361).
std::string NewNonceText() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  uint8_t buf[20];
  if (RAND_bytes(buf, sizeof buf) != 1) std::abort();
  std::string out;
  for (uint8_t b : buf) out.push_back(kAlphabet[b % 62]);
  return out;
}

}  // namespace

// The shared-state form of a lease's output (replicas); defined with AppendLeaseOutput.
bool DecodeSharedLog(const std::string& text, LeaseLog* out);

Broker::Broker(std::unique_ptr<store::Store> store, const Clock* clock, BrokerOptions options)
    : store_(std::move(store)), clock_(clock), options_(std::move(options)),
      wakeups_(std::make_unique<MachineWakeups>(clock_->NowMs())) {}

Result<std::unique_ptr<Broker>> Broker::Open(std::unique_ptr<store::Store> store, const Clock* clock,
                                             BrokerOptions options) {
  if (options.fee_bps < 0 || options.fee_bps > 10'000) return InvalidArgument("fee-bps: must be 0 to 10000");
  // A lease ends when its hold (10 minutes of price) cannot cover one tick, so
  // a tick must be well under 10 minutes.
  if (options.tick_ms < 100 || options.tick_ms > market::kHoldMs / 2)
    return InvalidArgument("tick: must be between 0.1 and 300 seconds");
  if (options.heartbeat_ms < 100 || options.heartbeat_ms > 3600'000)
    return InvalidArgument("heartbeat: must be between 0.1 and 3600 seconds");
  if (options.host_grace_ms < 0) return InvalidArgument("host-grace: must not be negative");
  for (auto& a : options.admins) {
    auto parsed = crypto::ParseAddress(a);
    if (!parsed.ok()) return InvalidArgument("admin: " + parsed.status().message());
    a = parsed->ToLowerHex();
  }
  std::unique_ptr<Broker> b(new Broker(std::move(store), clock, std::move(options)));
  GRID_RETURN_IF_ERROR(b->LoadState());
  return b;
}

Status Broker::LoadState() {
  replicated_ = store_->Shared();
  // Replicas: versions are change-log sequence numbers, not bumps from this
  // broker's start, so every replica gives an agent the same one.
  if (replicated_) wakeups_ = std::make_unique<MachineWakeups>(0);
  leader_ = !replicated_;  // replicas: until CheckLeadership says so
  GRID_ASSIGN_OR_RETURN(store::Snapshot snap, store_->Load());
  std::lock_guard lock(mu_);
  started_ms_ = clock_->NowMs();
  applied_seq_ = snap.seq;
  // The index is built once, in bulk, not machine by machine.
  GRID_RETURN_IF_ERROR(ApplyRemoteLocked(std::move(snap), /*refresh_offers=*/false));
  {
    std::vector<query::OfferRow> rows;
    for (const auto& [id, m] : market_.machines()) {
      for (auto& r : OfferRowsLocked(m, started_ms_)) rows.push_back(std::move(r));
      if (m.listing.listed && !m.removed && m.listing.end_date_ms > started_ms_) {
        end_dates_.insert({m.listing.end_date_ms, id});
        end_date_of_[id] = m.listing.end_date_ms;
      }
    }
    index_.Build(std::move(rows));
  }
  if (replicated_) {
    // Replicas: a host's last beat may predate this replica's start (the
    // others were up): counted from it, so a host already silent is not
    // given a fresh grace period by a restart. Never older than one
    // offline period before the start, so that when every replica was down
    // the hosts' agents get to beat again before anything ends.
    GRID_ASSIGN_OR_RETURN(auto beats, store_->ListShared("beat:", started_ms_));
    const UnixMs floor_ms = started_ms_ - options_.heartbeat_ms * options_.missed_heartbeats;
    for (auto& [id, h] : hosts_) h.last_seen_ms = floor_ms;
    for (const auto& [key, value] : beats) MergeBeatLocked(key, value);
    for (auto& [id, h] : hosts_) h.reliability_at_ms = started_ms_;
  }
  // Persisted so tokens outlive a restart (and hold on every replica); 32
  // random bytes. Replicas starting at once: one secret wins, the others
  // learn it when their commit is refused.
  for (int attempt = 0; token_secret_.empty(); ++attempt) {
    store::ChangeSet cs;
    cs.meta.emplace_back("token_secret", RandomHex(32));
    Status s = CommitLocked(std::move(cs));
    if (s.code() == Code::kAborted && attempt < 10) {
      GRID_ASSIGN_OR_RETURN(store::Changes later, store_->ChangesSince(applied_seq_));
      if (later.reload) {
        GRID_ASSIGN_OR_RETURN(later.rows, store_->Load());
      }
      applied_seq_ = later.rows.seq;
      GRID_RETURN_IF_ERROR(ApplyRemoteLocked(std::move(later.rows)));
      continue;
    }
    GRID_RETURN_IF_ERROR(s);
  }
  return Status::Ok();
}

Status Broker::ApplyRemoteLocked(store::Snapshot rows, bool refresh_offers) {
  for (auto& m : rows.machines) {
    // The stored canonical JSON is the source of the full spec (extras too).
    if (!m.spec_json.empty()) {
      auto decoded = api::DecodeMachineSpec(m.spec_json, /*stored=*/true);
      if (!decoded.ok()) return Internal("machine " + std::to_string(m.id) + ": stored spec unreadable: " +
                                         decoded.status().message());
      m.spec = std::move(decoded->spec);
    }
  }
  for (const auto& a : rows.accounts) ledger_.Restore(a);
  ApplyRowsLocked(std::move(rows.machines), std::move(rows.leases), std::move(rows.withdrawals), rows.meta,
                  refresh_offers);
  return Status::Ok();
}

void Broker::LearnMetaLocked(const std::string& k, const std::string& v) {
  if (k.starts_with("chain:")) chain_meta_[k] = v;
  // Written once, before any request is served, and read without the lock.
  if (k == "token_secret" && token_secret_.empty()) token_secret_ = v;
  if (k.starts_with("join_token:")) {
    // "<provider> <expires_ms> <revoked>"
    JoinToken t;
    std::istringstream in(v);
    int revoked = 0;
    in >> t.provider >> t.expires_ms >> revoked;
    t.revoked = revoked != 0;
    std::string hash = k.substr(11);
    t.id = hash.substr(0, 12);
    join_tokens_[hash] = t;
  }
}

void Broker::SetEndpoint(std::string domain, std::string uri) {
  std::lock_guard lock(mu_);
  options_.domain = std::move(domain);
  options_.uri = std::move(uri);
}

Status Broker::CommitLocked(store::ChangeSet changes) {
  if (changes.empty()) return Status::Ok();
  GRID_RETURN_IF_ERROR(ledger_.Check(changes.transfers));
  changes.accounts = ledger_.Preview(changes.transfers);
  if (replicated_) changes.after_seq = applied_seq_.load();
  Status s = store_->Commit(changes);
  if (!s.ok()) {
    ++commit_failures_;
    return s;
  }
  ++commits_;
  if (replicated_) ++applied_seq_;
  ledger_.Apply(changes.transfers);
  store::Changes::Entry entry{applied_seq_.load(), {}, {}};
  if (replicated_) {
    for (const auto& m : changes.machines) entry.machines.push_back(m.id);
    for (const auto& l : changes.leases) entry.leases.push_back(l.id);
  }
  ApplyRowsLocked(std::move(changes.machines), std::move(changes.leases), std::move(changes.withdrawals),
                  changes.meta);
  if (replicated_) WakeByEntryLocked(entry);
  return Status::Ok();
}

void Broker::WakeByEntryLocked(const store::Changes::Entry& entry) {
  // The version of a machine is the last entry that wrote it or one of its
  // leases: every replica computes the same. (Settlement's writes wake
  // agents too; they just heartbeat once more.)
  std::vector<int64_t> machines = entry.machines;
  for (int64_t id : entry.leases)
    if (const market::Lease* l = market_.FindLease(id)) machines.push_back(l->machine_id);
  std::sort(machines.begin(), machines.end());
  machines.erase(std::unique(machines.begin(), machines.end()), machines.end());
  for (int64_t id : machines) wakeups_->AdvanceTo(id, entry.seq);
}

void Broker::ApplyRowsLocked(std::vector<market::Machine> machines, std::vector<market::Lease> leases,
                             std::vector<ledger::Withdrawal> withdrawals,
                             const std::vector<std::pair<std::string, std::string>>& meta,
                             bool refresh_offers) {
  const UnixMs now = clock_->NowMs();
  // Agents long-polling for their machine learn of new leases, state
  // changes and removals at once (settlement's updates do not wake them).
  std::vector<int64_t> wake;
  // Machines whose offers change: any machine change, and a lease that takes
  // or frees GPUs. Their rows are replaced before the command is
  // acknowledged, so no search after it shows the old state.
  std::vector<int64_t> offers_changed;
  for (auto& m : machines) {
    const market::Machine* old = market_.FindMachine(m.id);
    if (old && old->removed != m.removed) wake.push_back(m.id);
    offers_changed.push_back(m.id);
    if (!m.agent_address.empty()) {
      agents_[m.agent_address] = m.id;  // removed ones too: their agent is told so
      // A host counts as seen when this broker first learns of it (at a
      // start, or from another replica), so this broker's own downtime
      // never ends a lease with host_lost.
      if (m.removed) hosts_.erase(m.id);
      else hosts_.try_emplace(m.id, HostState{now, true, 1.0, now, ""});
    }
    market_.Put(std::move(m));
  }
  for (auto& w : withdrawals) withdrawals_[w.id] = std::move(w);
  for (const auto& [k, v] : meta) LearnMetaLocked(k, v);
  for (auto& l : leases) {
    const market::Lease* old = market_.FindLease(l.id);
    // A new voucher wakes the host too: its agent records it at once.
    bool new_voucher = l.channel && (!old || !old->channel || old->channel->voucher != l.channel->voucher);
    if (!old || old->state != l.state || new_voucher) wake.push_back(l.machine_id);
    if (!old || old->active() != l.active()) offers_changed.push_back(l.machine_id);
    market_.Put(std::move(l));
  }
  std::sort(wake.begin(), wake.end());
  wake.erase(std::unique(wake.begin(), wake.end()), wake.end());
  // Replicas wake by change-log entry instead (WakeByEntryLocked), so that
  // an agent's version means the same on every replica.
  if (!replicated_)
    for (int64_t id : wake) wakeups_->Bump(id);
  std::sort(offers_changed.begin(), offers_changed.end());
  offers_changed.erase(std::unique(offers_changed.begin(), offers_changed.end()), offers_changed.end());
  if (refresh_offers)
    for (int64_t id : offers_changed) RefreshOffersLocked(id);
}

// ---------------------------------------------------------------- replicas

Status Broker::Sync() {
  if (!replicated_) return Status::Ok();
  // `from` first: a commit of ours in between only moves the head further.
  const int64_t from = applied_seq_.load();
  GRID_ASSIGN_OR_RETURN(std::optional<store::Changes> changes, ReadChanges(from));
  if (!changes) return Status::Ok();
  std::lock_guard lock(mu_);
  return ApplyChangesLocked(std::move(*changes));
}

Result<std::unique_lock<WriterPreferringMutex>> Broker::LockForCommand() {
  std::unique_lock lock(mu_);
  if (replicated_) {
    // Caught up under the lock, right before the command decides: commands
    // queued on this replica's lock would otherwise decide on state that
    // other replicas' commits made stale while they waited, and abort.
    GRID_ASSIGN_OR_RETURN(std::optional<store::Changes> changes, ReadChanges(applied_seq_.load()));
    if (changes) GRID_RETURN_IF_ERROR(ApplyChangesLocked(std::move(*changes)));
  }
  return lock;
}

Result<std::optional<store::Changes>> Broker::ReadChanges(int64_t from) {
  GRID_ASSIGN_OR_RETURN(int64_t head, store_->Head());
  if (head == from) return std::optional<store::Changes>();
  if (head < from) {
    // The log went backwards: the database was restored from a backup, or
    // this broker is pointed at another one. Its memory holds rows the
    // database no longer has; only a restart rebuilds it.
    return Internal("the database's change log went back from " + std::to_string(from) + " to " +
                    std::to_string(head) + " (restored from a backup?); restart this broker");
  }
  GRID_ASSIGN_OR_RETURN(store::Changes changes, store_->ChangesSince(from));
  if (changes.reload) {
    // Too far behind for the log: every row again (none is ever deleted,
    // so putting them all is the same as starting afresh).
    GRID_ASSIGN_OR_RETURN(changes.rows, store_->Load());
  }
  return std::optional<store::Changes>(std::move(changes));
}

Status Broker::ApplyChangesLocked(store::Changes changes) {
  // The rows are as of changes.rows.seq and cover every entry after the
  // sequence they were read from, so they also bring any state applied
  // since then (by another thread) up to that point; older rows are dropped.
  const int64_t seq = changes.rows.seq;
  if (seq <= applied_seq_.load()) return Status::Ok();
  GRID_RETURN_IF_ERROR(ApplyRemoteLocked(std::move(changes.rows)));
  applied_seq_ = seq;
  for (const auto& entry : changes.entries) WakeByEntryLocked(entry);
  if (changes.reload) {
    // No entries to go by: every agent re-reads its leases.
    for (const auto& [id, m] : market_.machines()) wakeups_->AdvanceTo(id, seq);
  }
  return Status::Ok();
}

Status Broker::FollowChanges(int64_t timeout_ms) {
  if (!replicated_) return Status::Ok();
  GRID_RETURN_IF_ERROR(store_->WaitForChange(applied_seq_.load(), timeout_ms).status());
  return Sync();
}

Status Broker::Retrying(const std::function<Status()>& command) {
  constexpr int kAttempts = kCommandAttempts;
  for (int attempt = 1;; ++attempt) {
    GRID_RETURN_IF_ERROR(Sync());
    Status s = command();
    if (s.code() != Code::kAborted || attempt == kAttempts) return s;
    PauseBeforeRetry(attempt);
  }
}

void Broker::PauseBeforeRetry(int attempt) {
  thread_local std::minstd_rand jitter(std::random_device{}());
  const int max_us = 1000 << std::clamp(attempt - 1, 0, 5);
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, max_us)(jitter)));
}

bool Broker::CheckLeadership() {
  auto lead = store_->HoldLeadership();
  leader_ = lead.ok() && *lead;
  return leader_;
}

Status Broker::Maintain() {
  // A day of changes at a busy market's pace; a replica further behind reloads.
  constexpr int64_t kKeepChanges = 1'000'000;
  return store_->Maintain(kKeepChanges, clock_->NowMs());
}

// ---------------------------------------------------------------- auth

Result<NonceInfo> Broker::NewNonce() {
  std::string nonce = NewNonceText();
  if (replicated_) {
    GRID_RETURN_IF_ERROR(store_->PutShared("nonce:" + nonce, "1", clock_->NowMs() + options_.nonce_ttl_ms));
    std::lock_guard lock(mu_);
    return NonceInfo{nonce, options_.domain, options_.uri, options_.chain_id};
  }
  std::lock_guard lock(mu_);
  UnixMs now = clock_->NowMs();
  // Drop expired nonces so the table stays small.
  std::erase_if(nonces_, [&](const auto& kv) { return kv.second <= now; });
  nonces_[nonce] = now + options_.nonce_ttl_ms;
  return NonceInfo{nonce, options_.domain, options_.uri, options_.chain_id};
}

Result<Session> Broker::Login(const std::string& message, const std::string& signature) {
  if (message.size() > 8192) return InvalidArgument("message: too long");
  GRID_ASSIGN_OR_RETURN(crypto::SiweMessage m, crypto::ParseSiwe(message));
  GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::ParseSignature(signature));
  GRID_ASSIGN_OR_RETURN(crypto::Address claimed, crypto::ParseAddress(m.address));
  GRID_ASSIGN_OR_RETURN(crypto::Address signer, crypto::RecoverSigner(crypto::PersonalMessageHash(message), sig));
  if (signer != claimed) return Unauthenticated("signature: signed by " + signer.ToChecksumHex() + ", not by " + m.address);
  std::unique_lock lock(mu_);
  UnixMs now = clock_->NowMs();
  if (m.domain != options_.domain)
    return Unauthenticated("domain: the message is for \"" + m.domain + "\", this broker is \"" + options_.domain + "\"");
  if (m.chain_id != options_.chain_id)
    return Unauthenticated("chain id: the message says " + std::to_string(m.chain_id) + ", this broker uses " +
                           std::to_string(options_.chain_id));
  UnixMs issued = 0;
  if (!ParseTime(m.issued_at, &issued)) return InvalidArgument("issued at: not an RFC 3339 time");
  if (issued > now + options_.clock_skew_ms) return Unauthenticated("issued at: in the future");
  if (issued < now - options_.nonce_ttl_ms - options_.clock_skew_ms) return Unauthenticated("issued at: too old");
  if (m.expiration_time) {
    UnixMs exp = 0;
    if (!ParseTime(*m.expiration_time, &exp)) return InvalidArgument("expiration time: not an RFC 3339 time");
    if (exp <= now) return Unauthenticated("expiration time: the message has expired");
  }
  if (m.not_before) {
    UnixMs nb = 0;
    if (!ParseTime(*m.not_before, &nb)) return InvalidArgument("not before: not an RFC 3339 time");
    if (nb > now + options_.clock_skew_ms) return Unauthenticated("not before: the message is not valid yet");
  }
  const auto unknown = [] { return Unauthenticated("nonce: unknown, expired or already used; ask for a new one"); };
  if (replicated_) {
    // Single use across replicas: exactly one taker deletes it. A database
    // round trip, so not under the lock.
    lock.unlock();
    GRID_ASSIGN_OR_RETURN(std::optional<std::string> taken, store_->TakeShared("nonce:" + m.nonce, now));
    if (!taken) return unknown();
  } else {
    auto it = nonces_.find(m.nonce);
    if (it == nonces_.end() || it->second <= now) return unknown();
    nonces_.erase(it);  // single use
  }
  Session s;
  s.address = claimed.ToLowerHex();
  s.expires_ms = now + options_.token_ttl_ms;
  s.token = SignToken(s.address, s.expires_ms);
  return s;
}

std::string Broker::SignToken(const std::string& address, UnixMs expires_ms) const {
  std::string payload = address + "." + std::to_string(expires_ms);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), token_secret_.data(), static_cast<int>(token_secret_.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &len);
  return "gm1." + payload + "." + crypto::HexEncode(std::span<const uint8_t>(mac, len), false);
}

Result<std::string> Broker::Authenticate(std::string_view token) const {
  // gm1.<address>.<expires_ms>.<hmac hex>
  auto bad = [] { return Unauthenticated("invalid token; run `grid login` again"); };
  if (!token.starts_with("gm1.") || token.size() > 256) return bad();
  std::string_view rest = token.substr(4);
  size_t d1 = rest.find('.');
  if (d1 == std::string_view::npos) return bad();
  size_t d2 = rest.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return bad();
  std::string address(rest.substr(0, d1));
  std::string exp_text(rest.substr(d1 + 1, d2 - d1 - 1));
  if (exp_text.empty() || exp_text.size() > 18 ||
      !std::all_of(exp_text.begin(), exp_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad();
  UnixMs exp = std::stoll(exp_text);
  std::string expected = SignToken(address, exp);
  if (expected.size() != token.size() || CRYPTO_memcmp(expected.data(), token.data(), token.size()) != 0)
    return bad();
  if (exp <= clock_->NowMs()) return Unauthenticated("token expired; run `grid login` again");
  return address;
}

// ---------------------------------------------------------------- wallet

Result<ledger::Balance> Broker::Faucet(const std::string& addr, Micros amount, const std::string& key) {
  if (!options_.dev) return PermissionDenied("the faucet exists only on a broker started with --dev");
  if (amount <= 0) return InvalidArgument("amount: must be greater than 0");
  if (amount > options_.faucet_max)
    return InvalidArgument("amount: at most " + FormatMoney(options_.faucet_max) + " per faucet request");
  if (key.size() > 128) return InvalidArgument("idempotency key: at most 128 characters");
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  UnixMs now = clock_->NowMs();
  ledger::Transfer t{"faucet:" + addr + ":" + (key.empty() ? RandomHex(12) : key), std::string(ledger::kWorld),
                     ledger::UserAccount(addr), amount, ledger::TransferKind::kPosted, 0, now, "faucet"};
  store::ChangeSet cs;
  cs.transfers.push_back(t);
  Status s = CommitLocked(std::move(cs));
  if (s.code() == Code::kConflict) {
    // The same request again: idempotent success.
  } else if (s.code() == Code::kIdempotencyMismatch) {
    return Status(Code::kIdempotencyMismatch, "idempotency key reused with a different amount");
  } else if (!s.ok()) {
    return s;
  }
  return ledger_.BalanceOf(addr);
}

ledger::Balance Broker::GetBalance(const std::string& addr) const {
  std::lock_guard lock(mu_);
  return ledger_.BalanceOf(addr);
}

Result<std::vector<ledger::Transfer>> Broker::History(const std::string& addr, int limit) const {
  store::TransferQuery q;
  q.accounts = {ledger::UserAccount(addr), ledger::EarningsAccount(addr), ledger::ChannelAccount(addr)};
  q.limit = std::clamp(limit, 1, 10'000);
  return store_->ListTransfers(q);
}

// ---------------------------------------------------------------- machines

Result<MachineView> Broker::RegisterMachine(const std::string& addr, market::MachineSpec spec,
                                            std::string spec_json) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  GRID_ASSIGN_OR_RETURN(market::Machine m,
                        market_.PlanRegister(addr, std::move(spec), std::move(spec_json), clock_->NowMs()));
  return CommitMachineLocked(std::move(m));
}

Result<MachineView> Broker::CommitMachineLocked(market::Machine machine) {
  int64_t id = machine.id;
  store::ChangeSet cs;
  cs.machines.push_back(std::move(machine));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return ViewLocked(*market_.FindMachine(id));
}

std::vector<MachineView> Broker::ListMachines(const std::string& addr) const {
  std::lock_guard lock(mu_);
  std::vector<MachineView> out;
  for (const auto& [id, m] : market_.machines())
    if (m.provider == addr) out.push_back(ViewLocked(m));
  return out;
}

Result<MachineView> Broker::GetMachine(const std::string& addr, int64_t id) const {
  std::lock_guard lock(mu_);
  const market::Machine* m = market_.FindMachine(id);
  if (!m || m->provider != addr) return NotFound("machine " + std::to_string(id) + " not found among yours");
  return ViewLocked(*m);
}

Result<MachineView> Broker::ListOffer(const std::string& addr, const market::ListOfferRequest& req) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  GRID_ASSIGN_OR_RETURN(market::Machine m, market_.PlanListOffer(addr, req, clock_->NowMs()));
  return CommitMachineLocked(std::move(m));
}

Result<MachineView> Broker::Unlist(const std::string& addr, int64_t machine_id) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  GRID_ASSIGN_OR_RETURN(market::Machine m, market_.PlanUnlist(addr, machine_id, clock_->NowMs()));
  return CommitMachineLocked(std::move(m));
}

Result<OfferSearch> Broker::SearchOffers(const query::Query& q, const query::Order& order, int64_t limit,
                                         bool explain, bool no_default) {
  if (limit < 0 || limit > query::kMaxLimit)
    return InvalidArgument("limit: must be between 0 and " + std::to_string(query::kMaxLimit) + ", got " +
                           std::to_string(limit));
  OfferSearch out;
  query::SearchOptions opts;
  opts.limit = static_cast<int>(limit);
  opts.explain = explain;
  opts.defaults_from = q.clauses.size();  // WithDefaults appends
  out.query = query::WithDefaults(q, {.no_default = no_default, .dev = options_.dev});
  if (out.query.clauses.size() == q.clauses.size()) opts.defaults_from = SIZE_MAX;
  out.order = order.keys.empty() ? query::DefaultOrder() : order;
  std::shared_lock lock(mu_);
  const UnixMs now = ReadLockAfterExpiry(lock);
  out.result = index_.Search(out.query, out.order, now, opts);
  // Only what the offers' JSON takes from each machine (provider, min_chunk,
  // end date), one lookup per distinct machine; the answer is encoded after
  // the lock is released, so a search holds it for the index and this copy.
  std::vector<int64_t> ids;
  ids.reserve(out.result.offers.size());
  auto note = [&](query::OfferRow& r) {
    r.duration = query::DurationMillionths(r.end_date_ms, now);
    if (r.machine_id) ids.push_back(*r.machine_id);
  };
  for (auto& r : out.result.offers) note(r);
  if (out.result.explain)
    for (auto& nm : out.result.explain->near_misses) note(nm.row);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  out.machines.reserve(ids.size());
  for (int64_t id : ids)
    if (const market::Machine* m = market_.FindMachine(id))
      out.machines.push_back({m->id, m->provider, m->listing.min_chunk, m->listing.end_date_ms,
                              std::string(market::ChannelPayeeOf(*m))});
  return out;
}

const OfferMachineFields* OfferSearch::Machine(int64_t id) const {
  auto it = std::lower_bound(machines.begin(), machines.end(), id,
                             [](const OfferMachineFields& m, int64_t x) { return m.id < x; });
  return it != machines.end() && it->id == id ? &*it : nullptr;
}

Result<OfferView> Broker::GetOffer(int64_t offer_id) {
  std::shared_lock lock(mu_);
  const UnixMs now = ReadLockAfterExpiry(lock);
  // An offer exists while its machine is listed in that chunk size; it is
  // rentable while its GPUs are free, its host online and the end date ahead.
  std::optional<query::OfferRow> row = index_.Get(offer_id, now);
  const market::Machine* m = row && row->machine_id ? market_.FindMachine(*row->machine_id) : nullptr;
  if (!row || !m) return NotFound("offer " + std::to_string(offer_id) + " not found (not listed)");
  row->duration = query::DurationMillionths(row->end_date_ms, now);
  return OfferView{std::move(*row), *m};
}

size_t Broker::IndexedOffers() const {
  std::shared_lock lock(mu_);
  return index_.size();
}

std::vector<query::OfferRow> Broker::OfferRowsLocked(const market::Machine& m, UnixMs now_ms) const {
  market::OfferHostInfo host;
  if (auto it = hosts_.find(m.id); it != hosts_.end()) {
    host.online = it->second.online;
    host.reliability = it->second.reliability;
  }
  return market::OfferRowsOf(m, market_.FreeGpus(m.id), host, now_ms);
}

void Broker::RefreshOffersLocked(int64_t machine_id) {
  const UnixMs now = clock_->NowMs();
  if (auto it = end_date_of_.find(machine_id); it != end_date_of_.end()) {
    end_dates_.erase({it->second, machine_id});
    end_date_of_.erase(it);
  }
  const market::Machine* m = market_.FindMachine(machine_id);
  if (!m) {
    index_.RemoveMachine(machine_id);
    return;
  }
  std::vector<query::OfferRow> rows = OfferRowsLocked(*m, now);
  if (rows.empty()) {
    index_.RemoveMachine(machine_id);
    return;
  }
  index_.SetMachine(machine_id, rows);
  if (m->listing.end_date_ms > now) {
    end_dates_.insert({m->listing.end_date_ms, machine_id});
    end_date_of_[machine_id] = m->listing.end_date_ms;
  }
}

UnixMs Broker::ReadLockAfterExpiry(std::shared_lock<WriterPreferringMutex>& lock) {
  for (;;) {
    const UnixMs now = clock_->NowMs();
    if (end_dates_.empty() || end_dates_.begin()->first > now) return now;
    // An end date has passed: its offers leave the index, which is a write.
    lock.unlock();
    {
      std::lock_guard write(mu_);
      ExpireEndDatesLocked(clock_->NowMs());
    }
    lock.lock();
  }
}

void Broker::ExpireEndDatesLocked(UnixMs now_ms) {
  while (!end_dates_.empty() && end_dates_.begin()->first <= now_ms) {
    int64_t id = end_dates_.begin()->second;
    RefreshOffersLocked(id);  // drops the entry: the end date is no longer ahead
  }
}

// ---------------------------------------------------------------- leases

Result<Lease> Broker::CreateLease(const std::string& addr, market::CreateLeaseRequest req) {
  // Verify the renter's EIP-712 signature before taking the lock: it is the
  // expensive part and needs no state.
  crypto::LeaseOrder order{static_cast<uint64_t>(req.order.offer_id), static_cast<uint32_t>(req.order.gpus),
                           req.order.price_per_hour, req.order.nonce, req.order.expiry_s};
  GRID_RETURN_IF_ERROR(crypto::ValidateLeaseOrder(order));
  GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::ParseSignature(req.order.signature));
  GRID_ASSIGN_OR_RETURN(crypto::Address signer,
                        crypto::RecoverSigner(crypto::LeaseOrderDigest(order, options_.chain_id), sig));
  if (signer.ToLowerHex() != addr)
    return PermissionDenied("order: signed by " + signer.ToChecksumHex() + ", not by the logged-in account");
  req.renter = addr;
  req.fee_bps = options_.fee_bps;
  // A channel is read on chain before the lock too (a network round trip).
  std::optional<OnChainChannel> onchain;
  if (req.channel) {
    std::shared_ptr<ChannelReader> reader;
    {
      std::shared_lock lock(mu_);
      reader = channels_;
    }
    if (!reader) return Conflict("pay.channel: this broker takes no payment channels (it runs without --channels)");
    GRID_ASSIGN_OR_RETURN(onchain, reader->Read(req.channel->channel));
  }

  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  UnixMs now = clock_->NowMs();
  for (const auto& [id, l] : market_.leases()) {
    if (l.renter == addr && l.order.nonce == req.order.nonce)
      return Conflict("order: nonce " + std::to_string(req.order.nonce) + " already used by lease " +
                      std::to_string(id));
    if (req.channel && l.channel && l.channel->channel == req.channel->channel)
      return Conflict("pay.channel " + req.channel->channel + " already pays lease " + std::to_string(id) +
                      "; open a new channel");
  }
  if (int64_t mid = req.offer_id / market::kOfferIdBase; HiddenLocked(mid))
    return Status(Code::kNotAvailable, "offer " + std::to_string(req.offer_id) + " is no longer available: machine " +
                                           std::to_string(mid) + " is offline");
  GRID_ASSIGN_OR_RETURN(Lease lease, market_.PlanCreateLease(req, market_.next_lease_id(), now));
  store::ChangeSet cs;
  if (onchain) {
    // Paid by the channel: no hold; the channel must fit the lease.
    GRID_ASSIGN_OR_RETURN(lease.channel, CheckChannelLocked(addr, lease, req.channel->channel, *onchain, now));
  } else {
    GRID_ASSIGN_OR_RETURN(Micros hold, market::InitialHold(lease.price_per_hour));
    Micros available = ledger_.BalanceOf(addr).available;
    if (available < hold)
      return Status(Code::kInsufficientFunds, "insufficient funds: starting this lease holds 10 minutes of it, " +
                                                  FormatMoney(hold) + ", but only " + FormatMoney(available) +
                                                  " is available");
    lease.held = hold;
    cs.transfers = market::HoldTransfers(lease, hold);
  }
  cs.leases.push_back(lease);
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return *market_.FindLease(lease.id);
}

Result<Lease> Broker::GetLease(const std::string& addr, int64_t id) const {
  std::lock_guard lock(mu_);
  const Lease* l = market_.FindLease(id);
  // Someone else's lease is reported as absent: its existence is not theirs to know.
  if (!l || !market_.CanSee(addr, *l)) return NotFound("lease " + std::to_string(id) + " not found");
  return *l;
}

std::vector<Lease> Broker::ListLeases(const std::string& addr) const {
  std::lock_guard lock(mu_);
  std::vector<Lease> out;
  for (const auto& [id, l] : market_.leases())
    if (market_.CanSee(addr, l)) out.push_back(l);
  return out;
}

Result<Lease> Broker::EndLeaseLocked(const Lease& lease, market::EndReason reason, UnixMs bill_until_ms) {
  market::SettleOptions o;
  o.now_ms = clock_->NowMs();
  o.renter_available = ledger_.BalanceOf(lease.renter).available;
  o.tick_ms = options_.tick_ms;
  o.end = true;
  o.end_reason = reason;
  o.bill_until_ms = bill_until_ms;
  // An agent's host is never billed past its last sign of life, however the
  // lease ends (renter stop, machine removed, host lost), as in SettleAll.
  if (auto h = hosts_.find(lease.machine_id); h != hosts_.end())
    o.bill_until_ms = o.bill_until_ms ? std::min(o.bill_until_ms, h->second.last_seen_ms) : h->second.last_seen_ms;
  GRID_ASSIGN_OR_RETURN(market::Settlement s, market::Settle(lease, o));
  int64_t id = s.lease.id;
  store::ChangeSet cs;
  cs.transfers = std::move(s.transfers);
  cs.leases.push_back(std::move(s.lease));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  return *market_.FindLease(id);
}

Result<Lease> Broker::StopLease(const std::string& addr, int64_t id) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const Lease* l = market_.FindLease(id);
  if (!l || !market_.CanSee(addr, *l)) return NotFound("lease " + std::to_string(id) + " not found");
  if (l->renter != addr) return PermissionDenied("only the renter can stop lease " + std::to_string(id));
  if (!l->active()) return Conflict("lease " + std::to_string(id) + " has already ended");
  return EndLeaseLocked(*l, market::EndReason::kRenterStopped, 0);
}

Result<Lease> Broker::ReportLease(const std::string& addr, int64_t id, LeaseState to, const std::string& message,
                                  bool failed, const std::optional<ReportedEndpoints>& endpoints) {
  if (message.size() > 1024) return InvalidArgument("message: at most 1024 characters");
  if (endpoints) {
    if (to != LeaseState::kRunning) return InvalidArgument("endpoints: only with state \"running\"");
    const std::string& h = endpoints->host;
    if (h.empty() || h.size() > 253 ||
        h.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != std::string::npos)
      return InvalidArgument("endpoints.host: expected an IP address or host name");
    for (const auto& p : endpoints->ports)
      if (p.container_port < 1 || p.container_port > 65535 || p.host_port < 1 || p.host_port > 65535)
        return InvalidArgument("endpoints.ports: TCP ports are 1-65535");
  }
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const Lease* l = market_.FindLease(id);
  if (!l) return NotFound("lease " + std::to_string(id) + " not found");
  // The machine's own agent reports for its provider.
  if (const market::Machine* am = AgentMachineLocked(addr); am && am->id == l->machine_id) {
    hosts_[am->id].last_seen_ms = clock_->NowMs();  // a report is a sign of life too
    return ReportAsProviderLocked(l->provider, *l, to, message, failed, endpoints);
  }
  if (l->provider != addr) {
    if (l->renter == addr) return PermissionDenied("only the machine's provider reports a lease's state");
    return NotFound("lease " + std::to_string(id) + " not found");
  }
  return ReportAsProviderLocked(addr, *l, to, message, failed, endpoints);
}

Result<Lease> Broker::ReportAsProviderLocked(const std::string& provider, const Lease& lease, LeaseState to,
                                             const std::string& message, bool failed,
                                             const std::optional<ReportedEndpoints>& endpoints) {
  GRID_RETURN_IF_ERROR(market_.CheckHostReport(provider, lease, to));
  if (to == LeaseState::kRunning) {
    if (lease.state == LeaseState::kRunning) return lease;  // repeated report
    Lease next = lease;
    if (endpoints) {
      for (const auto& p : endpoints->ports) {
        bool asked = std::find(lease.ports.begin(), lease.ports.end(), p.container_port) != lease.ports.end() ||
                     (p.container_port == 22 && !lease.ssh_key.empty());
        if (!asked)
          return InvalidArgument("endpoints.ports: lease " + std::to_string(lease.id) + " did not ask for port " +
                                 std::to_string(p.container_port));
      }
      next.endpoint_host = endpoints->host;
      next.endpoints = endpoints->ports;
    }
    next.state = LeaseState::kRunning;
    next.started_ms = clock_->NowMs();  // billing starts now
    if (next.channel) {
      // The voucher schedule starts now too; a machine's end date bounds it.
      const market::Machine* m = market_.FindMachine(next.machine_id);
      UnixMs end_date = m ? m->listing.end_date_ms : 0;
      next.channel->length_ms = end_date ? std::max<int64_t>(1, end_date - next.started_ms) : 0;
    }
    next.message = message;
    int64_t id = next.id;
    store::ChangeSet cs;
    cs.leases.push_back(std::move(next));
    GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
    return *market_.FindLease(id);
  }
  // failed or ended: the host says the workload is gone.
  Lease copy = lease;
  copy.message = message;
  auto reason = failed ? market::EndReason::kFailed : market::EndReason::kExited;
  return EndLeaseLocked(copy, reason, 0);
}

int64_t Broker::RunningMs(const Lease& lease) const { return market::RunningMs(lease, clock_->NowMs()); }

// ---------------------------------------------------------------- settlement

namespace {

// How a batch of transfers changes an account's available balance (the
// customer view: credits_posted - debits_posted - debits_pending).
Micros AvailableDelta(const std::vector<ledger::Transfer>& transfers, const std::string& account) {
  Micros d = 0;
  for (const auto& t : transfers) {
    switch (t.kind) {
      case ledger::TransferKind::kPosted:
        if (t.credit == account) d += t.amount;
        if (t.debit == account) d -= t.amount;
        break;
      case ledger::TransferKind::kHold:
        if (t.debit == account) d -= t.amount;
        break;
      case ledger::TransferKind::kRelease:
        if (t.debit == account) d += t.amount;
        break;
    }
  }
  return d;
}

}  // namespace

Status Broker::SettleAll() {
  // Settles in groups: one durable transaction for up to kSettleBatch
  // leases instead of one fsync per lease. Leases of one renter in one group
  // see the renter's balance as the earlier ones left it. If a group fails
  // to commit, its leases are retried one by one, so one bad lease cannot
  // hold up the rest. Replicas: each group is planned on state caught up
  // just before it, and only a group that lost a race with another
  // replica's commit is planned again, so a busy market cannot starve
  // settlement.
  constexpr size_t kSettleBatch = 256;
  GRID_RETURN_IF_ERROR(Sync());
  std::vector<int64_t> ids;
  UnixMs now;
  {
    std::lock_guard lock(mu_);
    now = clock_->NowMs();
    for (const Lease* l : market_.ActiveLeases()) ids.push_back(l->id);
  }
  Status first_error;
  for (size_t begin = 0; begin < ids.size(); begin += kSettleBatch) {
    std::span<const int64_t> group(ids.data() + begin, std::min(ids.size() - begin, kSettleBatch));
    Status s = Retrying([&] { return SettleGroup(group, now); });
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  return first_error;
}

Status Broker::SettleGroup(std::span<const int64_t> ids, UnixMs now) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  Status first_error;
  auto note = [&](const Status& st) {
    if (!st.ok() && first_error.ok()) first_error = st;
  };
  auto plan = [&](const Lease& l, Micros available) -> std::optional<Result<market::Settlement>> {
    const market::Machine* m = market_.FindMachine(l.machine_id);
    UnixMs end_date = m ? m->listing.end_date_ms : 0;
    market::SettleOptions o;
    o.now_ms = now;
    o.renter_available = available;
    o.tick_ms = options_.tick_ms;
    if (end_date != 0 && end_date <= now) {
      o.end = true;
      o.end_reason = market::EndReason::kEndDate;
      o.bill_until_ms = end_date;
    } else if (l.state != LeaseState::kRunning) {
      return std::nullopt;  // pending: nothing accrues yet
    }
    // An agent's host is billed up to its last heartbeat, never beyond, so a
    // host that silently died costs its renter nothing after its last sign.
    if (auto h = hosts_.find(l.machine_id); h != hosts_.end())
      o.bill_until_ms = o.bill_until_ms ? std::min(o.bill_until_ms, h->second.last_seen_ms) : h->second.last_seen_ms;
    return market::Settle(l, o);
  };

  {
    std::unordered_map<std::string, Micros> available;  // renter -> as this group leaves it
    store::ChangeSet group;
    std::vector<int64_t> planned;
    for (size_t i = 0; i < ids.size(); ++i) {
      const Lease* l = market_.FindLease(ids[i]);
      if (!l || !l->active()) continue;
      auto [it, fresh] = available.try_emplace(l->renter, 0);
      if (fresh) it->second = ledger_.BalanceOf(l->renter).available;
      auto s = plan(*l, it->second);
      if (!s) continue;
      if (!s->ok()) {
        note(s->status());
        continue;
      }
      it->second += AvailableDelta(s->value().transfers, ledger::UserAccount(l->renter));
      for (auto& t : s->value().transfers) group.transfers.push_back(std::move(t));
      group.leases.push_back(std::move(s->value().lease));
      planned.push_back(ids[i]);
    }
    if (group.empty()) return first_error;
    Status committed = CommitLocked(std::move(group));
    if (committed.ok()) return first_error;
    // Another replica committed first: this plan is stale; Retrying plans
    // the group again on the caught-up state.
    if (committed.code() == Code::kAborted) return committed;
    for (int64_t id : planned) {  // fall back to one lease per commit
      const Lease* l = market_.FindLease(id);
      if (!l || !l->active()) continue;
      auto s = plan(*l, ledger_.BalanceOf(l->renter).available);
      if (!s) continue;
      if (!s->ok()) {
        note(s->status());
        continue;
      }
      store::ChangeSet cs;
      cs.transfers = std::move(s->value().transfers);
      cs.leases.push_back(std::move(s->value().lease));
      Status one = CommitLocked(std::move(cs));
      if (one.code() == Code::kAborted) return one;
      note(one);
    }
  }
  return first_error;
}

// ---------------------------------------------------------------- agents

namespace {

std::string Sha256Hex(std::string_view text) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  return crypto::HexEncode(std::span<const uint8_t>(d, sizeof d), false);
}

std::string JoinTokenMeta(const JoinToken& t) {
  return t.provider + " " + std::to_string(t.expires_ms) + " " + (t.revoked ? "1" : "0");
}

}  // namespace

const market::Machine* Broker::AgentMachineLocked(const std::string& agent) const {
  auto it = agents_.find(agent);
  if (it == agents_.end()) return nullptr;
  const market::Machine* m = market_.FindMachine(it->second);
  return m && !m->removed ? m : nullptr;
}

bool Broker::HiddenLocked(int64_t machine_id) const {
  auto it = hosts_.find(machine_id);
  return it != hosts_.end() && !it->second.online;
}

MachineView Broker::ViewLocked(const market::Machine& m) const {
  MachineView v{m, market_.FreeGpus(m.id), std::nullopt};
  if (auto it = hosts_.find(m.id); it != hosts_.end()) v.host = it->second;
  return v;
}

std::optional<HostState> Broker::HostOf(int64_t machine_id) const {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(machine_id);
  if (it == hosts_.end()) return std::nullopt;
  return it->second;
}

Result<JoinToken> Broker::CreateJoinToken(const std::string& provider, int64_t ttl_ms) {
  if (ttl_ms < 60'000 || ttl_ms > 365LL * 24 * 3600'000) return InvalidArgument("ttl: between 1 minute and 365 days");
  JoinToken t;
  t.token = "gjt_" + RandomHex(24);
  std::string hash = Sha256Hex(t.token);
  t.id = hash.substr(0, 12);
  t.provider = provider;
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  t.expires_ms = clock_->NowMs() + ttl_ms;
  store::ChangeSet cs;
  cs.meta.emplace_back("join_token:" + hash, JoinTokenMeta(t));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  JoinToken stored = t;
  stored.token.clear();  // only its hash is kept
  join_tokens_[hash] = stored;
  return t;
}

Result<JoinToken> Broker::RevokeJoinToken(const std::string& provider, const std::string& token_or_id) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  std::string hash;
  if (token_or_id.starts_with("gjt_")) {
    hash = Sha256Hex(token_or_id);
  } else {
    for (const auto& [h, t] : join_tokens_)
      if (t.id == token_or_id) hash = h;
  }
  auto it = join_tokens_.find(hash);
  if (hash.empty() || it == join_tokens_.end() || it->second.provider != provider)
    return NotFound("join token " + token_or_id.substr(0, 16) + " not found among yours");
  JoinToken t = it->second;
  t.revoked = true;
  store::ChangeSet cs;
  cs.meta.emplace_back("join_token:" + hash, JoinTokenMeta(t));
  GRID_RETURN_IF_ERROR(CommitLocked(std::move(cs)));
  it->second = t;
  return t;
}

Result<MachineView> Broker::EnrollMachine(const std::string& agent, const std::string& join_token,
                                          market::MachineSpec spec, std::string spec_json, bool channel_payments) {
  GRID_RETURN_IF_ERROR(market::ValidateSpec(spec));
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  UnixMs now = clock_->NowMs();
  if (auto it = agents_.find(agent); it != agents_.end()) {
    // Enrolled before: the agent restarted or its hardware changed.
    const market::Machine* m = market_.FindMachine(it->second);
    if (!m || m->removed) return PermissionDenied("this machine was removed by its provider");
    bool gpus_changed = m->spec.num_gpus != spec.num_gpus;
    if (gpus_changed && market_.FreeGpus(m->id) != m->spec.num_gpus)
      return Conflict("machine " + std::to_string(m->id) + ": the GPU count changed while leases are active");
    market::Machine next = *m;
    next.spec = std::move(spec);
    next.spec_json = std::move(spec_json);
    next.channel_payments = channel_payments;
    next.updated_ms = now;
    if (next.listing.min_chunk > next.spec.num_gpus) next.listing.min_chunk = next.spec.num_gpus;
    hosts_[next.id].last_seen_ms = now;
    return CommitMachineLocked(std::move(next));
  }
  auto tok = join_tokens_.find(Sha256Hex(join_token));
  if (join_token.empty() || tok == join_tokens_.end())
    return Unauthenticated("join token: unknown; create one with `grid provider join-token create`");
  if (tok->second.revoked) return Unauthenticated("join token: revoked");
  if (tok->second.expires_ms <= now) return Unauthenticated("join token: expired");
  GRID_ASSIGN_OR_RETURN(market::Machine m,
                        market_.PlanRegister(tok->second.provider, std::move(spec), std::move(spec_json), now));
  m.agent_address = agent;
  m.channel_payments = channel_payments;
  int64_t id = m.id;
  GRID_ASSIGN_OR_RETURN(MachineView view, CommitMachineLocked(std::move(m)));
  agents_[agent] = id;
  hosts_[id] = HostState{now, true, 1.0, now, ""};
  RefreshOffersLocked(id);  // now with the host's reliability
  view.host = hosts_[id];
  return view;
}

Result<MachineView> Broker::AgentListOffer(const std::string& agent, market::ListOfferRequest req) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const market::Machine* m = AgentMachineLocked(agent);
  if (!m) return PermissionDenied("not an enrolled machine");
  req.machine_id = m->id;
  GRID_ASSIGN_OR_RETURN(market::Machine next, market_.PlanListOffer(m->provider, req, clock_->NowMs()));
  return CommitMachineLocked(std::move(next));
}

Result<std::vector<AgentLease>> Broker::Heartbeat(const std::string& agent, std::string health_json,
                                                  int64_t* lease_version) {
  if (health_json.size() > 64 * 1024) return InvalidArgument("health: at most 64 KiB");
  std::vector<AgentLease> out;
  std::string beat_key, beat;
  {
    std::lock_guard lock(mu_);
    const market::Machine* m = AgentMachineLocked(agent);
    if (!m && agents_.contains(agent)) return PermissionDenied("this machine was removed by its provider");
    if (!m) return PermissionDenied("not an enrolled machine; run `grid agent --join-token …` first");
    HostState& h = hosts_[m->id];
    h.last_seen_ms = clock_->NowMs();
    bool was_online = h.online;
    h.online = true;  // back in search at once
    h.health_json = std::move(health_json);
    if (!was_online) RefreshOffersLocked(m->id);
    for (const market::Lease* l : market_.ActiveLeasesOn(m->id)) {
      auto lg = logs_.find(l->id);
      out.push_back({*l, market::PaidUntil(*l), lg == logs_.end() ? 0 : lg->second.end_offset()});
    }
    if (lease_version) *lease_version = wakeups_->Version(m->id);
    if (replicated_) {
      beat_key = "beat:" + std::to_string(m->id);
      beat = std::to_string(h.last_seen_ms) + " " + h.health_json;
    }
  }
  if (replicated_) {
    // For the other replicas (the leader ends leases of silent hosts); kept
    // a week past the beat, long after any grace period.
    GRID_RETURN_IF_ERROR(store_->PutShared(beat_key, beat, clock_->NowMs() + 7 * 24 * 3600'000LL));
    for (auto& al : out) {
      // The output offset the agent resumes from lives in the shared state
      // too. Unreadable: the heartbeat fails rather than have the agent send
      // all of its output again.
      GRID_ASSIGN_OR_RETURN(std::optional<std::string> end,
                            store_->GetShared("out_end:" + std::to_string(al.lease.id), clock_->NowMs()));
      if (end) al.log_offset = std::strtoll(end->c_str(), nullptr, 10);
    }
  }
  return out;
}

void Broker::MergeBeatLocked(const std::string& key, const std::string& value) {
  int64_t id = 0, ms = 0;
  std::string_view k(key);
  k.remove_prefix(5);  // "beat:"
  auto [p, ec] = std::from_chars(k.data(), k.data() + k.size(), id);
  if (ec != std::errc() || p != k.data() + k.size()) return;
  size_t space = value.find(' ');
  auto [q, ec2] = std::from_chars(value.data(), value.data() + std::min(space, value.size()), ms);
  if (ec2 != std::errc()) return;
  auto it = hosts_.find(id);
  if (it == hosts_.end() || ms <= it->second.last_seen_ms) return;
  it->second.last_seen_ms = ms;
  if (space != std::string::npos) it->second.health_json = value.substr(space + 1);
}

Status Broker::WaitForLeaseChange(const std::string& agent, int64_t lease_version, int64_t timeout_ms,
                                  MachineWakeups::Callback done) {
  int64_t machine_id;
  {
    std::lock_guard lock(mu_);
    const market::Machine* m = AgentMachineLocked(agent);
    if (!m && agents_.contains(agent)) return PermissionDenied("this machine was removed by its provider");
    if (!m) return PermissionDenied("not an enrolled machine; run `grid agent --join-token …` first");
    machine_id = m->id;
  }
  // Outside mu_: a version that moved in between answers at once.
  wakeups_->Wait(machine_id, lease_version, timeout_ms, std::move(done));
  return Status::Ok();
}

Result<MachineView> Broker::RemoveMachine(const std::string& provider, int64_t machine_id) {
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const market::Machine* m = market_.FindMachine(machine_id);
  if (!m || m->provider != provider)
    return NotFound("machine " + std::to_string(machine_id) + " not found among yours");
  if (m->removed) return ViewLocked(*m);
  // Its leases end first: the renter is not billed for a host that is gone.
  std::vector<int64_t> active;
  for (const market::Lease* l : market_.ActiveLeasesOn(machine_id)) active.push_back(l->id);
  for (int64_t id : active) GRID_RETURN_IF_ERROR(EndLeaseLocked(*market_.FindLease(id), market::EndReason::kHostLost, 0).status());
  market::Machine next = *market_.FindMachine(machine_id);
  next.removed = true;
  next.listing.listed = false;
  next.updated_ms = clock_->NowMs();
  GRID_RETURN_IF_ERROR(CommitMachineLocked(std::move(next)).status());
  hosts_.erase(machine_id);  // agents_ keeps it, so the agent is told it was removed
  return ViewLocked(*market_.FindMachine(machine_id));
}

void LeaseLog::Append(int64_t offset, std::string_view chunk) {
  if (data.empty() && start_offset == 0) start_offset = offset;
  int64_t end = end_offset();
  int64_t from = std::max<int64_t>(offset, end);
  if (offset > end) {
    data.clear();
    start_offset = offset;
    from = offset;
  }
  if (from < offset + static_cast<int64_t>(chunk.size())) data.append(chunk.substr(static_cast<size_t>(from - offset)));
  if (data.size() > kLogKeepBytes) {
    size_t cut = data.size() - kLogKeepBytes;
    data.erase(0, cut);
    start_offset += static_cast<int64_t>(cut);
  }
}

namespace {

// Shared-state forms (replicas). Output: "<start offset> <hex of the bytes>"
// (the bytes are the workload's, not necessarily text). Metering: its
// numbers separated by spaces, "-" for an absent GPU figure.
std::string EncodeSharedLog(const LeaseLog& log) {
  return std::to_string(log.start_offset) + " " +
         crypto::HexEncode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(log.data.data()), log.data.size()),
                           false);
}

std::string EncodeSharedMetering(const Metering& m) {
  auto opt = [](const std::optional<double>& v) {
    if (!v) return std::string("-");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", *v);
    return std::string(buf);
  };
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.17g %.17g %lld %lld %lld %lld %s %s %d %lld", m.wall_seconds, m.cpu_seconds,
                static_cast<long long>(m.peak_memory_bytes), static_cast<long long>(m.oom_kills),
                static_cast<long long>(m.net_rx_bytes), static_cast<long long>(m.net_tx_bytes),
                opt(m.gpu_energy_joules).c_str(), opt(m.gpu_utilization_pct).c_str(), m.gpu_simulated ? 1 : 0,
                static_cast<long long>(m.reported_ms));
  return buf;
}

std::optional<Metering> DecodeSharedMetering(const std::string& text) {
  std::istringstream in(text);
  Metering m;
  std::string energy, util;
  int simulated = 0;
  in >> m.wall_seconds >> m.cpu_seconds >> m.peak_memory_bytes >> m.oom_kills >> m.net_rx_bytes >> m.net_tx_bytes >>
      energy >> util >> simulated >> m.reported_ms;
  if (in.fail()) return std::nullopt;
  auto opt = [](const std::string& v) -> std::optional<double> {
    if (v == "-") return std::nullopt;
    return std::strtod(v.c_str(), nullptr);
  };
  m.gpu_energy_joules = opt(energy);
  m.gpu_utilization_pct = opt(util);
  m.gpu_simulated = simulated != 0;
  return m;
}

}  // namespace

bool DecodeSharedLog(const std::string& text, LeaseLog* out) {
  size_t space = text.find(' ');
  if (space == std::string::npos) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + space, out->start_offset);
  if (ec != std::errc() || p != text.data() + space) return false;
  auto bytes = crypto::HexDecode(std::string_view(text).substr(space + 1));
  if (!bytes.ok()) return false;
  out->data.assign(bytes->begin(), bytes->end());
  return true;
}

Status Broker::AppendLeaseOutput(const std::string& agent, int64_t lease_id, int64_t offset, std::string_view data,
                                 const std::optional<Metering>& metering) {
  if (data.size() > kLogKeepBytes) return InvalidArgument("log: at most 256 KiB per report");
  if (offset < 0) return InvalidArgument("offset: must not be negative");
  std::optional<Metering> stamped = metering;
  if (stamped) stamped->reported_ms = clock_->NowMs();
  {
    std::lock_guard lock(mu_);
    const market::Machine* m = AgentMachineLocked(agent);
    const market::Lease* l = market_.FindLease(lease_id);
    if (!m || !l || l->machine_id != m->id) return NotFound("lease " + std::to_string(lease_id) + " not found");
    hosts_[m->id].last_seen_ms = clock_->NowMs();
    if (!replicated_) {
      if (logs_.size() > 4096) {  // keep memory bounded: forget ended leases' output first
        std::erase_if(logs_, [&](const auto& kv) {
          const market::Lease* x = market_.FindLease(kv.first);
          return !x || !x->active();
        });
      }
      logs_[lease_id].Append(offset, data);
      if (stamped) metering_[lease_id] = *stamped;
      return Status::Ok();
    }
  }
  // Replicas: the output and metering live in the shared state, so a renter
  // reads them from any replica. One agent writes a lease's output, one
  // report at a time, so read-modify-write is safe. Kept a day.
  const UnixMs keep_until = clock_->NowMs() + 24 * 3600'000LL;
  const std::string key = "out:" + std::to_string(lease_id);
  GRID_ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->GetShared(key, clock_->NowMs()));
  LeaseLog log;
  if (stored && !DecodeSharedLog(*stored, &log)) log = LeaseLog{};
  if (!data.empty()) {
    log.Append(offset, data);
    GRID_RETURN_IF_ERROR(store_->PutShared(key, EncodeSharedLog(log), keep_until));
    GRID_RETURN_IF_ERROR(
        store_->PutShared("out_end:" + std::to_string(lease_id), std::to_string(log.end_offset()), keep_until));
  }
  if (stamped)
    GRID_RETURN_IF_ERROR(
        store_->PutShared("meter:" + std::to_string(lease_id), EncodeSharedMetering(*stamped), keep_until));
  return Status::Ok();
}

Result<LeaseLog> Broker::ReadLeaseOutput(const std::string& addr, int64_t lease_id, int64_t offset,
                                         size_t max_bytes) const {
  LeaseLog log;
  {
    std::lock_guard lock(mu_);
    const market::Lease* l = market_.FindLease(lease_id);
    if (!l || !market_.CanSee(addr, *l)) return NotFound("lease " + std::to_string(lease_id) + " not found");
    if (!replicated_) {
      auto it = logs_.find(lease_id);
      if (it == logs_.end()) return LeaseLog{};
      log = it->second;  // a copy: at most kLogKeepBytes
    }
  }
  if (replicated_) {
    GRID_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                          store_->GetShared("out:" + std::to_string(lease_id), clock_->NowMs()));
    if (!stored || !DecodeSharedLog(*stored, &log)) return LeaseLog{};
  }
  LeaseLog out;
  int64_t from = std::clamp(offset, log.start_offset, log.end_offset());
  size_t begin = static_cast<size_t>(from - log.start_offset);
  // Whole UTF-8 characters only, so the JSON answer stays valid: skip
  // continuation bytes at the start, and stop before a cut-off character.
  auto continuation = [&](size_t i) { return (static_cast<unsigned char>(log.data[i]) & 0xC0) == 0x80; };
  while (begin < log.data.size() && continuation(begin)) ++begin;
  size_t end = std::min(log.data.size(), begin + max_bytes);
  if (end < log.data.size()) {
    while (end > begin && continuation(end)) --end;
  }
  out.start_offset = log.start_offset + static_cast<int64_t>(begin);
  out.data = log.data.substr(begin, end - begin);
  return out;
}

std::optional<Metering> Broker::MeteringOf(int64_t lease_id) const {
  if (replicated_) {
    auto stored = store_->GetShared("meter:" + std::to_string(lease_id), clock_->NowMs());
    if (!stored.ok() || !*stored) return std::nullopt;
    return DecodeSharedMetering(**stored);
  }
  std::lock_guard lock(mu_);
  auto it = metering_.find(lease_id);
  if (it == metering_.end()) return std::nullopt;
  return it->second;
}

Status Broker::CheckHosts(bool end_lost_leases) {
  return Retrying([&] { return CheckHostsOnce(end_lost_leases); });
}

Status Broker::CheckHostsOnce(bool end_lost_leases) {
  // Replicas: an agent beats on whichever replica it reaches; every beat is
  // in the shared state, read here outside the lock.
  std::vector<std::pair<std::string, std::string>> beats;
  if (replicated_) {
    GRID_ASSIGN_OR_RETURN(beats, store_->ListShared("beat:", clock_->NowMs()));
  }
  GRID_ASSIGN_OR_RETURN(auto lock, LockForCommand());
  const UnixMs now = clock_->NowMs();
  for (const auto& [key, value] : beats) MergeBeatLocked(key, value);
  const int64_t offline_after = options_.heartbeat_ms * options_.missed_heartbeats;
  Status first_error;
  std::vector<int64_t> offers_changed;
  for (auto& [id, h] : hosts_) {
    const bool was_online = h.online;
    const auto was_reliability = market::ToMillionths(h.reliability);
    bool online = now - h.last_seen_ms <= offline_after;
    // Reliability: exponentially weighted fraction of time online.
    if (now > h.reliability_at_ms) {
      double w = std::exp(-static_cast<double>(now - h.reliability_at_ms) / static_cast<double>(options_.reliability_tau_ms));
      h.reliability = h.reliability * w + (online ? 1.0 : 0.0) * (1.0 - w);
      h.reliability_at_ms = now;
    }
    h.online = online;
    // Its offers show the host's state and reliability (in millionths, as
    // the query language holds it) from now on.
    if (was_online != online || was_reliability != market::ToMillionths(h.reliability)) offers_changed.push_back(id);
    if (online || now - h.last_seen_ms <= options_.host_grace_ms || !end_lost_leases) continue;
    // Offline past the grace period: its leases end, billed to the last beat.
    std::vector<int64_t> lost;
    for (const market::Lease* l : market_.ActiveLeasesOn(id)) lost.push_back(l->id);
    for (int64_t lid : lost) {
      Status st = EndLeaseLocked(*market_.FindLease(lid), market::EndReason::kHostLost, h.last_seen_ms).status();
      if (st.code() == Code::kAborted) {
        // Stale: Retrying runs the check again. The hosts' new state is
        // kept, so their offers must show it now, not at their next change.
        for (int64_t changed : offers_changed) RefreshOffersLocked(changed);
        return st;
      }
      if (!st.ok() && first_error.ok()) first_error = st;
    }
  }
  for (int64_t id : offers_changed) RefreshOffersLocked(id);
  return first_error;
}

// ---------------------------------------------------------------- operator

bool Broker::IsAdmin(const std::string& addr) const {
  if (options_.dev) return true;
  return std::find(options_.admins.begin(), options_.admins.end(), addr) != options_.admins.end();
}

Broker::Stats Broker::GetStats() const {
  std::lock_guard lock(mu_);
  Stats s;
  for (const auto& [id, m] : market_.machines()) {
    ++s.machines;
    s.listed += m.listing.listed;
  }
  for (const auto& [id, l] : market_.leases()) {
    ++s.leases_total;
    s.leases_active += l.active();
  }
  s.commits = commits_;
  s.commit_failures = commit_failures_;
  return s;
}

}  // namespace grid::broker

namespace grid::broker {

Result<ledger::AuditReport> Broker::Audit() {
  // Hold the lock so no command commits while the store is read.
  std::lock_guard lock(mu_);
  return AuditStore(*store_);
}

}  // namespace grid::broker
