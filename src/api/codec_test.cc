#include "api/codec.h"

#include <gtest/gtest.h>

namespace grid::api {
namespace {

std::string Spec(std::string_view more) {
  return std::string(R"({"gpu_name":"RTX 4090","num_gpus":2,"gpu_ram":24,"cpu_cores":16,"cpu_ram":64,)"
                     R"("disk_space":500,"inet_up":100,"inet_down":100,"geolocation":"DE","datacenter":false)") +
         std::string(more) + "}";
}

TEST(DecodeMachineSpec, KeepsSearchFieldsInExtra) {
  auto d = DecodeMachineSpec(Spec(R"(,"compute_cap":890,"cuda_vers":12.4,"pci_gen":4,"gpu_arch":"nvidia",)"
                             R"("driver_version":"550.1","total_flops":165.2,"gpu_family":"ada")"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(std::get<int64_t>(d->spec.extra.at("compute_cap")), 890);
  EXPECT_EQ(std::get<double>(d->spec.extra.at("cuda_vers")), 12.4);
  EXPECT_EQ(std::get<int64_t>(d->spec.extra.at("pci_gen")), 4);  // an int is a fine number
  EXPECT_EQ(std::get<std::string>(d->spec.extra.at("gpu_family")), "ada");
}

TEST(DecodeMachineSpec, RejectsSearchFieldsOfTheWrongTypeNamingThem) {
  struct Case {
    const char* more;
    const char* message;
  } cases[] = {
      {R"(,"compute_cap":"x")", "compute_cap: expected an integer"},
      {R"(,"compute_cap":8.9)", "compute_cap: expected an integer"},
      {R"(,"cuda_vers":"12.4")", "cuda_vers: expected a number"},
      {R"(,"cuda_vers":true)", "cuda_vers: expected a number"},
      {R"(,"gpu_arch":1)", "gpu_arch: expected a string"},
      {R"(,"driver_version":550)", "driver_version: expected a string"},
      {R"(,"total_flops":1e300)", "total_flops: expected a number"},
      {R"(,"gpu_total_ram":48)", "gpu_total_ram: set by the broker"},
      {R"(,"dph_per_gpu":"1.0")", "dph_per_gpu: set by the broker"},
      {R"(,"min_bid":"1.0")", "min_bid: set by the broker"},
      {R"(,"dlperf_usd":3)", "dlperf_usd: set by the broker"},
      {R"(,"reliability":1)", "reliability: set by the broker"},
  };
  for (const auto& c : cases) {
    auto d = DecodeMachineSpec(Spec(c.more));
    ASSERT_FALSE(d.ok()) << c.more;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
    EXPECT_NE(d.status().message().find(c.message), std::string::npos) << d.status().message();
  }
}

TEST(DecodeMachineSpec, StoredSpecsAreReadUnderTheOlderRules) {
  auto d = DecodeMachineSpec(Spec(R"(,"compute_cap":"x","gpu_total_ram":48)"), /*stored=*/true);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(std::get<std::string>(d->spec.extra.at("compute_cap")), "x");
  // What was refused before still is.
  EXPECT_FALSE(DecodeMachineSpec(Spec(R"(,"dph_total":"1.0")"), true).ok());
}

}  // namespace
}  // namespace grid::api
