// PaymentChannels (contracts/PaymentChannels.sol) from C++: the calldata of
// its entry points and of ERC-20 approve(), the channels(id) view, the
// Opened event, and its custom errors by name.
//
// Contract:
// - Encoders produce what solc's ABI and ethers.js produce for the same
//   arguments (tests/vectors/channels_abi.json, made by ethers, checks it).
// - Decoders are strict as in abi.h: exact lengths, zero high bytes in
//   address and narrow integer words, InvalidArgument naming the field.
// - Amounts are token base units (6 decimals for the stablecoin: micro-USD).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chain/abi.h"
#include "chain/u256.h"
#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"

namespace grid::chain::channels {

using ChannelId = crypto::Hash32;

// ERC-20 approve(spender, amount): open() pulls the deposit with
// transferFrom, so the renter approves the contract first.
std::vector<uint8_t> EncodeApprove(const crypto::Address& spender, const U256& amount);

std::vector<uint8_t> EncodeOpen(const crypto::Address& provider, const crypto::Address& token, const U256& amount,
                                uint64_t expiry_s, const crypto::Address& signer);
std::vector<uint8_t> EncodeTopUp(const ChannelId& id, const U256& amount, uint64_t new_expiry_s);
// `sig` is the 65-byte r ‖ s ‖ v voucher signature (close() also takes an
// empty one with cumulative 0: a close without a new payment).
std::vector<uint8_t> EncodeRedeem(const ChannelId& id, const U256& cumulative, std::span<const uint8_t> sig);
std::vector<uint8_t> EncodeClose(const ChannelId& id, const U256& cumulative, std::span<const uint8_t> sig);
std::vector<uint8_t> EncodeRefund(const ChannelId& id);
std::vector<uint8_t> EncodeStartClose(const ChannelId& id);
std::vector<uint8_t> EncodeFinishClose(const ChannelId& id);
// The public getter channels(bytes32).
std::vector<uint8_t> EncodeChannelsCall(const ChannelId& id);

// A channel as the contract holds it. A deleted or never-opened channel has
// exists == false (the contract zeroes it: renter == 0).
struct ChannelState {
  bool exists = false;
  crypto::Address renter;
  crypto::Address provider;
  crypto::Address token;
  // Whose vouchers pay: the stored signer, or the renter when none is stored
  // (as the contract's signerOf()).
  crypto::Address signer;
  U256 deposit;          // everything ever deposited
  U256 paid;             // everything paid to the provider so far
  uint64_t expiry_s = 0;    // from then on the renter may refund
  uint64_t close_at_s = 0;  // 0, or when the renter's close may finish
};
// The return data of channels(id): eight words (address, uint48, uint48,
// address, uint96, address, uint96, address).
Result<ChannelState> DecodeChannelsResult(std::span<const uint8_t> data);

// topics[0] of Opened(bytes32 indexed id, address indexed renter, address
// indexed provider, address token, address signer, uint256 deposit, uint64
// expiry).
const crypto::Hash32& OpenedEventTopic();
struct OpenedEvent {
  ChannelId id{};
  crypto::Address renter;
  crypto::Address provider;
  crypto::Address token;
  crypto::Address signer;
  U256 deposit;
  uint64_t expiry_s = 0;
};
Result<OpenedEvent> DecodeOpenedLog(std::span<const crypto::Hash32> topics, std::span<const uint8_t> data);

// topics[0] of Closed(bytes32 indexed id, uint256 paid, uint256 refund):
// the channel's final payout (everything the provider was paid on it) and
// what went back to the renter, emitted by close, refund and finishClose.
const crypto::Hash32& ClosedEventTopic();
struct ClosedEvent {
  ChannelId id{};
  U256 paid;
  U256 refund;
};
Result<ClosedEvent> DecodeClosedLog(std::span<const crypto::Hash32> topics, std::span<const uint8_t> data);

// The contract's custom error for revert data ("OverClaim"), if it is one.
std::optional<std::string_view> ErrorName(std::span<const uint8_t> revert_data);
// A revert message as chain::Chain reports it ("… custom error 0x9f0a…")
// with the custom error's selector replaced by its name ("… OverClaim"); any
// other text is returned unchanged.
std::string NameCustomErrors(std::string message);

}  // namespace grid::chain::channels
