// Payment-channel vouchers (issue 6): the EIP-712 typed data a renter's
// signer gives a provider, redeemable on contracts/PaymentChannels.sol.
//
// The type is Voucher(bytes32 channelId,uint256 cumulativeAmount) in the
// domain EIP712Domain(string name,string version,uint256 chainId,address
// verifyingContract) with name "GridmarketChannels" and version "1": the
// contract's own domain (it returns it from eip712Domain(), EIP-5267), so a
// voucher is bound to one chain and one contract deployment, and through the
// channel id to one channel. cumulativeAmount is everything the provider may
// have been paid on the channel so far, in the token's base units (micro-USD
// for a 6-decimal stablecoin), so a newer voucher supersedes the older ones.
// Checked against ethers 6.17 signTypedData in voucher_test.cc
// (tests/vectors/voucher_vectors.mjs).
//
// The wire form (JSON, what travels from renter to agent):
//   {"channel_id":"0x<64 hex>","cumulative":"<decimal>","signature":"0x<130 hex>"}
// DecodeVoucher is strict: exactly these three keys, each once, in any order,
// with JSON whitespace around tokens; values are strings without escapes;
// hex needs its "0x" and may use either case; cumulative is a plain decimal
// integer (no sign, point, exponent or leading zero) up to 2^64 - 1; at most
// kMaxVoucherJsonBytes of input. EncodeVoucher writes the canonical form
// (that key order, lowercase hex, no spaces), which DecodeVoucher accepts and
// maps back to the same Voucher.
//
// Signatures are 65 bytes r ‖ s ‖ v. VerifyVoucher accepts exactly what the
// contract accepts: v 27 or 28 (not 0/1), s in the lower half of the order
// (EIP-2), r and s non-zero, recovering to the expected signer.
//
// Contract: pure functions, safe from any thread. Errors are InvalidArgument
// (malformed input, bad v, high s, no recoverable key) except a well-formed
// signature by someone else, which is Unauthenticated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"

namespace grid::crypto {

inline constexpr std::string_view kVoucherDomainName = "GridmarketChannels";
inline constexpr std::string_view kVoucherDomainVersion = "1";
inline constexpr std::string_view kVoucherDomainType =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
inline constexpr std::string_view kVoucherType = "Voucher(bytes32 channelId,uint256 cumulativeAmount)";
inline constexpr size_t kMaxVoucherJsonBytes = 1024;

struct Voucher {
  Hash32 channel_id{};
  uint64_t cumulative = 0;  // base units of the channel's token
  Signature signature{};

  friend bool operator==(const Voucher&, const Voucher&) = default;
};

// hashStruct(EIP712Domain{"GridmarketChannels", "1", chain_id, contract}).
Hash32 VoucherDomainSeparator(uint64_t chain_id, const Address& contract);

// hashStruct(Voucher{channel_id, cumulative}).
Hash32 VoucherStructHash(const Hash32& channel_id, uint64_t cumulative);

// keccak256("\x19\x01" ‖ domain separator ‖ struct hash): what is signed.
Hash32 VoucherDigest(uint64_t chain_id, const Address& contract, const Hash32& channel_id,
                     uint64_t cumulative);
// The same with the domain separator already computed (a verifier that
// checks many vouchers of one contract).
Hash32 VoucherDigest(const Hash32& domain_separator, const Hash32& channel_id, uint64_t cumulative);

// A voucher signed with `key` (RFC 6979, low s, v 27/28): byte for byte what
// ethers' Wallet.signTypedData produces for the same typed data.
Result<Signature> SignVoucher(const PrivateKey& key, uint64_t chain_id, const Address& contract,
                              const Hash32& channel_id, uint64_t cumulative);

// OK when `sig` is expected_signer's signature of the voucher, as the
// contract would accept it (see the header comment); otherwise an error that
// says why.
Status VerifyVoucher(uint64_t chain_id, const Address& contract, const Hash32& channel_id,
                     uint64_t cumulative, std::span<const uint8_t> sig, const Address& expected_signer);
Status VerifyVoucher(const Hash32& domain_separator, const Hash32& channel_id, uint64_t cumulative,
                     std::span<const uint8_t> sig, const Address& expected_signer);
Status VerifyVoucher(uint64_t chain_id, const Address& contract, const Voucher& voucher,
                     const Address& expected_signer);

// The strict wire decoder and the canonical encoder (see the header comment).
Result<Voucher> DecodeVoucher(std::string_view json);
std::string EncodeVoucher(const Voucher& voucher);

}  // namespace grid::crypto
