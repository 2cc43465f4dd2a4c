#include "chain/chain.h"

#include "chain/abi.h"

namespace grid::chain {

std::string_view SendOutcomeName(SendOutcome outcome) {
  switch (outcome) {
    case SendOutcome::kAccepted: return "accepted";
    case SendOutcome::kAlreadyKnown: return "already_known";
    case SendOutcome::kNonceTooLow: return "nonce_too_low";
    case SendOutcome::kReplacementUnderpriced: return "replacement_underpriced";
  }
  return "unknown";
}

Result<U256> Erc20BalanceOf(Chain& chain, const crypto::Address& token, const crypto::Address& owner) {
  GRID_ASSIGN_OR_RETURN(Bytes out, chain.Call(CallRequest{std::nullopt, token, EncodeBalanceOfCall(owner), U256()}));
  Result<U256> v = DecodeUint256(out);
  if (!v.ok()) return Unavailable("balanceOf of token " + token.ToChecksumHex() + ": " + v.status().message());
  return v;
}

Result<uint8_t> Erc20Decimals(Chain& chain, const crypto::Address& token) {
  GRID_ASSIGN_OR_RETURN(Bytes out, chain.Call(CallRequest{std::nullopt, token, EncodeDecimalsCall(), U256()}));
  Result<U256> v = DecodeUint256(out);
  if (!v.ok()) return Unavailable("decimals of token " + token.ToChecksumHex() + ": " + v.status().message());
  auto small = v->ToUint64();
  if (!small || *small > 255) return Unavailable("decimals of token " + token.ToChecksumHex() + " is not a uint8");
  return uint8_t(*small);
}

}  // namespace grid::chain
