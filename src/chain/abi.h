// The slice of the Solidity ABI an ERC-20 token needs: function selectors,
// the calls transfer/balanceOf/decimals, return values, revert data
// (Error(string), Panic(uint256)) and the Transfer event.
//
// Contract:
// - Encoders produce exactly what solc-compiled contracts and ethers.js
//   expect (4-byte selector, 32-byte words, left-padded addresses).
// - Decoders are strict, since return data and logs come from a node we do
//   not control: exact lengths, zero padding where the ABI requires it
//   (address high bytes, bool values 0/1, string tails), offsets and lengths
//   checked against the data before use. Errors are InvalidArgument saying
//   what was wrong.
// Pure functions; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chain/u256.h"
#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"

namespace grid::chain {

using Selector = std::array<uint8_t, 4>;

// The first 4 bytes of keccak256("transfer(address,uint256)").
Selector FunctionSelector(std::string_view signature);
// keccak256 of an event signature: topics[0] of its logs.
crypto::Hash32 EventTopic(std::string_view signature);

// ERC-20 calldata.
std::vector<uint8_t> EncodeTransferCall(const crypto::Address& to, const U256& amount);
std::vector<uint8_t> EncodeBalanceOfCall(const crypto::Address& owner);
std::vector<uint8_t> EncodeDecimalsCall();

// Reads transfer(address,uint256) calldata back (the simulated chain and
// reconciliation of stored transactions): exactly selector + 2 words.
struct TransferCall {
  crypto::Address to;
  U256 amount;
};
Result<TransferCall> DecodeTransferCall(std::span<const uint8_t> calldata);

// Return data of exactly one word.
Result<U256> DecodeUint256(std::span<const uint8_t> data);
Result<crypto::Address> DecodeAddress(std::span<const uint8_t> data);  // high 12 bytes zero
Result<bool> DecodeBool(std::span<const uint8_t> data);                // 0 or 1

// Why a call reverted, from its revert data.
struct RevertReason {
  enum class Kind {
    kEmpty,   // no data: require() without a message, or out of gas
    kError,   // Error(string): message holds the string
    kPanic,   // Panic(uint256): panic_code holds the code (0x11 overflow, ...)
    kCustom,  // a custom error or undecodable data: raw holds it
  };
  Kind kind = Kind::kEmpty;
  std::string message;
  U256 panic_code;
  std::vector<uint8_t> raw;

  // One line for error messages: `Error("...")`, `Panic(0x11)`,
  // `custom error 0x...`, `no reason given`.
  std::string ToString() const;
};
// Never fails: data that is not a well-formed Error/Panic is kCustom with
// the raw bytes (a node still told us the call reverted).
RevertReason DecodeRevert(std::span<const uint8_t> data);
// The strict decoder of Error(string) data (selector 0x08c379a0); the fuzz
// target exercises it directly.
Result<std::string> DecodeErrorString(std::span<const uint8_t> data);

// topics[0] of Transfer(address indexed from, address indexed to, uint256).
const crypto::Hash32& TransferEventTopic();

struct TransferEvent {
  crypto::Address from;
  crypto::Address to;
  U256 value;
};
// topics must be exactly [TransferEventTopic, from, to] and data one word
// (the ERC-721 Transfer has 4 topics and is rejected).
Result<TransferEvent> DecodeTransferLog(std::span<const crypto::Hash32> topics,
                                        std::span<const uint8_t> data);
// A topic holding an address (left-padded), for log filters.
crypto::Hash32 AddressTopic(const crypto::Address& a);

}  // namespace grid::chain
