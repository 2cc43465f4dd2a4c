#include "agent/channel_keeper.h"

#include <cstdio>

#include "api/codec.h"
#include "crypto/hex.h"

namespace grid::agent {
namespace json = boost::json;
namespace channels = chain::channels;

struct ChannelKeeper::Job {
  enum Kind { kRedeem, kClose, kWatch };
  Kind kind = kWatch;
  channels::ChannelId id{};
  Micros amount = 0;                     // redeem/close: the voucher's cumulative amount
  std::optional<crypto::Signature> sig;  // its signature; nullopt: no voucher (close as paid)
};

struct ChannelKeeper::Outcome {
  int64_t lease_id = 0;
  Job::Kind kind = Job::kWatch;
  Status status;
  bool exists = true;          // the channel, as last read
  bool close_pending = false;  // the renter's startClose, as last read
  std::optional<Micros> paid;  // what the channel paid its provider, when known
  std::string close_tx;        // the close this job mined (0x hex), "" for none
};

// One thread running chain transactions in order; outcomes wait in `done`
// for the loop's next Tick. Held by shared_ptr so that a thread still
// waiting for a receipt when the keeper goes away keeps what it touches.
struct ChannelKeeper::Worker {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<Outcome()>> queue;
  std::vector<Outcome> done;
  bool stop = false;
  bool running = false;
  std::thread thread;

