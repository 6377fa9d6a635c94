// The decision logic of fscache mode: one cachefiles message in, its answer
// out, through a DeviceOps seam so tests can drive it without the kernel.
// The worker threads (service.h) only read messages and call handle().
//
//   OPEN   domain = volume key minus "erofs,"; source = registry.lookup(domain,
//          cookie). Known: record object_id -> (anon fd, source) and answer
//          `copen <msg_id>,<size>`. Unknown (or not an EROFS volume): close the
//          anon fd and answer `copen <msg_id>,-ENOENT` (the mount fails with
//          EIO, facts §6). An object_id we still hold is replaced: the kernel
//          allocates ids for live objects only, so the old one is stale.
//   READ   produce [off, off+len) widened to 4 KiB (the cache file is written
//          with direct I/O) and clipped to the object's last page (a range
//          wholly beyond it is an error), in windows of at most kReadWindow bytes, from a
//          4 KiB-aligned buffer, pwrite each window into the anon fd, then
//          ioctl(CACHEFILES_IOC_READ_COMPLETE, msg_id). A READ whose data
//          cannot be produced or written is still completed, without (all
//          of) the data: the reader gets EIO instead of hanging (facts §6).
//          A completion refused with EINVAL means the kernel already dropped
//          or someone else completed the request (failover): not an error.
//          A READ for an object_id we do not hold cannot be completed (the
//          ioctl needs that object's anon fd): it is logged and counted; a
//          later `restore` redelivers it (facts §7.3).
//   CLOSE  drop the object; its anon fd closes when the last in-flight READ
//          using it is done. No answer.
//   malformed  logged and counted. An OPEN whose body names an fd that is a
//          cachefiles anon fd gets that fd closed and `copen <id>,-EINVAL`; a
//          READ of a known object is completed without data.
//
// Thread safety: handle() runs on every worker concurrently. mu_ guards the
// object table only; it is never held across I/O or a device write.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/fscache/protocol.h"
#include "nydusd/fscache/registry.h"

namespace nydus::fscache {

// Largest piece of a READ produced and written at once (bounds the worker
// buffer; a bigger READ is served in several windows).
inline constexpr size_t kReadWindow = 8u << 20;

// The calls the handler makes on /dev/cachefiles and on anon fds. The real
// implementation is CachefilesDevice (device.h); tests use a fake.
class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  // One command, one write(2).
  virtual Status write_command(std::string_view command) = 0;
  // Writes all of `data` at `offset` of an anon fd.
  virtual Status write_object(int anon_fd, std::span<const uint8_t> data, uint64_t offset) = 0;
  // ioctl(anon_fd, CACHEFILES_IOC_READ_COMPLETE, msg_id).
  virtual Status complete_read(int anon_fd, uint32_t msg_id) = 0;
  // Whether fd is a cachefiles anon fd of this process (safe to close).
  virtual bool is_anon_fd(int fd) = 0;
};

// A 4 KiB-aligned, growable buffer; one per worker thread.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  // At least `size` bytes (rounded up to 4 KiB); contents unspecified.
  Result<std::span<uint8_t>> get(size_t size);

 private:
  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
};

struct HandlerMetrics {
  std::atomic<uint64_t> opens{0};
  std::atomic<uint64_t> opens_refused{0};     // unknown key: -ENOENT
  std::atomic<uint64_t> copen_failures{0};    // the copen write failed
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> reads_in_flight{0};   // gauge: READs being served now
  std::atomic<uint64_t> read_bytes{0};        // bytes written into cache files
  std::atomic<uint64_t> read_errors{0};       // completed without the data
  std::atomic<uint64_t> read_unknown_object{0};
  std::atomic<uint64_t> completions_rejected{0};  // EINVAL: dropped or done elsewhere
  std::atomic<uint64_t> closes{0};
  std::atomic<uint64_t> malformed{0};
};

// The counters as JSON (for a metrics endpoint and the test driver).
nlohmann::json metrics_json(const HandlerMetrics& m);

// One open cachefiles object as handed over in a hot upgrade (facts §5 3c).
struct ObjectInfo {
  uint32_t object_id = 0;
  std::string domain;
  std::string cookie;
  int anon_fd = -1;  // owned by the handler; dup it to hand it over
};

class RequestHandler {
 public:
  RequestHandler(BlobRegistry* registry, DeviceOps* ops) : registry_(registry), ops_(ops) {}
  RequestHandler(const RequestHandler&) = delete;
  RequestHandler& operator=(const RequestHandler&) = delete;

  // Handles one message as read from the device. Never throws.
  void handle(std::span<const uint8_t> msg, AlignedBuffer& buffer);

  // The open objects, for a hand-off of anon fds to a successor.
  std::vector<ObjectInfo> objects() const;
  // Takes over an object opened by a predecessor (its anon fd, received over
  // SCM_RIGHTS), so READs for it are served without a re-OPEN. kNotFound
  // when the registry does not serve (domain, cookie).
  Status adopt_object(uint32_t object_id, const std::string& domain, const std::string& cookie, UniqueFd anon_fd);

  size_t object_count() const;
  const HandlerMetrics& metrics() const { return metrics_; }

  // Test hook (fault injection): runs on the worker before it handles an
  // OPEN (counted already), e.g. to delay the answer. Set it while no
  // worker runs.
  void set_before_open(std::function<void()> hook) { before_open_ = std::move(hook); }

 private:
  struct Object {
    UniqueFd fd;
    std::shared_ptr<ObjectSource> source;
    std::string domain;
    std::string cookie;
  };

  void on_open(OpenRequest req);
  void on_read(const ReadRequest& req, AlignedBuffer& buffer);
  void on_close(const CloseRequest& req);
  void on_malformed(std::span<const uint8_t> msg, const Error& why);
  std::shared_ptr<Object> find(uint32_t object_id) const;
  // Completes a READ; EINVAL is expected after failover and only counted.
  void complete(const Object& obj, uint32_t msg_id);
  // Produces and writes [start, end) of the object.
  Status serve_range(const Object& obj, uint64_t start, uint64_t end, AlignedBuffer& buffer);

  BlobRegistry* registry_;
  DeviceOps* ops_;
  HandlerMetrics metrics_;
  std::function<void()> before_open_;
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, std::shared_ptr<Object>> objects_;  // guarded by mu_
};

}  // namespace nydus::fscache
