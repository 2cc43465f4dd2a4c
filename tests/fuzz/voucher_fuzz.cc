// libFuzzer target for payment-channel vouchers (src/crypto/voucher.h): the
// strict wire decoder and the verifier, on any input bytes.
//
// Checks: DecodeVoucher never crashes or reads out of bounds (ASan), and
// whatever it accepts round-trips: DecodeVoucher(EncodeVoucher(v)) == v, and
// the canonical form encodes to itself. VerifyVoucher never crashes on any
// signature bytes of any length (the input's tail), and when it says OK the
// signature is one the contract would take: 65 bytes, v 27/28, low s, and it
// recovers to the expected signer. A voucher we sign for the fuzzed
// (chain, contract, channel, amount) always verifies and decodes back from
// its wire form.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "crypto/voucher.h"

namespace {

using namespace grid::crypto;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "voucher fuzz: %s\n", what);
  std::abort();
}

const PrivateKey& Key() {
  static const PrivateKey k = *PrivateKeyFromHex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. The wire decoder.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  grid::Result<Voucher> v = DecodeVoucher(text);
  if (v.ok()) {
    std::string wire = EncodeVoucher(*v);
    grid::Result<Voucher> again = DecodeVoucher(wire);
    if (!again.ok()) Fail(("canonical form does not decode: " + again.status().ToString()).c_str());
    if (!(*again == *v)) Fail("decode(encode(v)) != v");
    if (EncodeVoucher(*again) != wire) Fail("canonical form is not stable");
    // Verifying a decoded voucher never crashes, whatever its signature.
    (void)VerifyVoucher(31337, Address{}, *v, AddressOf(Key()));
  }

  // 2. The verifier on raw bytes: chain id (8), contract (20), channel (32),
  // cumulative (8), then the signature, any length.
  if (size < 68) return 0;
  uint64_t chain_id, cumulative;
  std::memcpy(&chain_id, data, 8);
  Address contract;
  std::memcpy(contract.bytes.data(), data + 8, 20);
  Hash32 channel_id;
  std::memcpy(channel_id.data(), data + 28, 32);
  std::memcpy(&cumulative, data + 60, 8);
  std::span<const uint8_t> sig(data + 68, size - 68);
  const Address signer = AddressOf(Key());
  grid::Status s = VerifyVoucher(chain_id, contract, channel_id, cumulative, sig, signer);
  if (s.ok()) {
    // Only a real signature by the key passes (the fuzzer cannot forge one,
    // so this also catches a verifier that says OK too easily).
    if (sig.size() != 65 || (sig[64] != 27 && sig[64] != 28) || sig[32] > 0x7f) Fail("accepted a malformed signature");
    grid::Result<Address> who =
        RecoverSigner(VoucherDigest(chain_id, contract, channel_id, cumulative), sig);
    if (!who.ok() || *who != signer) Fail("accepted a signature that does not recover to the signer");
  }
  // Ours always verifies, and survives the wire.
  grid::Result<Signature> mine = SignVoucher(Key(), chain_id, contract, channel_id, cumulative);
  if (!mine.ok()) Fail("SignVoucher failed");
  if (!VerifyVoucher(chain_id, contract, channel_id, cumulative, *mine, signer).ok()) Fail("own voucher rejected");
  Voucher own{channel_id, cumulative, *mine};
  grid::Result<Voucher> back = DecodeVoucher(EncodeVoucher(own));
  if (!back.ok() || !(*back == own)) Fail("own voucher does not survive the wire");
  if (VerifyVoucher(VoucherDomainSeparator(chain_id ^ 1, contract), channel_id, cumulative, *mine, signer).ok()) {
    Fail("own voucher verified on another chain");
  }
  return 0;
}
