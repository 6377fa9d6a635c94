#include "common/result.h"

#include <cerrno>

#include <catch2/catch.hpp>

using nydus::Error;
using nydus::ErrorKind;
using nydus::Result;
using nydus::Status;

namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return nydus::make_error(ErrorKind::kInvalidArgument, "{} is not positive", v);
  return v;
}

Result<int> doubled(int v) {
  NYDUS_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check(int v) {
  NYDUS_TRY(parse_positive(v));
  return nydus::ok_status();
}

}  // namespace

TEST_CASE("Result carries a value or an error and propagates errors") {
  REQUIRE(doubled(4).ok());
  CHECK(*doubled(4) == 8);
  auto bad = doubled(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind() == ErrorKind::kInvalidArgument);
  CHECK(bad.error().message() == "-1 is not positive");
  CHECK(check(1).ok());
  CHECK_FALSE(check(0).ok());
}

TEST_CASE("each error kind maps to one errno, HTTP status and gRPC code") {
  Error nf(ErrorKind::kNotFound, "x");
  CHECK(nf.to_errno() == ENOENT);
  CHECK(nf.http_status() == 404);
  CHECK(nf.grpc_code() == 5);
  Error nr(ErrorKind::kNotReady, "x");
  CHECK(nr.http_status() == 503);
  Error big(ErrorKind::kTooLarge, "x");
  CHECK(big.http_status() == 413);
  auto sys = Error::from_errno(ENOENT, "open /nope");
  CHECK(sys.kind() == ErrorKind::kNotFound);
  CHECK(sys.to_errno() == ENOENT);
  CHECK(sys.message().find("open /nope") == 0);
  CHECK(std::move(sys).wrap("loading config").message().rfind("loading config: open /nope", 0) == 0);
}
