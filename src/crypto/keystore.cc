#include "crypto/keystore.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "crypto/hex.h"
#include "crypto/keccak.h"

namespace grid::crypto {

namespace json = boost::json;

namespace {

constexpr uint64_t kMaxScryptMemory = uint64_t{1} << 30;  // n * r * 128 bytes
constexpr uint64_t kMaxScryptP = 64;
constexpr uint64_t kMaxPbkdf2Rounds = 10'000'000;
constexpr size_t kMaxDklen = 64;

// Wipes a byte buffer on scope exit: derived keys and plaintext secrets.
class Cleanser {
 public:
  Cleanser(void* p, size_t n) : p_(p), n_(n) {}
  ~Cleanser() { OPENSSL_cleanse(p_, n_); }
  Cleanser(const Cleanser&) = delete;
  Cleanser& operator=(const Cleanser&) = delete;

 private:
  void* p_;
  size_t n_;
};

std::string ErrnoText(int err) { return std::strerror(err); }

Result<std::string_view> GetString(const json::object& o, std::string_view key,
                                   std::string_view where) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    return InvalidArgument("key file: missing " + std::string(where) + std::string(key));
  }
  const json::string* s = v->if_string();
  if (s == nullptr) {
    return InvalidArgument("key file: " + std::string(where) + std::string(key) +
                           " must be a string");
  }
  return std::string_view(s->data(), s->size());
}

Result<uint64_t> GetUint(const json::object& o, std::string_view key, std::string_view where) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    return InvalidArgument("key file: missing " + std::string(where) + std::string(key));
  }
  if (const int64_t* i = v->if_int64(); i != nullptr && *i >= 0) return static_cast<uint64_t>(*i);
  if (const uint64_t* u = v->if_uint64(); u != nullptr) return *u;
  return InvalidArgument("key file: " + std::string(where) + std::string(key) +
                         " must be a non-negative integer");
}

Result<const json::object*> GetObject(const json::object& o, std::string_view key,
                                      std::string_view where) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_object()) {
    return InvalidArgument("key file: missing object " + std::string(where) + std::string(key));
  }
  return &v->get_object();
}

Result<std::vector<uint8_t>> GetHex(const json::object& o, std::string_view key,
                                    std::string_view where) {
  GRID_ASSIGN_OR_RETURN(std::string_view text, GetString(o, key, where));
  Result<std::vector<uint8_t>> bytes = HexDecode(text);
  if (!bytes.ok()) {
    return InvalidArgument("key file: " + std::string(where) + std::string(key) + ": " +
                           bytes.status().message());
  }
  return bytes;
}

bool IsPowerOfTwo(uint64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

Status CheckScryptParams(uint64_t n, uint64_t r, uint64_t p) {
  if (!IsPowerOfTwo(n)) return InvalidArgument("scrypt n must be a power of two >= 2");
  if (r == 0 || p == 0) return InvalidArgument("scrypt r and p must be positive");
  if (p > kMaxScryptP) return InvalidArgument("scrypt p is too large");
  if (r > kMaxScryptMemory / 128 || n > kMaxScryptMemory / (128 * r)) {
    return InvalidArgument("scrypt parameters need more than 1 GiB of memory");
  }
  return Status::Ok();
}

Status Scrypt(std::string_view password, std::span<const uint8_t> salt, uint64_t n, uint64_t r,
              uint64_t p, std::span<uint8_t> out) {
  GRID_RETURN_IF_ERROR(CheckScryptParams(n, r, p));
  // OpenSSL needs 128*r*(n+2) bytes for V plus 128*r*p for B.
  uint64_t maxmem = 128 * r * (n + 2) + 128 * r * p + (uint64_t{1} << 20);
  if (EVP_PBE_scrypt(password.data(), password.size(), salt.data(), salt.size(), n, r, p, maxmem,
                     out.data(), out.size()) != 1) {
    return Unavailable("scrypt key derivation failed (out of memory?)");
  }
  return Status::Ok();
}

Status Aes128Ctr(std::span<const uint8_t> key16, std::span<const uint8_t> iv16,
                 std::span<const uint8_t> in, std::span<uint8_t> out) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  int len = 0;
  int fin = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_ctr(), nullptr, key16.data(), iv16.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1 ||
      static_cast<size_t>(len + fin) != in.size()) {
    return Internal("aes-128-ctr failed");
  }
  return Status::Ok();
}

Hash32 Mac(std::span<const uint8_t> dk, std::span<const uint8_t> ciphertext) {
  Keccak256Hasher h;
  h.Update(dk.subspan(16, 16));
  h.Update(ciphertext);
  return h.Finish();
}

