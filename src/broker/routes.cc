#include "broker/routes.h"

#include <cctype>
#include <charconv>
#include <regex>

#include "api/codec.h"
#include "broker/metrics.h"
#include "crypto/voucher.h"

namespace grid::broker {
namespace {

namespace json = boost::json;
using net::HttpRequest;
using net::HttpResponse;

// Objects serialize as they are: no json::value is made around them (from an
// lvalue object that was a deep copy of the whole tree).
HttpResponse Json(int status, const json::object& o) {
  return HttpResponse{status, "application/json", json::serialize(o), {}};
}
HttpResponse Ok(const json::object& o) { return Json(200, o); }

// {"host": optional, "ports": [{"container_port", "host_port"}]}; without a
// host, the address the report came from ("1.2.3.4:5678", "[::1]:5678").
// POST /v1/leases "pay": {"channel": "0x<64 hex>"} -> the channel id, lowercase.
Result<std::string> DecodePay(const json::value& v) {
  if (!v.is_object()) return InvalidArgument("pay: expected {\"channel\": \"0x…\"}");
  api::Fields f(v.get_object(), "pay.");
  GRID_RETURN_IF_ERROR(f.OnlyKnown({"channel"}));
  GRID_ASSIGN_OR_RETURN(std::string id, f.String("channel"));
  if (id.size() != 66 || id[0] != '0' || id[1] != 'x' ||
      id.find_first_not_of("0123456789abcdefABCDEF", 2) != std::string::npos)
    return InvalidArgument("pay.channel: expected a channel id, 0x and 64 hex digits");
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return id;
}

Result<ReportedEndpoints> DecodeEndpoints(const json::value& v, const std::string& remote_address) {
  if (!v.is_object()) return InvalidArgument("endpoints: expected an object {host, ports}");
  api::Fields f(v.get_object(), "endpoints.");
  GRID_RETURN_IF_ERROR(f.OnlyKnown({"host", "ports"}));
  ReportedEndpoints out;
  GRID_ASSIGN_OR_RETURN(out.host, f.OptString("host", ""));
  if (out.host.empty()) {
    std::string_view a = remote_address;
    a = a.substr(0, a.rfind(':'));
    if (a.size() >= 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
    out.host = std::string(a);
  }
  const json::value* pv = v.get_object().if_contains("ports");
  if (!pv || !pv->is_array() || pv->get_array().size() > market::kMaxPortsPerLease + 1)
    return InvalidArgument("endpoints.ports: expected a list of {container_port, host_port}");
  for (const json::value& p : pv->get_array()) {
    if (!p.is_object()) return InvalidArgument("endpoints.ports: expected a list of {container_port, host_port}");
    api::Fields pf(p.get_object(), "endpoints.ports.");
    GRID_RETURN_IF_ERROR(pf.OnlyKnown({"container_port", "host_port"}));
    GRID_ASSIGN_OR_RETURN(int64_t c, pf.Int("container_port", 1, 65535));
    GRID_ASSIGN_OR_RETURN(int64_t h, pf.Int("host_port", 1, 65535));
    out.ports.push_back({static_cast<int>(c), static_cast<int>(h)});
  }
  return out;
}
// The code of the last error answer made on this thread: Api::Handle runs a
// request again when it failed with kAborted (another replica committed
// first), which only a Status says, not the HTTP answer.
thread_local Code last_error_code = Code::kOk;

HttpResponse Error(const Status& s) {
  last_error_code = s.code();
  return HttpResponse{HttpStatus(s.code()), "application/json", api::ErrorBody(s), {}};
}

Result<int64_t> ParseId(std::string_view text, std::string_view what) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v <= 0)
    return InvalidArgument(std::string(what) + ": expected a positive integer id, got \"" +
                           std::string(text.substr(0, 32)) + "\"");
  return v;
}

Result<int64_t> ParseOffset(std::string_view text) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0)
    return InvalidArgument("offset: expected a non-negative integer");
  return v;
}

// Splits "/v1/leases/12/stop" into {"v1","leases","12","stop"}.
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

class Api {
 public:
  Api(Broker* b, std::shared_ptr<const ChainApi> chain) : b_(b), chain_(std::move(chain)) {}

  HttpResponse Handle(const HttpRequest& req) {
    HttpResponse r = Replicated(req);
    metrics_.CountRequest(r.status);
    return r;
  }

 private:
  Result<std::string> Auth(const HttpRequest& req) const {
    const std::string* h = req.Header("authorization");
    if (!h) return Unauthenticated("missing Authorization: Bearer token; run `grid login`");
    std::string_view v = *h;
    if (!v.starts_with("Bearer ")) return Unauthenticated("Authorization must be \"Bearer TOKEN\"");
    return b_->Authenticate(v.substr(7));
  }

  // Replicas: a request sees every change acknowledged before it arrived,
  // through whichever replica (Sync first), except offer searches, which
  // read the index the watcher keeps current (within about a commit's
  // delay) so that a search costs no database round trip. A command that
  // lost a race with another replica's commit wrote nothing: it runs again
  // on the caught-up state.
  HttpResponse Replicated(const HttpRequest& req) {
    if (!b_->Replicated()) return Route(req);
    const bool search = req.method == "GET" && req.path == "/v1/offers";
    const bool local = req.path == "/healthz" || req.path == "/metrics";
    constexpr int kAttempts = Broker::kCommandAttempts;
    for (int attempt = 1;; ++attempt) {
      if (!search && !local) {
        if (Status s = b_->Sync(); !s.ok()) return Error(s);
      }
      last_error_code = Code::kOk;
      HttpResponse r = Route(req);
      if (r.deferred || last_error_code != Code::kAborted || attempt == kAttempts) return r;
      Broker::PauseBeforeRetry(attempt);
    }
  }

