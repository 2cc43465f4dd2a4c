// The schema, as an ordered list of migrations. Migration i (0-based) takes a
// database from schema version i to i + 1; each runs in its own transaction
// together with the version bump, so a crash leaves the database at one
// version or the next, never in between. SQLite keeps the version in PRAGMA
// user_version, PostgreSQL in the schema_migrations table (postgres_store.cc).
//
// Never edit a migration that has shipped: append a new one.
//
// Portability: one text per migration, written in SQLite's dialect and kept
// to the subset PostgreSQL also speaks; ToPostgres() below translates it with
// a few word-level substitutions: drop STRICT, INTEGER -> BIGINT (all money,
// ids and times are int64), REAL -> DOUBLE PRECISION, "INTEGER PRIMARY KEY
// AUTOINCREMENT" -> "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY".
// Booleans are integers 0/1; money is integer micro-USD; a uint64 nonce is
// stored as its int64 bit pattern.
//
// Why one text and an adapter rather than two texts side by side: the two
// stores must hold the same tables and columns, and one text makes that true
// by construction instead of by review. The adapter refuses the SQLite words
// it cannot translate (PRAGMA, WITHOUT ROWID, INT, BLOB, ...), and store_test
// runs it over every migration, so a non-portable migration fails the build's
// tests instead of a PostgreSQL broker's start. A future step that truly needs
// different texts (SQLite's table rebuilds for ALTER COLUMN, say) would add
// an explicit PostgreSQL text for that step; none does yet.
#pragma once

#include <array>
#include <cctype>
#include <initializer_list>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grid::store::internal {

inline constexpr std::array<std::string_view, 6> kMigrations = {
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
    // 6: several brokers on one database (issue 7; store.h, "Replicas"). The
    // change log: its head (one row; a numbered commit moves it, so
    // numbered commits serialise on that row) and one entry per commit
    // naming the rows it wrote, and a random token by which a committer that
    // lost its connection during COMMIT learns whether it happened. Shared state: heartbeats, login nonces and
    // workload output that any replica may be asked about. Only shared
    // stores write them; SQLite carries the empty tables.
    R"sql(
CREATE TABLE change_head (
  id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  seq  INTEGER NOT NULL
) STRICT;
INSERT INTO change_head (id, seq) VALUES (1, 0);
CREATE TABLE change_log (
  seq          INTEGER NOT NULL PRIMARY KEY,
  machines     TEXT NOT NULL,
  leases       TEXT NOT NULL,
  accounts     TEXT NOT NULL,
  meta         TEXT NOT NULL,
  withdrawals  TEXT NOT NULL,
  token        TEXT NOT NULL
) STRICT;
CREATE TABLE shared_state (
  key         TEXT    PRIMARY KEY,
  value       TEXT    NOT NULL,
  expires_ms  INTEGER NOT NULL
) STRICT;
)sql",
};

namespace dialect {

inline bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

inline std::string Upper(std::string_view w) {
  std::string out(w);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// True when the words after position `pos` (skipping whitespace) are `words`,
// case-insensitively; sets *end past the last one.
inline bool WordsFollow(std::string_view sql, size_t pos, std::initializer_list<std::string_view> words,
                        size_t* end) {
  for (std::string_view want : words) {
    while (pos < sql.size() && std::isspace(static_cast<unsigned char>(sql[pos]))) ++pos;
    size_t start = pos;
    while (pos < sql.size() && IsWordChar(sql[pos])) ++pos;
    if (Upper(sql.substr(start, pos - start)) != want) return false;
  }
  *end = pos;
  return true;
}

}  // namespace dialect

// The PostgreSQL text of an SQLite-dialect migration (see the top of this
// file), or kInvalidArgument naming the first word with no faithful
// translation. Comments, string literals and quoted identifiers are copied
// unchanged.
inline Result<std::string> ToPostgres(std::string_view sql) {
  using dialect::IsWordChar;
  // SQLite words with no PostgreSQL meaning, or a different one: INT is
  // 32-bit there (money and ids must be 64-bit), BLOB is BYTEA, ANY is a
  // STRICT-only type, the rest are SQLite statements or table options.
  static constexpr std::string_view kRefused[] = {"AUTOINCREMENT", "PRAGMA", "WITHOUT", "ROWID", "INT",
                                                  "BLOB", "ANY", "GLOB", "ATTACH", "DETACH", "VACUUM",
                                                  "REPLACE", "IFNULL", "DATETIME", "STRFTIME"};
  std::string out;
  out.reserve(sql.size() + sql.size() / 4);
  size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {  // comment to the end of the line
      size_t end = sql.find('\n', i);
      end = end == std::string_view::npos ? sql.size() : end;
      out.append(sql.substr(i, end - i));
      i = end;
      continue;
    }
    if (c == '\'' || c == '"') {  // literal or quoted identifier; a doubled quote escapes itself
      size_t end = i + 1;
      for (;;) {
        end = sql.find(c, end);
        if (end == std::string_view::npos) return InvalidArgument("migration: unterminated " + std::string(1, c));
        if (end + 1 < sql.size() && sql[end + 1] == c) {
          end += 2;
          continue;
        }
        break;
      }
      out.append(sql.substr(i, end + 1 - i));
      i = end + 1;
      continue;
    }
    if (!IsWordChar(c)) {
      out += c;
      ++i;
      continue;
    }
    size_t end = i;
    while (end < sql.size() && IsWordChar(sql[end])) ++end;
    const std::string word = dialect::Upper(sql.substr(i, end - i));
    size_t after = 0;
    if (word == "INTEGER" && dialect::WordsFollow(sql, end, {"PRIMARY", "KEY", "AUTOINCREMENT"}, &after)) {
      // Never reused, like AUTOINCREMENT; GENERATED ALWAYS so no caller
      // can pick a value by hand.
      out += "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
      end = after;
    } else if (word == "INTEGER") {
      out += "BIGINT";
    } else if (word == "REAL") {
      out += "DOUBLE PRECISION";
    } else if (word == "STRICT") {
      // A table option: only valid right after the closing parenthesis.
      size_t back = out.find_last_not_of(" \t\r\n");
      if (back == std::string::npos || out[back] != ')') return InvalidArgument("migration: STRICT not after ')'");
      out.resize(back + 1);
    } else {
      for (std::string_view refused : kRefused) {
        if (word == refused) {
          return InvalidArgument("migration: SQLite-only word " + word + " has no PostgreSQL translation");
        }
      }
      out.append(sql.substr(i, end - i));
    }
    i = end;
  }
  return out;
}

}  // namespace grid::store::internal