  static void Loop(std::shared_ptr<Worker> w) {
    std::unique_lock lock(w->mu);
    for (;;) {
      w->cv.wait(lock, [&] { return w->stop || !w->queue.empty(); });
      if (w->stop) return;
      auto job = std::move(w->queue.front());
      w->queue.pop_front();
      w->running = true;
      lock.unlock();
      Outcome o = job();
      lock.lock();
      w->done.push_back(std::move(o));
      w->running = false;
      w->cv.notify_all();
    }
  }
};

namespace {

void Log(int64_t lease_id, const std::string& what) {
  std::fprintf(stderr, "grid agent: channel lease %lld: %s\n", static_cast<long long>(lease_id), what.c_str());
}

// Base units as micro-USD; a uint96 amount past int64 cannot come from a
// lease of this broker, so it is clamped (and then refused where it matters).
Micros ToMicros(const chain::U256& v) {
  auto u = v.ToUint64();
  return !u || *u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<Micros>(*u);
}

int64_t IntOf(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  return v && v->is_int64() ? v->get_int64() : 0;
}

const json::object* ChannelOf(const json::object& lease) {
  const json::value* v = lease.if_contains("channel");
  return v && v->is_object() ? &v->get_object() : nullptr;
}

}  // namespace

// --- the worker's side: only the chain is touched here ---------------------

ChannelKeeper::Outcome ChannelKeeper::RunJob(ChannelChain& chain, int64_t lease_id, const Job& job) {
  Outcome o;
  o.lease_id = lease_id;
  o.kind = job.kind;
  // What to send follows from the channel as it is now: a close pays with
  // the best voucher only while that still pays something (else the
  // contract refuses it as StaleVoucher, and the close goes "as paid").
  auto before = chain.Get(job.id);
  if (!before.ok()) {
    o.status = before.status();
    return o;
  }
  o.exists = before->exists;
  o.close_pending = before->close_at_s != 0;
  if (!before->exists) return o;  // gone: nothing to send
  o.paid = ToMicros(before->paid);
  if (job.kind == Job::kWatch) return o;
  if (job.kind == Job::kRedeem && *o.paid >= job.amount) return o;  // an earlier try, or someone else, did it
  const bool with_voucher = job.kind == Job::kRedeem || (job.sig && job.amount > *o.paid);
  const Micros paid_if_mined = with_voucher ? job.amount : *o.paid;
  Status sent;
  if (job.kind == Job::kRedeem) {
    sent = chain.Redeem(job.id, job.amount, *job.sig);
  } else {
    auto closed = with_voucher ? chain.Close(job.id, job.amount, job.sig) : chain.Close(job.id, 0, std::nullopt);
    sent = closed.status();
    if (closed.ok()) o.close_tx = crypto::HexEncode(*closed);
  }
  return Conclude(chain, job, sent, paid_if_mined, std::move(o));
}

ChannelKeeper::Outcome ChannelKeeper::Conclude(ChannelChain& chain, const Job& job, const Status& sent,
                                               Micros paid_if_mined, Outcome o) {
  // Read the channel again whatever the answer: a transaction whose receipt
  // did not come in time may well be mined.
  auto after = chain.Get(job.id);
  if (!after.ok()) {
    o.status = sent;
    if (sent.ok()) {
      o.paid = paid_if_mined;
      o.exists = job.kind == Job::kRedeem;
    }
    return o;
  }
  o.exists = after->exists;
  o.close_pending = after->close_at_s != 0;
  if (!after->exists) {
    // A close: by this transaction, or by one of ours that timed out earlier
    // (the same amount). Otherwise the renter refunded or finished a close
    // meanwhile, and what was paid is not known.
    o.paid.reset();
    if (sent.ok() && job.kind == Job::kClose) o.paid = paid_if_mined;
    return o;
  }
  o.paid = ToMicros(after->paid);
  if (job.kind == Job::kRedeem && *o.paid >= job.amount) return o;
  o.status = !sent.ok() ? sent
             : job.kind == Job::kRedeem
                 ? Internal("redeem was mined but the channel has paid only " + FormatMoney(*o.paid))
                 : Internal("close was mined but the channel is still open");
  return o;
}

// --- the loop's side ---------------------------------------------------------

ChannelKeeper::ChannelKeeper(ChannelKeeperOptions options, std::shared_ptr<ChannelChain> chain, ChannelSyncFn sync)
    : o_(std::move(options)), chain_(std::move(chain)), sync_(std::move(sync)), worker_(std::make_shared<Worker>()) {
  if (o_.background) worker_->thread = std::thread(Worker::Loop, worker_);
}

ChannelKeeper::~ChannelKeeper() {
  if (!worker_->thread.joinable()) return;
  bool running;
  {
    std::lock_guard lock(worker_->mu);
    worker_->stop = true;
    running = worker_->running;
    worker_->cv.notify_all();
  }
  // A transaction waiting for its receipt may take minutes: let it finish
  // on its own (it holds the worker and the chain); the book, durable,
  // brings the lease's duty back at the next start.
  if (running) worker_->thread.detach();
  else worker_->thread.join();
}

Result<std::unique_ptr<ChannelKeeper>> ChannelKeeper::Open(ChannelKeeperOptions options,
                                                           std::shared_ptr<ChannelChain> chain,
                                                           const std::string& book_dir, ChannelSyncFn sync) {
  if (!chain) return InvalidArgument("channel keeper: no chain");
  if (options.redeem_threshold <= 0) return InvalidArgument("channel keeper: the redeem threshold must be positive");
  GRID_ASSIGN_OR_RETURN(std::unique_ptr<VoucherBook> book, VoucherBook::Open(book_dir));
  std::unique_ptr<ChannelKeeper> k(new ChannelKeeper(std::move(options), std::move(chain), std::move(sync)));
  k->book_ = std::move(book);
  for (const auto& [id, st] : k->book_->leases())
    Log(id, "in the voucher book: best voucher " + FormatMoney(st.accepted) + ", redeemed " + FormatMoney(st.redeemed));
  return k;
}

Result<ChannelKeeper::Checked> ChannelKeeper::CheckChannel(const json::object& lease, bool fresh, UnixMs now_ms) {
  const json::object* ch = ChannelOf(lease);
  if (!ch) return InvalidArgument("the lease is paid by channel but carries no channel");
  GRID_ASSIGN_OR_RETURN(market::ChannelPayment p, api::DecodeLeaseChannel(*ch));
  // The lease must name the contract and token this agent checked against
  // its own node at start, and this agent as the payee.
  const chain::ChannelsConfig& cfg = o_.config;
  if (p.chain_id != cfg.chain_id || p.contract != cfg.contract.ToLowerHex())
    return Conflict("the lease's channel is on contract " + p.contract + " of chain " + std::to_string(p.chain_id) +
                    ", not this broker's " + cfg.contract.ToLowerHex() + " on chain " + std::to_string(cfg.chain_id));
  if (p.token != cfg.token.ToLowerHex())
    return Conflict("the lease's channel is paid in token " + p.token + ", not " + cfg.token.ToLowerHex());
  if (p.payee != o_.payee.ToLowerHex())
    return Conflict("the lease's channel pays " + p.payee + ", not this host's agent " + o_.payee.ToLowerHex());
  // The provider's risk is the grace: unpaid running time before a stop.
  if (p.grace_ms > p.interval_ms)
    return Conflict("the lease's channel terms give a grace of " + std::to_string(p.grace_ms) +
                    " ms, more than its voucher interval of " + std::to_string(p.interval_ms) + " ms");
  Checked c;
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(p.channel, c.id, "channel id"));
  auto st = chain_->Get(c.id);
  if (!st.ok()) {
    if (st.status().code() == Code::kUnavailable) return st.status();
    return Conflict("reading channel " + p.channel + " on chain: " + st.status().message());
  }
  GRID_RETURN_IF_ERROR(CheckState(p, *st, fresh, &c));
  if (fresh) {
    // At least the first voucher must be redeemable before the expiry, by
    // the chain's clock (which the contract uses) and by ours.
    GRID_ASSIGN_OR_RETURN(uint64_t chain_s, chain_->ChainTimeS());
    if (chain_s > static_cast<uint64_t>(INT64_MAX / 4000)) return Conflict("the chain's clock is out of range");
    // Interval and margin are at most a day each (api::DecodeLeaseChannel).
    const UnixMs now = std::max<UnixMs>(now_ms, static_cast<UnixMs>(chain_s) * 1000);
    if (c.expiry_ms < now + p.interval_ms + p.expiry_margin_ms)
      return Conflict("channel " + p.channel + " on chain: it expires at " + FormatTime(c.expiry_ms) +
                      ", too soon to redeem a voucher");
  }
  return c;
}

