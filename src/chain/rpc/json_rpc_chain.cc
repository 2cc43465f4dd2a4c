#include "chain/rpc/json_rpc_chain.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "chain/abi.h"
#include "crypto/hex.h"
#include "net/http.h"

namespace grid::chain {

namespace json = boost::json;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::string Quantity(uint64_t v) { return U256(v).ToQuantity(); }

// Readers of a node's answer. Each failure is a malformed answer, which the
// caller reports as Unavailable naming the method.
Status Malformed(std::string_view what) { return InvalidArgument(std::string(what)); }

Result<const json::value*> Field(const json::value& v, std::string_view key) {
  const json::object* o = v.if_object();
  if (!o) return Malformed("expected an object");
  auto it = o->find(key);
  if (it == o->end()) return Malformed("missing field \"" + std::string(key) + "\"");
  return &it->value();
}

Result<std::string_view> Str(const json::value& v, std::string_view what) {
  const json::string* s = v.if_string();
  if (!s) return Malformed(std::string(what) + " is not a string");
  return std::string_view(*s);
}

Result<U256> QuantityOf(const json::value& v, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(std::string_view s, Str(v, what));
  Result<U256> q = U256::FromQuantity(s);
  if (!q.ok()) return Malformed(std::string(what) + ": " + q.status().message());
  return q;
}

Result<uint64_t> Uint64Of(const json::value& v, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(U256 q, QuantityOf(v, what));
  auto small = q.ToUint64();
  if (!small) return Malformed(std::string(what) + " does not fit in 64 bits");
  return *small;
}

Result<crypto::Hash32> HashOf(const json::value& v, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(std::string_view s, Str(v, what));
  crypto::Hash32 h;
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(s, h, what));
  return h;
}

Result<crypto::Address> AddrOf(const json::value& v, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(std::string_view s, Str(v, what));
  Result<crypto::Address> a = crypto::ParseAddress(s);
  if (!a.ok()) return Malformed(std::string(what) + ": " + a.status().message());
  return a;
}

Result<Bytes> BytesOf(const json::value& v, std::string_view what) {
  GRID_ASSIGN_OR_RETURN(std::string_view s, Str(v, what));
  Result<Bytes> b = crypto::HexDecode(s);
  if (!b.ok()) return Malformed(std::string(what) + ": " + b.status().message());
  return b;
}

// obj[key] read with `reader`; a missing field or a reader's failure is an error.
template <typename F>
auto FieldAs(const json::value& obj, std::string_view key, F reader) -> decltype(reader(obj, key)) {
  Result<const json::value*> f = Field(obj, key);
  if (!f.ok()) return f.status();
  return reader(**f, key);
}
#define GRID_FIELD(lhs, obj, key, reader) GRID_ASSIGN_OR_RETURN(lhs, FieldAs(obj, key, reader))

Result<Log> LogOf(const json::value& v) {
  Log log;
  GRID_FIELD(log.address, v, "address", AddrOf);
  GRID_ASSIGN_OR_RETURN(const json::value* topics, Field(v, "topics"));
  const json::array* arr = topics->if_array();
  if (!arr) return Malformed("log topics is not an array");
  for (const json::value& t : *arr) {
    GRID_ASSIGN_OR_RETURN(crypto::Hash32 h, HashOf(t, "log topic"));
    log.topics.push_back(h);
  }
  GRID_FIELD(log.data, v, "data", BytesOf);
  GRID_FIELD(log.block_number, v, "blockNumber", Uint64Of);
  GRID_FIELD(log.block_hash, v, "blockHash", HashOf);
  GRID_FIELD(log.tx_hash, v, "transactionHash", HashOf);
  GRID_FIELD(log.log_index, v, "logIndex", Uint64Of);
  if (const json::object* o = v.if_object(); o && o->contains("removed")) {
    const json::value& r = o->at("removed");
    if (!r.is_bool()) return Malformed("log removed is not a bool");
    log.removed = r.get_bool();
  }
  return log;
}

