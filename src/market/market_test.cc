#include "market/market.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace grid::market {
namespace {

const std::string kProv = "0x00000000000000000000000000000000000000aa";
const std::string kProv2 = "0x00000000000000000000000000000000000000bb";
const std::string kRenter = "0x00000000000000000000000000000000000000cc";
constexpr UnixMs kNow = 1'700'000'000'000;
constexpr Micros kPrice = 2'000'000;  // 2 USD per GPU-hour

MachineSpec Spec(int gpus = 8, std::string name = "H100 SXM 80GB", std::string geo = "US") {
  MachineSpec s;
  s.gpu_name = std::move(name);
  s.num_gpus = gpus;
  s.gpu_ram = 80;
  s.cpu_cores = 64;
  s.cpu_ram = 512;
  s.disk_space = 1000;
  s.inet_up = 1000;
  s.inet_down = 1000;
  s.geolocation = std::move(geo);
  return s;
}

// Registers and (optionally) lists a machine, returning its id.
int64_t AddMachine(Market& m, const std::string& provider = kProv, int gpus = 8, Micros price = kPrice,
                   int min_chunk = 1, bool list = true, MachineSpec spec = {}) {
  if (spec.num_gpus == 0) spec = Spec(gpus);
  auto r = m.PlanRegister(provider, spec, "{}", kNow);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  m.Put(*r);
  int64_t id = r->id;
  if (list) {
    auto l = m.PlanListOffer(provider, ListOfferRequest{id, price, min_chunk, 0, 0}, kNow);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    m.Put(*l);
  }
  return id;
}

CreateLeaseRequest Req(const Market& m, int64_t offer_id, int gpus = 0) {
  CreateLeaseRequest r;
  r.renter = kRenter;
  r.offer_id = offer_id;
  r.gpus = gpus;
  r.image = "pytorch/pytorch:latest";
  r.fee_bps = 500;
  auto o = m.FindOffer(offer_id);
  int n = gpus > 0 ? gpus : (o.ok() ? o->num_gpus : 0);
  r.order.offer_id = offer_id;
  r.order.gpus = n;
  r.order.price_per_hour = o.ok() ? o->machine->listing.price_per_gpu_hour * n : 0;
  r.order.nonce = 1;
  r.order.expiry_s = kNow / 1000 + 600;
  r.order.signature = "0x" + std::string(130, '1');
  return r;
}

Lease Create(Market& m, int64_t offer_id, int gpus = 0) {
  auto r = m.PlanCreateLease(Req(m, offer_id, gpus), m.next_lease_id(), kNow);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  m.Put(*r);
  return *r;
}

void End(Market& m, Lease l) {
  l.state = LeaseState::kEnded;
  l.end_reason = EndReason::kRenterStopped;
  m.Put(l);
}

std::vector<int64_t> AllOffers(const Market& m) {
  std::vector<int64_t> out;
  m.ForEachOffer([&](const Offer& o) {
    out.push_back(o.id);
    return true;
  });
  return out;
}

// --- names

TEST(MarketNames, StatesAndReasonsRoundTrip) {
  for (auto s : {LeaseState::kPending, LeaseState::kRunning, LeaseState::kEnded}) {
    LeaseState out{};
    ASSERT_TRUE(ParseLeaseState(LeaseStateName(s), &out));
    EXPECT_EQ(out, s);
  }
  for (auto r : {EndReason::kNone, EndReason::kRenterStopped, EndReason::kInsufficientFunds, EndReason::kEndDate,
                 EndReason::kHostLost, EndReason::kFailed}) {
    EndReason out = EndReason::kFailed;
    ASSERT_TRUE(ParseEndReason(EndReasonName(r), &out)) << EndReasonName(r);
    EXPECT_EQ(out, r);
  }
  EXPECT_EQ(EndReasonName(EndReason::kInsufficientFunds), "insufficient_funds");
  EXPECT_EQ(EndReasonName(EndReason::kHostLost), "host_lost");
  LeaseState s{};
  EXPECT_FALSE(ParseLeaseState("Running", &s));
  EndReason r{};
  EXPECT_FALSE(ParseEndReason("bogus", &r));
}

// --- machines

TEST(MarketMachines, ValidateSpecNamesTheField) {
  struct Case { const char* field; std::function<void(MachineSpec&)> corrupt; };
  std::vector<Case> cases = {
      {"gpu_name", [](MachineSpec& s) { s.gpu_name = ""; }},
      {"gpu_name", [](MachineSpec& s) { s.gpu_name = std::string(101, 'x'); }},
      {"num_gpus", [](MachineSpec& s) { s.num_gpus = 0; }},
      {"num_gpus", [](MachineSpec& s) { s.num_gpus = kMaxGpusPerMachine + 1; }},
      {"gpu_ram", [](MachineSpec& s) { s.gpu_ram = -1; }},
      {"gpu_ram", [](MachineSpec& s) { s.gpu_ram = std::nan(""); }},
      {"cpu_ram", [](MachineSpec& s) { s.cpu_ram = 1e13; }},
      {"disk_space", [](MachineSpec& s) { s.disk_space = -0.5; }},
      {"inet_up", [](MachineSpec& s) { s.inet_up = -1; }},
      {"inet_down", [](MachineSpec& s) { s.inet_down = std::numeric_limits<double>::infinity(); }},
      {"cpu_cores", [](MachineSpec& s) { s.cpu_cores = -1; }},
      {"geolocation", [](MachineSpec& s) { s.geolocation = "us"; }},
      {"geolocation", [](MachineSpec& s) { s.geolocation = "USA"; }},
      {"geolocation", [](MachineSpec& s) { s.geolocation = ""; }},
  };
  EXPECT_TRUE(ValidateSpec(Spec()).ok());
  MachineSpec edge = Spec(kMaxGpusPerMachine);
  edge.gpu_ram = 0;
  EXPECT_TRUE(ValidateSpec(edge).ok());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.field);
    MachineSpec s = Spec();
    c.corrupt(s);
    Status st = ValidateSpec(s);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_EQ(st.message().rfind(c.field, 0), 0u) << st.message();
    Market m;
    EXPECT_EQ(m.PlanRegister(kProv, s, "{}", kNow).status().code(), Code::kInvalidArgument);
  }
}

