#include "crypto/keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <algorithm>
#include <cstring>

#include "crypto/hex.h"

namespace grid::crypto {

namespace {

// Half the secp256k1 group order, n/2, big-endian. EIP-2: s must be <= n/2.
constexpr std::array<uint8_t, 32> kHalfOrder = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
    0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

// The one context of the process. A function-local static is initialized
// exactly once even with concurrent first callers; afterwards libsecp256k1
// only reads it, which is thread-safe.
const secp256k1_context* Context() {
  static const secp256k1_context* ctx = [] {
    secp256k1_context* c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    // Blinding against side channels; a failed RAND_bytes just skips it.
    unsigned char seed[32];
    if (RAND_bytes(seed, sizeof(seed)) == 1 && !secp256k1_context_randomize(c, seed)) {
      // Cannot happen with a fresh context; blinding is an extra, so go on.
    }
    OPENSSL_cleanse(seed, sizeof(seed));
    return c;
  }();
  return ctx;
}

Address AddressFromPubkey(const secp256k1_pubkey& pubkey) {
  uint8_t buf[65];
  size_t len = sizeof(buf);
  secp256k1_ec_pubkey_serialize(Context(), buf, &len, &pubkey, SECP256K1_EC_UNCOMPRESSED);
  Hash32 h = Keccak256(std::span<const uint8_t>(buf + 1, 64));
  Address a;
  std::copy(h.begin() + 12, h.end(), a.bytes.begin());
  return a;
}

bool AllZero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

std::string_view TrimSpace(std::string_view s) {
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string Address::ToLowerHex() const { return HexEncode(bytes); }

std::string Address::ToChecksumHex() const {
  std::string lower = HexEncode(bytes, /*prefix=*/false);
  Hash32 h = Keccak256(lower);
  std::string out = "0x";
  for (size_t i = 0; i < lower.size(); ++i) {
    char c = lower[i];
    int nibble = (i % 2 == 0) ? (h[i / 2] >> 4) : (h[i / 2] & 0xf);
    if (c >= 'a' && c <= 'f' && nibble >= 8) c = static_cast<char>(c - 'a' + 'A');
    out += c;
  }
  return out;
}

Result<Address> ParseAddress(std::string_view text) {
  if (text.size() != 42 || text[0] != '0' || text[1] != 'x') {
    return InvalidArgument("address must be 0x followed by 40 hex digits");
  }
  Address a;
  Status s = HexDecodeExact(text, a.bytes, "address");
  if (!s.ok()) return s;
  std::string_view digits = text.substr(2);
  bool has_lower = std::any_of(digits.begin(), digits.end(),
                               [](char c) { return c >= 'a' && c <= 'f'; });
  bool has_upper = std::any_of(digits.begin(), digits.end(),
                               [](char c) { return c >= 'A' && c <= 'F'; });
  if (has_lower && has_upper && a.ToChecksumHex() != text) {
    return InvalidArgument("address has mixed case but fails the EIP-55 checksum");
  }
  return a;
}

bool IsChecksummedAddress(std::string_view text) {
  Result<Address> a = ParseAddress(text);
  return a.ok() && a->ToChecksumHex() == text;
}

Result<PrivateKey> PrivateKeyFromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != 32) return InvalidArgument("private key must be 32 bytes");
  PrivateKey k;
  std::copy(bytes.begin(), bytes.end(), k.bytes.begin());
  if (!secp256k1_ec_seckey_verify(Context(), k.bytes.data())) {
    OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
    return InvalidArgument("private key is out of range (zero or not below the curve order)");
  }
  return k;
}

Result<PrivateKey> GeneratePrivateKey() {
  // A random 256-bit value is invalid with probability ~2^-128; the bound
  // only guards against a broken RNG returning constants.
  for (int attempt = 0; attempt < 64; ++attempt) {
    PrivateKey k;
    if (RAND_bytes(k.bytes.data(), static_cast<int>(k.bytes.size())) != 1) {
      return Unavailable("OpenSSL RAND_bytes failed");
    }
    if (secp256k1_ec_seckey_verify(Context(), k.bytes.data())) return k;
  }
  return Internal("random generator keeps returning invalid private keys");
}

Result<PrivateKey> PrivateKeyFromHex(std::string_view hex) {
  std::array<uint8_t, 32> raw;
  Status s = HexDecodeExact(TrimSpace(hex), raw, "private key");
  if (!s.ok()) return s;
  Result<PrivateKey> k = PrivateKeyFromBytes(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return k;
}

Address AddressOf(const PrivateKey& key) {
  secp256k1_pubkey pubkey;
  // Cannot fail for a validated key; a default PrivateKey{} (zero) would, and
  // then we return the zero address rather than reading garbage.
  if (!secp256k1_ec_pubkey_create(Context(), &pubkey, key.bytes.data())) return Address{};
  return AddressFromPubkey(pubkey);
}

Result<Signature> SignDigest(const PrivateKey& key, const Hash32& digest) {
  secp256k1_ecdsa_recoverable_signature sig;
  // A null nonce function selects RFC 6979; libsecp256k1 always emits low-s.
  if (!secp256k1_ecdsa_sign_recoverable(Context(), &sig, digest.data(), key.bytes.data(),
                                        nullptr, nullptr)) {
    return InvalidArgument("signing failed: invalid private key");
  }
  Signature out;
  int recid = 0;
  secp256k1_ecdsa_recoverable_signature_serialize_compact(Context(), out.data(), &recid, &sig);
  out[64] = static_cast<uint8_t>(27 + recid);
  return out;
}

Result<Address> RecoverSigner(const Hash32& digest, std::span<const uint8_t> sig65) {
  if (sig65.size() != 65) {
    return InvalidArgument("signature must be 65 bytes (r, s, v), got " +
                           std::to_string(sig65.size()));
  }
  int v = sig65[64];
  int recid;
  if (v == 0 || v == 1) {
    recid = v;
  } else if (v == 27 || v == 28) {
    recid = v - 27;
  } else {
    return InvalidArgument("signature v must be 27 or 28 (or 0/1), got " + std::to_string(v));
  }
  std::span<const uint8_t> r = sig65.subspan(0, 32);
  std::span<const uint8_t> s = sig65.subspan(32, 32);
  if (AllZero(r) || AllZero(s)) return InvalidArgument("signature r or s is zero");
  if (std::lexicographical_compare(kHalfOrder.begin(), kHalfOrder.end(), s.begin(), s.end())) {
    return InvalidArgument("signature s is in the upper half of the curve order (EIP-2 forbids)");
  }
  secp256k1_ecdsa_recoverable_signature sig;
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(Context(), &sig, sig65.data(), recid)) {
    return InvalidArgument("signature r is not below the curve order");
  }
  secp256k1_pubkey pubkey;
  if (!secp256k1_ecdsa_recover(Context(), &pubkey, &sig, digest.data())) {
    return InvalidArgument("signature does not recover to any public key");
  }
  return AddressFromPubkey(pubkey);
}

Result<Signature> ParseSignature(std::string_view hex) {
  Signature sig;
  GRID_RETURN_IF_ERROR(HexDecodeExact(hex, sig, "signature"));
  return sig;
}

}  // namespace grid::crypto
