// `grid pay`'s decisions: which voucher is due, never ahead of the
// schedule, never above what the provider's agent would accept, signed by
// the channel's signer only. The lease JSON comes from the broker's own
// encoder (api::EncodeLease), so the two sides read the same fields.
#include "cli/pay.h"

#include <gtest/gtest.h>

#include <random>

#include "api/codec.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"

namespace grid::cli {
namespace {

namespace json = boost::json;

constexpr UnixMs kStart = 1'700'000'000'000;
constexpr Micros kPrice = 3'600'000;  // 3.60/h: 0.06 a minute

crypto::PrivateKey Key(uint8_t last) {
  std::array<uint8_t, 32> b{};
  b[31] = last;
  return *crypto::PrivateKeyFromBytes(b);
}

// The renter's key: it signs the lease's order.
const crypto::PrivateKey& RenterKey() {
  static const crypto::PrivateKey k = Key(9);
  return k;
}

// An order at `price`, signed with `key` on chain 31337.
market::SignedOrder SignedOrderFor(Micros price, const crypto::PrivateKey& key) {
  market::SignedOrder o{1001, 1, price, 42, 1'900'000'000, ""};
  const crypto::LeaseOrder order{1001, 1, price, 42, 1'900'000'000};
  o.signature = crypto::HexEncode(*crypto::SignDigest(key, crypto::LeaseOrderDigest(order, 31337)));
  return o;
}

market::Lease ChannelLease(const crypto::PrivateKey& signer) {
  market::Lease l;
  l.id = 7;
  l.renter = crypto::AddressOf(RenterKey()).ToLowerHex();
  l.provider = "0x00000000000000000000000000000000000000bb";
  l.price_per_hour = kPrice;
  l.state = market::LeaseState::kRunning;
  l.started_ms = kStart;
  market::ChannelPayment c;
  c.channel = "0x" + std::string(62, '0') + "2a";
  c.contract = "0x00000000000000000000000000000000000000cc";
  c.chain_id = 31337;
  c.token = "0x00000000000000000000000000000000000000dd";
  c.signer = crypto::AddressOf(signer).ToLowerHex();
  c.payee = "0x00000000000000000000000000000000000000ee";
  c.deposit = 10'000'000;
  c.margin = 60'000;
  c.expiry_ms = kStart + 24 * 3'600'000;
  c.interval_ms = 60'000;
  c.grace_ms = 60'000;
  c.expiry_margin_ms = 300'000;
  l.channel = c;
  l.order = SignedOrderFor(kPrice, RenterKey());
  return l;
}

// The lease as `grid pay` receives it: encoded by the broker, through the
// wire (text), parsed.
json::value Wire(const market::Lease& l) { return json::parse(json::serialize(api::EncodeLease(l, 0, kStart))); }

PayLease Decoded(const market::Lease& l) {
  auto p = DecodePayLease(Wire(l));
  EXPECT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(p->has_value());
  return **p;
}

TEST(PayDecode, ReadsWhatTheBrokerWrites) {
  const market::Lease l = ChannelLease(Key(1));
  const PayLease p = Decoded(l);
  EXPECT_EQ(p.id, 7);
  EXPECT_EQ(p.renter, l.renter);
  EXPECT_TRUE(p.running);
  EXPECT_FALSE(p.ended);
  EXPECT_EQ(p.price_per_hour, kPrice);
  EXPECT_EQ(p.start_ms, kStart);
  EXPECT_EQ(p.channel.channel, l.channel->channel);
  EXPECT_EQ(p.channel.signer, l.channel->signer);
  EXPECT_EQ(p.channel.voucher, 0);
  // The schedule's terms match what the broker and the agent compute.
  const market::ChannelTerms mine = TermsOfPayLease(p), theirs = market::TermsOf(l);
  EXPECT_EQ(mine.price_per_hour, theirs.price_per_hour);
  EXPECT_EQ(mine.interval_ms, theirs.interval_ms);
  EXPECT_EQ(mine.start_ms, theirs.start_ms);
  EXPECT_EQ(mine.length_ms, theirs.length_ms);
  EXPECT_EQ(mine.deposit, theirs.deposit);
  EXPECT_EQ(mine.margin, theirs.margin);
  EXPECT_EQ(mine.channel_expiry_ms, theirs.channel_expiry_ms);
  EXPECT_EQ(mine.expiry_margin_ms, theirs.expiry_margin_ms);
  EXPECT_EQ(mine.grace_ms, theirs.grace_ms);
}

TEST(PayDecode, EscrowLeaseIsNotOurs) {
  market::Lease l = ChannelLease(Key(1));
  l.channel.reset();
  auto p = DecodePayLease(Wire(l));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->has_value());
}

TEST(PayDecode, ChannelLeaseWithoutChannelObjectIsAnError) {
  json::value v = Wire(ChannelLease(Key(1)));
  v.as_object()["channel"] = nullptr;
  auto p = DecodePayLease(v);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("lease 7"), std::string::npos) << p.status().message();
  json::value w = Wire(ChannelLease(Key(1)));
  w.as_object()["channel"].as_object().erase("start_ms");
  EXPECT_FALSE(DecodePayLease(w).ok());
}

TEST(PayNext, NothingWhileNotRunning) {
  market::Lease l = ChannelLease(Key(1));
  l.state = market::LeaseState::kPending;
  l.started_ms = 0;
  auto next = NextVoucher(Decoded(l), kStart + 5'000);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
}

TEST(PayNext, FirstIntervalIsSignedAtTheStart) {
  auto next = NextVoucher(Decoded(ChannelLease(Key(1))), kStart + 1);
  ASSERT_TRUE(next.ok()) << next.status().message();
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->index, 0);
  EXPECT_EQ((*next)->amount, 60'000);  // one minute at 3.60/h
}

TEST(PayNext, NothingWhenTheBrokerHoldsTheDueVoucher) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->voucher = 180'000;  // interval 2
  l.channel->voucher_sig = "0x" + std::string(130, '1');
  l.channel->voucher_ms = kStart + 120'500;
  const PayLease p = Decoded(l);
  EXPECT_EQ(p.channel.voucher, 180'000);
  auto at2 = NextVoucher(p, kStart + 179'999);
  ASSERT_TRUE(at2.ok());
  EXPECT_FALSE(at2->has_value());
  // A broker whose clock runs ahead accepted interval 2 early: nothing
  // lower is ever signed.
  auto at1 = NextVoucher(p, kStart + 60'000);
  ASSERT_TRUE(at1.ok());
  EXPECT_FALSE(at1->has_value());
  auto at3 = NextVoucher(p, kStart + 180'000);
  ASSERT_TRUE(at3.ok());
  ASSERT_TRUE(at3->has_value());
  EXPECT_EQ((*at3)->index, 3);
  EXPECT_EQ((*at3)->amount, 240'000);
}

TEST(PayNext, AfterAGapSignsTheDueIntervalNotTheMissedOnesNorMore) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->voucher = 60'000;
  l.channel->voucher_sig = "0x" + std::string(130, '1');
  l.channel->voucher_ms = kStart;
  auto next = NextVoucher(Decoded(l), kStart + 10 * 60'000 + 5);
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->index, 10);
  EXPECT_EQ((*next)->amount, 11 * 60'000);
}

TEST(PayNext, RefusesWhatTheDepositLessTheMarginCannotCover) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->deposit = 660'000;  // 10 minutes + the margin
  const PayLease p = Decoded(l);
  auto last = NextVoucher(p, kStart + 9 * 60'000);
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(last->has_value());
  EXPECT_EQ((*last)->amount, 600'000);
  auto over = NextVoucher(p, kStart + 10 * 60'000);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("top"), std::string::npos) << over.status().message();
  EXPECT_NE(over.status().message().find(l.channel->channel), std::string::npos) << over.status().message();
}

TEST(PayNext, RefusesAVoucherTheProviderCouldNotRedeemBeforeExpiry) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->expiry_ms = kStart + 20 * 60'000;  // redeemable until minute 15
  const PayLease p = Decoded(l);
  ASSERT_TRUE(NextVoucher(p, kStart + 14 * 60'000).ok());
  auto late = NextVoucher(p, kStart + 15 * 60'000);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kConflict);
  EXPECT_NE(late.status().message().find("expires"), std::string::npos) << late.status().message();
}

TEST(PayNext, ALeaseWithAnEndStopsAtItsTotal) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->length_ms = 150'000;  // 2.5 minutes: 0.15 in all
  auto next = NextVoucher(Decoded(l), kStart + 2 * 60'000 + 1);
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->amount, 150'000);
  l.channel->voucher = 150'000;
  l.channel->voucher_sig = "0x" + std::string(130, '1');
  l.channel->voucher_ms = kStart + 120'001;
  auto after = NextVoucher(Decoded(l), kStart + 10 * 60'000);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
}

// For random prices, times and accepted vouchers: what NextVoucher signs is
// exactly the schedule's amount for the interval now falls in (never more),
// above what was accepted, and passes the agent's own check.
TEST(PayNext, RandomizedNeverAheadOfTheScheduleAndAlwaysAcceptable) {
  std::mt19937_64 rng(20261130);
  for (int i = 0; i < 2000; ++i) {
    market::Lease l = ChannelLease(Key(1));
    l.price_per_hour = 1 + static_cast<Micros>(rng() % 50'000'000);
    l.channel->interval_ms = 1'000 + static_cast<int64_t>(rng() % 300'000);
    l.channel->margin = *market::ChannelMargin(l.price_per_hour, l.channel->interval_ms);
    l.channel->deposit = l.channel->margin + 1 + static_cast<Micros>(rng() % 100'000'000);
    const market::ChannelTerms t = market::TermsOf(l);
    const UnixMs now = kStart + static_cast<int64_t>(rng() % (6 * 3'600'000));
    const int64_t k_now = market::DueIndex(t, now);
    const int64_t k_acc = static_cast<int64_t>(rng() % static_cast<uint64_t>(k_now + 2));
    const Micros accepted = (rng() % 4 == 0) ? 0 : *market::VoucherAmount(t, k_acc);
    if (accepted > l.channel->deposit - l.channel->margin) continue;
    l.channel->voucher = accepted;
    if (accepted > 0) {
      l.channel->voucher_sig = "0x" + std::string(130, '1');
      l.channel->voucher_ms = kStart;
    }
    auto next = NextVoucher(Decoded(l), now);
    const Micros due = *market::VoucherAmount(t, k_now);
    if (!next.ok()) {
      // Refused only when the provider would refuse it too.
      EXPECT_GT(due, accepted);
      EXPECT_FALSE(market::CheckVoucherAmount(t, accepted, due, now).ok());
      continue;
    }
    if (!next->has_value()) {
      EXPECT_LE(due, accepted);
      continue;
    }
    EXPECT_EQ((*next)->index, k_now);
    EXPECT_EQ((*next)->amount, due);
    EXPECT_GT((*next)->amount, accepted);
    // Never more than what has run plus one interval.
    EXPECT_LE((*next)->amount, *AccruedCharge(l.price_per_hour, now - kStart + l.channel->interval_ms));
    auto k = market::CheckVoucherAmount(t, accepted, (*next)->amount, now);
    EXPECT_TRUE(k.ok()) << k.status().message();
  }
}

TEST(PaySign, SignsForTheChannelWithTheSignersKey) {
  const crypto::PrivateKey key = Key(3);
  const PayLease p = Decoded(ChannelLease(key));
  auto v = SignDue(p, key, DueVoucher{0, 60'000});
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(crypto::HexEncode(v->channel_id), p.channel.channel);
  EXPECT_EQ(v->cumulative, 60'000u);
  auto contract = crypto::ParseAddress(p.channel.contract);
  ASSERT_TRUE(contract.ok());
  EXPECT_TRUE(crypto::VerifyVoucher(31337, *contract, *v, crypto::AddressOf(key)).ok());
  // The wire form the broker decodes.
  auto back = crypto::DecodeVoucher(crypto::EncodeVoucher(*v));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *v);
}

TEST(PaySign, RefusesAKeyThatIsNotTheChannelsSigner) {
  const PayLease p = Decoded(ChannelLease(Key(3)));
  auto v = SignDue(p, Key(4), DueVoucher{0, 60'000});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_NE(v.status().message().find("--signer-key"), std::string::npos) << v.status().message();
}

// What the broker says is checked against what the renter signed.
TEST(PayTerms, ThePriceMustBeTheOneTheRenterSigned) {
  market::Lease l = ChannelLease(Key(1));
  EXPECT_TRUE(CheckTerms(Decoded(l), 60'000).ok());
  EXPECT_TRUE(CheckTerms(Decoded(l), 0).ok()) << "0: no published interval to compare";
  // The broker raises the price: the signed order still says 3.60.
  l.price_per_hour = 2 * kPrice;
  Status s = CheckTerms(Decoded(l), 60'000);
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  // Or forges an order at its price: not the renter's signature.
  l.order = SignedOrderFor(2 * kPrice, Key(5));
  EXPECT_EQ(CheckTerms(Decoded(l), 60'000).code(), Code::kPermissionDenied);
  l.order.signature = "0x12";
  EXPECT_EQ(CheckTerms(Decoded(l), 60'000).code(), Code::kPermissionDenied);
}

TEST(PayTerms, TheIntervalMustBeTheBrokersPublishedOne) {
  market::Lease l = ChannelLease(Key(1));
  l.channel->interval_ms = 3'600'000;  // an hour ahead instead of a minute
  EXPECT_EQ(CheckTerms(Decoded(l), 60'000).code(), Code::kConflict);
}

TEST(PayTerms, ALeaseWithoutASignedOrderIsNotPaid) {
  json::value v = Wire(ChannelLease(Key(1)));
  v.as_object().erase("order");
  EXPECT_EQ(DecodePayLease(v).status().code(), Code::kInvalidArgument);
}

// After signing once, a schedule that runs faster than the clock is
// refused: a start moved back can't make `grid pay` sign the deposit away.
TEST(PayTerms, MostToSignFollowsTheClockFromTheLastSignature) {
  const PayLease p = Decoded(ChannelLease(Key(1)));  // 3.60/h: 60,000 a minute
  // Signed 60,000 at t; a minute later at most 60,000 + 2 minutes' worth.
  EXPECT_EQ(MostToSign(p, 60'000, kStart, kStart + 60'000), 60'000 + 120'000 + 1);
  EXPECT_EQ(MostToSign(p, 60'000, kStart, kStart), 60'000 + 60'000 + 1);
  EXPECT_EQ(MostToSign(p, 60'000, kStart, kStart - 5'000), 60'000 + 60'000 + 1) << "a clock that went back";
  EXPECT_EQ(MostToSign(p, INT64_MAX - 5, kStart, kStart + 60'000), INT64_MAX);
  // The schedule, followed in time, always fits.
  const market::ChannelTerms t = TermsOfPayLease(p);
  for (int64_t k = 0; k < 50; ++k) {
    const Micros a = *market::VoucherAmount(t, k), b = *market::VoucherAmount(t, k + 1);
    EXPECT_LE(b, MostToSign(p, a, kStart + k * 60'000, kStart + (k + 1) * 60'000));
  }
}

}  // namespace
}  // namespace grid::cli
