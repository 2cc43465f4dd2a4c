// The SQLite schema, as an ordered list of migrations. Migration i (0-based)
// takes a database from PRAGMA user_version i to i + 1; each runs in its own
// transaction together with the user_version bump, so a crash leaves the
// database at one version or the next, never in between.
//
// Never edit a migration that has shipped: append a new one.
//
// Portability: the statements stay close to what PostgreSQL accepts, so the
// PostgreSQL store (issue 7) can reuse them with mechanical substitutions:
// drop STRICT, INTEGER -> BIGINT (all money and times are int64), REAL ->
// DOUBLE PRECISION, "INTEGER PRIMARY KEY AUTOINCREMENT" -> "BIGINT GENERATED
// ALWAYS AS IDENTITY PRIMARY KEY". Booleans are INTEGER 0/1; money is INTEGER
// micro-USD; a uint64 order nonce is stored as its int64 bit pattern.
#pragma once

#include <array>
#include <string_view>

namespace grid::store::internal {

inline constexpr std::array<std::string_view, 5> kMigrations = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE machines (
  id                 INTEGER PRIMARY KEY,
  provider           TEXT    NOT NULL,
  gpu_name           TEXT    NOT NULL,
  num_gpus           INTEGER NOT NULL,
  gpu_ram            REAL    NOT NULL,
  cpu_cores          INTEGER NOT NULL,
  cpu_ram            REAL    NOT NULL,
  disk_space         REAL    NOT NULL,
  inet_up            REAL    NOT NULL,
  inet_down          REAL    NOT NULL,
  geolocation        TEXT    NOT NULL,
  datacenter         INTEGER NOT NULL,
  simulated          INTEGER NOT NULL,
  spec_json          TEXT    NOT NULL,
  listed             INTEGER NOT NULL,
  price_per_gpu_hour INTEGER NOT NULL,
  min_chunk          INTEGER NOT NULL,
  end_date_ms        INTEGER NOT NULL,
  storage_cost       INTEGER NOT NULL,
  created_ms         INTEGER NOT NULL,
  updated_ms         INTEGER NOT NULL
) STRICT;

CREATE TABLE leases (
  id                   INTEGER PRIMARY KEY,
  renter               TEXT    NOT NULL,
  provider             TEXT    NOT NULL,
  machine_id           INTEGER NOT NULL,
  gpus                 TEXT    NOT NULL,  -- GPU indices, "0,1,3"
  price_per_hour       INTEGER NOT NULL,
  fee_bps              INTEGER NOT NULL,
  image                TEXT    NOT NULL,
  order_offer_id       INTEGER NOT NULL,
  order_gpus           INTEGER NOT NULL,
  order_price_per_hour INTEGER NOT NULL,
  order_nonce          INTEGER NOT NULL,
  order_expiry_s       INTEGER NOT NULL,
  order_signature      TEXT    NOT NULL,  -- '' for a lease made without a signed order
  state                TEXT    NOT NULL,
  end_reason           TEXT    NOT NULL,
  created_ms           INTEGER NOT NULL,
  started_ms           INTEGER NOT NULL,
  ended_ms             INTEGER NOT NULL,
  billed_ms            INTEGER NOT NULL,
  charged              INTEGER NOT NULL,
  fee                  INTEGER NOT NULL,
  held                 INTEGER NOT NULL,
  settlements          INTEGER NOT NULL,
  message              TEXT    NOT NULL
) STRICT;

-- A signed order is used once: a replay must not open a second lease.
CREATE UNIQUE INDEX leases_order_nonce ON leases (renter, order_nonce) WHERE order_signature <> '';
CREATE INDEX leases_machine ON leases (machine_id);

-- A lease's env and command lists, one row per element, so any string
-- (commas, quotes, newlines) survives without an encoding of our own.
CREATE TABLE lease_strings (
  lease_id INTEGER NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
  list     TEXT    NOT NULL CHECK (list IN ('env', 'command')),
  pos      INTEGER NOT NULL,
  value    TEXT    NOT NULL,
  PRIMARY KEY (lease_id, list, pos)
) STRICT;

CREATE TABLE transfers (
  seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order, never reused
  id       TEXT    NOT NULL UNIQUE,            -- the idempotency key
  debit    TEXT    NOT NULL,
  credit   TEXT    NOT NULL,
  amount   INTEGER NOT NULL,
  kind     TEXT    NOT NULL,
  lease_id INTEGER NOT NULL,
  at_ms    INTEGER NOT NULL,
  memo     TEXT    NOT NULL
) STRICT;
CREATE INDEX transfers_debit ON transfers (debit, seq);
CREATE INDEX transfers_credit ON transfers (credit, seq);
CREATE INDEX transfers_lease ON transfers (lease_id, seq);

CREATE TABLE accounts (
  id              TEXT    NOT NULL PRIMARY KEY,
  debits_posted   INTEGER NOT NULL,
  credits_posted  INTEGER NOT NULL,
  debits_pending  INTEGER NOT NULL,
  credits_pending INTEGER NOT NULL
) STRICT;

CREATE TABLE meta (
  key   TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
)sql",
    // 2: machines run by an enrolled agent (issue 3): the machine's own
    // address, and whether its provider removed (revoked) it.
    R"sql(
ALTER TABLE machines ADD COLUMN agent_address TEXT NOT NULL DEFAULT '';
ALTER TABLE machines ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX machines_agent ON machines (agent_address) WHERE agent_address <> '';
)sql",
    // 3: container leases (podman hosts): published ports, the renter's SSH
    // key, and where the host says those ports are reachable.
    R"sql(
