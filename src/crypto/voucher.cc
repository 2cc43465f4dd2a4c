#include "crypto/voucher.h"

#include <array>
#include <charconv>
#include <string>

#include "crypto/eip712.h"
#include "crypto/hex.h"

namespace grid::crypto {

namespace {

using Word = std::array<uint8_t, 32>;

Word EncodeUint(uint64_t v) { return Eip712Uint(v); }

Word EncodeAddress(const Address& a) {
  Word w{};
  std::copy(a.bytes.begin(), a.bytes.end(), w.begin() + 12);
  return w;
}

// The constant hashes, computed once (thread-safe static initialization).
struct Constants {
  Hash32 domain_type = Keccak256(kVoucherDomainType);
  Hash32 name = Keccak256(kVoucherDomainName);
  Hash32 version = Keccak256(kVoucherDomainVersion);
  Hash32 voucher_type = Keccak256(kVoucherType);
};
const Constants& K() {
  static const Constants k;
  return k;
}

// ---------------------------------------------------------------- the wire decoder

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  void SkipSpace() {
    while (pos_ < s_.size() && IsJsonSpace(s_[pos_])) ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }
  // A JSON string without escapes or control characters; the bytes between
  // the quotes.
  Result<std::string_view> String(std::string_view what) {
    SkipSpace();
    if (pos_ >= s_.size() || s_[pos_] != '"') return Error(std::string(what) + ": a string expected");
    size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '\\') return Error(std::string(what) + ": escapes are not allowed");
      if (c < 0x20) return Error(std::string(what) + ": control character in a string");
      ++pos_;
    }
    if (pos_ >= s_.size()) return Error(std::string(what) + ": unterminated string");
    return s_.substr(start, pos_++ - start);
  }
  Status Error(const std::string& message) const {
    return InvalidArgument("voucher: " + message + " (at byte " + std::to_string(pos_) + ")");
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

Status ParseHexField(std::string_view text, std::span<uint8_t> out, std::string_view what) {
  if (text.size() < 2 || text[0] != '0' || text[1] != 'x') {
    return InvalidArgument("voucher: " + std::string(what) + " must start with 0x");
  }
  Status s = HexDecodeExact(text, out, what);
  if (!s.ok()) return InvalidArgument("voucher: " + s.message());
  return Status::Ok();
}

Result<uint64_t> ParseCumulative(std::string_view text) {
  if (text.empty()) return InvalidArgument("voucher: cumulative is empty");
  for (char c : text) {
    if (c < '0' || c > '9') {
      return InvalidArgument("voucher: cumulative must be a decimal integer of base units, like \"1500000\"");
    }
  }
  if (text.size() > 1 && text[0] == '0') return InvalidArgument("voucher: cumulative has a leading zero");
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgument("voucher: cumulative is larger than 18446744073709551615");
  }
  return v;
}

}  // namespace

Hash32 VoucherDomainSeparator(uint64_t chain_id, const Address& contract) {
  const Constants& k = K();
  Keccak256Hasher h;
  h.Update(k.domain_type).Update(k.name).Update(k.version);
  h.Update(EncodeUint(chain_id)).Update(EncodeAddress(contract));
  return h.Finish();
}

Hash32 VoucherStructHash(const Hash32& channel_id, uint64_t cumulative) {
  // 96 bytes in one buffer: one Keccak call, no allocation.
  std::array<uint8_t, 96> buf{};
  const Hash32& type = K().voucher_type;
  std::copy(type.begin(), type.end(), buf.begin());
  std::copy(channel_id.begin(), channel_id.end(), buf.begin() + 32);
  Word c = EncodeUint(cumulative);
  std::copy(c.begin(), c.end(), buf.begin() + 64);
  return Keccak256(buf);
}

Hash32 VoucherDigest(const Hash32& domain_separator, const Hash32& channel_id, uint64_t cumulative) {
  std::array<uint8_t, 66> buf{};
  buf[0] = 0x19;
  buf[1] = 0x01;
  std::copy(domain_separator.begin(), domain_separator.end(), buf.begin() + 2);
  Hash32 s = VoucherStructHash(channel_id, cumulative);
  std::copy(s.begin(), s.end(), buf.begin() + 34);
  return Keccak256(buf);
}

