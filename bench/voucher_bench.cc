// bench_voucher: payment-channel voucher verifications per second through our
// code against raw libsecp256k1 recovery, in the same run (issue 6: "Voucher
// verifications per second in the agent against raw libsecp256k1 recover in
// the same run (goal >= 0.9x)").
//
// Setup: N (default 1,000) vouchers as a renter's signer makes them: a fresh
// key each (crypto::GeneratePrivateKey), a random channel id, a random
// cumulative amount, chain 31337 and one contract address,
// crypto::SignVoucher (RFC 6979, low s, v 27/28).
// Ours:   crypto::VerifyVoucher(chain_id, contract, channel_id, cumulative,
//         sig, expected_signer): the EIP-712 digest from scratch (domain
//         separator, struct hash, final hash: three Keccak-256), the
//         length/v/zero/high-s checks, recovery, Keccak of the public key,
//         comparison with the expected signer. What the agent runs per
//         voucher.
// Cached: the same with the domain separator computed once
//         (crypto::VerifyVoucher(domain_separator, ...)), as a verifier that
//         checks many vouchers of one contract can do.
// Agent:  what agent::VoucherBook::Accept checks before it writes: cached
//         plus market::CheckVoucherAmount against the lease's terms (on the
//         schedule, growing, at most one interval ahead, under the deposit,
//         redeemable before expiry). The amounts are the schedule's: each
//         voucher has its own price ($0.10–$50/h) and interval k, and the
//         previous interval's amount as the one accepted before. The disk
//         write that follows (an fdatasync) is not counted.
// Raw:    libsecp256k1 alone on the precomputed digest, with its own
//         randomized context: parse_compact + ecdsa_recover + serialize
//         (uncompressed) + CryptoPP::Keccak_256 of the 64 bytes + compare the
//         last 20 bytes with the expected signer. No digest, no checks.
// All three are checked to accept all N and to reject a tampered voucher
// before timing. Rounds alternate ours, raw, cached, agent, ours, raw, ...
// (default 7 of each, ~1 s each, single thread, after a short warm-up). Rates
// per wall second and per second of this thread's CPU time (steadier on a
// shared, loaded machine), medians, ratios to raw (median of medians and
// median of per-round ratios), the machine line.
//
// Usage: bench_voucher [--vouchers 1000] [--rounds 7] [--seconds 1]
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <time.h>

#include <array>
#include <cryptopp/keccak.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "crypto/keys.h"
#include "crypto/voucher.h"
#include "market/channel_policy.h"

using namespace grid;
using bench::Median;
using bench::NowSeconds;
using bench::ThreadCpuSeconds;

namespace {

constexpr uint64_t kChainId = 31337;

struct Item {
  crypto::Hash32 channel_id;
  uint64_t cumulative;
  market::ChannelTerms terms;  // the lease's, for the agent's schedule check
  Micros accepted = 0;         // the previous interval's amount
  UnixMs now_ms = 0;
  crypto::Signature sig;
  crypto::Address signer;
  crypto::Hash32 digest;  // for the raw baseline only
};

volatile uint64_t g_sink = 0;

bool RawVerify(const secp256k1_context* ctx, const Item& it) {
  int recid = it.sig[64] - 27;
  secp256k1_ecdsa_recoverable_signature sig;
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &sig, it.sig.data(), recid)) return false;
  secp256k1_pubkey pub;
  if (!secp256k1_ecdsa_recover(ctx, &pub, &sig, it.digest.data())) return false;
  uint8_t buf[65];
  size_t len = sizeof(buf);
  secp256k1_ec_pubkey_serialize(ctx, buf, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
  CryptoPP::Keccak_256 h;
  h.Update(buf + 1, 64);
  uint8_t hash[32];
  h.Final(hash);
  return std::memcmp(hash + 12, it.signer.bytes.data(), 20) == 0;
}

struct Rate {
  double wall = 0;
  double cpu = 0;
};

