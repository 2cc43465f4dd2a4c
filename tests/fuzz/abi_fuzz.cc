// libFuzzer target for the ABI decoders (src/chain/abi.h): return data,
// revert data and Transfer logs come from a node we do not control.
//
// Checks, for any input bytes: no decoder crashes or reads out of bounds
// (ASan); what the strict decoders accept re-encodes to the input (transfer
// calldata, one-word values); a Transfer log split from the input decodes
// consistently.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "chain/abi.h"

namespace {
void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace grid::chain;
  std::span<const uint8_t> in(data, size);

  RevertReason reason = DecodeRevert(in);
  (void)reason.ToString();
  if (reason.raw.size() != size) Fail("revert data not kept");
  (void)DecodeErrorString(in);

  if (auto v = DecodeUint256(in); v.ok()) {
    auto w = v->ToBigEndian32();
    if (!std::equal(w.begin(), w.end(), data)) Fail("uint256 round trip differs");
    if (auto b = DecodeBool(in); b.ok() && *v != U256(*b ? 1 : 0)) Fail("bool disagrees with uint256");
    if (auto a = DecodeAddress(in); a.ok() && AddressTopic(*a) != w) Fail("address round trip differs");
  }
  if (auto call = DecodeTransferCall(in); call.ok()) {
    std::vector<uint8_t> again = EncodeTransferCall(call->to, call->amount);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) Fail("transfer calldata round trip differs");
  }

  // As a log: up to 4 topics from the front, the rest as data. Topic 0 is
  // forced to Transfer half of the time so the address checks are reached.
  if (size >= 1) {
    size_t n_topics = data[0] % 5;
    std::span<const uint8_t> rest = in.subspan(1);
    std::vector<grid::crypto::Hash32> topics;
    for (size_t i = 0; i < n_topics && rest.size() >= 32; ++i) {
      grid::crypto::Hash32 t;
      std::copy(rest.begin(), rest.begin() + 32, t.begin());
      if (i == 0 && (data[0] & 0x80)) t = TransferEventTopic();
      topics.push_back(t);
      rest = rest.subspan(32);
    }
    if (auto e = DecodeTransferLog(topics, rest); e.ok()) {
      if (AddressTopic(e->from) != topics[1] || AddressTopic(e->to) != topics[2]) Fail("Transfer topics differ");
      auto w = e->value.ToBigEndian32();
      if (!std::equal(w.begin(), w.end(), rest.begin())) Fail("Transfer value differs");
    }
  }
  return 0;
}
