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

// AppendOffer must give json::serialize's bytes for EncodeOffer's tree.
json::object TreeOffer(const query::OfferRow& r, const OfferMachine& m) { return EncodeOffer(r, m); }

std::string Appended(const query::OfferRow& r, const OfferMachine& m) {
  std::string s = "[";  // appends after what is there
  AppendOffer(s, r, m);
  return s.substr(1);
}

TEST(AppendOffer, WritesTheBytesOfTheJsonTree) {
  query::OfferRow r;  // every field null
  OfferMachine m{"0xabc", 1, 0};
  EXPECT_EQ(Appended(r, m), json::serialize(TreeOffer(r, m)));

  r.id = 41008;
  r.machine_id = 41;
  r.host_id = INT64_MAX;
  r.gpu_name = "H100 SXM 80GB";
  r.num_gpus = 8;
  r.gpu_ram = 80'000'000;           // whole: an integer
  r.gpu_total_ram = 640'500'000;    // 640.5: a double
  r.cuda_vers = 12'200'000;
  r.reliability = 987'654;          // 0.987654
  r.total_flops = -1;               // -0.000001
  r.dlperf = INT64_MIN;
  r.pcie_bw = INT64_MAX;
  r.dph_total = 2'500'000;
  r.dph_per_gpu = -1;
  r.storage_cost = INT64_MIN;
  r.min_bid = 0;
  r.duration = 1'500'000;
  r.compute_cap = -900;
  r.datacenter = true;
  r.verified = false;
  r.rentable = true;
  r.gpu_arch = std::string("q\"b\\s/\b\f\n\r\t\x01\x1f\x7f end");
  r.driver_version = std::string("nul\0x", 5);
  r.geolocation = "Zürich \xe2\x82\xac \xff";  // UTF-8 and a stray byte, as they are
  m = {"0x03fcad2719822abac0f930a0bc00ce18aeca1200\"\\", 4, 1'798'675'200'123};
  const std::string text = Appended(r, m);
  EXPECT_EQ(text, json::serialize(TreeOffer(r, m)));
  EXPECT_NE(text.find(R"("end_date":"2026-12-31T00:00:00.123Z")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("gpu_arch":"q\"b\\s/\b\f\n\r\t\u0001\u001f)" "\x7f" R"( end")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("driver_version":"nul\u0000x")"), std::string::npos) << text;

  r.duration = query::kUnlimitedDuration;  // no end date: null
  m.end_date_ms = -86'400'000LL * 365 * 3000;  // before year 0: printf's format
  EXPECT_EQ(Appended(r, m), json::serialize(TreeOffer(r, m)));
  EXPECT_NE(Appended(r, m).find(R"("duration":null)"), std::string::npos);
  EXPECT_NE(Appended(r, m).find(R"("channel_payee":null)"), std::string::npos);
  m.channel_payee = "0x00000000000000000000000000000000000000aa";
  EXPECT_EQ(Appended(r, m), json::serialize(TreeOffer(r, m)));
  EXPECT_NE(Appended(r, m).find(R"("channel_payee":"0x00000000000000000000000000000000000000aa"})"),
            std::string::npos);
}

market::Lease ChannelLease() {
  market::Lease l;
  l.id = 7;
  l.price_per_hour = 3'600'000;
  l.state = market::LeaseState::kRunning;
  l.started_ms = 1'800'000'000'000;
  l.channel = market::ChannelPayment{.channel = "0x" + std::string(64, 'a'),
                                     .contract = "0x" + std::string(40, 'c'),
                                     .chain_id = 31337,
                                     .token = "0x" + std::string(40, 'd'),
                                     .signer = "0x" + std::string(40, 'e'),
                                     .payee = "0x" + std::string(40, 'f'),
                                     .deposit = 10'000'000,
                                     .expiry_ms = 1'800'086'400'000,
                                     .interval_ms = 60'000,
                                     .grace_ms = 60'000,
                                     .expiry_margin_ms = 300'000,
                                     .length_ms = 0,
                                     .margin = 60'000,
                                     .voucher = 120'000,
                                     .voucher_sig = "0x" + std::string(130, '1'),
                                     .voucher_ms = 1'800'000'060'000,
                                     .redeemed = 60'000,
                                     .closed = false};
  return l;
}

// What the broker writes, the agent and `grid pay` read back unchanged.
TEST(LeaseChannel, RoundTripsThroughTheLeaseJson) {
  market::Lease l = ChannelLease();
  json::object o = EncodeLease(l, 90'000, l.started_ms + 90'000);
  EXPECT_EQ(o.at("payment").as_string(), "channel");
  const json::object& c = o.at("channel").as_object();
  EXPECT_EQ(c.at("voucher").at("amount").as_string(), "0.120000");
  EXPECT_EQ(c.at("due").at("index").as_int64(), 1);
  EXPECT_EQ(c.at("due").at("amount").as_string(), "0.120000");
  EXPECT_EQ(c.at("paid_through").as_string(), "2027-01-15T08:02:00.000Z");
  auto back = DecodeLeaseChannel(json::parse(json::serialize(o)).at("channel"));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *l.channel);
  l.channel->voucher = 0;
  l.channel->voucher_sig.clear();
  l.channel->voucher_ms = 0;
  back = DecodeLeaseChannel(EncodeLeaseChannel(l, 0));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *l.channel);
  market::Lease escrow;
  json::object e = EncodeLease(escrow, 0, 0);
  EXPECT_EQ(e.at("payment").as_string(), "escrow");
  EXPECT_TRUE(e.at("channel").is_null());
}

TEST(LeaseChannel, DecodingNamesWhatIsWrong) {
  json::object good = EncodeLeaseChannel(ChannelLease(), 0);
  struct Case {
    const char* key;
    json::value value;
    const char* message;
  } cases[] = {
      {"id", "0x12", "channel.id: expected 0x and 64 hex digits"},
      {"contract", 5, "channel.contract: expected a string"},
      {"deposit", 1.5, "channel.deposit: money is a decimal string"},
      {"interval_ms", 0, "channel.interval_ms"},
      {"grace_ms", 86'400'001, "channel.grace_ms"},
      {"voucher", "x", "channel.voucher: expected an object or null"},
      {"closed", "no", "channel.closed: expected true or false"},
  };
  for (const auto& c : cases) {
    json::object o = good;
    o[c.key] = c.value;
    auto r = DecodeLeaseChannel(o);
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(DecodeLeaseChannel(json::value("x")).ok());
}

TEST(AppendOffer, ManyNumbersMatchBoostJson) {
  query::OfferRow r;
  OfferMachine m{"0x1", 1, 0};
  uint64_t x = 88172645463325252ULL;  // xorshift
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int64_t v = static_cast<int64_t>(x) >> (x % 60);
    r.reliability = v;
    r.dph_total = v;
    r.num_gpus = v;
    r.duration = v;
    ASSERT_EQ(Appended(r, m), json::serialize(TreeOffer(r, m))) << v;
  }
}

TEST(AppendJsonString, EscapesAsJsonSerialize) {
  for (std::string s : {std::string(""), std::string("plain"), std::string("\"\\\x01\x1f\x20\x7f\xc3\xa9", 8),
                        std::string("\0\0", 2), std::string("a\nb\tc\rd")}) {
    std::string out = "x";
    AppendJsonString(out, s);
    EXPECT_EQ(out, "x" + json::serialize(json::string(s)));
  }
}

}  // namespace
}  // namespace grid::api
