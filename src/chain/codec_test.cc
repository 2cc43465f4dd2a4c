// Tests of U256, RLP, ABI and transactions. Expected hex comes from the
// EIP-155 text (its example transaction) and from ethers.js 6
// (tests/vectors/chain_vectors.js, output in chain_vectors.json): an
// independent implementation, so these are not our code checking itself.
#include <gtest/gtest.h>

#include <functional>

#include <random>
#include <string>

#include "chain/abi.h"
#include "chain/rlp.h"
#include "chain/tx.h"
#include "chain/u256.h"
#include "crypto/hex.h"

namespace grid::chain {
namespace {

using crypto::HexEncode;

Bytes H(std::string_view hex) {
  auto r = crypto::HexDecode(hex);
  EXPECT_TRUE(r.ok()) << hex;
  return r.ok() ? *r : Bytes{};
}

Bytes W(const U256& v) {
  auto a = v.ToBigEndian32();
  return Bytes(a.begin(), a.end());
}

crypto::Address A(std::string_view s) { return crypto::ParseAddress(s).value(); }

crypto::PrivateKey Key(std::string_view hex) { return crypto::PrivateKeyFromHex(hex).value(); }

// ---- U256 ----

TEST(U256Test, QuantityAndDecimal) {
  EXPECT_EQ(U256::FromQuantity("0x0").value(), U256(0));
  EXPECT_EQ(U256::FromQuantity("0x1a").value(), U256(26));
  EXPECT_EQ(U256::FromQuantity("0x0001").value(), U256(1));  // padded: tolerated
  EXPECT_EQ(U256(26).ToQuantity(), "0x1a");
  EXPECT_EQ(U256(0).ToQuantity(), "0x0");
  EXPECT_EQ(U256::Max().ToQuantity(), "0x" + std::string(64, 'f'));
  EXPECT_EQ(U256::Max().ToDecimal(),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935");
  EXPECT_EQ(U256::FromDecimal(U256::Max().ToDecimal()).value(), U256::Max());
  EXPECT_FALSE(U256::FromDecimal("115792089237316195423570985008687907853269984665640564039457584007913129639936").ok());
  EXPECT_FALSE(U256::FromQuantity("0x").ok());
  EXPECT_FALSE(U256::FromQuantity("12").ok());
  EXPECT_FALSE(U256::FromQuantity("0xg").ok());
  EXPECT_FALSE(U256::FromQuantity("0x1" + std::string(64, '0')).ok());  // 2^256
  EXPECT_FALSE(U256::FromDecimal("").ok());
  EXPECT_FALSE(U256::FromDecimal("-1").ok());
}

TEST(U256Test, CheckedArithmeticAndConversions) {
  EXPECT_FALSE(U256::Add(U256::Max(), U256(1)).has_value());
  EXPECT_EQ(U256::Add(U256(2), U256(3)).value(), U256(5));
  EXPECT_FALSE(U256::Sub(U256(2), U256(3)).has_value());
  EXPECT_EQ(U256::Sub(U256::FromQuantity("0x10000000000000000").value(), U256(1)).value(),
            U256(UINT64_MAX));
  EXPECT_FALSE(U256::MulSmall(U256::Max(), 2).has_value());
  EXPECT_EQ(U256::DivSmall(U256(17), 8).value(), U256(2));
  EXPECT_FALSE(U256::DivSmall(U256(17), 0).has_value());
  EXPECT_LT(U256(1), U256::FromQuantity("0x10000000000000000").value());
  EXPECT_EQ(U256(INT64_MAX).ToInt64().value(), INT64_MAX);
  EXPECT_FALSE(U256(uint64_t(INT64_MAX) + 1).ToInt64().ok());
  EXPECT_FALSE(U256::Max().ToUint64().has_value());
  EXPECT_TRUE(U256(0).ToMinimalBigEndian().empty());
  EXPECT_EQ(U256(0x0400).ToMinimalBigEndian(), (Bytes{0x04, 0x00}));
  EXPECT_FALSE(U256::FromBigEndian(Bytes(33, 0)).ok());
}

// ---- RLP ----

TEST(RlpTest, EncodesCanonically) {
  // Examples from the RLP specification (Ethereum yellow paper, appendix B).
  EXPECT_EQ(HexEncode(RlpEncodeBytes(Bytes{'d', 'o', 'g'})), "0x83646f67");
  EXPECT_EQ(HexEncode(RlpEncodeBytes({})), "0x80");
  EXPECT_EQ(HexEncode(RlpEncodeBytes(Bytes{0x00})), "0x00");
  EXPECT_EQ(HexEncode(RlpEncodeBytes(Bytes{0x7f})), "0x7f");
  EXPECT_EQ(HexEncode(RlpEncodeBytes(Bytes{0x80})), "0x8180");
  EXPECT_EQ(HexEncode(RlpEncodeUint(0)), "0x80");
  EXPECT_EQ(HexEncode(RlpEncodeUint(15)), "0x0f");
  EXPECT_EQ(HexEncode(RlpEncodeUint(1024)), "0x820400");
  std::vector<Bytes> cat_dog = {RlpEncodeBytes(Bytes{'c', 'a', 't'}), RlpEncodeBytes(Bytes{'d', 'o', 'g'})};
  EXPECT_EQ(HexEncode(RlpEncodeList(cat_dog)), "0xc88363617483646f67");
  EXPECT_EQ(HexEncode(RlpEncodeList({})), "0xc0");
  // ethers.js: the set-theoretic representation of three, and a 56-byte string.
  RlpItem e = RlpItem::List({});
  RlpItem three = RlpItem::List({e, RlpItem::List({e}), RlpItem::List({e, RlpItem::List({e})})});
  EXPECT_EQ(HexEncode(RlpEncode(three)), "0xc7c0c1c0c3c0c1c0");
  std::string lorem = "Lorem ipsum dolor sit amet, consectetur adipisicing elit";
  EXPECT_EQ(HexEncode(RlpEncodeBytes(Bytes(lorem.begin(), lorem.end()))),
            "0xb8384c6f72656d20697073756d20646f6c6f722073697420616d65742c20636f6e7365637465747572206164697069736963696e6720656c6974");
}

TEST(RlpTest, DecodeRoundTrips) {
  for (std::string_view hex : {"0x83646f67", "0x80", "0x00", "0x8180", "0xc88363617483646f67", "0xc0",
                               "0xc7c0c1c0c3c0c1c0",
                               "0xb8384c6f72656d20697073756d20646f6c6f722073697420616d65742c20636f6e7365637465747572206164697069736963696e6720656c6974"}) {
    Bytes in = H(hex);
    auto item = RlpDecode(in);
    ASSERT_TRUE(item.ok()) << hex << ": " << item.status().ToString();
    EXPECT_EQ(RlpEncode(*item), in) << hex;
  }
  auto three = RlpDecode(H("0xc7c0c1c0c3c0c1c0")).value();
  ASSERT_TRUE(three.is_list);
  ASSERT_EQ(three.items.size(), 3u);
  EXPECT_EQ(three.items[2].items[1].items.size(), 1u);
  // A 1024-byte string needs a two-byte length.
  Bytes big(1024, 0xab);
  Bytes enc = RlpEncodeBytes(big);
  EXPECT_EQ(HexEncode(std::span<const uint8_t>(enc.data(), 3)), "0xb90400");
  EXPECT_EQ(RlpDecode(enc).value().bytes, big);
}

TEST(RlpTest, RejectsNonCanonicalAndMalformed) {
  struct Case { const char* hex; const char* why; };
  for (const Case& c : std::initializer_list<Case>{
           {"0x", "end of input"},
           {"0x8100", "single byte below 0x80"},      // 0x00 must be encoded as itself
           {"0x817f", "single byte below 0x80"},
           {"0xb80100", "long form"},                  // 1-byte payload in long form
           {"0xb90001" , "leading zero"},
           {"0x83646f", "runs past"},                  // truncated string
           {"0xc883636174", "runs past"},              // truncated list
           {"0x83646f6700", "trailing"},               // trailing byte
           {"0xbf", "truncated length"},
           {"0xc2c0", "runs past"},
           {"0xbfffffffffffffffff", "runs past"},      // 8-byte length, nothing after
       }) {
    auto r = RlpDecode(H(c.hex));
    ASSERT_FALSE(r.ok()) << c.hex;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.why), std::string::npos) << c.hex << ": " << r.status().message();
  }
  // Nesting: kMaxRlpDepth lists deep is fine, one more is refused.
  auto nested = [](int depth) {
    Bytes b = RlpEncodeList({});
    for (int i = 0; i < depth; ++i) b = RlpEncodeList(std::vector<Bytes>{b});
    return b;
  };
  EXPECT_TRUE(RlpDecode(nested(kMaxRlpDepth)).ok());
  auto deep = RlpDecode(nested(kMaxRlpDepth + 1));
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("nesting"), std::string::npos);
  // Integer readers.
  EXPECT_FALSE(RlpItem::String({0x00, 0x01}).AsUint64("n").ok());  // leading zero
  EXPECT_FALSE(RlpItem::String(Bytes(9, 1)).AsUint64("n").ok());
  EXPECT_EQ(RlpItem::String({}).AsUint64("n").value(), 0u);
  EXPECT_FALSE(RlpItem::List({}).AsU256("n").ok());
  EXPECT_FALSE(RlpItem::String(Bytes(19, 1)).AsAddress("to").ok());
}