Status ChannelKeeper::CheckState(const market::ChannelPayment& p, const channels::ChannelState& st, bool fresh,
                                 Checked* c) const {
  const std::string on_chain = "channel " + p.channel + " on chain: ";
  if (!st.exists) return Conflict(on_chain + "it does not exist (closed, or never opened)");
  if (st.provider != o_.payee)
    return Conflict(on_chain + "it pays " + st.provider.ToChecksumHex() + ", not this host's agent " +
                    o_.payee.ToChecksumHex());
  if (st.signer.ToLowerHex() != p.signer)
    return Conflict(on_chain + "its vouchers are signed by " + st.signer.ToChecksumHex() + ", the lease says " +
                    p.signer);
  if (st.token != o_.config.token)
    return Conflict(on_chain + "it holds token " + st.token.ToChecksumHex() + ", not " +
                    o_.config.token.ToChecksumHex());
  if (st.close_at_s != 0) return Conflict(on_chain + "the renter has started closing it");
  // A fresh lease's vouchers start from 0: any earlier payout would make
  // the first ones unredeemable (StaleVoucher).
  if (fresh && st.paid != chain::U256()) return Conflict(on_chain + "it has paid out already; a lease needs a fresh channel");
  auto deposit = st.deposit.ToUint64();
  if (!deposit || *deposit > static_cast<uint64_t>(INT64_MAX)) return Conflict(on_chain + "its deposit is too large");
  if (st.expiry_s > static_cast<uint64_t>(INT64_MAX / 1000)) return Conflict(on_chain + "its expiry is out of range");
  c->signer = st.signer;
  c->deposit = static_cast<Micros>(*deposit);
  c->expiry_ms = static_cast<UnixMs>(st.expiry_s) * 1000;
  if (c->deposit <= p.margin)
    return Conflict(on_chain + "its deposit " + FormatMoney(c->deposit) + " does not exceed the margin " +
                    FormatMoney(p.margin));
  return Status::Ok();
}

