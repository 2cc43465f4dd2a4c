#include "crypto/siwe.h"

#include <gtest/gtest.h>

#include <string>

#include "crypto/eip191.h"
#include "crypto/keys.h"

namespace grid::crypto {
namespace {

// The example message of EIP-4361.
constexpr char kExample[] =
    "service.org wants you to sign in with your Ethereum account:\n"
    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
    "\n"
    "I accept the ServiceOrg Terms of Service: https://service.org/tos\n"
    "\n"
    "URI: https://service.org/login\n"
    "Version: 1\n"
    "Chain ID: 1\n"
    "Nonce: 32891756\n"
    "Issued At: 2021-09-30T16:25:24Z\n"
    "Resources:\n"
    "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n"
    "- https://example.com/my-web2-claim.json";

TEST(SiweTest, ParsesTheEipExample) {
  auto m = ParseSiwe(kExample);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->scheme, "");
  EXPECT_EQ(m->domain, "service.org");
  EXPECT_EQ(m->address, "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2");
  EXPECT_EQ(m->statement, "I accept the ServiceOrg Terms of Service: https://service.org/tos");
  EXPECT_EQ(m->uri, "https://service.org/login");
  EXPECT_EQ(m->version, "1");
  EXPECT_EQ(m->chain_id, 1u);
  EXPECT_EQ(m->nonce, "32891756");
  EXPECT_EQ(m->issued_at, "2021-09-30T16:25:24Z");
  EXPECT_FALSE(m->expiration_time || m->not_before || m->request_id);
  ASSERT_EQ(m->resources.size(), 2u);
  EXPECT_EQ(m->resources[1], "https://example.com/my-web2-claim.json");
  EXPECT_EQ(FormatSiwe(*m), kExample);
}

TEST(SiweTest, NoStatementHasThreeNewlines) {
  const std::string text =
      "https://example.com:3388 wants you to sign in with your Ethereum account:\n"
      "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
      "\n"
      "\n"
      "URI: https://example.com/login\n"
      "Version: 1\n"
      "Chain ID: 31337\n"
      "Nonce: abcdEFGH1234\n"
      "Issued At: 2021-09-30T16:25:24.123+02:00\n"
      "Expiration Time: 2021-10-01T16:25:24Z\n"
      "Not Before: 2021-09-30T16:25:24Z\n"
      "Request ID: req-1:%20@x";
  auto m = ParseSiwe(text);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->scheme, "https");
  EXPECT_EQ(m->domain, "example.com:3388");
  EXPECT_FALSE(m->statement.has_value());
  EXPECT_EQ(m->chain_id, 31337u);
  EXPECT_EQ(m->expiration_time, "2021-10-01T16:25:24Z");
  EXPECT_EQ(m->not_before, "2021-09-30T16:25:24Z");
  EXPECT_EQ(m->request_id, "req-1:%20@x");
  EXPECT_TRUE(m->resources.empty());
  EXPECT_EQ(FormatSiwe(*m), text);

  // The two-newline form some libraries wrote is not the ABNF.
  std::string two = text;
  two.erase(two.find("\n\n\n"), 1);
  auto bad = ParseSiwe(two);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 5"), std::string::npos) << bad.status().message();
}

TEST(SiweTest, RoundTripFromStruct) {
  SiweMessage m;
  m.domain = "localhost:8080";
  m.address = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf";
  m.statement = "Sign in to Gridmarket";
  m.uri = "http://localhost:8080/login?next=/leases#top";
  m.chain_id = UINT64_MAX;
  m.nonce = "0123456789abcdef";
  m.issued_at = "2024-02-29T23:59:60Z";
  m.request_id = "";
  m.resources = {"urn:grid:lease:42", "https://[::1]:8080/x"};
  auto back = ParseSiwe(FormatSiwe(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
}

TEST(SiweTest, EmptyResourcesListIsAccepted) {
  std::string text = std::string(kExample);
  text = text.substr(0, text.find("\n- ipfs"));
  auto m = ParseSiwe(text);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->resources.empty());
  EXPECT_EQ(ParseSiwe(FormatSiwe(*m)).value(), *m);
}

TEST(SiweTest, SignedByEthersWallet) {
  // From make_vectors.mjs: wallet.signMessage(text).
  const std::string text =
      "localhost:8080 wants you to sign in with your Ethereum account:\n"
      "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23\n\n"
      "Sign in to Gridmarket\n\n"
      "URI: http://localhost:8080/login\n"
      "Version: 1\n"
      "Chain ID: 31337\n"
      "Nonce: abcdef0123456789\n"
      "Issued At: 2024-05-01T12:00:00Z";
  auto m = ParseSiwe(text);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto sig = ParseSignature(
      "0xc8fd7bc08442b32e91222d2b78fcd5af9840c2febe730636ca042eaef18ecc3710af3244e1236a0c2e1b2689b1"
      "70629922d4182fc4f9b87d06dd78582a55932e1b");
  ASSERT_TRUE(sig.ok());
  auto who = RecoverSigner(PersonalMessageHash(text), *sig);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->ToChecksumHex(), m->address);
}

