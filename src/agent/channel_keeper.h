// ChannelKeeper: the provider agent's duties for leases paid by payment
// channel (issue 6, docs/channels.md, "The lease flow"). The agent's key is
// the channels' provider (payee); the keeper
// - checks a channel lease's channel ON CHAIN before its workload starts
//   (it exists, pays this agent, is signed for by the lease's signer, holds
//   the broker's token, has no renter close pending, nothing paid yet, and
//   expires late enough): the broker's word is not enough;
// - once the lease runs, tracks it in the VoucherBook (state_dir/vouchers)
//   with the chain's deposit and expiry, and feeds each voucher of the
//   lease view into it (signature + schedule checked, fdatasync'ed);
// - says when the workload must stop (the renter's vouchers stopped, or the
//   channel was closed or is being closed on chain);
// - redeems the best voucher when the book says so (threshold, expiry);
// - closes the channel when the lease is no longer active: with the best
//   voucher, or "as paid" when there is none or it was redeemed already;
//   then forgets the lease. Closing is driven by the durable book, so it
//   survives agent restarts;
// - asks the broker to sync (POST /v1/leases/{id}/channel/sync) after each
//   redeem or close.
// Transactions (redeem, close: seconds to minutes until mined) run on a
// worker thread, one at a time, so the heartbeat loop never waits for one;
// their outcomes are applied to the book by the loop at its next Tick. A
// failed transaction is retried with exponential backoff (retry_min_ms
// doubling up to retry_max_ms); before concluding anything from a failure
// the channel is read again (a redeem whose receipt timed out may be mined).
// Reads (Get, chain time) run on the calling thread; the node's per-call
// timeout bounds them.
//
// Thread safety: every public method is called from the agent's loop thread
// only (the worker touches only the ChannelChain and its own queue).
#pragma once

#include <boost/json.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/channel_chain.h"
#include "agent/voucher_book.h"
#include "chain/channel_config.h"
#include "core/clock.h"
#include "core/money.h"
#include "core/status.h"

namespace grid::agent {

inline constexpr Micros kDefaultRedeemThreshold = 5'000'000;  // $5.00

struct ChannelKeeperOptions {
  chain::ChannelsConfig config;  // contract, token, chain id: from the broker, checked against our node
  crypto::Address payee;         // this agent's address, the channels' provider
  // Redeem once this much of the best voucher is unredeemed (and always
  // before the channel's expiry − margin, and at once when the renter starts
  // closing). Each redeem costs gas, so not at every voucher; the unredeemed
  // part is not at risk meanwhile (the deposit is locked until the expiry,
  // and a renter's close leaves an hour to redeem), so the threshold only
  // trades gas against having the money in hand sooner.
  Micros redeem_threshold = kDefaultRedeemThreshold;
  int64_t retry_min_ms = 5'000;
  int64_t retry_max_ms = 300'000;
  // How often each tracked channel is read on chain, to notice a renter's
  // startClose (redeem at once, stop the workload) or a channel that is gone.
  int64_t watch_ms = 60'000;
  // Chain transactions on a worker thread (true) or inline in Tick (false:
  // deterministic unit tests).
  bool background = true;
};

// What the keeper asks of the broker: POST /v1/leases/{id}/channel/sync.
// Asks the broker to read the lease's channel on chain (POST
// /v1/leases/{id}/channel/sync); `close_tx` (0x hex, or "") is the
// transaction that closed it, whose Closed event gives the final payout.
using ChannelSyncFn = std::function<Status(int64_t lease_id, const std::string& close_tx)>;

class ChannelKeeper {
 public:
  // A channel that reads as gone (all zeros) is believed only when a read
  // at least this much later agrees: a node lagging behind the open block,
  // or one behind a load balancer, reads a live channel as all zeros too.
  static constexpr int64_t kGoneConfirmMs = 30'000;
  // Opens (or creates) the voucher book under `book_dir`; the leases it
  // holds are closed once the broker no longer lists them as active.
  static Result<std::unique_ptr<ChannelKeeper>> Open(ChannelKeeperOptions options, std::shared_ptr<ChannelChain> chain,
                                                     const std::string& book_dir, ChannelSyncFn sync);
  ~ChannelKeeper();
  ChannelKeeper(const ChannelKeeper&) = delete;
  ChannelKeeper& operator=(const ChannelKeeper&) = delete;