  HttpResponse Route(const HttpRequest& req) {
    auto seg = Segments(req.path);
    const std::string& m = req.method;
    if (seg.size() == 1 && seg[0] == "healthz" && m == "GET") {
      // leader: this broker runs the background work (always, without replicas);
      // seq: the last change-log entry it applied (0 without replicas).
      return Ok(json::object{{"status", "ok"}, {"leader", b_->IsLeader()}, {"seq", b_->AppliedSeq()}});
    }
    if (seg.size() == 1 && seg[0] == "metrics" && m == "GET") return MetricsText();
    if (seg.empty() || seg[0] != "v1") return Error(NotFound("no route for " + m + " " + req.path));
    seg.erase(seg.begin());
    if (seg.empty()) return Error(NotFound("no route for " + m + " " + req.path));
    const std::string_view area = seg[0];

    if (area == "auth" && seg.size() == 2 && m == "POST") {
      if (seg[1] == "nonce") {
        auto nonce = b_->NewNonce();
        if (!nonce.ok()) return Error(nonce.status());
        const NonceInfo& n = *nonce;
        return Ok(json::object{{"nonce", n.nonce}, {"domain", n.domain}, {"uri", n.uri}, {"chain_id", n.chain_id}});
      }
      if (seg[1] == "login") return Login(req);
    }
    // Public reads.
    if (area == "offers" && m == "GET") {
      if (seg.size() == 1) return SearchOffers(req);
      if (seg.size() == 2) {
        auto id = ParseId(seg[1], "offer id");
        if (!id.ok()) return Error(id.status());
        auto o = b_->GetOffer(*id);
        if (!o.ok()) return Error(o.status());
        HttpResponse res{200, "application/json", {}, {}};
        api::AppendOffer(res.body, o->row, api::OfferMachineOf(o->machine));
        return res;
      }
    }
    if (area == "channels" && seg.size() == 2 && seg[1] == "config" && m == "GET") {
      if (!chain_ || chain_->channels.empty())
        return Error(Status(Code::kConflict, "this broker has no payment-channel contract (start it with --channels)"));
      return Ok(json::object{{"contract", chain_->channels},
                             {"token", chain_->token},
                             {"chain_id", chain_->chain_id},
                             {"rpc_url", chain_->rpc_url},
                             {"decimals", 6},
                             {"interval_ms", b_->options().channel_interval_ms}});
    }
    // Everything else needs a login.
    auto who = Auth(req);
    if (!who.ok()) {
      // Unknown routes are still 404, so a typo is not reported as a login problem.
      if (!KnownArea(area)) return Error(NotFound("no route for " + m + " " + req.path));
      return Error(who.status());
    }
    const std::string& addr = *who;
    if (area == "wallet") return Wallet(req, seg, addr);
    if (area == "machines") return Machines(req, seg, addr);
    if (area == "leases") return Leases(req, seg, addr);
    if (area == "admin" && seg.size() == 2 && seg[1] == "audit" && m == "GET") return Audit(addr);
    if (area == "admin" && seg.size() == 2 && seg[1] == "chain" && m == "GET") return ChainStatus(addr);
    if (area == "provider") return Provider(req, seg, addr);
    if (area == "agent") return Agent(req, seg, addr);
    return Error(NotFound("no route for " + m + " " + req.path));
  }

  static bool KnownArea(std::string_view a) {
    return a == "wallet" || a == "machines" || a == "leases" || a == "admin" || a == "auth" || a == "offers" ||
           a == "provider" || a == "agent";
  }

  HttpResponse Login(const HttpRequest& req) {
    auto obj = api::ParseObject(req.body);
    if (!obj.ok()) return Error(obj.status());
    api::Fields f(*obj);
    if (auto s = f.OnlyKnown({"message", "signature"}); !s.ok()) return Error(s);
    auto msg = f.String("message");
    if (!msg.ok()) return Error(msg.status());
    auto sig = f.String("signature");
    if (!sig.ok()) return Error(sig.status());
    auto s = b_->Login(*msg, *sig);
    if (!s.ok()) return Error(s.status());
    return Ok(json::object{{"token", s->token}, {"address", s->address}, {"expires_at", FormatTime(s->expires_ms)}});
  }

