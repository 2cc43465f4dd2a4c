// JsonRpcChain against a fake JSON-RPC node: a net::HttpServer in the test
// that answers like an Ethereum node, backed by a SimChain, with a hook for
// canned answers (reverts, node errors, malformed replies). No anvil needed.
#include "chain/rpc/json_rpc_chain.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "chain/abi.h"
#include "chain/sim_chain.h"
#include "chain/tx_sender.h"
#include "crypto/hex.h"
#include "net/http.h"

namespace grid::chain {
namespace {

namespace json = boost::json;
using crypto::HexEncode;

const crypto::Address kToken = crypto::ParseAddress("0x5FbDB2315678afecb367f032d93F642f64180aa3").value();
const crypto::Address kBob = crypto::ParseAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").value();

crypto::PrivateKey Key(int n) {
  crypto::PrivateKey k;
  k.bytes[31] = uint8_t(n);
  return k;
}

std::string Q(uint64_t v) { return U256(v).ToQuantity(); }

json::value LogJson(const Log& l) {
  json::array topics;
  for (const auto& t : l.topics) topics.push_back(json::value(HexEncode(t)));
  return json::object{{"address", l.address.ToLowerHex()},    {"topics", std::move(topics)},
                      {"data", HexEncode(l.data)},            {"blockNumber", Q(l.block_number)},
                      {"blockHash", HexEncode(l.block_hash)}, {"transactionHash", HexEncode(l.tx_hash)},
                      {"logIndex", Q(l.log_index)},           {"removed", l.removed}};
}

json::value BlockJson(const BlockHeader& b) {
  return json::object{{"number", Q(b.number)},
                      {"hash", HexEncode(b.hash)},
                      {"parentHash", HexEncode(b.parent_hash)},
                      {"timestamp", Q(b.timestamp)},
                      {"baseFeePerGas", b.base_fee->ToQuantity()},
                      {"transactions", json::array{}}};
}

Result<crypto::Address> Addr(const json::value& v) { return crypto::ParseAddress(v.as_string()); }

CallRequest CallOf(const json::object& o) {
  CallRequest c;
  if (o.contains("from")) c.from = Addr(o.at("from")).value();
  c.to = Addr(o.at("to")).value();
  c.data = crypto::HexDecode(o.at("data").as_string()).value();
  return c;
}

// A JSON-RPC node in front of a SimChain. hook(method, params) may return a
// whole HTTP response to send instead (its body may contain "$ID", replaced
// by the request's id).
class FakeNode {
 public:
  using Hook = std::function<std::optional<net::HttpResponse>(const std::string&, const json::array&)>;

  explicit FakeNode(SimChain& sim) : sim_(sim) {
    server_ = net::HttpServer::Start({}, [this](const net::HttpRequest& r) { return Handle(r); }).value();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  void set_hook(Hook h) {
    std::lock_guard lock(mu_);
    hook_ = std::move(h);
  }
  std::vector<json::object> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  void Stop() { server_->Stop(); }

 private:
  net::HttpResponse Handle(const net::HttpRequest& req) {
    json::object r = json::parse(req.body).as_object();
    std::string method(r.at("method").as_string());
    json::array params = r.at("params").as_array();
    json::value id = r.at("id");
    Hook hook;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(r);
      hook = hook_;
    }
    if (hook) {
      if (auto canned = hook(method, params)) {
        size_t pos = canned->body.find("$ID");
        if (pos != std::string::npos) canned->body.replace(pos, 3, json::serialize(id));
        return *canned;
      }
    }
    json::object answer{{"jsonrpc", "2.0"}, {"id", id}};
    Result<json::value> result = Dispatch(method, params);
    if (result.ok()) {
      answer["result"] = *result;
    } else {
      // Like geth: reverts are code 3, everything else -32000.
      bool revert = result.status().code() == Code::kConflict;
      answer["error"] = json::object{{"code", revert ? 3 : -32000},
                                     {"message", revert ? "execution reverted" : result.status().message()}};
    }
    net::HttpResponse resp;
    resp.body = json::serialize(answer);
    return resp;
  }

