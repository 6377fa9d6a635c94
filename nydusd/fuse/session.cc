#include "nydusd/fuse/session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <thread>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "common/mount.h"

namespace nydus::fuse {

namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned long kMountFlags = MS_NOSUID | MS_NODEV | MS_RDONLY;
constexpr const char* kMountSource = "rafs";
constexpr const char* kMountType = "fuse";
// Background requests (readahead) the kernel may have in flight.
constexpr unsigned kMaxBackground = 128;
constexpr unsigned kCongestionThreshold = 96;

int64_t now_secs() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---------------------------------------------------------------------------
// FUSE operations. Each op_<op> runs the errno-returning Vfs::do_<op> and
// replies exactly once; every exception is caught here and becomes EIO (or
// ENOMEM) with a log line naming the node. Write operations answer EROFS.

struct FuseOps {
  static FuseSession& session(fuse_req_t req) {
    return *static_cast<FuseSession*>(fuse_req_userdata(req));
  }

  // Runs `body` (which replies itself on success and returns 0, or returns
  // an errno without replying), replies the error, records statistics.
  template <typename Body>
  static void guarded(fuse_req_t req, fuse_ino_t node, Fop fop, const char* op, Body&& body) {
    auto start = Clock::now();
    int err = 0;
    std::shared_ptr<FsIoStats> stats;
    try {
      FuseSession& self = session(req);
      stats = self.vfs().stats_for(node);
      err = body(self);
    } catch (const std::bad_alloc&) {
      spdlog::error("{} node {:#x}: out of memory", op, node);
      err = ENOMEM;
    } catch (const std::exception& e) {
      spdlog::error("{} node {:#x}: {}", op, node, e.what());
      err = EIO;
    } catch (...) {
      spdlog::error("{} node {:#x}: unknown exception", op, node);
      err = EIO;
    }
    if (err != 0) fuse_reply_err(req, err);
    if (stats) {
      // Answers, not failures: a missing name or xattr, and ENOSYS that
      // switches the kernel to zero-message open.
      bool failed = err != 0 && err != ENOENT && err != ENODATA && err != ENOSYS;
      stats->record(fop, !failed,
                    std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start));
    }
  }

  static void reply_erofs(fuse_req_t req) { fuse_reply_err(req, EROFS); }

