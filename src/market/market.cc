#include "market/market.h"

#include <algorithm>
#include <cctype>

namespace grid::market {

std::string_view LeaseStateName(LeaseState s) {
  switch (s) {
    case LeaseState::kPending: return "pending";
    case LeaseState::kRunning: return "running";
    case LeaseState::kEnded: return "ended";
  }
  return "unknown";
}

std::string_view EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kNone: return "";
    case EndReason::kRenterStopped: return "renter_stopped";
    case EndReason::kInsufficientFunds: return "insufficient_funds";
    case EndReason::kEndDate: return "end_date";
    case EndReason::kHostLost: return "host_lost";
    case EndReason::kFailed: return "failed";
    case EndReason::kExited: return "exited";
  }
  return "";
}

bool ParseLeaseState(std::string_view name, LeaseState* out) {
  for (auto s : {LeaseState::kPending, LeaseState::kRunning, LeaseState::kEnded})
    if (LeaseStateName(s) == name) return *out = s, true;
  return false;
}

bool ParseEndReason(std::string_view name, EndReason* out) {
  for (auto r : {EndReason::kNone, EndReason::kRenterStopped, EndReason::kInsufficientFunds, EndReason::kEndDate,
                 EndReason::kHostLost, EndReason::kFailed, EndReason::kExited})
    if (EndReasonName(r) == name) return *out = r, true;
  return false;
}

Status ValidateSpec(const MachineSpec& s) {
  if (s.gpu_name.empty() || s.gpu_name.size() > 100) return InvalidArgument("gpu_name: required, at most 100 characters");
  if (s.num_gpus < 1 || s.num_gpus > kMaxGpusPerMachine)
    return InvalidArgument("num_gpus: must be between 1 and " + std::to_string(kMaxGpusPerMachine));
  auto nonneg = [](double v, const char* name) -> Status {
    if (!(v >= 0) || v > 1e12) return InvalidArgument(std::string(name) + ": must be a non-negative number");
    return Status::Ok();
  };
  GRID_RETURN_IF_ERROR(nonneg(s.gpu_ram, "gpu_ram"));
  GRID_RETURN_IF_ERROR(nonneg(s.cpu_ram, "cpu_ram"));
  GRID_RETURN_IF_ERROR(nonneg(s.disk_space, "disk_space"));
  GRID_RETURN_IF_ERROR(nonneg(s.inet_up, "inet_up"));
  GRID_RETURN_IF_ERROR(nonneg(s.inet_down, "inet_down"));
  if (s.cpu_cores < 0) return InvalidArgument("cpu_cores: must not be negative");
  if (s.geolocation.size() != 2 || !std::isupper(static_cast<unsigned char>(s.geolocation[0])) ||
      !std::isupper(static_cast<unsigned char>(s.geolocation[1])))
    return InvalidArgument("geolocation: must be a two-letter ISO 3166 country code such as \"US\"");
  return Status::Ok();
}

Result<Machine> Market::PlanRegister(const std::string& provider, MachineSpec spec, std::string spec_json,
                                     UnixMs now_ms) const {
  GRID_RETURN_IF_ERROR(ValidateSpec(spec));
  Machine m;
  m.id = next_machine_id_;
  m.provider = provider;
  m.spec = std::move(spec);
  m.spec_json = std::move(spec_json);
  m.created_ms = m.updated_ms = now_ms;
  return m;
}

Result<Machine> Market::PlanListOffer(const std::string& caller, const ListOfferRequest& req, UnixMs now_ms) const {
  const Machine* m = FindMachine(req.machine_id);
  if (!m) return NotFound("machine " + std::to_string(req.machine_id) + " not found");
  if (m->provider != caller) return PermissionDenied("machine " + std::to_string(m->id) + " is not yours");
  if (req.price_per_gpu_hour <= 0) return InvalidArgument("price_gpu: must be greater than 0");
  if (!CheckedMul(req.price_per_gpu_hour, m->spec.num_gpus))
    return InvalidArgument("price_gpu: too large");
  if (req.min_chunk < 1 || req.min_chunk > m->spec.num_gpus)
    return InvalidArgument("min_chunk: must be between 1 and the machine's " + std::to_string(m->spec.num_gpus) +
                           " GPUs");
  if (req.end_date_ms != 0 && req.end_date_ms <= now_ms) return InvalidArgument("end_date: must be in the future");
  if (req.storage_cost < 0) return InvalidArgument("price_disk: must not be negative");
  Machine out = *m;
  out.listing = Listing{true, req.price_per_gpu_hour, req.min_chunk, req.end_date_ms, req.storage_cost};
  out.updated_ms = now_ms;
  return out;
}

Result<Machine> Market::PlanUnlist(const std::string& caller, int64_t machine_id, UnixMs now_ms) const {
  const Machine* m = FindMachine(machine_id);
  if (!m) return NotFound("machine " + std::to_string(machine_id) + " not found");
  if (m->provider != caller) return PermissionDenied("machine " + std::to_string(m->id) + " is not yours");
  Machine out = *m;
  out.listing.listed = false;
  out.updated_ms = now_ms;
  return out;
}

