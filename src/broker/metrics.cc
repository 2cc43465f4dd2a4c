#include "broker/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace grid::broker {
namespace {

prometheus::Counter* NewCounter(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}
prometheus::Gauge* NewGauge(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  requests_ = NewCounter(r, "grid_http_requests_total", "HTTP requests handled.");
  errors_4xx_ = NewCounter(r, "grid_http_client_errors_total", "Requests answered 4xx.");
  errors_5xx_ = NewCounter(r, "grid_http_server_errors_total", "Requests answered 5xx.");
  commits_ = NewCounter(r, "grid_store_commits_total", "Durable store commits.");
  commit_failures_ = NewCounter(r, "grid_store_commit_failures_total", "Store commits that failed.");
  machines_ = NewGauge(r, "grid_machines", "Registered machines.");
  listed_ = NewGauge(r, "grid_machines_listed", "Machines with a listed offer.");
  leases_active_ = NewGauge(r, "grid_leases_active", "Leases pending or running.");
  leases_created_ = NewGauge(r, "grid_leases_created", "Leases ever created.");
}

Metrics::~Metrics() = default;

void Metrics::CountRequest(int status) {
  requests_->Increment();
  if (status >= 500) errors_5xx_->Increment();
  else if (status >= 400) errors_4xx_->Increment();
}

std::string Metrics::Render(const Broker::Stats& s) {
  {
    // The broker counts commits itself; carry the increase over to the counters.
    std::lock_guard lock(mu_);
    commits_->Increment(static_cast<double>(s.commits - seen_commits_));
    commit_failures_->Increment(static_cast<double>(s.commit_failures - seen_commit_failures_));
    seen_commits_ = s.commits;
    seen_commit_failures_ = s.commit_failures;
  }
  machines_->Set(static_cast<double>(s.machines));
  listed_->Set(static_cast<double>(s.listed));
  leases_active_->Set(static_cast<double>(s.leases_active));
  leases_created_->Set(static_cast<double>(s.leases_total));
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace grid::broker