  // Before a channel lease's workload starts: its channel as the chain holds
  // it must match the lease. Ok: start it. Unavailable: the node could not
  // be asked; try again later. Anything else: refuse the lease (the message
  // says why, for the lease's "failed" report).
  Status CheckBeforeStart(const boost::json::object& lease, UnixMs now_ms);

  // A channel lease this agent runs, as the broker's lease view shows it:
  // tracks it once it has started (start_ms > 0) and accepts its voucher if
  // it is new. Ok also when there is nothing to do yet. Unavailable: the
  // chain could not be read to track it (try again); any other error means
  // the lease cannot be paid safely (stop it, the message says why).
  Status Observe(const boost::json::object& lease, UnixMs now_ms);

  // Whether the lease's workload must stop now, and why (empty: it need
  // not). Only for leases tracked here.
  std::string StopReason(int64_t lease_id, UnixMs now_ms) const;

  // Redeems, closes and syncs. `active`: the ids of the leases the broker
  // lists as active (its heartbeat answer), or nullptr when the broker could
  // not be reached: then only redeems run (they matter most then, before
  // the channel's expiry) and nothing is closed or synced.
  void Tick(const std::set<int64_t>* active, UnixMs now_ms);

  // Blocks until no transaction is queued or running (tests, shutdown).
  void WaitIdle();

  bool Tracks(int64_t lease_id) const { return book_->Find(lease_id) != nullptr; }
  const VoucherBook& book() const { return *book_; }

 private:
  struct Job;
  struct Outcome;
  struct Worker;
  // A lease's channel checked on chain, not tracked in the book yet.
  struct Checked {
    chain::channels::ChannelId id{};
    crypto::Address signer;
    Micros deposit = 0;
    UnixMs expiry_ms = 0;
  };
  // Per lease, in memory: the transaction in flight and the retry schedule.
  struct Duty {
    bool busy = false;
    int failures = 0;
    UnixMs next_try_ms = 0;
    UnixMs next_watch_ms = 0;
    bool close_pending = false;  // the renter started closing the channel
    bool gone = false;           // the channel no longer exists on chain (confirmed)
    UnixMs gone_since_ms = 0;    // first read as gone, not confirmed yet (0: none)
  };
  // Whether a "gone" read confirms an earlier one; else notes it and
  // schedules the second read.
  bool ConfirmGone(Duty& d, UnixMs now_ms) const;

  ChannelKeeper(ChannelKeeperOptions options, std::shared_ptr<ChannelChain> chain, ChannelSyncFn sync);
  Result<Checked> CheckChannel(const boost::json::object& lease, bool fresh, UnixMs now_ms);
  // The channel as the chain holds it against the lease; fills `c`.
  Status CheckState(const market::ChannelPayment& p, const chain::channels::ChannelState& st, bool fresh,
                    Checked* c) const;
  Status Track(int64_t lease_id, const boost::json::object& lease, const Checked& c);
  void AcceptVoucher(int64_t lease_id, const boost::json::object& channel, UnixMs now_ms);
  void Apply(const Outcome& o, UnixMs now_ms);
  void Submit(int64_t lease_id, Job job, UnixMs now_ms);
  bool Due(int64_t lease_id, UnixMs now_ms);
  void Failed(int64_t lease_id, const Status& s, const char* what, UnixMs now_ms);
  void SyncPending();
  // The worker's side: only the chain is touched.
  static Outcome RunJob(ChannelChain& chain, int64_t lease_id, const Job& job);
  // After a send: what the chain shows now decides the outcome.
  static Outcome Conclude(ChannelChain& chain, const Job& job, const Status& sent, Micros paid_if_mined, Outcome o);

  const ChannelKeeperOptions o_;
  std::shared_ptr<ChannelChain> chain_;
  ChannelSyncFn sync_;
  std::unique_ptr<VoucherBook> book_;
  std::map<int64_t, Checked> checked_;       // checked before start, not yet tracked
  std::map<int64_t, Duty> duties_;
  std::map<int64_t, std::string> to_sync_;   // leases whose sync the broker has not taken yet -> close tx or ""
  std::map<int64_t, Micros> refused_voucher_;  // the last voucher refused (logged once)
  std::shared_ptr<Worker> worker_;
};

}  // namespace grid::agent
