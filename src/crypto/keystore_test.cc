#include "crypto/keystore.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <functional>
#include <string>

#include "crypto/hex.h"

namespace grid::crypto {
namespace {

// tests/fixtures/crypto/ found from this file's path (CMake compiles with
// absolute paths), or from $GRID_SOURCE_DIR.
std::string FixtureDir() {
  if (const char* env = std::getenv("GRID_SOURCE_DIR")) {
    return std::string(env) + "/tests/fixtures/crypto/";
  }
  std::string here = __FILE__;
  size_t pos = here.rfind("src/crypto/");
  return here.substr(0, pos) + "tests/fixtures/crypto/";
}

std::string Fixture(const std::string& name) {
  auto text = ReadFileToString(FixtureDir() + name);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : "";
}

// Made by ethers.js (see make_vectors.mjs and expected.json beside them).
struct FixtureCase {
  const char* file;
  const char* password;
  const char* address;
  const char* key;
};
const FixtureCase kFixtures[] = {
    {"ethers_scrypt_n1024.json", "correct horse", "0x8fD13db8FfC3766657B0d5169D7565A29Ef80F65",
     "0xa5c78456acfd028c6108dac130dc3943643bdfb1c7bd3aa348b4d397a75ae9e2"},
    // ethers' default scrypt N=131072 (128 MiB), a non-ASCII password.
    {"ethers_scrypt_default.json", "grid-\xe9\xbb\x98\xe8\xae\xa4-pw",
     "0x544EC8412FA81dFcE65401993B195aD67946BcEC",
     "0x1dcadcda85fe2eb6769c5f4c68f26e2edcc3641d8a9c7138a3292338e7de0cf6"},
    {"pbkdf2_c1024.json", "pbkdf2 pass", "0xA7DAEf0DC8A95fce668a923cF1894Fd7695A8321",
     "0x52967016748e07895f62067bb045df72fa1ffc9ac51b4007ec3bfa7f41906610"},
};

TEST(KeystoreTest, DecryptsEthersFixtures) {
  for (const auto& f : kFixtures) {
    auto key = DecryptKeystore(Fixture(f.file), f.password);
    ASSERT_TRUE(key.ok()) << f.file << ": " << key.status().ToString();
    EXPECT_EQ(AddressOf(*key).ToChecksumHex(), f.address) << f.file;
    EXPECT_EQ(HexEncode(key->bytes), f.key) << f.file;
  }
}

TEST(KeystoreTest, WrongPassword) {
  auto key = DecryptKeystore(Fixture("ethers_scrypt_n1024.json"), "correct horse!");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(key.status().message(), "wrong password or corrupted key file");
  EXPECT_EQ(DecryptKeystore(Fixture("pbkdf2_c1024.json"), "").status().code(),
            Code::kUnauthenticated);
}

TEST(KeystoreTest, RoundTrip) {
  PrivateKey key = GeneratePrivateKey().value();
  auto json = EncryptKeystore(key, "s3cret", 1024);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  auto back = DecryptKeystore(*json, "s3cret");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->bytes, key.bytes);
  EXPECT_EQ(DecryptKeystore(*json, "s3cret ").status().code(), Code::kUnauthenticated);

  boost::json::object o = boost::json::parse(*json).as_object();
  EXPECT_EQ(o.at("version").as_int64(), 3);
  EXPECT_EQ(o.at("address").as_string(), AddressOf(key).ToLowerHex().substr(2));
  std::string id(o.at("id").as_string());
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '4');  // UUID v4
  EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b');
  const auto& crypto = o.at("crypto").as_object();
  EXPECT_EQ(crypto.at("kdf").as_string(), "scrypt");
  EXPECT_EQ(crypto.at("kdfparams").as_object().at("n").as_int64(), 1024);
  EXPECT_EQ(crypto.at("kdfparams").as_object().at("r").as_int64(), 8);
  EXPECT_EQ(crypto.at("kdfparams").as_object().at("salt").as_string().size(), 64u);
  EXPECT_EQ(crypto.at("cipherparams").as_object().at("iv").as_string().size(), 32u);

  // Two encryptions of the same key differ (fresh salt and iv).
  EXPECT_NE(*json, EncryptKeystore(key, "s3cret", 1024).value());
  EXPECT_FALSE(EncryptKeystore(key, "x", 1000).ok());  // not a power of two
}

// Mutates one field of a valid file and expects InvalidArgument naming it.
void ExpectRejected(const std::function<void(boost::json::object&)>& mutate,
                    const std::string& needle) {
  boost::json::object o = boost::json::parse(Fixture("ethers_scrypt_n1024.json")).as_object();
  mutate(o);
  auto key = DecryptKeystore(boost::json::serialize(o), "correct horse");
  ASSERT_FALSE(key.ok()) << needle;
  EXPECT_EQ(key.status().code(), Code::kInvalidArgument) << key.status().ToString();
  EXPECT_NE(key.status().message().find(needle), std::string::npos) << key.status().ToString();
}

TEST(KeystoreTest, RejectsMalformedFiles) {
  auto crypto = [](boost::json::object& o) -> boost::json::object& {
    return o.at("Crypto").as_object();
  };
  ExpectRejected([](auto& o) { o["address"] = "0000000000000000000000000000000000000001"; },
                 "does not match");
  ExpectRejected([](auto& o) { o["version"] = 2; }, "version");
  ExpectRejected([&](auto& o) { crypto(o)["kdf"] = "argon2"; }, "unsupported kdf");
  ExpectRejected([&](auto& o) { crypto(o)["cipher"] = "aes-128-cbc"; }, "cipher");
  ExpectRejected([&](auto& o) { crypto(o)["mac"] = "00"; }, "mac");
  ExpectRejected([&](auto& o) { crypto(o)["ciphertext"] = "zz"; }, "ciphertext");
  ExpectRejected([&](auto& o) { crypto(o).at("kdfparams").as_object()["n"] = 1 << 30; },
                 "1 GiB");
  ExpectRejected([&](auto& o) { crypto(o).at("kdfparams").as_object()["n"] = 1000; },
                 "power of two");
  ExpectRejected([&](auto& o) { crypto(o).at("kdfparams").as_object()["n"] = -1; },
                 "non-negative integer");
  ExpectRejected([&](auto& o) { crypto(o).at("kdfparams").as_object().erase("salt"); },
                 "salt");
  ExpectRejected([](auto& o) { o.erase("Crypto"); }, "crypto");
  EXPECT_EQ(DecryptKeystore("{not json", "x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(DecryptKeystore("[]", "x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(DecryptKeystore("", "x").status().code(), Code::kInvalidArgument);
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grid-keyfile-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    ::unlink((dir_ + "/key.json").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(KeyFileTest, CreatesWithMode0600AndRefusesOverwrite) {
  std::string path = dir_ + "/key.json";
  ASSERT_TRUE(WriteKeyFile(path, "secret contents").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFileToString(path).value(), "secret contents");
  Status again = WriteKeyFile(path, "other");
  EXPECT_EQ(again.code(), Code::kConflict);
  EXPECT_NE(again.message().find("already exists"), std::string::npos);
  EXPECT_EQ(ReadFileToString(path).value(), "secret contents");
}

TEST_F(KeyFileTest, Errors) {
  EXPECT_EQ(ReadFileToString(dir_ + "/missing").status().code(), Code::kNotFound);
  EXPECT_EQ(WriteKeyFile(dir_ + "/no/such/dir/key", "x").code(), Code::kUnavailable);
}

}  // namespace
}  // namespace grid::crypto
