#include "query/query.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace grid::query {
namespace {

using ::testing::HasSubstr;

Query MustParse(std::string_view text) {
  auto r = Parse(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : Query{};
}

std::string ErrorOf(std::string_view text) {
  auto r = Parse(text);
  EXPECT_FALSE(r.ok()) << text << " parsed as " << (r.ok() ? Format(*r) : "");
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  return r.status().message();
}

// An 8xH100 offer in Australia, every field known.
OfferRow H100Row() {
  OfferRow r;
  r.id = 41008;
  r.machine_id = 41;
  r.host_id = 7;
  r.gpu_name = "H100 SXM 80GB";
  r.num_gpus = 8;
  r.gpu_ram = 80'000'000;
  r.gpu_total_ram = 640'000'000;
  r.gpu_arch = "nvidia";
  r.compute_cap = 900;
  r.cuda_vers = 12'400'000;
  r.driver_version = "550.54.15";
  r.gpu_mem_bw = 3350'000'000;
  r.bw_nvlink = 900'000'000;
  r.pcie_bw = 50'500'000;
  r.pci_gen = 5'000'000;
  r.total_flops = 400'000'000;
  r.dlperf = 250'500'000;
  r.cpu_cores = 128;
  r.cpu_cores_effective = 64'000'000;
  r.cpu_ram = 2048'000'000;
  r.disk_space = 4000'000'000;
  r.disk_bw = 3000'000'000;
  r.inet_up = 10000'000'000;
  r.inet_down = 10000'000'000;
  r.geolocation = "AU";
  r.datacenter = true;
  r.verified = true;
  r.reliability = 990'000;
  r.dph_total = 16'800'000;
  r.dph_per_gpu = 2'100'000;
  r.storage_cost = 150'000;
  r.min_bid = 8'000'000;
  r.duration = 180'000'000;
  r.dlperf_per_dphtotal = 14'910'714;
  r.flops_per_dphtotal = 23'809'523;
  r.rentable = true;
  r.rented = false;
  r.simulated = true;
  return r;
}

TEST(QueryFields, TableMatchesTheIssue) {
  const std::vector<std::string> want = {
      "id", "machine_id", "host_id", "gpu_name", "num_gpus", "gpu_ram", "gpu_total_ram", "gpu_arch",
      "compute_cap", "cuda_vers", "driver_version", "gpu_mem_bw", "bw_nvlink", "pcie_bw", "pci_gen",
      "total_flops", "dlperf", "cpu_cores", "cpu_cores_effective", "cpu_ram", "disk_space", "disk_bw",
      "inet_up", "inet_down", "geolocation", "datacenter", "verified", "reliability", "dph_total",
      "dph_per_gpu", "storage_cost", "min_bid", "duration", "dlperf_per_dphtotal", "flops_per_dphtotal",
      "rentable", "rented", "simulated"};
  ASSERT_EQ(Fields().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(Fields()[i].name, want[i]);
    EXPECT_EQ(static_cast<size_t>(Fields()[i].id), i);
    EXPECT_EQ(LookupField(want[i]), Fields()[i].id);
  }
  EXPECT_EQ(LookupField("dph"), FieldId::kDphTotal);
  EXPECT_EQ(LookupField("dlperf_usd"), FieldId::kDlperfPerDphtotal);
  EXPECT_EQ(LookupField("flops_usd"), FieldId::kFlopsPerDphtotal);
  EXPECT_EQ(LookupField("GPU_NAME"), FieldId::kGpuName);
  EXPECT_EQ(LookupField("price"), std::nullopt);
  EXPECT_EQ(Info(FieldId::kDphTotal).type, FieldType::kMoney);
  EXPECT_EQ(Info(FieldId::kNumGpus).type, FieldType::kInt);
  EXPECT_EQ(Info(FieldId::kReliability).type, FieldType::kNumber);
  EXPECT_EQ(Info(FieldId::kVerified).type, FieldType::kBool);
  EXPECT_EQ(Info(FieldId::kGeolocation).type, FieldType::kString);
}

TEST(QueryParse, EveryOperatorAndWordForm) {
  struct Case { const char* text; Op op; };
  for (auto c : {Case{"num_gpus = 4", Op::kEq}, Case{"num_gpus == 4", Op::kEq}, Case{"num_gpus eq 4", Op::kEq},
                 Case{"num_gpus != 4", Op::kNe}, Case{"num_gpus neq 4", Op::kNe},
                 Case{"num_gpus < 4", Op::kLt}, Case{"num_gpus lt 4", Op::kLt},
                 Case{"num_gpus <= 4", Op::kLe}, Case{"num_gpus lte 4", Op::kLe},
                 Case{"num_gpus > 4", Op::kGt}, Case{"num_gpus gt 4", Op::kGt},
                 Case{"num_gpus >= 4", Op::kGe}, Case{"num_gpus gte 4", Op::kGe},
                 Case{"num_gpus GTE 4", Op::kGe},
                 Case{"num_gpus=4", Op::kEq}, Case{"num_gpus==4", Op::kEq}, Case{"num_gpus!=4", Op::kNe},
                 Case{"num_gpus<4", Op::kLt}, Case{"num_gpus<=4", Op::kLe}, Case{"num_gpus>4", Op::kGt},
                 Case{"num_gpus>=4", Op::kGe}, Case{"num_gpus =4", Op::kEq}, Case{"num_gpus>= 4", Op::kGe}}) {
    Query q = MustParse(c.text);
    ASSERT_EQ(q.clauses.size(), 1u) << c.text;
    EXPECT_EQ(q.clauses[0], (Clause{FieldId::kNumGpus, c.op, {Value(int64_t{4})}})) << c.text;
  }
  for (auto c : {Case{"num_gpus in [1,2]", Op::kIn}, Case{"num_gpus notin [1,2]", Op::kNotIn},
                 Case{"num_gpus IN [1, 2]", Op::kIn}, Case{"num_gpus in[ 1 ,2 ]", Op::kIn},
                 Case{"num_gpus notin[1,2]", Op::kNotIn}}) {
    Query q = MustParse(c.text);
    ASSERT_EQ(q.clauses.size(), 1u) << c.text;
    EXPECT_EQ(q.clauses[0], (Clause{FieldId::kNumGpus, c.op, {Value(int64_t{1}), Value(int64_t{2})}})) << c.text;
  }
}

TEST(QueryParse, EveryFieldTypeHoldsExactValues) {
  Query q = MustParse("id=41008 reliability>0.98 reliability<.995 dph<2.5 dph_per_gpu<=0.000001 "
                      "verified=true rented=False geolocation=au gpu_name=RTX_4090 duration>-1");
  ASSERT_EQ(q.clauses.size(), 10u);
  EXPECT_EQ(q.clauses[0].values[0], Value(int64_t{41008}));
  EXPECT_EQ(q.clauses[1].values[0], Value(int64_t{980'000}));   // millionths
  EXPECT_EQ(q.clauses[2].values[0], Value(int64_t{995'000}));
  EXPECT_EQ(q.clauses[3].field, FieldId::kDphTotal);
  EXPECT_EQ(q.clauses[3].values[0], Value(int64_t{2'500'000}));  // micro-USD, exact
  EXPECT_EQ(q.clauses[4].values[0], Value(int64_t{1}));
  EXPECT_EQ(q.clauses[5].values[0], Value(true));
  EXPECT_EQ(q.clauses[6].values[0], Value(false));
  EXPECT_EQ(q.clauses[7].values[0], Value(std::string("au")));   // case kept; compared folded
  EXPECT_EQ(q.clauses[8].values[0], Value(std::string("RTX 4090")));
  EXPECT_EQ(q.clauses[9].values[0], Value(int64_t{-1'000'000}));
}

TEST(QueryParse, StringsListsAndQuotes) {
  Query q = MustParse("gpu_name in [RTX_4090, A100 SXM4,\"H100_PCIE\"] geolocation notin ['CN','R\\'U'] "
                      "gpu_arch=\"a b\" gpu_name in RTX_3090 gpu_name in []");
  ASSERT_EQ(q.clauses.size(), 5u);
  EXPECT_EQ(q.clauses[0].values,
            (std::vector<Value>{std::string("RTX 4090"), std::string("A100 SXM4"), std::string("H100_PCIE")}));
  EXPECT_EQ(q.clauses[1].values, (std::vector<Value>{std::string("CN"), std::string("R'U")}));
  EXPECT_EQ(q.clauses[2].values, (std::vector<Value>{std::string("a b")}));
  EXPECT_EQ(q.clauses[3].op, Op::kIn);  // a bare value after in is a one-item list
  EXPECT_EQ(q.clauses[3].values, (std::vector<Value>{std::string("RTX 3090")}));
  EXPECT_TRUE(q.clauses[4].values.empty());
}

TEST(QueryParse, AnyRemovesTheClauseButConstrains) {
  Query q = MustParse("gpu_name=any num_gpus>=* verified=ANY verified=any num_gpus>=2");
  ASSERT_EQ(q.clauses.size(), 1u);
  EXPECT_EQ(q.clauses[0].field, FieldId::kNumGpus);
  EXPECT_EQ(q.any_fields, (std::vector<FieldId>{FieldId::kGpuName, FieldId::kNumGpus, FieldId::kVerified}));
  EXPECT_TRUE(Constrains(q, FieldId::kVerified));
  EXPECT_FALSE(Constrains(q, FieldId::kRented));
  // Quoted, it is a string.
  EXPECT_EQ(MustParse("gpu_name=\"any\"").clauses.size(), 1u);
  EXPECT_TRUE(MustParse("").clauses.empty());
  EXPECT_TRUE(MustParse("  \t\n ").clauses.empty());
}

TEST(QueryParse, VastExampleQueries) {
  Query q = MustParse("gpu_name=RTX_4090 num_gpus>=4 reliability>0.98");
  EXPECT_EQ(q, (Query{{Clause{FieldId::kGpuName, Op::kEq, {std::string("RTX 4090")}},
                       Clause{FieldId::kNumGpus, Op::kGe, {int64_t{4}}},
                       Clause{FieldId::kReliability, Op::kGt, {int64_t{980'000}}}},
                      {}}));
  EXPECT_EQ(Format(q), "gpu_name=RTX_4090 num_gpus>=4 reliability>0.98");
  EXPECT_EQ(*ParseOrder("dph"), (Order{{SortKey{FieldId::kDphTotal, false}}}));
  for (const char* text :
       {"num_gpus=8 gpu_name=H100_SXM_80GB dph<20", "compute_cap>=800 gpu_ram>=40 inet_down>500 geolocation in [US,CA]",
        "reliability > 0.99 num_gpus>=1 dlperf_usd>10 verified=any", "cuda_vers>=12.1 disk_space>100 datacenter=true",
        "gpu_total_ram>=320 cpu_ram>=256 rentable=true rented=false"}) {
    Query p = MustParse(text);
    EXPECT_EQ(MustParse(Format(p)), p) << text;
  }
}

TEST(QueryParse, ErrorsNameClauseColumnAndSuggest) {
  EXPECT_EQ(ErrorOf("num_gpus>=x"), "num_gpus>=x (column 1): num_gpus takes a number, got \"x\"");
  EXPECT_EQ(ErrorOf("gpu_nme=RTX_4090"), "gpu_nme: unknown field; did you mean gpu_name? (column 1)");
  EXPECT_EQ(ErrorOf("num_gpus>=4 reliabilty>0.9"),
            "reliabilty: unknown field; did you mean reliability? (column 13)");
  EXPECT_EQ(ErrorOf("gpu_nmae=x"), "gpu_nmae: unknown field; did you mean gpu_name? (column 1)");
  EXPECT_EQ(ErrorOf("dhp<2"), "dhp: unknown field; did you mean dph? (column 1)");
  EXPECT_EQ(ErrorOf("banana=1"), "banana: unknown field (column 1)");
  struct Case { const char* text; const char* want; };
  for (auto c : {
           Case{"num_gpus>=4  verified=yes", "verified=yes (column 14): verified takes true or false, got \"yes\""},
           Case{"num_gpus=4.5", "num_gpus=4.5 (column 1): num_gpus takes a whole number, got \"4.5\""},
           Case{"num_gpus=99999999999999999999", "(column 1): num_gpus is out of range"},
           Case{"dph<2.1234567", "dph<2.1234567 (column 1): dph takes an amount in USD (at most 6 decimals)"},
           Case{"reliability>1e-3", "reliability takes a number (at most 6 decimals), got \"1e-3\""},
           Case{"num_gpus ~ 4", "num_gpus ~ (column 1): bad operator \"~\"; expected one of"},
           Case{"num_gpus gte4", "bad operator \"gte4\""},
           Case{"num_gpus", "num_gpus (column 1): expected an operator after num_gpus"},
           Case{"num_gpus>=", "num_gpus>= (column 1): expected a value after >="},
           Case{"gpu_name>RTX", "gpu_name>RTX (column 1): gpu_name takes = != in notin, not >"},
           Case{"verified<=true", "verified takes = != in notin, not <="},
           Case{"gpu_name=[a,b]", "gpu_name = takes one value; use in or notin for a list"},
           Case{"gpu_name in [a,b", "unterminated list: expected ]"},
           Case{"gpu_name in [a,,b]", "empty item in the list"},
           Case{"gpu_name in [a b c d", "unterminated list"},
           Case{"gpu_name in [\"a\" x]", "expected , or ] in the list, got \"x\""},
           Case{"gpu_name in [a]b", "expected a space after the list"},
           Case{"gpu_name=\"RTX", "unterminated string: expected \""},
           Case{"gpu_name=\"RTX\"x", "expected a space after the string"},
           Case{"num_gpus>=4 >=3", ">=3 (column 13): expected a field name"},
           Case{"num_gpus in [1,x]", "num_gpus in [1,x] (column 1): num_gpus takes a number, got \"x\""},
       }) {
    EXPECT_THAT(ErrorOf(c.text), HasSubstr(c.want)) << c.text;
  }
  // Outside bytes are quoted printably and long text is cut short.
  std::string msg = ErrorOf(std::string("gpu_name=\"\x01\x02") + std::string(500, 'a'));
  EXPECT_THAT(msg, HasSubstr("\\x01\\x02"));
  EXPECT_LT(msg.size(), 200u);
}

TEST(QueryFormat, CanonicalAndRoundTrips) {
  struct Case { const char* in; const char* out; };
  for (auto c : {Case{"num_gpus == 4", "num_gpus=4"}, Case{"dph lt 2.50", "dph_total<2.5"},
                 Case{"dph_per_gpu>=3", "dph_per_gpu>=3"}, Case{"reliability gte .9", "reliability>=0.9"},
                 Case{"duration>-0.5", "duration>-0.5"}, Case{"VERIFIED=TRUE", "verified=true"},
                 Case{"gpu_name IN [rtx_4090 , 'a_b']", "gpu_name in [rtx_4090,\"a_b\"]"},
                 Case{"gpu_name='any'", "gpu_name=\"any\""}, Case{"gpu_name=\"\"", "gpu_name=\"\""},
                 Case{"gpu_name==x", "gpu_name=x"}, Case{"gpu_name===x", "gpu_name=\"=x\""},
                 Case{"gpu_name='a\"b\\\\c'", "gpu_name=\"a\\\"b\\\\c\""},
                 Case{"gpu_name=* num_gpus=1", "num_gpus=1 gpu_name=any"},
                 Case{"geolocation notin []", "geolocation notin []"}}) {
    Query q = MustParse(c.in);
    EXPECT_EQ(Format(q), c.out) << c.in;
    EXPECT_EQ(MustParse(Format(q)), q) << c.in;
  }
}

TEST(QueryMatch, Semantics) {
  const OfferRow row = H100Row();
  struct Case { const char* text; bool want; };
  for (auto c : {
           Case{"", true},
           Case{"gpu_name=h100_sxm_80gb", true},          // case-insensitive, _ is a space
           Case{"gpu_name=\"H100 SXM 80GB\"", true},
           Case{"gpu_name=\"H100_SXM_80GB\"", false},     // quoted: literal underscores
           Case{"gpu_name!=RTX_4090", true}, Case{"gpu_name!=H100_sxm_80GB", false},
           Case{"gpu_name in [RTX_4090,h100_SXM_80GB]", true}, Case{"gpu_name in [RTX_4090]", false},
           Case{"gpu_name notin [RTX_4090,A100]", true}, Case{"gpu_name notin [h100_sxm_80gb]", false},
           Case{"gpu_name in []", false}, Case{"gpu_name notin []", true},
           Case{"num_gpus=8", true}, Case{"num_gpus!=8", false}, Case{"num_gpus>7", true}, Case{"num_gpus>8", false},
           Case{"num_gpus>=8", true}, Case{"num_gpus<8", false}, Case{"num_gpus<=8", true}, Case{"num_gpus<9", true},
           Case{"num_gpus in [1,2,8]", true}, Case{"num_gpus notin [1,2,8]", false},
           // Money is exact: 16.8 is not below 16.8, and one micro-dollar counts.
           Case{"dph<16.8", false}, Case{"dph<=16.8", true}, Case{"dph<16.800001", true}, Case{"dph>16.799999", true},
           Case{"dph_total=16.8", true}, Case{"dph_per_gpu=2.1", true},
           Case{"reliability>0.98", true}, Case{"reliability>0.99", false}, Case{"reliability>=0.99", true},
           Case{"verified=true", true}, Case{"verified=false", false}, Case{"verified!=false", true},
           Case{"rented=false", true}, Case{"datacenter in [true]", true}, Case{"simulated notin [true]", false},
           // Several clauses on one field all apply.
           Case{"num_gpus>=4 num_gpus<=8", true}, Case{"num_gpus>=4 num_gpus<8", false},
           Case{"num_gpus>=4 num_gpus=any", true}, Case{"num_gpus>=9 num_gpus=any", false},
           Case{"geolocation=au compute_cap>=900 cuda_vers>=12.4 driver_version=550.54.15", true},
           Case{"gpu_name=RTX_4090 num_gpus>=4 reliability>0.98", false},
       }) {
    EXPECT_EQ(Matches(MustParse(c.text), row), c.want) << c.text;
  }
}

TEST(QueryMatch, NullNeverMatches) {
  OfferRow row = H100Row();
  row.reliability.reset();
  row.geolocation.reset();
  row.verified.reset();
  for (const char* text : {"reliability>0", "reliability<2", "reliability!=0.5", "reliability notin [0.5]",
                           "geolocation!=US", "geolocation notin [US]", "verified=true", "verified!=true"}) {
    EXPECT_FALSE(Matches(MustParse(text), row)) << text;
  }
  EXPECT_TRUE(Matches(MustParse("reliability=any geolocation=*"), row));
  EXPECT_FALSE(Matches(MustParse("num_gpus>1"), OfferRow{}));
}

TEST(QueryDefaults, AddedUnlessConstrained) {
  EXPECT_EQ(Format(WithDefaults(MustParse("num_gpus>=4"), {})),
            "num_gpus>=4 verified=true rentable=true rented=false");
  EXPECT_EQ(Format(WithDefaults(MustParse("num_gpus>=4"), {.no_default = true})), "num_gpus>=4");
  EXPECT_EQ(Format(WithDefaults(MustParse("num_gpus>=4"), {.dev = true})), "num_gpus>=4 rentable=true rented=false");
  EXPECT_EQ(Format(WithDefaults(MustParse("verified=any rented=true"), {})), "rented=true rentable=true verified=any");
  EXPECT_EQ(Format(WithDefaults(MustParse("verified in [true,false]"), {.dev = true})),
            "verified in [true,false] rentable=true rented=false");
  EXPECT_EQ(Format(WithDefaults(Query{}, {})), "verified=true rentable=true rented=false");
}

TEST(QueryOrder, ParsesAndFormats) {
  EXPECT_EQ(*ParseOrder(""), DefaultOrder());
  EXPECT_EQ(DefaultOrder(), (Order{{SortKey{FieldId::kDphTotal, false}}}));
  EXPECT_EQ(*ParseOrder("dph,reliability-"),
            (Order{{SortKey{FieldId::kDphTotal, false}, SortKey{FieldId::kReliability, true}}}));
  EXPECT_EQ(*ParseOrder(" num_gpus- , dlperf_usd+,gpu_name "),
            (Order{{SortKey{FieldId::kNumGpus, true}, SortKey{FieldId::kDlperfPerDphtotal, false},
                    SortKey{FieldId::kGpuName, false}}}));
  EXPECT_EQ(FormatOrder(*ParseOrder("dph,reliability-")), "dph_total,reliability-");
  for (const char* text : {"dph", "num_gpus-,id", "gpu_name,geolocation-,dph_per_gpu"}) {
    EXPECT_EQ(*ParseOrder(FormatOrder(*ParseOrder(text))), *ParseOrder(text)) << text;
  }
  struct Case { const char* text; const char* want; };
  for (auto c : {Case{"dph,relability-", "relability: unknown field; did you mean reliability? (column 5)"},
                 Case{"dph,,id", "(column 5): empty sort field"}, Case{"dph,", "empty sort field"},
                 Case{"-", "a direction without a field"}, Case{"-dph", "-dph: unknown field; did you mean dph?"}}) {
    auto r = ParseOrder(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.want)) << c.text;
  }
}

TEST(QueryOrder, NullsLastTiesById) {
  auto row = [](int64_t id, std::optional<Micros> dph, std::optional<int64_t> rel) {
    OfferRow r;
    r.id = id;
    r.dph_total = dph;
    r.reliability = rel;
    return r;
  };
  std::vector<OfferRow> rows = {row(5, 2'000'000, 900'000), row(3, 2'000'000, 990'000), row(1, std::nullopt, 1),
                                row(4, 1'000'000, std::nullopt), row(2, 2'000'000, 990'000)};
  auto ids = [&](const Order& o) {
    auto copy = rows;
    std::sort(copy.begin(), copy.end(), [&](const OfferRow& a, const OfferRow& b) { return OrderLess(o, a, b); });
    std::vector<int64_t> out;
    for (const OfferRow& r : copy) out.push_back(*r.id);
    return out;
  };
  EXPECT_EQ(ids(DefaultOrder()), (std::vector<int64_t>{4, 2, 3, 5, 1}));
  EXPECT_EQ(ids(*ParseOrder("dph-")), (std::vector<int64_t>{2, 3, 5, 4, 1}));
  EXPECT_EQ(ids(*ParseOrder("reliability-,dph")), (std::vector<int64_t>{2, 3, 5, 1, 4}));
}

TEST(QueryParse, NeverCrashesOnOddInput) {
  // A small deterministic sweep; the fuzzer does the rest.
  const std::string alphabet = "ab_=<>!,[]\"'\\ *.-09xin";
  uint32_t seed = 12345;
  for (int i = 0; i < 20000; ++i) {
    std::string s = i % 2 ? "gpu_name" : "num_gpus";
    int n = i % 17;
    for (int j = 0; j < n; ++j) {
      seed = seed * 1103515245u + 12345u;
      s += alphabet[(seed >> 16) % alphabet.size()];
    }
    auto r = Parse(s);
    if (r.ok()) {
      ASSERT_EQ(MustParse(Format(*r)), *r) << s << " -> " << Format(*r);
    } else {
      ASSERT_FALSE(r.status().message().empty()) << s;
    }
  }
}

}  // namespace
}  // namespace grid::query
