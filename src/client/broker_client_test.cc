// The broker list and the failover rule of BrokerClient, over a scripted
// fake transport: which broker each request goes to, in which order, and
// which requests are not sent again after they may have been applied.
#include "client/broker_client.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace grid::client {
namespace {

// ---------------------------------------------------------------- the list

TEST(BrokerList, OneUrl) {
  auto l = ParseBrokerList("http://127.0.0.1:8080/");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(*l, std::vector<std::string>{"http://127.0.0.1:8080"});
}

TEST(BrokerList, SeveralUrlsInOrderSpacesAndSlashesDropped) {
  auto l = ParseBrokerList("http://a:8080, https://b.example.com/api/ ,http://[::1]:9000");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(*l, (std::vector<std::string>{"http://a:8080", "https://b.example.com/api", "http://[::1]:9000"}));
}

TEST(BrokerList, ABadUrlIsNamed) {
  struct Case {
    const char* list;
    const char* names;
  } cases[] = {
      {"http://a:8080,ftp://b", "\"ftp://b\""},
      {"http://a:8080,b:8080", "\"b:8080\""},
      {"http://a:99999", "\"http://a:99999\""},
      {"http://a:8080,http://user@b", "\"http://user@b\""},
      {"http://a:8080,http://b?x=1", "\"http://b?x=1\""},
      {"http://a:8080,,http://b", "empty URL"},
      {"http://a:8080,", "empty URL"},
      {"", "empty URL"},
      {"http://a:8080,http://a:8080/", "http://a:8080 is listed twice"},
  };
  for (const Case& c : cases) {
    auto l = ParseBrokerList(c.list);
    ASSERT_FALSE(l.ok()) << c.list;
    EXPECT_EQ(l.status().code(), Code::kInvalidArgument) << c.list;
    EXPECT_NE(l.status().message().find(c.names), std::string::npos) << c.list << ": " << l.status().message();
    EXPECT_EQ(l.status().message().rfind("--broker: ", 0), 0u) << l.status().message();
  }
}

// ---------------------------------------------------------------- which requests are resent

TEST(SafeToResend, FollowsTheRule) {
  json::value none;
  json::value keyed = json::object{{"amount", "1"}, {"idempotency_key", "k1"}};
  json::value unkeyed = json::object{{"amount", "1"}};
  json::value empty_key = json::object{{"amount", "1"}, {"idempotency_key", ""}};
  json::value order = json::object{{"offer_id", 1001}, {"order", json::object{{"nonce", "42"}}}};
  json::value no_order = json::object{{"offer_id", 1001}};
  struct Case {
    const char* method;
    const char* path;
    const json::value* body;
    bool safe;
  } cases[] = {
      {"GET", "/v1/wallet/balance", nullptr, true},
      {"GET", "/v1/offers?q=num_gpus%3E1", nullptr, true},
      {"PUT", "/v1/machines/3/offer", &unkeyed, true},
      {"DELETE", "/v1/machines/3", nullptr, true},
      {"POST", "/v1/auth/nonce", nullptr, true},
      {"POST", "/v1/auth/login", &unkeyed, false},
      {"POST", "/v1/agent/heartbeat", &unkeyed, true},
      {"POST", "/v1/agent/wait", &unkeyed, true},
      {"POST", "/v1/agent/enroll", &unkeyed, true},
      {"POST", "/v1/agent/leases/7/output", &unkeyed, true},
      {"POST", "/v1/leases/7/status", &unkeyed, true},
      {"POST", "/v1/leases/7/stop", nullptr, true},
      {"POST", "/v1/leases/7/vouchers", &unkeyed, true},
      {"POST", "/v1/leases/7/channel/sync", &unkeyed, true},
      {"POST", "/v1/leases/x/stop", nullptr, false},
      {"POST", "/v1/leases", &order, true},
      {"POST", "/v1/leases", &no_order, false},
      {"POST", "/v1/leases", nullptr, false},
      {"POST", "/v1/wallet/faucet", &keyed, true},
      {"POST", "/v1/wallet/faucet", &unkeyed, false},
      {"POST", "/v1/wallet/faucet", &empty_key, false},
      {"POST", "/v1/wallet/withdrawals", &unkeyed, false},
      {"POST", "/v1/machines", &unkeyed, false},
      {"POST", "/v1/provider/join-tokens", &unkeyed, false},
      {"POST", "/v2/agent/heartbeat", &unkeyed, false},
      {"PATCH", "/v1/wallet/balance", &none, false},
  };
  for (const Case& c : cases)
    EXPECT_EQ(SafeToResend(c.method, c.path, c.body), c.safe) << c.method << " " << c.path;
}

// ---------------------------------------------------------------- failover

// What a fake broker does with the next request.
enum class Act {
  kAnswer,      // answers (status, body) from the script
  kRefuse,      // connection refused: nothing sent
  kHangUp,      // took the request, no answer
  kUnavailable  // answers 503
};

struct Call {
  std::string url, method, path, body, auth;
};

// Every fake broker of one test: a script per URL and one log of calls.
struct World {
  std::map<std::string, Act> act;               // per "URL path", else per URL; else kAnswer
  std::map<std::string, int> status;            // per "URL path" for kAnswer; 200 when absent
  std::vector<Call> calls;
  std::string address;  // the client's, as a login answers it