  Result<json::value> Dispatch(const std::string& m, const json::array& p) {
    if (m == "eth_chainId") {
      GRID_ASSIGN_OR_RETURN(uint64_t v, sim_.ChainId());
      return json::value(Q(v));
    }
    if (m == "eth_blockNumber") {
      GRID_ASSIGN_OR_RETURN(uint64_t v, sim_.BlockNumber());
      return json::value(Q(v));
    }
    if (m == "eth_getBlockByNumber") {
      uint64_t n;
      if (p[0].as_string() == "latest") {
        GRID_ASSIGN_OR_RETURN(n, sim_.BlockNumber());
      } else {
        n = *U256::FromQuantity(p[0].as_string()).value().ToUint64();
      }
      Result<BlockHeader> b = sim_.GetBlock(n);
      if (!b.ok() && b.status().code() == Code::kNotFound) return json::value(nullptr);
      if (!b.ok()) return b.status();
      return BlockJson(*b);
    }
    if (m == "eth_getLogs") {
      const json::object& f = p[0].as_object();
      LogFilter filter;
      filter.from_block = *U256::FromQuantity(f.at("fromBlock").as_string()).value().ToUint64();
      filter.to_block = *U256::FromQuantity(f.at("toBlock").as_string()).value().ToUint64();
      if (f.contains("address")) filter.address = Addr(f.at("address")).value();
      if (f.contains("topics")) {
        for (const auto& t : f.at("topics").as_array()) {
          if (t.is_null()) {
            filter.topics.push_back(std::nullopt);
          } else {
            crypto::Hash32 h;
            EXPECT_TRUE(crypto::HexDecodeExact(t.as_string(), h, "topic").ok());
            filter.topics.push_back(h);
          }
        }
      }
      GRID_ASSIGN_OR_RETURN(std::vector<Log> logs, sim_.GetLogs(filter));
      json::array out;
      for (const Log& l : logs) out.push_back(LogJson(l));
      return json::value(std::move(out));
    }
    if (m == "eth_getTransactionCount") {
      BlockTag tag = p[1].as_string() == "pending" ? BlockTag::kPending : BlockTag::kLatest;
      GRID_ASSIGN_OR_RETURN(uint64_t n, sim_.GetTransactionCount(Addr(p[0]).value(), tag));
      return json::value(Q(n));
    }
    if (m == "eth_estimateGas") {
      GRID_ASSIGN_OR_RETURN(uint64_t g, sim_.EstimateGas(CallOf(p[0].as_object())));
      return json::value(Q(g));
    }
    if (m == "eth_call") {
      GRID_ASSIGN_OR_RETURN(Bytes out, sim_.Call(CallOf(p[0].as_object())));
      return json::value(HexEncode(out));
    }
    if (m == "eth_gasPrice") {
      GRID_ASSIGN_OR_RETURN(U256 v, sim_.GasPrice());
      return json::value(v.ToQuantity());
    }
    if (m == "eth_maxPriorityFeePerGas") {
      GRID_ASSIGN_OR_RETURN(U256 v, sim_.MaxPriorityFeePerGas());
      return json::value(v.ToQuantity());
    }
    if (m == "eth_sendRawTransaction") {
      Bytes raw = crypto::HexDecode(p[0].as_string()).value();
      GRID_ASSIGN_OR_RETURN(SendResult r, sim_.SendRawTransaction(raw));
      if (r.outcome != SendOutcome::kAccepted) return InvalidArgument(r.node_message);
      return json::value(HexEncode(r.tx_hash));
    }
    if (m == "eth_getTransactionReceipt" || m == "eth_getTransactionByHash") {
      crypto::Hash32 h;
      EXPECT_TRUE(crypto::HexDecodeExact(p[0].as_string(), h, "hash").ok());
      if (m == "eth_getTransactionReceipt") {
        GRID_ASSIGN_OR_RETURN(std::optional<Receipt> r, sim_.GetTransactionReceipt(h));
        if (!r) return json::value(nullptr);
        json::array logs;
        for (const Log& l : r->logs) logs.push_back(LogJson(l));
        return json::value(json::object{{"transactionHash", HexEncode(r->tx_hash)},
                                        {"status", r->success ? "0x1" : "0x0"},
                                        {"blockNumber", Q(r->block_number)},
                                        {"blockHash", HexEncode(r->block_hash)},
                                        {"gasUsed", Q(r->gas_used)},
                                        {"effectiveGasPrice", r->effective_gas_price.ToQuantity()},
                                        {"logs", std::move(logs)}});
      }
      GRID_ASSIGN_OR_RETURN(std::optional<TransactionInfo> t, sim_.GetTransactionByHash(h));
      if (!t) return json::value(nullptr);
      json::object o{{"hash", HexEncode(t->hash)},     {"from", t->from.ToLowerHex()},
                     {"to", t->to ? json::value(t->to->ToLowerHex()) : json::value(nullptr)},
                     {"nonce", Q(t->nonce)},           {"value", t->value.ToQuantity()},
                     {"input", HexEncode(t->input)},
                     {"blockNumber", t->block_number ? json::value(Q(*t->block_number)) : json::value(nullptr)},
                     {"blockHash", t->block_hash ? json::value(HexEncode(*t->block_hash)) : json::value(nullptr)}};
      return json::value(std::move(o));
    }
    return InvalidArgument("the method " + m + " does not exist/is not available");
  }

