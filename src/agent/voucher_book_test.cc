// The agent's voucher book: checks, durability across reopen and kill -9,
// torn and damaged files.
#include "agent/voucher_book.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "crypto/hex.h"
#include "crypto/voucher.h"

namespace grid::agent {
namespace {

constexpr UnixMs kStart = 1'790'000'000'000;
constexpr uint64_t kChain = 31337;

class VoucherBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("voucher_book_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    renter_ = crypto::PrivateKeyFromHex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d").value();
    other_ = crypto::PrivateKeyFromHex("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a").value();
    channel_.chain_id = kChain;
    channel_.contract = crypto::ParseAddress("0x5FC8d32690cc91D4c39d9d3abcBD16989F875707").value();
    channel_.channel = crypto::Keccak256(std::string_view("a channel"));
    channel_.signer = crypto::AddressOf(renter_);
    channel_.terms.price_per_hour = 2'000'000;  // $2/h: 33,333 per 60 s interval
    channel_.terms.interval_ms = 60'000;
    channel_.terms.start_ms = kStart;
    channel_.terms.deposit = 1'000'000;
    channel_.terms.margin = 33'334;
    channel_.terms.channel_expiry_ms = kStart + 86'400'000;
    channel_.terms.expiry_margin_ms = 3'600'000;
    channel_.terms.grace_ms = 10'000;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  crypto::Signature Sign(Micros amount, const crypto::PrivateKey& key) const {
    return crypto::SignVoucher(key, kChain, channel_.contract, channel_.channel, static_cast<uint64_t>(amount)).value();
  }
  std::unique_ptr<VoucherBook> Open() {
    auto b = VoucherBook::Open(dir_.string());
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  }
  std::string FileOf(int64_t lease) const { return (dir_ / ("voucher-" + std::to_string(lease) + ".jsonl")).string(); }

  std::filesystem::path dir_;
  crypto::PrivateKey renter_, other_;
  ChannelLease channel_;
};