  Result<net::HttpResponse> Handle(const std::string& url, std::string_view method, std::string_view path,
                                   std::string_view body, const net::HeaderList& headers, bool* maybe_delivered) {
    Call c{url, std::string(method), std::string(path), std::string(body), ""};
    for (const auto& [k, v] : headers)
      if (k == "Authorization") c.auth = v;
    calls.push_back(c);
    const std::string at = url + " " + std::string(path);
    Act a = act.contains(at) ? act[at] : act.contains(url) ? act[url] : Act::kAnswer;
    *maybe_delivered = a != Act::kRefuse;
    if (a == Act::kRefuse) return Unavailable("cannot reach broker at " + url + ": Connection refused");
    if (a == Act::kHangUp) return Unavailable("cannot reach broker at " + url + ": end of stream");
    net::HttpResponse r;
    if (a == Act::kUnavailable) {
      r.status = 503;
      r.body = R"({"error":{"code":"unavailable","message":"store down"}})";
      return r;
    }
    std::string key = url + " " + std::string(path);
    r.status = status.contains(key) ? status[key] : 200;
    if (r.status != 200) {
      r.body = R"({"error":{"code":"conflict","message":"refused by )" + url + R"("}})";
    } else if (path == "/v1/auth/nonce") {
      r.body = R"({"nonce":"n)" + std::to_string(calls.size()) + R"(abcdefgh","domain":"d","uri":"http://d","chain_id":1})";
    } else if (path == "/v1/auth/login") {
      r.body = R"({"token":"tok@)" + url + R"(","address":")" + address +
               R"(","expires_at":"2099-01-01T00:00:00.000Z"})";
    } else {
      r.body = R"({"from":")" + url + R"("})";
    }
    return r;
  }

  std::vector<std::string> Urls() const {
    std::vector<std::string> out;
    for (const Call& c : calls) out.push_back(c.url);
    return out;
  }
};

class FakeTransport : public BrokerTransport {
 public:
  FakeTransport(World* w, std::string url) : w_(w), url_(std::move(url)) {}
  Result<net::HttpResponse> Send(std::string_view method, std::string_view path, std::string_view body,
                                 const net::HeaderList& headers, bool* maybe_delivered) override {
    return w_->Handle(url_, method, path, body, headers, maybe_delivered);
  }

 private:
  World* w_;
  std::string url_;
};

