#include "market/offer_rows.h"

#include <gtest/gtest.h>

namespace grid::market {
namespace {

constexpr UnixMs kNow = 1'700'000'000'000;
constexpr int64_t kDayMs = 86'400'000;

Machine Listed(int gpus = 8, int min_chunk = 2, Micros price = 2'500'000) {
  Machine m;
  m.id = 41;
  m.provider = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
  m.spec.gpu_name = "H100 SXM 80GB";
  m.spec.num_gpus = gpus;
  m.spec.gpu_ram = 80;
  m.spec.cpu_cores = 64;
  m.spec.cpu_ram = 503.7;
  m.spec.disk_space = 1000.25;
  m.spec.inet_up = 1000;
  m.spec.inet_down = 2500.5;
  m.spec.geolocation = "DE";
  m.spec.datacenter = true;
  m.spec.simulated = true;
  m.spec.extra["gpu_arch"] = std::string("nvidia");
  m.spec.extra["compute_cap"] = int64_t{900};
  m.spec.extra["cuda_vers"] = 12.4;
  m.spec.extra["driver_version"] = std::string("550.54.15");
  m.spec.extra["gpu_mem_bw"] = 3350.0;
  m.spec.extra["pci_gen"] = int64_t{5};  // the agent sends an int; the field is a number
  m.spec.extra["pcie_bw"] = 63.0;
  m.spec.extra["bw_nvlink"] = 900.0;
  m.spec.extra["total_flops"] = 535.2;  // whole machine
  m.spec.extra["dlperf"] = 400.0;
  m.spec.extra["gpu_family"] = std::string("hopper");  // not a query field: ignored
  m.listing = Listing{true, price, min_chunk, 0, 150'000};
  return m;
}

TEST(OfferRows, OneRowPerChunkSizeUpToTheWholeMachine) {
  auto rows = OfferRowsOf(Listed(8, 2), 8, {true, 0.99}, kNow);
  ASSERT_EQ(rows.size(), 4u);
  for (size_t i = 0; i < rows.size(); ++i) {
    int n = 2 * static_cast<int>(i + 1);
    EXPECT_EQ(*rows[i].id, 41 * kOfferIdBase + n);
    EXPECT_EQ(*rows[i].num_gpus, n);
    EXPECT_EQ(*rows[i].machine_id, 41);
    EXPECT_TRUE(*rows[i].rentable);
    EXPECT_FALSE(*rows[i].rented);
  }
  // A chunk size that does not divide the machine stops short of it, as leases do.
  EXPECT_EQ(OfferRowsOf(Listed(7, 2), 7, {}, kNow).size(), 3u);
}

TEST(OfferRows, EveryFieldFromSpecExtraAndListing) {
  auto rows = OfferRowsOf(Listed(8, 2), 8, {true, 0.987654321}, kNow);
  const query::OfferRow& r = rows[1];  // 4 GPUs
  EXPECT_EQ(*r.host_id, 0xf39fd6e51aad8);
  EXPECT_EQ(*r.gpu_name, "H100 SXM 80GB");
  EXPECT_EQ(*r.gpu_ram, 80'000'000);
  EXPECT_EQ(*r.gpu_total_ram, 320'000'000);
  EXPECT_EQ(*r.gpu_arch, "nvidia");
  EXPECT_EQ(*r.compute_cap, 900);
  EXPECT_EQ(*r.cuda_vers, 12'400'000);
  EXPECT_EQ(*r.driver_version, "550.54.15");
  EXPECT_EQ(*r.gpu_mem_bw, 3'350'000'000);
  EXPECT_EQ(*r.bw_nvlink, 900'000'000);
  EXPECT_EQ(*r.pcie_bw, 63'000'000);
  EXPECT_EQ(*r.pci_gen, 5'000'000);
  EXPECT_EQ(*r.total_flops, 267'600'000);  // 535.2 * 4/8
  EXPECT_EQ(*r.dlperf, 200'000'000);
  EXPECT_EQ(*r.cpu_cores, 64);
  EXPECT_EQ(*r.cpu_cores_effective, 32'000'000);
  EXPECT_EQ(*r.cpu_ram, 503'700'000);
  EXPECT_EQ(*r.disk_space, 1'000'250'000);
  EXPECT_FALSE(r.disk_bw.has_value());  // not given: null
  EXPECT_EQ(*r.inet_up, 1'000'000'000);
  EXPECT_EQ(*r.inet_down, 2'500'500'000);
  EXPECT_EQ(*r.geolocation, "DE");
  EXPECT_TRUE(*r.datacenter);
  EXPECT_FALSE(*r.verified);
  EXPECT_EQ(*r.reliability, 987'654);
  EXPECT_EQ(*r.dph_total, 10'000'000);
  EXPECT_EQ(*r.dph_per_gpu, 2'500'000);
  EXPECT_EQ(*r.storage_cost, 150'000);
  EXPECT_FALSE(r.min_bid.has_value());
  EXPECT_EQ(*r.duration, query::kUnlimitedDuration);
  EXPECT_EQ(r.end_date_ms, 0);
  // 200 dlperf / $10/h = 20 per USD/h; 267.6 TFLOPS / $10/h = 26.76.
  EXPECT_EQ(*r.dlperf_per_dphtotal, 20'000'000);
  EXPECT_EQ(*r.flops_per_dphtotal, 26'760'000);
  EXPECT_TRUE(*r.simulated);
  // Every field is set except the ones documented as null here.
  for (const auto& f : query::Fields()) {
    bool expect_null = f.id == query::FieldId::kDiskBw || f.id == query::FieldId::kMinBid;
    EXPECT_EQ(!r.Get(f.id).has_value(), expect_null) << f.name;
  }
}

TEST(OfferRows, RentedRentableFromFreeGpusHostAndEndDate) {
  Machine m = Listed(8, 2);
  auto rows = OfferRowsOf(m, 3, {true, 1.0}, kNow);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(*rows[0].rentable);  // 2 <= 3 free
  EXPECT_FALSE(*rows[0].rented);
  EXPECT_FALSE(*rows[1].rentable);  // 4 > 3 free
  EXPECT_TRUE(*rows[1].rented);

  // An offline host: nothing rentable, but not rented either.
  rows = OfferRowsOf(m, 8, {false, 0.5}, kNow);
  for (const auto& r : rows) {
    EXPECT_FALSE(*r.rentable);
    EXPECT_FALSE(*r.rented);
  }

  // End date ahead: duration in days; passed: not rentable.
  m.listing.end_date_ms = kNow + 3 * kDayMs / 2;
  rows = OfferRowsOf(m, 8, {}, kNow);
  EXPECT_EQ(*rows[0].duration, 1'500'000);
  EXPECT_EQ(rows[0].end_date_ms, m.listing.end_date_ms);
  EXPECT_TRUE(*rows[0].rentable);
  rows = OfferRowsOf(m, 8, {}, m.listing.end_date_ms);
  EXPECT_FALSE(*rows[0].rentable);
  EXPECT_EQ(*rows[0].duration, 0);
}

TEST(OfferRows, UnlistedOrRemovedMachinesHaveNone) {
  Machine m = Listed();
  m.listing.listed = false;
  EXPECT_TRUE(OfferRowsOf(m, 8, {}, kNow).empty());
  m = Listed();
  m.removed = true;
  EXPECT_TRUE(OfferRowsOf(m, 8, {}, kNow).empty());
}

TEST(OfferRows, VerifiedIsTheMachines) {
  Machine m = Listed();
  EXPECT_FALSE(*OfferRowsOf(m, 8, {}, kNow)[0].verified);
  m.verified = true;
  EXPECT_TRUE(*OfferRowsOf(m, 8, {}, kNow)[0].verified);
}

TEST(OfferRows, HandRegisteredMachineHasNoReliability) {
  auto rows = OfferRowsOf(Listed(), 8, {true, std::nullopt}, kNow);
  EXPECT_FALSE(rows[0].reliability.has_value());
}

TEST(OfferRows, ExtraValuesOfTheWrongTypeAreNull) {
  Machine m = Listed(8, 8);
  m.spec.extra["compute_cap"] = std::string("x");
  m.spec.extra["cuda_vers"] = true;
  m.spec.extra["gpu_arch"] = int64_t{3};
  m.spec.extra["pci_gen"] = 4.0;           // a double for a number: fine
  m.spec.extra["total_flops"] = int64_t{100};  // an int for a number: exact
  auto rows = OfferRowsOf(m, 8, {}, kNow);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0].compute_cap.has_value());
  EXPECT_FALSE(rows[0].cuda_vers.has_value());
  EXPECT_FALSE(rows[0].gpu_arch.has_value());
  EXPECT_EQ(*rows[0].pci_gen, 4'000'000);
  EXPECT_EQ(*rows[0].total_flops, 100'000'000);
  m.spec.extra["compute_cap"] = 860.0;  // an integral double for an int
  EXPECT_EQ(*OfferRowsOf(m, 8, {}, kNow)[0].compute_cap, 860);
  m.spec.extra["compute_cap"] = 8.6;
  EXPECT_FALSE(OfferRowsOf(m, 8, {}, kNow)[0].compute_cap.has_value());
}

TEST(OfferRows, PerDphIsNullWithoutAFigure) {
  Machine m = Listed(8, 8);
  m.spec.extra.erase("dlperf");
  auto rows = OfferRowsOf(m, 8, {}, kNow);
  EXPECT_FALSE(rows[0].dlperf.has_value());
  EXPECT_FALSE(rows[0].dlperf_per_dphtotal.has_value());
  EXPECT_TRUE(rows[0].flops_per_dphtotal.has_value());
}

TEST(OfferRows, RowsMatchTheReferenceSemantics) {
  auto rows = OfferRowsOf(Listed(8, 2), 5, {true, 0.99}, kNow);
  auto q = query::Parse("gpu_name=h100_sxm_80gb num_gpus>=4 dph<12 compute_cap>=900 cuda_vers>=12.4");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  std::vector<int64_t> ids;
  for (const auto& r : rows)
    if (query::Matches(query::WithDefaults(*q, {.dev = true}), r)) ids.push_back(*r.id);
  EXPECT_EQ(ids, std::vector<int64_t>{41004});  // 6 and 8 are rented (5 free) and 8 costs $20
}

TEST(OfferRows, HostIdIsStableAndJsonSafe) {
  EXPECT_EQ(HostIdOf("0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266"), HostIdOf("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"));
  EXPECT_LT(*HostIdOf("0xffffffffffffffffffffffffffffffffffffffff"), int64_t{1} << 53);
  EXPECT_FALSE(HostIdOf("alice").has_value());
  EXPECT_FALSE(HostIdOf("0xzz9fd6e51aad88f6f4ce6ab8827279cfffb92266").has_value());
}

}  // namespace
}  // namespace grid::market