Status ChannelKeeper::CheckBeforeStart(const json::object& lease, UnixMs now_ms) {
  const int64_t id = IntOf(lease, "id");
  GRID_ASSIGN_OR_RETURN(Checked c, CheckChannel(lease, /*fresh=*/true, now_ms));
  checked_[id] = c;
  return Status::Ok();
}

Status ChannelKeeper::Track(int64_t lease_id, const json::object& lease, const Checked& c) {
  GRID_ASSIGN_OR_RETURN(market::ChannelPayment p, api::DecodeLeaseChannel(*ChannelOf(lease)));
  api::Fields f(lease);
  ChannelLease cl;
  cl.chain_id = o_.config.chain_id;
  cl.contract = o_.config.contract;
  cl.channel = c.id;
  cl.signer = c.signer;
  // The schedule's terms as the broker and `grid pay` compute them
  // (market::TermsOf), with the chain's deposit and expiry, not the
  // broker's: they are what a voucher can actually be redeemed against.
  market::Lease terms_of;
  GRID_ASSIGN_OR_RETURN(terms_of.price_per_hour, f.Money("price_per_hour"));
  terms_of.started_ms = IntOf(*ChannelOf(lease), "start_ms");
  terms_of.channel = p;
  terms_of.channel->deposit = c.deposit;
  terms_of.channel->expiry_ms = c.expiry_ms;
  cl.terms = market::TermsOf(terms_of);
  const market::ChannelTerms& t = cl.terms;
  GRID_RETURN_IF_ERROR(book_->Track(lease_id, cl));
  Log(lease_id, "tracking channel " + p.channel + ": deposit " + FormatMoney(t.deposit) + ", expiry " +
                    FormatTime(t.channel_expiry_ms) + ", started " + FormatTime(t.start_ms));
  return Status::Ok();
}

Status ChannelKeeper::Observe(const json::object& lease, UnixMs now_ms) {
  const int64_t id = IntOf(lease, "id");
  const json::object* ch = ChannelOf(lease);
  if (!ch) return InvalidArgument("the lease is paid by channel but carries no channel");
  if (IntOf(*ch, "start_ms") <= 0) return Status::Ok();  // not running at the broker yet
  if (!book_->Find(id)) {
    auto it = checked_.find(id);
    Checked c;
    if (it != checked_.end()) {
      c = it->second;
    } else {
      // Started before this agent's restart but never tracked: check the
      // channel now (it may have paid out already: not a fresh one).
      GRID_ASSIGN_OR_RETURN(c, CheckChannel(lease, /*fresh=*/false, now_ms));
    }
    GRID_RETURN_IF_ERROR(Track(id, lease, c));
    checked_.erase(id);
  }
  AcceptVoucher(id, *ch, now_ms);
  return Status::Ok();
}

void ChannelKeeper::AcceptVoucher(int64_t lease_id, const json::object& channel, UnixMs now_ms) {
  const json::value* v = channel.if_contains("voucher");
  if (!v || !v->is_object()) return;
  api::Fields f(v->get_object(), "channel.voucher.");
  auto amount = f.Money("amount");
  auto sig_hex = f.String("signature");
  Result<crypto::Signature> sig = sig_hex.ok() ? crypto::ParseSignature(*sig_hex) : Result<crypto::Signature>(sig_hex.status());
  if (!amount.ok() || !sig.ok()) {
    Log(lease_id, "the broker's voucher is malformed: " +
                      (amount.ok() ? sig.status().message() : amount.status().message()));
    return;
  }
  const VoucherBook::State* st = book_->Find(lease_id);
  if (*amount <= st->accepted) return;  // known, or older than the best one
  auto k = book_->Accept(lease_id, *amount, *sig, now_ms);
  if (k.ok()) {
    refused_voucher_.erase(lease_id);
    return;
  }
  if (k.status().code() == Code::kConflict && k.status().message().find("already accepted") != std::string::npos)
    return;
  // Refused (early, off schedule, a bad signature, too close to the
  // expiry): the workload stops by MustStop unless a good one comes. A
  // voucher refused as early may pass later, so it is tried each time, but
  // said once.
  auto [it, fresh] = refused_voucher_.try_emplace(lease_id, *amount);
  if (fresh || it->second != *amount) Log(lease_id, "refused the voucher of " + FormatMoney(*amount) + ": " + k.status().message());
  it->second = *amount;
}

