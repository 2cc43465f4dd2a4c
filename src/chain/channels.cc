#include "chain/channels.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "crypto/hex.h"

namespace grid::chain::channels {

namespace {

using Word = std::array<uint8_t, 32>;

std::vector<uint8_t> Call(std::string_view signature) {
  Selector sel = FunctionSelector(signature);
  return std::vector<uint8_t>(sel.begin(), sel.end());
}
void Put(std::vector<uint8_t>& out, const Word& w) { out.insert(out.end(), w.begin(), w.end()); }
Word AddressWordOf(const crypto::Address& a) {
  Word w{};
  std::copy(a.bytes.begin(), a.bytes.end(), w.begin() + 12);
  return w;
}
Word UintWord(uint64_t v) { return U256(v).ToBigEndian32(); }
// A `bytes` argument's tail: its length word and the bytes, zero-padded to
// a whole number of words.
void PutBytesTail(std::vector<uint8_t>& out, std::span<const uint8_t> b) {
  Put(out, UintWord(b.size()));
  out.insert(out.end(), b.begin(), b.end());
  out.resize(out.size() + (32 - b.size() % 32) % 32, 0);
}
// (bytes32 id, uint256 amount, bytes sig): two head words, the offset of the
// tail (3 words), the tail.
std::vector<uint8_t> IdAmountSig(std::string_view signature, const ChannelId& id, const U256& amount,
                                 std::span<const uint8_t> sig) {
  std::vector<uint8_t> out = Call(signature);
  Put(out, id);
  Put(out, amount.ToBigEndian32());
  Put(out, UintWord(3 * 32));
  PutBytesTail(out, sig);
  return out;
}
std::vector<uint8_t> IdOnly(std::string_view signature, const ChannelId& id) {
  std::vector<uint8_t> out = Call(signature);
  Put(out, id);
  return out;
}

bool Zero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}
Result<crypto::Address> AddressAt(std::span<const uint8_t> w, std::string_view what) {
  if (!Zero(w.first(12))) return InvalidArgument(std::string(what) + ": address word has non-zero high bytes");
  crypto::Address a;
  std::copy(w.begin() + 12, w.end(), a.bytes.begin());
  return a;
}
// An unsigned integer of `bits` (<= 64) in a word: the high bytes must be 0.
Result<uint64_t> UintAt(std::span<const uint8_t> w, int bits, std::string_view what) {
  const size_t bytes = static_cast<size_t>(bits) / 8;
  if (!Zero(w.first(32 - bytes))) return InvalidArgument(std::string(what) + ": value exceeds uint" + std::to_string(bits));
  uint64_t v = 0;
  for (size_t i = 32 - bytes; i < 32; ++i) v = v << 8 | w[i];
  return v;
}
// A uint96 as a U256, its high 20 bytes zero.
Result<U256> Uint96At(std::span<const uint8_t> w, std::string_view what) {
  if (!Zero(w.first(20))) return InvalidArgument(std::string(what) + ": value exceeds uint96");
  return U256::FromBigEndian(w);
}

constexpr std::string_view kErrors[] = {
    "Reentrancy",          "ZeroAddress",     "ZeroAmount",    "AmountTooLarge",   "BadExpiry",
    "NoSuchChannel",       "NotRenter",       "NotProvider",   "CloseAlreadyStarted", "CloseNotStarted",
    "ChallengeWindowOpen", "ClosePending",    "NotExpired",    "OverClaim",        "StaleVoucher",
    "BadSignatureLength",  "BadSignatureV",   "HighS",         "BadSignature",     "TransferFailed",
    "DepositMismatch",
};

const std::vector<std::pair<Selector, std::string_view>>& ErrorTable() {
  static const auto table = [] {
    std::vector<std::pair<Selector, std::string_view>> t;
    for (std::string_view name : kErrors) t.emplace_back(FunctionSelector(std::string(name) + "()"), name);
    return t;
  }();
  return table;
}

}  // namespace

std::vector<uint8_t> EncodeApprove(const crypto::Address& spender, const U256& amount) {
  std::vector<uint8_t> out = Call("approve(address,uint256)");
  Put(out, AddressWordOf(spender));
  Put(out, amount.ToBigEndian32());
  return out;
}

std::vector<uint8_t> EncodeOpen(const crypto::Address& provider, const crypto::Address& token, const U256& amount,
                                uint64_t expiry_s, const crypto::Address& signer) {
  std::vector<uint8_t> out = Call("open(address,address,uint256,uint64,address)");
  Put(out, AddressWordOf(provider));
  Put(out, AddressWordOf(token));
  Put(out, amount.ToBigEndian32());
  Put(out, UintWord(expiry_s));
  Put(out, AddressWordOf(signer));
  return out;
}

std::vector<uint8_t> EncodeTopUp(const ChannelId& id, const U256& amount, uint64_t new_expiry_s) {
  std::vector<uint8_t> out = Call("topUp(bytes32,uint256,uint64)");
  Put(out, id);
  Put(out, amount.ToBigEndian32());
  Put(out, UintWord(new_expiry_s));
  return out;
}

