// The provider agent (`grid agent`): one per GPU host. It detects the GPUs,
// enrolls the machine under its provider with a join token, keeps one
// outbound connection to the broker (a heartbeat every few seconds carrying
// GPU health; the answer lists the machine's active leases), runs those
// leases' workloads through a Runtime, reports them running / ended / failed,
// and stops workloads the broker ended or that are no longer paid for.
//
// Besides the heartbeat, a second outbound connection long-polls the broker
// (POST /v1/agent/wait): the broker answers it the moment a lease of this
// machine is created or ends, and the agent acts at once instead of at the
// next heartbeat. While a workload writes output the agent ships it every
// few tens of milliseconds; when it is quiet, up to once a second.
//
// The host needs no inbound port. Given several brokers (--broker
// URL1,URL2: replicas of one deployment), the heartbeat and the long-poll
// each fail over to the next one that answers (client/broker_client.h has
// the rule) and log one line when they move. A broker that cannot be reached
// (none of them, given several) is retried with backoff and jitter; meanwhile each workload runs until its paid-until
// time plus the grace period, then is stopped locally. An agent restart
// re-adopts running workloads from the state dir (never starts one twice).
//
// With --chain-rpc the agent also takes leases paid by payment channel
// (issue 6, docs/channels.md): its key is the channels' payee; a
// ChannelKeeper checks each channel on chain before the workload starts,
// keeps the renter's vouchers in a durable book, stops a workload whose
// vouchers stopped, and redeems and closes the channels (transactions on the
// keeper's own worker thread, so heartbeats never wait for a receipt).
//
// Thread safety: an Agent is driven by one thread (Run or Step).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/channel_keeper.h"
#include "agent/gpu/gpu_probe.h"
#include "agent/gpu/spec_fields.h"
#include "agent/runtime/runtime.h"
#include "client/broker_client.h"
#include "core/clock.h"
#include "core/status.h"

namespace grid::agent {

struct AgentOptions {
  std::string broker_url;         // one URL, or replicas "URL1,URL2" (client/broker_client.h)
  std::string join_token;         // needed for the first enrollment only
  std::string state_dir;          // machine key, runtime state, token cache
  std::string simulate_gpus;      // "8xH100-SXM-80GB": simulated GPUs (test fixture)
  std::string runtime = "process";  // or "podman"
  std::string public_host;        // where renters reach published ports; "" = as the broker sees us
  AgentSiteConfig site;
  int grace_ms = 10'000;          // SIGTERM -> SIGKILL when a lease stops
  int64_t pids_limit = 4096;      // per lease
  // Listing terms from the agent's config file: when price_gpu is set, the
  // agent lists its machine at enrollment (as `grid machines list-offer`).
  std::string price_gpu;          // "2.10" USD per GPU-hour
  int min_chunk = 1;
  std::string end_date;           // "2027-06-30"
  std::string price_disk;
  // Payment channels (issue 6, docs/channels.md): an EVM node of the
  // broker's chain. Set: the agent announces channel payments at enrollment
  // and redeems / closes its leases' channels with its own key (which needs
  // native coin for gas). Empty: escrow leases only.
  std::string chain_rpc;
  // Redeem a channel's best voucher once this much of it is unredeemed (USD).
  std::string channel_redeem_threshold = "5.00";
};

// Reads an agent config file (JSON) into `o`; keys: geolocation, datacenter,
// inet_up, inet_down, price_gpu, min_chunk, end_date, price_disk,
// simulate_gpus, grace_ms, runtime, public_host, chain_rpc,
// channel_redeem_threshold. Unknown keys are an error naming them.
Status LoadAgentConfig(const std::string& path, AgentOptions* o);

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Create(AgentOptions options, const Clock* clock);

  // Enrolls (or re-enrolls) and adopts surviving workloads. Returns the
  // machine id. FailedPrecondition-like kUnavailable when no GPU was found.
  Result<int64_t> Start();
  // One heartbeat and reconciliation round. Returns the broker's requested
  // heartbeat period in ms (or a backoff after a failure).
  int64_t Step();
  // Start(), then Step() until `stop` becomes true: at every heartbeat
  // period, and at once when the long-poll reports a lease change.
  int Run(const std::atomic<bool>& stop);
  // Ships new workload output (no metering) without a heartbeat. Returns
  // whether any lease had new output.
  bool ShipNewOutput();

