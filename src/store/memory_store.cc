// The in-memory Store: the same contract as the SQLite store (store.h), kept
// in ordinary containers behind one mutex, for tests and the simulator.
//
// Commit() applies a ChangeSet in the same order as the SQLite store
// (machines, leases, transfers, accounts, meta) and records how to undo each
// step; the first failing step undoes all earlier ones, so a ChangeSet is all
// or nothing and fails with the same Status the SQLite store returns.
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "store/store.h"
#include "store/store_internal.h"

namespace grid::store {
namespace {

using ledger::Account;
using ledger::Transfer;
using market::Lease;
using market::Machine;

class MemoryStore final : public Store {
 public:
  Result<Snapshot> Load() override {
    std::lock_guard lock(mu_);
    Snapshot snap;
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
    std::vector<std::function<void()>> undo;
    Status status = Apply(changes, &undo);
    if (!status.ok()) {
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
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
  using OrderKey = std::pair<std::string, uint64_t>;  // (renter, nonce)
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

  std::mutex mu_;
  std::map<int64_t, Machine> machines_;
  std::map<int64_t, Lease> leases_;
  std::map<OrderKey, int64_t> order_index_;  // leases with a signed order only
  std::unordered_map<std::string, int64_t> channel_index_;  // payment channel -> the lease it pays
  std::vector<Transfer> transfers_;          // insertion order
  std::unordered_map<std::string, size_t> transfer_index_;
  std::map<std::string, Account> accounts_;
  std::map<std::string, std::string> meta_;
  std::map<int64_t, ledger::Withdrawal> withdrawals_;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace grid::store
