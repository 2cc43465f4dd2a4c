#include "chain/tx.h"

#include <algorithm>
#include <string>

namespace grid::chain {

namespace {

// v = 35 + 2·chain_id + parity must fit the uint64 we carry it in.
constexpr uint64_t kMaxChainId = (UINT64_MAX - 36) / 2;

Bytes EncodeTo(const std::optional<crypto::Address>& to) {
  if (!to) return RlpEncodeBytes({});
  return RlpEncodeBytes(to->bytes);
}

Bytes EncodeAccessList(const std::vector<AccessTuple>& list) {
  std::vector<Bytes> tuples;
  for (const AccessTuple& t : list) {
    std::vector<Bytes> keys;
    for (const crypto::Hash32& k : t.storage_keys) keys.push_back(RlpEncodeBytes(k));
    std::vector<Bytes> pair = {RlpEncodeBytes(t.address.bytes), RlpEncodeList(keys)};
    tuples.push_back(RlpEncodeList(pair));
  }
  return RlpEncodeList(tuples);
}

// The fields common to the unsigned and signed encodings, in order.
std::vector<Bytes> PayloadFields(const Transaction& tx) {
  if (tx.type == TxType::kLegacy) {
    return {RlpEncodeUint(tx.nonce), RlpEncodeU256(tx.gas_price), RlpEncodeUint(tx.gas_limit),
            EncodeTo(tx.to),         RlpEncodeU256(tx.value),     RlpEncodeBytes(tx.data)};
  }
  return {RlpEncodeUint(tx.chain_id),
          RlpEncodeUint(tx.nonce),
          RlpEncodeU256(tx.max_priority_fee_per_gas),
          RlpEncodeU256(tx.max_fee_per_gas),
          RlpEncodeUint(tx.gas_limit),
          EncodeTo(tx.to),
          RlpEncodeU256(tx.value),
          RlpEncodeBytes(tx.data),
          EncodeAccessList(tx.access_list)};
}

Bytes Typed(TxType type, Bytes list) {
  Bytes out;
  out.reserve(list.size() + 1);
  out.push_back(uint8_t(type));
  out.insert(out.end(), list.begin(), list.end());
  return out;
}

// r and s as RLP integers: minimal big-endian.
Bytes EncodeWord(const crypto::Hash32& w) {
  auto first = std::find_if(w.begin(), w.end(), [](uint8_t b) { return b != 0; });
  return RlpEncodeBytes(std::span<const uint8_t>(first, w.end()));
}

Bytes SignedEncoding(const SignedTransaction& st) {
  std::vector<Bytes> fields = PayloadFields(st.tx);
  if (st.tx.type == TxType::kLegacy) {
    uint64_t v = st.tx.chain_id == 0 ? 27 + st.y_parity : 35 + 2 * st.tx.chain_id + st.y_parity;
    fields.push_back(RlpEncodeUint(v));
  } else {
    fields.push_back(RlpEncodeUint(st.y_parity));
  }
  fields.push_back(EncodeWord(st.r));
  fields.push_back(EncodeWord(st.s));
  Bytes list = RlpEncodeList(fields);
  return st.tx.type == TxType::kLegacy ? list : Typed(st.tx.type, std::move(list));
}

Result<std::optional<crypto::Address>> DecodeTo(const RlpItem& item) {
  if (!item.is_list && item.bytes.empty()) return std::optional<crypto::Address>();
  GRID_ASSIGN_OR_RETURN(crypto::Address a, item.AsAddress("to"));
  return std::optional<crypto::Address>(a);
}

Result<std::vector<AccessTuple>> DecodeAccessList(const RlpItem& item) {
  if (!item.is_list) return InvalidArgument("access list must be a list");
  std::vector<AccessTuple> out;
  for (const RlpItem& t : item.items) {
    if (!t.is_list || t.items.size() != 2 || !t.items[1].is_list) {
      return InvalidArgument("access list entry must be [address, [keys...]]");
    }
    AccessTuple tuple;
    GRID_ASSIGN_OR_RETURN(tuple.address, t.items[0].AsAddress("access list address"));
    for (const RlpItem& k : t.items[1].items) {
      GRID_ASSIGN_OR_RETURN(crypto::Hash32 key, k.AsHash32("access list storage key"));
      tuple.storage_keys.push_back(key);
    }
    out.push_back(std::move(tuple));
  }
  return out;
}

// An RLP integer of at most 32 bytes, left-padded to a word.
Result<crypto::Hash32> DecodeWord(const RlpItem& item, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(U256 v, item.AsU256(what));
  return v.ToBigEndian32();
}

// Recovers the sender and fills in raw/hash. The signature checks (r, s in
// range, low s, a recoverable point) are RecoverSigner's.
Status Finish(SignedTransaction& st, std::span<const uint8_t> raw) {
  crypto::Signature sig;
  std::copy(st.r.begin(), st.r.end(), sig.begin());
  std::copy(st.s.begin(), st.s.end(), sig.begin() + 32);
  sig[64] = st.y_parity;
  Result<crypto::Address> from = crypto::RecoverSigner(SigningHash(st.tx), sig);
  if (!from.ok()) return InvalidArgument("transaction signature: " + from.status().message());
  st.from = *from;
  st.raw.assign(raw.begin(), raw.end());
  st.hash = crypto::Keccak256(st.raw);
  return Status::Ok();
}

Result<SignedTransaction> DecodeLegacy(std::span<const uint8_t> raw) {
  GRID_ASSIGN_OR_RETURN(RlpItem list, RlpDecode(raw));
  if (!list.is_list || list.items.size() != 9) return InvalidArgument("legacy transaction must be a list of 9 fields");
  const auto& f = list.items;
  SignedTransaction st;
  Transaction& tx = st.tx;
  tx.type = TxType::kLegacy;
  GRID_ASSIGN_OR_RETURN(tx.nonce, f[0].AsUint64("nonce"));
  GRID_ASSIGN_OR_RETURN(tx.gas_price, f[1].AsU256("gasPrice"));
  GRID_ASSIGN_OR_RETURN(tx.gas_limit, f[2].AsUint64("gas"));
  GRID_ASSIGN_OR_RETURN(tx.to, DecodeTo(f[3]));
  GRID_ASSIGN_OR_RETURN(tx.value, f[4].AsU256("value"));
  if (f[5].is_list) return InvalidArgument("data must be a byte string");
  tx.data = f[5].bytes;
  GRID_ASSIGN_OR_RETURN(uint64_t v, f[6].AsUint64("v"));
  if (v == 27 || v == 28) {
    tx.chain_id = 0;
    st.y_parity = uint8_t(v - 27);
  } else if (v >= 37) {
    tx.chain_id = (v - 35) / 2;
    st.y_parity = uint8_t((v - 35) % 2);
  } else {
    return InvalidArgument("legacy transaction v " + std::to_string(v) + " is neither 27/28 nor EIP-155");
  }
  GRID_ASSIGN_OR_RETURN(st.r, DecodeWord(f[7], "r"));
  GRID_ASSIGN_OR_RETURN(st.s, DecodeWord(f[8], "s"));
  GRID_RETURN_IF_ERROR(Finish(st, raw));
  return st;
}

Result<SignedTransaction> Decode1559(std::span<const uint8_t> raw) {
  GRID_ASSIGN_OR_RETURN(RlpItem list, RlpDecode(raw.subspan(1)));
  if (!list.is_list || list.items.size() != 12) return InvalidArgument("EIP-1559 transaction must be a list of 12 fields");
  const auto& f = list.items;
  SignedTransaction st;
  Transaction& tx = st.tx;
  tx.type = TxType::kEip1559;
  GRID_ASSIGN_OR_RETURN(tx.chain_id, f[0].AsUint64("chainId"));
  GRID_ASSIGN_OR_RETURN(tx.nonce, f[1].AsUint64("nonce"));
  GRID_ASSIGN_OR_RETURN(tx.max_priority_fee_per_gas, f[2].AsU256("maxPriorityFeePerGas"));
  GRID_ASSIGN_OR_RETURN(tx.max_fee_per_gas, f[3].AsU256("maxFeePerGas"));
  GRID_ASSIGN_OR_RETURN(tx.gas_limit, f[4].AsUint64("gas"));
  GRID_ASSIGN_OR_RETURN(tx.to, DecodeTo(f[5]));
  GRID_ASSIGN_OR_RETURN(tx.value, f[6].AsU256("value"));
  if (f[7].is_list) return InvalidArgument("data must be a byte string");
  tx.data = f[7].bytes;
  GRID_ASSIGN_OR_RETURN(tx.access_list, DecodeAccessList(f[8]));
  GRID_ASSIGN_OR_RETURN(uint64_t parity, f[9].AsUint64("yParity"));
  if (parity > 1) return InvalidArgument("yParity must be 0 or 1");
  st.y_parity = uint8_t(parity);
  GRID_ASSIGN_OR_RETURN(st.r, DecodeWord(f[10], "r"));
  GRID_ASSIGN_OR_RETURN(st.s, DecodeWord(f[11], "s"));
  GRID_RETURN_IF_ERROR(Finish(st, raw));
  return st;
}

}  // namespace

Bytes UnsignedEncoding(const Transaction& tx) {
  std::vector<Bytes> fields = PayloadFields(tx);
  if (tx.type == TxType::kLegacy) {
    if (tx.chain_id != 0) {
      fields.push_back(RlpEncodeUint(tx.chain_id));
      fields.push_back(RlpEncodeUint(0));
      fields.push_back(RlpEncodeUint(0));
    }
    return RlpEncodeList(fields);
  }
  return Typed(tx.type, RlpEncodeList(fields));
}

crypto::Hash32 SigningHash(const Transaction& tx) { return crypto::Keccak256(UnsignedEncoding(tx)); }

Result<SignedTransaction> SignTransaction(const Transaction& tx, const crypto::PrivateKey& key) {
  if (tx.chain_id == 0) return InvalidArgument("refusing to sign a transaction without a chain id (replayable on any chain)");
  if (tx.chain_id > kMaxChainId) return InvalidArgument("chain id too large");
  if (tx.type == TxType::kLegacy) {
    if (!tx.max_fee_per_gas.IsZero() || !tx.max_priority_fee_per_gas.IsZero() || !tx.access_list.empty()) {
      return InvalidArgument("legacy transaction with EIP-1559 fields set");
    }
  } else if (tx.type == TxType::kEip1559) {
    if (!tx.gas_price.IsZero()) return InvalidArgument("EIP-1559 transaction with gasPrice set");
    if (tx.max_priority_fee_per_gas > tx.max_fee_per_gas) {
      return InvalidArgument("maxPriorityFeePerGas above maxFeePerGas");
    }
  } else {
    return InvalidArgument("unsupported transaction type");
  }
  GRID_ASSIGN_OR_RETURN(crypto::Signature sig, crypto::SignDigest(key, SigningHash(tx)));
  SignedTransaction st;
  st.tx = tx;
  std::copy(sig.begin(), sig.begin() + 32, st.r.begin());
  std::copy(sig.begin() + 32, sig.begin() + 64, st.s.begin());
  st.y_parity = uint8_t(sig[64] - 27);
  st.from = crypto::AddressOf(key);
  st.raw = SignedEncoding(st);
  st.hash = crypto::Keccak256(st.raw);
  return st;
}

Result<SignedTransaction> DecodeSignedTransaction(std::span<const uint8_t> raw) {
  if (raw.empty()) return InvalidArgument("empty transaction");
  if (raw[0] >= 0xc0) return DecodeLegacy(raw);
  if (raw[0] == uint8_t(TxType::kEip1559)) return Decode1559(raw);
  if (raw[0] <= 0x7f) return InvalidArgument("unsupported transaction type " + std::to_string(raw[0]));
  return InvalidArgument("not a transaction: first byte is neither a type nor an RLP list");
}

}  // namespace grid::chain
