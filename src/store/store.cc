// OpenStore() and the rules every Store implementation shares.
#include "store/store.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>

#include "store/store_internal.h"

namespace grid::store {
namespace internal {

std::string TransferDifference(const ledger::Transfer& stored, const ledger::Transfer& incoming) {
  std::string diff;
  auto add = [&diff](std::string_view what) {
    if (!diff.empty()) diff += ", ";
    diff += what;
  };
  if (stored.amount != incoming.amount) add("amount");
  if (stored.debit != incoming.debit || stored.credit != incoming.credit) add("accounts");
  if (stored.kind != incoming.kind) add("kind");
  if (stored.lease_id != incoming.lease_id) add("lease_id");
  if (stored.memo != incoming.memo) add("memo");
  return diff;
}

Status DuplicateTransfer(const ledger::Transfer& stored, const ledger::Transfer& incoming) {
  std::string diff = TransferDifference(stored, incoming);
  if (diff.empty()) return Conflict("transfer " + incoming.id + " exists");
  return Status(Code::kIdempotencyMismatch,
                "transfer " + incoming.id + " exists with different " + diff);
}

Status ChannelReuse(const market::Lease& lease, int64_t other_lease_id) {
  return Conflict("channel " + (lease.channel ? lease.channel->channel : std::string()) + " already pays lease " +
                  std::to_string(other_lease_id) + "; open a new channel for lease " + std::to_string(lease.id));
}

std::string EncodeGpus(const std::vector<int>& gpus) {
  std::string out;
  for (size_t i = 0; i < gpus.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(gpus[i]);
  }
  return out;
}

bool DecodeGpus(std::string_view text, std::vector<int>* out) {
  out->clear();
  if (text.empty()) return true;
  const char* p = text.data();
  const char* end = p + text.size();
  for (;;) {
    int v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || next == p) return false;
    out->push_back(v);
    if (next == end) return true;
    if (*next != ',') return false;
    p = next + 1;
  }
}

std::string EncodeEndpoints(const std::vector<market::PortMapping>& eps) {
  std::string out;
  for (const auto& e : eps) {
    if (!out.empty()) out += ',';
    out += std::to_string(e.container_port) + ":" + std::to_string(e.host_port);
  }
  return out;
}

bool DecodeEndpoints(std::string_view text, std::vector<market::PortMapping>* out) {
  out->clear();
  while (!text.empty()) {
    std::string_view item = text.substr(0, text.find(','));
    text.remove_prefix(std::min(text.size(), item.size() + 1));
    size_t colon = item.find(':');
    if (colon == std::string_view::npos) return false;
    std::vector<int> pair;
    std::string joined = std::string(item.substr(0, colon)) + "," + std::string(item.substr(colon + 1));
    if (!DecodeGpus(joined, &pair) || pair.size() != 2) return false;
    out->push_back({pair[0], pair[1]});
  }
  return true;
}

std::string JoinList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

ChangeKeys KeysOf(const ChangeSet& changes) {
  ChangeKeys k;
  for (const auto& m : changes.machines) k.machines.push_back(m.id);
  for (const auto& l : changes.leases) k.leases.push_back(l.id);
  for (const auto& w : changes.withdrawals) k.withdrawals.push_back(w.id);
  for (const auto& a : changes.accounts) k.accounts.push_back(a.id);
  for (const auto& [key, value] : changes.meta) k.meta.push_back(key);
  Merge(&k, ChangeKeys{});  // sorted, unique
  return k;
}

std::string JoinIds(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

bool SplitIds(std::string_view text, std::vector<int64_t>* out) {
  out->clear();
  while (!text.empty()) {
    std::string_view item = text.substr(0, text.find(','));
    int64_t v = 0;
    auto [next, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || next != item.data() + item.size()) return false;
    out->push_back(v);
    text.remove_prefix(std::min(text.size(), item.size() + 1));
  }
  return true;
}

std::string JoinLines(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "\n" : "") + items[i];
  return out;
}

std::vector<std::string> SplitLines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    std::string_view item = text.substr(0, text.find('\n'));
    out.emplace_back(item);
    text.remove_prefix(std::min(text.size(), item.size() + 1));
  }
  return out;
}

