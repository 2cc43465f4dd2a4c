// libFuzzer target for the RLP decoder and the transaction decoder
// (src/chain/rlp.h, src/chain/tx.h), which read raw transactions from outside.
//
// Checks, for any input bytes: RlpDecode never crashes, reads out of bounds
// (ASan) or recurses without bound, and whatever it accepts re-encodes to
// exactly the input (it accepts only canonical RLP). DecodeSignedTransaction
// never crashes, and a transaction it accepts keeps its bytes and its hash is
// keccak256 of them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "chain/rlp.h"
#include "chain/tx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  grid::Result<grid::chain::RlpItem> item = grid::chain::RlpDecode(in);
  if (item.ok()) {
    grid::chain::Bytes again = grid::chain::RlpEncode(*item);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) {
      std::fprintf(stderr, "RLP round trip differs: decoded input is not canonical\n");
      std::abort();
    }
  }
  grid::Result<grid::chain::SignedTransaction> tx = grid::chain::DecodeSignedTransaction(in);
  if (tx.ok()) {
    if (tx->raw.size() != size || !std::equal(tx->raw.begin(), tx->raw.end(), data) ||
        tx->hash != grid::crypto::Keccak256(in)) {
      std::fprintf(stderr, "decoded transaction does not keep its bytes or hash\n");
      std::abort();
    }
    (void)grid::chain::SigningHash(tx->tx);
  }
  return 0;
}