ALTER TABLE leases ADD COLUMN ports TEXT NOT NULL DEFAULT '';          -- "22,8888"
ALTER TABLE leases ADD COLUMN ssh_key TEXT NOT NULL DEFAULT '';
ALTER TABLE leases ADD COLUMN endpoint_host TEXT NOT NULL DEFAULT '';
ALTER TABLE leases ADD COLUMN endpoints TEXT NOT NULL DEFAULT '';      -- "22:40123,8888:40124"
)sql",
    // 4: withdrawals to the chain (issue 4); see ledger/withdrawal.h. The
    // signed transaction is stored before it is sent.
    R"sql(
CREATE TABLE withdrawals (
  id             INTEGER PRIMARY KEY,
  address        TEXT    NOT NULL,
  to_address     TEXT    NOT NULL,
  amount         INTEGER NOT NULL,
  from_earned    INTEGER NOT NULL,
  from_available INTEGER NOT NULL,
  state          TEXT    NOT NULL,
  nonce          INTEGER NOT NULL,  -- uint64 stored as the same 64 bits
  raw_tx         TEXT    NOT NULL,
  tx_hashes      TEXT    NOT NULL,  -- every signed version, comma-separated, oldest first
  mined_tx       TEXT    NOT NULL,
  mined_block    INTEGER NOT NULL,
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL,
  sent_ms        INTEGER NOT NULL,
  error          TEXT    NOT NULL
) STRICT;
CREATE INDEX withdrawals_address ON withdrawals (address, created_ms);
)sql",
    // 5: leases paid by payment channel (issue 6): the channel as checked at
    // creation, the schedule's terms, the best voucher accepted and what the
    // chain paid out; one row per such lease. Machines whose agent accepts
    // channel payments.
    R"sql(
CREATE TABLE lease_channels (
  lease_id          INTEGER PRIMARY KEY REFERENCES leases (id),
  channel           TEXT    NOT NULL UNIQUE,
  contract          TEXT    NOT NULL,
  chain_id          INTEGER NOT NULL,
  token             TEXT    NOT NULL,
  signer            TEXT    NOT NULL,
  payee             TEXT    NOT NULL,
  deposit           INTEGER NOT NULL,
  expiry_ms         INTEGER NOT NULL,
  interval_ms       INTEGER NOT NULL,
  grace_ms          INTEGER NOT NULL,
  expiry_margin_ms  INTEGER NOT NULL,
  length_ms         INTEGER NOT NULL,
  margin            INTEGER NOT NULL,
  voucher           INTEGER NOT NULL,
  voucher_sig       TEXT    NOT NULL,
  voucher_ms        INTEGER NOT NULL,
  redeemed          INTEGER NOT NULL,
  closed            INTEGER NOT NULL
) STRICT;
ALTER TABLE machines ADD COLUMN channel_payments INTEGER NOT NULL DEFAULT 0;
)sql",
};

}  // namespace grid::store::internal