std::vector<uint8_t> EncodeRedeem(const ChannelId& id, const U256& cumulative, std::span<const uint8_t> sig) {
  return IdAmountSig("redeem(bytes32,uint256,bytes)", id, cumulative, sig);
}
std::vector<uint8_t> EncodeClose(const ChannelId& id, const U256& cumulative, std::span<const uint8_t> sig) {
  return IdAmountSig("close(bytes32,uint256,bytes)", id, cumulative, sig);
}
std::vector<uint8_t> EncodeRefund(const ChannelId& id) { return IdOnly("refund(bytes32)", id); }
std::vector<uint8_t> EncodeStartClose(const ChannelId& id) { return IdOnly("startClose(bytes32)", id); }
std::vector<uint8_t> EncodeFinishClose(const ChannelId& id) { return IdOnly("finishClose(bytes32)", id); }
std::vector<uint8_t> EncodeChannelsCall(const ChannelId& id) { return IdOnly("channels(bytes32)", id); }

Result<ChannelState> DecodeChannelsResult(std::span<const uint8_t> data) {
  if (data.size() != 8 * 32)
    return InvalidArgument("channels(): expected 256 bytes of return data, got " + std::to_string(data.size()));
  auto word = [&](size_t i) { return data.subspan(i * 32, 32); };
  ChannelState c;
  GRID_ASSIGN_OR_RETURN(c.renter, AddressAt(word(0), "channels().renter"));
  GRID_ASSIGN_OR_RETURN(c.expiry_s, UintAt(word(1), 48, "channels().expiry"));
  GRID_ASSIGN_OR_RETURN(c.close_at_s, UintAt(word(2), 48, "channels().closeAt"));
  GRID_ASSIGN_OR_RETURN(c.provider, AddressAt(word(3), "channels().provider"));
  GRID_ASSIGN_OR_RETURN(c.deposit, Uint96At(word(4), "channels().deposit"));
  GRID_ASSIGN_OR_RETURN(c.token, AddressAt(word(5), "channels().token"));
  GRID_ASSIGN_OR_RETURN(c.paid, Uint96At(word(6), "channels().paid"));
  GRID_ASSIGN_OR_RETURN(c.signer, AddressAt(word(7), "channels().signer"));
  c.exists = c.renter != crypto::Address{};
  if (c.signer == crypto::Address{}) c.signer = c.renter;
  return c;
}

const crypto::Hash32& OpenedEventTopic() {
  static const crypto::Hash32 topic =
      EventTopic("Opened(bytes32,address,address,address,address,uint256,uint64)");
  return topic;
}

Result<OpenedEvent> DecodeOpenedLog(std::span<const crypto::Hash32> topics, std::span<const uint8_t> data) {
  if (topics.size() != 4) return InvalidArgument("Opened log must have 4 topics, got " + std::to_string(topics.size()));
  if (topics[0] != OpenedEventTopic()) return InvalidArgument("log is not an Opened event");
  if (data.size() != 4 * 32)
    return InvalidArgument("Opened log data must be 128 bytes, got " + std::to_string(data.size()));
  OpenedEvent e;
  e.id = topics[1];
  GRID_ASSIGN_OR_RETURN(e.renter, AddressAt(topics[2], "Opened renter"));
  GRID_ASSIGN_OR_RETURN(e.provider, AddressAt(topics[3], "Opened provider"));
  GRID_ASSIGN_OR_RETURN(e.token, AddressAt(data.subspan(0, 32), "Opened token"));
  GRID_ASSIGN_OR_RETURN(e.signer, AddressAt(data.subspan(32, 32), "Opened signer"));
  GRID_ASSIGN_OR_RETURN(e.deposit, U256::FromBigEndian(data.subspan(64, 32)));
  GRID_ASSIGN_OR_RETURN(e.expiry_s, UintAt(data.subspan(96, 32), 64, "Opened expiry"));
  return e;
}

const crypto::Hash32& ClosedEventTopic() {
  static const crypto::Hash32 topic = EventTopic("Closed(bytes32,uint256,uint256)");
  return topic;
}

Result<ClosedEvent> DecodeClosedLog(std::span<const crypto::Hash32> topics, std::span<const uint8_t> data) {
  if (topics.size() != 2) return InvalidArgument("Closed log must have 2 topics, got " + std::to_string(topics.size()));
  if (topics[0] != ClosedEventTopic()) return InvalidArgument("log is not a Closed event");
  if (data.size() != 2 * 32) return InvalidArgument("Closed log data must be 64 bytes, got " + std::to_string(data.size()));
  ClosedEvent e;
  e.id = topics[1];
  GRID_ASSIGN_OR_RETURN(e.paid, U256::FromBigEndian(data.subspan(0, 32)));
  GRID_ASSIGN_OR_RETURN(e.refund, U256::FromBigEndian(data.subspan(32, 32)));
  return e;
}

std::optional<std::string_view> ErrorName(std::span<const uint8_t> revert_data) {
  if (revert_data.size() != 4) return std::nullopt;  // all of them take no arguments
  for (const auto& [sel, name] : ErrorTable())
    if (std::equal(sel.begin(), sel.end(), revert_data.begin())) return name;
  return std::nullopt;
}

std::string NameCustomErrors(std::string message) {
  static constexpr std::string_view kMark = "custom error 0x";
  for (size_t at = message.find(kMark); at != std::string::npos; at = message.find(kMark, at + 1)) {
    const size_t hex = at + kMark.size();
    if (hex + 8 > message.size()) break;
    // Exactly four bytes of data: a longer one is some other error.
    if (hex + 8 < message.size() && std::isxdigit(static_cast<unsigned char>(message[hex + 8]))) continue;
    auto bytes = crypto::HexDecode(std::string_view(message).substr(hex, 8));
    if (!bytes.ok()) continue;
    if (auto name = ErrorName(*bytes)) message.replace(at, kMark.size() + 8, *name);
  }
  return message;
}

}  // namespace grid::chain::channels
