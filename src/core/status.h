// Status and Result<T>: how every layer of Gridmarket reports failure.
//
// Contract: no exception crosses a module boundary. A function that can fail
// returns Status (no value) or Result<T> (a value or a Status). Codes are few
// and map one-to-one onto the HTTP status and the JSON error code the API
// returns, so a failure deep in the ledger reaches the user with its meaning
// intact. Thread-safe as values (immutable after construction).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace grid {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // 400 bad input from outside: names what was wrong
  kUnauthenticated,     // 401 missing, forged or expired credentials
  kInsufficientFunds,   // 402 the account cannot pay
  kPermissionDenied,    // 403 authenticated, but not allowed on this resource
  kNotFound,            // 404 unknown id
  kConflict,            // 409 state does not allow it (already ended, taken)
  kNotAvailable,        // 409 the GPUs are no longer available
  kIdempotencyMismatch, // 409 an idempotency id reused with different content
  kUnavailable,         // 503 a dependency (store, chain) failed; retry
  kAborted,             // 503 another broker replica committed first; retried inside, rarely seen
  kOutcomeUnknown,      // 504 the store's connection was lost during COMMIT: it may have happened; check first
  kInternal,            // 500 a bug: an invariant did not hold
};

// The stable machine-readable name of a code ("invalid_argument"), used in
// the API's {"error":{"code":...}} bodies.
std::string_view CodeName(Code code);
// The HTTP status for a code.
int HttpStatus(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

// A value or the Status that explains its absence. Constructing from an OK
// Status is a bug (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(implicit)
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace grid

// Early-return helpers. GRID_ASSIGN_OR_RETURN(auto x, Expr()) declares x.
#define GRID_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::grid::Status grid_status_ = (expr);       \
    if (!grid_status_.ok()) return grid_status_; \
  } while (0)

#define GRID_CONCAT_INNER(a, b) a##b
#define GRID_CONCAT(a, b) GRID_CONCAT_INNER(a, b)
#define GRID_ASSIGN_OR_RETURN(lhs, expr) \
  GRID_ASSIGN_OR_RETURN_IMPL(GRID_CONCAT(grid_result_, __LINE__), lhs, expr)
#define GRID_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
