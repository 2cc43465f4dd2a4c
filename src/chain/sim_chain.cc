#include "chain/sim_chain.h"

#include <algorithm>

#include "chain/abi.h"

namespace grid::chain {

namespace {

constexpr uint64_t kPlainTransferGas = 21'000;
constexpr uint64_t kViewCallGas = 30'000;

crypto::Hash32 BlockHash(uint64_t number, const crypto::Hash32& parent, uint64_t timestamp, uint64_t salt) {
  std::vector<Bytes> fields = {RlpEncodeUint(number), RlpEncodeBytes(parent), RlpEncodeUint(timestamp),
                               RlpEncodeUint(salt)};
  return crypto::Keccak256(RlpEncodeList(fields));
}

Bytes Word(const U256& v) {
  auto w = v.ToBigEndian32();
  return Bytes(w.begin(), w.end());
}

Status Reverted(std::string_view method, const Bytes& revert_data) {
  return Conflict(std::string(method) + " reverted: " + DecodeRevert(revert_data).ToString());
}

// Error(string) revert data, as solc emits for require(cond, "msg").
Bytes ErrorData(std::string_view msg) {
  Bytes out = {0x08, 0xc3, 0x79, 0xa0};
  Bytes off = Word(U256(32)), len = Word(U256(msg.size()));
  out.insert(out.end(), off.begin(), off.end());
  out.insert(out.end(), len.begin(), len.end());
  out.insert(out.end(), msg.begin(), msg.end());
  out.resize(out.size() + (32 - msg.size() % 32) % 32, 0);
  return out;
}

}  // namespace

SimChain::SimChain(SimChainOptions options)
    : options_(std::move(options)), next_base_fee_(options_.base_fee), priority_fee_(options_.suggested_priority_fee) {
  BlockHeader genesis;
  genesis.number = 0;
  genesis.timestamp = options_.genesis_timestamp;
  genesis.base_fee = next_base_fee_;
  genesis.hash = BlockHash(0, genesis.parent_hash, genesis.timestamp, salt_++);
  state_.blocks.push_back(genesis);
}

Status SimChain::Enter() {
  ++calls_;
  if (down_) return Unavailable("sim chain: node is down");
  if (fail_next_ > 0) {
    --fail_next_;
    return Unavailable("sim chain: node is down (injected failure)");
  }
  return Status::Ok();
}

U256 SimChain::FeeCap(const Transaction& tx) const {
  return tx.type == TxType::kLegacy ? tx.gas_price : tx.max_fee_per_gas;
}

U256 SimChain::Tip(const Transaction& tx) const {
  return tx.type == TxType::kLegacy ? tx.gas_price : tx.max_priority_fee_per_gas;
}

uint64_t SimChain::GasNeeded(const Transaction& tx) const {
  return tx.to == options_.token ? options_.transfer_gas : kPlainTransferGas;
}

Result<uint64_t> SimChain::ChainId() {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  return options_.chain_id;
}

Result<uint64_t> SimChain::BlockNumber() {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  return state_.blocks.back().number;
}

Result<BlockHeader> SimChain::GetBlock(uint64_t number) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  if (number >= state_.blocks.size()) return NotFound("block " + std::to_string(number) + " does not exist yet");
  return state_.blocks[number];
}

Result<std::vector<Log>> SimChain::GetLogs(const LogFilter& filter) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  if (filter.from_block > filter.to_block) return InvalidArgument("eth_getLogs: fromBlock after toBlock");
  std::vector<Log> out;
  for (const Log& log : state_.logs) {
    if (log.block_number < filter.from_block || log.block_number > filter.to_block) continue;
    if (filter.address && log.address != *filter.address) continue;
    bool match = filter.topics.size() <= log.topics.size();
    for (size_t i = 0; match && i < filter.topics.size(); ++i) {
      if (filter.topics[i] && *filter.topics[i] != log.topics[i]) match = false;
    }
    if (match) out.push_back(log);
  }
  return out;
}