  SimChain& sim_;
  std::mutex mu_;
  Hook hook_;
  std::vector<json::object> requests_;
  std::unique_ptr<net::HttpServer> server_;
};

net::HttpResponse Body(std::string body, int status = 200) {
  net::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

class JsonRpcChainTest : public ::testing::Test {
 protected:
  JsonRpcChainTest() : sim_(Opts()), node_(sim_) {
    chain_ = JsonRpcChain::Create(node_.url(), JsonRpcChainOptions{2000}).value();
  }
  static SimChainOptions Opts() {
    SimChainOptions o;
    o.token = kToken;
    return o;
  }
  SimChain sim_;
  FakeNode node_;
  std::unique_ptr<JsonRpcChain> chain_;
};

TEST_F(JsonRpcChainTest, WithdrawalFlowEndToEnd) {
  auto treasury = Key(9);
  sim_.Mint(crypto::AddressOf(treasury), U256(1'000'000));
  EXPECT_EQ(chain_->ChainId().value(), 31337u);
  EXPECT_EQ(chain_->BlockNumber().value(), 0u);
  EXPECT_EQ(Erc20Decimals(*chain_, kToken).value(), 6);
  EXPECT_EQ(Erc20BalanceOf(*chain_, kToken, crypto::AddressOf(treasury)).value(), U256(1'000'000));

  TxSender sender(*chain_, treasury);
  auto st = sender.BuildErc20Transfer(kToken, kBob, U256(4321)).value();
  EXPECT_EQ(st.tx.max_fee_per_gas, U256(3'000'000'000));
  EXPECT_EQ(st.tx.gas_limit, 61'200u);
  auto sent = chain_->SendRawTransaction(st.raw).value();
  EXPECT_EQ(sent.outcome, SendOutcome::kAccepted);
  EXPECT_EQ(sent.tx_hash, st.hash);
  auto pending = chain_->GetTransactionByHash(st.hash).value();
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->from, crypto::AddressOf(treasury));
  EXPECT_EQ(pending->to, kToken);
  EXPECT_FALSE(pending->block_number.has_value());
  EXPECT_FALSE(chain_->GetTransactionReceipt(st.hash).value().has_value());
  // A rebroadcast is recognised.
  auto again = chain_->SendRawTransaction(st.raw).value();
  EXPECT_EQ(again.outcome, SendOutcome::kAlreadyKnown);
  EXPECT_EQ(again.node_message, "already known");

  sim_.Mine();
  auto receipt = chain_->GetTransactionReceipt(st.hash).value();
  ASSERT_TRUE(receipt.has_value());
  EXPECT_TRUE(receipt->success);
  EXPECT_EQ(receipt->block_number, 1u);
  EXPECT_EQ(receipt->gas_used, 51'000u);
  EXPECT_EQ(receipt->effective_gas_price, U256(2'000'000'000));
  ASSERT_EQ(receipt->logs.size(), 1u);
  auto block = chain_->GetBlock(1).value();
  EXPECT_EQ(block.hash, receipt->block_hash);
  EXPECT_EQ(block.parent_hash, chain_->GetBlock(0).value().hash);
  EXPECT_EQ(block.base_fee, U256(1'000'000'000));
  EXPECT_EQ(chain_->GetBlock(2).status().code(), Code::kNotFound);
  EXPECT_EQ(chain_->BaseFee().value(), U256(1'000'000'000));

  // The deposit watcher's query.
  LogFilter f{0, 1, kToken, {TransferEventTopic(), std::nullopt, AddressTopic(kBob)}};
  auto logs = chain_->GetLogs(f).value();
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0], receipt->logs[0]);
  auto ev = DecodeTransferLog(logs[0].topics, logs[0].data).value();
  EXPECT_EQ(ev.to, kBob);
  EXPECT_EQ(ev.value, U256(4321));
  EXPECT_EQ(chain_->GetTransactionByHash(st.hash).value()->block_number, 1u);
  EXPECT_EQ(chain_->SendRawTransaction(st.raw).value().outcome, SendOutcome::kAlreadyKnown);
  EXPECT_EQ(chain_->GetTransactionCount(crypto::AddressOf(treasury), BlockTag::kLatest).value(), 1u);

  // A replacement of a mined nonce: "nonce too low".
  auto late = sender.BuildErc20TransferWithNonce(kToken, kBob, U256(1), 0).value();
  EXPECT_EQ(chain_->SendRawTransaction(late.raw).value().outcome, SendOutcome::kNonceTooLow);

  // What went over the wire: JSON-RPC 2.0 with increasing ids, and the
  // eth_getLogs filter with a null topic in the middle.
  auto reqs = node_.requests();
  ASSERT_GT(reqs.size(), 5u);
  uint64_t last_id = 0;
  for (const auto& r : reqs) {
    EXPECT_EQ(r.at("jsonrpc").as_string(), "2.0");
    EXPECT_GT(r.at("id").to_number<uint64_t>(), last_id);
    last_id = r.at("id").to_number<uint64_t>();
  }
  for (const auto& r : reqs) {
    if (r.at("method").as_string() != "eth_getLogs") continue;
    const json::object& p = r.at("params").as_array()[0].as_object();
    EXPECT_EQ(p.at("fromBlock").as_string(), "0x0");
    EXPECT_EQ(p.at("toBlock").as_string(), "0x1");
    EXPECT_EQ(p.at("address").as_string(), kToken.ToLowerHex());
    EXPECT_TRUE(p.at("topics").as_array()[1].is_null());
  }
}

TEST_F(JsonRpcChainTest, RevertsCarryTheirReason) {
  // anvil's answer to an eth_call that reverts with require(..., "msg").
  node_.set_hook([](const std::string& m, const json::array&) -> std::optional<net::HttpResponse> {
    if (m == "eth_call") {
      return Body(R"({"jsonrpc":"2.0","id":$ID,"error":{"code":3,"message":"execution reverted: ERC20: transfer amount exceeds balance","data":"0x08c379a00000000000000000000000000000000000000000000000000000000000000020000000000000000000000000000000000000000000000000000000000000002645524332303a207472616e7366657220616d6f756e7420657863656564732062616c616e63650000000000000000000000000000000000000000000000000000"}})");
    }
    if (m == "eth_estimateGas") {  // geth without data: the message only
      return Body(R"({"jsonrpc":"2.0","id":$ID,"error":{"code":-32000,"message":"execution reverted"}})");
    }
    return std::nullopt;
  });
  auto call = chain_->Call(CallRequest{kBob, kToken, EncodeTransferCall(kBob, U256(1)), U256()});
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.status().code(), Code::kConflict);
  EXPECT_EQ(call.status().message(), "eth_call reverted: Error(\"ERC20: transfer amount exceeds balance\")");
  auto est = chain_->EstimateGas(CallRequest{kBob, kToken, EncodeTransferCall(kBob, U256(1)), U256()});
  ASSERT_FALSE(est.ok());
  EXPECT_EQ(est.status().code(), Code::kConflict);
  EXPECT_EQ(est.status().message(), "eth_estimateGas reverted: execution reverted");
  // The SimChain behind the node says the same through the real path.
  node_.set_hook(nullptr);
  est = chain_->EstimateGas(CallRequest{kBob, kToken, EncodeTransferCall(kBob, U256(1)), U256()});
  EXPECT_EQ(est.status().code(), Code::kConflict);
}

TEST_F(JsonRpcChainTest, SendErrorsAreClassified) {
  std::string message;
  node_.set_hook([&](const std::string& m, const json::array&) -> std::optional<net::HttpResponse> {
    if (m != "eth_sendRawTransaction") return std::nullopt;
    json::object err{{"code", -32000}, {"message", message}};
    return Body("{\"jsonrpc\":\"2.0\",\"id\":$ID,\"error\":" + json::serialize(err) + "}");
  });
  auto st = SignTransaction([] {
    Transaction tx;
    tx.chain_id = 31337;
    tx.gas_limit = 21000;
    tx.to = kBob;
    return tx;
  }(), Key(1)).value();
  struct Case {
    std::string msg;
    std::optional<SendOutcome> outcome;
    Code code;
  };
  for (const Case& c : std::vector<Case>{
           {"already known", SendOutcome::kAlreadyKnown, Code::kOk},
           {"known transaction: 0xabc", SendOutcome::kAlreadyKnown, Code::kOk},
           {"transaction already imported", SendOutcome::kAlreadyKnown, Code::kOk},
           {"nonce too low: next nonce 5, tx nonce 4", SendOutcome::kNonceTooLow, Code::kOk},
           {"replacement transaction underpriced", SendOutcome::kReplacementUnderpriced, Code::kOk},
           {"insufficient funds for gas * price + value", std::nullopt, Code::kInsufficientFunds},
           {"invalid sender", std::nullopt, Code::kInvalidArgument},
       }) {
    message = c.msg;
    auto r = chain_->SendRawTransaction(st.raw);
    if (c.outcome) {
      ASSERT_TRUE(r.ok()) << c.msg << ": " << r.status().ToString();
      EXPECT_EQ(r->outcome, *c.outcome) << c.msg;
      EXPECT_EQ(r->tx_hash, st.hash);
      EXPECT_EQ(r->node_message, c.msg);
    } else {
      ASSERT_FALSE(r.ok()) << c.msg;
      EXPECT_EQ(r.status().code(), c.code) << c.msg;
      EXPECT_NE(r.status().message().find("eth_sendRawTransaction"), std::string::npos);
      EXPECT_NE(r.status().message().find(c.msg), std::string::npos);
    }
  }
  // A node that reports a different hash than the bytes hash to is lying.
  node_.set_hook([](const std::string& m, const json::array&) -> std::optional<net::HttpResponse> {
    if (m != "eth_sendRawTransaction") return std::nullopt;
    return Body(R"({"jsonrpc":"2.0","id":$ID,"result":"0x1111111111111111111111111111111111111111111111111111111111111111"})");
  });
  EXPECT_EQ(chain_->SendRawTransaction(st.raw).status().code(), Code::kUnavailable);
}

TEST_F(JsonRpcChainTest, MalformedAnswersAreUnavailable) {
  std::string canned;
  int http_status = 200;
  node_.set_hook([&](const std::string&, const json::array&) -> std::optional<net::HttpResponse> {
    return Body(canned, http_status);
  });
  struct Case {
    std::string body;
    int status;
    std::string expect;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"jsonrpc":"2.0","id":999999,"result":"0x1"})", 200, "id does not match"},
           {"<html>bad gateway</html>", 502, "HTTP 502"},
           {"rate limited", 429, "HTTP 429"},
           {"not json", 200, "not JSON"},
           {R"({"jsonrpc":"2.0","id":$ID})", 200, "neither result nor error"},
           {R"({"jsonrpc":"2.0","id":$ID,"result":"0xzz"})", 200, "malformed"},
           {R"({"jsonrpc":"2.0","id":$ID,"result":"0x10000000000000000"})", 200, "64 bits"},
           {R"({"jsonrpc":"2.0","id":$ID,"result":17})", 200, "not a string"},
       }) {
    canned = c.body;
    http_status = c.status;
    auto r = chain_->BlockNumber();
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), Code::kUnavailable) << c.body;
    EXPECT_NE(r.status().message().find("eth_blockNumber"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
  }
  // A receipt without its status field.
  canned = R"({"jsonrpc":"2.0","id":$ID,"result":{"transactionHash":"0x)" + std::string(64, '1') +
           R"(","blockNumber":"0x1","blockHash":"0x)" + std::string(64, '2') + R"(","gasUsed":"0x1","logs":[]}})";
  http_status = 200;
  auto r = chain_->GetTransactionReceipt(crypto::Hash32{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("status"), std::string::npos) << r.status().message();
  // A JSON-RPC error for a plain method is InvalidArgument with the node's text.
  canned = R"({"jsonrpc":"2.0","id":$ID,"error":{"code":-32601,"message":"the method eth_x does not exist"}})";
  auto e = chain_->GasPrice();
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(e.status().message(), "eth_gasPrice: node error -32601: the method eth_x does not exist");
}

TEST_F(JsonRpcChainTest, NodeDownAndTimeout) {
  // A slow node: the per-call timeout applies.
  auto slow = JsonRpcChain::Create(node_.url(), JsonRpcChainOptions{200}).value();
  node_.set_hook([](const std::string&, const json::array&) -> std::optional<net::HttpResponse> {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    return std::nullopt;
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = slow->ChainId();
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("eth_chainId"), std::string::npos) << r.status().message();
  EXPECT_LT(elapsed, std::chrono::milliseconds(550));
  node_.set_hook(nullptr);
  // The node goes away.
  node_.Stop();
  auto down = chain_->BlockNumber();
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Code::kUnavailable);
  EXPECT_NE(down.status().message().find("eth_blockNumber: node at http://127.0.0.1:"), std::string::npos)
      << down.status().message();
}

TEST(JsonRpcChainCreateTest, RejectsBadUrls) {
  EXPECT_TRUE(JsonRpcChain::Create("https://mainnet.example").ok());  // TLS; nothing is contacted yet
  EXPECT_EQ(JsonRpcChain::Create("ftp://mainnet.example").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(JsonRpcChain::Create("not a url").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(JsonRpcChain::Create("http://127.0.0.1:1", JsonRpcChainOptions{0}).status().code(),
            Code::kInvalidArgument);
}

TEST(JsonRpcChainCreateTest, ClassifySendError) {
  EXPECT_EQ(ClassifySendError("ALREADY KNOWN"), SendOutcome::kAlreadyKnown);
  EXPECT_EQ(ClassifySendError("Nonce too low"), SendOutcome::kNonceTooLow);
  EXPECT_EQ(ClassifySendError("replacement transaction underpriced"), SendOutcome::kReplacementUnderpriced);
  EXPECT_EQ(ClassifySendError("transaction underpriced"), std::nullopt);  // below the pool minimum: an error
  EXPECT_EQ(ClassifySendError("insufficient funds"), std::nullopt);
}

}  // namespace
}  // namespace grid::chain
