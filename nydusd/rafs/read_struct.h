// Bounds-checked access to on-disk structures in untrusted bytes (the
// read_struct<T>() that layout.h asks readers to use). Every range check is
// written so that it cannot overflow, whatever 64-bit values an image holds.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

namespace nydus::rafs {

// True if [off, off+len) lies inside a buffer of `size` bytes.
inline constexpr bool in_range(uint64_t size, uint64_t off, uint64_t len) {
  return off <= size && len <= size - off;
}

// Copies a T out of bytes[off, off+sizeof(T)), or nullopt if out of range.
// Copying (not casting) keeps unaligned and hostile data well-defined.
template <typename T>
std::optional<T> read_struct(std::span<const uint8_t> bytes, uint64_t off) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (!in_range(bytes.size(), off, sizeof(T))) return std::nullopt;
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof(T));
  return v;
}

// Multiplies without wrapping; false on overflow.
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

inline constexpr uint64_t div_round_up(uint64_t v, uint64_t d) { return v / d + (v % d != 0); }

}  // namespace nydus::rafs
