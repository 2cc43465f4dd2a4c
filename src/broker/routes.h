// The broker's HTTP API under /v1/ (documented in docs/openapi.yaml): decodes
// requests, authenticates, calls the Broker, encodes JSON. Thread-safe: the
// handler runs on the server's threads concurrently.
#pragma once

#include "broker/broker.h"
#include "net/http.h"

namespace grid::broker {

net::HttpHandler MakeApiHandler(Broker* broker);

}  // namespace grid::broker