Result<uint64_t> SimChain::GetTransactionCount(const crypto::Address& account, BlockTag tag) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  uint64_t n = state_.nonces[account];
  if (tag == BlockTag::kPending) {
    // Pooled transactions with consecutive nonces count, as in geth.
    for (bool found = true; found;) {
      found = std::any_of(state_.pool.begin(), state_.pool.end(), [&](const SignedTransaction& t) {
        return t.from == account && t.tx.nonce == n;
      });
      if (found) ++n;
    }
  }
  return n;
}

Result<Bytes> SimChain::TokenCall(const std::optional<crypto::Address>& from, std::span<const uint8_t> data,
                                  std::string_view method) {
  if (data.size() >= 4) {
    Selector sel = {data[0], data[1], data[2], data[3]};
    if (sel == FunctionSelector("balanceOf(address)")) {
      if (data.size() != 36) return Reverted(method, {});
      GRID_ASSIGN_OR_RETURN(crypto::Address owner, DecodeAddress(data.subspan(4)));
      return Word(state_.balances[owner]);
    }
    if (sel == FunctionSelector("decimals()")) return Word(U256(options_.token_decimals));
    if (sel == FunctionSelector("transfer(address,uint256)")) {
      Result<TransferCall> call = DecodeTransferCall(data);
      if (!call.ok()) return Reverted(method, {});
      U256 have = from ? state_.balances[*from] : U256(0);
      if (have < call->amount) return Reverted(method, ErrorData("ERC20: transfer amount exceeds balance"));
      return Word(U256(1));
    }
  }
  return Reverted(method, {});  // no such function: the fallback reverts
}

Result<uint64_t> SimChain::EstimateGas(const CallRequest& call) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  if (call.to != options_.token) return kPlainTransferGas;
  GRID_RETURN_IF_ERROR(TokenCall(call.from, call.data, "eth_estimateGas").status());
  return DecodeTransferCall(call.data).ok() ? options_.transfer_gas : kViewCallGas;
}

Result<Bytes> SimChain::Call(const CallRequest& call) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  if (call.to != options_.token) return Bytes{};  // no code there
  return TokenCall(call.from, call.data, "eth_call");
}

Result<U256> SimChain::GasPrice() {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  return U256::Add(*state_.blocks.back().base_fee, priority_fee_).value_or(U256::Max());
}

Result<U256> SimChain::MaxPriorityFeePerGas() {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  return priority_fee_;
}

Result<U256> SimChain::BaseFee() {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  return *state_.blocks.back().base_fee;
}

Result<SendResult> SimChain::SendRawTransaction(std::span<const uint8_t> raw) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  Result<SignedTransaction> decoded = DecodeSignedTransaction(raw);
  if (!decoded.ok()) return InvalidArgument("eth_sendRawTransaction: invalid transaction: " + decoded.status().message());
  SignedTransaction& st = *decoded;
  SendResult result;
  result.tx_hash = st.hash;
  if (st.tx.chain_id != options_.chain_id) {
    return InvalidArgument("eth_sendRawTransaction: invalid chain id " + std::to_string(st.tx.chain_id));
  }
  bool pooled = std::any_of(state_.pool.begin(), state_.pool.end(),
                            [&](const SignedTransaction& t) { return t.hash == st.hash; });
  if (pooled || state_.mined.count(st.hash)) {
    result.outcome = SendOutcome::kAlreadyKnown;
    result.node_message = "already known";
    return result;
  }
  if (st.tx.nonce < state_.nonces[st.from]) {
    result.outcome = SendOutcome::kNonceTooLow;
    result.node_message = "nonce too low: next nonce " + std::to_string(state_.nonces[st.from]) + ", tx nonce " +
                          std::to_string(st.tx.nonce);
    return result;
  }
  if (st.tx.gas_limit < kPlainTransferGas) return InvalidArgument("eth_sendRawTransaction: intrinsic gas too low");
  auto same = std::find_if(state_.pool.begin(), state_.pool.end(), [&](const SignedTransaction& t) {
    return t.from == st.from && t.tx.nonce == st.tx.nonce;
  });
  if (same != state_.pool.end()) {
    // Both the fee cap and the tip must rise by the bump, as geth requires.
    auto enough = [&](const U256& old_fee, const U256& new_fee) {
      auto scaled = U256::MulSmall(old_fee, 100 + options_.replacement_bump_percent);
      auto offered = U256::MulSmall(new_fee, 100);
      return scaled && offered && *offered >= *scaled;
    };
    if (!enough(FeeCap(same->tx), FeeCap(st.tx)) || !enough(Tip(same->tx), Tip(st.tx))) {
      result.outcome = SendOutcome::kReplacementUnderpriced;
      result.node_message = "replacement transaction underpriced";
      return result;
    }
    *same = std::move(st);
    return result;
  }
  state_.pool.push_back(std::move(st));
  return result;
}

