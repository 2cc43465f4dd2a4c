#include "crypto/siwe.h"

#include <string>

#include "crypto/keys.h"

namespace grid::crypto {

namespace {

constexpr std::string_view kHeaderSuffix = " wants you to sign in with your Ethereum account:";
constexpr std::string_view kUri = "URI: ";
constexpr std::string_view kVersion = "Version: ";
constexpr std::string_view kChainId = "Chain ID: ";
constexpr std::string_view kNonce = "Nonce: ";
constexpr std::string_view kIssuedAt = "Issued At: ";
constexpr std::string_view kExpirationTime = "Expiration Time: ";
constexpr std::string_view kNotBefore = "Not Before: ";
constexpr std::string_view kRequestId = "Request ID: ";
constexpr std::string_view kResources = "Resources:";
constexpr std::string_view kResourceItem = "- ";

// ---- RFC 5234 / RFC 3986 character classes --------------------------------

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDig(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool IsUnreserved(char c) {
  return IsAlpha(c) || IsDigit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool IsSubDelim(char c) {
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=':
      return true;
    default:
      return false;
  }
}
bool IsGenDelim(char c) {
  switch (c) {
    case ':': case '/': case '?': case '#': case '[': case ']': case '@':
      return true;
    default:
      return false;
  }
}
bool IsReserved(char c) { return IsGenDelim(c) || IsSubDelim(c); }

// Checks that every character of s is in `allowed` or a "%" HEXDIG HEXDIG
// escape.
template <typename Pred>
bool AllCharsOrPct(std::string_view s, Pred allowed) {
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (s.size() < i + 3 || !IsHexDig(s[i + 1]) || !IsHexDig(s[i + 2])) return false;
      i += 2;
    } else if (!allowed(c)) {
      return false;
    }
  }
  return true;
}

bool IsPcharNoPct(char c) { return IsUnreserved(c) || IsSubDelim(c) || c == ':' || c == '@'; }

bool IsScheme(std::string_view s) {
  if (s.empty() || !IsAlpha(s[0])) return false;
  for (char c : s) {
    if (!(IsAlpha(c) || IsDigit(c) || c == '+' || c == '-' || c == '.')) return false;
  }
  return true;
}

// host = IP-literal / IPv4address / reg-name. IPv4 is a subset of reg-name's
// characters, so only IP-literals need their own rule; their inside is checked
// for the characters IPv6 and IPvFuture may use.
bool IsHost(std::string_view host, bool allow_empty) {
  if (host.empty()) return allow_empty;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    std::string_view inner = host.substr(1, host.size() - 2);
    for (char c : inner) {
      if (!(IsUnreserved(c) || IsSubDelim(c) || c == ':')) return false;
    }
    return true;
  }
  return AllCharsOrPct(host, [](char c) { return IsUnreserved(c) || IsSubDelim(c); });
}

// authority = [ userinfo "@" ] host [ ":" port ]
bool IsAuthority(std::string_view s, bool allow_empty_host) {
  if (size_t at = s.find('@'); at != std::string_view::npos) {
    std::string_view userinfo = s.substr(0, at);
    if (!AllCharsOrPct(userinfo, [](char c) { return IsUnreserved(c) || IsSubDelim(c) || c == ':'; })) {
      return false;
    }
    s.remove_prefix(at + 1);
  }
  std::string_view host = s;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return false;
    host = s.substr(0, close + 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      for (char c : rest.substr(1)) {
        if (!IsDigit(c)) return false;
      }
    }
  } else if (size_t colon = s.find(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    for (char c : s.substr(colon + 1)) {
      if (!IsDigit(c)) return false;
    }
  }
  return IsHost(host, allow_empty_host);
}

