#include "agent/runtime/runtime.h"

#include <sstream>

namespace grid::agent {

Runtime::~Runtime() = default;

bool ParseNetDev(const std::string& net_dev, int64_t* rx_bytes, int64_t* tx_bytes) {
  // "Inter-|   Receive ...", " face |bytes packets ...", then one line per
  // interface: "  eth0: RXBYTES RXPACKETS ... (8 receive fields) TXBYTES ...".
  std::istringstream in(net_dev);
  std::string line;
  int64_t rx = 0, tx = 0;
  bool table = false;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    std::istringstream fields(line.substr(colon + 1));
    int64_t v[9];
    bool ok = true;
    for (int64_t& x : v) ok = ok && static_cast<bool>(fields >> x);
    if (!ok) return false;
    table = true;
    if (name == "lo") continue;
    rx += v[0];
    tx += v[8];
  }
  if (!table) return false;
  *rx_bytes = rx;
  *tx_bytes = tx;
  return true;
}

}  // namespace grid::agent
