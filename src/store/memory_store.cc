// The in-memory Store: the same contract as the SQLite store (store.h), kept
// in ordinary containers behind one mutex, for tests and the simulator.
// OpenMemoryReplica() opens one MemoryDatabase from several stores, with the
// PostgreSQL store's change log, leadership and shared state, so the
// replicated broker is tested without a server.
//
// Commit() applies a ChangeSet in the same order as the SQLite store
// (machines, leases, transfers, accounts, meta) and records how to undo each
// step; the first failing step undoes all earlier ones, so a ChangeSet is all
// or nothing and fails with the same Status the SQLite store returns.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "store/store.h"
#include "store/store_internal.h"

namespace grid::store {

// Everything a memory store holds, so several stores can open it at once.
class MemoryDatabase {
 public:
  std::mutex mu;
  std::condition_variable changed;  // the change log's head moved
  int64_t head = 0;
  int64_t first_kept = 1;  // the oldest entry not trimmed
  std::map<int64_t, internal::ChangeKeys> log;
  const void* leader = nullptr;  // the store holding leadership
  std::map<std::string, std::pair<std::string, UnixMs>> shared;  // key -> (value, expires)

  using OrderKey = std::pair<std::string, uint64_t>;  // (renter, nonce)
  std::map<int64_t, market::Machine> machines;
  std::map<int64_t, market::Lease> leases;
  std::map<OrderKey, int64_t> order_index;  // leases with a signed order only
  std::unordered_map<std::string, int64_t> channel_index;  // payment channel -> the lease it pays
  std::vector<ledger::Transfer> transfers;  // insertion order
  std::unordered_map<std::string, size_t> transfer_index;
  std::map<std::string, ledger::Account> accounts;
  std::map<std::string, std::string> meta;
  std::map<int64_t, ledger::Withdrawal> withdrawals;
};

namespace {

using ledger::Account;
using ledger::Transfer;
using market::Lease;
using market::Machine;

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(std::shared_ptr<MemoryDatabase> db, bool shared)
      : db_(std::move(db)), shared_(shared), mu_(db_->mu) {}
  ~MemoryStore() override {
    std::lock_guard lock(mu_);
    if (db_->leader == this) db_->leader = nullptr;  // as a replica's closed connection frees its lock
  }

  bool Shared() const override { return shared_; }

  Result<int64_t> Head() override {
    std::lock_guard lock(mu_);
    return db_->head;
  }

  Result<Changes> ChangesSince(int64_t seq) override {
    if (!shared_) return Store::ChangesSince(seq);
    std::lock_guard lock(mu_);
    Changes out;
    out.seq = db_->head;
    if (seq + 1 < db_->first_kept) {
      out.reload = true;
      return out;
    }
    internal::ChangeKeys keys;
    for (auto it = db_->log.upper_bound(seq); it != db_->log.end(); ++it) {
      internal::Merge(&keys, it->second);
      out.entries.push_back({it->first, it->second.machines, it->second.leases});
    }
    for (int64_t id : keys.machines)
      if (auto it = machines_.find(id); it != machines_.end()) out.rows.machines.push_back(it->second);
    for (int64_t id : keys.leases)
      if (auto it = leases_.find(id); it != leases_.end()) out.rows.leases.push_back(it->second);
    for (int64_t id : keys.withdrawals)
      if (auto it = withdrawals_.find(id); it != withdrawals_.end()) out.rows.withdrawals.push_back(it->second);
    for (const auto& id : keys.accounts)
      if (auto it = accounts_.find(id); it != accounts_.end()) out.rows.accounts.push_back(it->second);
    for (const auto& key : keys.meta)
      if (auto it = meta_.find(key); it != meta_.end()) out.rows.meta.emplace_back(key, it->second);
    out.rows.seq = out.seq;
    return out;
  }