  const GpuInventory& inventory() const { return inventory_; }

 private:
  struct Local {
    int64_t lease_id = 0;
    bool reported_running = false;
    UnixMs paid_until_ms = 0;
    int64_t log_offset = -1;  // output already at the broker; -1: ask the heartbeat
    // GPU evidence from NVML, sampled at each heartbeat: energy counters at
    // the start (or re-adoption) and now, and utilization samples.
    std::vector<int> gpus;
    std::map<int, uint64_t> energy_start_mj, energy_now_mj;
    double util_sum_pct = 0;
    int64_t util_samples = 0;
  };
  Agent(AgentOptions o, const Clock* clock) : o_(std::move(o)), clock_(clock) {}
  Status Reconcile(const boost::json::array& leases);
  Status StartLease(const boost::json::object& lease);
  Status Report(int64_t lease_id, const std::string& state, const std::string& message,
                const boost::json::value& endpoints = nullptr);
  void StopLocal(const std::string& key, const char* why);
  void EnforceDeadlines();
  // Channel leases (issue 6): reads the broker's channels config and checks
  // our node against it (--chain-rpc); without one, or when the broker has
  // no channels, channels_ stays null and the agent takes escrow leases only.
  Status StartChannels();
  // Before starting a lease's workload: whether it may start now (ok), later
  // (false, ok), or never (the lease was reported failed).
  Result<bool> MayStart(const boost::json::object& lease);
  // For a running channel lease: its voucher into the book, and the stop
  // when its vouchers stopped. Returns whether the workload still runs.
  bool KeepChannelLease(const std::string& key, const boost::json::object& lease);
  // Stops a workload whose payment ended and reports it (retried at the
  // next heartbeat if the broker does not take the report).
  void StopUnpaid(const std::string& key, int64_t lease_id, const std::string& why);
  // Sends the workload's new output, and its metering if with_metering, to
  // the broker. Returns whether output was sent.
  bool ShipOutput(const std::string& key, Local& local, bool with_metering = true);
  // What the long-poll thread shares with the agent; the thread holds it by
  // shared_ptr since it may outlive the Agent by one call.
  struct Wake {
    std::mutex mu;
    std::condition_variable cv;
    bool pending = false;        // the broker said a lease changed
    int64_t lease_version = -1;  // from the last heartbeat; -1: none yet
    bool stop = false;
  };
  static void LongPoll(std::shared_ptr<Wake> wake, std::unique_ptr<client::BrokerClient> client);
  boost::json::object HealthJson();
  // Adds the last health sample to each lease's GPU evidence.
  void SampleGpus();
  boost::json::object MeteringJson(const struct WorkloadStatus& st, const Local& local) const;

  AgentOptions o_;
  const Clock* clock_;
  std::unique_ptr<GpuProbe> probe_;
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<client::BrokerClient> client_;
  GpuInventory inventory_;
  std::vector<GpuHealth> last_health_;  // from the last heartbeat
  HostFacts host_;
  int64_t machine_id_ = 0;
  int64_t heartbeat_ms_ = 10'000;
  int failures_ = 0;
  std::map<std::string, Local> local_;  // runtime lease key "lease-<id>" -> state
  std::shared_ptr<Wake> wake_ = std::make_shared<Wake>();
  std::unique_ptr<client::BrokerClient> poll_client_;  // the long-poll's own connection
  crypto::PrivateKey key_;  // the machine key: identity at the broker, channels' payee
  std::unique_ptr<ChannelKeeper> channels_;  // null: no channel payments
  bool channels_started_ = false;            // StartChannels ran to a conclusion
  // Leases stopped here for want of payment whose "ended" report the broker
  // has not taken yet: lease id -> the report's message.
  std::map<int64_t, std::string> unpaid_;
};

// `grid agent`: blocks until SIGINT/SIGTERM; returns the exit code.
int RunAgent(AgentOptions options);

}  // namespace grid::agent