  static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, parent, Fop::kLookup, "lookup", [&](FuseSession& self) {
      fuse_entry_param entry{};
      int err = self.vfs().do_lookup(parent, name, &entry);
      if (err == ENOENT && entry.entry_timeout > 0) {
        entry.ino = 0;  // a negative entry the kernel may cache
        fuse_reply_entry(req, &entry);
        return 0;
      }
      if (err != 0) return err;
      fuse_reply_entry(req, &entry);
      return 0;
    });
  }

  // Node ids are derived from the image and carry no lookup count: FORGET
  // has nothing to release.
  static void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
  static void op_forget_multi(fuse_req_t req, size_t, struct fuse_forget_data*) {
    fuse_reply_none(req);
  }

  static void op_getattr(fuse_req_t req, fuse_ino_t node, struct fuse_file_info*) {
    guarded(req, node, Fop::kGetattr, "getattr", [&](FuseSession& self) {
      struct stat attr {};
      double timeout = 0;
      if (int err = self.vfs().do_getattr(node, &attr, &timeout)) return err;
      fuse_reply_attr(req, &attr, timeout);
      return 0;
    });
  }

  static void op_readlink(fuse_req_t req, fuse_ino_t node) {
    guarded(req, node, Fop::kReadlink, "readlink", [&](FuseSession& self) {
      std::string target;
      if (int err = self.vfs().do_readlink(node, &target)) return err;
      fuse_reply_readlink(req, target.c_str());
      return 0;
    });
  }

  // No-open mode: where the kernel offers zero-message open, ENOSYS makes it
  // stop sending OPEN for good (and keep the page cache). Otherwise the file
  // is opened statelessly (fh 0), so there is never a handle to carry over.
  static void op_open(fuse_req_t req, fuse_ino_t node, struct fuse_file_info* fi) {
    guarded(req, node, Fop::kOpen, "open", [&](FuseSession& self) {
      if (self.no_open()) return ENOSYS;
      if ((fi->flags & O_ACCMODE) != O_RDONLY) return EROFS;
      struct stat attr {};
      double timeout = 0;
      if (int err = self.vfs().do_getattr(node, &attr, &timeout)) return err;
      if (S_ISDIR(attr.st_mode)) return EISDIR;
      if (auto stats = self.vfs().stats_for(node)) stats->record_open(node);
      fi->fh = 0;
      fi->keep_cache = 1;
      fuse_reply_open(req, fi);
      return 0;
    });
  }

  static void op_opendir(fuse_req_t req, fuse_ino_t node, struct fuse_file_info* fi) {
    guarded(req, node, Fop::kOpendir, "opendir", [&](FuseSession& self) {
      if (self.no_opendir_.load()) return ENOSYS;
      struct stat attr {};
      double timeout = 0;
      if (int err = self.vfs().do_getattr(node, &attr, &timeout)) return err;
      if (!S_ISDIR(attr.st_mode)) return ENOTDIR;
      fi->fh = 0;
      fi->keep_cache = 1;
      fi->cache_readdir = 1;
      fuse_reply_open(req, fi);
      return 0;
    });
  }

  static void op_release(fuse_req_t req, fuse_ino_t node, struct fuse_file_info*) {
    guarded(req, node, Fop::kRelease, "release", [&](FuseSession&) {
      fuse_reply_err(req, 0);
      return 0;
    });
  }

  static void op_releasedir(fuse_req_t req, fuse_ino_t node, struct fuse_file_info*) {
    guarded(req, node, Fop::kRelease, "releasedir", [&](FuseSession&) {
      fuse_reply_err(req, 0);
      return 0;
    });
  }

  // Nothing to flush on a read-only image. ENOSYS makes the kernel stop
  // sending FLUSH on close(2) for the whole connection, so closing a file
  // never waits on the daemon, not even during a takeover.
  static void op_flush(fuse_req_t req, fuse_ino_t, struct fuse_file_info*) {
    fuse_reply_err(req, ENOSYS);
  }

  static void op_read(fuse_req_t req, fuse_ino_t node, size_t size, off_t offset,
                      struct fuse_file_info*) {
    auto start = Clock::now();
    size_t bytes = 0;
    guarded(req, node, Fop::kRead, "read", [&](FuseSession& self) {
      if (offset < 0) return EINVAL;
      if (self.test_hang_read_node_ != 0 && node == self.test_hang_read_node_) {
        // Test hook: hold the request until the session stops (a test kills
        // the process first). Never enabled outside tests.
        spdlog::warn("test hook: holding READ of node {:#x} unanswered", node);
        while (!self.stop_requested_.load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return EINTR;
      }
      std::vector<uint8_t> data;
      if (int err = self.vfs().do_read(node, static_cast<uint64_t>(offset), size, &data)) {
        return err;
      }
      bytes = data.size();
      fuse_reply_buf(req, reinterpret_cast<const char*>(data.data()), data.size());
      auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
      if (auto stats = self.vfs().stats_for(node)) stats->record_read(node, bytes, latency);
      return 0;
    });
  }

  static void readdir_common(fuse_req_t req, fuse_ino_t node, size_t size, off_t offset,
                             bool plus) {
    guarded(req, node, plus ? Fop::kReaddirplus : Fop::kReaddir, plus ? "readdirplus" : "readdir",
            [&](FuseSession& self) {
              if (offset < 0) return EINVAL;
              std::string buf;
              if (int err = self.vfs().do_readdir(node, static_cast<uint64_t>(offset), size, plus,
                                                  &buf)) {
                return err;
              }
              fuse_reply_buf(req, buf.data(), buf.size());
              return 0;
            });
  }
  static void op_readdir(fuse_req_t req, fuse_ino_t node, size_t size, off_t offset,
                         struct fuse_file_info*) {
    readdir_common(req, node, size, offset, false);
  }
  static void op_readdirplus(fuse_req_t req, fuse_ino_t node, size_t size, off_t offset,
                             struct fuse_file_info*) {
    readdir_common(req, node, size, offset, true);
  }

  static void op_statfs(fuse_req_t req, fuse_ino_t node) {
    guarded(req, node, Fop::kStatfs, "statfs", [&](FuseSession& self) {
      struct statvfs st {};
      if (int err = self.vfs().do_statfs(node, &st)) return err;
      fuse_reply_statfs(req, &st);
      return 0;
    });
  }

  // The xattr protocol: size 0 asks for the length; a too small buffer is ERANGE.
  static int reply_xattr_value(fuse_req_t req, const std::string& value, size_t size) {
    if (size == 0) {
      fuse_reply_xattr(req, value.size());
      return 0;
    }
    if (value.size() > size) return ERANGE;
    fuse_reply_buf(req, value.data(), value.size());
    return 0;
  }

  static void op_getxattr(fuse_req_t req, fuse_ino_t node, const char* name, size_t size) {
    guarded(req, node, Fop::kGetxattr, "getxattr", [&](FuseSession& self) {
      std::string value;
      if (int err = self.vfs().do_getxattr(node, name, &value)) return err;
      return reply_xattr_value(req, value, size);
    });
  }

  static void op_listxattr(fuse_req_t req, fuse_ino_t node, size_t size) {
    guarded(req, node, Fop::kListxattr, "listxattr", [&](FuseSession& self) {
      std::string names;
      if (int err = self.vfs().do_listxattr(node, &names)) return err;
      return reply_xattr_value(req, names, size);
    });
  }

  static void op_access(fuse_req_t req, fuse_ino_t node, int mask) {
    guarded(req, node, Fop::kAccess, "access", [&](FuseSession& self) {
      if (int err = self.vfs().do_access(node, mask)) return err;
      fuse_reply_err(req, 0);
      return 0;
    });
  }

  // --- Read-only image: every change is EROFS.
  static void op_setattr(fuse_req_t req, fuse_ino_t, struct stat*, int, struct fuse_file_info*) {
    reply_erofs(req);
  }
  static void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { reply_erofs(req); }
  static void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { reply_erofs(req); }
  static void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { reply_erofs(req); }
  static void op_rmdir(fuse_req_t req, fuse_ino_t, const char*) { reply_erofs(req); }
  static void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { reply_erofs(req); }
  static void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*,
                        unsigned int) {
    reply_erofs(req);
  }
  static void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { reply_erofs(req); }
  static void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t,
                       struct fuse_file_info*) {
    reply_erofs(req);
  }
  static void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, struct fuse_file_info*) {
    reply_erofs(req);
  }
  static void op_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
    reply_erofs(req);
  }
  static void op_removexattr(fuse_req_t req, fuse_ino_t, const char*) { reply_erofs(req); }
  static void op_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, struct fuse_file_info*) {
    reply_erofs(req);
  }

  static const fuse_lowlevel_ops& table() {
    static const fuse_lowlevel_ops ops = [] {
      fuse_lowlevel_ops o{};
      o.init = FuseSession::op_init;
      o.lookup = op_lookup;
      o.forget = op_forget;
      o.forget_multi = op_forget_multi;
      o.getattr = op_getattr;
      o.setattr = op_setattr;
      o.readlink = op_readlink;
      o.mknod = op_mknod;
      o.mkdir = op_mkdir;
      o.unlink = op_unlink;
      o.rmdir = op_rmdir;
      o.symlink = op_symlink;
      o.rename = op_rename;
      o.link = op_link;
      o.open = op_open;
      o.read = op_read;
      o.write = op_write;
      o.flush = op_flush;
      o.release = op_release;
      o.opendir = op_opendir;
      o.readdir = op_readdir;
      o.releasedir = op_releasedir;
      o.statfs = op_statfs;
      o.setxattr = op_setxattr;
      o.getxattr = op_getxattr;
      o.listxattr = op_listxattr;
      o.removexattr = op_removexattr;
      o.access = op_access;
      o.create = op_create;
      o.fallocate = op_fallocate;
      o.readdirplus = op_readdirplus;
      return o;
    }();
    return ops;
  }
};

