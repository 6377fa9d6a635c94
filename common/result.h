// The project's one error vocabulary and result type.
//
// Every fallible function below the process boundary returns Result<T> (or
// Status for Result<void>). An Error carries an ErrorKind, which maps in exactly
// one place (error.cc) to an errno for FUSE replies, to an HTTP status for the
// control APIs and to a gRPC status code for the snapshots service, plus a
// message that says what failed and where. Exceptions thrown by libraries
// (nlohmann::json, protobuf, toml++) are caught at the call site and converted.
#pragma once

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace nydus {

enum class ErrorKind {
  kInvalidArgument,    // bad input from a caller (HTTP 400, EINVAL, INVALID_ARGUMENT)
  kNotFound,           // (404, ENOENT, NOT_FOUND)
  kAlreadyExists,      // (409, EEXIST, ALREADY_EXISTS)
  kFailedPrecondition, // wrong state for the request (400, EINVAL, FAILED_PRECONDITION)
  kNotReady,           // try again later (503, EAGAIN, UNAVAILABLE)
  kUnsupported,        // (501, ENOSYS, UNIMPLEMENTED)
  kCorrupt,            // hostile or damaged on-disk/wire data (400/500, EIO, DATA_LOSS)
  kIo,                 // a system call failed (500, errno, INTERNAL)
  kTooLarge,           // size limit exceeded (413, E2BIG, RESOURCE_EXHAUSTED)
  kPermissionDenied,   // (403, EACCES, PERMISSION_DENIED)
  kTimeout,            // a bounded wait expired (504, ETIMEDOUT, DEADLINE_EXCEEDED)
  kInternal,           // a bug or an unexpected condition (500, EIO, INTERNAL)
};

const char* error_kind_name(ErrorKind kind);

class Error {
 public:
  Error(ErrorKind kind, std::string message, int sys_errno = 0)
      : kind_(kind), message_(std::move(message)), errno_(sys_errno) {}

  // An Error from a failed system call: kind kIo (or a closer kind for some
  // errnos), message "<what>: <strerror>".
  static Error from_errno(int err, std::string_view what);

  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  // The errno to report to the kernel (FUSE) for this error.
  int to_errno() const;
  // The HTTP status for the control APIs.
  int http_status() const;
  // The numeric gRPC status code (grpc::StatusCode value).
  int grpc_code() const;

  // Prefix the message with context: "<context>: <message>".
  Error&& wrap(std::string_view context) &&;

 private:
  ErrorKind kind_;
  std::string message_;
  int errno_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_{ErrorKind::kInternal, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

template <typename... Args>
Error make_error(ErrorKind kind, fmt::format_string<Args...> fmtstr, Args&&... args) {
  return Error(kind, fmt::format(fmtstr, std::forward<Args>(args)...));
}

}  // namespace nydus

// Propagate an error from an expression returning Result<...>/Status.
#define NYDUS_TRY(expr)                                   \
  do {                                                    \
    auto&& _nydus_r = (expr);                             \
    if (!_nydus_r.ok()) return std::move(_nydus_r).error(); \
  } while (0)

#define NYDUS_CONCAT_INNER(a, b) a##b
#define NYDUS_CONCAT(a, b) NYDUS_CONCAT_INNER(a, b)
// NYDUS_ASSIGN_OR_RETURN(auto x, f()); binds the value or returns the error.
#define NYDUS_ASSIGN_OR_RETURN(lhs, expr) \
  NYDUS_ASSIGN_OR_RETURN_IMPL(NYDUS_CONCAT(_nydus_res_, __LINE__), lhs, expr)
#define NYDUS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).error();     \
  lhs = std::move(tmp).value()
