// libFuzzer target for the payment-channel decoders (src/chain/channels.h)
// and the voucher schedule (src/market/channel_policy.h): channels(id)
// answers and Opened logs come from a node we do not control, revert text
// from its error messages, and voucher amounts and terms from a renter.
//
// Checks, for any input bytes: nothing crashes, overflows (UBSan) or reads
// out of bounds (ASan); a decoded channel keeps the contract's widths
// (uint96 amounts, uint48 times) and names a signer when it exists; an
// accepted voucher amount is exactly the schedule's amount for the interval
// it is said to pay, and that interval is at most one ahead.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "chain/channels.h"
#include "market/channel_policy.h"

namespace {
void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}
int64_t Take(std::span<const uint8_t>& in) {
  int64_t v = 0;
  size_t n = std::min<size_t>(8, in.size());
  std::memcpy(&v, in.data(), n);
  in = in.subspan(n);
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace grid;
  using namespace grid::chain;
  std::span<const uint8_t> in(data, size);

  if (auto c = channels::DecodeChannelsResult(in); c.ok()) {
    if (c->exists != (c->renter != crypto::Address{})) Fail("exists disagrees with the renter");
    if (c->exists && c->signer == crypto::Address{}) Fail("an open channel without a signer");
    if (c->expiry_s >> 48 || c->close_at_s >> 48) Fail("a time wider than uint48");
    const U256 limit = U256::FromDecimal("79228162514264337593543950335").value();  // uint96 max
    if (limit < c->deposit || limit < c->paid) Fail("an amount wider than uint96");
  }

  // As a log: up to 4 topics from the front, the rest as data; topic 0 is
  // Opened half of the time so the field checks are reached.
  if (size >= 1) {
    size_t n_topics = data[0] % 5;
    std::span<const uint8_t> rest = in.subspan(1);
    std::vector<crypto::Hash32> topics;
    for (size_t i = 0; i < n_topics && rest.size() >= 32; ++i) {
      crypto::Hash32 t;
      std::memcpy(t.data(), rest.data(), 32);
      rest = rest.subspan(32);
      topics.push_back(t);
    }
    if (!topics.empty() && (data[0] & 0x80)) topics[0] = channels::OpenedEventTopic();
    if (auto e = channels::DecodeOpenedLog(topics, rest); e.ok()) {
      if (e->id != topics[1]) Fail("Opened id is not topic 1");
    }
  }

  (void)channels::ErrorName(in);
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string named = channels::NameCustomErrors(text);
  if (named.size() > text.size() + 64) Fail("naming errors grew the text");

  // The schedule with terms and amounts from the input.
  std::span<const uint8_t> rest = in;
  market::ChannelTerms t;
  t.price_per_hour = Take(rest);
  t.interval_ms = Take(rest);
  t.start_ms = Take(rest) >> 8;
  t.length_ms = Take(rest) >> 16;
  t.deposit = Take(rest);
  t.margin = Take(rest) >> 8;
  t.channel_expiry_ms = Take(rest);
  t.expiry_margin_ms = Take(rest) >> 16;
  t.grace_ms = Take(rest) >> 16;
  const Micros accepted = Take(rest);
  const Micros amount = Take(rest);
  const UnixMs now = Take(rest) >> 8;
  auto k = market::CheckVoucherAmount(t, accepted, amount, now);
  if (k.ok()) {
    auto want = market::VoucherAmount(t, *k);
    if (!want.ok() || *want != amount) Fail("an accepted amount off the schedule");
    if (*k > market::DueIndex(t, now) + 1) Fail("accepted more than one interval ahead");
    if (amount <= accepted || amount > t.deposit - t.margin) Fail("accepted outside (accepted, deposit - margin]");
  }
  if (market::ValidateTerms(t).ok()) {
    (void)market::PaidThrough(t, amount);
    (void)market::MustStop(t, amount, now);
    (void)market::ShouldRedeem(t, amount, accepted, amount, now);
  }
  return 0;
}
