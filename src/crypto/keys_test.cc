#include "crypto/keys.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "crypto/hex.h"
#include "crypto/keccak.h"

namespace grid::crypto {
namespace {

Hash32 HashOf(std::string_view s) { return Keccak256(s); }

TEST(HexTest, EncodeDecode) {
  std::vector<uint8_t> b = {0x00, 0xab, 0xff};
  EXPECT_EQ(HexEncode(b), "0x00abff");
  EXPECT_EQ(HexEncode(b, false), "00abff");
  EXPECT_EQ(HexEncode({}), "0x");
  auto d = HexDecode("0x00ABff");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, b);
  EXPECT_TRUE(HexDecode("").ok());
  EXPECT_TRUE(HexDecode("0x").ok());
  EXPECT_EQ(HexDecode("00abff").value(), b);
}

TEST(HexTest, Errors) {
  auto odd = HexDecode("0xabc");
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().code(), Code::kInvalidArgument);
  EXPECT_NE(odd.status().message().find("odd"), std::string::npos);
  auto bad = HexDecode("0xzz");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("position 0"), std::string::npos);
  EXPECT_FALSE(HexDecode(" 00").ok());
}

TEST(KeccakTest, KnownVectors) {
  EXPECT_EQ(HexEncode(Keccak256("")),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  EXPECT_EQ(HexEncode(Keccak256("hello")),
            "0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8");
  Keccak256Hasher h;
  h.Update(std::string_view("hel")).Update(std::string_view("lo"));
  EXPECT_EQ(h.Finish(), Keccak256("hello"));
  EXPECT_EQ(h.Finish(), Keccak256(""));  // Finish resets
}

TEST(KeysTest, KeyOneAddress) {
  auto k = PrivateKeyFromHex("0x0000000000000000000000000000000000000000000000000000000000000001");
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(AddressOf(*k).ToChecksumHex(), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
  EXPECT_EQ(AddressOf(*k).ToLowerHex(), "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf");
}

TEST(KeysTest, EthersWalletAddress) {
  auto k = PrivateKeyFromHex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\n");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(AddressOf(*k).ToChecksumHex(), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
}

TEST(KeysTest, PrivateKeyFromHexValidates) {
  EXPECT_TRUE(PrivateKeyFromHex("  0x0000000000000000000000000000000000000000000000000000000000000002 \r\n").ok());
  auto zero = PrivateKeyFromHex("0x" + std::string(64, '0'));
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("out of range"), std::string::npos);
  // n itself is not a valid secret.
  EXPECT_FALSE(PrivateKeyFromHex(
      "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141").ok());
  EXPECT_TRUE(PrivateKeyFromHex(
      "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140").ok());
  auto short_key = PrivateKeyFromHex("0x1234");
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.status().message().find("expected 64 hex digits"), std::string::npos);
  EXPECT_FALSE(PrivateKeyFromHex("0x" + std::string(63, '1') + "g").ok());
}

TEST(KeysTest, GenerateGivesDistinctValidKeys) {
  auto a = GeneratePrivateKey();
  auto b = GeneratePrivateKey();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->bytes, b->bytes);
  EXPECT_TRUE(PrivateKeyFromBytes(a->bytes).ok());
}

TEST(AddressTest, ParseAndChecksum) {
  const std::string good = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf";
  auto a = ParseAddress(good);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ToChecksumHex(), good);
  EXPECT_TRUE(ParseAddress("0x7e5f4552091a69125d5dfcb7b8c2659029395bdf").ok());
  EXPECT_TRUE(ParseAddress("0x7E5F4552091A69125D5DFCB7B8C2659029395BDF").ok());
  EXPECT_EQ(ParseAddress("0x7E5F4552091A69125D5DFCB7B8C2659029395BDF").value(), *a);
  // One letter's case flipped breaks the checksum.
  auto bad = ParseAddress("0x7E5F4552091A69125d5DfCb7b8C2659029395BDf");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("EIP-55"), std::string::npos);
  EXPECT_FALSE(ParseAddress("7E5F4552091A69125d5DfCb7b8C2659029395Bdf").ok());
  EXPECT_FALSE(ParseAddress("0x7E5F4552091A69125d5DfCb7b8C2659029395Bd").ok());
  EXPECT_FALSE(ParseAddress("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdg").ok());
  EXPECT_TRUE(IsChecksummedAddress(good));
  EXPECT_FALSE(IsChecksummedAddress("0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"));
  // EIP-55's own examples.
  for (const char* s : {"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
                        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"}) {
    EXPECT_TRUE(IsChecksummedAddress(s)) << s;
  }
}

