// The broker's Prometheus metrics, kept with prometheus-cpp's core library
// and served as text on the broker's own GET /metrics route (no second HTTP
// server: prometheus-cpp's "pull" part is not used). Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "broker/broker.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
}  // namespace prometheus

namespace grid::broker {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  void CountRequest(int http_status);
  // Refreshes the state gauges from `stats` and renders the text format.
  std::string Render(const Broker::Stats& stats);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter *requests_, *errors_4xx_, *errors_5xx_, *commits_, *commit_failures_;
  prometheus::Gauge *machines_, *listed_, *leases_active_, *leases_created_;
  std::mutex mu_;  // guards the last-seen store counters below
  int64_t seen_commits_ = 0, seen_commit_failures_ = 0;
};

}  // namespace grid::broker