std::string ChannelKeeper::StopReason(int64_t lease_id, UnixMs now_ms) const {
  const VoucherBook::State* st = book_->Find(lease_id);
  if (!st) return "";
  if (auto d = duties_.find(lease_id); d != duties_.end()) {
    if (d->second.gone) return "the payment channel was closed on chain";
    if (d->second.close_pending) return "the renter started closing the payment channel";
  }
  if (!book_->MustStop(lease_id, now_ms)) return "";
  return "the renter's vouchers stopped: paid through " +
         FormatTime(market::PaidThrough(st->channel.terms, st->accepted)) + " (best voucher " +
         FormatMoney(st->accepted) + ")";
}

bool ChannelKeeper::ConfirmGone(Duty& d, UnixMs now_ms) const {
  if (d.gone_since_ms == 0) {
    d.gone_since_ms = now_ms;
    d.next_try_ms = now_ms + kGoneConfirmMs;
    d.next_watch_ms = now_ms + kGoneConfirmMs;
    return false;
  }
  return now_ms - d.gone_since_ms >= kGoneConfirmMs;
}

bool ChannelKeeper::Due(int64_t lease_id, UnixMs now_ms) {
  const Duty& d = duties_[lease_id];
  return !d.busy && now_ms >= d.next_try_ms;
}

void ChannelKeeper::Submit(int64_t lease_id, Job job, UnixMs now_ms) {
  Duty& d = duties_[lease_id];
  d.busy = true;
  if (job.kind == Job::kWatch) d.next_watch_ms = now_ms + o_.watch_ms;
  std::function<Outcome()> run = [chain = chain_, lease_id, job] { return RunJob(*chain, lease_id, job); };
  std::lock_guard lock(worker_->mu);
  if (!o_.background) {
    worker_->done.push_back(run());
    return;
  }
  worker_->queue.push_back(std::move(run));
  worker_->cv.notify_all();
}

void ChannelKeeper::Failed(int64_t lease_id, const Status& s, const char* what, UnixMs now_ms) {
  Duty& d = duties_[lease_id];
  ++d.failures;
  const int64_t delay = std::min(o_.retry_max_ms, o_.retry_min_ms << std::min(d.failures - 1, 20));
  d.next_try_ms = now_ms + delay;
  std::string msg = std::string(what) + " failed (attempt " + std::to_string(d.failures) + ", again in " +
                    std::to_string(delay / 1000) + " s): " + s.message();
  if (s.code() == Code::kInsufficientFunds)
    msg += " — the agent's address " + o_.payee.ToChecksumHex() + " needs native coin for gas";
  Log(lease_id, msg);
}

