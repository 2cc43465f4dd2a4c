// The broker's HTTP API under /v1/ (documented in docs/openapi.yaml): decodes
// requests, authenticates, calls the Broker, encodes JSON. Thread-safe: the
// handler runs on the server's threads concurrently.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "broker/broker.h"
#include "ledger/audit.h"
#include "net/http.h"

namespace grid::broker {

// The chain as the API shows it: the deposit address, the chain audit and
// the treasury's status. Supplied by the treasury layer (above the broker);
// null when the broker runs without a chain.
struct ChainApi {
  std::string treasury, token;  // checksummed 0x addresses
  std::string rpc_url;          // a node clients may use (`grid wallet deposit`)
  uint64_t chain_id = 0, confirmations = 0;
  std::string channels;         // the PaymentChannels contract (checksummed), "" for none
  std::function<Result<ledger::AuditReport>()> audit;  // the treasury's balance against the ledger
  std::function<std::string()> status_json;            // the watcher's and sender's state, a JSON object
  std::shared_ptr<void> owner;                         // keeps what the functions use alive
};

net::HttpHandler MakeApiHandler(Broker* broker, std::shared_ptr<const ChainApi> chain = nullptr);

}  // namespace grid::broker