TEST(AddressTest, Ordering) {
  Address a, b;
  b.bytes[19] = 1;
  EXPECT_LT(a, b);
  EXPECT_NE(a, b);
}

TEST(SignTest, RoundTripAndDeterministic) {
  auto k = GeneratePrivateKey();
  ASSERT_TRUE(k.ok());
  Hash32 d = HashOf("lease 42");
  auto s1 = SignDigest(*k, d);
  auto s2 = SignDigest(*k, d);
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(*s1, *s2);
  EXPECT_TRUE((*s1)[64] == 27 || (*s1)[64] == 28);
  auto who = RecoverSigner(d, *s1);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(*who, AddressOf(*k));
  // v as 0/1 is accepted too.
  Signature raw = *s1;
  raw[64] -= 27;
  EXPECT_EQ(RecoverSigner(d, raw).value(), AddressOf(*k));
  // A different digest recovers someone else (or fails), never the signer.
  auto other = RecoverSigner(HashOf("lease 43"), *s1);
  EXPECT_TRUE(!other.ok() || *other != AddressOf(*k));
}

// Byte-exact RFC 6979 output is checked against ethers in eip_test.cc.
TEST(SignTest, AlwaysLowS) {
  auto k = PrivateKeyFromHex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
  ASSERT_TRUE(k.ok());
  for (int i = 0; i < 64; ++i) {
    auto sig = SignDigest(*k, HashOf(std::to_string(i)));
    ASSERT_TRUE(sig.ok());
    EXPECT_LT((*sig)[32], 0x80);  // s <= n/2 implies the top bit is clear
    EXPECT_EQ(RecoverSigner(HashOf(std::to_string(i)), *sig).value(), AddressOf(*k));
  }
}

// n - s flips a low-s signature into its high-s twin (with v flipped).
Signature ToHighS(Signature sig) {
  static const uint8_t kN[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48,
                                 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41};
  int borrow = 0;
  for (int i = 31; i >= 0; --i) {
    int v = kN[i] - sig[32 + i] - borrow;
    borrow = v < 0;
    sig[32 + i] = static_cast<uint8_t>(v + (borrow ? 256 : 0));
  }
  sig[64] = sig[64] == 27 ? 28 : 27;
  return sig;
}

TEST(SignTest, RejectsHighS) {
  auto k = GeneratePrivateKey();
  ASSERT_TRUE(k.ok());
  Hash32 d = HashOf("x");
  Signature sig = SignDigest(*k, d).value();
  auto r = RecoverSigner(d, ToHighS(sig));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("EIP-2"), std::string::npos);
}

TEST(SignTest, RejectsBadVAndLengths) {
  auto k = GeneratePrivateKey();
  Hash32 d = HashOf("x");
  Signature sig = SignDigest(*k, d).value();
  for (int v : {2, 26, 29, 35, 255}) {
    Signature bad = sig;
    bad[64] = static_cast<uint8_t>(v);
    auto r = RecoverSigner(d, bad);
    ASSERT_FALSE(r.ok()) << v;
    EXPECT_NE(r.status().message().find("v must be"), std::string::npos);
  }
  auto short_sig = RecoverSigner(d, std::span<const uint8_t>(sig.data(), 64));
  ASSERT_FALSE(short_sig.ok());
  EXPECT_NE(short_sig.status().message().find("65 bytes"), std::string::npos);
  Signature zero{};
  zero[64] = 27;
  EXPECT_FALSE(RecoverSigner(d, zero).ok());
  Signature big_r = sig;
  std::fill(big_r.begin(), big_r.begin() + 32, 0xff);
  EXPECT_FALSE(RecoverSigner(d, big_r).ok());
}

TEST(SignTest, ParseSignature) {
  std::string hex = "0x" + std::string(128, '1') + "1b";
  auto s = ParseSignature(hex);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)[64], 0x1b);
  EXPECT_EQ(HexEncode(*s), hex);
  auto bad = ParseSignature("0x1234");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("130 hex digits"), std::string::npos);
}

TEST(SignTest, ConcurrentUse) {
  auto k = GeneratePrivateKey().value();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Hash32 d = HashOf(std::to_string(t * 1000 + i));
        auto sig = SignDigest(k, d);
        if (!sig.ok() || RecoverSigner(d, *sig).value() != AddressOf(k)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace grid::crypto
