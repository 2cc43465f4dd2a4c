// Rules shared by every Store implementation, so that the in-memory store and
// the SQLite store answer the same ChangeSet with the same Status. Internal to
// src/store/.
#pragma once

#include <string>

#include "core/status.h"
#include "ledger/ledger.h"
#include "market/types.h"

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

// Rejects what a store could not give back unchanged: non-finite spec numbers
// (SQLite turns NaN into NULL; JSON has neither NaN nor infinity).
Status ValidateMachine(const market::Machine& machine);

// What Load() returns for a machine: the spec's core fields and spec_json;
// `extra` is derived from spec_json by the market layer, not stored.
market::Machine StoredForm(market::Machine machine);

}  // namespace grid::store::internal