// Property: any tree of items (random strings of every length class, random
// nesting) encodes to something the strict decoder accepts and gives back
// unchanged. Seeded, so a failure reproduces.
TEST(RlpTest, RandomTreesRoundTrip) {
  std::mt19937_64 rng(20261129);
  std::function<RlpItem(int)> gen = [&](int depth) {
    if (depth >= kMaxRlpDepth || rng() % 3 != 0) {
      static const size_t kLens[] = {0, 1, 1, 2, 55, 56, 300, 70000};
      Bytes b(kLens[rng() % 8]);
      for (auto& x : b) x = uint8_t(rng() % 4 == 0 ? rng() % 0x80 : rng());
      return RlpItem::String(std::move(b));
    }
    std::vector<RlpItem> items(rng() % 5);
    for (auto& it : items) it = gen(depth + 1);
    return RlpItem::List(std::move(items));
  };
  for (int i = 0; i < 300; ++i) {
    RlpItem item = gen(0);
    Bytes enc = RlpEncode(item);
    auto back = RlpDecode(enc);
    ASSERT_TRUE(back.ok()) << "case " << i << ": " << back.status().ToString();
    ASSERT_EQ(*back, item) << "case " << i;
    // Every strict prefix is refused (lengths are checked).
    if (enc.size() > 1) {
      EXPECT_FALSE(RlpDecode(std::span<const uint8_t>(enc.data(), enc.size() - 1)).ok()) << "case " << i;
    }
  }
}

