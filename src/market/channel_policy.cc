#include "market/channel_policy.h"

#include <algorithm>
#include <string>

#include "market/billing.h"

namespace grid::market {

namespace {
// a - b and a + b clamped to int64 (terms and times come from outside).
int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_sub_overflow(a, b, &r)) return r;
  return b > 0 ? INT64_MIN : INT64_MAX;
}
int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? INT64_MAX : INT64_MIN;
}
}  // namespace

ChannelTerms TermsOf(const Lease& l) {
  ChannelTerms t;
  t.price_per_hour = l.price_per_hour;
  t.start_ms = l.started_ms;
  if (l.channel) {
    const ChannelPayment& c = *l.channel;
    t.interval_ms = c.interval_ms;
    t.length_ms = c.length_ms;
    t.deposit = c.deposit;
    t.margin = c.margin;
    t.channel_expiry_ms = c.expiry_ms;
    t.expiry_margin_ms = c.expiry_margin_ms;
    t.grace_ms = c.grace_ms;
  }
  return t;
}

Result<Micros> ChannelMargin(Micros price_per_hour, int64_t interval_ms) {
  if (price_per_hour <= 0 || interval_ms <= 0) return InvalidArgument("channel margin: price and interval must be positive");
  auto m = AccruedCharge(price_per_hour, interval_ms);
  if (!m) return InvalidArgument("channel margin: price too large");
  return *m;
}

Status ValidateTerms(const ChannelTerms& t) {
  if (t.price_per_hour <= 0) return InvalidArgument("channel terms: price_per_hour must be positive");
  if (t.interval_ms <= 0) return InvalidArgument("channel terms: interval_ms must be positive");
  if (t.length_ms < 0) return InvalidArgument("channel terms: length_ms must not be negative");
  if (t.margin < 0) return InvalidArgument("channel terms: margin must not be negative");
  if (t.grace_ms < 0) return InvalidArgument("channel terms: grace_ms must not be negative");
  if (t.expiry_margin_ms < 0) return InvalidArgument("channel terms: expiry_margin_ms must not be negative");
  if (t.deposit <= t.margin)
    return InvalidArgument("channel terms: the deposit " + FormatMoney(t.deposit) + " must exceed the margin " +
                           FormatMoney(t.margin));
  return Status::Ok();
}

Result<Micros> VoucherAmount(const ChannelTerms& t, int64_t k) {
  if (k < 0 || k == INT64_MAX) return InvalidArgument("voucher interval " + std::to_string(k) + " is out of range");
  auto through = CheckedMul(k + 1, t.interval_ms);
  if (!through) return InvalidArgument("voucher interval " + std::to_string(k) + " is out of range");
  int64_t ms = *through;
  if (t.length_ms > 0) ms = std::min(ms, t.length_ms);
  auto amount = AccruedCharge(t.price_per_hour, ms);
  if (!amount) return InvalidArgument("voucher amount overflows");
  return *amount;
}

int64_t DueIndex(const ChannelTerms& t, UnixMs now_ms) {
  if (now_ms <= t.start_ms || t.interval_ms <= 0) return 0;
  return SatSub(now_ms, t.start_ms) / t.interval_ms;
}

Result<Micros> DepositFor(Micros price_per_hour, int64_t hold_ms, Micros margin) {
  if (price_per_hour <= 0 || hold_ms <= 0 || margin < 0)
    return InvalidArgument("deposit: price and hold must be positive, the margin not negative");
  auto hold = AccruedCharge(price_per_hour, hold_ms);
  if (!hold) return InvalidArgument("deposit: price too large");
  auto sum = CheckedAdd(*hold, margin);
  if (!sum) return InvalidArgument("deposit: too large");
  return *sum;
}