TEST(MarketMachines, RegisterAssignsIdsAndPutMakesCurrent) {
  Market m;
  auto r = m.PlanRegister(kProv, Spec(4), "{\"x\":1}", kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->id, 1);
  EXPECT_EQ(r->provider, kProv);
  EXPECT_EQ(r->spec_json, "{\"x\":1}");
  EXPECT_EQ(r->created_ms, kNow);
  EXPECT_FALSE(r->listing.listed);
  EXPECT_EQ(m.FindMachine(1), nullptr);  // Plan changes nothing
  EXPECT_EQ(m.next_machine_id(), 1);
  m.Put(*r);
  ASSERT_NE(m.FindMachine(1), nullptr);
  EXPECT_EQ(m.next_machine_id(), 2);
  EXPECT_EQ(m.FreeGpus(1), 4);
  EXPECT_EQ(m.FreeGpus(99), 0);
  // Unlisted: no offers.
  EXPECT_TRUE(AllOffers(m).empty());
  // Restoring a machine with a high id moves next id past it.
  Machine restored = *r;
  restored.id = 41;
  m.Put(restored);
  EXPECT_EQ(m.next_machine_id(), 42);
}

TEST(MarketMachines, ListAndUnlistPermissionsAndValidation) {
  Market m;
  int64_t id = AddMachine(m, kProv, 4, kPrice, 1, /*list=*/false);
  struct Case { const char* name; std::string caller; ListOfferRequest req; Code want; };
  std::vector<Case> cases = {
      {"ok", kProv, {id, kPrice, 2, kNow + 1000, 5}, Code::kOk},
      {"unknown machine", kProv, {id + 1, kPrice, 1, 0, 0}, Code::kNotFound},
      {"not the provider", kProv2, {id, kPrice, 1, 0, 0}, Code::kPermissionDenied},
      {"zero price", kProv, {id, 0, 1, 0, 0}, Code::kInvalidArgument},
      {"negative price", kProv, {id, -1, 1, 0, 0}, Code::kInvalidArgument},
      {"price overflows dph_total", kProv, {id, INT64_MAX / 2, 1, 0, 0}, Code::kInvalidArgument},
      {"min_chunk 0", kProv, {id, kPrice, 0, 0, 0}, Code::kInvalidArgument},
      {"min_chunk above gpus", kProv, {id, kPrice, 5, 0, 0}, Code::kInvalidArgument},
      {"min_chunk = gpus", kProv, {id, kPrice, 4, 0, 0}, Code::kOk},
      {"end date now", kProv, {id, kPrice, 1, kNow, 0}, Code::kInvalidArgument},
      {"end date past", kProv, {id, kPrice, 1, kNow - 1, 0}, Code::kInvalidArgument},
      {"negative storage", kProv, {id, kPrice, 1, 0, -1}, Code::kInvalidArgument},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = m.PlanListOffer(c.caller, c.req, kNow);
    EXPECT_EQ(r.status().code(), c.want) << r.status().ToString();
    if (r.ok()) {
      EXPECT_TRUE(r->listing.listed);
      EXPECT_EQ(r->listing.price_per_gpu_hour, c.req.price_per_gpu_hour);
      EXPECT_EQ(r->listing.min_chunk, c.req.min_chunk);
      EXPECT_EQ(r->listing.end_date_ms, c.req.end_date_ms);
      EXPECT_EQ(r->listing.storage_cost, c.req.storage_cost);
      EXPECT_EQ(r->updated_ms, kNow);
    }
    EXPECT_FALSE(m.FindMachine(id)->listing.listed);  // nothing applied
  }
  EXPECT_EQ(m.PlanUnlist(kProv2, id, kNow).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(m.PlanUnlist(kProv, id + 7, kNow).status().code(), Code::kNotFound);
  m.Put(*m.PlanListOffer(kProv, {id, kPrice, 1, 0, 0}, kNow));
  EXPECT_EQ(AllOffers(m).size(), 4u);
  auto u = m.PlanUnlist(kProv, id, kNow + 5);
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->listing.listed);
  EXPECT_EQ(u->listing.price_per_gpu_hour, kPrice);  // keeps the price for relisting
  EXPECT_EQ(u->updated_ms, kNow + 5);
  EXPECT_EQ(AllOffers(m).size(), 4u);
  m.Put(*u);
  EXPECT_TRUE(AllOffers(m).empty());
}