TEST_F(VoucherBookTest, AcceptsTheScheduleAndKeepsItAcrossReopen) {
  auto book = Open();
  ASSERT_TRUE(book->Track(7, channel_).ok());
  EXPECT_TRUE(book->Track(7, channel_).ok()) << "the same terms again";
  ChannelLease other = channel_;
  other.terms.price_per_hour = 3'000'000;
  EXPECT_EQ(book->Track(7, other).code(), Code::kConflict);
  EXPECT_EQ(book->Accept(7, 33'333, Sign(33'333, renter_), kStart).value(), 0);
  EXPECT_EQ(book->Accept(7, 66'666, Sign(66'666, renter_), kStart + 1'000).value(), 1);
  EXPECT_TRUE(book->MarkRedeemed(7, 33'333).ok());
  book.reset();

  auto again = Open();
  const VoucherBook::State* st = again->Find(7);
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->accepted, 66'666);
  EXPECT_EQ(st->redeemed, 33'333);
  EXPECT_EQ(st->signature, Sign(66'666, renter_));
  EXPECT_EQ(st->channel.signer, channel_.signer);
  EXPECT_EQ(st->channel.terms.deposit, 1'000'000);
  // PaidThrough(66,666) = start + 120 s; then the grace.
  EXPECT_FALSE(again->MustStop(7, kStart + 130'000));
  EXPECT_TRUE(again->MustStop(7, kStart + 130'001));
  EXPECT_TRUE(again->ShouldRedeem(7, 33'333, kStart));
  EXPECT_FALSE(again->ShouldRedeem(7, 33'334, kStart));
  EXPECT_EQ(again->Accept(7, 100'000, Sign(100'000, renter_), kStart + 60'000).value(), 2);
}

TEST_F(VoucherBookTest, RefusesWithoutWritingAnything) {
  auto book = Open();
  ASSERT_TRUE(book->Track(7, channel_).ok());
  ASSERT_TRUE(book->Accept(7, 33'333, Sign(33'333, renter_), kStart).ok());
  const auto size = std::filesystem::file_size(FileOf(7));
  // Another key's signature, a signature of another amount, off the
  // schedule, too far ahead, a repeat, a decrease, an untracked lease.
  EXPECT_EQ(book->Accept(7, 66'666, Sign(66'666, other_), kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(book->Accept(7, 66'666, Sign(66'667, renter_), kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(book->Accept(7, 66'667, Sign(66'667, renter_), kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(book->Accept(7, 100'000, Sign(100'000, renter_), kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(book->Accept(7, 33'333, Sign(33'333, renter_), kStart).status().code(), Code::kConflict);
  EXPECT_EQ(book->Accept(7, 1, Sign(1, renter_), kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(book->Accept(8, 33'333, Sign(33'333, renter_), kStart).status().code(), Code::kNotFound);
  EXPECT_EQ(book->MarkRedeemed(7, 33'334).code(), Code::kInvalidArgument) << "more than accepted";
  EXPECT_EQ(std::filesystem::file_size(FileOf(7)), size);
  EXPECT_EQ(book->Find(7)->accepted, 33'333);
  ChannelLease bad = channel_;
  bad.terms.deposit = bad.terms.margin;
  EXPECT_EQ(book->Track(9, bad).code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(FileOf(9)));
}

TEST_F(VoucherBookTest, TornLastLineIsDroppedDamageIsNamed) {
  {
    auto book = Open();
    ASSERT_TRUE(book->Track(7, channel_).ok());
    ASSERT_TRUE(book->Accept(7, 33'333, Sign(33'333, renter_), kStart).ok());
  }
  const std::string good = [&] {
    std::ifstream in(FileOf(7));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  {
    std::ofstream out(FileOf(7), std::ios::app);
    out << "{\"voucher\":\"0.066666\",\"signa";  // a crash mid-append
  }
  auto book = Open();
  EXPECT_EQ(book->Find(7)->accepted, 33'333);
  // The torn tail is cut off, so the next append starts on a line of its own
  // and the file still loads.
  ASSERT_TRUE(book->Accept(7, 66'666, Sign(66'666, renter_), kStart).ok());
  book.reset();
  EXPECT_EQ(Open()->Find(7)->accepted, 66'666);

  // A crash inside Track: a file without a whole header line. Its Track
  // never returned, so it is removed and the lease can be tracked again.
  { std::ofstream(FileOf(9)) << "{\"lease\":9,\"chain_id\":313"; }
  book = Open();
  EXPECT_EQ(book->Find(9), nullptr);
  EXPECT_FALSE(std::filesystem::exists(FileOf(9)));
  EXPECT_TRUE(book->Track(9, channel_).ok());
  book.reset();

  // A voucher line whose amount was changed on disk: its signature no
  // longer matches, and loading says where.
  std::string forged = good;
  forged.replace(forged.find("0.033333"), 8, "0.066666");
  { std::ofstream(FileOf(7), std::ios::trunc) << forged; }
  auto r = VoucherBook::Open(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status().message();
  // Garbage in the middle.
  { std::ofstream(FileOf(7), std::ios::trunc) << good.substr(0, good.find('\n') + 1) << "not json\n"; }
  EXPECT_FALSE(VoucherBook::Open(dir_.string()).ok());
}

TEST_F(VoucherBookTest, ForgetArchivesTheLease) {
  auto book = Open();
  ASSERT_TRUE(book->Track(7, channel_).ok());
  ASSERT_TRUE(book->Forget(7).ok());
  EXPECT_EQ(book->Find(7), nullptr);
  EXPECT_FALSE(std::filesystem::exists(FileOf(7)));
  const auto archived = std::filesystem::path(FileOf(7)).parent_path() / "closed" /
                        std::filesystem::path(FileOf(7)).filename();
  EXPECT_TRUE(std::filesystem::exists(archived)) << "kept as the provider's record";
  EXPECT_TRUE(book->Forget(7).ok());
  EXPECT_TRUE(Open()->leases().empty()) << "an archived lease is not loaded again";
}

// An acknowledged voucher survives kill -9: a child accepts vouchers and
// reports each acknowledgement on a pipe; the parent kills it at a random
// moment and reopens the book. Seeded, printed.
TEST_F(VoucherBookTest, AcknowledgedVouchersSurviveKill9) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 3; ++round) {
    std::filesystem::remove_all(dir_);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto book = VoucherBook::Open(dir_.string());
      if (!book.ok() || !(*book)->Track(7, channel_).ok()) ::_exit(2);
      for (int64_t k = 0; k < 28; ++k) {
        Micros a = market::VoucherAmount(channel_.terms, k).value();
        if (!(*book)->Accept(7, a, Sign(a, renter_), kStart + k * 60'000).ok()) ::_exit(3);
        int64_t acked = a;
        if (::write(fds[1], &acked, sizeof acked) != sizeof acked) ::_exit(4);
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    Micros last_acked = 0;
    const int stop_after = std::uniform_int_distribution<int>(1, 20)(rng);
    for (int i = 0; i < stop_after; ++i) {
      int64_t v = 0;
      if (::read(fds[0], &v, sizeof v) != sizeof v) break;
      last_acked = v;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(fds[0]);
    auto book = Open();
    ASSERT_NE(book->Find(7), nullptr);
    EXPECT_GE(book->Find(7)->accepted, last_acked) << "round " << round;
  }
}

}  // namespace
}  // namespace grid::agent
