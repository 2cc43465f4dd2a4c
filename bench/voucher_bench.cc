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
// Raw:    libsecp256k1 alone on the precomputed digest, with its own
//         randomized context: parse_compact + ecdsa_recover + serialize
//         (uncompressed) + CryptoPP::Keccak_256 of the 64 bytes + compare the
//         last 20 bytes with the expected signer. No digest, no checks.
// All three are checked to accept all N and to reject a tampered voucher
// before timing. Rounds alternate ours, raw, cached, ours, raw, cached...
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

using namespace grid;
using bench::Median;
using bench::NowSeconds;

namespace {

constexpr uint64_t kChainId = 31337;

struct Item {
  crypto::Hash32 channel_id;
  uint64_t cumulative;
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

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
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
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_voucher: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--vouchers") nvouchers = std::atoi(next());
    else if (a == "--rounds") rounds = std::atoi(next());
    else if (a == "--seconds") seconds = std::atof(next());
    else {
      std::fprintf(stderr, "usage: bench_voucher [--vouchers 1000] [--rounds 7] [--seconds 1]\n");
      return 2;
    }
  }
  if (nvouchers < 1 || rounds < 1 || seconds <= 0) {
    std::fprintf(stderr, "bench_voucher: --vouchers, --rounds and --seconds must be positive\n");
    return 2;
  }
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
    if (!key.ok() || !Random(it.channel_id.data(), 32) || !Random(&it.cumulative, 8)) {
      std::fprintf(stderr, "key or random bytes failed\n");
      return 1;
    }
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

  // All accept every voucher; all reject a tampered one.
  for (size_t i = 0; i < items.size(); ++i) {
    Item bad = items[i];
    bad.signer.bytes[0] ^= 1;
    if (!ours_one(items[i]) || !cached_one(items[i]) || !raw_one(items[i]) || ours_one(bad) || cached_one(bad) ||
        raw_one(bad)) {
      std::fprintf(stderr, "MISMATCH at voucher %zu\n", i);
      return 1;
    }
  }
  std::printf("check: ours, cached and raw accept all %d vouchers and reject each with a wrong signer\n", nvouchers);

  Round(items, 0.2, ours_one);
  Round(items, 0.2, raw_one);
  Round(items, 0.2, cached_one);

  std::vector<double> ours, raw, cached, r_ours, r_cached, ours_cpu, raw_cpu, cached_cpu, r_ours_cpu, r_cached_cpu;
  for (int r = 0; r < rounds; ++r) {
    Rate o = Round(items, seconds, ours_one);
    Rate b = Round(items, seconds, raw_one);
    Rate c = Round(items, seconds, cached_one);
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
  line("raw libsecp256k1 recover + Keccak + compare:", raw, raw_cpu);
  std::printf("ratio ours/raw,   wall: %.3f (median/median), %.3f (median of per-round ratios)\n",
              Median(ours) / Median(raw), Median(r_ours));
  std::printf("ratio ours/raw,   CPU:  %.3f (median/median), %.3f (median of per-round ratios)\n",
              Median(ours_cpu) / Median(raw_cpu), Median(r_ours_cpu));
  std::printf("ratio cached/raw, wall: %.3f, CPU: %.3f (median of per-round ratios)\n", Median(r_cached),
              Median(r_cached_cpu));
  bool met = Median(r_ours) >= 0.9 && Median(r_ours_cpu) >= 0.9;
  std::printf("goal ours/raw >= 0.9: %s\n", met ? "met" : "NOT met");
  return 0;
}