// --- offers

TEST(MarketOffers, ChunksOfMinChunkUpToFreeGpus) {
  Market m;
  int64_t a = AddMachine(m, kProv, 8, kPrice, 2);
  EXPECT_EQ(AllOffers(m), (std::vector<int64_t>{a * 1000 + 2, a * 1000 + 4, a * 1000 + 6, a * 1000 + 8}));
  m.ForEachOffer([&](const Offer& o) {
    EXPECT_EQ(o.machine_id, a);
    EXPECT_EQ(o.id, a * kOfferIdBase + o.num_gpus);
    EXPECT_EQ(o.dph_total, kPrice * o.num_gpus);
    EXPECT_EQ(o.machine, m.FindMachine(a));
    return true;
  });
  int64_t b = AddMachine(m, kProv, 3, kPrice, 2);  // 3 GPUs in chunks of 2: one offer
  int b_offers = 0;
  m.ForEachOffer([&](const Offer& o) { return b_offers += o.machine_id == b, true; });
  EXPECT_EQ(b_offers, 1);
  // ForEachOffer stops when asked.
  int visits = 0;
  m.ForEachOffer([&](const Offer&) { return ++visits < 2; });
  EXPECT_EQ(visits, 2);
}

TEST(MarketOffers, ShrinkWhileLeasedAndReturnWhenEnded) {
  Market m;
  int64_t id = AddMachine(m, kProv, 8, kPrice, 2);
  Lease l1 = Create(m, id * 1000 + 4);
  EXPECT_EQ(l1.gpus, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(m.FreeGpus(id), 4);
  EXPECT_EQ(AllOffers(m), (std::vector<int64_t>{id * 1000 + 2, id * 1000 + 4}));
  Lease l2 = Create(m, id * 1000 + 2);
  EXPECT_EQ(l2.gpus, (std::vector<int>{4, 5}));
  EXPECT_EQ(AllOffers(m), (std::vector<int64_t>{id * 1000 + 2}));
  // A running lease still holds its GPUs.
  l1.state = LeaseState::kRunning;
  m.Put(l1);
  EXPECT_EQ(m.FreeGpus(id), 2);
  End(m, l1);
  EXPECT_EQ(m.FreeGpus(id), 6);
  EXPECT_EQ(AllOffers(m), (std::vector<int64_t>{id * 1000 + 2, id * 1000 + 4, id * 1000 + 6}));
  // The freed low GPUs are picked first.
  Lease l3 = Create(m, id * 1000 + 6);
  EXPECT_EQ(l3.gpus, (std::vector<int>{0, 1, 2, 3, 6, 7}));
  EXPECT_TRUE(AllOffers(m).empty());
  EXPECT_EQ(m.ActiveLeases().size(), 2u);
  End(m, l2);
  End(m, l3);
  EXPECT_EQ(m.FreeGpus(id), 8);
  EXPECT_TRUE(m.ActiveLeases().empty());
  // Putting an ended lease again changes nothing.
  End(m, l3);
  EXPECT_EQ(m.FreeGpus(id), 8);
}

TEST(MarketOffers, FindOfferDecodesIds) {
  Market m;
  int64_t id = AddMachine(m, kProv, 8, kPrice, 1);
  auto o = m.FindOffer(id * 1000 + 3);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->machine_id, id);
  EXPECT_EQ(o->num_gpus, 3);
  EXPECT_EQ(o->dph_total, 3 * kPrice);
  for (int64_t bad : {int64_t{0}, int64_t{-1}, -(id * 1000 + 3), id * 1000, id * 1000 + 9, (id + 1) * 1000 + 1,
                      int64_t{999}, INT64_MAX, INT64_MIN}) {
    EXPECT_EQ(m.FindOffer(bad).status().code(), Code::kNotFound) << bad;
  }
}

