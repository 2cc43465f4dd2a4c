// The Boost-free parts of the HTTP layer: header/query lookup, URL encoding,
// target parsing and JSON error bodies.
#include "net/http.h"

#include <cstdio>

#include "net/http_internal.h"

namespace grid::net {
namespace {

const std::string* Find(const HeaderList& list, std::string_view name) {
  for (const auto& [k, v] : list) {
    if (k == name) return &v;
  }
  return nullptr;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const std::string* HttpRequest::Header(std::string_view lowercase_name) const {
  return Find(headers, lowercase_name);
}

const std::string* HttpRequest::Query(std::string_view name) const {
  return Find(query, name);
}

const std::string* HttpResponse::Header(std::string_view lowercase_name) const {
  return Find(headers, lowercase_name);
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string UrlDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

namespace internal {

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

void ParseTarget(std::string_view target, std::string* path, HeaderList* query) {
  path->clear();
  query->clear();
  // absolute-form: drop "scheme://authority"; "http://host?x" means "/?x".
  std::string storage;
  if (!target.empty() && target.front() != '/') {
    size_t scheme_end = target.find("://");
    if (scheme_end != std::string_view::npos) {
      size_t rest = target.find_first_of("/?", scheme_end + 3);
      if (rest == std::string_view::npos) {
        target = "/";
      } else if (target[rest] == '?') {
        storage = "/";
        storage.append(target.substr(rest));
        target = storage;
      } else {
        target = target.substr(rest);
      }
    }
  }
  // A fragment never belongs to the request; drop it if a client sent one.
  if (size_t hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  size_t qpos = target.find('?');
  std::string_view raw_path = target.substr(0, qpos);
  *path = raw_path.empty() ? std::string("/") : UrlDecode(raw_path, false);
  if (qpos == std::string_view::npos) return;
  std::string_view qs = target.substr(qpos + 1);
  while (!qs.empty()) {
    size_t amp = qs.find('&');
    std::string_view pair = qs.substr(0, amp);
    qs = amp == std::string_view::npos ? std::string_view() : qs.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    std::string_view v = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    query->emplace_back(UrlDecode(k, true), UrlDecode(v, true));
  }
}

std::string JsonErrorBody(std::string_view code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  auto escape = [&out](std::string_view s) {
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out.push_back(ch);
          }
      }
    }
  };
  escape(code);
  out += R"(","message":")";
  escape(message);
  out += "\"}}";
  return out;
}

}  // namespace internal
}  // namespace grid::net
