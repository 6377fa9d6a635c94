// The cachefiles on-demand wire protocol (/dev/cachefiles, Linux >= 5.19;
// `restore` >= 6.8), as measured on the 6.12 test kernel
// (../shared/docs/fscache-facts.md §2) and as nydusd speaks it
// (reference-nydusd.md §7). Pure functions: parsing and formatting only, no
// I/O, so every hostile or short message is testable from bytes.
//
// ---------------------------------------------------------------------------
// Direction and framing
// ---------------------------------------------------------------------------
// Daemon -> kernel: ASCII commands, exactly one per write(2), at most
// PAGE_SIZE-1 bytes, a trailing '\n' allowed:
//   dir <path>           cache directory (must be on a disk fs, e.g. ext4)
//   tag <name>           cache tag (optional)
//   bind ondemand        enter on-demand mode (a second bind is EBUSY)
//   copen <msg_id>,<n>   answer an OPEN: n >= 0 is the object size, n in
//                        [-4095,-1] fails the OPEN (the mount sees EIO)
//   restore              mark every pending request new again (failover)
//
// Kernel -> daemon: one message per read(2) into a buffer of
// kMaxMessageSize bytes; 0 when nothing is pending (read never blocks;
// poll(POLLIN) signals new requests). All integers little-endian:
//
//   header (16 B)  u32 msg_id | u32 opcode | u32 len | u32 object_id
//   OPEN  body     u32 volume_key_size | u32 cookie_key_size | u32 fd | u32 flags
//                  | volume_key (volume_key_size bytes, NUL-terminated, the NUL
//                    counted: "erofs,<domain_id or fsid>\0")
//                  | cookie_key (cookie_key_size bytes, not terminated: the
//                    fsid for the bootstrap, the device tag for a data blob)
//   READ  body     u64 off | u64 len       (object offset and length in bytes)
//   CLOSE body     (none)
//
// `len` is the whole message (header included) and equals the bytes read.
// OPEN installs an anonymous fd (write-only, the backing cache file) into
// the process that read the message; `fd` is its number there. A READ is
// answered by writing the data into that fd (direct I/O: 4 KiB aligned
// offset, length and buffer address) and then
// ioctl(anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg_id) with msg_id by value.
// CLOSE gets no answer. msg_ids of redelivered requests (after `restore`)
// are unchanged; object ids change on every (re)open.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.h"

namespace nydus::fscache {

inline constexpr size_t kMaxMessageSize = 1024;   // CACHEFILES_MSG_MAX_SIZE
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kOpenBodySize = 16;
inline constexpr size_t kReadBodySize = 16;
inline constexpr size_t kMaxCommandSize = 4095;   // PAGE_SIZE - 1
inline constexpr unsigned long kIocReadComplete = _IOW(0x98, 1, int);
static_assert(kIocReadComplete == 0x40049801);
// The kernel writes cache files with direct I/O in this granule.
inline constexpr uint64_t kIoAlign = 4096;
inline constexpr std::string_view kErofsVolumePrefix = "erofs,";

enum class Opcode : uint32_t { kOpen = 0, kClose = 1, kRead = 2 };

struct MessageHeader {
  uint32_t msg_id = 0;
  uint32_t opcode = 0;
  uint32_t len = 0;
  uint32_t object_id = 0;
};

struct OpenRequest {
  MessageHeader header;
  std::string volume_key;  // without the terminating NUL
  std::string cookie_key;
  int fd = -1;             // anon fd installed in this process
  uint32_t flags = 0;
};

struct ReadRequest {
  MessageHeader header;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct CloseRequest {
  MessageHeader header;
};

using Request = std::variant<OpenRequest, ReadRequest, CloseRequest>;

// Parses the 16-byte header. kCorrupt when `msg` is shorter than a header,
// when header.len differs from msg.size() (the kernel guarantees they are
// equal), or when len exceeds kMaxMessageSize.
Result<MessageHeader> parse_header(std::span<const uint8_t> msg);

// Parses a whole message. kCorrupt for any inconsistency (short body, key
// sizes that do not add up to len, a volume key without its NUL or with an
// embedded NUL, an empty key, an fd field above INT_MAX, a READ whose
// off+len overflows); kUnsupported for an unknown opcode.
//
// Note for callers: an OPEN that fails to parse may still have installed an
// anon fd; see open_fd_of_malformed().
Result<Request> parse_request(std::span<const uint8_t> msg);

// For a message that failed parse_request: the fd field of an OPEN body if
// the header says OPEN and the body's fixed part is present, else -1. The
// caller must check the fd really is a cachefiles anon fd before closing it.
int open_fd_of_malformed(std::span<const uint8_t> msg);

// "copen <msg_id>,<size>"; size >= 0 is an object size, negative an -errno.
std::string format_copen(uint32_t msg_id, int64_t size);

// The domain named by an EROFS volume key: "erofs,<d>" -> "<d>". kNotFound
// for a volume that is not EROFS's or has an empty domain.
Result<std::string> domain_of_volume_key(std::string_view volume_key);

// Builders of wire messages (little-endian), for tests and fakes.
std::string build_open_message(uint32_t msg_id, uint32_t object_id, std::string_view volume_key,
                               std::string_view cookie_key, uint32_t fd, uint32_t flags = 0);
std::string build_read_message(uint32_t msg_id, uint32_t object_id, uint64_t offset, uint64_t length);
std::string build_close_message(uint32_t msg_id, uint32_t object_id);

}  // namespace nydus::fscache
