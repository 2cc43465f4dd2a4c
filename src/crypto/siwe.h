// EIP-4361 Sign-In with Ethereum messages: a strict parser and its inverse.
//
// The accepted grammar is the EIP's ABNF:
//
//   [ scheme "://" ] domain " wants you to sign in with your Ethereum account:" LF
//   address LF
//   LF
//   [ statement LF ]
//   LF
//   "URI: " uri LF
//   "Version: 1" LF
//   "Chain ID: " chain-id LF
//   "Nonce: " nonce LF
//   "Issued At: " date-time
//   [ LF "Expiration Time: " date-time ]
//   [ LF "Not Before: " date-time ]
//   [ LF "Request ID: " *pchar ]
//   [ LF "Resources:" *( LF "- " URI ) ]
//
// So a message without a statement has three LFs between the address and
// "URI:" (some older libraries, e.g. the siwe npm package before 3.0, wrote
// two; those are rejected). There is no trailing LF. Lines end with LF only.
// Field rules: scheme per RFC 3986; domain is an RFC 3986 authority with a
// non-empty host; address is "0x" + 40 hex digits in exact EIP-55 checksum
// form; statement is one or more RFC 3986 reserved/unreserved characters or
// spaces; uri and resources are RFC 3986 URIs (checked for structure and
// character set); version is "1"; chain-id is decimal without leading zeros
// and fits in 64 bits; nonce is at least 8 ASCII letters or digits; times are
// RFC 3339 date-times (calendar-checked). Everything is ASCII: any other
// byte is rejected.
//
// Contract: ParseSiwe never crashes, never reads out of bounds and never
// throws on arbitrary bytes; errors are InvalidArgument naming the (1-based)
// line and the field. FormatSiwe(m) for any m that ParseSiwe returned gives
// back the text it came from (except that an empty "Resources:" list is not
// written), and ParseSiwe(FormatSiwe(m)) == m. Signature checking is not done
// here: verify PersonalMessageHash(original text) with RecoverSigner, and the
// domain, nonce, times and chain id against your own expectations.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grid::crypto {

struct SiweMessage {
  std::string scheme;  // empty when the message has no "scheme://" prefix
  std::string domain;
  std::string address;  // as written (EIP-55 checksummed)
  std::optional<std::string> statement;
  std::string uri;
  std::string version = "1";
  uint64_t chain_id = 1;
  std::string nonce;
  std::string issued_at;  // RFC 3339 text as written
  std::optional<std::string> expiration_time;
  std::optional<std::string> not_before;
  std::optional<std::string> request_id;
  std::vector<std::string> resources;

  friend bool operator==(const SiweMessage&, const SiweMessage&) = default;
};

Result<SiweMessage> ParseSiwe(std::string_view text);

// Writes the message in the EIP-4361 layout. The fields are written as they
// are; a message that ParseSiwe would reject formats to text it rejects.
std::string FormatSiwe(const SiweMessage& message);

// True when `text` is an RFC 3339 date-time ("2021-09-30T16:25:24Z",
// "2021-09-30T16:25:24.123+02:00"). Exposed for callers and tests.
bool IsRfc3339DateTime(std::string_view text);

}  // namespace grid::crypto