void Market::Put(Machine machine) {
  next_machine_id_ = std::max(next_machine_id_, machine.id + 1);
  auto& alloc = allocation_[machine.id];
  if (alloc.size() != static_cast<size_t>(machine.spec.num_gpus)) {
    // Rebuild from the active leases: they may have been Put before the
    // machine (a store loading leases first), when there were no slots yet.
    alloc.assign(static_cast<size_t>(machine.spec.num_gpus), 0);
    for (const auto& [lid, l] : leases_) {
      if (l.machine_id != machine.id || !l.active()) continue;
      for (int g : l.gpus)
        if (g >= 0 && static_cast<size_t>(g) < alloc.size()) alloc[static_cast<size_t>(g)] = lid;
    }
  }
  free_count_[machine.id] = static_cast<int>(std::count(alloc.begin(), alloc.end(), 0));
  int64_t id = machine.id;
  Machine& stored = machines_[id] = std::move(machine);
  by_id_[id] = &stored;  // std::map nodes never move
}

const Machine* Market::FindMachine(int64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

int Market::FreeGpus(int64_t machine_id) const {
  auto it = free_count_.find(machine_id);
  return it == free_count_.end() ? 0 : it->second;
}

void Market::ForEachOffer(const std::function<bool(const Offer&)>& visit) const {
  for (const auto& [id, m] : machines_) {
    if (!m.listing.listed || m.removed) continue;
    int free = FreeGpus(id);
    for (int n = m.listing.min_chunk; n <= free; n += m.listing.min_chunk) {
      Offer o{id * kOfferIdBase + n, id, n, m.listing.price_per_gpu_hour * n, &m};
      if (!visit(o)) return;
    }
  }
}

Result<Offer> Market::FindOffer(int64_t offer_id) const {
  int64_t machine_id = offer_id / kOfferIdBase;
  int n = static_cast<int>(offer_id % kOfferIdBase);
  const Machine* m = FindMachine(machine_id);
  if (offer_id <= 0 || !m || n < 1 || n > m->spec.num_gpus)
    return NotFound("offer " + std::to_string(offer_id) + " not found");
  return Offer{offer_id, machine_id, n, m->listing.price_per_gpu_hour * n, m};
}

Status CheckSshPublicKey(std::string_view key) {
  if (key.size() > 8192) return InvalidArgument("ssh_key: at most 8 KiB");
  for (char c : key)
    if (c < 0x20 || c > 0x7e) return InvalidArgument("ssh_key: one line of printable ASCII (an OpenSSH public key)");
  size_t sp = key.find(' ');
  std::string_view type = key.substr(0, sp);
  static constexpr std::string_view kTypes[] = {
      "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
      "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"};
  if (std::find(std::begin(kTypes), std::end(kTypes), type) == std::end(kTypes))
    return InvalidArgument("ssh_key: expected an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-*), got \"" +
                           std::string(type.substr(0, 32)) + "\"");
  if (sp == std::string_view::npos) return InvalidArgument("ssh_key: the key's base64 data is missing");
  std::string_view data = key.substr(sp + 1);
  data = data.substr(0, data.find(' '));
  if (data.size() < 16 || data.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
                              std::string_view::npos)
    return InvalidArgument("ssh_key: the key's data is not base64");
  return Status::Ok();
}

Status CheckPorts(const std::vector<int>& ports) {
  if (ports.size() > static_cast<size_t>(kMaxPortsPerLease))
    return InvalidArgument("ports: at most " + std::to_string(kMaxPortsPerLease));
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i] < 1 || ports[i] > 65535) return InvalidArgument("ports: " + std::to_string(ports[i]) + " is not a TCP port (1-65535)");
    for (size_t j = 0; j < i; ++j)
      if (ports[j] == ports[i]) return InvalidArgument("ports: " + std::to_string(ports[i]) + " is listed twice");
  }
  return Status::Ok();
}

