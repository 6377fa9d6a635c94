#include "nydusd/fscache/handler.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <exception>

#include <spdlog/spdlog.h>

namespace nydus::fscache {

namespace {

uint64_t align_down(uint64_t v) { return v & ~(kIoAlign - 1); }

}  // namespace

nlohmann::json metrics_json(const HandlerMetrics& m) {
  return {{"opens", m.opens.load()},
          {"opens_refused", m.opens_refused.load()},
          {"copen_failures", m.copen_failures.load()},
          {"reads", m.reads.load()},
          {"reads_in_flight", m.reads_in_flight.load()},
          {"read_bytes", m.read_bytes.load()},
          {"read_errors", m.read_errors.load()},
          {"read_unknown_object", m.read_unknown_object.load()},
          {"completions_rejected", m.completions_rejected.load()},
          {"closes", m.closes.load()},
          {"malformed", m.malformed.load()}};
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

Result<std::span<uint8_t>> AlignedBuffer::get(size_t size) {
  size = (size + kIoAlign - 1) & ~(kIoAlign - 1);
  if (size > capacity_) {
    void* p = nullptr;
    if (::posix_memalign(&p, kIoAlign, size) != 0) {
      return make_error(ErrorKind::kIo, "fscache: cannot allocate an aligned buffer of {} bytes", size);
    }
    std::free(data_);
    data_ = static_cast<uint8_t*>(p);
    capacity_ = size;
  }
  return std::span<uint8_t>(data_, size);
}

void RequestHandler::handle(std::span<const uint8_t> msg, AlignedBuffer& buffer) {
  try {
    auto req = parse_request(msg);
    if (!req.ok()) return on_malformed(msg, req.error());
    if (auto* open = std::get_if<OpenRequest>(&*req)) return on_open(std::move(*open));
    if (auto* read = std::get_if<ReadRequest>(&*req)) return on_read(*read, buffer);
    if (auto* close = std::get_if<CloseRequest>(&*req)) return on_close(*close);
  } catch (const std::exception& e) {
    // Nothing below throws by design; bad_alloc is the realistic case.
    spdlog::error("fscache: handling a message failed: {}", e.what());
  }
}

void RequestHandler::on_open(OpenRequest req) {
  metrics_.opens.fetch_add(1, std::memory_order_relaxed);
  UniqueFd fd(req.fd);
  const uint32_t msg_id = req.header.msg_id;
  // The kernel installs the fd without close-on-exec; children must not get it.
  (void)::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  if (before_open_) before_open_();

  auto domain = domain_of_volume_key(req.volume_key);
  LookupResult found;
  if (domain.ok()) found = registry_->lookup(*domain, req.cookie_key);
  if (!found.source) {
    metrics_.opens_refused.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("fscache: OPEN msg {} object {}: nothing bound for volume \"{}\" cookie \"{}\"; refused",
                 msg_id, req.header.object_id, req.volume_key, req.cookie_key);
    fd.reset();
    if (Status st = ops_->write_command(format_copen(msg_id, -ENOENT)); !st.ok()) {
      metrics_.copen_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("fscache: refusing OPEN msg {}: {}", msg_id, st.error().message());
    }
    return;
  }

  const uint32_t object_id = req.header.object_id;
  auto obj = std::make_shared<Object>();
  obj->fd = std::move(fd);
  obj->source = found.source;
  obj->domain = *domain;
  obj->cookie = req.cookie_key;
  const uint64_t size = obj->source->size();
  {
    std::lock_guard lock(mu_);
    auto [it, added] = objects_.try_emplace(object_id, obj);
    if (!added) {
      spdlog::warn("fscache: OPEN msg {} reuses object id {} (was {}/{}); replacing the stale object", msg_id,
                   object_id, it->second->domain, it->second->cookie);
      it->second = obj;
    }
  }
  if (Status st = ops_->write_command(format_copen(msg_id, int64_t(size))); !st.ok()) {
    metrics_.copen_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("fscache: answering OPEN msg {} ({} in domain {}): {}", msg_id, req.cookie_key, *domain,
                  st.error().message());
    std::lock_guard lock(mu_);
    if (auto it = objects_.find(object_id); it != objects_.end() && it->second == obj) objects_.erase(it);
    return;
  }
  spdlog::debug("fscache: OPEN msg {} object {}: {} in domain {}, size {}", msg_id, object_id,
                obj->source->describe(), *domain, size);
}

std::shared_ptr<RequestHandler::Object> RequestHandler::find(uint32_t object_id) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find(object_id);
  return it == objects_.end() ? nullptr : it->second;
}

void RequestHandler::complete(const Object& obj, uint32_t msg_id) {
  Status st = ops_->complete_read(obj.fd.get(), msg_id);
  if (st.ok()) return;
  metrics_.completions_rejected.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("fscache: completing READ msg {} of {}: {} (already completed elsewhere or dropped by the kernel)",
               msg_id, obj.cookie, st.error().message());
}

Status RequestHandler::serve_range(const Object& obj, uint64_t start, uint64_t end, AlignedBuffer& buffer) {
  for (uint64_t pos = start; pos < end;) {
    const size_t window = size_t(std::min<uint64_t>(end - pos, kReadWindow));
    NYDUS_ASSIGN_OR_RETURN(std::span<uint8_t> buf, buffer.get(window));
    buf = buf.first(window);
    NYDUS_TRY(obj.source->read(pos, buf));
    NYDUS_TRY(ops_->write_object(obj.fd.get(), buf, pos));
    metrics_.read_bytes.fetch_add(window, std::memory_order_relaxed);
    pos += window;
  }
  return ok_status();
}

void RequestHandler::on_read(const ReadRequest& req, AlignedBuffer& buffer) {
  metrics_.reads.fetch_add(1, std::memory_order_relaxed);
  // A gauge of READs being served right now: what a hand-off waits for, and
  // what a test watches to kill a daemon with a READ in flight.
  metrics_.reads_in_flight.fetch_add(1, std::memory_order_relaxed);
  struct InFlight {
    std::atomic<uint64_t>& gauge;
    ~InFlight() { gauge.fetch_sub(1, std::memory_order_relaxed); }
  } in_flight{metrics_.reads_in_flight};
  const uint32_t msg_id = req.header.msg_id;
  std::shared_ptr<Object> obj = find(req.header.object_id);
  if (!obj) {
    metrics_.read_unknown_object.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("fscache: READ msg {} for object {} which this daemon does not hold; it cannot be completed "
                  "here (a `restore` after the holder exits redelivers it)",
                  msg_id, req.header.object_id);
    return;
  }
  // The cache file takes 4 KiB-aligned direct I/O: widen the range (the
  // extra bytes are the object's real bytes, or zeros past its end).
  uint64_t start = align_down(req.offset);
  const uint64_t want_end = req.offset + req.length;
  uint64_t end = want_end > UINT64_MAX - kIoAlign ? align_down(want_end) : align_down(want_end + kIoAlign - 1);
  // Nothing lies past the object's last page; a range beyond it is not
  // zero-filled (it would only grow the cache file).
  const uint64_t size = obj->source->size();
  const uint64_t limit = size > UINT64_MAX - kIoAlign ? align_down(size) : align_down(size + kIoAlign - 1);
  end = std::min(end, limit);
  if (start < end) {
    // Whole chunks at once (see ObjectSource::fill_range), page-aligned.
    auto [fill_start, fill_end] = obj->source->fill_range(start, end);
    start = align_down(std::min(fill_start, start));
    fill_end = std::max(fill_end, end);
    end = std::min(limit, fill_end > UINT64_MAX - kIoAlign ? align_down(fill_end)
                                                           : align_down(fill_end + kIoAlign - 1));
  }
  Status st = ok_status();
  if (start >= end && req.length > 0) {
    st = make_error(ErrorKind::kInvalidArgument, "the range is beyond the object's size {}", size);
  } else {
    st = serve_range(*obj, start, end, buffer);
  }
  if (!st.ok()) {
    metrics_.read_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("fscache: READ msg {} of {} [{:#x}, {:#x}) failed, completing without data (the reader sees "
                  "EIO): {}",
                  msg_id, obj->source->describe(), req.offset, want_end, st.error().message());
  }
  complete(*obj, msg_id);
}

void RequestHandler::on_close(const CloseRequest& req) {
  metrics_.closes.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<Object> dropped;
  {
    std::lock_guard lock(mu_);
    auto it = objects_.find(req.header.object_id);
    if (it == objects_.end()) {
      spdlog::debug("fscache: CLOSE msg {} for unknown object {}", req.header.msg_id, req.header.object_id);
      return;
    }
    dropped = std::move(it->second);
    objects_.erase(it);
  }
  spdlog::debug("fscache: CLOSE object {} ({})", req.header.object_id, dropped->cookie);
  // `dropped` goes out of scope after the lock: the fd closes here, or when
  // an in-flight READ on another worker releases its reference.
}

void RequestHandler::on_malformed(std::span<const uint8_t> msg, const Error& why) {
  metrics_.malformed.fetch_add(1, std::memory_order_relaxed);
  spdlog::error("fscache: malformed message ({} bytes): {}", msg.size(), why.message());
  auto header = parse_header(msg);
  if (!header.ok()) return;
  if (header->opcode == uint32_t(Opcode::kOpen)) {
    int fd = open_fd_of_malformed(msg);
    // Only an fd that really is a cachefiles anon fd is ours to close.
    if (fd >= 0 && ops_->is_anon_fd(fd)) UniqueFd(fd).reset();
    if (Status st = ops_->write_command(format_copen(header->msg_id, -EINVAL)); !st.ok()) {
      spdlog::error("fscache: refusing malformed OPEN msg {}: {}", header->msg_id, st.error().message());
    }
  } else if (header->opcode == uint32_t(Opcode::kRead)) {
    if (auto obj = find(header->object_id)) complete(*obj, header->msg_id);
  }
}

std::vector<ObjectInfo> RequestHandler::objects() const {
  std::lock_guard lock(mu_);
  std::vector<ObjectInfo> out;
  for (const auto& [id, obj] : objects_) out.push_back({id, obj->domain, obj->cookie, obj->fd.get()});
  return out;
}

Status RequestHandler::adopt_object(uint32_t object_id, const std::string& domain, const std::string& cookie,
                                    UniqueFd anon_fd) {
  LookupResult found = registry_->lookup(domain, cookie);
  if (!found.source) {
    return make_error(ErrorKind::kNotFound, "adopt object {}: nothing bound for {} in domain {}", object_id, cookie,
                      domain);
  }
  auto obj = std::make_shared<Object>();
  obj->fd = std::move(anon_fd);
  obj->source = found.source;
  obj->domain = domain;
  obj->cookie = cookie;
  std::lock_guard lock(mu_);
  objects_[object_id] = std::move(obj);
  return ok_status();
}

size_t RequestHandler::object_count() const {
  std::lock_guard lock(mu_);
  return objects_.size();
}

}  // namespace nydus::fscache