// Property: U256 arithmetic agrees with unsigned __int128 where both apply.
TEST(U256Test, AgreesWithInt128) {
  __extension__ typedef unsigned __int128 U128;
  std::mt19937_64 rng(7);
  auto to_u256 = [](U128 v) {
    Bytes b(16);
    for (int i = 15; i >= 0; --i, v >>= 8) b[i] = uint8_t(v);
    return U256::FromBigEndian(b).value();
  };
  for (int i = 0; i < 2000; ++i) {
    U128 a = (U128(rng() >> 2) << 64) | rng();  // < 2^126: sums and x3 fit
    U128 b = (U128(rng() >> (rng() % 64)) << 64) | rng();
    b >>= 2;
    uint64_t m = rng() % 4;
    uint64_t d = rng() | 1;
    EXPECT_EQ(U256::Add(to_u256(a), to_u256(b)).value(), to_u256(a + b));
    if (a >= b) {
      EXPECT_EQ(U256::Sub(to_u256(a), to_u256(b)).value(), to_u256(a - b));
    } else {
      EXPECT_FALSE(U256::Sub(to_u256(a), to_u256(b)).has_value());
    }
    EXPECT_EQ(U256::MulSmall(to_u256(a), m).value(), to_u256(a * m));
    EXPECT_EQ(U256::DivSmall(to_u256(a), d).value(), to_u256(a / d));
    EXPECT_EQ(to_u256(a) < to_u256(b), a < b);
    EXPECT_EQ(U256::FromQuantity(to_u256(a).ToQuantity()).value(), to_u256(a));
    EXPECT_EQ(U256::FromDecimal(to_u256(a).ToDecimal()).value(), to_u256(a));
  }
}