Result<std::vector<Log>> LogsOf(const json::value& v) {
  const json::array* arr = v.if_array();
  if (!arr) return Malformed("logs is not an array");
  std::vector<Log> out;
  out.reserve(arr->size());
  for (const json::value& l : *arr) {
    GRID_ASSIGN_OR_RETURN(Log log, LogOf(l));
    out.push_back(std::move(log));
  }
  return out;
}

json::object CallObject(const CallRequest& call) {
  json::object o;
  if (call.from) o["from"] = call.from->ToLowerHex();
  o["to"] = call.to.ToLowerHex();
  o["data"] = crypto::HexEncode(call.data);
  if (!call.value.IsZero()) o["value"] = call.value.ToQuantity();
  return o;
}

// The node's error object, kept whole for the callers that interpret it.
struct RpcError {
  int64_t code = 0;
  std::string message;
  std::optional<std::string> data;  // hex revert data, when the node sent it
};

}  // namespace

std::optional<SendOutcome> ClassifySendError(std::string_view node_message) {
  std::string m = Lower(node_message);
  auto has = [&](std::string_view s) { return m.find(s) != std::string::npos; };
  // geth/reth: "already known"; older geth and OpenEthereum: "known
  // transaction"; anvil: "transaction already imported".
  if (has("already known") || has("known transaction") || has("already imported") || has("alreadyknown")) {
    return SendOutcome::kAlreadyKnown;
  }
  if (has("nonce too low") || has("nonce is too low") || has("oldnonce")) return SendOutcome::kNonceTooLow;
  if (has("replacement transaction underpriced") || has("replacement underpriced") ||
      has("replacementunderpriced")) {
    return SendOutcome::kReplacementUnderpriced;
  }
  return std::nullopt;
}

struct JsonRpcChain::Impl {
  std::mutex mu;
  std::string url;
  std::unique_ptr<net::HttpClient> http;
  uint64_t next_id = 1;

  // One request. On a JSON-RPC error, returns InvalidArgument with the
  // node's message and fills *rpc_error (when given) for interpretation.
  Result<json::value> Request(std::string_view method, json::array params, RpcError* rpc_error = nullptr) {
    std::lock_guard lock(mu);
    const uint64_t id = next_id++;
    json::object req;
    req["jsonrpc"] = "2.0";
    req["id"] = id;
    req["method"] = method;
    req["params"] = std::move(params);
    std::string body = json::serialize(req);
    Result<net::HttpResponse> resp = http->Send("POST", "", body);
    if (!resp.ok()) {
      return Unavailable(std::string(method) + ": node at " + url + " unreachable: " + resp.status().message());
    }
    auto bad = [&](const std::string& why) {
      return Unavailable(std::string(method) + ": bad answer from node at " + url + ": " + why);
    };
    if (resp->status == 429 || resp->status >= 500) {
      return Unavailable(std::string(method) + ": node at " + url + " answered HTTP " +
                         std::to_string(resp->status) + ": " + resp->body.substr(0, 200));
    }
    boost::system::error_code ec;
    json::value answer = json::parse(resp->body, ec);
    if (ec) return bad("HTTP " + std::to_string(resp->status) + ", not JSON: " + resp->body.substr(0, 200));
    const json::object* o = answer.if_object();
    if (!o) return bad("not a JSON-RPC object");
    auto id_it = o->find("id");
    if (id_it == o->end() || !id_it->value().is_number() ||
        !(id_it->value().is_uint64() ? id_it->value().get_uint64() == id
                                     : id_it->value().is_int64() && id_it->value().get_int64() == int64_t(id))) {
      // A node answers a request it could not parse with id null; treat as
      // malformed, our request was well-formed.
      if (auto e = o->find("error"); e != o->end() && e->value().is_object()) {
        return bad("error with a wrong id: " + json::serialize(e->value()).substr(0, 200));
      }
      return bad("answer id does not match request id " + std::to_string(id));
    }
    if (auto e = o->find("error"); e != o->end() && !e->value().is_null()) {
      RpcError err;
      if (const json::object* eo = e->value().if_object()) {
        if (auto c = eo->find("code"); c != eo->end() && c->value().is_int64()) err.code = c->value().get_int64();
        if (auto m = eo->find("message"); m != eo->end() && m->value().is_string()) {
          err.message = std::string(m->value().get_string());
        }
        if (auto d = eo->find("data"); d != eo->end()) {
          if (d->value().is_string()) {
            err.data = std::string(d->value().get_string());
          } else if (const json::object* dobj = d->value().if_object()) {
            // Some providers nest it: {"data": {"data": "0x..."}}.
            if (auto dd = dobj->find("data"); dd != dobj->end() && dd->value().is_string()) {
              err.data = std::string(dd->value().get_string());
            }
          }
        }
      } else {
        err.message = json::serialize(e->value());
      }
      if (rpc_error) *rpc_error = err;
      return InvalidArgument(std::string(method) + ": node error " + std::to_string(err.code) + ": " +
                             err.message.substr(0, 500));
    }
    auto r = o->find("result");
    if (r == o->end()) return bad("neither result nor error");
    if (resp->status != 200) return bad("HTTP " + std::to_string(resp->status) + " with a result");
    return r->value();
  }