// --- leases

TEST(MarketLeases, PlanCreateLeaseFillsTheLease) {
  Market m;
  int64_t id = AddMachine(m, kProv, 8, kPrice, 1);
  CreateLeaseRequest req = Req(m, id * 1000 + 2);
  req.env = {"A=1"};
  req.command = {"python", "train.py"};
  auto r = m.PlanCreateLease(req, 17, kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, 17);
  EXPECT_EQ(r->renter, kRenter);
  EXPECT_EQ(r->provider, kProv);
  EXPECT_EQ(r->machine_id, id);
  EXPECT_EQ(r->gpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(r->price_per_hour, 2 * kPrice);
  EXPECT_EQ(r->fee_bps, 500);
  EXPECT_EQ(r->image, req.image);
  EXPECT_EQ(r->env, req.env);
  EXPECT_EQ(r->command, req.command);
  EXPECT_EQ(r->order.signature, req.order.signature);
  EXPECT_EQ(r->state, LeaseState::kPending);
  EXPECT_EQ(r->held, 0);
  EXPECT_EQ(r->created_ms, kNow);
  EXPECT_TRUE(r->active());
  EXPECT_EQ(m.FreeGpus(id), 8);  // Plan changes nothing
  m.Put(*r);
  EXPECT_EQ(m.FreeGpus(id), 6);
  EXPECT_EQ(m.next_lease_id(), 18);
  ASSERT_NE(m.FindLease(17), nullptr);
  EXPECT_EQ(m.FindLease(16), nullptr);
  // An explicit GPU count in a request for a bigger offer.
  auto r2 = m.PlanCreateLease(Req(m, id * 1000 + 2, 2), 18, kNow);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->gpus, (std::vector<int>{2, 3}));
}