void ChannelKeeper::Apply(const Outcome& o, UnixMs now_ms) {
  Duty& d = duties_[o.lease_id];
  d.busy = false;
  const VoucherBook::State* st = book_->Find(o.lease_id);
  if (!o.status.ok()) {
    if (o.kind == Job::kWatch) {
      Log(o.lease_id, "reading the channel failed: " + o.status.message());
      return;
    }
    Failed(o.lease_id, o.status, o.kind == Job::kRedeem ? "redeem" : "close", now_ms);
    if (!st && o.kind == Job::kClose && d.failures >= 3) {
      // Only the courtesy close of a lease that never ran: the renter can
      // still refund at the expiry, so it is not worth gas forever.
      Log(o.lease_id, "giving up closing the unused channel; the renter can refund it at its expiry");
      checked_.erase(o.lease_id);
      duties_.erase(o.lease_id);
    }
    return;
  }
  d.failures = 0;
  d.next_try_ms = 0;
  d.close_pending = o.close_pending;
  if (o.exists) d.gone_since_ms = 0;
  // Gone without our own close: believed on a second read only.
  if (!o.exists && o.close_tx.empty() && !d.gone && !ConfirmGone(d, now_ms)) {
    Log(o.lease_id, "the channel reads as closed on chain; reading it again in " +
                        std::to_string(kGoneConfirmMs / 1000) + " s before believing it");
    return;
  }
  // What the chain paid out, in the book (it may be more than this agent
  // sent: anyone may redeem a voucher, e.g. the broker).
  if (st && o.paid && *o.paid > st->redeemed) {
    Status s = book_->MarkRedeemed(o.lease_id, std::min(*o.paid, st->accepted));
    if (!s.ok()) Log(o.lease_id, s.message());
  }
  if (o.kind == Job::kClose) {
    Log(o.lease_id, "channel closed" + (o.paid ? ", paid " + FormatMoney(*o.paid) + " in total" : std::string()));
    Status s = book_->Forget(o.lease_id);
    if (!s.ok()) Log(o.lease_id, s.message());
    checked_.erase(o.lease_id);
    duties_.erase(o.lease_id);
    to_sync_[o.lease_id] = o.close_tx;
    return;
  }
  if (!o.exists && !d.gone) {
    d.gone = true;
    Log(o.lease_id, "the channel no longer exists on chain (the renter refunded or finished a close)");
  }
  if (o.kind == Job::kRedeem && o.paid) {
    Log(o.lease_id, "redeemed: the channel has paid " + FormatMoney(*o.paid));
    to_sync_.try_emplace(o.lease_id, "");
  }
}

void ChannelKeeper::SyncPending() {
  for (auto it = to_sync_.begin(); it != to_sync_.end();) {
    Status s = sync_ ? sync_(it->first, it->second) : Status::Ok();
    if (!s.ok() && s.code() == Code::kUnavailable) {
      ++it;  // the broker will take it at a later tick
      continue;
    }
    if (!s.ok()) Log(it->first, "the broker refused to sync the channel: " + s.message());
    it = to_sync_.erase(it);
  }
}

void ChannelKeeper::Tick(const std::set<int64_t>* active, UnixMs now_ms) {
  auto drain = [&] {
    std::vector<Outcome> done;
    {
      std::lock_guard lock(worker_->mu);
      done.swap(worker_->done);
    }
    for (const Outcome& o : done) Apply(o, now_ms);
  };
  drain();
  // Decide first, submit after: an inline run must not change the book
  // while it is being walked.
  std::vector<std::pair<int64_t, Job>> jobs;
  for (const auto& [id, st] : book_->leases()) {
    Duty& d = duties_[id];
    Job job{Job::kWatch, st.channel.channel, st.accepted, std::nullopt};
    if (st.accepted > 0) job.sig = st.signature;
    const bool ended = active && !active->contains(id);
    if (ended) {
      job.kind = Job::kClose;
      if (Due(id, now_ms)) jobs.emplace_back(id, job);
      continue;
    }
    const bool redeem = !d.gone && (book_->ShouldRedeem(id, o_.redeem_threshold, now_ms) ||
                                     (d.close_pending && st.accepted > st.redeemed));
    if (redeem) {
      job.kind = Job::kRedeem;
      if (Due(id, now_ms)) jobs.emplace_back(id, job);
    } else if (!d.busy && !d.gone && now_ms >= d.next_watch_ms) {
      jobs.emplace_back(id, job);
    }
  }
  // Checked but never tracked (the lease ended before it ran): the renter
  // owes nothing, so the channel is closed as paid and the deposit goes
  // back at once rather than at its expiry. Not durable: after a restart
  // the renter's refund at the expiry remains.
  if (active) {
    for (const auto& [id, c] : checked_) {
      if (active->contains(id) || book_->Find(id) || !Due(id, now_ms)) continue;
      jobs.emplace_back(id, Job{Job::kClose, c.id, 0, std::nullopt});
    }
  }
  for (auto& [id, job] : jobs) Submit(id, std::move(job), now_ms);
  drain();
  if (active) SyncPending();
}

void ChannelKeeper::WaitIdle() {
  std::unique_lock lock(worker_->mu);
  worker_->cv.wait(lock, [&] { return worker_->queue.empty() && !worker_->running; });
}

}  // namespace grid::agent