Result<Lease> Market::PlanCreateLease(const CreateLeaseRequest& req, int64_t lease_id, UnixMs now_ms) const {
  GRID_ASSIGN_OR_RETURN(Offer offer, FindOffer(req.offer_id));
  const Machine& m = *offer.machine;
  int gpus = req.gpus > 0 ? req.gpus : offer.num_gpus;
  if (req.image.empty()) return InvalidArgument("image: required");
  GRID_RETURN_IF_ERROR(CheckPorts(req.ports));
  if (!req.ssh_key.empty()) GRID_RETURN_IF_ERROR(CheckSshPublicKey(req.ssh_key));
  // Billing cannot settle a lease whose fee rate FeeOf rejects (not even to
  // end it), so such a lease must never be created.
  if (req.fee_bps < 0 || req.fee_bps > 10'000)
    return Internal("fee_bps " + std::to_string(req.fee_bps) + " is outside 0..10000");
  if (m.provider == req.renter) return InvalidArgument("offer " + std::to_string(offer.id) + " is your own machine");
  if (gpus % m.listing.min_chunk != 0 || gpus > m.spec.num_gpus)
    return InvalidArgument("gpus: machine " + std::to_string(m.id) + " rents in multiples of " +
                           std::to_string(m.listing.min_chunk) + " up to " + std::to_string(m.spec.num_gpus));
  if (!m.listing.listed) return Status(Code::kNotAvailable, "offer " + std::to_string(offer.id) + " is no longer available (machine unlisted)");
  if (m.listing.end_date_ms != 0 && m.listing.end_date_ms <= now_ms)
    return Status(Code::kNotAvailable, "offer " + std::to_string(offer.id) + " is no longer available (past its end date)");
  if (FreeGpus(m.id) < gpus)
    return Status(Code::kNotAvailable, "offer " + std::to_string(offer.id) + " is no longer available: " +
                                           std::to_string(FreeGpus(m.id)) + " of " + std::to_string(gpus) +
                                           " GPUs free on machine " + std::to_string(m.id));
  Micros price = m.listing.price_per_gpu_hour * gpus;
  // The signed order must say what is being bought, at the current price.
  const SignedOrder& o = req.order;
  if (o.offer_id != req.offer_id || o.gpus != gpus)
    return InvalidArgument("order: the signed offer and GPU count do not match the request");
  if (o.price_per_hour != price)
    return Status(Code::kConflict, "order: signed price " + FormatMoney(o.price_per_hour) + "/h but the offer costs " +
                                       FormatMoney(price) + "/h");
  // expiry_s comes from outside: compare in 128 bits so a huge value cannot overflow.
  __extension__ using Wide = Int128;
  if (static_cast<Wide>(o.expiry_s) * 1000 <= now_ms) return InvalidArgument("order: the signed order has expired");

  Lease l;
  l.id = lease_id;
  l.renter = req.renter;
  l.provider = m.provider;
  l.machine_id = m.id;
  const auto& alloc = allocation_.at(m.id);
  for (int i = 0; i < static_cast<int>(alloc.size()) && static_cast<int>(l.gpus.size()) < gpus; ++i)
    if (alloc[static_cast<size_t>(i)] == 0) l.gpus.push_back(i);
  l.price_per_hour = price;
  l.fee_bps = req.fee_bps;
  l.image = req.image;
  l.env = req.env;
  l.command = req.command;
  l.ports = req.ports;
  l.ssh_key = req.ssh_key;
  l.order = o;
  l.created_ms = now_ms;
  if (req.channel) {
    l.channel = req.channel;
    l.fee_bps = 0;
  }
  return l;
}

Status Market::CheckHostReport(const std::string& caller, const Lease& lease, LeaseState to) const {
  if (lease.provider != caller)
    return PermissionDenied("lease " + std::to_string(lease.id) + " is not on your machines");
  if (lease.state == LeaseState::kEnded)
    return Conflict("lease " + std::to_string(lease.id) + " has already ended");
  if (to == LeaseState::kPending) return InvalidArgument("state: a host reports running, failed or ended");
  return Status::Ok();  // (a repeated "running" is harmless: the caller keeps the start time)
}

void Market::Put(Lease lease) {
  next_lease_id_ = std::max(next_lease_id_, lease.id + 1);
  auto& alloc = allocation_[lease.machine_id];
  // Release whatever this lease held, then take its GPUs if it is active.
  for (auto& slot : alloc)
    if (slot == lease.id) slot = 0;
  if (lease.active()) {
    for (int g : lease.gpus) {
      if (g >= 0 && static_cast<size_t>(g) < alloc.size()) alloc[static_cast<size_t>(g)] = lease.id;
    }
  }
  free_count_[lease.machine_id] = static_cast<int>(std::count(alloc.begin(), alloc.end(), 0));
  leases_[lease.id] = std::move(lease);
}

const Lease* Market::FindLease(int64_t id) const {
  auto it = leases_.find(id);
  return it == leases_.end() ? nullptr : &it->second;
}

std::vector<const Lease*> Market::ActiveLeases() const {
  std::vector<const Lease*> out;
  for (const auto& [id, l] : leases_)
    if (l.active()) out.push_back(&l);
  return out;
}

std::vector<const Lease*> Market::ActiveLeasesOn(int64_t machine_id) const {
  std::vector<const Lease*> out;
  auto it = allocation_.find(machine_id);
  if (it == allocation_.end()) return out;
  for (int64_t id : it->second) {
    if (id == 0) continue;
    const Lease* l = FindLease(id);
    if (l && std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
  }
  std::sort(out.begin(), out.end(), [](const Lease* a, const Lease* b) { return a->id < b->id; });
  return out;
}

bool Market::CanSee(const std::string& caller, const Lease& lease) const {
  return lease.renter == caller || lease.provider == caller;
}

}  // namespace grid::market