Result<std::optional<Receipt>> SimChain::GetTransactionReceipt(const crypto::Hash32& tx_hash) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  auto it = state_.mined.find(tx_hash);
  if (it == state_.mined.end()) return std::optional<Receipt>();
  return std::optional<Receipt>(it->second.receipt);
}

Result<std::optional<TransactionInfo>> SimChain::GetTransactionByHash(const crypto::Hash32& tx_hash) {
  std::lock_guard lock(mu_);
  GRID_RETURN_IF_ERROR(Enter());
  auto info_of = [](const SignedTransaction& st) {
    TransactionInfo info;
    info.hash = st.hash;
    info.from = st.from;
    info.to = st.tx.to;
    info.nonce = st.tx.nonce;
    info.value = st.tx.value;
    info.input = st.tx.data;
    return info;
  };
  if (auto it = state_.mined.find(tx_hash); it != state_.mined.end()) {
    TransactionInfo info = info_of(it->second.tx);
    info.block_number = it->second.receipt.block_number;
    info.block_hash = it->second.receipt.block_hash;
    return std::optional<TransactionInfo>(info);
  }
  for (const SignedTransaction& st : state_.pool) {
    if (st.hash == tx_hash) return std::optional<TransactionInfo>(info_of(st));
  }
  return std::optional<TransactionInfo>();
}

Receipt SimChain::Apply(const SignedTransaction& st, const BlockHeader& block, uint64_t& log_index) {
  Receipt r;
  r.tx_hash = st.hash;
  r.block_number = block.number;
  r.block_hash = block.hash;
  const U256 base = *block.base_fee;
  if (st.tx.type == TxType::kLegacy) {
    r.effective_gas_price = st.tx.gas_price;
  } else {
    U256 tip = std::min(st.tx.max_priority_fee_per_gas, U256::Sub(st.tx.max_fee_per_gas, base).value_or(U256(0)));
    r.effective_gas_price = U256::Add(base, tip).value_or(U256::Max());
  }
  state_.nonces[st.from] = st.tx.nonce + 1;
  const uint64_t needed = GasNeeded(st.tx);
  if (st.tx.gas_limit < needed) {  // out of gas: everything is consumed
    r.gas_used = st.tx.gas_limit;
    r.success = false;
    return r;
  }
  r.gas_used = needed;
  if (st.tx.to != options_.token) {
    r.success = true;
    return r;
  }
  Result<TransferCall> call = DecodeTransferCall(st.tx.data);
  U256& from_balance = state_.balances[st.from];
  if (!call.ok() || !st.tx.value.IsZero() || from_balance < call->amount) {
    r.success = false;
    return r;
  }
  from_balance = *U256::Sub(from_balance, call->amount);
  U256& to_balance = state_.balances[call->to];
  // A real token's total supply bounds every balance; Mint could break
  // that, so overflow reverts instead of wrapping.
  auto sum = U256::Add(to_balance, call->amount);
  if (!sum) {
    from_balance = *U256::Add(from_balance, call->amount);
    r.success = false;
    return r;
  }
  to_balance = *sum;
  Log log;
  log.address = options_.token;
  log.topics = {TransferEventTopic(), AddressTopic(st.from), AddressTopic(call->to)};
  log.data = Word(call->amount);
  log.block_number = block.number;
  log.block_hash = block.hash;
  log.tx_hash = st.hash;
  log.log_index = log_index++;
  r.logs.push_back(log);
  state_.logs.push_back(log);
  r.success = true;
  return r;
}

