// EIP-191 and EIP-712 checked against ethers.js 6.17.0. The constants come
// from `node tests/fixtures/crypto/make_vectors.mjs` (wallet key
// 0x4c08…2318, address 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23).
#include <gtest/gtest.h>

#include "crypto/eip191.h"
#include "crypto/eip712.h"
#include "crypto/hex.h"
#include "crypto/keys.h"

namespace grid::crypto {
namespace {

constexpr char kKey[] = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
constexpr char kAddress[] = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

struct PersonalVector {
  const char* message;
  const char* hash;
  const char* sig;
};

const PersonalVector kPersonal[] = {
    {"", "0x5f35dce98ba4fba25530a026ed80b2cecdaa31091ba4958b99b52ea1d068adad",
     "0x8a68b4e66cd2b575338e16069d7b65f6f67c7ceae8945dccf8cb7bdb06278d933dd9c888f3444ca4698464079a067ad3cfffe96d493b8ecf56885169d0fdfe7d1b"},
    {"hello", "0x50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750",
     "0xa5d58782075bdf09490159d634d1aae66a8f6777c7247d2f233e9511cfd7c64c34f288cdbcea5370e4863fdbe9f4d86654c2ba1d86589e9ebb64494c649008591b"},
    // UTF-8: the length prefix counts bytes (17), not characters (13).
    {"h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93",
     "0x4798c12c4c74c416d5c19fd1171873f08e97ab7447d5d67dd50d1045bdf84aa0",
     "0x06fd1474face582fb4f3784c5683117792c3cfb46685acbd5a0dfc8a7acbd95d5bf89a34be1c4aacc91c820993fdd6cf60647cc460e1781afd54829f4a9cab481c"},
    {"localhost:8080 wants you to sign in with your Ethereum account:\n"
     "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23\n\n"
     "Sign in to Gridmarket\n\n"
     "URI: http://localhost:8080/login\n"
     "Version: 1\n"
     "Chain ID: 31337\n"
     "Nonce: abcdef0123456789\n"
     "Issued At: 2024-05-01T12:00:00Z",
     "0x647c15bacc78085e699ad4be615ae7b3379afc1aa03b7869d924771555b63ed4",
     "0xc8fd7bc08442b32e91222d2b78fcd5af9840c2febe730636ca042eaef18ecc3710af3244e1236a0c2e1b2689b170629922d4182fc4f9b87d06dd78582a55932e1b"},
};

TEST(Eip191Test, MatchesEthersHashMessageAndSignMessage) {
  PrivateKey key = PrivateKeyFromHex(kKey).value();
  ASSERT_EQ(AddressOf(key).ToChecksumHex(), kAddress);
  for (const auto& v : kPersonal) {
    Hash32 h = PersonalMessageHash(v.message);
    EXPECT_EQ(HexEncode(h), v.hash) << v.message;
    // RFC 6979 makes our signature byte-identical to ethers'.
    EXPECT_EQ(HexEncode(SignDigest(key, h).value()), v.sig) << v.message;
    Signature ethers_sig = ParseSignature(v.sig).value();
    EXPECT_EQ(RecoverSigner(h, ethers_sig).value().ToChecksumHex(), kAddress);
  }
}

struct TypedVector {
  uint64_t chain_id;
  LeaseOrder order;
  const char* domain;
  const char* struct_hash;
  const char* digest;
  const char* sig;
};

const TypedVector kTyped[] = {
    {31337,
     {.offer_id = 42, .gpus = 8, .price_per_hour_micros = 2500000, .nonce = 7,
      .expiry_unix_s = 1714564800},
     "0x8228b44f5c42b78b49f4b403dc37a9735ada9cdaf4280cef550f734f39323b78",
     "0x4d4b4b014737f30483487ba8acef4cb21989e599a5a1a39ab8055cf02ad68243",
     "0x677123be2b92161f7dd190a277a78c8151ec5a6cadfb27ac67f578534afd8c07",
     "0x6f60ebd75cea23f2b3ce4e73fb6056d2556763b64f8ea7d9ec6888c342ca2a47575a0bb7c7b7c3019d7ba04b2c49210b8be5dbb8fcce49dd6e9e7480ec80798f1c"},
    // Every field at its C++ maximum.
    {1,
     {.offer_id = UINT64_MAX, .gpus = UINT32_MAX, .price_per_hour_micros = INT64_MAX,
      .nonce = UINT64_MAX, .expiry_unix_s = INT64_MAX},
     "0x5dbbd4cf17a5bfe4fa8bf5da929971e25662d35a52cd5611815556643dc19942",
     "0xdb7c5b9661ff15971ed35f3e3da7aa530bee6025bbd5a808bbc13b055ce7e882",
     "0xdb1afc6c2483db694a97c84e4bde76fbbcad3ee44350e577e39fe6ed70d8d1d3",
     "0xed881ee56534e9bd58670a0a5c7108b0db835a46149bfb773812de1d669971421d67509fe293aa86274faebfc5a6592020d710b8e9ba645e8957b1eb5d6222201b"},
};

TEST(Eip712Test, MatchesEthersTypedDataEncoder) {
  PrivateKey key = PrivateKeyFromHex(kKey).value();
  for (const auto& v : kTyped) {
    EXPECT_EQ(HexEncode(DomainSeparator(v.chain_id)), v.domain);
    EXPECT_EQ(HexEncode(LeaseOrderStructHash(v.order)), v.struct_hash);
    Hash32 digest = LeaseOrderDigest(v.order, v.chain_id);
    EXPECT_EQ(HexEncode(digest), v.digest);
    EXPECT_EQ(HexEncode(SignDigest(key, digest).value()), v.sig);
    EXPECT_EQ(RecoverSigner(digest, ParseSignature(v.sig).value()).value().ToChecksumHex(),
              kAddress);
  }
}

TEST(Eip712Test, EveryFieldAndTheChainMatter) {
  LeaseOrder base = kTyped[0].order;
  Hash32 d = LeaseOrderDigest(base, 31337);
  EXPECT_NE(LeaseOrderDigest(base, 1), d);
  LeaseOrder o = base;
  o.offer_id++;
  EXPECT_NE(LeaseOrderDigest(o, 31337), d);
  o = base;
  o.gpus++;
  EXPECT_NE(LeaseOrderDigest(o, 31337), d);
  o = base;
  o.price_per_hour_micros++;
  EXPECT_NE(LeaseOrderDigest(o, 31337), d);
  o = base;
  o.nonce++;
  EXPECT_NE(LeaseOrderDigest(o, 31337), d);
  o = base;
  o.expiry_unix_s++;
  EXPECT_NE(LeaseOrderDigest(o, 31337), d);
}

TEST(Eip712Test, Validate) {
  LeaseOrder o = kTyped[0].order;
  EXPECT_TRUE(ValidateLeaseOrder(o).ok());
  o.price_per_hour_micros = -1;
  EXPECT_EQ(ValidateLeaseOrder(o).code(), Code::kInvalidArgument);
  o = kTyped[0].order;
  o.expiry_unix_s = -1;
  EXPECT_FALSE(ValidateLeaseOrder(o).ok());
  o = kTyped[0].order;
  o.gpus = 0;
  EXPECT_FALSE(ValidateLeaseOrder(o).ok());
  // A negative value is sign-extended, so it differs from its uint64 alias.
  LeaseOrder neg = kTyped[0].order;
  neg.price_per_hour_micros = -1;
  LeaseOrder big = kTyped[0].order;
  big.price_per_hour_micros = INT64_MAX;
  EXPECT_NE(LeaseOrderStructHash(neg), LeaseOrderStructHash(big));
}

}  // namespace
}  // namespace grid::crypto