struct Malformed {
  const char* name;
  std::string from;  // replaced in kExample (first occurrence)
  std::string to;
  std::string expect;  // substring of the error
};

TEST(SiweTest, RejectsMalformedWithAClearMessage) {
  const Malformed cases[] = {
      {"header", "wants you to sign in", "wants you to log in", "line 1: header"},
      {"empty domain", "service.org wants", " wants", "line 1: domain"},
      {"bad domain", "service.org wants", "serv ice.org wants", "line 1: domain"},
      {"bad scheme", "service.org wants", "1http://service.org wants", "line 1: invalid scheme"},
      {"lowercase address", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
       "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "line 2: address must be in EIP-55"},
      {"bad checksum", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
       "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756CC2", "line 2: address"},
      {"short address", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
       "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756C", "line 2: address"},
      {"no blank after address", "Cc2\n\n", "Cc2\n", "line 3"},
      {"statement with control char", "I accept", "I\taccept", "line 4: statement"},
      {"two-line statement", "Terms of Service:", "Terms\nof Service:", "line 5"},
      {"missing URI", "URI: https://service.org/login\n", "", "line 6: expected \"URI: \""},
      {"bad URI", "URI: https://service.org/login", "URI: service org", "line 6: URI"},
      {"version 2", "Version: 1", "Version: 2", "line 7: Version must be 1"},
      {"chain id letters", "Chain ID: 1", "Chain ID: one", "line 8: Chain ID"},
      {"chain id leading zero", "Chain ID: 1", "Chain ID: 01", "line 8: Chain ID"},
      {"chain id overflow", "Chain ID: 1", "Chain ID: 18446744073709551616", "line 8: Chain ID"},
      {"short nonce", "Nonce: 32891756", "Nonce: 3289175", "line 9: Nonce"},
      {"nonce punctuation", "Nonce: 32891756", "Nonce: 3289-1756", "line 9: Nonce"},
      {"issued at not a date", "2021-09-30T16:25:24Z", "yesterday", "line 10: Issued At"},
      {"issued at bad day", "2021-09-30T16:25:24Z", "2021-02-29T16:25:24Z", "line 10: Issued At"},
      {"issued at no zone", "2021-09-30T16:25:24Z", "2021-09-30T16:25:24", "line 10: Issued At"},
      {"fields out of order", "Version: 1\nChain ID: 1", "Chain ID: 1\nVersion: 1",
       "line 7: expected \"Version: \""},
      {"expiration bad", "Resources:", "Expiration Time: soon\nResources:",
       "line 11: Expiration Time"},
      {"optional out of order", "Resources:",
       "Not Before: 2021-09-30T16:25:24Z\nExpiration Time: 2021-09-30T16:25:24Z\nResources:",
       "line 12: unexpected line"},
      {"request id space", "Resources:", "Request ID: a b\nResources:", "line 11: Request ID"},
      {"resource not a list item", "- https://example.com", "* https://example.com",
       "line 13: expected a resource line"},
      {"resource bad uri", "- https://example.com/my-web2-claim.json", "- not a uri",
       "line 13: resource"},
      {"CRLF", "Version: 1\n", "Version: 1\r\n", "line 7: Version"},
      {"trailing newline", "claim.json", "claim.json\n", "must not end with a newline"},
      {"unknown trailer", "Resources:", "Foo: bar\nResources:", "line 11: unexpected line"},
  };
  for (const auto& c : cases) {
    std::string text = kExample;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.name;
    text.replace(at, c.from.size(), c.to);
    auto m = ParseSiwe(text);
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << c.name;
    EXPECT_NE(m.status().message().find(c.expect), std::string::npos)
        << c.name << ": " << m.status().message();
  }
}

TEST(SiweTest, TruncationsNeverParseOrCrash) {
  std::string text = kExample;
  // Every strict prefix up to the end of "Issued At" lacks a required field.
  size_t required_end = text.find("\nResources:");
  for (size_t n = 0; n < required_end - 1; ++n) {
    EXPECT_FALSE(ParseSiwe(std::string_view(text).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(ParseSiwe(std::string("\0\n\n", 3)).ok());
  EXPECT_FALSE(ParseSiwe("\n\n\n\n\n\n\n\n\n\n\n\n").ok());
}

TEST(SiweTest, DateTimes) {
  EXPECT_TRUE(IsRfc3339DateTime("2021-09-30T16:25:24Z"));
  EXPECT_TRUE(IsRfc3339DateTime("2021-09-30t16:25:24.000001-05:30"));
  EXPECT_TRUE(IsRfc3339DateTime("2024-02-29T00:00:00Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2023-02-29T00:00:00Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-13-01T00:00:00Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-09-30T24:00:00Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-09-30T16:25:24.Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-09-30 16:25:24Z"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-09-30T16:25:24+0200"));
  EXPECT_FALSE(IsRfc3339DateTime("2021-09-30T16:25:24Z "));
  EXPECT_FALSE(IsRfc3339DateTime(""));
}

}  // namespace
}  // namespace grid::crypto