  HttpResponse Wallet(const HttpRequest& req, const std::vector<std::string_view>& seg, const std::string& addr) {
    if (seg.size() != 2) return Error(NotFound("no route for " + req.method + " " + req.path));
    if (seg[1] == "balance" && req.method == "GET") return Ok(api::EncodeBalance(b_->GetBalance(addr)));
    if (seg[1] == "history" && req.method == "GET") {
      int limit = 1000;
      if (const std::string* l = req.Query("limit")) {
        auto v = ParseId(*l, "limit");
        if (!v.ok()) return Error(v.status());
        limit = static_cast<int>(std::min<int64_t>(*v, 10'000));
      }
      auto h = b_->History(addr, limit);
      if (!h.ok()) return Error(h.status());
      json::array entries;
      for (const auto& t : *h) entries.push_back(api::EncodeTransfer(t));
      return Ok(json::object{{"address", addr}, {"entries", std::move(entries)}});
    }
    if (seg[1] == "deposit-address" && req.method == "GET") {
      if (!chain_) return Error(Status(Code::kConflict, "this broker takes no deposits: it runs without a chain "
                                                         "(no --chain-rpc)"));
      return Ok(json::object{{"treasury", chain_->treasury},
                             {"token", chain_->token},
                             {"chain_id", chain_->chain_id},
                             {"confirmations", chain_->confirmations},
                             {"rpc_url", chain_->rpc_url},
                             {"decimals", 6}});
    }
    if (seg[1] == "withdrawals" && req.method == "GET") {
      json::array out;
      for (const auto& w : b_->ListWithdrawals(addr)) out.push_back(WithdrawalJson(w));
      return Ok(json::object{{"withdrawals", std::move(out)}});
    }
    if (seg[1] == "withdrawals" && req.method == "POST") {
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto s = f.OnlyKnown({"amount", "to"}); !s.ok()) return Error(s);
      auto amount = f.Money("amount");
      if (!amount.ok()) return Error(amount.status());
      auto to = f.OptString("to", "");
      if (!to.ok()) return Error(to.status());
      std::string dest = *to;
      for (char& c : dest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto w = b_->RequestWithdrawal(addr, *amount, dest);
      if (!w.ok()) return Error(w.status());
      return Json(201, WithdrawalJson(*w));
    }
    if (seg[1] == "faucet" && req.method == "POST") {
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto s = f.OnlyKnown({"amount", "idempotency_key"}); !s.ok()) return Error(s);
      auto amount = f.Money("amount");
      if (!amount.ok()) return Error(amount.status());
      auto key = f.OptString("idempotency_key", "");
      if (!key.ok()) return Error(key.status());
      auto bal = b_->Faucet(addr, *amount, *key);
      if (!bal.ok()) return Error(bal.status());
      return Ok(api::EncodeBalance(*bal));
    }
    return Error(NotFound("no route for " + req.method + " " + req.path));
  }

  static json::object WithdrawalJson(const ledger::Withdrawal& w) {
    json::array hashes;
    for (const auto& h : w.tx_hashes) hashes.push_back(json::string(h));
    bool has_nonce = w.state != ledger::WithdrawalState::kRequested && !w.tx_hashes.empty();
    return json::object{{"id", w.id},
                        {"to", w.to},
                        {"amount", FormatMoney(w.amount)},
                        {"from_earned", FormatMoney(w.from_earned)},
                        {"from_available", FormatMoney(w.from_available)},
                        {"state", ledger::WithdrawalStateName(w.state)},
                        {"nonce", has_nonce ? json::value(w.nonce) : json::value(nullptr)},
                        {"tx_hashes", std::move(hashes)},
                        {"mined_tx", w.mined_tx.empty() ? json::value(nullptr) : json::value(w.mined_tx)},
                        {"mined_block", w.mined_block ? json::value(w.mined_block) : json::value(nullptr)},
                        {"created_at", FormatTime(w.created_ms)},
                        {"updated_at", FormatTime(w.updated_ms)},
                        {"error", w.error.empty() ? json::value(nullptr) : json::value(w.error)}};
  }

  static json::object MachineJson(const MachineView& v) {
    json::object o = api::EncodeMachine(v.machine, v.free_gpus);
    o["agent_address"] = v.machine.agent_address.empty() ? json::value(nullptr) : json::value(v.machine.agent_address);
    o["removed"] = v.machine.removed;
    if (v.host) {
      o["online"] = v.host->online;
      o["reliability"] = v.host->reliability;
      o["last_seen"] = FormatTime(v.host->last_seen_ms);
    } else {
      o["online"] = nullptr;  // registered by hand: no agent reports on it
      o["reliability"] = nullptr;
      o["last_seen"] = nullptr;
    }
    return o;
  }
  static HttpResponse MachineOut(const MachineView& v, int status = 200) { return Json(status, MachineJson(v)); }

  HttpResponse Machines(const HttpRequest& req, const std::vector<std::string_view>& seg, const std::string& addr) {
    if (seg.size() == 1 && req.method == "POST") {
      auto spec = api::DecodeMachineSpec(req.body);
      if (!spec.ok()) return Error(spec.status());
      auto v = b_->RegisterMachine(addr, std::move(spec->spec), std::move(spec->canonical_json));
      if (!v.ok()) return Error(v.status());
      return MachineOut(*v, 201);
    }
    if (seg.size() == 1 && req.method == "GET") {
      json::array arr;
      for (const auto& v : b_->ListMachines(addr)) arr.push_back(MachineJson(v));
      return Ok(json::object{{"machines", std::move(arr)}});
    }
    if (seg.size() < 2) return Error(NotFound("no route for " + req.method + " " + req.path));
    auto id = ParseId(seg[1], "machine id");
    if (!id.ok()) return Error(id.status());
    if (seg.size() == 2 && req.method == "GET") {
      auto v = b_->GetMachine(addr, *id);
      return v.ok() ? MachineOut(*v) : Error(v.status());
    }
    if (seg.size() == 2 && req.method == "DELETE") {
      auto v = b_->RemoveMachine(addr, *id);
      return v.ok() ? MachineOut(*v) : Error(v.status());
    }
    if (seg.size() == 3 && seg[2] == "offer" && req.method == "PUT") {
      auto lr = DecodeListing(req.body);
      if (!lr.ok()) return Error(lr.status());
      lr->machine_id = *id;
      auto v = b_->ListOffer(addr, *lr);
      return v.ok() ? MachineOut(*v) : Error(v.status());
    }
    if (seg.size() == 3 && seg[2] == "offer" && req.method == "DELETE") {
      auto v = b_->Unlist(addr, *id);
      return v.ok() ? MachineOut(*v) : Error(v.status());
    }
    return Error(NotFound("no route for " + req.method + " " + req.path));
  }

  HttpResponse Provider(const HttpRequest& req, const std::vector<std::string_view>& seg, const std::string& addr) {
    auto token_json = [](const JoinToken& t) {
      json::object o{{"id", t.id}, {"expires_at", FormatTime(t.expires_ms)}, {"revoked", t.revoked}};
      if (!t.token.empty()) o["token"] = t.token;
      return o;
    };
    if (seg.size() == 2 && seg[1] == "join-tokens" && req.method == "POST") {
      int64_t ttl_s = 24 * 3600;
      if (!req.body.empty()) {
        auto obj = api::ParseObject(req.body);
        if (!obj.ok()) return Error(obj.status());
        api::Fields f(*obj);
        if (auto st = f.OnlyKnown({"ttl_seconds"}); !st.ok()) return Error(st);
        auto ttl = f.OptInt("ttl_seconds", ttl_s, 60, 365LL * 24 * 3600);
        if (!ttl.ok()) return Error(ttl.status());
        ttl_s = *ttl;
      }
      auto t = b_->CreateJoinToken(addr, ttl_s * 1000);
      return t.ok() ? Json(201, token_json(*t)) : Error(t.status());
    }
    if (seg.size() == 3 && seg[1] == "join-tokens" && req.method == "DELETE") {
      auto t = b_->RevokeJoinToken(addr, std::string(seg[2]));
      return t.ok() ? Ok(token_json(*t)) : Error(t.status());
    }
    return Error(NotFound("no route for " + req.method + " " + req.path));
  }

  HttpResponse Agent(const HttpRequest& req, const std::vector<std::string_view>& seg, const std::string& addr) {
    if (seg.size() == 2 && seg[1] == "enroll" && req.method == "POST") {
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto st = f.OnlyKnown({"join_token", "spec", "payments"}); !st.ok()) return Error(st);
      auto token = f.OptString("join_token", "");
      if (!token.ok()) return Error(token.status());
      // "payments": what the agent can take; ["escrow"] when absent.
      auto payments = f.StringList("payments");
      if (!payments.ok()) return Error(payments.status());
      bool channel_payments = false;
      for (const std::string& p : *payments) {
        if (p == "channel") channel_payments = true;
        else if (p != "escrow")
          return Error(InvalidArgument("payments: expected \"escrow\" or \"channel\", got \"" + p.substr(0, 32) + "\""));
      }
      const json::value* sv = obj->if_contains("spec");
      if (!sv || !sv->is_object()) return Error(InvalidArgument("spec: required, the machine's detected spec"));
      auto spec = api::DecodeMachineSpec(json::serialize(*sv));
      if (!spec.ok()) return Error(Status(spec.status().code(), "spec." + spec.status().message()));
      auto v = b_->EnrollMachine(addr, *token, std::move(spec->spec), std::move(spec->canonical_json),
                                 channel_payments);
      return v.ok() ? MachineOut(*v, 201) : Error(v.status());
    }
    if (seg.size() == 2 && seg[1] == "heartbeat" && req.method == "POST") {
      std::string health = "{}";
      if (!req.body.empty()) {
        auto obj = api::ParseObject(req.body);
        if (!obj.ok()) return Error(obj.status());
        api::Fields f(*obj);
        if (auto st = f.OnlyKnown({"gpus", "note"}); !st.ok()) return Error(st);
        health = json::serialize(*obj);
      }
      int64_t version = 0;
      auto leases = b_->Heartbeat(addr, health, &version);
      if (!leases.ok()) return Error(leases.status());
      json::array arr;
      for (const auto& al : *leases) {
        json::object o = api::EncodeLease(al.lease, b_->RunningMs(al.lease), b_->NowMs());
        o["paid_until"] = al.paid_until_ms ? json::value(FormatTime(al.paid_until_ms)) : json::value(nullptr);
        o["log_offset"] = al.log_offset;
        arr.push_back(std::move(o));
      }
      return Ok(json::object{{"heartbeat_seconds", static_cast<double>(b_->options().heartbeat_ms) / 1000.0},
                             {"lease_version", version},
                             {"leases", std::move(arr)}});
    }
    // The long-poll: held until a lease of this machine changes after
    // `lease_version` (from the heartbeat), or `timeout_ms` passes.
    if (seg.size() == 2 && seg[1] == "wait" && req.method == "POST") {
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto st = f.OnlyKnown({"lease_version", "timeout_ms"}); !st.ok()) return Error(st);
      auto version = f.OptInt("lease_version", 0, 0, INT64_MAX);
      if (!version.ok()) return Error(version.status());
      auto timeout = f.OptInt("timeout_ms", 20'000, 0, MachineWakeups::kMaxTimeoutMs);
      if (!timeout.ok()) return Error(timeout.status());
      std::shared_ptr<net::Responder> responder = req.responder;
      if (!responder) return Error(Internal("this server cannot hold requests"));
      Status st = b_->WaitForLeaseChange(addr, *version, *timeout, [responder](bool changed, int64_t v) {
        responder->Send(Ok(json::object{{"changed", changed}, {"lease_version", v}}));
      });
      if (!st.ok()) return Error(st);
      return HttpResponse::Deferred();
    }
    if (seg.size() == 2 && seg[1] == "offer" && req.method == "PUT") {
      auto lr = DecodeListing(req.body);
      if (!lr.ok()) return Error(lr.status());
      auto v = b_->AgentListOffer(addr, *lr);
      return v.ok() ? MachineOut(*v) : Error(v.status());
    }
    if (seg.size() == 4 && seg[1] == "leases" && seg[3] == "output" && req.method == "POST") {
      auto id = ParseId(seg[2], "lease id");
      if (!id.ok()) return Error(id.status());
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto st = f.OnlyKnown({"offset", "data", "metering"}); !st.ok()) return Error(st);
      auto offset = f.OptInt("offset", 0, 0, INT64_MAX / 2);
      if (!offset.ok()) return Error(offset.status());
      auto data = f.OptString("data", "");
      if (!data.ok()) return Error(data.status());
      std::optional<Metering> metering;
      if (const json::value* mv = obj->if_contains("metering"); mv && mv->is_object()) {
        api::Fields mf(mv->get_object(), "metering.");
        if (auto st = mf.OnlyKnown({"wall_seconds", "cpu_seconds", "peak_memory_bytes", "oom_kills", "net_rx_bytes",
                                    "net_tx_bytes", "gpu_energy_joules", "gpu_utilization_pct", "gpu_simulated"});
            !st.ok())
          return Error(st);
        Metering m;
        auto wall = mf.Number("wall_seconds");
        auto cpu = mf.Number("cpu_seconds");
        auto peak = mf.Int("peak_memory_bytes", 0, INT64_MAX);
        auto ooms = mf.Int("oom_kills", 0, INT64_MAX);
        for (const Status* st : {&wall.status(), &cpu.status(), &peak.status(), &ooms.status()})
          if (!st->ok()) return Error(*st);
        m.wall_seconds = *wall;
        m.cpu_seconds = *cpu;
        m.peak_memory_bytes = *peak;
        m.oom_kills = *ooms;
        auto rx = mf.OptInt("net_rx_bytes", 0, 0, INT64_MAX);
        auto tx = mf.OptInt("net_tx_bytes", 0, 0, INT64_MAX);
        if (!rx.ok()) return Error(rx.status());
        if (!tx.ok()) return Error(tx.status());
        m.net_rx_bytes = *rx;
        m.net_tx_bytes = *tx;
        if (mf.Has("gpu_energy_joules")) {
          auto e = mf.Number("gpu_energy_joules");
          if (!e.ok()) return Error(e.status());
          if (!(*e >= 0 && *e < 1e15)) return Error(InvalidArgument("metering.gpu_energy_joules: 0 or more"));
          m.gpu_energy_joules = *e;
        }
        if (mf.Has("gpu_utilization_pct")) {
          auto u = mf.Number("gpu_utilization_pct");
          if (!u.ok()) return Error(u.status());
          if (!(*u >= 0 && *u <= 100)) return Error(InvalidArgument("metering.gpu_utilization_pct: 0 to 100"));
          m.gpu_utilization_pct = *u;
        }
        if (const json::value* gs = mv->get_object().if_contains("gpu_simulated"); gs && !gs->is_null()) {
          if (!gs->is_bool()) return Error(InvalidArgument("metering.gpu_simulated: true or false"));
          m.gpu_simulated = gs->get_bool();
        }
        metering = m;
      }
      Status st = b_->AppendLeaseOutput(addr, *id, *offset, *data, metering);
      return st.ok() ? Ok(json::object{{"ok", true}}) : Error(st);
    }
    return Error(NotFound("no route for " + req.method + " " + req.path));
  }

  // {"price_gpu", "min_chunk", "end_date", "price_disk"}: a listing's terms.
  static Result<market::ListOfferRequest> DecodeListing(std::string_view body) {
    GRID_ASSIGN_OR_RETURN(json::object obj, api::ParseObject(body));
    api::Fields f(obj);
    GRID_RETURN_IF_ERROR(f.OnlyKnown({"price_gpu", "min_chunk", "end_date", "price_disk"}));
    market::ListOfferRequest lr;
    GRID_ASSIGN_OR_RETURN(lr.price_per_gpu_hour, f.Money("price_gpu"));
    GRID_ASSIGN_OR_RETURN(int64_t chunk, f.OptInt("min_chunk", 1, 1, market::kMaxGpusPerMachine));
    lr.min_chunk = static_cast<int>(chunk);
    if (f.Has("end_date")) {
      GRID_ASSIGN_OR_RETURN(std::string d, f.String("end_date"));
      if (!ParseTime(d, &lr.end_date_ms))
        return InvalidArgument("end_date: expected a date such as 2027-06-30 or an RFC 3339 time");
    }
    if (f.Has("price_disk")) {
      GRID_ASSIGN_OR_RETURN(lr.storage_cost, f.Money("price_disk"));
    }
    return lr;
  }

  // GET /v1/offers?q=QUERY&order=ORDER&limit=N&explain=1&no_default=1
  HttpResponse SearchOffers(const HttpRequest& req) {
    std::string q_text, order_text;
    int64_t limit = 64;
    bool explain = false, no_default = false;
    auto flag = [](std::string_view k, const std::string& v) -> Result<bool> {
      if (v == "1" || v == "true" || v.empty()) return true;
      if (v == "0" || v == "false") return false;
      return InvalidArgument(std::string(k) + ": expected 1 or 0, got \"" + v.substr(0, 32) + "\"");
    };
    for (const auto& [k, v] : req.query) {
      if (k == "q") {
        q_text = v;
      } else if (k == "order") {
        order_text = v;
      } else if (k == "limit") {
        int64_t n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc::result_out_of_range || (ec == std::errc() && p == v.data() + v.size() && n > query::kMaxLimit))
          return Error(InvalidArgument("limit: at most " + std::to_string(query::kMaxLimit) + ", got " + v.substr(0, 32)));
        if (ec != std::errc() || p != v.data() + v.size() || n < 0)
          return Error(InvalidArgument("limit: expected a whole number from 0 to " + std::to_string(query::kMaxLimit) +
                                       ", got \"" + v.substr(0, 32) + "\""));
        limit = n;
      } else if (k == "explain" || k == "no_default") {
        auto b = flag(k, v);
        if (!b.ok()) return Error(b.status());
        (k == "explain" ? explain : no_default) = *b;
      } else if (query::LookupField(k)) {
        // The old simple filters (gpu_name=, num_gpus=, …) are clauses now.
        return Error(InvalidArgument(k + ": search fields go in the query, e.g. q=" + k + "%3D... (known parameters: q, "
                                         "order, limit, explain, no_default)"));
      } else {
        return Error(InvalidArgument(k + ": unknown search parameter (known: q, order, limit, explain, no_default)"));
      }
    }
    if (q_text.size() > 8192) return Error(InvalidArgument("q: at most 8192 characters"));
    auto q = query::Parse(q_text);
    if (!q.ok()) return Error(q.status());
    auto order = query::ParseOrder(order_text);
    if (!order.ok()) return Error(order.status());
    auto r = b_->SearchOffers(*q, *order, limit, explain, no_default);
    if (!r.ok()) return Error(r.status());
    // The body is written straight into one string (api::AppendOffer): the
    // same bytes json::serialize gave for the tree it replaces.
    auto machine_of = [&](int64_t id) -> std::optional<api::OfferMachine> {
      const OfferMachineFields* m = r->Machine(id);
      if (!m) return std::nullopt;
      return api::OfferMachine{m->provider, m->min_chunk, m->end_date_ms, m->channel_payee};
    };
    HttpResponse res{200, "application/json", {}, {}};
    std::string& body = res.body;
    body.reserve(64 + r->result.offers.size() * 1024);
    body += "{\"offers\":[";
    bool first = true;
    for (const auto& row : r->result.offers) {
      auto m = row.machine_id ? machine_of(*row.machine_id) : std::nullopt;
      if (!m) continue;  // (cannot happen: the broker adds every machine)
      if (!first) body += ',';
      first = false;
      api::AppendOffer(body, row, *m);
    }
    body += "],\"total\":";
    char num[24];
    body.append(num, std::to_chars(num, num + sizeof num, r->result.total).ptr);
    body += ",\"query\":";
    api::AppendJsonString(body, query::Format(r->query));
    body += ",\"order\":";
    api::AppendJsonString(body, query::FormatOrder(r->order));
    if (r->result.explain) {
      body += ",\"explain\":";
      body += api::Serialize(api::EncodeExplain(*r->result.explain, machine_of));
    }
    body += '}';
    return res;
  }

  json::object LeaseJson(const market::Lease& l) {
    json::object o = api::EncodeLease(l, b_->RunningMs(l), b_->NowMs());
    if (auto m = b_->MeteringOf(l.id)) {
      auto opt = [](const std::optional<double>& v) { return v ? json::value(*v) : json::value(nullptr); };
      o["metering"] = json::object{{"wall_seconds", m->wall_seconds},
                                   {"cpu_seconds", m->cpu_seconds},
                                   {"peak_memory_bytes", m->peak_memory_bytes},
                                   {"oom_kills", m->oom_kills},
                                   {"net_rx_bytes", m->net_rx_bytes},
                                   {"net_tx_bytes", m->net_tx_bytes},
                                   {"gpu_energy_joules", opt(m->gpu_energy_joules)},
                                   {"gpu_utilization_pct", opt(m->gpu_utilization_pct)},
                                   {"gpu_simulated", m->gpu_simulated},
                                   {"reported_at", FormatTime(m->reported_ms)}};
    } else {
      o["metering"] = nullptr;
    }
    return o;
  }
  HttpResponse LeaseOut(const market::Lease& l, int status = 200) { return Json(status, LeaseJson(l)); }

  HttpResponse Leases(const HttpRequest& req, const std::vector<std::string_view>& seg, const std::string& addr) {
    if (seg.size() == 1 && req.method == "POST") return CreateLease(req, addr);
    if (seg.size() == 1 && req.method == "GET") {
      json::array arr;
      for (const auto& l : b_->ListLeases(addr)) arr.push_back(LeaseJson(l));
      return Ok(json::object{{"leases", std::move(arr)}});
    }
    if (seg.size() < 2) return Error(NotFound("no route for " + req.method + " " + req.path));
    auto id = ParseId(seg[1], "lease id");
    if (!id.ok()) return Error(id.status());
    if (seg.size() == 2 && req.method == "GET") {
      auto l = b_->GetLease(addr, *id);
      return l.ok() ? LeaseOut(*l) : Error(l.status());
    }
    if (seg.size() == 3 && seg[2] == "logs" && req.method == "GET") {
      int64_t offset = 0;
      size_t limit = 64 * 1024;
      if (const std::string* q = req.Query("offset")) {
        auto v = ParseOffset(*q);
        if (!v.ok()) return Error(v.status());
        offset = *v;
      }
      if (const std::string* q = req.Query("limit")) {
        auto v = ParseId(*q, "limit");
        if (!v.ok()) return Error(v.status());
        limit = static_cast<size_t>(std::min<int64_t>(*v, 256 * 1024));
      }
      auto log = b_->ReadLeaseOutput(addr, *id, offset, limit);
      if (!log.ok()) return Error(log.status());
      return Ok(json::object{{"offset", log->start_offset},
                             {"next_offset", log->end_offset()},
                             {"data", log->data}});
    }
    if (seg.size() == 3 && seg[2] == "stop" && req.method == "POST") {
      auto l = b_->StopLease(addr, *id);
      return l.ok() ? LeaseOut(*l) : Error(l.status());
    }
    // Payment channels (docs/channels.md): the renter's vouchers, in their
    // wire form; and a look at the chain after a redeem or close.
    if (seg.size() == 3 && seg[2] == "vouchers" && req.method == "POST") {
      auto v = crypto::DecodeVoucher(req.body);
      if (!v.ok()) return Error(v.status());
      auto l = b_->SubmitVoucher(addr, *id, *v);
      return l.ok() ? LeaseOut(*l) : Error(l.status());
    }
    if (seg.size() == 4 && seg[2] == "channel" && seg[3] == "sync" && req.method == "POST") {
      std::string close_tx;
      if (!req.body.empty()) {
        auto obj = api::ParseObject(req.body);
        if (!obj.ok()) return Error(obj.status());
        api::Fields f(*obj);
        if (auto s = f.OnlyKnown({"close_tx"}); !s.ok()) return Error(s);
        auto tx = f.OptString("close_tx", "");
        if (!tx.ok()) return Error(tx.status());
        close_tx = *tx;
        for (char& c : close_tx) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      auto l = b_->SyncChannel(addr, *id, close_tx);
      return l.ok() ? LeaseOut(*l) : Error(l.status());
    }
    if (seg.size() == 3 && seg[2] == "status" && req.method == "POST") {
      auto obj = api::ParseObject(req.body);
      if (!obj.ok()) return Error(obj.status());
      api::Fields f(*obj);
      if (auto s = f.OnlyKnown({"state", "message", "endpoints"}); !s.ok()) return Error(s);
      auto st = f.String("state");
      if (!st.ok()) return Error(st.status());
      market::LeaseState to;
      bool failed = *st == "failed";
      if (failed) {
        to = market::LeaseState::kEnded;
      } else if (!market::ParseLeaseState(*st, &to) || to == market::LeaseState::kPending) {
        return Error(InvalidArgument("state: expected \"running\", \"failed\" or \"ended\", got \"" +
                                     st->substr(0, 32) + "\""));
      }
      auto msg = f.OptString("message", "");
      if (!msg.ok()) return Error(msg.status());
      std::optional<ReportedEndpoints> endpoints;
      if (const json::value* ev = obj->if_contains("endpoints"); ev && !ev->is_null()) {
        auto e = DecodeEndpoints(*ev, req.remote_address);
        if (!e.ok()) return Error(e.status());
        endpoints = std::move(*e);
      }
      auto l = b_->ReportLease(addr, *id, to, *msg, failed, endpoints);
      return l.ok() ? LeaseOut(*l) : Error(l.status());
    }
    return Error(NotFound("no route for " + req.method + " " + req.path));
  }

  HttpResponse CreateLease(const HttpRequest& req, const std::string& addr) {
    auto obj = api::ParseObject(req.body);
    if (!obj.ok()) return Error(obj.status());
    api::Fields f(*obj);
    if (auto s = f.OnlyKnown({"offer_id", "gpus", "image", "env", "command", "ports", "ssh_key", "order", "pay"});
        !s.ok())
      return Error(s);
    market::CreateLeaseRequest r;
    auto offer = f.Int("offer_id", 1, INT64_MAX);
    if (!offer.ok()) return Error(offer.status());
    r.offer_id = *offer;
    auto gpus = f.OptInt("gpus", 0, 0, market::kMaxGpusPerMachine);
    if (!gpus.ok()) return Error(gpus.status());
    r.gpus = static_cast<int>(*gpus);
    auto image = f.String("image");
    if (!image.ok()) return Error(image.status());
    if (image->empty() || image->size() > 256) return Error(InvalidArgument("image: 1 to 256 characters"));
    r.image = *image;
    auto env = f.StringList("env");
    if (!env.ok()) return Error(env.status());
    for (const auto& e : *env)
      if (e.find('=') == std::string::npos || e.front() == '=')
        return Error(InvalidArgument("env: expected K=V, got \"" + e.substr(0, 40) + "\""));
    r.env = *env;
    auto cmd = f.StringList("command");
    if (!cmd.ok()) return Error(cmd.status());
    r.command = *cmd;
    if (const json::value* pv = obj->if_contains("ports"); pv && !pv->is_null()) {
      if (!pv->is_array()) return Error(InvalidArgument("ports: expected a list of TCP ports"));
      for (const json::value& p : pv->get_array()) {
        if (!p.is_int64() || p.get_int64() < 1 || p.get_int64() > 65535)
          return Error(InvalidArgument("ports: expected a list of TCP ports (1-65535)"));
        r.ports.push_back(static_cast<int>(p.get_int64()));
      }
    }
    auto ssh_key = f.OptString("ssh_key", "");
    if (!ssh_key.ok()) return Error(ssh_key.status());
    r.ssh_key = *ssh_key;
    const json::value* ov = obj->if_contains("order");
    if (!ov || !ov->is_object()) return Error(InvalidArgument("order: required, the signed EIP-712 LeaseOrder"));
    api::Fields of(ov->get_object(), "order.");
    if (auto s = of.OnlyKnown({"offer_id", "gpus", "price_per_hour", "nonce", "expiry", "signature"}); !s.ok())
      return Error(s);
    auto o_offer = of.Int("offer_id", 1, INT64_MAX);
    if (!o_offer.ok()) return Error(o_offer.status());
    auto o_gpus = of.Int("gpus", 1, market::kMaxGpusPerMachine);
    if (!o_gpus.ok()) return Error(o_gpus.status());
    auto o_price = of.Money("price_per_hour");
    if (!o_price.ok()) return Error(o_price.status());
    auto o_nonce = of.String("nonce");
    if (!o_nonce.ok()) return Error(o_nonce.status());
    uint64_t nonce = 0;
    {
      auto [p, ec] = std::from_chars(o_nonce->data(), o_nonce->data() + o_nonce->size(), nonce);
      if (ec != std::errc() || p != o_nonce->data() + o_nonce->size())
        return Error(InvalidArgument("order.nonce: expected a decimal integer string below 2^64"));
    }
    auto o_exp = of.Int("expiry", 1, INT64_MAX / 1000);
    if (!o_exp.ok()) return Error(o_exp.status());
    auto o_sig = of.String("signature");
    if (!o_sig.ok()) return Error(o_sig.status());
    r.order = market::SignedOrder{*o_offer, static_cast<int>(*o_gpus), *o_price, nonce, *o_exp, *o_sig};
    if (r.gpus == 0) r.gpus = r.order.gpus;
    if (const json::value* pv = obj->if_contains("pay"); pv && !pv->is_null()) {
      auto channel = DecodePay(*pv);
      if (!channel.ok()) return Error(channel.status());
      r.channel = market::ChannelPayment{.channel = *channel};
    }
    auto l = b_->CreateLease(addr, std::move(r));
    return l.ok() ? LeaseOut(*l, 201) : Error(l.status());
  }

  HttpResponse ChainStatus(const std::string& addr) {
    if (!b_->IsAdmin(addr)) return Error(PermissionDenied("the chain status is for the broker's operators (--admin)"));
    if (!chain_) return Error(Status(Code::kConflict, "this broker runs without a chain (no --chain-rpc)"));
    HttpResponse r;
    r.body = chain_->status_json();
    return r;
  }

  HttpResponse Audit(const std::string& addr) {
    if (!b_->IsAdmin(addr)) return Error(PermissionDenied("the audit is for the broker's operators (--admin)"));
    auto r = b_->Audit();
    if (!r.ok()) return Error(r.status());
    if (chain_) {
      auto c = chain_->audit();
      if (!c.ok()) return Error(Status(Code::kUnavailable, "chain audit: " + c.status().message()));
      r->Merge(*c);
    }
    json::array checks, failures;
    for (const auto& c : r->checks) checks.push_back(json::string(c));
    for (const auto& f : r->failures) failures.push_back(json::string(f));
    return Ok(json::object{{"ok", r->ok()}, {"checks", std::move(checks)}, {"failures", std::move(failures)}});
  }

  HttpResponse MetricsText() {
    return HttpResponse{200, "text/plain; version=0.0.4", metrics_.Render(b_->GetStats()), {}};
  }

  Broker* b_;
  std::shared_ptr<const ChainApi> chain_;
  Metrics metrics_;
};

}  // namespace

net::HttpHandler MakeApiHandler(Broker* broker, std::shared_ptr<const ChainApi> chain) {
  auto api = std::make_shared<Api>(broker, std::move(chain));
  return [api](const net::HttpRequest& req) { return api->Handle(req); };
}

}  // namespace grid::broker
