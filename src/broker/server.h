// Runs `grid broker`: the store, the Broker, the HTTP listener and the
// settlement ticker, until SIGINT or SIGTERM.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/routes.h"

namespace grid::broker {

struct ServerOptions {
  std::string db = "grid.db";            // store URL or SQLite path
  std::string listen = "127.0.0.1:8080"; // port 0 picks a free port
  int threads = 2;
  BrokerOptions broker;
  // Connects the chain once the broker is open (the treasury layer, given by
  // the CLI); unset: no chain. An error stops the broker from starting.
  std::function<Result<std::shared_ptr<const ChainApi>>(Broker&, const Clock*)> start_chain;
};

// Blocks until a signal; returns the process exit code. Prints
// "grid broker listening on http://HOST:PORT" once ready (tests read it).
int RunServer(ServerOptions options);

}  // namespace grid::broker