  // Request + a reader of the result; a reader's failure is a malformed
  // answer (Unavailable).
  template <typename T, typename F>
  Result<T> Read(std::string_view method, json::array params, F reader) {
    GRID_ASSIGN_OR_RETURN(json::value v, Request(method, std::move(params)));
    Result<T> out = reader(v);
    if (!out.ok()) {
      return Unavailable(std::string(method) + ": malformed answer from node at " + url + ": " +
                         out.status().message());
    }
    return out;
  }

  // eth_call and eth_estimateGas: a revert becomes Conflict with its reason.
  Result<json::value> CallLike(std::string_view method, json::array params) {
    RpcError err;
    Result<json::value> v = Request(method, std::move(params), &err);
    if (v.ok() || v.status().code() != Code::kInvalidArgument) return v;
    std::string lower = Lower(err.message);
    bool revert = err.code == 3 || lower.find("revert") != std::string::npos;
    if (!revert) return v;
    std::string reason;
    if (err.data) {
      if (Result<Bytes> data = crypto::HexDecode(*err.data); data.ok()) reason = DecodeRevert(*data).ToString();
    }
    if (reason.empty() || reason == "no reason given") reason = err.message.substr(0, 300);
    return Conflict(std::string(method) + " reverted: " + reason);
  }
};