bool IsPathQueryFragment(std::string_view s) {
  // path chars: pchar / "/"; query and fragment add "?"; a single "#" splits
  // them.
  size_t hash = s.find('#');
  std::string_view before = s.substr(0, hash);
  if (hash != std::string_view::npos) {
    std::string_view frag = s.substr(hash + 1);
    if (!AllCharsOrPct(frag, [](char c) { return IsPcharNoPct(c) || c == '/' || c == '?'; })) {
      return false;
    }
  }
  size_t q = before.find('?');
  std::string_view path = before.substr(0, q);
  if (!AllCharsOrPct(path, [](char c) { return IsPcharNoPct(c) || c == '/'; })) return false;
  if (q != std::string_view::npos) {
    std::string_view query = before.substr(q + 1);
    if (!AllCharsOrPct(query, [](char c) { return IsPcharNoPct(c) || c == '/' || c == '?'; })) {
      return false;
    }
  }
  return true;
}

// URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ]
bool IsUri(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || !IsScheme(s.substr(0, colon))) return false;
  std::string_view rest = s.substr(colon + 1);
  if (rest.size() >= 2 && rest[0] == '/' && rest[1] == '/') {
    rest.remove_prefix(2);
    size_t end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    if (!IsAuthority(authority, /*allow_empty_host=*/true)) return false;
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    // After an authority the path is empty or starts with "/" (path-abempty);
    // find_first_of guarantees that.
  }
  return IsPathQueryFragment(rest);
}

bool IsStatement(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(IsReserved(c) || IsUnreserved(c) || c == ' ')) return false;
  }
  return true;
}

bool IsNonce(std::string_view s) {
  if (s.size() < 8) return false;
  for (char c : s) {
    if (!(IsAlpha(c) || IsDigit(c))) return false;
  }
  return true;
}

// Reads exactly n digits at s[*pos..]; false if any is missing.
bool ReadDigits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (s.size() < *pos + n) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[*pos + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool ReadChar(std::string_view s, size_t* pos, char want) {
  if (*pos >= s.size() || s[*pos] != want) return false;
  ++*pos;
  return true;
}

// Parses the leading digits of `s` as a uint64 without leading zeros.
bool ParseChainId(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  uint64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

Status LineError(size_t line_index, std::string_view what) {
  return InvalidArgument("SIWE message line " + std::to_string(line_index + 1) + ": " +
                         std::string(what));
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

}  // namespace

bool IsRfc3339DateTime(std::string_view s) {
  size_t pos = 0;
  int year, month, day, hour, minute, second;
  if (!ReadDigits(s, &pos, 4, &year) || !ReadChar(s, &pos, '-') ||
      !ReadDigits(s, &pos, 2, &month) || !ReadChar(s, &pos, '-') ||
      !ReadDigits(s, &pos, 2, &day)) {
    return false;
  }
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't')) return false;
  ++pos;
  if (!ReadDigits(s, &pos, 2, &hour) || !ReadChar(s, &pos, ':') ||
      !ReadDigits(s, &pos, 2, &minute) || !ReadChar(s, &pos, ':') ||
      !ReadDigits(s, &pos, 2, &second)) {
    return false;
  }
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    if (pos == start) return false;
  }
  if (pos >= s.size()) return false;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    ++pos;
    int oh, om;
    if (!ReadDigits(s, &pos, 2, &oh) || !ReadChar(s, &pos, ':') ||
        !ReadDigits(s, &pos, 2, &om) || oh > 23 || om > 59) {
      return false;
    }
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  if (month < 1 || month > 12 || day < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int max_day = kDays[month - 1] + (month == 2 && leap ? 1 : 0);
  if (day > max_day) return false;
  return hour <= 23 && minute <= 59 && second <= 60;  // 60: leap second
}

