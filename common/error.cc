#include "common/result.h"

#include <cerrno>
#include <cstring>

namespace nydus {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "InvalidArgument";
    case ErrorKind::kNotFound: return "NotFound";
    case ErrorKind::kAlreadyExists: return "AlreadyExists";
    case ErrorKind::kFailedPrecondition: return "FailedPrecondition";
    case ErrorKind::kNotReady: return "NotReady";
    case ErrorKind::kUnsupported: return "Unsupported";
    case ErrorKind::kCorrupt: return "Corrupt";
    case ErrorKind::kIo: return "Io";
    case ErrorKind::kTooLarge: return "TooLarge";
    case ErrorKind::kPermissionDenied: return "PermissionDenied";
    case ErrorKind::kTimeout: return "Timeout";
    case ErrorKind::kInternal: return "Internal";
  }
  return "Unknown";
}

Error Error::from_errno(int err, std::string_view what) {
  ErrorKind kind = ErrorKind::kIo;
  switch (err) {
    case ENOENT: kind = ErrorKind::kNotFound; break;
    case EEXIST: kind = ErrorKind::kAlreadyExists; break;
    case EACCES:
    case EPERM: kind = ErrorKind::kPermissionDenied; break;
    case EINVAL: kind = ErrorKind::kInvalidArgument; break;
    case ETIMEDOUT: kind = ErrorKind::kTimeout; break;
    case ENOSYS:
    case EOPNOTSUPP: kind = ErrorKind::kUnsupported; break;
    default: break;
  }
  return Error(kind, fmt::format("{}: {}", what, std::strerror(err)), err);
}

int Error::to_errno() const {
  if (errno_ != 0) return errno_;
  switch (kind_) {
    case ErrorKind::kInvalidArgument: return EINVAL;
    case ErrorKind::kNotFound: return ENOENT;
    case ErrorKind::kAlreadyExists: return EEXIST;
    case ErrorKind::kFailedPrecondition: return EINVAL;
    case ErrorKind::kNotReady: return EAGAIN;
    case ErrorKind::kUnsupported: return ENOSYS;
    case ErrorKind::kCorrupt: return EIO;
    case ErrorKind::kIo: return EIO;
    case ErrorKind::kTooLarge: return E2BIG;
    case ErrorKind::kPermissionDenied: return EACCES;
    case ErrorKind::kTimeout: return ETIMEDOUT;
    case ErrorKind::kInternal: return EIO;
  }
  return EIO;
}

int Error::http_status() const {
  switch (kind_) {
    case ErrorKind::kInvalidArgument: return 400;
    case ErrorKind::kNotFound: return 404;
    case ErrorKind::kAlreadyExists: return 409;
    case ErrorKind::kFailedPrecondition: return 400;
    case ErrorKind::kNotReady: return 503;
    case ErrorKind::kUnsupported: return 501;
    case ErrorKind::kCorrupt: return 400;
    case ErrorKind::kIo: return 500;
    case ErrorKind::kTooLarge: return 413;
    case ErrorKind::kPermissionDenied: return 403;
    case ErrorKind::kTimeout: return 504;
    case ErrorKind::kInternal: return 500;
  }
  return 500;
}

int Error::grpc_code() const {
  // Values of grpc::StatusCode, kept numeric so common/ does not depend on gRPC.
  switch (kind_) {
    case ErrorKind::kInvalidArgument: return 3;     // INVALID_ARGUMENT
    case ErrorKind::kNotFound: return 5;            // NOT_FOUND
    case ErrorKind::kAlreadyExists: return 6;       // ALREADY_EXISTS
    case ErrorKind::kFailedPrecondition: return 9;  // FAILED_PRECONDITION
    case ErrorKind::kNotReady: return 14;           // UNAVAILABLE
    case ErrorKind::kUnsupported: return 12;        // UNIMPLEMENTED
    case ErrorKind::kCorrupt: return 15;            // DATA_LOSS
    case ErrorKind::kIo: return 13;                 // INTERNAL
    case ErrorKind::kTooLarge: return 8;            // RESOURCE_EXHAUSTED
    case ErrorKind::kPermissionDenied: return 7;    // PERMISSION_DENIED
    case ErrorKind::kTimeout: return 4;             // DEADLINE_EXCEEDED
    case ErrorKind::kInternal: return 13;           // INTERNAL
  }
  return 2;  // UNKNOWN
}

Error&& Error::wrap(std::string_view context) && {
  message_ = fmt::format("{}: {}", context, message_);
  return std::move(*this);
}

}  // namespace nydus
