// Hex digits, for the places that decode them (URL %XX escapes, digests).
#pragma once

namespace nydus {

// The value of one hex digit (either case), or -1 for anything else.
constexpr int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace nydus
