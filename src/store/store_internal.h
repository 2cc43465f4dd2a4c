// Rules shared by every Store implementation, so that the in-memory store and
// the SQLite store answer the same ChangeSet with the same Status. Internal to
// src/store/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "ledger/ledger.h"
#include "market/types.h"
#include "store/store.h"

namespace grid::store::internal {

// The fields that make two transfers with the same id "the same request".
// at_ms is not one of them: the service stamps it, so a retry carries a new
// time (TigerBeetle likewise ignores its server-assigned timestamp).
// Returns "" when `stored` and `incoming` agree, otherwise the differing parts,
// e.g. "amount, accounts".
std::string TransferDifference(const ledger::Transfer& stored, const ledger::Transfer& incoming);

// kConflict "transfer X exists" or kIdempotencyMismatch "transfer X exists
// with different amount, …" for an id already stored.
Status DuplicateTransfer(const ledger::Transfer& stored, const ledger::Transfer& incoming);

// Only a lease that carries a signed order takes part in the (renter, order
// nonce) uniqueness rule; a lease made without one (simulator, admin) has an
// empty signature and nonce 0, and two of those must not collide.
inline bool HasSignedOrder(const market::Lease& lease) { return !lease.order.signature.empty(); }

Status NonceReplay(const market::Lease& lease);  // kConflict "order nonce already used"
// kConflict: a payment channel pays one lease (schema 5's unique channel).
Status ChannelReuse(const market::Lease& lease, int64_t other_lease_id);

// Column encodings both SQL stores use, so SQLite and PostgreSQL hold the
// same values.
// The uint64 order and withdrawal nonces are int64 columns holding the same
// 64 bits.
inline int64_t NonceToDb(uint64_t nonce) { return static_cast<int64_t>(nonce); }
inline uint64_t NonceFromDb(int64_t v) { return static_cast<uint64_t>(v); }
std::string EncodeGpus(const std::vector<int>& gpus);  // "0,1,2"
bool DecodeGpus(std::string_view text, std::vector<int>* out);
std::string EncodeEndpoints(const std::vector<market::PortMapping>& eps);  // "22:40123,8888:40124"
bool DecodeEndpoints(std::string_view text, std::vector<market::PortMapping>* out);
std::string JoinList(const std::vector<std::string>& items);  // "a,b"; items hold no comma
std::vector<std::string> SplitList(const std::string& text);

// What a change-log entry names: the rows its ChangeSet wrote (transfers
// are not kept in a broker's memory, so they are not named).
struct ChangeKeys {
  std::vector<int64_t> machines, leases, withdrawals;
  std::vector<std::string> accounts, meta;  // ids and keys: no newline in either
};
ChangeKeys KeysOf(const ChangeSet& changes);
// Columns of a change_log row: ids joined by ',', text keys by '\n'.
std::string JoinIds(const std::vector<int64_t>& ids);
bool SplitIds(std::string_view text, std::vector<int64_t>* out);
std::string JoinLines(const std::vector<std::string>& items);
std::vector<std::string> SplitLines(std::string_view text);
// Adds b's keys to a's (duplicates removed, sorted).
void Merge(ChangeKeys* a, const ChangeKeys& b);
// kAborted: the log moved past after_seq (another replica committed first).
Status StaleCommit(int64_t after_seq, int64_t head);

// Rejects what a store could not give back unchanged: non-finite spec numbers
// (SQLite turns NaN into NULL; JSON has neither NaN nor infinity).
Status ValidateMachine(const market::Machine& machine);

// What Load() returns for a machine: the spec's core fields and spec_json;
// `extra` is derived from spec_json by the market layer, not stored.
market::Machine StoredForm(market::Machine machine);

}  // namespace grid::store::internal
