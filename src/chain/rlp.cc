#include "chain/rlp.h"

#include <algorithm>
#include <string>

namespace grid::chain {

namespace {

// Appends the header for a payload of `len` bytes; `short_base` is 0x80 for
// strings and 0xc0 for lists (the long forms are +55).
void AppendHeader(Bytes& out, size_t len, uint8_t short_base) {
  if (len <= 55) {
    out.push_back(uint8_t(short_base + len));
    return;
  }
  uint8_t len_bytes[8];
  int n = 0;
  for (size_t v = len; v != 0; v >>= 8) len_bytes[n++] = uint8_t(v & 0xff);
  out.push_back(uint8_t(short_base + 55 + n));
  for (int i = n - 1; i >= 0; --i) out.push_back(len_bytes[i]);
}

Status Err(size_t offset, const std::string& what) {
  return InvalidArgument("RLP: " + what + " at offset " + std::to_string(offset));
}

// Decodes one item starting at data[pos], which must end at or before `end`.
// On success sets pos past the item.
Result<RlpItem> DecodeAt(std::span<const uint8_t> data, size_t& pos, size_t end, int depth) {
  if (depth > kMaxRlpDepth) return Err(pos, "nesting deeper than " + std::to_string(kMaxRlpDepth));
  if (pos >= end) return Err(pos, "unexpected end of input");
  const size_t start = pos;
  const uint8_t b = data[pos++];
  if (b < 0x80) return RlpItem::String(Bytes{b});

  const bool is_list = b >= 0xc0;
  const uint8_t base = is_list ? 0xc0 : 0x80;
  size_t len;
  if (b - base <= 55) {
    len = b - base;
  } else {
    size_t n = b - base - 55;  // 1..8 length bytes
    if (n > end - pos) return Err(start, "truncated length");
    if (data[pos] == 0) return Err(start, "length with a leading zero");
    if (n > sizeof(size_t)) return Err(start, "length too large");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | data[pos++];
    if (len <= 55) return Err(start, "long form for a short payload");
  }
  if (len > end - pos) return Err(start, "payload of " + std::to_string(len) + " bytes runs past the end");
  const size_t payload_end = pos + len;

  if (!is_list) {
    if (len == 1 && data[pos] < 0x80) return Err(start, "single byte below 0x80 encoded as a string");
    RlpItem item = RlpItem::String(Bytes(data.begin() + pos, data.begin() + payload_end));
    pos = payload_end;
    return item;
  }
  RlpItem list = RlpItem::List({});
  while (pos < payload_end) {
    GRID_ASSIGN_OR_RETURN(RlpItem child, DecodeAt(data, pos, payload_end, depth + 1));
    list.items.push_back(std::move(child));
  }
  return list;
}

}  // namespace

Result<uint64_t> RlpItem::AsUint64(std::string_view what) const {
  if (is_list) return InvalidArgument(std::string(what) + ": expected an integer, got a list");
  if (bytes.size() > 8) return InvalidArgument(std::string(what) + ": integer does not fit in 64 bits");
  if (!bytes.empty() && bytes[0] == 0) return InvalidArgument(std::string(what) + ": integer with a leading zero");
  uint64_t v = 0;
  for (uint8_t x : bytes) v = (v << 8) | x;
  return v;
}

Result<U256> RlpItem::AsU256(std::string_view what) const {
  if (is_list) return InvalidArgument(std::string(what) + ": expected an integer, got a list");
  if (bytes.size() > 32) return InvalidArgument(std::string(what) + ": integer does not fit in 256 bits");
  if (!bytes.empty() && bytes[0] == 0) return InvalidArgument(std::string(what) + ": integer with a leading zero");
  return U256::FromBigEndian(bytes);
}

Result<crypto::Address> RlpItem::AsAddress(std::string_view what) const {
  if (is_list || bytes.size() != 20) return InvalidArgument(std::string(what) + ": expected a 20-byte address");
  crypto::Address a;
  std::copy(bytes.begin(), bytes.end(), a.bytes.begin());
  return a;
}

Result<crypto::Hash32> RlpItem::AsHash32(std::string_view what) const {
  if (is_list || bytes.size() != 32) return InvalidArgument(std::string(what) + ": expected 32 bytes");
  crypto::Hash32 h;
  std::copy(bytes.begin(), bytes.end(), h.begin());
  return h;
}

Bytes RlpEncodeBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() == 1 && bytes[0] < 0x80) return Bytes{bytes[0]};
  Bytes out;
  out.reserve(bytes.size() + 9);
  AppendHeader(out, bytes.size(), 0x80);
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

Bytes RlpEncodeUint(uint64_t v) { return RlpEncodeU256(U256(v)); }

Bytes RlpEncodeU256(const U256& v) { return RlpEncodeBytes(v.ToMinimalBigEndian()); }

Bytes RlpEncodeList(std::span<const Bytes> encoded_items) {
  size_t len = 0;
  for (const Bytes& e : encoded_items) len += e.size();
  Bytes out;
  out.reserve(len + 9);
  AppendHeader(out, len, 0xc0);
  for (const Bytes& e : encoded_items) out.insert(out.end(), e.begin(), e.end());
  return out;
}

Bytes RlpEncode(const RlpItem& item) {
  if (!item.is_list) return RlpEncodeBytes(item.bytes);
  std::vector<Bytes> parts;
  parts.reserve(item.items.size());
  for (const RlpItem& child : item.items) parts.push_back(RlpEncode(child));
  return RlpEncodeList(parts);
}

Result<RlpItem> RlpDecode(std::span<const uint8_t> data) {
  size_t pos = 0;
  GRID_ASSIGN_OR_RETURN(RlpItem item, DecodeAt(data, pos, data.size(), 0));
  if (pos != data.size()) return Err(pos, std::to_string(data.size() - pos) + " trailing bytes");
  return item;
}

}  // namespace grid::chain