// ---------------------------------------------------------------------------
// Capability negotiation: the one place that decides what the connection uses.

void FuseSession::op_init(void* userdata, struct fuse_conn_info* conn) {
  auto* self = static_cast<FuseSession*>(userdata);
  // Read-only, immutable image: no splice (reads go through custom_io), no
  // writeback, no locks served by us (the kernel keeps them local), no O_TRUNC.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
                  FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_POSIX_LOCKS |
                  FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_IOCTL_DIR |
                  FUSE_CAP_EXPORT_SUPPORT);
  const unsigned wanted = FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS |
                          FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
                          FUSE_CAP_AUTO_INVAL_DATA;
  conn->want |= conn->capable & wanted;
  conn->time_gran = 1;
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kCongestionThreshold;
  // Zero-message open/opendir: these are kernel capabilities, not wants; the
  // kernel switches to them when OPEN/OPENDIR answers ENOSYS.
  self->no_open_ = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  self->no_opendir_ = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  self->initialized_ = true;
  spdlog::info("FUSE INIT: kernel protocol {}.{}, max_write {}, max_readahead {}, no_open {}",
               conn->proto_major, conn->proto_minor, conn->max_write, conn->max_readahead,
               self->no_open_.load());
}

// ---------------------------------------------------------------------------
// custom_io: the only way requests are read and replies written.