  Result<int64_t> WaitForChange(int64_t seq, int64_t timeout_ms) override {
    if (!shared_) return Store::WaitForChange(seq, timeout_ms);
    std::unique_lock lock(mu_);
    db_->changed.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return db_->head > seq; });
    return db_->head;
  }

  Result<bool> HoldLeadership() override {
    if (!shared_) return true;
    std::lock_guard lock(mu_);
    if (db_->leader == nullptr) db_->leader = this;
    return db_->leader == this;
  }

  Status Maintain(int64_t keep_changes, UnixMs now_ms) override {
    if (!shared_) return Status::Ok();
    std::lock_guard lock(mu_);
    while (!db_->log.empty() && db_->log.begin()->first < db_->head - keep_changes) {
      db_->first_kept = db_->log.begin()->first + 1;
      db_->log.erase(db_->log.begin());
    }
    std::erase_if(db_->shared, [&](const auto& kv) { return kv.second.second <= now_ms; });
    return Status::Ok();
  }

  Status PutShared(const std::string& key, const std::string& value, UnixMs expires_ms) override {
    if (!shared_) return Store::PutShared(key, value, expires_ms);
    std::lock_guard lock(mu_);
    db_->shared[key] = {value, expires_ms};
    return Status::Ok();
  }

  Result<std::optional<std::string>> GetShared(const std::string& key, UnixMs now_ms) override {
    if (!shared_) return Store::GetShared(key, now_ms);
    std::lock_guard lock(mu_);
    auto it = db_->shared.find(key);
    if (it == db_->shared.end() || it->second.second <= now_ms) return std::optional<std::string>();
    return std::optional<std::string>(it->second.first);
  }

  Result<std::optional<std::string>> TakeShared(const std::string& key, UnixMs now_ms) override {
    if (!shared_) return Store::TakeShared(key, now_ms);
    std::lock_guard lock(mu_);
    auto it = db_->shared.find(key);
    if (it == db_->shared.end()) return std::optional<std::string>();
    std::optional<std::string> out;
    if (it->second.second > now_ms) out = std::move(it->second.first);
    db_->shared.erase(it);
    return out;
  }

  Result<std::vector<std::pair<std::string, std::string>>> ListShared(const std::string& prefix,
                                                                     UnixMs now_ms) override {
    if (!shared_) return Store::ListShared(prefix, now_ms);
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = db_->shared.lower_bound(prefix); it != db_->shared.end() && it->first.starts_with(prefix); ++it)
      if (it->second.second > now_ms) out.emplace_back(it->first, it->second.first);
    return out;
  }

  Result<Snapshot> Load() override {
    std::lock_guard lock(mu_);
    Snapshot snap;
    snap.seq = shared_ ? db_->head : 0;
    snap.machines.reserve(machines_.size());
    for (const auto& [id, m] : machines_) snap.machines.push_back(m);
    snap.leases.reserve(leases_.size());
    for (const auto& [id, l] : leases_) snap.leases.push_back(l);
    snap.accounts.reserve(accounts_.size());
    for (const auto& [id, a] : accounts_) snap.accounts.push_back(a);
    snap.meta.assign(meta_.begin(), meta_.end());
    for (const auto& [id, w] : withdrawals_) snap.withdrawals.push_back(w);
    return snap;
  }

  Status Commit(const ChangeSet& changes) override {
    std::lock_guard lock(mu_);
    if (changes.empty()) return Status::Ok();  // not even a change-log entry
    if (changes.after_seq) {
      if (!shared_) return Internal("memory: a numbered commit on a store that is not shared");
      if (*changes.after_seq != db_->head) return internal::StaleCommit(*changes.after_seq, db_->head);
    }
    std::vector<std::function<void()>> undo;
    Status status = Apply(changes, &undo);
    if (!status.ok()) {
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
      return status;
    }
    if (changes.after_seq) {
      db_->log.emplace(++db_->head, internal::KeysOf(changes));
      db_->changed.notify_all();
    }
    return status;
  }

  Result<std::optional<Transfer>> FindTransfer(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = transfer_index_.find(id);
    if (it == transfer_index_.end()) return std::optional<Transfer>();
    return std::optional<Transfer>(transfers_[it->second]);
  }

  Result<std::vector<Transfer>> ListTransfers(const TransferQuery& query) override {
    std::lock_guard lock(mu_);
    std::vector<Transfer> out;
    if (query.limit <= 0) return out;
    std::set<std::string, std::less<>> accounts(query.accounts.begin(), query.accounts.end());
    for (auto it = transfers_.rbegin(); it != transfers_.rend(); ++it) {
      if (!accounts.empty() && !accounts.contains(it->debit) && !accounts.contains(it->credit)) continue;
      if (query.lease_id > 0 && it->lease_id != query.lease_id) continue;
      out.push_back(*it);
      if (static_cast<int>(out.size()) >= query.limit) break;
    }
    return out;
  }

  Status ForEachTransfer(const std::function<bool(const Transfer&)>& visit) override {
    // Pages of copies, so `visit` runs without the lock and may use the store.
    constexpr size_t kPage = 512;
    std::vector<Transfer> page;
    for (size_t next = 0;;) {
      page.clear();
      {
        std::lock_guard lock(mu_);
        for (size_t i = next; i < transfers_.size() && page.size() < kPage; ++i) page.push_back(transfers_[i]);
      }
      if (page.empty()) return Status::Ok();
      next += page.size();
      for (const Transfer& t : page) {
        if (!visit(t)) return Status::Ok();
      }
    }
  }

  std::string Describe() const override { return "memory:"; }

 private:
  using OrderKey = MemoryDatabase::OrderKey;
  static OrderKey KeyOf(const Lease& l) { return {l.renter, l.order.nonce}; }

  template <typename Map>
  static void Upsert(Map& map, const typename Map::key_type& key, typename Map::mapped_type value,
                     std::vector<std::function<void()>>* undo) {
    auto it = map.find(key);
    if (it == map.end()) {
      map.emplace(key, std::move(value));
      undo->push_back([&map, key] { map.erase(key); });
    } else {
      undo->push_back([&map, key, old = std::move(it->second)] { map[key] = old; });
      it->second = std::move(value);
    }
  }

  Status Apply(const ChangeSet& changes, std::vector<std::function<void()>>* undo) {
    for (const Machine& m : changes.machines) {
      Status s = internal::ValidateMachine(m);
      if (!s.ok()) return s;
      Upsert(machines_, m.id, internal::StoredForm(m), undo);
    }
    for (const Lease& l : changes.leases) {
      if (internal::HasSignedOrder(l)) {
        auto it = order_index_.find(KeyOf(l));
        if (it != order_index_.end() && it->second != l.id) return internal::NonceReplay(l);
      }
      auto old = leases_.find(l.id);
      if (old != leases_.end() && internal::HasSignedOrder(old->second)) {
        OrderKey key = KeyOf(old->second);
        order_index_.erase(key);
        undo->push_back([this, key, id = l.id] { order_index_[key] = id; });
      }
      if (internal::HasSignedOrder(l)) {
        OrderKey key = KeyOf(l);
        order_index_[key] = l.id;
        undo->push_back([this, key] { order_index_.erase(key); });
      }
      if (l.channel) {
        auto [it, fresh] = channel_index_.try_emplace(l.channel->channel, l.id);
        if (!fresh && it->second != l.id) return internal::ChannelReuse(l, it->second);
        if (fresh) undo->push_back([this, key = l.channel->channel] { channel_index_.erase(key); });
      }
      Upsert(leases_, l.id, l, undo);
    }
    for (const Transfer& t : changes.transfers) {
      auto it = transfer_index_.find(t.id);
      if (it != transfer_index_.end()) return internal::DuplicateTransfer(transfers_[it->second], t);
      transfer_index_.emplace(t.id, transfers_.size());
      transfers_.push_back(t);
      undo->push_back([this, id = t.id] {
        transfers_.pop_back();
        transfer_index_.erase(id);
      });
    }
    for (const Account& a : changes.accounts) Upsert(accounts_, a.id, a, undo);
    for (const auto& [key, value] : changes.meta) Upsert(meta_, key, value, undo);
    for (const auto& w : changes.withdrawals) Upsert(withdrawals_, w.id, w, undo);
    return Status::Ok();
  }

  const std::shared_ptr<MemoryDatabase> db_;
  const bool shared_;
  std::mutex& mu_;  // db_->mu
  // The tables. Reached only through db_ (so every store of one database
  // sees the same rows): references into it, named as members for brevity.
  std::map<int64_t, Machine>& machines_ = db_->machines;
  std::map<int64_t, Lease>& leases_ = db_->leases;
  std::map<OrderKey, int64_t>& order_index_ = db_->order_index;
  std::unordered_map<std::string, int64_t>& channel_index_ = db_->channel_index;
  std::vector<Transfer>& transfers_ = db_->transfers;
  std::unordered_map<std::string, size_t>& transfer_index_ = db_->transfer_index;
  std::map<std::string, Account>& accounts_ = db_->accounts;
  std::map<std::string, std::string>& meta_ = db_->meta;
  std::map<int64_t, ledger::Withdrawal>& withdrawals_ = db_->withdrawals;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(NewMemoryDatabase(), false); }

std::shared_ptr<MemoryDatabase> NewMemoryDatabase() { return std::make_shared<MemoryDatabase>(); }

std::unique_ptr<Store> OpenMemoryReplica(std::shared_ptr<MemoryDatabase> db) {
  return std::make_unique<MemoryStore>(std::move(db), true);
}

}  // namespace grid::store