template <typename F>
Rate Round(const std::vector<Item>& items, double seconds, F&& verify_one) {
  uint64_t n = 0, ok = 0;
  double t0 = NowSeconds(), t = t0, c0 = ThreadCpuSeconds();
  do {
    for (const Item& it : items) ok += verify_one(it) ? 1 : 0;
    n += items.size();
    t = NowSeconds();
  } while (t - t0 < seconds);
  double c = ThreadCpuSeconds() - c0;
  if (ok != n) {
    std::fprintf(stderr, "bench_voucher: %llu of %llu verifications failed during timing\n",
                 static_cast<unsigned long long>(n - ok), static_cast<unsigned long long>(n));
    std::exit(1);
  }
  g_sink = g_sink + ok;
  return Rate{static_cast<double>(n) / (t - t0), static_cast<double>(n) / c};
}

bool Random(void* p, size_t n) { return RAND_bytes(static_cast<unsigned char*>(p), static_cast<int>(n)) == 1; }

}  // namespace

int main(int argc, char** argv) {
  int nvouchers = 1000, rounds = 7;
  double seconds = 1.0;
  bench::ParseNumberFlags(argc, argv, "usage: bench_voucher [--vouchers 1000] [--rounds 7] [--seconds 1] (positive)",
                          {{"--vouchers", &nvouchers}, {"--rounds", &rounds}, {"--seconds", nullptr, &seconds}});
  std::printf("machine: %s\n", bench::MachineLine().c_str());
  std::printf("vouchers: %d (fresh key, random channel and amount each, SignVoucher), rounds: %d x (ours, raw, cached), "
              "%.2f s each, 1 thread\n",
              nvouchers, rounds, seconds);

  auto contract = crypto::ParseAddress("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
  if (!contract.ok()) return 1;
  const crypto::Hash32 separator = crypto::VoucherDomainSeparator(kChainId, *contract);
  std::vector<Item> items(nvouchers);
  for (Item& it : items) {
    auto key = crypto::GeneratePrivateKey();
    uint64_t r[2];
    if (!key.ok() || !Random(it.channel_id.data(), 32) || !Random(r, sizeof r)) {
      std::fprintf(stderr, "key or random bytes failed\n");
      return 1;
    }
    // A schedule amount: price $0.10-$50/h, interval k of 60 s.
    it.terms.price_per_hour = 100'000 + static_cast<Micros>(r[0] % 49'900'000);
    it.terms.interval_ms = 60'000;
    it.terms.start_ms = 1'790'000'000'000;
    it.terms.deposit = 1'000'000'000'000;
    it.terms.channel_expiry_ms = it.terms.start_ms + 1'000'000'000'000;
    const int64_t k = static_cast<int64_t>(r[1] % 10'000);
    it.cumulative = static_cast<uint64_t>(market::VoucherAmount(it.terms, k).value());
    it.accepted = k > 0 ? market::VoucherAmount(it.terms, k - 1).value() : 0;
    it.now_ms = it.terms.start_ms + k * it.terms.interval_ms;
    auto sig = crypto::SignVoucher(*key, kChainId, *contract, it.channel_id, it.cumulative);
    if (!sig.ok()) {
      std::fprintf(stderr, "SignVoucher: %s\n", sig.status().ToString().c_str());
      return 1;
    }
    it.sig = *sig;
    it.signer = crypto::AddressOf(*key);
    it.digest = crypto::VoucherDigest(kChainId, *contract, it.channel_id, it.cumulative);
  }

  secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  {
    unsigned char seed[32];
    if (Random(seed, sizeof(seed)) && !secp256k1_context_randomize(ctx, seed)) {
      // Cannot happen with a fresh context; blinding is an extra (as in keys.cc).
    }
  }

  auto ours_one = [&](const Item& it) {
    return crypto::VerifyVoucher(kChainId, *contract, it.channel_id, it.cumulative, it.sig, it.signer).ok();
  };
  auto cached_one = [&](const Item& it) {
    return crypto::VerifyVoucher(separator, it.channel_id, it.cumulative, it.sig, it.signer).ok();
  };
  auto raw_one = [ctx](const Item& it) { return RawVerify(ctx, it); };
  auto agent_one = [&](const Item& it) {
    return crypto::VerifyVoucher(separator, it.channel_id, it.cumulative, it.sig, it.signer).ok() &&
           market::CheckVoucherAmount(it.terms, it.accepted, static_cast<Micros>(it.cumulative), it.now_ms).ok();
  };

  // All accept every voucher; all reject a tampered one.
  for (size_t i = 0; i < items.size(); ++i) {
    Item bad = items[i];
    bad.signer.bytes[0] ^= 1;
    Item off = items[i];
    off.cumulative += 1;  // off the schedule (and unsigned)
    if (!ours_one(items[i]) || !cached_one(items[i]) || !raw_one(items[i]) || !agent_one(items[i]) ||
        ours_one(bad) || cached_one(bad) || raw_one(bad) || agent_one(bad) || agent_one(off)) {
      std::fprintf(stderr, "MISMATCH at voucher %zu\n", i);
      return 1;
    }
  }
  std::printf("check: ours, cached, agent and raw accept all %d vouchers and reject each with a wrong signer "
              "(and agent one off the schedule)\n",
              nvouchers);

  Round(items, 0.2, ours_one);
  Round(items, 0.2, raw_one);
  Round(items, 0.2, cached_one);
  Round(items, 0.2, agent_one);

  std::vector<double> ours, raw, cached, r_ours, r_cached, ours_cpu, raw_cpu, cached_cpu, r_ours_cpu, r_cached_cpu;
  std::vector<double> agent, agent_cpu, r_agent, r_agent_cpu;
  for (int r = 0; r < rounds; ++r) {
    Rate o = Round(items, seconds, ours_one);
    Rate b = Round(items, seconds, raw_one);
    Rate c = Round(items, seconds, cached_one);
    Rate a = Round(items, seconds, agent_one);
    agent.push_back(a.wall), agent_cpu.push_back(a.cpu);
    r_agent.push_back(a.wall / b.wall), r_agent_cpu.push_back(a.cpu / b.cpu);
    ours.push_back(o.wall), raw.push_back(b.wall), cached.push_back(c.wall);
    ours_cpu.push_back(o.cpu), raw_cpu.push_back(b.cpu), cached_cpu.push_back(c.cpu);
    r_ours.push_back(o.wall / b.wall), r_cached.push_back(c.wall / b.wall);
    r_ours_cpu.push_back(o.cpu / b.cpu), r_cached_cpu.push_back(c.cpu / b.cpu);
    std::printf("round %d: wall: ours %7.0f/s raw %7.0f/s cached %7.0f/s ours/raw %.3f | per CPU-s: ours %7.0f raw %7.0f "
                "cached %7.0f ours/raw %.3f cached/raw %.3f\n",
                r + 1, o.wall, b.wall, c.wall, o.wall / b.wall, o.cpu, b.cpu, c.cpu, o.cpu / b.cpu, c.cpu / b.cpu);
    std::fflush(stdout);
  }
  secp256k1_context_destroy(ctx);

  auto line = [](const char* name, const std::vector<double>& w, const std::vector<double>& c) {
    double mw = Median(w), mc = Median(c);
    std::printf("%-44s median %7.0f/s (%6.2f us)   median %7.0f/s (%6.2f us)\n", name, mw, 1e6 / mw, mc, 1e6 / mc);
  };
  std::printf("\n%-44s %-30s %s\n", "", "per wall second", "per second of CPU (this thread)");
  line("ours (crypto::VerifyVoucher, full digest):", ours, ours_cpu);
  line("cached (VerifyVoucher, domain precomputed):", cached, cached_cpu);
  line("agent (cached + CheckVoucherAmount):", agent, agent_cpu);
  line("raw libsecp256k1 recover + Keccak + compare:", raw, raw_cpu);
  std::printf("ratio ours/raw,   wall: %.3f (median/median), %.3f (median of per-round ratios)\n",
              Median(ours) / Median(raw), Median(r_ours));
  std::printf("ratio ours/raw,   CPU:  %.3f (median/median), %.3f (median of per-round ratios)\n",
              Median(ours_cpu) / Median(raw_cpu), Median(r_ours_cpu));
  std::printf("ratio cached/raw, wall: %.3f, CPU: %.3f (median of per-round ratios)\n", Median(r_cached),
              Median(r_cached_cpu));
  std::printf("ratio agent/raw,  wall: %.3f, CPU: %.3f (median of per-round ratios)\n", Median(r_agent),
              Median(r_agent_cpu));
  bool met = Median(r_ours) >= 0.9 && Median(r_ours_cpu) >= 0.9;
  bool agent_met = Median(r_agent) >= 0.9 && Median(r_agent_cpu) >= 0.9;
  std::printf("goal >= 0.9 x raw: ours %s, agent %s\n", met ? "met" : "NOT met", agent_met ? "met" : "NOT met");
  return 0;
}
