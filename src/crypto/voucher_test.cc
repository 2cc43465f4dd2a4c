// Payment-channel vouchers checked against ethers.js 6.17.0: every case of
// tests/vectors/voucher_vectors.json (written by
// `node tests/vectors/voucher_vectors.mjs > tests/vectors/voucher_vectors.json`)
// is read here, so a regenerated file is what gets tested.
//
// The cross-check both ways: our digest equals ethers' TypedDataEncoder
// hash, we verify ethers' signTypedData signature, and our SignVoucher gives
// the identical 65 bytes (both sides sign deterministically, RFC 6979, low
// s). The "anvil" case is a channel that
// tests/functional/channels_contract.test.mjs opens on a fresh anvil and
// redeems with that committed signature: SignVoucher's output, proven equal
// here, is accepted by the contract.
#include "crypto/voucher.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/hex.h"

namespace grid::crypto {
namespace {

namespace json = boost::json;

std::filesystem::path VectorFile() {
  if (const char* src = std::getenv("GRID_SOURCE_DIR")) {
    std::filesystem::path p = std::filesystem::path(src) / "tests/vectors/voucher_vectors.json";
    if (std::filesystem::exists(p)) return p;
  }
  // This file is src/crypto/voucher_test.cc in the source tree.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
         "tests/vectors/voucher_vectors.json";
}

json::value LoadVectors() {
  std::ifstream in(VectorFile());
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

Hash32 H(std::string_view hex) {
  Hash32 h;
  EXPECT_TRUE(HexDecodeExact(hex, h, "hash").ok()) << hex;
  return h;
}
Address A(std::string_view text) {
  Result<Address> a = ParseAddress(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : Address{};
}
Signature S(std::string_view hex) {
  Result<Signature> s = ParseSignature(hex);
  EXPECT_TRUE(s.ok()) << hex;
  return s.ok() ? *s : Signature{};
}
std::string Str(const json::value& v, std::string_view key) { return std::string(v.at(key).as_string()); }

struct Case {
  std::string name;
  uint64_t chain_id;
  Address contract;
  Hash32 channel_id;
  uint64_t cumulative;
  Hash32 separator, struct_hash, digest;
  Signature signature;
  std::string wire;
};

struct Vectors {
  PrivateKey key;
  Address signer;
  Hash32 domain_type_hash, voucher_type_hash;
  std::vector<Case> cases;
};

const Vectors& V() {
  static const Vectors v = [] {
    json::value j = LoadVectors();
    Vectors out;
    out.key = *PrivateKeyFromHex(Str(j, "key"));
    out.signer = A(Str(j, "signer"));
    out.domain_type_hash = H(Str(j, "domain_type_hash"));
    out.voucher_type_hash = H(Str(j, "voucher_type_hash"));
    for (const json::value& c : j.at("cases").as_array()) {
      Case k;
      k.name = Str(c, "name");
      k.chain_id = c.at("chain_id").to_number<uint64_t>();
      k.contract = A(Str(c, "contract"));
      k.channel_id = H(Str(c, "channel_id"));
      k.cumulative = std::stoull(Str(c, "cumulative"));
      k.separator = H(Str(c, "domain_separator"));
      k.struct_hash = H(Str(c, "struct_hash"));
      k.digest = H(Str(c, "digest"));
      k.signature = S(Str(c, "signature"));
      k.wire = Str(c, "wire");
      out.cases.push_back(k);
    }
    return out;
  }();
  return v;
}

TEST(VoucherTest, VectorFileLoads) {
  ASSERT_TRUE(std::filesystem::exists(VectorFile())) << VectorFile();
  ASSERT_GE(V().cases.size(), 5u);
  EXPECT_EQ(AddressOf(V().key), V().signer);
  EXPECT_EQ(Keccak256(kVoucherDomainType), V().domain_type_hash);
  EXPECT_EQ(Keccak256(kVoucherType), V().voucher_type_hash);
}

TEST(VoucherTest, DigestsMatchEthers) {
  for (const Case& c : V().cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(VoucherDomainSeparator(c.chain_id, c.contract), c.separator);
    EXPECT_EQ(VoucherStructHash(c.channel_id, c.cumulative), c.struct_hash);
    EXPECT_EQ(VoucherDigest(c.chain_id, c.contract, c.channel_id, c.cumulative), c.digest);
    EXPECT_EQ(VoucherDigest(c.separator, c.channel_id, c.cumulative), c.digest);
  }
}

TEST(VoucherTest, EthersSignaturesVerifyAndOursAreIdentical) {
  for (const Case& c : V().cases) {
    SCOPED_TRACE(c.name);
    Status s = VerifyVoucher(c.chain_id, c.contract, c.channel_id, c.cumulative, c.signature, V().signer);
    EXPECT_TRUE(s.ok()) << s.ToString();
    Result<Signature> ours = SignVoucher(V().key, c.chain_id, c.contract, c.channel_id, c.cumulative);
    ASSERT_TRUE(ours.ok());
    // The committed signature the functional test redeems on chain is ours.
    EXPECT_EQ(HexEncode(*ours), HexEncode(c.signature));
  }
}

TEST(VoucherTest, WireFormOfEthersVectors) {
  for (const Case& c : V().cases) {
    SCOPED_TRACE(c.name);
    Result<Voucher> v = DecodeVoucher(c.wire);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->channel_id, c.channel_id);
    EXPECT_EQ(v->cumulative, c.cumulative);
    EXPECT_EQ(v->signature, c.signature);
    EXPECT_EQ(EncodeVoucher(*v), c.wire);  // ethers' JSON.stringify is our canonical form
    EXPECT_TRUE(VerifyVoucher(c.chain_id, c.contract, *v, V().signer).ok());
  }
}

// Everything the contract refuses, refused here too.
TEST(VoucherTest, RejectsWhatTheContractRejects) {
  const Case& c = V().cases[0];
  auto verify = [&](std::span<const uint8_t> sig, uint64_t chain = 0, const Address* contract = nullptr,
                    const Hash32* id = nullptr, const uint64_t* cumulative = nullptr,
                    const Address* signer = nullptr) {
    return VerifyVoucher(chain ? chain : c.chain_id, contract ? *contract : c.contract,
                         id ? *id : c.channel_id, cumulative ? *cumulative : c.cumulative, sig,
                         signer ? *signer : V().signer);
  };
  ASSERT_TRUE(verify(c.signature).ok());

  // Someone else's key.
  Address other = AddressOf(*PrivateKeyFromHex("0x" + std::string(63, '0') + "1"));
  Status s = verify(c.signature, 0, nullptr, nullptr, nullptr, &other);
  EXPECT_EQ(s.code(), Code::kUnauthenticated) << s.ToString();
  EXPECT_NE(s.message().find(V().signer.ToChecksumHex()), std::string::npos) << s.message();

  // Another chain, contract, channel or amount: recovers someone else.
  Address contract2 = A("0x00000000000000000000000000000000DeaDBeef");
  Hash32 id2 = c.channel_id;
  id2[31] ^= 1;
  uint64_t more = c.cumulative + 1;
  EXPECT_EQ(verify(c.signature, 1).code(), Code::kUnauthenticated);
  EXPECT_EQ(verify(c.signature, 0, &contract2).code(), Code::kUnauthenticated);
  EXPECT_EQ(verify(c.signature, 0, nullptr, &id2).code(), Code::kUnauthenticated);
  EXPECT_EQ(verify(c.signature, 0, nullptr, nullptr, &more).code(), Code::kUnauthenticated);

  // High s: s' = n - s, v flipped. The same signer would recover from it;
  // EIP-2 and the contract refuse it.
  static constexpr uint8_t kN[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                                     0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
  Signature high = c.signature;
  int borrow = 0;
  for (int i = 31; i >= 0; --i) {
    int d = kN[i] - c.signature[32 + i] - borrow;
    borrow = d < 0;
    high[32 + i] = static_cast<uint8_t>(d + (borrow ? 256 : 0));
  }
  high[64] = c.signature[64] == 27 ? 28 : 27;
  s = verify(high);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("upper half"), std::string::npos) << s.message();

  // v must be 27 or 28: 0/1 (which RecoverSigner alone would take) and others are refused.
  for (uint8_t v : {0, 1, 2, 26, 29, 255}) {
    Signature bad = c.signature;
    bad[64] = v;
    s = verify(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << int(v);
    EXPECT_NE(s.message().find("v must be 27 or 28"), std::string::npos) << s.message();
  }
  // Lengths.
  std::vector<uint8_t> bytes(c.signature.begin(), c.signature.end());
  for (size_t n : {0, 1, 64, 66, 130}) {
    std::vector<uint8_t> b(n, 0x1b);
    std::copy_n(bytes.begin(), std::min(n, bytes.size()), b.begin());
    s = verify(b);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << n;
    EXPECT_NE(s.message().find("65 bytes"), std::string::npos) << s.message();
  }
  // r or s zero, r not below the order.
  Signature zero_r = c.signature;
  std::fill(zero_r.begin(), zero_r.begin() + 32, 0);
  EXPECT_EQ(verify(zero_r).code(), Code::kInvalidArgument);
  Signature big_r = c.signature;
  std::fill(big_r.begin(), big_r.begin() + 32, 0xff);
  EXPECT_EQ(verify(big_r).code(), Code::kInvalidArgument);
}

TEST(VoucherTest, SignVerifyRoundTripWithFreshKeys) {
  for (int i = 0; i < 20; ++i) {
    PrivateKey key = *GeneratePrivateKey();
    Address who = AddressOf(key);
    Hash32 id = Keccak256("channel " + std::to_string(i));
    uint64_t cumulative = 1000003ull * static_cast<uint64_t>(i);
    Address contract = A("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
    Result<Signature> sig = SignVoucher(key, 31337, contract, id, cumulative);
    ASSERT_TRUE(sig.ok());
    EXPECT_LE((*sig)[32], 0x7f);  // low s
    EXPECT_TRUE((*sig)[64] == 27 || (*sig)[64] == 28);
    EXPECT_TRUE(VerifyVoucher(31337, contract, id, cumulative, *sig, who).ok());
    EXPECT_TRUE(VerifyVoucher(VoucherDomainSeparator(31337, contract), id, cumulative, *sig, who).ok());
    EXPECT_FALSE(VerifyVoucher(31338, contract, id, cumulative, *sig, who).ok());
    Voucher v{id, cumulative, *sig};
    Result<Voucher> back = DecodeVoucher(EncodeVoucher(v));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, v);
  }
}

TEST(VoucherTest, DecoderAcceptsOnlyTheWireForm) {
  const std::string id = "0x" + std::string(64, 'a');
  const std::string sig = "0x" + std::string(128, 'b') + "1b";
  auto obj = [](const std::string& a, const std::string& b, const std::string& c) { return "{" + a + "," + b + "," + c + "}"; };
  auto f = [](const std::string& k, const std::string& v) { return "\"" + k + "\":\"" + v + "\""; };
  const std::string good = obj(f("channel_id", id), f("cumulative", "1500000"), f("signature", sig));

  Result<Voucher> v = DecodeVoucher(good);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->cumulative, 1500000u);
  EXPECT_EQ(v->channel_id[0], 0xaa);
  EXPECT_EQ(v->signature[64], 0x1b);
  EXPECT_EQ(EncodeVoucher(*v), good);

  struct Ok {
    std::string text;
    uint64_t cumulative;
  };
  std::vector<Ok> oks = {
      {" \n\t{ \"signature\" : \"" + sig + "\" ,\r\"cumulative\":\"0\", \"channel_id\":\"" + id + "\" } \n", 0},
      {obj(f("channel_id", "0x" + std::string(64, 'A')), f("cumulative", "18446744073709551615"),
           f("signature", "0x" + std::string(128, 'B') + "1C")),
       18446744073709551615ull},
      {obj(f("cumulative", "7"), f("signature", sig), f("channel_id", id)), 7},
  };
  for (const Ok& ok : oks) {
    Result<Voucher> r = DecodeVoucher(ok.text);
    ASSERT_TRUE(r.ok()) << ok.text << ": " << r.status().ToString();
    EXPECT_EQ(r->cumulative, ok.cumulative);
    // Canonical re-encoding decodes to the same voucher.
    Result<Voucher> again = DecodeVoucher(EncodeVoucher(*r));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *r);
  }

  struct Bad {
    std::string text;
    std::string says;
  };
  const std::string c = f("cumulative", "1");
  const std::string i = f("channel_id", id);
  const std::string s = f("signature", sig);
  std::vector<Bad> bads = {
      {"", "object expected"},
      {"[]", "object expected"},
      {"null", "object expected"},
      {"{}", "key"},
      {"{" + i + "," + c + "}", "',' expected"},
      {"{" + i + "," + c + "," + s + ",}", "'}' expected"},
      {"{" + i + "," + c + "," + s + "," + f("extra", "x") + "}", "'}' expected"},
      {obj(i, c, f("channel_id", id)), "channel_id given twice"},
      {obj(i, c, f("memo", "x")), "unknown field"},
      {obj(i, c, s) + "x", "trailing"},
      {obj(i, c, s) + "{}", "trailing"},
      {"{" + i + "," + c + "," + s, "'}' expected"},
      {obj(i, "\"cumulative\":1", s), "cumulative: a string expected"},
      {obj(i, "\"cumulative\":\"1\\u0030\"", s), "escapes"},
      {obj(i, "\"cumulative\":\"1\n\"", s), "control character"},
      {obj(i, "\"cumulative\":\"1", s), "cumulative"},
      {obj(i, "\"cumulative\" \"1\"", s), "':' expected"},
      {obj(i, f("cumulative", ""), s), "empty"},
      {obj(i, f("cumulative", "01"), s), "leading zero"},
      {obj(i, f("cumulative", "-1"), s), "decimal integer"},
      {obj(i, f("cumulative", "+1"), s), "decimal integer"},
      {obj(i, f("cumulative", "1.5"), s), "decimal integer"},
      {obj(i, f("cumulative", "1e6"), s), "decimal integer"},
      {obj(i, f("cumulative", " 1"), s), "decimal integer"},
      {obj(i, f("cumulative", "18446744073709551616"), s), "larger than"},
      {obj(i, f("cumulative", "99999999999999999999999"), s), "larger than"},
      {obj(f("channel_id", std::string(64, 'a')), c, s), "channel_id must start with 0x"},
      {obj(f("channel_id", "0X" + std::string(64, 'a')), c, s), "channel_id must start with 0x"},
      {obj(f("channel_id", "0x" + std::string(62, 'a')), c, s), "64 hex digits"},
      {obj(f("channel_id", "0x" + std::string(66, 'a')), c, s), "64 hex digits"},
      {obj(f("channel_id", "0x" + std::string(63, 'a') + "g"), c, s), "invalid hex digit"},
      {obj(i, c, f("signature", "0x" + std::string(128, 'b'))), "130 hex digits"},
      {obj(i, c, f("signature", "0x" + std::string(132, 'b'))), "130 hex digits"},
      {obj(i, c, f("signature", sig.substr(2))), "signature must start with 0x"},
      {std::string(2000, ' ') + good, "more than 1024 bytes"},
      {std::string("{\"channel_id\x01\":\"") + id + "\"," + c + "," + s + "}", "control character"},
  };
  for (const Bad& b : bads) {
    Result<Voucher> r = DecodeVoucher(b.text);
    ASSERT_FALSE(r.ok()) << b.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.says), std::string::npos)
        << b.text << "\n  said: " << r.status().message() << "\n  expected: " << b.says;
  }
}

}  // namespace
}  // namespace grid::crypto