Result<SiweMessage> ParseSiwe(std::string_view text) {
  std::vector<std::string_view> lines;
  {
    size_t start = 0;
    for (;;) {
      size_t nl = text.find('\n', start);
      if (nl == std::string_view::npos) {
        lines.push_back(text.substr(start));
        break;
      }
      lines.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
  }
  SiweMessage m;
  size_t i = 0;
  auto line = [&](size_t k) -> std::string_view { return k < lines.size() ? lines[k] : ""; };
  auto need = [&](size_t k, std::string_view field) -> Status {
    if (k >= lines.size()) {
      return LineError(k, "message ends early; expected " + std::string(field));
    }
    return Status::Ok();
  };

  // Line 1: [ scheme "://" ] domain " wants you to sign in ...:"
  {
    std::string_view h = line(0);
    if (h.size() < kHeaderSuffix.size() ||
        h.substr(h.size() - kHeaderSuffix.size()) != kHeaderSuffix) {
      return LineError(0, "header must end with \"" + std::string(kHeaderSuffix) + "\"");
    }
    std::string_view prefix = h.substr(0, h.size() - kHeaderSuffix.size());
    if (size_t sep = prefix.find("://"); sep != std::string_view::npos) {
      std::string_view scheme = prefix.substr(0, sep);
      if (!IsScheme(scheme)) return LineError(0, "invalid scheme");
      m.scheme = std::string(scheme);
      prefix.remove_prefix(sep + 3);
    }
    if (prefix.empty()) return LineError(0, "domain is missing");
    if (!IsAuthority(prefix, /*allow_empty_host=*/false)) {
      return LineError(0, "domain is not a valid RFC 3986 authority");
    }
    m.domain = std::string(prefix);
  }
  // Line 2: address.
  GRID_RETURN_IF_ERROR(need(1, "the address"));
  {
    std::string_view a = line(1);
    Result<Address> parsed = ParseAddress(a);
    if (!parsed.ok()) return LineError(1, "address: " + parsed.status().message());
    if (parsed->ToChecksumHex() != a) {
      return LineError(1, "address must be in EIP-55 checksum form (" +
                              parsed->ToChecksumHex() + ")");
    }
    m.address = std::string(a);
  }
  // Line 3: empty. Then either an empty line (no statement) or statement + empty.
  GRID_RETURN_IF_ERROR(need(2, "an empty line after the address"));
  if (!line(2).empty()) return LineError(2, "expected an empty line after the address");
  GRID_RETURN_IF_ERROR(need(3, "a statement or an empty line"));
  if (line(3).empty()) {
    i = 4;
  } else {
    if (!IsStatement(line(3))) {
      return LineError(3, "statement contains a character outside RFC 3986 reserved, "
                          "unreserved and space (or a missing empty line before URI)");
    }
    m.statement = std::string(line(3));
    GRID_RETURN_IF_ERROR(need(4, "an empty line after the statement"));
    if (!line(4).empty()) return LineError(4, "expected an empty line after the statement");
    i = 5;
  }

  // Required fields, in this order.
  auto field = [&](std::string_view tag, std::string_view name) -> Result<std::string_view> {
    GRID_RETURN_IF_ERROR(need(i, "\"" + std::string(tag) + "\""));
    std::string_view l = line(i);
    if (!StartsWith(l, tag)) {
      return LineError(i, "expected \"" + std::string(tag) + "\" (" + std::string(name) + ")");
    }
    ++i;
    return l.substr(tag.size());
  };
  {
    GRID_ASSIGN_OR_RETURN(std::string_view v, field(kUri, "uri"));
    if (!IsUri(v)) return LineError(i - 1, "URI is not a valid RFC 3986 URI");
    m.uri = std::string(v);
  }
  {
    GRID_ASSIGN_OR_RETURN(std::string_view v, field(kVersion, "version"));
    if (v != "1") return LineError(i - 1, "Version must be 1");
    m.version = std::string(v);
  }
  {
    GRID_ASSIGN_OR_RETURN(std::string_view v, field(kChainId, "chain id"));
    if (!ParseChainId(v, &m.chain_id)) {
      return LineError(i - 1, "Chain ID must be a decimal number without leading zeros "
                              "that fits in 64 bits");
    }
  }
  {
    GRID_ASSIGN_OR_RETURN(std::string_view v, field(kNonce, "nonce"));
    if (!IsNonce(v)) return LineError(i - 1, "Nonce must be at least 8 letters or digits");
    m.nonce = std::string(v);
  }
  {
    GRID_ASSIGN_OR_RETURN(std::string_view v, field(kIssuedAt, "issued at"));
    if (!IsRfc3339DateTime(v)) return LineError(i - 1, "Issued At is not an RFC 3339 date-time");
    m.issued_at = std::string(v);
  }
  // Optional fields, each at most once, in this order.
  if (i < lines.size() && StartsWith(line(i), kExpirationTime)) {
    std::string_view v = line(i).substr(kExpirationTime.size());
    if (!IsRfc3339DateTime(v)) {
      return LineError(i, "Expiration Time is not an RFC 3339 date-time");
    }
    m.expiration_time = std::string(v);
    ++i;
  }
  if (i < lines.size() && StartsWith(line(i), kNotBefore)) {
    std::string_view v = line(i).substr(kNotBefore.size());
    if (!IsRfc3339DateTime(v)) return LineError(i, "Not Before is not an RFC 3339 date-time");
    m.not_before = std::string(v);
    ++i;
  }
  if (i < lines.size() && StartsWith(line(i), kRequestId)) {
    std::string_view v = line(i).substr(kRequestId.size());
    if (!AllCharsOrPct(v, IsPcharNoPct)) {
      return LineError(i, "Request ID contains a character that is not an RFC 3986 pchar");
    }
    m.request_id = std::string(v);
    ++i;
  }
  if (i < lines.size() && line(i) == kResources) {
    ++i;
    while (i < lines.size()) {
      std::string_view l = line(i);
      if (l.empty() && i + 1 == lines.size()) {
        return LineError(i, "message must not end with a newline");
      }
      if (!StartsWith(l, kResourceItem)) {
        return LineError(i, "expected a resource line \"- <uri>\"");
      }
      std::string_view uri = l.substr(kResourceItem.size());
      if (!IsUri(uri)) return LineError(i, "resource is not a valid RFC 3986 URI");
      m.resources.emplace_back(uri);
      ++i;
    }
  }
  if (i < lines.size()) {
    if (line(i).empty() && i + 1 == lines.size()) {
      return LineError(i, "message must not end with a newline");
    }
    return LineError(i, "unexpected line; after Issued At only Expiration Time, Not Before, "
                        "Request ID and Resources may follow, in that order");
  }
  return m;
}

std::string FormatSiwe(const SiweMessage& m) {
  std::string out;
  if (!m.scheme.empty()) out += m.scheme + "://";
  out += m.domain;
  out += kHeaderSuffix;
  out += '\n';
  out += m.address;
  out += "\n\n";
  if (m.statement) {
    out += *m.statement;
    out += '\n';
  }
  out += '\n';
  out += kUri;
  out += m.uri;
  out += '\n';
  out += kVersion;
  out += m.version;
  out += '\n';
  out += kChainId;
  out += std::to_string(m.chain_id);
  out += '\n';
  out += kNonce;
  out += m.nonce;
  out += '\n';
  out += kIssuedAt;
  out += m.issued_at;
  if (m.expiration_time) {
    out += '\n';
    out += kExpirationTime;
    out += *m.expiration_time;
  }
  if (m.not_before) {
    out += '\n';
    out += kNotBefore;
    out += *m.not_before;
  }
  if (m.request_id) {
    out += '\n';
    out += kRequestId;
    out += *m.request_id;
  }
  if (!m.resources.empty()) {
    out += '\n';
    out += kResources;
    for (const std::string& r : m.resources) {
      out += '\n';
      out += kResourceItem;
      out += r;
    }
  }
  return out;
}

}  // namespace grid::crypto