Hash32 VoucherDigest(uint64_t chain_id, const Address& contract, const Hash32& channel_id,
                     uint64_t cumulative) {
  return VoucherDigest(VoucherDomainSeparator(chain_id, contract), channel_id, cumulative);
}

Result<Signature> SignVoucher(const PrivateKey& key, uint64_t chain_id, const Address& contract,
                              const Hash32& channel_id, uint64_t cumulative) {
  return SignDigest(key, VoucherDigest(chain_id, contract, channel_id, cumulative));
}

Status VerifyVoucher(const Hash32& domain_separator, const Hash32& channel_id, uint64_t cumulative,
                     std::span<const uint8_t> sig, const Address& expected_signer) {
  if (sig.size() != 65) {
    return InvalidArgument("voucher signature must be 65 bytes (r, s, v), got " + std::to_string(sig.size()));
  }
  // RecoverSigner also takes v = 0/1; the contract does not, so neither do we.
  if (sig[64] != 27 && sig[64] != 28) {
    return InvalidArgument("voucher signature v must be 27 or 28, got " + std::to_string(sig[64]));
  }
  Result<Address> who = RecoverSigner(VoucherDigest(domain_separator, channel_id, cumulative), sig);
  if (!who.ok()) return InvalidArgument("voucher " + who.status().message());
  if (*who != expected_signer) {
    return Unauthenticated("voucher is signed by " + who->ToChecksumHex() + ", not by the channel's signer " +
                           expected_signer.ToChecksumHex());
  }
  return Status::Ok();
}

Status VerifyVoucher(uint64_t chain_id, const Address& contract, const Hash32& channel_id,
                     uint64_t cumulative, std::span<const uint8_t> sig, const Address& expected_signer) {
  return VerifyVoucher(VoucherDomainSeparator(chain_id, contract), channel_id, cumulative, sig, expected_signer);
}

Status VerifyVoucher(uint64_t chain_id, const Address& contract, const Voucher& voucher,
                     const Address& expected_signer) {
  return VerifyVoucher(chain_id, contract, voucher.channel_id, voucher.cumulative, voucher.signature,
                       expected_signer);
}

Result<Voucher> DecodeVoucher(std::string_view json) {
  if (json.size() > kMaxVoucherJsonBytes) {
    return InvalidArgument("voucher: more than " + std::to_string(kMaxVoucherJsonBytes) + " bytes");
  }
  Reader r(json);
  if (!r.Eat('{')) return r.Error("a JSON object expected");
  Voucher v;
  bool have_id = false, have_cumulative = false, have_sig = false;
  for (int field = 0; field < 3; ++field) {
    if (field > 0 && !r.Eat(',')) return r.Error("',' expected (channel_id, cumulative and signature are all required)");
    GRID_ASSIGN_OR_RETURN(std::string_view key, r.String("key"));
    // Only the known names are echoed in messages (never outside bytes).
    bool known = key == "channel_id" || key == "cumulative" || key == "signature";
    if (!known) return r.Error("unknown field (channel_id, cumulative and signature expected)");
    if (!r.Eat(':')) return r.Error("':' expected");
    GRID_ASSIGN_OR_RETURN(std::string_view value, r.String(key));
    bool* seen = nullptr;
    Status s;
    if (key == "channel_id") {
      seen = &have_id;
      s = ParseHexField(value, v.channel_id, "channel_id");
    } else if (key == "cumulative") {
      seen = &have_cumulative;
      Result<uint64_t> c = ParseCumulative(value);
      if (c.ok()) v.cumulative = *c;
      else s = c.status();
    } else {
      seen = &have_sig;
      s = ParseHexField(value, v.signature, "signature");
    }
    if (*seen) return r.Error(std::string(key) + " given twice");
    *seen = true;
    if (!s.ok()) return s;
  }
  if (!r.Eat('}')) return r.Error("'}' expected after the three fields");
  if (!r.AtEnd()) return r.Error("trailing characters after the object");
  return v;
}

std::string EncodeVoucher(const Voucher& voucher) {
  std::string out;
  out.reserve(64 + 66 + 20 + 132 + 8);
  out += "{\"channel_id\":\"";
  out += HexEncode(voucher.channel_id);
  out += "\",\"cumulative\":\"";
  out += std::to_string(voucher.cumulative);
  out += "\",\"signature\":\"";
  out += HexEncode(voucher.signature);
  out += "\"}";
  return out;
}

}  // namespace grid::crypto