TEST(MarketLeases, PlanCreateLeaseErrors) {
  Market m;
  int64_t id = AddMachine(m, kProv, 4, kPrice, 2);
  const int64_t offer = id * 1000 + 2;
  struct Case { const char* name; std::function<void(CreateLeaseRequest&)> edit; Code want; UnixMs now = kNow; };
  std::vector<Case> cases = {
      {"ok", [](auto&) {}, Code::kOk},
      {"unknown offer", [](auto& r) { r.offer_id = 99'001; r.order.offer_id = 99'001; }, Code::kNotFound},
      {"no image", [](auto& r) { r.image.clear(); }, Code::kInvalidArgument},
      {"own machine", [](auto& r) { r.renter = kProv; }, Code::kInvalidArgument},
      {"not a multiple of min_chunk", [](auto& r) { r.gpus = 3; r.order.gpus = 3; r.order.price_per_hour = 3 * kPrice; },
       Code::kInvalidArgument},
      {"more than the machine has", [](auto& r) { r.gpus = 6; r.order.gpus = 6; r.order.price_per_hour = 6 * kPrice; },
       Code::kInvalidArgument},
      {"signed another offer", [&](auto& r) { r.order.offer_id = offer + 2; }, Code::kInvalidArgument},
      {"signed another gpu count", [](auto& r) { r.order.gpus = 4; }, Code::kInvalidArgument},
      {"signed a lower price", [](auto& r) { r.order.price_per_hour -= 1; }, Code::kConflict},
      {"signed a higher price", [](auto& r) { r.order.price_per_hour += 1; }, Code::kConflict},
      {"expired order", [](auto& r) { r.order.expiry_s = kNow / 1000; }, Code::kInvalidArgument},
      {"expired long ago", [](auto& r) { r.order.expiry_s = 0; }, Code::kInvalidArgument},
      {"expiry far future", [](auto& r) { r.order.expiry_s = INT64_MAX; }, Code::kOk},
      {"expiry most negative", [](auto& r) { r.order.expiry_s = INT64_MIN; }, Code::kInvalidArgument},
      {"fee rate above 100%", [](auto& r) { r.fee_bps = 10'001; }, Code::kInternal},
      {"negative fee rate", [](auto& r) { r.fee_bps = -1; }, Code::kInternal},
      {"fee rate 100%", [](auto& r) { r.fee_bps = 10'000; }, Code::kOk},
      {"expires within the second", [](auto& r) { r.order.expiry_s = kNow / 1000 + 1; }, Code::kOk, kNow + 999},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    CreateLeaseRequest req = Req(m, offer);
    c.edit(req);
    auto r = m.PlanCreateLease(req, 1, c.now);
    EXPECT_EQ(r.status().code(), c.want) << r.status().ToString();
  }
}

TEST(MarketLeases, NotAvailable) {
  Market m;
  int64_t id = AddMachine(m, kProv, 4, kPrice, 1);
  const int64_t offer = id * 1000 + 3;
  CreateLeaseRequest req = Req(m, offer);
  // Not enough GPUs: another lease took two.
  Lease other = Create(m, id * 1000 + 2);
  auto r = m.PlanCreateLease(req, 9, kNow);
  EXPECT_EQ(r.status().code(), Code::kNotAvailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("2 of 3 GPUs free"), std::string::npos) << r.status().message();
  End(m, other);
  EXPECT_TRUE(m.PlanCreateLease(req, 9, kNow).ok());
  // Unlisted.
  m.Put(*m.PlanUnlist(kProv, id, kNow));
  EXPECT_EQ(m.PlanCreateLease(req, 9, kNow).status().code(), Code::kNotAvailable);
  // Past its end date.
  m.Put(*m.PlanListOffer(kProv, {id, kPrice, 1, kNow + 1000, 0}, kNow));
  EXPECT_TRUE(m.PlanCreateLease(req, 9, kNow + 999).ok());
  EXPECT_EQ(m.PlanCreateLease(req, 9, kNow + 1000).status().code(), Code::kNotAvailable);
  // The price changed after the renter signed: a conflict, not a silent repricing.
  m.Put(*m.PlanListOffer(kProv, {id, kPrice + 1, 1, 0, 0}, kNow));
  EXPECT_EQ(m.PlanCreateLease(req, 9, kNow).status().code(), Code::kConflict);
}

TEST(MarketLeases, HostReportsAndVisibility) {
  Market m;
  int64_t id = AddMachine(m);
  Lease l = Create(m, id * 1000 + 1);
  EXPECT_EQ(m.CheckHostReport(kRenter, l, LeaseState::kRunning).code(), Code::kPermissionDenied);
  EXPECT_EQ(m.CheckHostReport(kProv2, l, LeaseState::kRunning).code(), Code::kPermissionDenied);
  EXPECT_TRUE(m.CheckHostReport(kProv, l, LeaseState::kRunning).ok());
  EXPECT_TRUE(m.CheckHostReport(kProv, l, LeaseState::kEnded).ok());
  EXPECT_EQ(m.CheckHostReport(kProv, l, LeaseState::kPending).code(), Code::kInvalidArgument);
  l.state = LeaseState::kRunning;
  EXPECT_TRUE(m.CheckHostReport(kProv, l, LeaseState::kRunning).ok());
  l.state = LeaseState::kEnded;
  EXPECT_EQ(m.CheckHostReport(kProv, l, LeaseState::kRunning).code(), Code::kConflict);
  EXPECT_TRUE(m.CanSee(kRenter, l));
  EXPECT_TRUE(m.CanSee(kProv, l));
  EXPECT_FALSE(m.CanSee(kProv2, l));
}

TEST(MarketLeases, RestoreLeasesBeforeMachines) {
  // A store may hand back leases before machines; allocation must not depend on order.
  Market src;
  int64_t id = AddMachine(src, kProv, 4, kPrice, 1);
  Lease l = Create(src, id * 1000 + 2);
  Market m;
  m.Put(l);
  m.Put(*src.FindMachine(id));
  EXPECT_EQ(m.FreeGpus(id), 2);
  auto r = m.PlanCreateLease(Req(m, id * 1000 + 2), m.next_lease_id(), kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->gpus, (std::vector<int>{2, 3}));
  EXPECT_EQ(m.PlanCreateLease(Req(m, id * 1000 + 3), m.next_lease_id(), kNow).status().code(), Code::kNotAvailable);
}

// Random create/end sequences: no GPU is ever in two active leases, and the
// market's free counts and offers agree with a recount from the leases.
TEST(MarketLeases, RandomSequencesKeepTheAllocationInvariant) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    Market m;
    std::vector<int64_t> machines;
    for (int i = 0; i < 3; ++i)
      machines.push_back(AddMachine(m, i % 2 ? kProv : kProv2, 1 + static_cast<int>(rng() % 8), kPrice,
                                    1 + static_cast<int>(rng() % 2) * 0));
    int created = 0;
    for (int step = 0; step < 500; ++step) {
      int op = static_cast<int>(rng() % 10);
      auto active = m.ActiveLeases();
      if (op < 6 || active.empty()) {
        int64_t mid = machines[rng() % machines.size()];
        int n = 1 + static_cast<int>(rng() % 4);
        auto r = m.PlanCreateLease(Req(m, mid * 1000 + std::min(n, m.FindMachine(mid)->spec.num_gpus)),
                                   m.next_lease_id(), kNow);
        if (r.ok()) {
          ++created;
          if (rng() % 2) r->state = LeaseState::kRunning;
          m.Put(*r);
        } else {
          ASSERT_EQ(r.status().code(), Code::kNotAvailable) << r.status().ToString();
        }
      } else if (op < 9) {
        Lease l = *active[rng() % active.size()];
        End(m, l);
      } else {
        // Re-put an active lease (a state change): allocation unchanged.
        Lease l = *active[rng() % active.size()];
        l.state = LeaseState::kRunning;
        m.Put(l);
      }
      // Invariant and recount.
      std::map<int64_t, std::set<int>> used;
      for (const Lease* l : m.ActiveLeases()) {
        for (int g : l->gpus) {
          ASSERT_TRUE(used[l->machine_id].insert(g).second)
              << "step " << step << ": GPU " << g << " of machine " << l->machine_id << " in two leases";
          ASSERT_GE(g, 0);
          ASSERT_LT(g, m.FindMachine(l->machine_id)->spec.num_gpus);
        }
      }
      for (int64_t mid : machines) {
        int total = m.FindMachine(mid)->spec.num_gpus;
        ASSERT_EQ(m.FreeGpus(mid), total - static_cast<int>(used[mid].size())) << "step " << step;
        int biggest = 0;
        m.ForEachOffer([&](const Offer& o) {
          if (o.machine_id == mid) biggest = std::max(biggest, o.num_gpus);
          return true;
        });
        ASSERT_EQ(biggest, m.FreeGpus(mid)) << "step " << step;
      }
    }
    EXPECT_GT(created, 50);
  }
}

}  // namespace
}  // namespace grid::market