ssize_t FuseSession::io_read(int fd, void* buf, size_t len, void* userdata) {
  auto* self = static_cast<FuseSession*>(userdata);
  pollfd fds[2] = {{fd, POLLIN, 0}, {self->stop_fd_.get(), POLLIN, 0}};
  while (true) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    // Stop wins over a pending request: it stays queued in the kernel.
    if (fds[1].revents != 0) {
      errno = EINTR;
      return -1;
    }
    if (fds[0].revents == 0) continue;
    ssize_t got = ::read(fd, buf, len);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;  // another worker took it
    return got;
  }
}

ssize_t FuseSession::io_writev(int fd, struct iovec* iov, int count, void* userdata) {
  auto* self = static_cast<FuseSession*>(userdata);
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  abi::OutHeader header{};
  if (count > 0 && iov[0].iov_len >= sizeof(header)) std::memcpy(&header, iov[0].iov_base, sizeof(header));

  // The reply to a replayed INIT must never reach the kernel.
  if (header.unique == kSyntheticInitUnique) return static_cast<ssize_t>(total);

  ssize_t written = ::writev(fd, iov, count);
  if (written < 0 || header.unique == 0 || header.error != 0) return written;
  if (self->pending_init_unique_.load(std::memory_order_acquire) != header.unique) return written;

  std::lock_guard lock(self->init_mu_);
  if (self->pending_init_unique_.load() == header.unique) {
    std::vector<uint8_t> out;
    for (int i = 0; i < count; ++i) {
      const auto* base = static_cast<const uint8_t*>(iov[i].iov_base);
      out.insert(out.end(), base, base + iov[i].iov_len);
    }
    out.erase(out.begin(), out.begin() + std::min(out.size(), sizeof(abi::OutHeader)));
    auto state = capture_init(self->pending_init_in_, out);
    if (state.ok()) {
      self->init_state_ = *state;
      spdlog::info("FUSE INIT negotiated: {}", to_json(*state).dump());
    } else {
      spdlog::error("cannot capture FUSE INIT: {}", state.error().message());
    }
    self->pending_init_unique_ = 0;
    self->pending_init_in_.clear();
  }
  return written;
}

// ---------------------------------------------------------------------------
// Session lifecycle

FuseSession::FuseSession(Vfs& vfs, FuseSessionOptions options)
    : vfs_(vfs), options_(std::move(options)) {}

Result<std::unique_ptr<FuseSession>> FuseSession::create(Vfs& vfs, FuseSessionOptions options) {
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return make_error(ErrorKind::kInvalidArgument, "thread count {} is not in 1..={}",
                      options.threads, kMaxThreads);
  }
  std::unique_ptr<FuseSession> session(new FuseSession(vfs, std::move(options)));
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::from_errno(errno, "eventfd");
  session->stop_fd_.reset(efd);
  session->slots_ = std::make_unique<InflightSlot[]>(session->options_.threads);
  if (const char* hang = std::getenv(kTestHangReadEnv); hang != nullptr && *hang != '\0') {
    session->test_hang_read_node_ = std::strtoull(hang, nullptr, 0);
    spdlog::warn("test hook {}={:#x} is set: that node's READs are never answered",
                 kTestHangReadEnv, session->test_hang_read_node_);
  }

  char arg0[] = "nydusd";
  char* argv[] = {arg0, nullptr};
  fuse_args args = FUSE_ARGS_INIT(1, argv);
  session->se_ = fuse_session_new(&args, &FuseOps::table(), sizeof(fuse_lowlevel_ops),
                                  session.get());
  fuse_opt_free_args(&args);
  if (session->se_ == nullptr) {
    return make_error(ErrorKind::kInternal, "fuse_session_new failed");
  }
  return session;
}

FuseSession::~FuseSession() {
  stop();
  if (se_ != nullptr) fuse_session_destroy(se_);  // closes the connection fd, never unmounts
}

