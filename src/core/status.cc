#include "core/status.h"

namespace grid {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kUnauthenticated: return "unauthenticated";
    case Code::kInsufficientFunds: return "insufficient_funds";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kNotFound: return "not_found";
    case Code::kConflict: return "conflict";
    case Code::kNotAvailable: return "not_available";
    case Code::kIdempotencyMismatch: return "exists_with_different_content";
    case Code::kUnavailable: return "unavailable";
    case Code::kAborted: return "aborted";
    case Code::kOutcomeUnknown: return "outcome_unknown";
    case Code::kInternal: return "internal";
  }
  return "internal";
}

int HttpStatus(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kInsufficientFunds: return 402;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kConflict:
    case Code::kNotAvailable:
    case Code::kIdempotencyMismatch: return 409;
    case Code::kUnavailable: return 503;
    case Code::kAborted: return 503;
    case Code::kOutcomeUnknown: return 504;
    case Code::kInternal: return 500;
  }
  return 500;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace grid