namespace grid::market {
namespace {

TEST(MarketIndex, ActiveLeasesOnAMachineFollowAllocation) {
  Market m;
  Machine a;
  a.id = 1;
  a.provider = "0xp";
  a.spec.num_gpus = 4;
  m.Put(a);
  Machine b = a;
  b.id = 2;
  m.Put(b);
  auto lease = [](int64_t id, int64_t machine, std::vector<int> gpus, LeaseState st) {
    Lease l;
    l.id = id;
    l.machine_id = machine;
    l.gpus = std::move(gpus);
    l.state = st;
    return l;
  };
  m.Put(lease(10, 1, {0, 1}, LeaseState::kRunning));
  m.Put(lease(11, 1, {2}, LeaseState::kPending));
  m.Put(lease(12, 2, {0}, LeaseState::kRunning));
  m.Put(lease(13, 1, {3}, LeaseState::kEnded));
  auto on1 = m.ActiveLeasesOn(1);
  ASSERT_EQ(on1.size(), 2u);
  EXPECT_EQ(on1[0]->id, 10);
  EXPECT_EQ(on1[1]->id, 11);
  m.Put(lease(10, 1, {0, 1}, LeaseState::kEnded));
  ASSERT_EQ(m.ActiveLeasesOn(1).size(), 1u);
  EXPECT_EQ(m.ActiveLeasesOn(2).size(), 1u);
  EXPECT_TRUE(m.ActiveLeasesOn(3).empty());
}

}  // namespace
}  // namespace grid::market