Status FuseSession::attach_fd(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Error::from_errno(errno, "set O_NONBLOCK on the FUSE fd");
  }
  static const fuse_custom_io kIo = {
      .writev = FuseSession::io_writev,
      .read = FuseSession::io_read,
      .splice_receive = nullptr,
      .splice_send = nullptr,
  };
  int rc = fuse_session_custom_io(se_, &kIo, fd);
  if (rc != 0) return Error::from_errno(-rc, "fuse_session_custom_io");
  fuse_fd_ = fd;
  return ok_status();
}

Status FuseSession::mount() {
  if (attached()) return make_error(ErrorKind::kFailedPrecondition, "FUSE session already attached");
  std::error_code ec;
  auto canonical = std::filesystem::canonical(options_.mountpoint, ec);
  if (ec) {
    return make_error(ErrorKind::kNotFound, "mountpoint {}: {}", options_.mountpoint, ec.message());
  }
  if (!std::filesystem::is_directory(canonical, ec)) {
    return make_error(ErrorKind::kInvalidArgument, "mountpoint {} is not a directory",
                      canonical.string());
  }
  options_.mountpoint = canonical.string();

  UniqueFd fd(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
  if (!fd) return Error::from_errno(errno, "open /dev/fuse");
  std::string data = fmt::format(
      "fd={},rootmode={:o},user_id={},group_id={},allow_other,default_permissions", fd.get(),
      S_IFDIR, ::getuid(), ::getgid());
  if (::mount(kMountSource, options_.mountpoint.c_str(), kMountType, kMountFlags, data.c_str()) != 0) {
    return Error::from_errno(errno, "mount fuse at " + options_.mountpoint);
  }
  MountGuard guard(options_.mountpoint);
  NYDUS_TRY(attach_fd(fd.get()));
  fd.release();  // libfuse owns it now
  guard.dismiss();
  spdlog::info("mounted FUSE at {} (fd {})", options_.mountpoint, fuse_fd_);
  return ok_status();
}

size_t FuseSession::libfuse_buffer_size() {
  constexpr size_t kMaxMaxPages = 256;        // libfuse's FUSE_MAX_MAX_PAGES
  constexpr size_t kBufferHeaderSize = 4096;  // libfuse's FUSE_BUFFER_HEADER_SIZE
  return kMaxMaxPages * static_cast<size_t>(::getpagesize()) + kBufferHeaderSize;
}

Status FuseSession::adopt(UniqueFd fd, const FuseInitState& init) {
  if (attached()) return make_error(ErrorKind::kFailedPrecondition, "FUSE session already attached");
  if (!fd) return make_error(ErrorKind::kInvalidArgument, "no FUSE fd to adopt");
  if (required_read_buffer(init.max_write) > libfuse_buffer_size()) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "the connection's max_write {} needs a {}-byte read buffer; libfuse reads {}",
                      init.max_write, required_read_buffer(init.max_write), libfuse_buffer_size());
  }
  NYDUS_TRY(attach_fd(fd.get()));
  fd.release();
  // libfuse answers EIO to everything until it saw INIT; the kernel will not
  // send another. Replay it; io_writev swallows the reply.
  std::vector<uint8_t> request = build_synthetic_init(init);
  fuse_buf buf{};
  buf.size = request.size();
  buf.mem = request.data();
  fuse_session_process_buf(se_, &buf);
  {
    std::lock_guard lock(init_mu_);
    init_state_ = init;
  }
  if (!initialized_) return make_error(ErrorKind::kInternal, "libfuse rejected the replayed INIT");
  spdlog::info("adopted FUSE connection fd {} for {}", fuse_fd_, options_.mountpoint);
  return ok_status();
}

Status FuseSession::resend() {
  if (!attached()) return make_error(ErrorKind::kFailedPrecondition, "no FUSE connection");
  abi::OutHeader header{sizeof(abi::OutHeader), abi::kNotifyResend, 0};
  ssize_t n = ::write(fuse_fd_, &header, sizeof(header));
  if (n != static_cast<ssize_t>(sizeof(header))) {
    return Error::from_errno(n < 0 ? errno : EIO, "write FUSE_NOTIFY_RESEND");
  }
  return ok_status();
}

Status FuseSession::start() {
  if (!attached()) return make_error(ErrorKind::kFailedPrecondition, "no FUSE connection to serve");
  if (running()) return make_error(ErrorKind::kFailedPrecondition, "FUSE workers already running");
  // Re-arm: drain the stop eventfd, clear libfuse's exit flag.
  uint64_t drained;
  while (::read(stop_fd_.get(), &drained, sizeof(drained)) > 0) {
  }
  stop_requested_ = false;
  connection_lost_ = false;
  if (fuse_session_exited(se_)) fuse_session_reset(se_);
  try {
    for (unsigned i = 0; i < options_.threads; ++i) workers_.emplace_back(&FuseSession::worker_main, this, i);
  } catch (const std::system_error& e) {
    stop();
    return make_error(ErrorKind::kIo, "cannot start FUSE worker threads: {}", e.what());
  }
  serving_ = true;
  spdlog::info("serving {} with {} FUSE worker threads", options_.mountpoint, options_.threads);
  return ok_status();
}

