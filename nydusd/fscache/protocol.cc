#include "nydusd/fscache/protocol.h"

#include <climits>
#include <cstring>

#include <fmt/format.h>

namespace nydus::fscache {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is read in place");

uint32_t load_u32(std::span<const uint8_t> b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

uint64_t load_u64(std::span<const uint8_t> b, size_t off) {
  uint64_t v;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

void store_u32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
void store_u64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }

std::string header_bytes(uint32_t msg_id, Opcode op, uint32_t len, uint32_t object_id) {
  std::string h;
  store_u32(&h, msg_id);
  store_u32(&h, uint32_t(op));
  store_u32(&h, len);
  store_u32(&h, object_id);
  return h;
}

Result<OpenRequest> parse_open(const MessageHeader& h, std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize + kOpenBodySize) {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: {} bytes, shorter than its fixed part",
                      h.msg_id, msg.size());
  }
  const uint32_t vsize = load_u32(msg, 16);
  const uint32_t csize = load_u32(msg, 20);
  const uint32_t fd = load_u32(msg, 24);
  const uint32_t flags = load_u32(msg, 28);
  const uint64_t want = uint64_t(kHeaderSize) + kOpenBodySize + vsize + csize;
  if (want != msg.size()) {
    return make_error(ErrorKind::kCorrupt,
                      "fscache OPEN msg {}: key sizes {}+{} do not match the message length {}",
                      h.msg_id, vsize, csize, msg.size());
  }
  if (fd > uint32_t(INT_MAX)) {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: fd {} out of range", h.msg_id, fd);
  }
  if (vsize < 2) {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: empty volume key", h.msg_id);
  }
  if (csize == 0) {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: empty cookie key", h.msg_id);
  }
  const char* base = reinterpret_cast<const char*>(msg.data()) + kHeaderSize + kOpenBodySize;
  std::string_view volume(base, vsize);
  std::string_view cookie(base + vsize, csize);
  if (volume.back() != '\0') {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: volume key is not NUL-terminated",
                      h.msg_id);
  }
  volume.remove_suffix(1);
  if (volume.find('\0') != std::string_view::npos || cookie.find('\0') != std::string_view::npos) {
    return make_error(ErrorKind::kCorrupt, "fscache OPEN msg {}: key with an embedded NUL", h.msg_id);
  }
  OpenRequest r;
  r.header = h;
  r.volume_key = std::string(volume);
  r.cookie_key = std::string(cookie);
  r.fd = int(fd);
  r.flags = flags;
  return r;
}

}  // namespace

Result<MessageHeader> parse_header(std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize) {
    return make_error(ErrorKind::kCorrupt, "fscache message of {} bytes is shorter than its header",
                      msg.size());
  }
  MessageHeader h;
  h.msg_id = load_u32(msg, 0);
  h.opcode = load_u32(msg, 4);
  h.len = load_u32(msg, 8);
  h.object_id = load_u32(msg, 12);
  if (h.len != msg.size()) {
    return make_error(ErrorKind::kCorrupt, "fscache msg {}: header len {} but {} bytes read", h.msg_id,
                      h.len, msg.size());
  }
  if (h.len > kMaxMessageSize) {
    return make_error(ErrorKind::kCorrupt, "fscache msg {}: len {} exceeds {}", h.msg_id, h.len,
                      kMaxMessageSize);
  }
  return h;
}

Result<Request> parse_request(std::span<const uint8_t> msg) {
  NYDUS_ASSIGN_OR_RETURN(MessageHeader h, parse_header(msg));
  switch (Opcode(h.opcode)) {
    case Opcode::kOpen: {
      NYDUS_ASSIGN_OR_RETURN(OpenRequest open, parse_open(h, msg));
      return Request(std::move(open));
    }
    case Opcode::kRead: {
      if (msg.size() != kHeaderSize + kReadBodySize) {
        return make_error(ErrorKind::kCorrupt, "fscache READ msg {}: {} bytes, expected {}", h.msg_id,
                          msg.size(), kHeaderSize + kReadBodySize);
      }
      ReadRequest r;
      r.header = h;
      r.offset = load_u64(msg, 16);
      r.length = load_u64(msg, 24);
      if (r.offset + r.length < r.offset) {
        return make_error(ErrorKind::kCorrupt, "fscache READ msg {}: range {}+{} overflows", h.msg_id,
                          r.offset, r.length);
      }
      return Request(r);
    }
    case Opcode::kClose: {
      // The 6.12 kernel sends the bare header; tolerate a body (older
      // kernels had none either, but nothing in it is needed).
      CloseRequest r;
      r.header = h;
      return Request(r);
    }
  }
  return make_error(ErrorKind::kUnsupported, "fscache msg {}: unknown opcode {}", h.msg_id, h.opcode);
}

int open_fd_of_malformed(std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize + kOpenBodySize) return -1;
  if (load_u32(msg, 4) != uint32_t(Opcode::kOpen)) return -1;
  uint32_t fd = load_u32(msg, 24);
  return fd > uint32_t(INT_MAX) ? -1 : int(fd);
}

std::string format_copen(uint32_t msg_id, int64_t size) { return fmt::format("copen {},{}", msg_id, size); }

Result<std::string> domain_of_volume_key(std::string_view volume_key) {
  if (volume_key.substr(0, kErofsVolumePrefix.size()) != kErofsVolumePrefix) {
    return make_error(ErrorKind::kNotFound, "fscache volume \"{}\" is not an EROFS volume", volume_key);
  }
  std::string_view domain = volume_key.substr(kErofsVolumePrefix.size());
  if (domain.empty()) {
    return make_error(ErrorKind::kNotFound, "fscache volume \"{}\" names no domain", volume_key);
  }
  return std::string(domain);
}

std::string build_open_message(uint32_t msg_id, uint32_t object_id, std::string_view volume_key,
                               std::string_view cookie_key, uint32_t fd, uint32_t flags) {
  const uint32_t vsize = uint32_t(volume_key.size() + 1);
  const uint32_t len = uint32_t(kHeaderSize + kOpenBodySize + vsize + cookie_key.size());
  std::string m = header_bytes(msg_id, Opcode::kOpen, len, object_id);
  store_u32(&m, vsize);
  store_u32(&m, uint32_t(cookie_key.size()));
  store_u32(&m, fd);
  store_u32(&m, flags);
  m.append(volume_key);
  m.push_back('\0');
  m.append(cookie_key);
  return m;
}

std::string build_read_message(uint32_t msg_id, uint32_t object_id, uint64_t offset, uint64_t length) {
  std::string m = header_bytes(msg_id, Opcode::kRead, uint32_t(kHeaderSize + kReadBodySize), object_id);
  store_u64(&m, offset);
  store_u64(&m, length);
  return m;
}

std::string build_close_message(uint32_t msg_id, uint32_t object_id) {
  return header_bytes(msg_id, Opcode::kClose, uint32_t(kHeaderSize), object_id);
}

}  // namespace nydus::fscache