const std::string A = "http://a:1", B = "http://b:2", C = "http://c:3";

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grid-client-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    home_ = tmpl;
    auto key = crypto::GeneratePrivateKey();
    ASSERT_TRUE(key.ok());
    key_ = *key;
    world_.address = crypto::AddressOf(key_).ToLowerHex();
  }
  void TearDown() override { std::filesystem::remove_all(home_); }

  std::unique_ptr<BrokerClient> Client(const std::string& list) {
    auto c = BrokerClient::CreateWithTransport(list, key_, home_, [this](const std::string& url) {
      return Result<std::unique_ptr<BrokerTransport>>(std::make_unique<FakeTransport>(&world_, url));
    });
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    (*c)->set_switch_observer([this](const std::string& from, const std::string& to, const std::string& why) {
      switches_.push_back(from + " -> " + to + " (" + why + ")");
    });
    return std::move(*c);
  }

  World world_;
  std::vector<std::string> switches_;
  std::string home_;
  crypto::PrivateKey key_;
};

TEST_F(FailoverTest, ARefusedBrokerIsSkippedAndTheNextRequestStartsWhereOneAnswered) {
  auto c = Client(A + "," + B + "," + C);
  world_.act[A] = Act::kRefuse;
  auto r = c->Call("GET", "/v1/offers");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->as_object().at("from").as_string(), B);
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A, B}));
  EXPECT_EQ(c->broker_url(), B);
  ASSERT_EQ(switches_.size(), 1u);
  EXPECT_EQ(switches_[0].rfind(A + " -> " + B + " (cannot reach broker at " + A, 0), 0u) << switches_[0];

  // Next request: B first, and A is not tried while B answers.
  world_.calls.clear();
  ASSERT_TRUE(c->Call("GET", "/v1/offers").ok());
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{B}));
  EXPECT_EQ(switches_.size(), 1u) << "no switch, no line";
}

TEST_F(FailoverTest, RoundRobinFromTheLastThatWorkedEachBrokerOnce) {
  auto c = Client(A + "," + B + "," + C);
  world_.act[A] = Act::kRefuse;
  ASSERT_TRUE(c->Call("GET", "/x").ok());  // now at B
  world_.calls.clear();
  world_.act[A] = Act::kAnswer;
  world_.act[B] = Act::kUnavailable;
  world_.act[C] = Act::kRefuse;
  auto r = c->Call("GET", "/x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{B, C, A})) << "wraps around";
  EXPECT_EQ(c->broker_url(), A);
}

TEST_F(FailoverTest, EveryBrokerDownNamesEachUrl) {
  auto c = Client(A + "," + B);
  world_.act[A] = Act::kRefuse;
  world_.act[B] = Act::kUnavailable;
  auto r = c->Call("GET", "/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A, B})) << "each tried once";
  const std::string& m = r.status().message();
  EXPECT_EQ(m.rfind("no broker answered: ", 0), 0u) << m;
  EXPECT_NE(m.find("cannot reach broker at " + A + ": Connection refused"), std::string::npos) << m;
  EXPECT_NE(m.find(B + " answered 503: store down"), std::string::npos) << m;
  EXPECT_EQ(c->broker_url(), A) << "nothing answered: where it was";
  EXPECT_TRUE(switches_.empty());
}

TEST_F(FailoverTest, OneBrokerKeepsItsOwnError) {
  auto c = Client(A);
  world_.act[A] = Act::kRefuse;
  auto r = c->Call("GET", "/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "cannot reach broker at " + A + ": Connection refused");
  world_.act[A] = Act::kUnavailable;
  r = c->Call("GET", "/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message(), "store down");
}

TEST_F(FailoverTest, AnApiErrorIsAnAnswerNotAFailure) {
  auto c = Client(A + "," + B);
  world_.status[A + " /v1/leases/7/stop"] = 409;
  auto r = c->Call("POST", "/v1/leases/7/stop");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A}));
}

TEST_F(FailoverTest, AnUnkeyedPostThatMayHaveBeenAppliedIsNotResent) {
  auto c = Client(A + "," + B);
  world_.act[A] = Act::kHangUp;
  json::value body = json::object{{"amount", "5"}};
  auto r = c->Call("POST", "/v1/wallet/withdrawals", &body);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A})) << "B never sees it";
  EXPECT_NE(r.status().message().find("POST /v1/wallet/withdrawals may have taken effect there"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(A), std::string::npos);
}