Result<int64_t> CheckVoucherAmount(const ChannelTerms& t, Micros accepted, Micros amount, UnixMs now_ms) {
  GRID_RETURN_IF_ERROR(ValidateTerms(t));
  if (amount <= 0) return InvalidArgument("voucher: the amount must be positive, got " + FormatMoney(amount));
  if (accepted < 0) return InvalidArgument("voucher: the accepted amount cannot be negative");
  if (amount == accepted)
    return Status(Code::kConflict, "voucher: " + FormatMoney(amount) + " was already accepted");
  if (amount <= accepted)
    return InvalidArgument("voucher: amounts only grow: " + FormatMoney(amount) + " after " + FormatMoney(accepted));
  if (amount > t.deposit - t.margin)
    return InvalidArgument("voucher: " + FormatMoney(amount) + " is over the deposit " + FormatMoney(t.deposit) +
                           " less the margin " + FormatMoney(t.margin) + " (top the channel up)");
  // The interval this amount pays through: the first k whose amount reaches
  // it (amounts never decrease in k), which must then equal it exactly.
  // e_min, the shortest running time that costs `amount`, lies in k's
  // interval: (k+1)·I >= e_min > k·I.
  const int64_t below = MaxElapsedFor(t.price_per_hour, amount - 1);
  if (below == INT64_MAX) return InvalidArgument("voucher: " + FormatMoney(amount) + " is out of range");
  const int64_t e_min = below + 1;
  if (t.length_ms > 0 && e_min > t.length_ms) {
    GRID_ASSIGN_OR_RETURN(Micros total, VoucherAmount(t, t.length_ms / t.interval_ms));
    return InvalidArgument("voucher: " + FormatMoney(amount) + " is more than the whole lease costs (" +
                           FormatMoney(total) + ")");
  }
  const int64_t k = (e_min - 1) / t.interval_ms;
  GRID_ASSIGN_OR_RETURN(Micros at_k, VoucherAmount(t, k));
  if (at_k != amount) {
    Micros lower = 0;
    if (k > 0) {
      GRID_ASSIGN_OR_RETURN(lower, VoucherAmount(t, k - 1));
    }
    return InvalidArgument("voucher: " + FormatMoney(amount) + " is not on the schedule (price " +
                           FormatMoney(t.price_per_hour) + "/h in " + std::to_string(t.interval_ms) +
                           " ms intervals: " + FormatMoney(lower) + " or " + FormatMoney(at_k) + ")");
  }
  const int64_t due = DueIndex(t, now_ms);
  if (k > SatAdd(due, 1))
    return InvalidArgument("voucher: pays through interval " + std::to_string(k) + ", more than one ahead of " +
                           std::to_string(due));
  // The provider must be able to redeem it: the channel may not expire
  // before the interval it pays for is over, plus the margin.
  int64_t through_ms = CheckedMul(k + 1, t.interval_ms).value_or(INT64_MAX);
  if (t.length_ms > 0) through_ms = std::min(through_ms, t.length_ms);
  auto paid_end = CheckedAdd(t.start_ms, through_ms);
  if (!paid_end || *paid_end > SatSub(t.channel_expiry_ms, t.expiry_margin_ms))
    return Status(Code::kConflict, "voucher: the channel expires at " + FormatTime(t.channel_expiry_ms) +
                                       ", too soon to redeem a voucher paying through " +
                                       FormatTime(paid_end.value_or(INT64_MAX)) + " (top it up with a later expiry)");
  return k;
}

UnixMs PaidThrough(const ChannelTerms& t, Micros accepted) {
  if (accepted <= 0) {
    // Nothing paid: a price so low that the first milliseconds cost 0 still
    // counts them (MaxElapsedFor), but no voucher at all pays nothing.
    return t.start_ms;
  }
  int64_t ms = MaxElapsedFor(t.price_per_hour, accepted);
  if (t.length_ms > 0) ms = std::min(ms, t.length_ms);  // the lease ends there
  return CheckedAdd(t.start_ms, ms).value_or(INT64_MAX);
}

bool MustStop(const ChannelTerms& t, Micros accepted, UnixMs now_ms) {
  const UnixMs limit = CheckedAdd(PaidThrough(t, accepted), t.grace_ms).value_or(INT64_MAX);
  return now_ms > limit;
}

bool ShouldRedeem(const ChannelTerms& t, Micros accepted, Micros redeemed, Micros threshold, UnixMs now_ms) {
  if (accepted <= redeemed) return false;
  if (SatSub(accepted, redeemed) >= threshold) return true;
  return now_ms >= SatSub(t.channel_expiry_ms, t.expiry_margin_ms);
}

}  // namespace grid::market
