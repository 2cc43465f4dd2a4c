#include "chain/abi.h"

#include <algorithm>

#include "crypto/hex.h"

namespace grid::chain {

namespace {

constexpr Selector kErrorSelector = {0x08, 0xc3, 0x79, 0xa0};  // Error(string)
constexpr Selector kPanicSelector = {0x4e, 0x48, 0x7b, 0x71};  // Panic(uint256)
// An Error(string) message is shown to operators; anything longer is not a
// reason a contract meant to give.
constexpr size_t kMaxReasonBytes = 4096;

bool AllZero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

void AppendWord(std::vector<uint8_t>& out, const std::array<uint8_t, 32>& w) {
  out.insert(out.end(), w.begin(), w.end());
}

std::array<uint8_t, 32> AddressWord(const crypto::Address& a) {
  std::array<uint8_t, 32> w{};
  std::copy(a.bytes.begin(), a.bytes.end(), w.begin() + 12);
  return w;
}

Result<crypto::Address> AddressFromWord(std::span<const uint8_t> w, std::string_view what) {
  if (w.size() != 32) return InvalidArgument(std::string(what) + ": expected a 32-byte word");
  if (!AllZero(w.first(12))) return InvalidArgument(std::string(what) + ": address word has non-zero high bytes");
  crypto::Address a;
  std::copy(w.begin() + 12, w.end(), a.bytes.begin());
  return a;
}

bool HasSelector(std::span<const uint8_t> data, const Selector& s) {
  return data.size() >= 4 && std::equal(s.begin(), s.end(), data.begin());
}

}  // namespace

Selector FunctionSelector(std::string_view signature) {
  crypto::Hash32 h = crypto::Keccak256(signature);
  return {h[0], h[1], h[2], h[3]};
}

crypto::Hash32 EventTopic(std::string_view signature) { return crypto::Keccak256(signature); }

std::vector<uint8_t> EncodeTransferCall(const crypto::Address& to, const U256& amount) {
  static const Selector sel = FunctionSelector("transfer(address,uint256)");
  std::vector<uint8_t> out(sel.begin(), sel.end());
  AppendWord(out, AddressWord(to));
  AppendWord(out, amount.ToBigEndian32());
  return out;
}

std::vector<uint8_t> EncodeBalanceOfCall(const crypto::Address& owner) {
  static const Selector sel = FunctionSelector("balanceOf(address)");
  std::vector<uint8_t> out(sel.begin(), sel.end());
  AppendWord(out, AddressWord(owner));
  return out;
}

std::vector<uint8_t> EncodeDecimalsCall() {
  static const Selector sel = FunctionSelector("decimals()");
  return std::vector<uint8_t>(sel.begin(), sel.end());
}

Result<TransferCall> DecodeTransferCall(std::span<const uint8_t> calldata) {
  static const Selector sel = FunctionSelector("transfer(address,uint256)");
  if (!HasSelector(calldata, sel)) return InvalidArgument("calldata is not transfer(address,uint256)");
  if (calldata.size() != 4 + 64) return InvalidArgument("transfer calldata must be 68 bytes");
  TransferCall c;
  GRID_ASSIGN_OR_RETURN(c.to, AddressFromWord(calldata.subspan(4, 32), "transfer recipient"));
  GRID_ASSIGN_OR_RETURN(c.amount, U256::FromBigEndian(calldata.subspan(36, 32)));
  return c;
}

Result<U256> DecodeUint256(std::span<const uint8_t> data) {
  if (data.size() != 32) return InvalidArgument("uint256 return data must be 32 bytes, got " + std::to_string(data.size()));
  return U256::FromBigEndian(data);
}

Result<crypto::Address> DecodeAddress(std::span<const uint8_t> data) {
  return AddressFromWord(data, "address return data");
}

Result<bool> DecodeBool(std::span<const uint8_t> data) {
  if (data.size() != 32) return InvalidArgument("bool return data must be 32 bytes, got " + std::to_string(data.size()));
  if (!AllZero(data.first(31)) || data[31] > 1) return InvalidArgument("bool return data is neither 0 nor 1");
  return data[31] == 1;
}

Result<std::string> DecodeErrorString(std::span<const uint8_t> data) {
  if (!HasSelector(data, kErrorSelector)) return InvalidArgument("not Error(string) data");
  std::span<const uint8_t> body = data.subspan(4);
  // head: offset word; tail at offset: length word, then the bytes padded to
  // a multiple of 32 with zeros.
  if (body.size() < 64 || body.size() % 32 != 0) return InvalidArgument("Error(string) data has a bad length");
  GRID_ASSIGN_OR_RETURN(U256 offset_w, U256::FromBigEndian(body.first(32)));
  if (offset_w != U256(32)) return InvalidArgument("Error(string) offset is not 32");
  GRID_ASSIGN_OR_RETURN(U256 len_w, U256::FromBigEndian(body.subspan(32, 32)));
  auto len = len_w.ToUint64();
  if (!len || *len > kMaxReasonBytes) return InvalidArgument("Error(string) length too large");
  size_t padded = (size_t(*len) + 31) / 32 * 32;
  if (body.size() != 64 + padded) return InvalidArgument("Error(string) data length does not match its string");
  std::span<const uint8_t> str = body.subspan(64, size_t(*len));
  if (!AllZero(body.subspan(64 + size_t(*len)))) return InvalidArgument("Error(string) padding is not zero");
  return std::string(str.begin(), str.end());
}

RevertReason DecodeRevert(std::span<const uint8_t> data) {
  RevertReason r;
  r.raw.assign(data.begin(), data.end());
  if (data.empty()) return r;
  if (HasSelector(data, kErrorSelector)) {
    Result<std::string> msg = DecodeErrorString(data);
    if (msg.ok()) {
      r.kind = RevertReason::Kind::kError;
      r.message = std::move(msg).value();
      return r;
    }
  } else if (HasSelector(data, kPanicSelector) && data.size() == 36) {
    r.kind = RevertReason::Kind::kPanic;
    r.panic_code = U256::FromBigEndian(data.subspan(4)).value();
    return r;
  }
  r.kind = RevertReason::Kind::kCustom;
  return r;
}

std::string RevertReason::ToString() const {
  switch (kind) {
    case Kind::kEmpty: return "no reason given";
    case Kind::kError: {
      // Printable ASCII only: the reason ends up in logs and API errors.
      std::string clean;
      for (char c : message) clean += (c >= 0x20 && c < 0x7f) ? c : '?';
      return "Error(\"" + clean + "\")";
    }
    case Kind::kPanic: return "Panic(" + panic_code.ToQuantity() + ")";
    case Kind::kCustom: {
      std::span<const uint8_t> shown(raw.data(), std::min<size_t>(raw.size(), 68));
      return "custom error " + crypto::HexEncode(shown) + (raw.size() > 68 ? "..." : "");
    }
  }
  return "unknown";
}

const crypto::Hash32& TransferEventTopic() {
  static const crypto::Hash32 topic = EventTopic("Transfer(address,address,uint256)");
  return topic;
}

crypto::Hash32 AddressTopic(const crypto::Address& a) { return AddressWord(a); }

Result<TransferEvent> DecodeTransferLog(std::span<const crypto::Hash32> topics,
                                        std::span<const uint8_t> data) {
  if (topics.size() != 3) return InvalidArgument("Transfer log must have 3 topics, got " + std::to_string(topics.size()));
  if (topics[0] != TransferEventTopic()) return InvalidArgument("log is not a Transfer event");
  TransferEvent e;
  GRID_ASSIGN_OR_RETURN(e.from, AddressFromWord(topics[1], "Transfer from"));
  GRID_ASSIGN_OR_RETURN(e.to, AddressFromWord(topics[2], "Transfer to"));
  if (data.size() != 32) return InvalidArgument("Transfer log data must be 32 bytes, got " + std::to_string(data.size()));
  GRID_ASSIGN_OR_RETURN(e.value, U256::FromBigEndian(data));
  return e;
}

}  // namespace grid::chain