Result<PrivateKey> DecryptParsed(const json::value& root, std::string_view password) {
  const json::object* top = root.if_object();
  if (top == nullptr) return InvalidArgument("key file: not a JSON object");
  GRID_ASSIGN_OR_RETURN(uint64_t version, GetUint(*top, "version", ""));
  if (version != 3) {
    return InvalidArgument("key file: unsupported version " + std::to_string(version) +
                           " (only 3)");
  }
  const json::value* cv = top->if_contains("crypto");
  if (cv == nullptr) cv = top->if_contains("Crypto");
  if (cv == nullptr || !cv->is_object()) return InvalidArgument("key file: missing crypto object");
  const json::object& crypto = cv->get_object();

  GRID_ASSIGN_OR_RETURN(std::string_view cipher, GetString(crypto, "cipher", "crypto."));
  if (cipher != "aes-128-ctr") {
    return InvalidArgument("key file: unsupported cipher \"" + std::string(cipher) +
                           "\" (only aes-128-ctr)");
  }
  GRID_ASSIGN_OR_RETURN(const json::object* cparams,
                        GetObject(crypto, "cipherparams", "crypto."));
  GRID_ASSIGN_OR_RETURN(std::vector<uint8_t> iv, GetHex(*cparams, "iv", "crypto.cipherparams."));
  if (iv.size() != 16) return InvalidArgument("key file: iv must be 16 bytes");
  GRID_ASSIGN_OR_RETURN(std::vector<uint8_t> ciphertext,
                        GetHex(crypto, "ciphertext", "crypto."));
  if (ciphertext.size() != 32) return InvalidArgument("key file: ciphertext must be 32 bytes");
  GRID_ASSIGN_OR_RETURN(std::vector<uint8_t> mac, GetHex(crypto, "mac", "crypto."));
  if (mac.size() != 32) return InvalidArgument("key file: mac must be 32 bytes");

  GRID_ASSIGN_OR_RETURN(std::string_view kdf, GetString(crypto, "kdf", "crypto."));
  GRID_ASSIGN_OR_RETURN(const json::object* kp, GetObject(crypto, "kdfparams", "crypto."));
  constexpr std::string_view kWhere = "crypto.kdfparams.";
  GRID_ASSIGN_OR_RETURN(std::vector<uint8_t> salt, GetHex(*kp, "salt", kWhere));
  GRID_ASSIGN_OR_RETURN(uint64_t dklen, GetUint(*kp, "dklen", kWhere));
  if (dklen < 32 || dklen > kMaxDklen) return InvalidArgument("key file: dklen must be 32..64");

  std::array<uint8_t, kMaxDklen> dk_buf{};
  Cleanser wipe_dk(dk_buf.data(), dk_buf.size());
  std::span<uint8_t> dk(dk_buf.data(), dklen);
  if (kdf == "scrypt") {
    GRID_ASSIGN_OR_RETURN(uint64_t n, GetUint(*kp, "n", kWhere));
    GRID_ASSIGN_OR_RETURN(uint64_t r, GetUint(*kp, "r", kWhere));
    GRID_ASSIGN_OR_RETURN(uint64_t p, GetUint(*kp, "p", kWhere));
    Status s = CheckScryptParams(n, r, p);
    if (!s.ok()) return InvalidArgument("key file: " + s.message());
    GRID_RETURN_IF_ERROR(Scrypt(password, salt, n, r, p, dk));
  } else if (kdf == "pbkdf2") {
    GRID_ASSIGN_OR_RETURN(std::string_view prf, GetString(*kp, "prf", kWhere));
    if (prf != "hmac-sha256") {
      return InvalidArgument("key file: unsupported pbkdf2 prf \"" + std::string(prf) +
                             "\" (only hmac-sha256)");
    }
    GRID_ASSIGN_OR_RETURN(uint64_t c, GetUint(*kp, "c", kWhere));
    if (c == 0 || c > kMaxPbkdf2Rounds) {
      return InvalidArgument("key file: pbkdf2 c must be 1..10000000");
    }
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                          static_cast<int>(salt.size()), static_cast<int>(c), EVP_sha256(),
                          static_cast<int>(dk.size()), dk.data()) != 1) {
      return Internal("pbkdf2 key derivation failed");
    }
  } else {
    return InvalidArgument("key file: unsupported kdf \"" + std::string(kdf) +
                           "\" (scrypt or pbkdf2)");
  }

  Hash32 want = Mac(dk, ciphertext);
  if (CRYPTO_memcmp(want.data(), mac.data(), want.size()) != 0) {
    return Unauthenticated("wrong password or corrupted key file");
  }
  std::array<uint8_t, 32> plain{};
  Cleanser wipe_plain(plain.data(), plain.size());
  GRID_RETURN_IF_ERROR(Aes128Ctr(dk.subspan(0, 16), iv, ciphertext, plain));
  Result<PrivateKey> key = PrivateKeyFromBytes(plain);
  if (!key.ok()) return InvalidArgument("key file: decrypted key is not a valid secp256k1 key");

  if (const json::value* av = top->if_contains("address"); av != nullptr && !av->is_null()) {
    const json::string* as = av->if_string();
    if (as == nullptr) return InvalidArgument("key file: address must be a string");
    std::string text(as->data(), as->size());
    if (text.size() == 40) text = "0x" + text;
    Result<Address> stated = ParseAddress(text);
    if (!stated.ok()) return InvalidArgument("key file: bad address field: " +
                                             stated.status().message());
    if (*stated != AddressOf(*key)) {
      return InvalidArgument("key file: the address field does not match the decrypted key");
    }
  }
  return key;
}

