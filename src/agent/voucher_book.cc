#include "agent/voucher_book.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "api/codec.h"
#include "crypto/hex.h"
#include "crypto/voucher.h"

namespace grid::agent {
namespace json = boost::json;

namespace {

constexpr std::string_view kPrefix = "voucher-";
constexpr std::string_view kSuffix = ".jsonl";

bool SameTerms(const market::ChannelTerms& a, const market::ChannelTerms& b) {
  return a.price_per_hour == b.price_per_hour && a.interval_ms == b.interval_ms && a.start_ms == b.start_ms &&
         a.length_ms == b.length_ms && a.deposit == b.deposit && a.margin == b.margin &&
         a.channel_expiry_ms == b.channel_expiry_ms && a.expiry_margin_ms == b.expiry_margin_ms &&
         a.grace_ms == b.grace_ms;
}
bool SameChannel(const ChannelLease& a, const ChannelLease& b) {
  return a.chain_id == b.chain_id && a.contract == b.contract && a.channel == b.channel && a.signer == b.signer &&
         SameTerms(a.terms, b.terms);
}

std::string HeaderLine(int64_t lease_id, const ChannelLease& c) {
  const market::ChannelTerms& t = c.terms;
  json::object o{{"lease", lease_id},
                 {"chain_id", c.chain_id},
                 {"contract", c.contract.ToChecksumHex()},
                 {"channel", crypto::HexEncode(c.channel)},
                 {"signer", c.signer.ToChecksumHex()},
                 {"price_per_hour", FormatMoney(t.price_per_hour)},
                 {"interval_ms", t.interval_ms},
                 {"start_ms", t.start_ms},
                 {"length_ms", t.length_ms},
                 {"deposit", FormatMoney(t.deposit)},
                 {"margin", FormatMoney(t.margin)},
                 {"channel_expiry_ms", t.channel_expiry_ms},
                 {"expiry_margin_ms", t.expiry_margin_ms},
                 {"grace_ms", t.grace_ms}};
  return json::serialize(o) + "\n";
}

Result<std::pair<int64_t, ChannelLease>> ParseHeader(const json::object& o) {
  api::Fields f(o);
  ChannelLease c;
  GRID_ASSIGN_OR_RETURN(int64_t lease, f.Int("lease", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(int64_t chain_id, f.Int("chain_id", 0, INT64_MAX));
  c.chain_id = static_cast<uint64_t>(chain_id);
  GRID_ASSIGN_OR_RETURN(std::string contract, f.String("contract"));
  GRID_ASSIGN_OR_RETURN(c.contract, crypto::ParseAddress(contract));
  GRID_ASSIGN_OR_RETURN(std::string channel, f.String("channel"));
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(channel, c.channel, "channel"));
  GRID_ASSIGN_OR_RETURN(std::string signer, f.String("signer"));
  GRID_ASSIGN_OR_RETURN(c.signer, crypto::ParseAddress(signer));
  market::ChannelTerms& t = c.terms;
  GRID_ASSIGN_OR_RETURN(t.price_per_hour, f.Money("price_per_hour"));
  GRID_ASSIGN_OR_RETURN(t.interval_ms, f.Int("interval_ms", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(t.start_ms, f.Int("start_ms", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(t.length_ms, f.Int("length_ms", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(t.deposit, f.Money("deposit"));
  GRID_ASSIGN_OR_RETURN(t.margin, f.Money("margin"));
  GRID_ASSIGN_OR_RETURN(t.channel_expiry_ms, f.Int("channel_expiry_ms", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(t.expiry_margin_ms, f.Int("expiry_margin_ms", INT64_MIN, INT64_MAX));
  GRID_ASSIGN_OR_RETURN(t.grace_ms, f.Int("grace_ms", INT64_MIN, INT64_MAX));
  GRID_RETURN_IF_ERROR(market::ValidateTerms(t));
  return std::make_pair(lease, c);
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Unavailable("voucher book: open " + dir + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Unavailable("voucher book: fsync " + dir + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<VoucherBook>> VoucherBook::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("voucher book: cannot create " + dir + ": " + ec.message());
  std::unique_ptr<VoucherBook> book(new VoucherBook(dir));
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || name.size() <= kSuffix.size() ||
        name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
      continue;
    GRID_RETURN_IF_ERROR(book->Load(entry.path().string()));
  }
  if (ec) return Unavailable("voucher book: cannot list " + dir + ": " + ec.message());
  return book;
}

Status VoucherBook::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) return Unavailable("voucher book: cannot read " + path);
  const std::string text = ss.str();
  // A torn last append (a crash mid-write) was never acknowledged: cut it
  // off, or the next append would be glued to it and damage the file.
  const size_t whole = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (whole == 0) {
    // Not even the header is whole: Track never returned for this lease.
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec) return Unavailable("voucher book: cannot remove " + path + ": " + ec.message());
    return SyncDir(dir_);
  }
  if (whole < text.size()) {
    if (::truncate(path.c_str(), static_cast<off_t>(whole)) != 0)
      return Unavailable("voucher book: truncate " + path + ": " + std::strerror(errno));
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    bool synced = fd >= 0 && ::fdatasync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced) return Unavailable("voucher book: fdatasync " + path + ": " + std::strerror(errno));
  }
  std::optional<int64_t> lease;
  size_t line_no = 0;
  for (size_t at = 0; at < whole;) {
    const size_t nl = text.find('\n', at);
    ++line_no;
    const std::string_view line(text.data() + at, nl - at);
    at = nl + 1;
    auto bad = [&](const std::string& why) {
      return Status(Code::kInternal, "voucher book: " + path + " line " + std::to_string(line_no) + ": " + why);
    };
    boost::system::error_code jec;
    json::value v = json::parse(line, jec);
    if (jec || !v.is_object()) return bad("not a JSON object");
    const json::object& o = v.as_object();
    if (!lease) {
      auto header = ParseHeader(o);
      if (!header.ok()) return bad(header.status().message());
      lease = header->first;
      if (std::filesystem::path(PathOf(*lease)).filename() != std::filesystem::path(path).filename())
        return bad("lease " + std::to_string(*lease) + " in another lease's file");
      leases_[*lease] = State{header->second, 0, {}, 0};
      continue;
    }
    State& st = leases_[*lease];
    api::Fields f(o);
    if (o.contains("voucher")) {
      auto amount = f.Money("voucher");
      auto sig_hex = f.String("signature");
      if (!amount.ok() || !sig_hex.ok()) return bad("malformed voucher");
      auto sig = crypto::ParseSignature(*sig_hex);
      if (!sig.ok()) return bad(sig.status().message());
      // Re-checked on load: a file edited or damaged on disk must not
      // become a claim the chain would refuse.
      Status ok = crypto::VerifyVoucher(st.channel.chain_id, st.channel.contract, st.channel.channel,
                                        static_cast<uint64_t>(*amount), *sig, st.channel.signer);
      if (!ok.ok()) return bad(ok.message());
      if (*amount <= st.accepted) return bad("voucher amounts must grow");
      st.accepted = *amount;
      st.signature = *sig;
    } else if (o.contains("redeemed")) {
      auto amount = f.Money("redeemed");
      if (!amount.ok() || *amount < st.redeemed || *amount > st.accepted) return bad("malformed redemption");
      st.redeemed = *amount;
    } else {
      return bad("unknown record");
    }
  }
  return Status::Ok();
}

std::string VoucherBook::PathOf(int64_t lease_id) const {
  return dir_ + "/" + std::string(kPrefix) + std::to_string(lease_id) + std::string(kSuffix);
}

Status VoucherBook::Append(int64_t lease_id, const std::string& line, bool create) {
  // After a failed write or fdatasync the kernel may have dropped pages the
  // book believes are on disk: stop acknowledging anything (reopen to go on).
  if (!broken_.empty()) return Unavailable("voucher book: " + broken_ + "; restart the agent");
  Status s = AppendOnce(lease_id, line, create);
  if (!s.ok()) broken_ = s.message();
  return s;
}

Status VoucherBook::AppendOnce(int64_t lease_id, const std::string& line, bool create) {
  const std::string path = PathOf(lease_id);
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) return Unavailable("voucher book: open " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      return Unavailable("voucher book: write " + path + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  bool synced = ::fdatasync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!synced) return Unavailable("voucher book: fdatasync " + path + ": " + std::strerror(err));
  if (create) return SyncDir(dir_);  // the new file's name is durable too
  return Status::Ok();
}

Status VoucherBook::Track(int64_t lease_id, const ChannelLease& channel) {
  GRID_RETURN_IF_ERROR(market::ValidateTerms(channel.terms));
  if (auto it = leases_.find(lease_id); it != leases_.end()) {
    if (SameChannel(it->second.channel, channel)) return Status::Ok();
    return Conflict("voucher book: lease " + std::to_string(lease_id) + " is already tracked with other terms");
  }
  GRID_RETURN_IF_ERROR(Append(lease_id, HeaderLine(lease_id, channel), /*create=*/true));
  leases_[lease_id] = State{channel, 0, {}, 0};
  return Status::Ok();
}

Result<int64_t> VoucherBook::Accept(int64_t lease_id, Micros amount, const crypto::Signature& sig, UnixMs now_ms) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return NotFound("voucher book: lease " + std::to_string(lease_id) + " is not paid by channel");
  State& st = it->second;
  const ChannelLease& c = st.channel;
  if (amount <= 0) return InvalidArgument("voucher: amount must be positive");
  Status ok = crypto::VerifyVoucher(c.chain_id, c.contract, c.channel, static_cast<uint64_t>(amount), sig, c.signer);
  if (!ok.ok()) return Status(Code::kInvalidArgument, "voucher: " + ok.message());
  GRID_ASSIGN_OR_RETURN(int64_t k, market::CheckVoucherAmount(c.terms, st.accepted, amount, now_ms));
  json::object line{{"voucher", FormatMoney(amount)}, {"signature", crypto::HexEncode(sig)}};
  GRID_RETURN_IF_ERROR(Append(lease_id, json::serialize(line) + "\n", false));
  st.accepted = amount;
  st.signature = sig;
  return k;
}

const VoucherBook::State* VoucherBook::Find(int64_t lease_id) const {
  auto it = leases_.find(lease_id);
  return it == leases_.end() ? nullptr : &it->second;
}

Status VoucherBook::MarkRedeemed(int64_t lease_id, Micros amount) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return NotFound("voucher book: lease " + std::to_string(lease_id) + " is not tracked");
  State& st = it->second;
  if (amount < st.redeemed || amount > st.accepted)
    return InvalidArgument("voucher book: redeemed " + FormatMoney(amount) + " must lie between " +
                           FormatMoney(st.redeemed) + " and the accepted " + FormatMoney(st.accepted));
  if (amount == st.redeemed) return Status::Ok();
  json::object line{{"redeemed", FormatMoney(amount)}};
  GRID_RETURN_IF_ERROR(Append(lease_id, json::serialize(line) + "\n", false));
  st.redeemed = amount;
  return Status::Ok();
}

bool VoucherBook::MustStop(int64_t lease_id, UnixMs now_ms) const {
  const State* st = Find(lease_id);
  return st && market::MustStop(st->channel.terms, st->accepted, now_ms);
}

bool VoucherBook::ShouldRedeem(int64_t lease_id, Micros threshold, UnixMs now_ms) const {
  const State* st = Find(lease_id);
  return st && market::ShouldRedeem(st->channel.terms, st->accepted, st->redeemed, threshold, now_ms);
}

Status VoucherBook::Forget(int64_t lease_id) {
  if (leases_.erase(lease_id) == 0) return Status::Ok();
  // Archived, not deleted: signed vouchers are the provider's evidence, and
  // a wrong conclusion that the channel closed must never destroy them.
  const std::string closed = dir_ + "/closed";
  std::error_code ec;
  std::filesystem::create_directories(closed, ec);
  if (ec) return Unavailable("voucher book: cannot create " + closed + ": " + ec.message());
  const std::string to = closed + "/" + std::filesystem::path(PathOf(lease_id)).filename().string();
  std::filesystem::rename(PathOf(lease_id), to, ec);
  if (ec) return Unavailable("voucher book: cannot move " + PathOf(lease_id) + " to " + to + ": " + ec.message());
  GRID_RETURN_IF_ERROR(SyncDir(closed));
  return SyncDir(dir_);
}

}  // namespace grid::agent
