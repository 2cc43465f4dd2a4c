// Web3 Secret Storage v3 key files, the format geth, ethers.js and MetaMask
// write ("UTC--...--address" JSON files).
//
// Contract:
// - DecryptKeystore reads version 3 files with kdf "scrypt" or "pbkdf2"
//   (prf "hmac-sha256") and cipher "aes-128-ctr"; the "crypto" object may be
//   spelled "Crypto" (ethers, old geth). The MAC keccak256(dk[16..32] ‖
//   ciphertext) is checked before decryption; a mismatch is Unauthenticated
//   "wrong password or corrupted key file". An "address" field, when present,
//   must match the decrypted key. KDF cost parameters from the file are
//   bounded (scrypt: n*r*128 <= 1 GiB; pbkdf2: c <= 10,000,000) so a hostile
//   file cannot exhaust memory. Malformed files are InvalidArgument.
// - The password is used as raw bytes. ethers.js NFKC-normalizes passwords
//   first; for ASCII and most text this is the same, so pass an NFKC string
//   for full interop.
// - EncryptKeystore writes version 3, a random UUID v4 id, random salt (32
//   bytes) and iv (16 bytes), scrypt with the given n, r = 8, p = 1, dklen 32,
//   and the address in lowercase hex without "0x". Interop checked by hand:
//   files written here with n = 131072 (non-ASCII password) and n = 1024
//   open in ethers 6.17.0 Wallet.fromEncryptedJson / decryptKeystoreJson
//   (`node tests/fixtures/crypto/make_vectors.mjs --check FILE PASSWORD`)
//   and give back the same key; an automated CLI-level test is to follow.
// - WriteKeyFile creates a new file with mode 0600 and fsyncs it; it never
//   overwrites an existing file.
// Thread safety: all functions are safe to call concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "crypto/keys.h"

namespace grid::crypto {

// The scrypt cost ethers.js and geth ("light" is 4096) use by default.
inline constexpr uint64_t kDefaultScryptN = 131072;

Result<PrivateKey> DecryptKeystore(std::string_view json, std::string_view password);

// n must be a power of two >= 2 (and within the bound above).
Result<std::string> EncryptKeystore(const PrivateKey& key, std::string_view password,
                                    uint64_t scrypt_n = kDefaultScryptN);

// Creates `path` (O_CREAT|O_EXCL, mode 0600), writes `contents`, fsyncs the
// file and its directory. Conflict when the file already exists; Unavailable
// on other I/O errors (and the partial file is removed).
Status WriteKeyFile(const std::string& path, std::string_view contents);

// The whole file. NotFound when it does not exist, Unavailable on other
// errors.
Result<std::string> ReadFileToString(const std::string& path);

}  // namespace grid::crypto
