// JsonRpcChain against a real node: anvil from npm (@foundry-rs/anvil, in
// node_modules), started on 127.0.0.1 with port 0 and killed by PID. It
// checks that a real EVM node accepts what we sign (EIP-1559 and EIP-155),
// and reads our parsers back from its real answers. Skipped, saying so, when
// the anvil binary is not installed (npm ci).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "chain/rpc/json_rpc_chain.h"
#include "chain/tx.h"
#include "chain/tx_sender.h"

namespace grid::chain {
namespace {

std::string AnvilPath() {
  if (const char* env = std::getenv("ANVIL_BIN")) return env;
  return std::string(GRID_SOURCE_DIR) + "/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
}

// anvil's first dev key (its default mnemonic): funded with 10,000 ETH on a
// fresh local chain, never anywhere else.
constexpr char kDevKey0[] = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const crypto::Address kBob = crypto::ParseAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").value();

class AnvilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string bin = AnvilPath();
    if (!std::filesystem::exists(bin)) GTEST_SKIP() << "anvil not installed at " << bin << " (run npm ci)";
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      dup2(out[1], 1);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      close(out[0]);
      execl(bin.c_str(), bin.c_str(), "--host", "127.0.0.1", "--port", "0", "--chain-id", "31337", nullptr);
      _exit(127);
    }
    close(out[1]);
    // Read until "Listening on 127.0.0.1:PORT" (within 20 s).
    std::string seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    size_t at = std::string::npos;
    while ((at = seen.find("Listening on ")) == std::string::npos || seen.find('\n', at) == std::string::npos) {
      int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      ASSERT_GT(left, 0) << "anvil did not start: " << seen;
      pollfd p{out[0], POLLIN, 0};
      ASSERT_GE(poll(&p, 1, left), 0);
      char buf[4096];
      ssize_t n = read(out[0], buf, sizeof(buf));
      ASSERT_GT(n, 0) << "anvil exited: " << seen;
      seen.append(buf, size_t(n));
    }
    stdout_fd_ = out[0];  // kept open so anvil never writes to a closed pipe
    std::string addr = seen.substr(at + 13, seen.find('\n', at) - at - 13);
    while (!addr.empty() && (addr.back() == '\r' || addr.back() == ' ')) addr.pop_back();
    auto c = JsonRpcChain::Create("http://" + addr);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    chain_ = std::move(c).value();
  }

  void TearDown() override {
    chain_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }

  // anvil mines each transaction at once, but its receipt shows up a moment
  // after eth_sendRawTransaction returns.
  std::optional<Receipt> WaitReceipt(const crypto::Hash32& h) {
    for (int i = 0; i < 100; ++i) {
      auto r = chain_->GetTransactionReceipt(h);
      if (!r.ok()) {
        ADD_FAILURE() << r.status().ToString();
        return std::nullopt;
      }
      if (r->has_value()) return *r;
      usleep(50'000);
    }
    return std::nullopt;
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::unique_ptr<JsonRpcChain> chain_;
};

TEST_F(AnvilTest, RealNodeAcceptsOurTransactions) {
  auto key = crypto::PrivateKeyFromHex(kDevKey0).value();
  crypto::Address me = crypto::AddressOf(key);
  EXPECT_EQ(chain_->ChainId().value(), 31337u);
  EXPECT_EQ(chain_->BlockNumber().value(), 0u);
  BlockHeader genesis = chain_->GetBlock(0).value();
  EXPECT_TRUE(genesis.base_fee.has_value());
  EXPECT_EQ(chain_->GetBlock(1000).status().code(), Code::kNotFound);
  EXPECT_EQ(chain_->GetTransactionCount(me, BlockTag::kPending).value(), 0u);
  EXPECT_EQ(chain_->EstimateGas(CallRequest{me, kBob, {}, U256(1)}).value(), 21'000u);
  EXPECT_TRUE(chain_->Call(CallRequest{me, kBob, {}, U256()}).value().empty());  // no code there
  EXPECT_TRUE(chain_->GetLogs(LogFilter{0, 0}).value().empty());

  // EIP-1559 with fees from TxSender's policy.
  TxSender sender(*chain_, key);
  TxSender::Fees fees = sender.CurrentFees().value();
  Transaction tx;
  tx.chain_id = 31337;
  tx.nonce = 0;
  tx.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
  tx.max_fee_per_gas = fees.max_fee_per_gas;
  tx.gas_limit = 21'000;
  tx.to = kBob;
  tx.value = U256(12345);
  auto st = SignTransaction(tx, key).value();
  auto sent = chain_->SendRawTransaction(st.raw);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(sent->outcome, SendOutcome::kAccepted);
  auto receipt = WaitReceipt(st.hash);
  ASSERT_TRUE(receipt.has_value());
  EXPECT_TRUE(receipt->success);
  EXPECT_EQ(receipt->gas_used, 21'000u);
  EXPECT_EQ(receipt->block_hash, chain_->GetBlock(receipt->block_number).value().hash);
  auto info = chain_->GetTransactionByHash(st.hash).value();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->from, me);
  EXPECT_EQ(info->value, U256(12345));
  EXPECT_EQ(info->block_number, receipt->block_number);

  // Legacy EIP-155 at the next nonce.
  Transaction legacy;
  legacy.type = TxType::kLegacy;
  legacy.chain_id = 31337;
  legacy.nonce = 1;
  legacy.gas_price = chain_->GasPrice().value();
  legacy.gas_limit = 21'000;
  legacy.to = kBob;
  legacy.value = U256(1);
  auto lst = SignTransaction(legacy, key).value();
  ASSERT_EQ(chain_->SendRawTransaction(lst.raw).value().outcome, SendOutcome::kAccepted);
  auto lreceipt = WaitReceipt(lst.hash);
  ASSERT_TRUE(lreceipt.has_value());
  EXPECT_TRUE(lreceipt->success);
  EXPECT_EQ(chain_->GetTransactionCount(me, BlockTag::kLatest).value(), 2u);

  // A rebroadcast of a mined transaction, as after a crash.
  auto again = chain_->SendRawTransaction(st.raw).value();
  EXPECT_TRUE(again.outcome == SendOutcome::kNonceTooLow || again.outcome == SendOutcome::kAlreadyKnown)
      << again.node_message;
  // A key with no ether.
  crypto::PrivateKey poor;
  poor.bytes[31] = 77;
  tx.nonce = 0;
  auto p = chain_->SendRawTransaction(SignTransaction(tx, poor).value().raw);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kInsufficientFunds) << p.status().ToString();
}

}  // namespace
}  // namespace grid::chain
