// libFuzzer target for the EIP-4361 parser (src/crypto/siwe.h).
//
// Checks, for any input bytes: ParseSiwe never crashes or reads out of
// bounds (ASan), and whatever it accepts round-trips:
//   ParseSiwe(FormatSiwe(m)) == m, and FormatSiwe(m) is the input itself
//   (an empty "Resources:" list is the one thing Format leaves out).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "crypto/siwe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  grid::Result<grid::crypto::SiweMessage> m = grid::crypto::ParseSiwe(text);
  if (!m.ok()) return 0;
  std::string formatted = grid::crypto::FormatSiwe(*m);
  grid::Result<grid::crypto::SiweMessage> again = grid::crypto::ParseSiwe(formatted);
  if (!again.ok() || !(*again == *m)) {
    std::fprintf(stderr, "SIWE round trip failed: %s\n",
                 again.ok() ? "fields differ" : again.status().ToString().c_str());
    std::abort();
  }
  if (formatted != text &&
      !(m->resources.empty() && formatted + "\nResources:" == text)) {
    std::fprintf(stderr, "SIWE Format(Parse(text)) != text\n");
    std::abort();
  }
  return 0;
}