std::string NewUuidV4(const std::array<uint8_t, 16>& random) {
  std::array<uint8_t, 16> b = random;
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(b, /*prefix=*/false);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

}  // namespace

Result<PrivateKey> DecryptKeystore(std::string_view json_text, std::string_view password) {
  try {
    boost::system::error_code ec;
    json::value root = json::parse(json_text, ec);
    if (ec) return InvalidArgument("key file: invalid JSON: " + ec.message());
    return DecryptParsed(root, password);
  } catch (const std::exception& e) {
    return Internal(std::string("key file: unexpected error: ") + e.what());
  }
}

Result<std::string> EncryptKeystore(const PrivateKey& key, std::string_view password,
                                    uint64_t scrypt_n) {
  constexpr uint64_t kR = 8;
  constexpr uint64_t kP = 1;
  GRID_RETURN_IF_ERROR(CheckScryptParams(scrypt_n, kR, kP));
  Result<PrivateKey> valid = PrivateKeyFromBytes(key.bytes);
  if (!valid.ok()) return valid.status();

  std::array<uint8_t, 32> salt;
  std::array<uint8_t, 16> iv;
  std::array<uint8_t, 16> uuid;
  if (RAND_bytes(salt.data(), salt.size()) != 1 || RAND_bytes(iv.data(), iv.size()) != 1 ||
      RAND_bytes(uuid.data(), uuid.size()) != 1) {
    return Unavailable("OpenSSL RAND_bytes failed");
  }
  std::array<uint8_t, 32> dk{};
  Cleanser wipe_dk(dk.data(), dk.size());
  GRID_RETURN_IF_ERROR(Scrypt(password, salt, scrypt_n, kR, kP, dk));
  std::array<uint8_t, 32> ciphertext{};
  GRID_RETURN_IF_ERROR(Aes128Ctr(std::span(dk).subspan(0, 16), iv, key.bytes, ciphertext));
  Hash32 mac = Mac(dk, ciphertext);

  try {
    json::object kdfparams;
    kdfparams["dklen"] = 32;
    kdfparams["n"] = scrypt_n;
    kdfparams["p"] = kP;
    kdfparams["r"] = kR;
    kdfparams["salt"] = HexEncode(salt, false);
    json::object crypto;
    crypto["cipher"] = "aes-128-ctr";
    crypto["ciphertext"] = HexEncode(ciphertext, false);
    crypto["cipherparams"] = json::object{{"iv", HexEncode(iv, false)}};
    crypto["kdf"] = "scrypt";
    crypto["kdfparams"] = std::move(kdfparams);
    crypto["mac"] = HexEncode(mac, false);
    json::object top;
    top["address"] = HexEncode(AddressOf(key).bytes, false);
    top["crypto"] = std::move(crypto);
    top["id"] = NewUuidV4(uuid);
    top["version"] = 3;
    return json::serialize(top);
  } catch (const std::exception& e) {
    return Internal(std::string("key file: unexpected error: ") + e.what());
  }
}

Status WriteKeyFile(const std::string& path, std::string_view contents) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) {
      return Conflict("key file " + path + " already exists; refusing to overwrite it");
    }
    return Unavailable("cannot create key file " + path + ": " + ErrnoText(err));
  }
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return Unavailable("cannot write key file " + path + ": " + what + ": " + ErrnoText(err));
  };
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return Unavailable("cannot write key file " + path + ": close: " + ErrnoText(err));
  }
  // Make the new directory entry durable too (best effort: some file systems
  // refuse fsync on directories).
  std::string dir = ".";
  if (size_t slash = path.rfind('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Result<std::string> ReadFileToString(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return NotFound("no such file: " + path);
    return Unavailable("cannot open " + path + ": " + ErrnoText(err));
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Unavailable("cannot read " + path + ": " + ErrnoText(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace grid::crypto