JsonRpcChain::JsonRpcChain(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JsonRpcChain::~JsonRpcChain() = default;

const std::string& JsonRpcChain::url() const { return impl_->url; }

Result<std::unique_ptr<JsonRpcChain>> JsonRpcChain::Create(std::string_view url, JsonRpcChainOptions options) {
  if (options.timeout_ms <= 0) return InvalidArgument("JSON-RPC timeout must be positive");
  net::HttpClientOptions http_options;
  http_options.timeout_ms = options.timeout_ms;
  http_options.max_response_bytes = options.max_response_bytes;
  Result<std::unique_ptr<net::HttpClient>> http = net::HttpClient::Create(url, http_options);
  if (!http.ok()) return InvalidArgument("chain RPC URL " + std::string(url) + ": " + http.status().message());
  auto impl = std::make_unique<Impl>();
  impl->url = std::string(url);
  impl->http = std::move(http).value();
  return std::unique_ptr<JsonRpcChain>(new JsonRpcChain(std::move(impl)));
}

Result<uint64_t> JsonRpcChain::ChainId() {
  return impl_->Read<uint64_t>("eth_chainId", {}, [](const json::value& v) { return Uint64Of(v, "chain id"); });
}

Result<uint64_t> JsonRpcChain::BlockNumber() {
  return impl_->Read<uint64_t>("eth_blockNumber", {},
                               [](const json::value& v) { return Uint64Of(v, "block number"); });
}

namespace {
Result<BlockHeader> BlockOf(const json::value& v) {
  BlockHeader b;
  GRID_FIELD(b.number, v, "number", Uint64Of);
  GRID_FIELD(b.hash, v, "hash", HashOf);
  GRID_FIELD(b.parent_hash, v, "parentHash", HashOf);
  GRID_FIELD(b.timestamp, v, "timestamp", Uint64Of);
  if (const json::object* o = v.if_object(); o->contains("baseFeePerGas") && !o->at("baseFeePerGas").is_null()) {
    GRID_ASSIGN_OR_RETURN(b.base_fee, QuantityOf(o->at("baseFeePerGas"), "baseFeePerGas"));
  }
  return b;
}
}  // namespace

Result<BlockHeader> JsonRpcChain::GetBlock(uint64_t number) {
  GRID_ASSIGN_OR_RETURN(json::value v, impl_->Request("eth_getBlockByNumber", {json::value(Quantity(number)), false}));
  if (v.is_null()) return NotFound("block " + std::to_string(number) + " does not exist yet");
  Result<BlockHeader> b = BlockOf(v);
  if (!b.ok()) return Unavailable("eth_getBlockByNumber: malformed answer from node at " + impl_->url + ": " + b.status().message());
  if (b->number != number) return Unavailable("eth_getBlockByNumber: asked for block " + std::to_string(number) + ", got " + std::to_string(b->number));
  return b;
}

Result<std::vector<Log>> JsonRpcChain::GetLogs(const LogFilter& filter) {
  if (filter.from_block > filter.to_block) return InvalidArgument("eth_getLogs: fromBlock after toBlock");
  json::object f;
  f["fromBlock"] = Quantity(filter.from_block);
  f["toBlock"] = Quantity(filter.to_block);
  if (filter.address) f["address"] = filter.address->ToLowerHex();
  json::array topics;
  for (const auto& t : filter.topics) topics.push_back(t ? json::value(crypto::HexEncode(*t)) : json::value(nullptr));
  if (!topics.empty()) f["topics"] = std::move(topics);
  return impl_->Read<std::vector<Log>>("eth_getLogs", {json::value(std::move(f))}, LogsOf);
}

Result<uint64_t> JsonRpcChain::GetTransactionCount(const crypto::Address& account, BlockTag tag) {
  return impl_->Read<uint64_t>("eth_getTransactionCount",
                               {json::value(account.ToLowerHex()), json::value(tag == BlockTag::kPending ? "pending" : "latest")},
                               [](const json::value& v) { return Uint64Of(v, "transaction count"); });
}

Result<uint64_t> JsonRpcChain::EstimateGas(const CallRequest& call) {
  GRID_ASSIGN_OR_RETURN(json::value v, impl_->CallLike("eth_estimateGas", {json::value(CallObject(call))}));
  Result<uint64_t> gas = Uint64Of(v, "gas estimate");
  if (!gas.ok()) return Unavailable("eth_estimateGas: malformed answer: " + gas.status().message());
  return gas;
}

Result<Bytes> JsonRpcChain::Call(const CallRequest& call) {
  GRID_ASSIGN_OR_RETURN(json::value v, impl_->CallLike("eth_call", {json::value(CallObject(call)), json::value("latest")}));
  Result<Bytes> out = BytesOf(v, "call result");
  if (!out.ok()) return Unavailable("eth_call: malformed answer: " + out.status().message());
  return out;
}

Result<U256> JsonRpcChain::GasPrice() {
  return impl_->Read<U256>("eth_gasPrice", {}, [](const json::value& v) { return QuantityOf(v, "gas price"); });
}

Result<U256> JsonRpcChain::MaxPriorityFeePerGas() {
  return impl_->Read<U256>("eth_maxPriorityFeePerGas", {},
                           [](const json::value& v) { return QuantityOf(v, "priority fee"); });
}

Result<U256> JsonRpcChain::BaseFee() {
  GRID_ASSIGN_OR_RETURN(json::value v, impl_->Request("eth_getBlockByNumber", {json::value("latest"), false}));
  if (v.is_null()) return Unavailable("eth_getBlockByNumber: node has no latest block");
  Result<BlockHeader> b = BlockOf(v);
  if (!b.ok()) return Unavailable("eth_getBlockByNumber: malformed answer from node at " + impl_->url + ": " + b.status().message());
  if (!b->base_fee) return Unavailable("the chain has no base fee (a pre-London node): EIP-1559 unavailable");
  return *b->base_fee;
}

Result<SendResult> JsonRpcChain::SendRawTransaction(std::span<const uint8_t> raw) {
  SendResult result;
  result.tx_hash = crypto::Keccak256(raw);
  RpcError err;
  Result<json::value> v = impl_->Request("eth_sendRawTransaction", {json::value(crypto::HexEncode(raw))}, &err);
  if (!v.ok()) {
    if (v.status().code() != Code::kInvalidArgument) return v.status();
    if (auto outcome = ClassifySendError(err.message)) {
      result.outcome = *outcome;
      result.node_message = err.message;
      return result;
    }
    if (Lower(err.message).find("insufficient funds") != std::string::npos) {
      return Status(Code::kInsufficientFunds, v.status().message());
    }
    return v.status();
  }
  Result<crypto::Hash32> h = HashOf(*v, "transaction hash");
  if (!h.ok()) return Unavailable("eth_sendRawTransaction: malformed answer: " + h.status().message());
  if (*h != result.tx_hash) {
    return Unavailable("eth_sendRawTransaction: node reports hash " + crypto::HexEncode(*h) + " for a transaction hashing to " +
                       crypto::HexEncode(result.tx_hash));
  }
  return result;
}

Result<std::optional<Receipt>> JsonRpcChain::GetTransactionReceipt(const crypto::Hash32& tx_hash) {
  return impl_->Read<std::optional<Receipt>>(
      "eth_getTransactionReceipt", {json::value(crypto::HexEncode(tx_hash))},
      [](const json::value& v) -> Result<std::optional<Receipt>> {
        if (v.is_null()) return std::optional<Receipt>();
        Receipt r;
        GRID_FIELD(r.tx_hash, v, "transactionHash", HashOf);
        GRID_FIELD(U256 status, v, "status", QuantityOf);
        if (status > U256(1)) return Malformed("receipt status is neither 0 nor 1");
        r.success = status == U256(1);
        GRID_FIELD(r.block_number, v, "blockNumber", Uint64Of);
        GRID_FIELD(r.block_hash, v, "blockHash", HashOf);
        GRID_FIELD(r.gas_used, v, "gasUsed", Uint64Of);
        if (const json::object* o = v.if_object(); o->contains("effectiveGasPrice")) {
          GRID_ASSIGN_OR_RETURN(r.effective_gas_price, QuantityOf(o->at("effectiveGasPrice"), "effectiveGasPrice"));
        }
        GRID_ASSIGN_OR_RETURN(const json::value* logs, Field(v, "logs"));
        GRID_ASSIGN_OR_RETURN(r.logs, LogsOf(*logs));
        return std::optional<Receipt>(std::move(r));
      });
}

Result<std::optional<TransactionInfo>> JsonRpcChain::GetTransactionByHash(const crypto::Hash32& tx_hash) {
  return impl_->Read<std::optional<TransactionInfo>>(
      "eth_getTransactionByHash", {json::value(crypto::HexEncode(tx_hash))},
      [](const json::value& v) -> Result<std::optional<TransactionInfo>> {
        if (v.is_null()) return std::optional<TransactionInfo>();
        TransactionInfo t;
        GRID_FIELD(t.hash, v, "hash", HashOf);
        GRID_FIELD(t.from, v, "from", AddrOf);
        GRID_FIELD(t.nonce, v, "nonce", Uint64Of);
        GRID_FIELD(t.value, v, "value", QuantityOf);
        GRID_FIELD(t.input, v, "input", BytesOf);
        const json::object& o = v.get_object();
        if (o.contains("to") && !o.at("to").is_null()) {
          GRID_ASSIGN_OR_RETURN(t.to, AddrOf(o.at("to"), "to"));
        }
        if (o.contains("blockNumber") && !o.at("blockNumber").is_null()) {
          GRID_ASSIGN_OR_RETURN(t.block_number, Uint64Of(o.at("blockNumber"), "blockNumber"));
          GRID_FIELD(t.block_hash, v, "blockHash", HashOf);
        }
        return std::optional<TransactionInfo>(std::move(t));
      });
}

}  // namespace grid::chain
