// The slice of the FUSE kernel ABI that nydusd reads and writes itself,
// beside libfuse: the INIT exchange (captured for takeover), the request
// header (for the in-flight table), and protocol 7.40+ additions that
// Debian's headers (protocol 7.38) lack. Facts: ../shared/docs/fuse-takeover-facts.md,
// "Minimal ABI". Declared here, in our namespace, instead of including
// <linux/fuse.h>, whose struct names collide with libfuse's public headers.
//
// All structs are little-endian host structs exactly as the kernel lays them
// out; each is static_assert'ed to its wire size.
#pragma once

#include <cstdint>

namespace nydus::fuse::abi {

inline constexpr uint32_t kKernelVersion = 7;
inline constexpr uint32_t kOpInit = 26;            // FUSE_INIT
inline constexpr uint32_t kMinReadBuffer = 8192;   // FUSE_MIN_READ_BUFFER

// fuse_in_header: 40 bytes in front of every request.
struct InHeader {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid;
  uint32_t gid;
  uint32_t pid;
  uint16_t total_extlen;
  uint16_t padding;
};
static_assert(sizeof(InHeader) == 40);

// fuse_out_header: 16 bytes in front of every reply and notification.
struct OutHeader {
  uint32_t len;
  int32_t error;    // -errno for replies; the notify code when unique == 0
  uint64_t unique;
};
static_assert(sizeof(OutHeader) == 16);

// fuse_init_in. Kernels before 7.36 send only the first 16 bytes.
struct InitIn {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;  // valid only when flags has kInitExt
  uint32_t unused[11];
};
static_assert(sizeof(InitIn) == 64);
inline constexpr uint32_t kInitInCompatSize = 16;

// fuse_init_out (64 bytes since 7.23; 24 bytes before; 8 before 7.5).
struct InitOut {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;   // 7.40 (unused[0] in 7.38 headers)
  uint16_t request_timeout;   // 7.43
  uint16_t unused[11];
};
static_assert(sizeof(InitOut) == 64);
inline constexpr uint32_t kInitOutCompat22Size = 24;

// INIT flags as one 64-bit set: flags | flags2 << 32 (flags2 only with kInitExt).
namespace init_flags {
inline constexpr uint64_t kAsyncRead = 1ull << 0;
inline constexpr uint64_t kAtomicOTrunc = 1ull << 3;
inline constexpr uint64_t kBigWrites = 1ull << 5;
inline constexpr uint64_t kDoReaddirplus = 1ull << 13;
inline constexpr uint64_t kReaddirplusAuto = 1ull << 14;
inline constexpr uint64_t kNoOpenSupport = 1ull << 17;
inline constexpr uint64_t kParallelDirops = 1ull << 18;
inline constexpr uint64_t kAbortError = 1ull << 21;
inline constexpr uint64_t kMaxPages = 1ull << 22;
inline constexpr uint64_t kCacheSymlinks = 1ull << 23;
inline constexpr uint64_t kNoOpendirSupport = 1ull << 24;
inline constexpr uint64_t kInitExt = 1ull << 30;
inline constexpr uint64_t kPassthrough = 1ull << 37;      // 7.40
inline constexpr uint64_t kNoExportSupport = 1ull << 38;  // 7.40
inline constexpr uint64_t kHasResend = 1ull << 39;        // 7.40: the kernel understands NOTIFY_RESEND
inline constexpr uint64_t kAllowIdmap = 1ull << 40;
inline constexpr uint64_t kOverIoUring = 1ull << 41;
inline constexpr uint64_t kRequestTimeout = 1ull << 42;
// Kernel capabilities a daemon never "wants" (it acts on them): they are kept
// in a replayed INIT so libfuse sees the same capabilities again.
inline constexpr uint64_t kCapabilityOnly = kNoOpenSupport | kNoOpendirSupport | kHasResend;
}  // namespace init_flags

// Notification codes (fuse_out_header.error with unique == 0).
inline constexpr int32_t kNotifyInvalInode = 2;
inline constexpr int32_t kNotifyInvalEntry = 3;
inline constexpr int32_t kNotifyResend = 7;  // 7.40, no payload: a 16-byte message

// Bit 63 of in_header.unique marks a request the kernel queued again after
// NOTIFY_RESEND; the reply must echo the unique with the bit.
inline constexpr uint64_t kUniqueResend = 1ull << 63;

}  // namespace nydus::fuse::abi