void FuseSession::stop() {
  if (workers_.empty()) return;
  serving_ = false;
  stop_requested_ = true;
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
    spdlog::error("cannot signal FUSE workers to stop: {}", std::strerror(errno));
  }
  for (auto& worker : workers_) worker.join();
  workers_.clear();
  spdlog::info("FUSE workers of {} stopped at request boundaries", options_.mountpoint);
}

Status FuseSession::unmount() {
  stop();
  NYDUS_TRY(nydus::unmount(options_.mountpoint));
  spdlog::info("unmounted {}", options_.mountpoint);
  return ok_status();
}

void FuseSession::note_request(size_t slot, const fuse_buf& buf, size_t size) {
  abi::InHeader header;
  std::memcpy(&header, buf.mem, sizeof(header));
  auto& s = slots_[slot];
  s.nodeid.store(header.nodeid, std::memory_order_relaxed);
  s.opcode.store(header.opcode, std::memory_order_relaxed);
  s.since_secs.store(now_secs(), std::memory_order_relaxed);
  s.unique.store(header.unique, std::memory_order_release);
  if ((header.unique & abi::kUniqueResend) != 0) {
    resent_requests_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("resent request: opcode {} unique {:#x} node {:#x}", header.opcode,
                  header.unique, header.nodeid);
  }
  if (header.opcode == abi::kOpInit) {
    std::lock_guard lock(init_mu_);
    const auto* payload = static_cast<const uint8_t*>(buf.mem) + sizeof(header);
    pending_init_in_.assign(payload, payload + (size - sizeof(header)));
    pending_init_unique_.store(header.unique, std::memory_order_release);
  }
}

void FuseSession::worker_main(size_t slot) {
  fuse_buf buf{};  // libfuse allocates its buffer (1 MiB + 4 KiB) on first use
  while (true) {
    int res = fuse_session_receive_buf(se_, &buf);
    if (res == -EINTR || res == -EAGAIN) {
      if (stop_requested_) break;
      continue;
    }
    if (res <= 0) {
      // 0: ENODEV, the connection is gone (unmounted or aborted).
      if (!stop_requested_ && !connection_lost_.exchange(true)) {
        if (res < 0) spdlog::error("reading the FUSE device: {}", std::strerror(-res));
        spdlog::warn("FUSE connection of {} is gone", options_.mountpoint);
        if (on_connection_lost_) on_connection_lost_();
      }
      break;
    }
    if (static_cast<size_t>(res) < sizeof(abi::InHeader)) continue;  // libfuse rejects these too
    note_request(slot, buf, static_cast<size_t>(res));
    fuse_session_process_buf(se_, &buf);
    slots_[slot].unique.store(0, std::memory_order_release);
  }
  std::free(buf.mem);
}

std::optional<FuseInitState> FuseSession::init_state() const {
  std::lock_guard lock(init_mu_);
  return init_state_;
}

int FuseSession::notify_inval_inode(uint64_t node) {
  if (!running() || !initialized_) return -ENOTCONN;
  return fuse_lowlevel_notify_inval_inode(se_, node, 0, 0);
}

int FuseSession::notify_inval_entry(uint64_t parent, const std::string& name) {
  if (!running() || !initialized_) return -ENOTCONN;
  return fuse_lowlevel_notify_inval_entry(se_, parent, name.c_str(), name.size());
}

nlohmann::json FuseSession::inflight() const {
  auto out = nlohmann::json::array();
  for (unsigned i = 0; i < options_.threads; ++i) {
    const auto& s = slots_[i];
    uint64_t unique = s.unique.load(std::memory_order_acquire);
    if (unique == 0) continue;
    out.push_back({{"inode", s.nodeid.load(std::memory_order_relaxed)},
                   {"opcode", s.opcode.load(std::memory_order_relaxed)},
                   {"unique", unique},
                   {"timestamp_secs", s.since_secs.load(std::memory_order_relaxed)}});
  }
  return out;
}

}  // namespace nydus::fuse
