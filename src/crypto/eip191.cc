#include "crypto/eip191.h"

#include <string>

namespace grid::crypto {

Hash32 PersonalMessageHash(std::string_view message) {
  Keccak256Hasher h;
  h.Update(std::string_view("\x19" "Ethereum Signed Message:\n"));
  h.Update(std::to_string(message.size()));
  h.Update(message);
  return h.Finish();
}

}  // namespace grid::crypto