void Merge(ChangeKeys* a, const ChangeKeys& b) {
  auto merge = [](auto& into, const auto& from) {
    into.insert(into.end(), from.begin(), from.end());
    std::sort(into.begin(), into.end());
    into.erase(std::unique(into.begin(), into.end()), into.end());
  };
  merge(a->machines, b.machines);
  merge(a->leases, b.leases);
  merge(a->withdrawals, b.withdrawals);
  merge(a->accounts, b.accounts);
  merge(a->meta, b.meta);
}

Status StaleCommit(int64_t after_seq, int64_t head) {
  return Status(Code::kAborted, "another broker replica committed first (change log at " + std::to_string(head) +
                                    ", this commit expected " + std::to_string(after_seq) + "); catch up and retry");
}

Status NonceReplay(const market::Lease& lease) {
  return Conflict("order nonce already used: renter " + lease.renter + " nonce " +
                  std::to_string(lease.order.nonce) + " (lease " + std::to_string(lease.id) + ")");
}

Status ValidateMachine(const market::Machine& m) {
  const market::MachineSpec& s = m.spec;
  const std::pair<const char*, double> numbers[] = {
      {"gpu_ram", s.gpu_ram},       {"cpu_ram", s.cpu_ram}, {"disk_space", s.disk_space},
      {"inet_up", s.inet_up},       {"inet_down", s.inet_down},
  };
  for (const auto& [name, value] : numbers) {
    if (!std::isfinite(value)) {
      return InvalidArgument("machine " + std::to_string(m.id) + ": " + name + " is not a finite number");
    }
  }
  return Status::Ok();
}

market::Machine StoredForm(market::Machine machine) {
  machine.spec.extra.clear();
  return machine;
}

}  // namespace internal

namespace {
Status NotShared(const Store& store) {
  return Internal(store.Describe() + ": not a shared store (one broker at a time); no change log or shared state");
}
}  // namespace

Result<Changes> Store::ChangesSince(int64_t) { return NotShared(*this); }
Result<int64_t> Store::WaitForChange(int64_t, int64_t) { return NotShared(*this); }
Status Store::PutShared(const std::string&, const std::string&, UnixMs) { return NotShared(*this); }
Result<std::optional<std::string>> Store::GetShared(const std::string&, UnixMs) { return NotShared(*this); }
Result<std::optional<std::string>> Store::TakeShared(const std::string&, UnixMs) { return NotShared(*this); }
Result<std::vector<std::pair<std::string, std::string>>> Store::ListShared(const std::string&, UnixMs) {
  return NotShared(*this);
}

namespace {

// "scheme:" prefix in the RFC 3986 sense: a letter, then letters, digits, + - .
bool HasScheme(std::string_view url, std::string_view* scheme) {
  size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(url[0]))) return false;
  for (size_t i = 1; i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  *scheme = url.substr(0, colon);
  return true;
}

// The url with any "user:password@" part hidden, for error messages.
std::string Redacted(const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return url;
  start += 3;
  size_t at = url.find('@', start);
  size_t slash = url.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  return url.substr(0, start) + "***" + url.substr(at);
}

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const std::string& url, bool read_only) {
  if (url.empty()) {
    return InvalidArgument("empty store url (want sqlite:PATH, PATH, postgres://USER@HOST:PORT/DB or memory:)");
  }
  std::string_view scheme;
  if (!HasScheme(url, &scheme)) {
    return OpenSqliteStore(url, SqliteOptions{.read_only = read_only});
  }
  if (scheme == "memory") {
    if (url != "memory:") return InvalidArgument("store url " + url + ": memory: takes no path");
    return NewMemoryStore();
  }
  if (scheme == "sqlite") {
    std::string path = url.substr(scheme.size() + 1);
    if (path.empty()) return InvalidArgument("store url " + url + " has no path (want sqlite:PATH)");
    return OpenSqliteStore(path, SqliteOptions{.read_only = read_only});
  }
  if (scheme == "postgres" || scheme == "postgresql") {
    if (url.compare(scheme.size(), 3, "://") != 0) {
      // Not echoed: such a url may carry a password.
      return InvalidArgument("store url " + std::string(scheme) + ":… is not a URL (want " + std::string(scheme) +
                             "://USER@HOST:PORT/DB)");
    }
    return OpenPostgresStore(url, PostgresOptions{.read_only = read_only});
  }
  return InvalidArgument("unknown store url " + Redacted(url) +
                         " (want sqlite:PATH, PATH, postgres://USER@HOST:PORT/DB or memory:)");
}

}  // namespace grid::store