namespace grid::market {
namespace {

TEST(WorkloadChecksTest, SshPublicKeys) {
  const std::string ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz6Dg3K4p1PDNdH0Jp2mbYw5c8e3JX7eq5W0w6zU9aG";
  EXPECT_TRUE(CheckSshPublicKey(ed).ok());
  EXPECT_TRUE(CheckSshPublicKey(ed + " renter@laptop").ok());
  EXPECT_TRUE(CheckSshPublicKey("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI").ok());
  for (const std::string& bad : {std::string(""), std::string("ssh-ed25519"), std::string("ssh-dss AAAAB3NzaC1kc3MAAACBAP"),
                                std::string("ssh-ed25519 not*base64*at*all!!"), ed + "\nssh-ed25519 AAAA",
                                std::string("-----BEGIN OPENSSH PRIVATE KEY-----"), std::string(9000, 'A')}) {
    Status s = CheckSshPublicKey(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("ssh_key"), std::string::npos) << s.message();
  }
}

TEST(WorkloadChecksTest, Ports) {
  EXPECT_TRUE(CheckPorts({}).ok());
  EXPECT_TRUE(CheckPorts({22, 8888, 65535, 1}).ok());
  EXPECT_FALSE(CheckPorts({0}).ok());
  EXPECT_FALSE(CheckPorts({65536}).ok());
  EXPECT_FALSE(CheckPorts({80, 443, 80}).ok());
  std::vector<int> many;
  for (int i = 0; i <= kMaxPortsPerLease; ++i) many.push_back(1000 + i);
  EXPECT_FALSE(CheckPorts(many).ok());
  many.pop_back();
  EXPECT_TRUE(CheckPorts(many).ok());
}

}  // namespace
}  // namespace grid::market
