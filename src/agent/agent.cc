#include "agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "agent/gpu/host_facts.h"
#include "agent/runtime/podman_runtime.h"
#include "agent/runtime/process_runtime.h"
#include "chain/channel_config.h"
#include "chain/rpc/json_rpc_chain.h"
#include "crypto/hex.h"
#include "crypto/keys.h"
#include "crypto/keystore.h"

namespace grid::agent {
namespace {

namespace json = boost::json;

std::string LeaseKey(int64_t id) { return "lease-" + std::to_string(id); }

// The machine's own key: created once, mode 0600, hex like an SSH host key.
Result<crypto::PrivateKey> MachineKey(const std::string& state_dir) {
  std::string path = state_dir + "/machine.key";
  if (auto text = crypto::ReadFileToString(path); text.ok()) return crypto::PrivateKeyFromHex(*text);
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::GeneratePrivateKey());
  GRID_RETURN_IF_ERROR(crypto::WriteKeyFile(path, crypto::HexEncode(key.bytes) + "\n"));
  return key;
}

json::value ToJson(const SpecValue& v) {
  return std::visit([](const auto& x) { return json::value(x); }, v);
}

std::string Str(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : "";
}

int64_t Int(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  return v && v->is_int64() ? v->get_int64() : 0;
}

// The longest prefix of `data` that is whole UTF-8 sequences, with invalid
// bytes replaced by '?' one for one (so byte offsets stay those of the log).
std::string Utf8Prefix(std::string_view data) {
  std::string out;
  size_t i = 0;
  while (i < data.size()) {
    auto c = static_cast<unsigned char>(data[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0) {
      out.push_back('?');
      ++i;
      continue;
    }
    if (i + n > data.size()) break;  // a sequence cut at the chunk's end: next time
    bool ok = true;
    for (size_t k = 1; k < n; ++k) ok = ok && (static_cast<unsigned char>(data[i + k]) >> 6) == 2;
    if (ok) out.append(data.substr(i, n));
    else out.append(n, '?');
    i += n;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::Create(AgentOptions o, const Clock* clock) {
  if (o.state_dir.empty()) return InvalidArgument("--state-dir: required");
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (ec) return Unavailable("--state-dir " + o.state_dir + ": " + ec.message());
  ::chmod(o.state_dir.c_str(), 0711);  // lease users reach their own work dirs below it
  // Workloads run as unprivileged uids: every folder above the state dir must
  // let them pass (o+x), or their namespaces cannot be set up.
  for (auto p = std::filesystem::absolute(o.state_dir).parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0)
      return InvalidArgument("--state-dir: " + p.string() + " is not searchable by other users (chmod o+x " +
                             p.string() + "); workloads run as unprivileged uids below it");
    if (p == p.root_path()) break;
  }
  std::unique_ptr<Agent> a(new Agent(std::move(o), clock));
  if (!a->o_.simulate_gpus.empty()) {
    GRID_ASSIGN_OR_RETURN(a->probe_, NewSimulatedProbe(a->o_.simulate_gpus));
  } else {
    a->probe_ = NewNvmlProbe();
  }
  // Lease ids are per broker: two agents on one host (two state dirs) keep
  // their leases' cgroups apart, and a lease never lands in the cgroup of
  // another agent's workload of the same id.
  char tag[17];
  std::snprintf(tag, sizeof tag, "%016llx",
                static_cast<unsigned long long>(std::hash<std::string>{}(std::filesystem::absolute(a->o_.state_dir).string())));
  if (a->o_.runtime == "process") {
    ProcessRuntimeOptions ro;
    ro.state_dir = a->o_.state_dir + "/runtime";
    ro.cgroup_name = "grid-" + std::string(tag, 8);
    GRID_ASSIGN_OR_RETURN(a->runtime_, NewProcessRuntime(ro));
  } else if (a->o_.runtime == "podman") {
    PodmanRuntimeOptions po;
    po.state_dir = a->o_.state_dir + "/podman";
    po.cgroup_parent = "/grid-podman/" + std::string(tag, 8);
    GRID_ASSIGN_OR_RETURN(a->runtime_, NewPodmanRuntime(po));
  } else {
    return InvalidArgument("--runtime " + a->o_.runtime + ": expected process or podman");
  }
  GRID_ASSIGN_OR_RETURN(crypto::PrivateKey key, MachineKey(a->o_.state_dir));
  a->key_ = key;
  GRID_ASSIGN_OR_RETURN(a->client_, client::BrokerClient::CreateWithKey(a->o_.broker_url, key, a->o_.state_dir));
  GRID_ASSIGN_OR_RETURN(a->poll_client_, client::BrokerClient::CreateWithKey(a->o_.broker_url, key, a->o_.state_dir));
  // With several brokers (--broker URL1,URL2) each connection fails over
  // by itself; one line says so each time it moves.
  auto log_switch = [](const char* what) {
    return [what](const std::string& from, const std::string& to, const std::string& why) {
      std::fprintf(stderr, "grid agent: %s switched from broker %s to %s (%s)\n", what, from.c_str(), to.c_str(),
                   why.c_str());
    };
  };
  a->client_->set_switch_observer(log_switch("heartbeat"));
  a->poll_client_->set_switch_observer(log_switch("long-poll"));
  return a;
}

Result<int64_t> Agent::Start() {
  GRID_ASSIGN_OR_RETURN(inventory_, probe_->Inventory());
  GRID_ASSIGN_OR_RETURN(host_, ProbeHost(o_.state_dir));
  if (inventory_.gpus.empty())
    return Unavailable(inventory_.note.empty() ? "no GPU found" : inventory_.note);
  json::object spec;
  for (const auto& [k, v] : BuildSpecFields(inventory_, host_, o_.site)) spec[k] = ToJson(v);
  if (!channels_started_) GRID_RETURN_IF_ERROR(StartChannels());
  json::object enroll{{"join_token", o_.join_token}, {"spec", spec}};
  // Without the key the broker refuses channel leases on this host.
  if (channels_) enroll["payments"] = json::array{"escrow", "channel"};
  json::value body = std::move(enroll);
  GRID_ASSIGN_OR_RETURN(json::value m, client_->AuthCall("POST", "/v1/agent/enroll", &body));
  machine_id_ = Int(m.as_object(), "id");
  if (!o_.price_gpu.empty()) {
    json::object listing{{"price_gpu", o_.price_gpu}, {"min_chunk", o_.min_chunk}};
    if (!o_.end_date.empty()) listing["end_date"] = o_.end_date;
    if (!o_.price_disk.empty()) listing["price_disk"] = o_.price_disk;
    json::value lb = std::move(listing);
    GRID_RETURN_IF_ERROR(client_->AuthCall("PUT", "/v1/agent/offer", &lb).status());
  }
  // Workloads that outlived a previous agent are taken back, not restarted.
  GRID_ASSIGN_OR_RETURN(std::vector<std::string> adopted, runtime_->Adopt());
  for (const std::string& key : adopted) {
    Local l;
    l.lease_id = std::stoll(key.substr(6));
    l.reported_running = false;  // confirm with the broker on the next step
    local_[key] = l;
    std::fprintf(stderr, "grid agent: re-adopted %s\n", key.c_str());
  }
  return machine_id_;
}

Status Agent::StartChannels() {
  const std::string vouchers = o_.state_dir + "/vouchers";
  if (o_.chain_rpc.empty()) {
    // Channels this agent was paid on before must still be closed: say so
    // rather than leave the renters' deposits locked until their expiry.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(vouchers, ec))
      if (e.path().filename().string().rfind("voucher-", 0) == 0) {
        std::fprintf(stderr, "grid agent: %s holds payment channels to redeem and close; start the agent with "
                             "--chain-rpc to do it\n", vouchers.c_str());
        break;
      }
    channels_started_ = true;
    return Status::Ok();
  }
  auto answer = client_->Call("GET", "/v1/channels/config");
  if (!answer.ok()) {
    Code c = answer.status().code();
    if (c != Code::kConflict && c != Code::kNotFound) return answer.status();  // the broker is not up yet: retry
    std::fprintf(stderr, "grid agent: the broker takes no channel payments (%s); this host takes escrow leases only\n",
                 answer.status().message().c_str());
    channels_started_ = true;
    return Status::Ok();
  }
  auto cfg = chain::ParseChannelsConfig(*answer);
  if (!cfg.ok()) return InvalidArgument("the broker's /v1/channels/config: " + cfg.status().message());
  auto node = chain::JsonRpcChain::Create(o_.chain_rpc, chain::JsonRpcChainOptions{.timeout_ms = 5'000});
  if (!node.ok()) return InvalidArgument("--chain-rpc: " + node.status().message());
  // Our own node, not the broker's rpc_url: the agent reads channels on
  // chain precisely so as not to take the broker's word for them.
  Status s = chain::CheckChannelsNode(**node, *cfg, o_.chain_rpc);
  if (s.code() == Code::kConflict) return InvalidArgument("--chain-rpc: " + s.message());
  GRID_RETURN_IF_ERROR(s);
  GRID_ASSIGN_OR_RETURN(Micros threshold, ParseMoney(o_.channel_redeem_threshold, "channel_redeem_threshold"));
  ChannelKeeperOptions ko;
  ko.config = *cfg;
  ko.payee = crypto::AddressOf(key_);
  ko.redeem_threshold = threshold;
  std::shared_ptr<ChannelChain> chain =
      NewRpcChannelChain(std::move(*node), key_, cfg->contract, cfg->chain_id, /*tx_timeout_ms=*/120'000);
  auto sync = [this](int64_t id, const std::string& close_tx) {
    json::object fields;
    if (!close_tx.empty()) fields["close_tx"] = close_tx;
    json::value body = std::move(fields);
    return client_->AuthCall("POST", "/v1/leases/" + std::to_string(id) + "/channel/sync", &body).status();
  };
  auto keeper = ChannelKeeper::Open(ko, chain, vouchers, sync);
  if (!keeper.ok()) {
    // A damaged book will not heal by retrying; a disk error might.
    if (keeper.status().code() == Code::kUnavailable) return keeper.status();
    return InvalidArgument(keeper.status().message() + " (repair or move the file; it holds signed vouchers)");
  }
  channels_ = std::move(*keeper);
  std::fprintf(stderr,
               "grid agent: channel payments on: contract %s on chain %llu; payee %s (it pays the gas of redeem "
               "and close: keep some native coin there)\n",
               cfg->contract.ToChecksumHex().c_str(), static_cast<unsigned long long>(cfg->chain_id),
               ko.payee.ToChecksumHex().c_str());
  channels_started_ = true;
  return Status::Ok();
}

Result<bool> Agent::MayStart(const json::object& lease) {
  if (Str(lease, "payment") != "channel") return true;
  const int64_t id = Int(lease, "id");
  if (!channels_) {
    GRID_RETURN_IF_ERROR(Report(id, "failed", "this host's agent takes no channel payments (it runs without "
                                              "--chain-rpc, or the broker has no channels)"));
    return false;
  }
  Status s = channels_->CheckBeforeStart(lease, clock_->NowMs());
  if (s.ok()) return true;
  if (s.code() == Code::kUnavailable) {
    // The node is away: the lease waits (pending) for the next heartbeat.
    std::fprintf(stderr, "grid agent: lease %lld waits for the chain: %s\n", static_cast<long long>(id),
                 s.message().c_str());
    return false;
  }
  std::fprintf(stderr, "grid agent: lease %lld refused: %s\n", static_cast<long long>(id), s.message().c_str());
  GRID_RETURN_IF_ERROR(Report(id, "failed", "payment channel refused: " + s.message()));
  return false;
}

void Agent::StopUnpaid(const std::string& key, int64_t lease_id, const std::string& why) {
  StopLocal(key, why.c_str());
  unpaid_[lease_id] = why;
  Status r = Report(lease_id, "ended", why);
  if (r.ok() || r.code() == Code::kConflict) unpaid_.erase(lease_id);
}

bool Agent::KeepChannelLease(const std::string& key, const json::object& lease) {
  if (Str(lease, "payment") != "channel") return true;
  const int64_t id = Int(lease, "id");
  if (!channels_) {
    StopUnpaid(key, id, "this agent cannot check channel payments (it runs without --chain-rpc)");
    return false;
  }
  const UnixMs now = clock_->NowMs();
  Status s = channels_->Observe(lease, now);
  if (!s.ok() && s.code() != Code::kUnavailable) {
    StopUnpaid(key, id, "payment channel: " + s.message());
    return false;
  }
  // Unavailable: the node could not be read to start tracking; the broker
  // ends the lease if the vouchers stop meanwhile, and the next heartbeat
  // tries again.
  if (!s.ok())
    std::fprintf(stderr, "grid agent: lease %lld: %s\n", static_cast<long long>(id), s.message().c_str());
  std::string why = channels_->StopReason(id, now);
  if (why.empty()) return true;
  StopUnpaid(key, id, why);
  return false;
}

json::object Agent::HealthJson() {
  json::array gpus;
  last_health_.clear();
  if (auto health = probe_->Health(); health.ok()) {
    last_health_ = *health;
    for (const GpuHealth& h : *health) {
      json::object g{{"index", h.index}, {"ok", h.ok}};
      if (h.utilization_pct) g["utilization_pct"] = *h.utilization_pct;
      if (h.memory_used_pct) g["memory_used_pct"] = *h.memory_used_pct;
      if (h.temperature_c) g["temperature_c"] = *h.temperature_c;
      if (h.power_mw) g["power_mw"] = *h.power_mw;
      if (h.energy_mj) g["energy_mj"] = *h.energy_mj;
      if (!h.problem.empty()) g["problem"] = h.problem;
      gpus.push_back(std::move(g));
    }
  }
  json::object o{{"gpus", std::move(gpus)}};
  if (inventory_.simulated) o["note"] = "simulated GPUs";
  return o;
}

void Agent::SampleGpus() {
  for (auto& [key, l] : local_) {
    for (int g : l.gpus) {
      for (const GpuHealth& h : last_health_) {
        if (h.index != g) continue;
        if (h.energy_mj) {
          l.energy_start_mj.emplace(g, *h.energy_mj);  // first sample: the baseline
          l.energy_now_mj[g] = *h.energy_mj;
        }
        if (h.utilization_pct) {
          l.util_sum_pct += *h.utilization_pct;
          ++l.util_samples;
        }
      }
    }
  }
}

json::object Agent::MeteringJson(const WorkloadStatus& st, const Local& l) const {
  json::object m{{"wall_seconds", st.wall_seconds},   {"cpu_seconds", st.cpu_seconds},
                 {"peak_memory_bytes", st.peak_memory_bytes}, {"oom_kills", st.oom_kills},
                 {"net_rx_bytes", st.net_rx_bytes},   {"net_tx_bytes", st.net_tx_bytes}};
  // GPU energy only when every GPU of the lease has a counter (NVML on
  // Volta and later); utilization as the mean of the heartbeat samples.
  if (!l.gpus.empty() && l.energy_now_mj.size() == l.gpus.size()) {
    uint64_t mj = 0;
    for (const auto& [g, now] : l.energy_now_mj) mj += now - std::min(now, l.energy_start_mj.at(g));
    m["gpu_energy_joules"] = static_cast<double>(mj) / 1000.0;
  }
  if (l.util_samples > 0)
    m["gpu_utilization_pct"] = l.util_sum_pct / static_cast<double>(l.util_samples);
  if (inventory_.simulated) m["gpu_simulated"] = true;
  return m;
}

Status Agent::Report(int64_t lease_id, const std::string& state, const std::string& message,
                     const json::value& endpoints) {
  json::object o{{"state", state}, {"message", message}};
  if (!endpoints.is_null()) o["endpoints"] = endpoints;
  json::value body = std::move(o);
  return client_->AuthCall("POST", "/v1/leases/" + std::to_string(lease_id) + "/status", &body).status();
}

Status Agent::StartLease(const json::object& lease) {
  int64_t id = Int(lease, "id");
  WorkloadSpec spec;
  spec.lease_id = LeaseKey(id);
  spec.image = Str(lease, "image");
  for (const auto& v : lease.at("command").as_array()) spec.command.emplace_back(v.as_string());
  for (const auto& v : lease.at("env").as_array()) spec.env.emplace_back(v.as_string());
  if (const json::value* ports = lease.if_contains("ports"); ports && ports->is_array())
    for (const auto& v : ports->get_array()) spec.ports.push_back(static_cast<int>(v.as_int64()));
  spec.ssh_public_key = Str(lease, "ssh_key");
  for (const auto& v : lease.at("gpus").as_array()) {
    int idx = static_cast<int>(v.as_int64());
    spec.gpu_indices.push_back(idx);
    for (const GpuInfo& g : inventory_.gpus)
      if (g.index == idx && !inventory_.simulated) spec.gpu_uuids.push_back(g.uuid);
  }
  if (spec.command.empty()) spec.command = {"/bin/sh", "-c", "echo no command given; sleep infinity"};
  // CPU and memory in proportion to the GPUs rented.
  size_t n = std::max<size_t>(1, inventory_.gpus.size());
  spec.cpu_millicores = static_cast<int64_t>(host_.cpu_cores) * 1000 * static_cast<int64_t>(spec.gpu_indices.size()) /
                        static_cast<int64_t>(n);
  spec.memory_limit_bytes = static_cast<int64_t>(host_.ram_bytes / n * spec.gpu_indices.size());
  spec.pids_limit = o_.pids_limit;
  spec.grace_ms = o_.grace_ms;
  if (inventory_.simulated) {
    spec.gpus_simulated = true;
    spec.env.push_back("GRID_SIMULATED_GPUS=1");
  }
  Status s = runtime_->Start(spec);
  if (!s.ok()) {
    std::fprintf(stderr, "grid agent: lease %lld failed to start: %s\n", static_cast<long long>(id), s.message().c_str());
    return Report(id, "failed", s.message());
  }
  Local fresh{id, false, 0, 0};
  fresh.gpus = spec.gpu_indices;
  local_[spec.lease_id] = std::move(fresh);
  SampleGpus();  // the energy baseline
  std::fprintf(stderr, "grid agent: lease %lld started\n", static_cast<long long>(id));
  // Where its published ports are reachable: the configured public host, or
  // (no "host") the address the broker sees this report come from.
  json::value endpoints = nullptr;
  if (auto st = runtime_->Poll(spec.lease_id); st.ok() && !st->ports.empty()) {
    json::array ports;
    for (const PortMapping& p : st->ports)
      ports.push_back(json::object{{"container_port", p.container_port}, {"host_port", p.host_port}});
    json::object e{{"ports", std::move(ports)}};
    if (!o_.public_host.empty()) e["host"] = o_.public_host;
    endpoints = std::move(e);
  }
  Status r = Report(id, "running", inventory_.simulated ? "started (simulated GPUs)" : "started", endpoints);
  if (r.ok()) local_[spec.lease_id].reported_running = true;
  return r;
}

bool Agent::ShipOutput(const std::string& key, Local& local, bool with_metering) {
  if (local.log_offset < 0) return false;
  bool shipped = false;
  for (int round = 0; round < 4; ++round) {  // at most 256 KiB per step
    auto chunk = runtime_->ReadLogs(key, local.log_offset, 64 * 1024);
    if (!chunk.ok()) return shipped;
    std::string data = Utf8Prefix(*chunk);
    if (data.empty() && (round > 0 || !with_metering)) return shipped;
    json::object body{{"offset", local.log_offset}, {"data", data}};
    if (round == 0 && with_metering) {
      if (auto st = runtime_->Poll(key); st.ok()) body["metering"] = MeteringJson(*st, local);
    }
    json::value v = std::move(body);
    if (!client_->AuthCall("POST", "/v1/agent/leases/" + std::to_string(local.lease_id) + "/output", &v).ok())
      return shipped;
    local.log_offset += static_cast<int64_t>(data.size());
    shipped = shipped || !data.empty();
    if (data.size() < 32 * 1024) return shipped;
  }
  return shipped;
}

bool Agent::ShipNewOutput() {
  bool shipped = false;
  for (auto& [key, local] : local_) shipped = ShipOutput(key, local, /*with_metering=*/false) || shipped;
  return shipped;
}

void Agent::StopLocal(const std::string& key, const char* why) {
  std::fprintf(stderr, "grid agent: stopping %s: %s\n", key.c_str(), why);
  Status s = runtime_->Stop(key, o_.grace_ms);
  if (!s.ok()) std::fprintf(stderr, "grid agent: stop %s: %s\n", key.c_str(), s.ToString().c_str());
  if (runtime_->Remove(key).ok()) local_.erase(key);
}

Status Agent::Reconcile(const json::array& leases) {
  std::map<std::string, const json::object*> wanted;
  for (const auto& v : leases) wanted[LeaseKey(Int(v.as_object(), "id"))] = &v.as_object();
  // Workloads the broker no longer lists have ended there (stopped, out of
  // money, host_lost): stop them here.
  for (auto it = local_.begin(); it != local_.end();) {
    std::string key = (it++)->first;
    if (!wanted.contains(key)) StopLocal(key, "the lease ended at the broker");
  }
  std::erase_if(unpaid_, [&](const auto& u) { return !wanted.contains(LeaseKey(u.first)); });
  Status first;
  for (const auto& [key, lease] : wanted) {
    auto local = local_.find(key);
    // A lease this runtime already knows but did not re-adopt (so its
    // workload is not running) was started by an agent that died, perhaps
    // before it could report "running": it must not start twice either.
    bool known_here = local == local_.end() && runtime_->Poll(key).ok();
    if (auto u = unpaid_.find(Int(*lease, "id")); local == local_.end() && u != unpaid_.end()) {
      // Stopped here for want of payment while the broker was away.
      Status r = Report(u->first, "ended", u->second);
      if (r.ok() || r.code() == Code::kConflict) unpaid_.erase(u);
      else if (first.ok()) first = r;
      continue;
    }
    if (local == local_.end() && (Str(*lease, "state") == "running" || known_here)) {
      // Running at the broker but not here: its workload ended while no
      // agent watched (or its state is gone). Report that; never start a
      // running lease a second time.
      int64_t id = Int(*lease, "id");
      std::string why = "the workload was lost while the agent was down";
      bool exited = false;
      if (auto st = runtime_->Poll(key); st.ok() && st->state != WorkloadState::kRunning) {
        exited = st->state == WorkloadState::kExited;
        why = st->reason;
        Local tmp{id, true, 0, Int(*lease, "log_offset")};
        ShipOutput(key, tmp);
      }
      Status r = Report(id, exited ? "ended" : "failed", why);
      if (r.ok()) (void)runtime_->Remove(key);
      if (!r.ok() && first.ok()) first = r;
      continue;
    }
    if (local == local_.end()) {
      Result<bool> may = MayStart(*lease);
      Status s = !may.ok() ? may.status() : *may ? StartLease(*lease) : Status::Ok();
      if (!s.ok() && first.ok()) first = s;
      continue;
    }
    const json::value* pu = lease->if_contains("paid_until");
    if (pu && pu->is_string()) ParseTime(pu->get_string(), &local->second.paid_until_ms);
    if (local->second.log_offset < 0) local->second.log_offset = Int(*lease, "log_offset");
    if (local->second.gpus.empty()) {  // re-adopted: GPU evidence counts from now
      for (const auto& v : lease->at("gpus").as_array()) local->second.gpus.push_back(static_cast<int>(v.as_int64()));
      SampleGpus();
    }
    ShipOutput(key, local->second);
    if (!KeepChannelLease(key, *lease)) continue;  // stopped: its vouchers stopped
    auto status = runtime_->Poll(key);
    if (!status.ok()) continue;
    if (status->state == WorkloadState::kRunning) {
      if (!local->second.reported_running || Str(*lease, "state") == "pending") {
        if (Report(local->second.lease_id, "running", "re-adopted").ok()) local->second.reported_running = true;
      }
      continue;
    }
    // The workload ended by itself: its last words first, then the report.
    ShipOutput(key, local->second);
    bool ok = status->state == WorkloadState::kExited;
    Status r = Report(local->second.lease_id, ok ? "ended" : "failed", status->reason);
    if (r.ok() || r.code() == Code::kConflict) {
      if (runtime_->Remove(key).ok()) local_.erase(key);
    } else if (first.ok()) {
      first = r;
    }
  }
  return first;
}

void Agent::EnforceDeadlines() {
  // The broker is unreachable: keep each workload only while it is paid for.
  UnixMs now = clock_->NowMs();
  for (auto it = local_.begin(); it != local_.end();) {
    std::string key = it->first;
    const Local& l = (it++)->second;
    const int64_t id = l.lease_id;
    // A channel lease's own authority is the voucher book, broker or not.
    if (std::string why = channels_ ? channels_->StopReason(id, now) : ""; !why.empty()) StopUnpaid(key, id, why);
    else if (l.paid_until_ms > 0 && now > l.paid_until_ms + o_.grace_ms) StopLocal(key, "paid-until passed and the broker is unreachable");
  }
}

int64_t Agent::Step() {
  json::value body = HealthJson();
  auto r = client_->AuthCall("POST", "/v1/agent/heartbeat", &body);
  if (!r.ok()) {
    ++failures_;
    std::fprintf(stderr, "grid agent: heartbeat failed (%d in a row): %s\n", failures_, r.status().message().c_str());
    EnforceDeadlines();
    if (channels_) channels_->Tick(nullptr, clock_->NowMs());  // redeems go on; closes wait for the broker's word
    // Exponential backoff with jitter, capped at 30 s.
    int64_t backoff = std::min<int64_t>(30'000, 500LL << std::min(failures_, 6));
    static thread_local std::mt19937_64 rng(std::random_device{}());
    return backoff / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(backoff / 2 + 1));
  }
  // The broker's answer is outside input: one that is not what the API
  // says is treated as a failed heartbeat, never trusted (an empty lease
  // list would read as "every lease ended").
  const json::object* answer = r->if_object();
  const json::value* lv = answer ? answer->if_contains("leases") : nullptr;
  const json::array* leases = lv ? lv->if_array() : nullptr;
  if (!leases || !std::all_of(leases->begin(), leases->end(), [](const json::value& v) { return v.is_object(); })) {
    ++failures_;
    std::fprintf(stderr, "grid agent: the broker's heartbeat answer has no list of lease objects\n");
    EnforceDeadlines();
    return heartbeat_ms_;
  }
  failures_ = 0;
  SampleGpus();
  const json::object& o = *answer;
  if (const json::value* hb = o.if_contains("heartbeat_seconds"); hb && hb->is_number())
    heartbeat_ms_ = std::max<int64_t>(100, static_cast<int64_t>(hb->to_number<double>() * 1000));
  Status s = Reconcile(*leases);
  if (!s.ok()) std::fprintf(stderr, "grid agent: %s\n", s.ToString().c_str());
  if (channels_) {
    // The heartbeat lists the active leases only: a tracked channel whose
    // lease is not among them is closed.
    std::set<int64_t> active;
    for (const auto& v : *leases) {
      const std::string st = Str(v.get_object(), "state");
      if (st == "pending" || st == "running") active.insert(Int(v.get_object(), "id"));
    }
    channels_->Tick(&active, clock_->NowMs());
  }
  // The long-poll waits from this version on. Set after Reconcile, so a
  // change it brings in is acted on by this step, not reported again.
  if (const json::value* v = o.if_contains("lease_version"); v && v->is_int64()) {
    std::lock_guard lock(wake_->mu);
    wake_->lease_version = v->get_int64();
    wake_->cv.notify_all();
  }
  return heartbeat_ms_;
}

void Agent::LongPoll(std::shared_ptr<Wake> w, std::unique_ptr<client::BrokerClient> client) {
  int failures = 0;
  for (;;) {
    int64_t version;
    {
      std::unique_lock lock(w->mu);
      w->cv.wait(lock, [&] { return w->stop || w->lease_version >= 0; });
      if (w->stop) return;
      version = w->lease_version;
    }
    json::value body = json::object{{"lease_version", version}, {"timeout_ms", 20'000}};
    auto r = client->AuthCall("POST", "/v1/agent/wait", &body);
    std::unique_lock lock(w->mu);
    if (!r.ok()) {
      if (r.status().code() == Code::kNotFound) {
        std::fprintf(stderr, "grid agent: the broker has no long-poll; leases start at heartbeats\n");
        return;
      }
      // The heartbeat reports the broker's troubles; here just back off,
      // with jitter so a fleet does not come back in step.
      ++failures;
      int64_t cap_ms = std::min<int64_t>(30'000, 250LL << std::min(failures, 7));
      static thread_local std::mt19937_64 rng(std::random_device{}());
      int64_t backoff_ms = cap_ms / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(cap_ms / 2 + 1));
      w->cv.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return w->stop; });
      continue;
    }
    failures = 0;
    const json::value* changed = r->as_object().if_contains("changed");
    if (changed && changed->is_bool() && changed->get_bool()) {
      w->pending = true;
      w->cv.notify_all();
      // Until the agent's next heartbeat brings the new version in (bounded,
      // in case that heartbeat fails).
      w->cv.wait_for(lock, std::chrono::seconds(10), [&] { return w->stop || w->lease_version != version; });
    }
  }
}

int Agent::Run(const std::atomic<bool>& stop) {
  for (int attempt = 0; !stop; ++attempt) {
    auto id = Start();
    if (id.ok()) {
      std::printf("grid agent: machine %lld enrolled with %zu %sGPU(s) (%s); heartbeat to %s\n",
                  static_cast<long long>(*id), inventory_.gpus.size(), inventory_.simulated ? "SIMULATED " : "",
                  inventory_.gpus.empty() ? "" : inventory_.gpus[0].name.c_str(), client_->broker_url().c_str());
      std::fflush(stdout);
      break;
    }
    if (id.status().code() == Code::kUnauthenticated || id.status().code() == Code::kPermissionDenied ||
        id.status().code() == Code::kInvalidArgument) {
      std::fprintf(stderr, "grid agent: %s\n", id.status().message().c_str());
      return 1;
    }
    // No GPU (no driver) or no broker yet: say so and keep trying.
    std::fprintf(stderr, "grid agent: %s; retrying\n", id.status().message().c_str());
    for (int i = 0; i < 50 && !stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::thread(LongPoll, wake_, std::move(poll_client_)).detach();
  // Output of a busy workload is shipped every kFastPollMs; the interval
  // doubles while nothing new comes, up to kSlowPollMs.
  constexpr int64_t kFastPollMs = 20, kSlowPollMs = 1000;
  int64_t poll_ms = kFastPollMs;
  UnixMs next_beat_ms = 0;
  while (!stop) {
    UnixMs now = clock_->NowMs();
    bool beat = now >= next_beat_ms;
    {
      std::lock_guard lock(wake_->mu);
      beat = beat || wake_->pending;
      wake_->pending = false;
    }
    if (beat) {
      size_t before = local_.size();
      next_beat_ms = now + Step();
      if (local_.size() > before) poll_ms = kFastPollMs;  // a lease just started
    } else {
      poll_ms = ShipNewOutput() ? kFastPollMs : std::min(kSlowPollMs, poll_ms * 2);
    }
    int64_t wait_ms = next_beat_ms - clock_->NowMs();
    if (!local_.empty()) wait_ms = std::min(wait_ms, poll_ms);
    std::unique_lock lock(wake_->mu);
    // In slices, to notice `stop` (set by a signal handler, which cannot notify).
    for (int64_t waited = 0; waited < wait_ms && !stop && !wake_->pending; waited += 100)
      wake_->cv.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(100, wait_ms - waited)),
                         [&] { return wake_->pending; });
  }
  {
    std::lock_guard lock(wake_->mu);
    wake_->stop = true;
    wake_->cv.notify_all();
  }
  // Workloads keep running: an agent restart re-adopts them.
  return 0;
}

Status LoadAgentConfig(const std::string& path, AgentOptions* o) {
  GRID_ASSIGN_OR_RETURN(std::string text, crypto::ReadFileToString(path));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return InvalidArgument(path + ": not a JSON object");
  for (const auto& kv : v.as_object()) {
    std::string_view k = kv.key();
    const json::value& x = kv.value();
    auto bad = [&](const char* want) { return InvalidArgument(path + ": " + std::string(k) + ": expected " + want); };
    if (k == "geolocation" || k == "price_gpu" || k == "end_date" || k == "price_disk" || k == "simulate_gpus" ||
        k == "public_host" || k == "runtime" || k == "chain_rpc" || k == "channel_redeem_threshold") {
      if (!x.is_string()) return bad("a string");
      std::string s(x.get_string());
      if (k == "geolocation") o->site.geolocation = s;
      else if (k == "price_gpu") o->price_gpu = s;
      else if (k == "end_date") o->end_date = s;
      else if (k == "price_disk") o->price_disk = s;
      else if (k == "public_host") o->public_host = s;
      else if (k == "runtime") o->runtime = s;
      else if (k == "chain_rpc") o->chain_rpc = s;
      else if (k == "channel_redeem_threshold") {
        auto m = ParseMoney(s, "channel_redeem_threshold");
        if (!m.ok() || *m <= 0) return bad("a positive USD amount such as \"5.00\"");
        o->channel_redeem_threshold = s;
      } else {
        o->simulate_gpus = s;
      }
    } else if (k == "datacenter") {
      if (!x.is_bool()) return bad("true or false");
      o->site.datacenter = x.get_bool();
    } else if (k == "inet_up" || k == "inet_down") {
      if (!x.is_number()) return bad("a number (Mbps)");
      (k == "inet_up" ? o->site.inet_up_mbps : o->site.inet_down_mbps) = x.to_number<double>();
    } else if (k == "min_chunk" || k == "grace_ms") {
      if (!x.is_int64() || x.get_int64() < 1 || x.get_int64() > 1'000'000) return bad("a positive integer");
      (k == "min_chunk" ? o->min_chunk : o->grace_ms) = static_cast<int>(x.get_int64());
    } else {
      return InvalidArgument(path + ": " + std::string(k) + ": unknown key");
    }
  }
  return Status::Ok();
}

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int RunAgent(AgentOptions options) {
  SystemClock clock;
  auto agent = Agent::Create(std::move(options), &clock);
  if (!agent.ok()) {
    std::fprintf(stderr, "grid agent: %s\n", agent.status().message().c_str());
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return (*agent)->Run(g_stop);
}

}  // namespace grid::agent