// ---- ABI ----

TEST(AbiTest, Erc20CallsMatchEthers) {
  crypto::Address to = A("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
  EXPECT_EQ(HexEncode(EncodeTransferCall(to, U256(123456789))),
            "0xa9059cbb00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8"
            "00000000000000000000000000000000000000000000000000000000075bcd15");
  EXPECT_EQ(HexEncode(EncodeBalanceOfCall(to)),
            "0x70a0823100000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8");
  EXPECT_EQ(HexEncode(EncodeDecimalsCall()), "0x313ce567");
  EXPECT_EQ(HexEncode(TransferEventTopic()),
            "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
  auto call = DecodeTransferCall(EncodeTransferCall(to, U256::Max())).value();
  EXPECT_EQ(call.to, to);
  EXPECT_EQ(call.amount, U256::Max());
  Bytes bad = EncodeTransferCall(to, U256(1));
  bad[5] = 1;  // dirty address padding
  EXPECT_FALSE(DecodeTransferCall(bad).ok());
  bad = EncodeTransferCall(to, U256(1));
  bad.push_back(0);
  EXPECT_FALSE(DecodeTransferCall(bad).ok());
  EXPECT_FALSE(DecodeTransferCall(EncodeBalanceOfCall(to)).ok());
}

TEST(AbiTest, ReturnValues) {
  Bytes word = W(U256(1));
  EXPECT_EQ(DecodeUint256(word).value(), U256(1));
  EXPECT_TRUE(DecodeBool(word).value());
  Bytes two = W(U256(2));
  EXPECT_FALSE(DecodeBool(two).ok());
  EXPECT_FALSE(DecodeUint256(Bytes(31, 0)).ok());
  EXPECT_FALSE(DecodeUint256(Bytes(64, 0)).ok());
  Bytes addr(32, 0);
  addr[31] = 0x42;
  EXPECT_EQ(DecodeAddress(addr).value().bytes[19], 0x42);
  addr[0] = 1;
  EXPECT_FALSE(DecodeAddress(addr).ok());
}

TEST(AbiTest, RevertReasonsMatchEthers) {
  Bytes err = H("0x08c379a00000000000000000000000000000000000000000000000000000000000000020"
                "0000000000000000000000000000000000000000000000000000000000000026"
                "45524332303a207472616e7366657220616d6f756e7420657863656564732062616c616e6365"
                "0000000000000000000000000000000000000000000000000000");
  RevertReason r = DecodeRevert(err);
  EXPECT_EQ(r.kind, RevertReason::Kind::kError);
  EXPECT_EQ(r.message, "ERC20: transfer amount exceeds balance");
  EXPECT_EQ(r.ToString(), "Error(\"ERC20: transfer amount exceeds balance\")");
  RevertReason p = DecodeRevert(H("0x4e487b710000000000000000000000000000000000000000000000000000000000000011"));
  EXPECT_EQ(p.kind, RevertReason::Kind::kPanic);
  EXPECT_EQ(p.panic_code, U256(0x11));
  EXPECT_EQ(p.ToString(), "Panic(0x11)");
  EXPECT_EQ(DecodeRevert({}).kind, RevertReason::Kind::kEmpty);
  RevertReason custom = DecodeRevert(H("0xdeadbeef"));
  EXPECT_EQ(custom.kind, RevertReason::Kind::kCustom);
  EXPECT_EQ(custom.ToString(), "custom error 0xdeadbeef");

  // Strictness of Error(string): each corruption is refused (and then shows
  // as a custom error with its raw bytes).
  Bytes bad_pad = err;
  bad_pad.back() = 1;
  EXPECT_FALSE(DecodeErrorString(bad_pad).ok());
  EXPECT_EQ(DecodeRevert(bad_pad).kind, RevertReason::Kind::kCustom);
  Bytes bad_len = err;
  bad_len[4 + 63] = 0x60;  // length 0x60 > the data
  EXPECT_FALSE(DecodeErrorString(bad_len).ok());
  Bytes bad_off = err;
  bad_off[4 + 31] = 0x40;
  EXPECT_FALSE(DecodeErrorString(bad_off).ok());
  Bytes truncated(err.begin(), err.end() - 32);
  EXPECT_FALSE(DecodeErrorString(truncated).ok());
  Bytes huge_len = err;
  std::fill(huge_len.begin() + 4 + 32, huge_len.begin() + 4 + 64, 0xff);
  EXPECT_FALSE(DecodeErrorString(huge_len).ok());
}

TEST(AbiTest, TransferLog) {
  crypto::Address from = A("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
  crypto::Address to = A("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
  std::vector<crypto::Hash32> topics = {TransferEventTopic(), AddressTopic(from), AddressTopic(to)};
  Bytes data = H("0x00000000000000000000000000000000000000000000000000000000075bcd15");
  auto e = DecodeTransferLog(topics, data).value();
  EXPECT_EQ(e.from, from);
  EXPECT_EQ(e.to, to);
  EXPECT_EQ(e.value, U256(123456789));
  // ERC-721 style (tokenId indexed) has 4 topics and no data.
  auto four = topics;
  four.push_back(AddressTopic(to));
  EXPECT_FALSE(DecodeTransferLog(four, {}).ok());
  EXPECT_FALSE(DecodeTransferLog(topics, Bytes(31, 0)).ok());
  auto dirty = topics;
  dirty[1][0] = 1;
  EXPECT_FALSE(DecodeTransferLog(dirty, data).ok());
  auto other = topics;
  other[0] = EventTopic("Approval(address,address,uint256)");
  EXPECT_FALSE(DecodeTransferLog(other, data).ok());
}

// ---- Transactions ----

TEST(TxTest, Eip155ExampleFromTheEip) {
  // EIP-155's example: nonce 9, 20 gwei, 21000 gas, to 0x3535..., 1 ether,
  // chain id 1, key 0x4646...
  Transaction tx;
  tx.type = TxType::kLegacy;
  tx.chain_id = 1;
  tx.nonce = 9;
  tx.gas_price = U256(20000000000);
  tx.gas_limit = 21000;
  tx.to = A("0x3535353535353535353535353535353535353535");
  tx.value = U256(1000000000000000000);
  EXPECT_EQ(HexEncode(UnsignedEncoding(tx)),
            "0xec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080");
  EXPECT_EQ(HexEncode(SigningHash(tx)), "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
  auto st = SignTransaction(tx, Key("0x4646464646464646464646464646464646464646464646464646464646464646"));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  const char* kSigned =
      "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef"
      "61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf5"
      "55c9f3dc64214b297fb1966a3b6d83";
  EXPECT_EQ(HexEncode(st->raw), kSigned);
  EXPECT_EQ(HexEncode(st->hash), "0x33469b22e9f636356c4160a87eb19df52b7412e8eac32a4a55ffe88ea8350788");
  auto back = DecodeSignedTransaction(H(kSigned));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->tx, tx);
  EXPECT_EQ(back->from, st->from);
  EXPECT_EQ(back->from, A("0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"));
  EXPECT_EQ(back->hash, st->hash);
}

TEST(TxTest, Eip1559Erc20TransferMatchesEthers) {
  Transaction tx;
  tx.type = TxType::kEip1559;
  tx.chain_id = 31337;
  tx.nonce = 7;
  tx.max_priority_fee_per_gas = U256(1500000000);
  tx.max_fee_per_gas = U256(30000000000);
  tx.gas_limit = 65000;
  tx.to = A("0x5FbDB2315678afecb367f032d93F642f64180aa3");
  tx.data = EncodeTransferCall(A("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), U256(123456789));
  EXPECT_EQ(HexEncode(UnsignedEncoding(tx)),
            "0x02f86f827a69078459682f008506fc23ac0082fde8945fbdb2315678afecb367f032d93f642f64180aa380b844a9059cbb"
            "00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8000000000000000000000000000000000000"
            "00000000000000000000075bcd15c0");
  EXPECT_EQ(HexEncode(SigningHash(tx)), "0xbcd8429d9254f5b3f3e228f5db33dad67589c035f2694910bfe60f6f213ce09a");
  auto st = SignTransaction(tx, Key("0x0000000000000000000000000000000000000000000000000000000000000001"));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  const char* kSigned =
      "0x02f8b2827a69078459682f008506fc23ac0082fde8945fbdb2315678afecb367f032d93f642f64180aa380b844a9059cbb"
      "00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8000000000000000000000000000000000000"
      "00000000000000000000075bcd15c080a0ee89b4e7e880d18ef533b76fbf61ffd49897bc082073c1fa63705da16f6bc813a0"
      "3363d4264e983a0080bda40085755c91311f079c07edf0574cf1b009a1edaa5b";
  EXPECT_EQ(HexEncode(st->raw), kSigned);
  EXPECT_EQ(HexEncode(st->hash), "0xd987a508de522f9e78470f1f8de84219827c915eba81dfcf1ed1cf78867506e4");
  auto back = DecodeSignedTransaction(H(kSigned)).value();
  EXPECT_EQ(back.tx, tx);
  EXPECT_EQ(back.from, A("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
  EXPECT_EQ(back.y_parity, 0);
}

TEST(TxTest, DecodesEthersAccessListAndContractCreation) {
  auto acl = DecodeSignedTransaction(H(
      "0x02f8c001808001830186a09470997970c51812dc3a010c7d01b50e0d17dc79c8a08000000000000000000000000000000000"
      "00000000000000000000000000001184deadbeeff838f7945fbdb2315678afecb367f032d93f642f64180aa3e1a0000000000000"
      "000000000000000000000000000000000000000000000000000101a00b5738556cef717912300e5496ed60bef292fd02cef89417"
      "0bddc59f3530fb01a00ccbf122b769fac1ce893b9e0bde538cebc4c87ce6fd09fc82d341075e2cc3a5"));
  ASSERT_TRUE(acl.ok()) << acl.status().ToString();
  EXPECT_EQ(HexEncode(acl->hash), "0xa2f243f029b216bb91464d72e4ef1b1a1599f2cffc6a4ff6fa6e3a58c5b70a6b");
  EXPECT_EQ(acl->tx.value.ToQuantity(), "0x8000000000000000000000000000000000000000000000000000000000000011");
  ASSERT_EQ(acl->tx.access_list.size(), 1u);
  EXPECT_EQ(acl->tx.access_list[0].address, A("0x5FbDB2315678afecb367f032d93F642f64180aa3"));
  EXPECT_EQ(acl->tx.access_list[0].storage_keys.size(), 1u);
  EXPECT_EQ(acl->from, A("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
  // Re-signing the decoded fields reproduces ethers' bytes exactly.
  auto resigned = SignTransaction(acl->tx, Key("0x0000000000000000000000000000000000000000000000000000000000000001"));
  EXPECT_EQ(resigned.value().raw, acl->raw);

  auto create = DecodeSignedTransaction(H(
      "0xf84f010182cf08808082600082f4f5a0251713ab4e005dae83e403b5a8d5796b3d6db713f9f4aafc14e8545c5898e8ada05d"
      "b39204e89385a027a17d70d06fd253a97f74f4120bedf7ad33ef6e0a5e2faf"));
  ASSERT_TRUE(create.ok()) << create.status().ToString();
  EXPECT_FALSE(create->tx.to.has_value());
  EXPECT_EQ(create->tx.chain_id, 31337u);
  EXPECT_EQ(HexEncode(create->hash), "0x4e15562bfd42c2053db07262a28b98c9c9c8545ac001a4896134a341bccdff1f");
  EXPECT_EQ(create->from, A("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
}

TEST(TxTest, RejectsBadTransactions) {
  auto key = Key("0x0000000000000000000000000000000000000000000000000000000000000001");
  Transaction tx;
  tx.chain_id = 0;
  EXPECT_FALSE(SignTransaction(tx, key).ok());  // replayable
  tx.chain_id = 1;
  tx.gas_price = U256(1);  // a legacy field on a 1559 tx
  EXPECT_FALSE(SignTransaction(tx, key).ok());
  tx.gas_price = U256(0);
  tx.max_priority_fee_per_gas = U256(2);
  tx.max_fee_per_gas = U256(1);
  EXPECT_FALSE(SignTransaction(tx, key).ok());
  tx.max_fee_per_gas = U256(2);
  auto st = SignTransaction(tx, key).value();
  EXPECT_EQ(DecodeSignedTransaction(st.raw).value().from, crypto::AddressOf(key));

  // Flipping s to n - s (a high-s twin) must be refused (EIP-2).
  Bytes raw = st.raw;
  EXPECT_FALSE(DecodeSignedTransaction({}).ok());
  EXPECT_FALSE(DecodeSignedTransaction(H("0x01c0")).ok());  // EIP-2930: unsupported
  EXPECT_FALSE(DecodeSignedTransaction(H("0x03c0")).ok());  // blob
  Bytes trailing = raw;
  trailing.push_back(0);
  EXPECT_FALSE(DecodeSignedTransaction(trailing).ok());
  // A tampered field changes the recovered sender (or breaks the signature).
  Bytes tampered = raw;
  tampered[4] ^= 1;  // inside the nonce/fees
  auto t = DecodeSignedTransaction(tampered);
  EXPECT_TRUE(!t.ok() || t->from != crypto::AddressOf(key));
  // yParity 2 is refused.
  RlpItem list = RlpDecode(std::span<const uint8_t>(raw).subspan(1)).value();
  list.items[9] = RlpItem::String({0x02});
  Bytes bad_parity = {0x02};
  Bytes enc = RlpEncode(list);
  bad_parity.insert(bad_parity.end(), enc.begin(), enc.end());
  auto bp = DecodeSignedTransaction(bad_parity);
  ASSERT_FALSE(bp.ok());
  EXPECT_NE(bp.status().message().find("yParity"), std::string::npos);
  // A high-s signature: s' = n - s.
  RlpItem high = RlpDecode(std::span<const uint8_t>(raw).subspan(1)).value();
  U256 n = U256::FromQuantity("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").value();
  U256 s = high.items[11].AsU256("s").value();
  high.items[11] = RlpItem::String(U256::Sub(n, s).value().ToMinimalBigEndian());
  high.items[9] = RlpItem::String(high.items[9].bytes.empty() ? Bytes{0x01} : Bytes{});
  Bytes high_raw = {0x02};
  enc = RlpEncode(high);
  high_raw.insert(high_raw.end(), enc.begin(), enc.end());
  EXPECT_FALSE(DecodeSignedTransaction(high_raw).ok());
}

}  // namespace
}  // namespace grid::chain