uint64_t SimChain::Mine(int blocks) {
  std::lock_guard lock(mu_);
  for (int b = 0; b < blocks; ++b) {
    const BlockHeader& parent = state_.blocks.back();
    BlockHeader block;
    block.number = parent.number + 1;
    block.parent_hash = parent.hash;
    block.timestamp = parent.timestamp + options_.block_time_s;
    block.base_fee = next_base_fee_;
    block.hash = BlockHash(block.number, block.parent_hash, block.timestamp, salt_++);
    // Include executable transactions, lowest nonce first per sender, until
    // none is left (a mined nonce can make the next one executable).
    std::sort(state_.pool.begin(), state_.pool.end(), [](const SignedTransaction& a, const SignedTransaction& c) {
      return std::tie(a.from, a.tx.nonce) < std::tie(c.from, c.tx.nonce);
    });
    uint64_t log_index = 0;
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = state_.pool.begin(); it != state_.pool.end();) {
        uint64_t next = state_.nonces[it->from];
        if (it->tx.nonce < next) {  // its nonce was used by another tx: gone
          it = state_.pool.erase(it);
          continue;
        }
        if (it->tx.nonce == next && FeeCap(it->tx) >= *block.base_fee) {
          Receipt r = Apply(*it, block, log_index);
          state_.mined[it->hash] = MinedTx{*it, std::move(r)};
          it = state_.pool.erase(it);
          progress = true;
          continue;
        }
        ++it;
      }
    }
    state_.blocks.push_back(block);
  }
  return state_.blocks.back().number;
}

void SimChain::Mint(const crypto::Address& to, const U256& amount) {
  std::lock_guard lock(mu_);
  U256& b = state_.balances[to];
  b = U256::Add(b, amount).value_or(U256::Max());
}

U256 SimChain::TokenBalance(const crypto::Address& owner) {
  std::lock_guard lock(mu_);
  auto it = state_.balances.find(owner);
  return it == state_.balances.end() ? U256(0) : it->second;
}

void SimChain::SetBaseFee(const U256& base_fee) {
  std::lock_guard lock(mu_);
  next_base_fee_ = base_fee;
}

void SimChain::SetSuggestedPriorityFee(const U256& fee) {
  std::lock_guard lock(mu_);
  priority_fee_ = fee;
}

size_t SimChain::MempoolSize() {
  std::lock_guard lock(mu_);
  return state_.pool.size();
}

void SimChain::DropMempool() {
  std::lock_guard lock(mu_);
  state_.pool.clear();
}

uint64_t SimChain::Snapshot() {
  std::lock_guard lock(mu_);
  uint64_t id = next_snapshot_id_++;
  snapshots_[id] = state_;
  return id;
}

Status SimChain::Revert(uint64_t snapshot_id) {
  std::lock_guard lock(mu_);
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end()) return NotFound("no snapshot " + std::to_string(snapshot_id));
  state_ = std::move(it->second);
  snapshots_.erase(it, snapshots_.end());
  return Status::Ok();
}

void SimChain::FailNextCalls(int n) {
  std::lock_guard lock(mu_);
  fail_next_ = n;
}

void SimChain::SetDown(bool down) {
  std::lock_guard lock(mu_);
  down_ = down;
}

uint64_t SimChain::calls() {
  std::lock_guard lock(mu_);
  return calls_;
}

}  // namespace grid::chain