TEST_F(FailoverTest, AnUnkeyedPostGoesOnWhenNothingWasSentOrTheBrokerSaid503) {
  auto c = Client(A + "," + B + "," + C);
  world_.act[A] = Act::kRefuse;
  world_.act[B] = Act::kUnavailable;
  json::value body = json::object{{"amount", "5"}};
  auto r = c->Call("POST", "/v1/wallet/withdrawals", &body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A, B, C}));
}

TEST_F(FailoverTest, AKeyedPostIsResentAfterAHangUp) {
  auto c = Client(A + "," + B);
  world_.act[A] = Act::kHangUp;
  json::value body = json::object{{"amount", "5"}, {"idempotency_key", "k1"}};
  auto r = c->Call("POST", "/v1/wallet/faucet", &body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(world_.calls.size(), 2u);
  EXPECT_EQ(world_.calls[1].url, B);
  EXPECT_EQ(world_.calls[1].body, world_.calls[0].body) << "the same key both times";
}

TEST_F(FailoverTest, HeartbeatsFailOverAfterAHangUp) {
  auto c = Client(A + "," + B);
  world_.act[A] = Act::kHangUp;
  json::value body = json::object{{"gpus", json::array{}}};
  ASSERT_TRUE(c->Call("POST", "/v1/agent/heartbeat", &body).ok());
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A, B}));
}

TEST_F(FailoverTest, LoginKeepsNonceAndLoginOnOneBroker) {
  for (Act at_login : {Act::kHangUp, Act::kUnavailable, Act::kRefuse}) {
    world_.calls.clear();
    world_.act.clear();
    auto c = Client(A + "," + B + "," + C);
    world_.act[A] = Act::kRefuse;
    ASSERT_TRUE(c->Call("GET", "/warm").ok());  // A refused, B answered: requests start at B
    world_.calls.clear();
    world_.act[A] = Act::kAnswer;
    // B gives a nonce, then fails the login (its nonce may be spent): C is
    // asked for a nonce of its own, and the login goes to C.
    world_.act[B + " /v1/auth/login"] = at_login;
    auto login = c->Login();
    ASSERT_TRUE(login.ok()) << login.status().ToString();
    EXPECT_EQ(login->token, "tok@" + C);
    std::vector<std::string> seen;
    for (const Call& k : world_.calls) seen.push_back(k.url + " " + k.path);
    EXPECT_EQ(seen, (std::vector<std::string>{B + " /v1/auth/nonce", B + " /v1/auth/login", C + " /v1/auth/nonce",
                                              C + " /v1/auth/login"}));
    EXPECT_NE(world_.calls[1].body.find("n1abcdefgh"), std::string::npos) << "B's nonce signed for B";
    EXPECT_NE(world_.calls[3].body.find("n3abcdefgh"), std::string::npos) << "C's nonce signed for C";
    EXPECT_EQ(c->broker_url(), C);
  }
}

TEST_F(FailoverTest, ARefusedLoginIsFinal) {
  auto c = Client(A + "," + B);
  world_.status[A + " /v1/auth/login"] = 409;
  auto login = c->Login();
  ASSERT_FALSE(login.ok());
  EXPECT_EQ(login.status().code(), Code::kConflict);
  EXPECT_EQ(world_.Urls(), (std::vector<std::string>{A, A}));
}

TEST_F(FailoverTest, TheTokenFromOneReplicaIsUsedAtTheNext) {
  auto c = Client(A + "," + B);
  ASSERT_TRUE(c->AuthCall("GET", "/v1/wallet/balance").ok());  // logs in at A
  world_.calls.clear();
  world_.act[A] = Act::kRefuse;
  auto r = c->AuthCall("GET", "/v1/wallet/balance");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(world_.calls.size(), 2u) << "no new login";
  EXPECT_EQ(world_.calls[1].url, B);
  EXPECT_EQ(world_.calls[1].auth, "Bearer tok@" + A);
  // A new client of the same list finds the cached token too.
  world_.calls.clear();
  auto again = Client(A + "," + B);
  ASSERT_TRUE(again->AuthCall("GET", "/v1/wallet/balance").ok());
  EXPECT_EQ(world_.calls.back().auth, "Bearer tok@" + A);
}

}  // namespace
}  // namespace grid::client
