// `grid pay`: signs and posts the vouchers of the renter's channel leases
// (see pay.h for what it guarantees).
#include "cli/pay.h"

#include <CLI/CLI.hpp>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "api/codec.h"
#include "cli/channels.h"
#include "client/broker_client.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"

namespace grid::cli {
namespace json = boost::json;

namespace {

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

Result<int64_t> IntField(const json::object& o, std::string_view key, std::string_view what) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_int64()) return InvalidArgument(std::string(what) + ": expected an integer");
  return v->get_int64();
}

}  // namespace

Result<std::optional<PayLease>> DecodePayLease(const json::value& lease) {
  if (!lease.is_object()) return InvalidArgument("lease: expected an object");
  const json::object& o = lease.get_object();
  if (Str(lease, "payment") != "channel") return std::optional<PayLease>();
  PayLease l;
  GRID_ASSIGN_OR_RETURN(l.id, IntField(o, "id", "lease id"));
  const std::string where = "lease " + std::to_string(l.id);
  l.renter = Lower(Str(lease, "renter"));
  const std::string state = Str(lease, "state");
  l.running = state == "running";
  l.ended = state == "ended";
  GRID_ASSIGN_OR_RETURN(l.price_per_hour, ParseMoney(Str(lease, "price_per_hour"), where + ": price_per_hour"));
  const json::value* ch = o.if_contains("channel");
  if (!ch || !ch->is_object()) return InvalidArgument(where + ": paid by channel, but has no channel object");
  auto decoded = api::DecodeLeaseChannel(*ch);
  if (!decoded.ok()) return InvalidArgument(where + ": " + decoded.status().message());
  l.channel = std::move(*decoded);
  GRID_ASSIGN_OR_RETURN(l.start_ms, IntField(ch->get_object(), "start_ms", where + ": channel.start_ms"));
  if (l.start_ms < 0) return InvalidArgument(where + ": channel.start_ms is negative");
  const json::value* ov = o.if_contains("order");
  if (!ov || !ov->is_object()) return InvalidArgument(where + ": has no signed order");
  api::Fields of(ov->get_object(), where + ": order.");
  GRID_ASSIGN_OR_RETURN(l.order.offer_id, of.Int("offer_id", 1, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(int64_t gpus, of.Int("gpus", 1, market::kMaxGpusPerMachine));
  l.order.gpus = static_cast<int>(gpus);
  GRID_ASSIGN_OR_RETURN(l.order.price_per_hour, of.Money("price_per_hour"));
  GRID_ASSIGN_OR_RETURN(std::string nonce, of.String("nonce"));
  if (nonce.empty() || nonce.size() > 20 || nonce.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgument(where + ": order.nonce: expected a decimal integer");
  errno = 0;
  const unsigned long long n = std::strtoull(nonce.c_str(), nullptr, 10);
  if (errno == ERANGE) return InvalidArgument(where + ": order.nonce: out of range");
  l.order.nonce = n;
  GRID_ASSIGN_OR_RETURN(l.order.expiry_s, of.Int("expiry", 0, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(l.order.signature, of.String("signature"));
  return std::optional<PayLease>(std::move(l));
}

Status CheckTerms(const PayLease& l, int64_t interval_ms) {
  const crypto::LeaseOrder order{static_cast<uint64_t>(l.order.offer_id), static_cast<uint32_t>(l.order.gpus),
                                 l.order.price_per_hour, l.order.nonce, l.order.expiry_s};
  auto sig = crypto::ParseSignature(l.order.signature);
  auto signer = sig.ok() ? crypto::RecoverSigner(crypto::LeaseOrderDigest(order, l.channel.chain_id), *sig)
                         : Result<crypto::Address>(sig.status());
  if (!signer.ok() || signer->ToLowerHex() != l.renter)
    return PermissionDenied("its order is not signed by you (" + l.renter + "): the broker's record of it is not trusted");
  if (l.order.price_per_hour != l.price_per_hour)
    return Status(Code::kConflict, "the broker says it costs " + FormatMoney(l.price_per_hour) + "/h, but you signed " +
                                       FormatMoney(l.order.price_per_hour) + "/h");
  if (interval_ms > 0 && l.channel.interval_ms != interval_ms)
    return Status(Code::kConflict, "its voucher interval is " + std::to_string(l.channel.interval_ms) +
                                       " ms, but the broker publishes " + std::to_string(interval_ms) + " ms");
  return Status::Ok();
}

Micros MostToSign(const PayLease& l, Micros signed_before, UnixMs signed_at_ms, UnixMs now_ms) {
  const int64_t since = std::max<int64_t>(0, now_ms - signed_at_ms);
  const int64_t ahead = since > INT64_MAX - l.channel.interval_ms ? INT64_MAX : since + l.channel.interval_ms;
  auto more = AccruedCharge(l.price_per_hour, ahead);
  // Rounding: the schedule floors each cumulative amount, so its steps can
  // be a micro-dollar above the floor of a difference.
  if (!more || *more > INT64_MAX - 1 - signed_before) return INT64_MAX;
  return signed_before + *more + 1;
}

market::ChannelTerms TermsOfPayLease(const PayLease& l) {
  // The same terms the broker and the agent compute, from the same fields.
  market::Lease lease;
  lease.price_per_hour = l.price_per_hour;
  lease.started_ms = l.start_ms;
  lease.channel = l.channel;
  return market::TermsOf(lease);
}

Result<std::optional<DueVoucher>> NextVoucher(const PayLease& l, UnixMs now_ms) {
  if (!l.running || l.start_ms <= 0) return std::optional<DueVoucher>();
  const market::ChannelTerms terms = TermsOfPayLease(l);
  GRID_RETURN_IF_ERROR(market::ValidateTerms(terms));
  const int64_t k = market::DueIndex(terms, now_ms);
  GRID_ASSIGN_OR_RETURN(Micros amount, market::VoucherAmount(terms, k));
  // The broker already holds a voucher paying this far (or further: a clock
  // ahead of ours): signing again would add nothing.
  if (amount <= l.channel.voucher) return std::optional<DueVoucher>();
  // The provider's own check: a voucher it would refuse is not signed, and
  // the reason (deposit or expiry) is what the renter must fix.
  auto checked = market::CheckVoucherAmount(terms, l.channel.voucher, amount, now_ms);
  if (!checked.ok())
    return Status(checked.status().code(), "interval " + std::to_string(k) + " is due (" + FormatMoney(amount) +
                                               " in total), but " + checked.status().message() +
                                               "; see `grid channels top-up " + l.channel.channel + " …`");
  return std::optional<DueVoucher>(DueVoucher{k, amount});
}

Result<crypto::Voucher> SignDue(const PayLease& l, const crypto::PrivateKey& key, const DueVoucher& due) {
  const crypto::Address me = crypto::AddressOf(key);
  if (me.ToLowerHex() != Lower(l.channel.signer))
    return PermissionDenied("its channel's vouchers are signed by " + l.channel.signer + ", not by this key (" +
                            me.ToLowerHex() + "); give that key with --signer-key");
  if (due.amount <= 0) return InvalidArgument("voucher amount must be positive");
  GRID_ASSIGN_OR_RETURN(crypto::Address contract, crypto::ParseAddress(l.channel.contract));
  crypto::Voucher v;
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(l.channel.channel, v.channel_id, "channel id"));
  v.cumulative = static_cast<uint64_t>(due.amount);
  GRID_ASSIGN_OR_RETURN(v.signature,
                        crypto::SignVoucher(key, l.channel.chain_id, contract, v.channel_id, v.cumulative));
  return v;
}

namespace {

std::atomic<bool> g_stop{false};
void OnStopSignal(int) { g_stop = true; }

struct PayOptions {
  int64_t lease = 0;  // 0: every channel lease of the renter
  bool once = false;
  std::string signer_key;
  std::string contract;  // pinned contract, "" for none
  int interval_s = 5;
};

// One renter's voucher loop. Errors are printed when they change, so a
// lease that stays unpayable (deposit used up) is not reported every round.
class Payer {
 public:
  Payer(const Globals& g, const PayOptions& opt, client::BrokerClient& c, crypto::PrivateKey key, std::string renter,
        int64_t interval_ms)
      : g_(g), opt_(opt), c_(c), key_(key), renter_(std::move(renter)), interval_ms_(interval_ms) {}

  // One pass over the leases at `now_ms`: the number of leases (or the
  // listing itself) that failed.
  int Pass(UnixMs now_ms) {
    auto items = Fetch();
    if (!items.ok()) {
      Report(0, items.status());
      return 1;
    }
    Report(0, Status::Ok());
    int failures = 0;
    seen_ = 0;
    for (const json::value& item : *items) {
      Status s = PayItem(item, now_ms);
      auto id = IntField(item.as_object(), "id", "lease id");
      Report(id.ok() ? *id : -1, s);
      if (!s.ok()) ++failures;
    }
    return failures;
  }

  // --lease named a lease that has ended: nothing more will be due.
  bool finished() const { return finished_; }
  // The running channel leases the last pass looked at.
  int leases_seen() const { return seen_; }

 private:
  // The leases to look at: the renter's running ones (the listing holds
  // the leases we provide too), or the one --lease names.
  Result<std::vector<json::value>> Fetch() {
    std::vector<json::value> out;
    if (opt_.lease > 0) {
      GRID_ASSIGN_OR_RETURN(json::value v, c_.AuthCall("GET", "/v1/leases/" + std::to_string(opt_.lease)));
      if (Lower(Str(v, "renter")) != renter_)
        return PermissionDenied("lease " + std::to_string(opt_.lease) + " is rented by " + Str(v, "renter") +
                                ", not by you");
      if (Str(v, "payment") != "channel")
        return InvalidArgument("lease " + std::to_string(opt_.lease) + " is not paid by channel");
      finished_ = Str(v, "state") == "ended";
      out.push_back(std::move(v));
      return out;
    }
    GRID_ASSIGN_OR_RETURN(json::value v, c_.AuthCall("GET", "/v1/leases"));
    json::value* leases = v.is_object() ? v.get_object().if_contains("leases") : nullptr;
    if (!leases || !leases->is_array()) return Internal("GET /v1/leases: the broker sent no \"leases\" list");
    for (json::value& item : leases->get_array())
      if (Lower(Str(item, "renter")) == renter_ && Str(item, "payment") == "channel" && Str(item, "state") == "running")
        out.push_back(std::move(item));
    return out;
  }

  Status PayItem(const json::value& item, UnixMs now_ms) {
    GRID_ASSIGN_OR_RETURN(auto l, DecodePayLease(item));
    if (!l || !l->running) return Status::Ok();
    ++seen_;
    return PayOne(*l, now_ms);
  }

  Status PayOne(const PayLease& l, UnixMs now_ms) {
    if (!opt_.contract.empty()) {
      GRID_ASSIGN_OR_RETURN(crypto::Address pinned, crypto::ParseAddress(opt_.contract));
      if (pinned.ToLowerHex() != Lower(l.channel.contract))
        return Status(Code::kConflict, "its channel is on the contract " + l.channel.contract +
                                           ", not the one you pinned (--contract " + pinned.ToLowerHex() + ")");
    }
    GRID_RETURN_IF_ERROR(CheckTerms(l, interval_ms_));
    GRID_ASSIGN_OR_RETURN(auto due, NextVoucher(l, now_ms));
    if (!due) return Status::Ok();
    if (auto it = signed_.find(l.id); it != signed_.end()) {
      const Micros most = MostToSign(l, it->second.first, it->second.second, now_ms);
      if (due->amount > most)
        return Status(Code::kConflict, "the broker's schedule asks " + FormatMoney(due->amount) + " in total, but " +
                                           FormatMoney(it->second.first) + " was signed at " +
                                           FormatTime(it->second.second) + " and only " + FormatMoney(most) +
                                           " can be due since; not signed");
    }
    GRID_ASSIGN_OR_RETURN(crypto::Voucher v, SignDue(l, key_, *due));
    json::value body = json::parse(crypto::EncodeVoucher(v));
    auto r = c_.AuthCall("POST", "/v1/leases/" + std::to_string(l.id) + "/vouchers", &body);
    if (!r.ok()) {
      // Sent before and accepted (our previous answer was lost): paid.
      if (r.status().code() == Code::kConflict && r.status().message().find("already accepted") != std::string::npos)
        return Status::Ok();
      return r.status();
    }
    signed_[l.id] = {due->amount, now_ms};
    PrintSigned(l, *due);
    return Status::Ok();
  }

  void PrintSigned(const PayLease& l, const DueVoucher& due) {
    if (g_.json) {
      PrintJson(json::object{{"lease", l.id},
                             {"channel", l.channel.channel},
                             {"interval", due.index},
                             {"amount", FormatMoney(due.amount)}});
    } else {
      std::printf("lease %lld: signed interval %lld, %s paid in total\n", static_cast<long long>(l.id),
                  static_cast<long long>(due.index), FormatMoney(due.amount).c_str());
    }
    std::fflush(stdout);
  }

  // Prints an error the first time it is seen for a lease (0: the listing),
  // and forgets it once the lease is fine again.
  void Report(int64_t lease, const Status& s) {
    if (s.ok()) {
      last_error_.erase(lease);
      return;
    }
    std::string& last = last_error_[lease];
    if (!opt_.once && last == s.message()) return;
    last = s.message();
    if (lease == 0) std::fprintf(stderr, "grid pay: %s\n", s.message().c_str());
    else std::fprintf(stderr, "grid pay: lease %lld: %s\n", static_cast<long long>(lease), s.message().c_str());
  }

  const Globals& g_;
  const PayOptions& opt_;
  client::BrokerClient& c_;
  const crypto::PrivateKey key_;
  const std::string renter_;
  const int64_t interval_ms_;  // the broker's published voucher interval
  std::map<int64_t, std::string> last_error_;
  std::map<int64_t, std::pair<Micros, UnixMs>> signed_;  // lease -> (amount, when) this process signed last
  bool finished_ = false;
  int seen_ = 0;
};

// Sleeps `seconds` in short steps, so SIGINT/SIGTERM end the wait at once.
void SleepUnlessStopped(int seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!g_stop && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

Status RunPay(const Globals& g, const PayOptions& opt) {
  GRID_ASSIGN_OR_RETURN(auto c, Client(g));
  GRID_ASSIGN_OR_RETURN(std::string renter, client::KeyFileAddress(g.key));
  crypto::PrivateKey key;
  if (opt.signer_key.empty()) {
    GRID_ASSIGN_OR_RETURN(key, c->Key());
  } else {
    auto k = client::LoadKey(opt.signer_key);
    if (!k.ok()) return Status(k.status().code(), "--signer-key " + opt.signer_key + ": " + k.status().message());
    key = *k;
  }
  // Every channel lease of this broker has the interval it publishes.
  GRID_ASSIGN_OR_RETURN(json::value config, c->Call("GET", "/v1/channels/config"));
  Payer payer(g, opt, *c, key, Lower(renter), VoucherIntervalMs(config));
  if (opt.once) {
    const int failures = payer.Pass(SystemClock().NowMs());
    if (failures > 0)
      return Status(Code::kConflict, std::to_string(failures) + " lease(s) could not be paid (see above)");
    if (payer.leases_seen() == 0 && !g.json && !g.quiet) std::printf("no running channel leases to pay\n");
    return Status::Ok();
  }
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (!g.json && !g.quiet)
    std::fprintf(stderr, "grid pay: paying %s as %s every %d s; stop with Ctrl-C\n",
                 opt.lease > 0 ? ("lease " + std::to_string(opt.lease)).c_str() : "your channel leases",
                 crypto::AddressOf(key).ToChecksumHex().c_str(), opt.interval_s);
  while (!g_stop) {
    payer.Pass(SystemClock().NowMs());
    if (payer.finished()) {
      if (!g.json && !g.quiet)
        std::printf("lease %lld has ended: nothing more to pay\n", static_cast<long long>(opt.lease));
      return Status::Ok();
    }
    SleepUnlessStopped(opt.interval_s);
  }
  return Status::Ok();
}

}  // namespace

void AddPay(CLI::App& app, Globals& g, Run& run) {
  static PayOptions opt;
  auto* p = app.add_subcommand("pay",
                               "Renter: sign and post the vouchers of your leases paid by channel, each interval, "
                               "until stopped (keep it running: without vouchers the host stops the workload)");
  p->add_option("--lease", opt.lease, "Pay only this lease (and exit once it has ended)")->check(CLI::PositiveNumber);
  p->add_flag("--once", opt.once, "One pass, then exit (non-zero if a lease could not be paid)");
  p->add_option("--signer-key", opt.signer_key,
                "Key file of the channel's signer (a session key given at `leases create --signer-key`); "
                "default: --key");
  p->add_option("--interval-check", opt.interval_s, "Seconds between passes (default 5)")->check(CLI::Range(1, 3600));
  p->add_option("--contract", opt.contract, "The PaymentChannels address you trust; refuse leases on another")
      ->envname("GRID_CHANNELS_CONTRACT");
  p->callback([&] {
    run = [&]() -> Status { return RunPay(g, opt); };
  });
}

}  // namespace grid::cli
