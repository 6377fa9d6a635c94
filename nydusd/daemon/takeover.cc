#include "nydusd/daemon/takeover.h"

#include <set>

#include "state.pb.h"

namespace nydus::daemon {

namespace pb = nydus::state::v1;

namespace {

// The singleton (fscache) part of decode_state; format checks are done.
Result<SavedState> decode_singleton(const pb::DaemonState& msg) {
  if (msg.format_minor() >= 1 && !msg.has_mount_count()) {
    return make_error(ErrorKind::kCorrupt, "the saved fscache state is incomplete: truncated");
  }
  if (!msg.has_fscache()) {
    return make_error(ErrorKind::kCorrupt, "the saved state is of mode singleton but has no fscache section");
  }
  if (msg.mounts_size() != 0 || msg.mount_count() != 0) {
    return make_error(ErrorKind::kCorrupt, "the saved fscache state lists {} FUSE mounts", msg.mounts_size());
  }
  SavedState state;
  state.mode = "singleton";
  state.format_major = msg.format_major();
  state.format_minor = msg.format_minor();
  state.writer_version = msg.writer_version();
  state.daemon_id = msg.daemon_id();
  const auto& f = msg.fscache();
  state.fscache.cache_dir = f.cache_dir();
  state.fscache.tag = f.tag();
  state.fscache.threads = f.threads();
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& b : f.blobs()) {
    if (b.blob_id().empty() || b.json().empty()) {
      return make_error(ErrorKind::kCorrupt, "a saved fscache blob has no id or no JSON (domain \"{}\")",
                        b.domain_id());
    }
    if (!seen.emplace(b.domain_id(), b.blob_id()).second) {
      return make_error(ErrorKind::kCorrupt, "saved fscache blob {} of domain \"{}\" is listed twice", b.blob_id(),
                        b.domain_id());
    }
    state.fscache.blobs.push_back({b.domain_id(), b.blob_id(), b.json()});
  }
  return state;
}

}  // namespace

std::vector<uint8_t> encode_state(const SavedState& state) {
  pb::DaemonState msg;
  msg.set_format_major(state.format_major);
  msg.set_format_minor(state.format_minor);
  msg.set_writer_version(state.writer_version);
  msg.set_daemon_id(state.daemon_id);
  msg.set_mode(state.mode);
  if (state.mode == "singleton") {
    auto* fsc = msg.mutable_fscache();
    fsc->set_cache_dir(state.fscache.cache_dir);
    fsc->set_tag(state.fscache.tag);
    fsc->set_threads(state.fscache.threads);
    for (const auto& b : state.fscache.blobs) {
      auto* out = fsc->add_blobs();
      out->set_domain_id(b.domain_id);
      out->set_blob_id(b.blob_id);
      out->set_json(b.json);
    }
    msg.set_thread_num(state.fscache.threads);
    // Written last (highest field number): its presence proves the message
    // is whole. The fscache section is one length-delimited field, so it is
    // either complete or missing.
    msg.set_mount_count(0);
    std::string bytes;
    msg.SerializeToString(&bytes);
    return {bytes.begin(), bytes.end()};
  }
  msg.set_mountpoint(state.mountpoint);
  auto* f = msg.mutable_fuse();
  f->set_protocol_major(state.fuse.proto_major);
  f->set_protocol_minor(state.fuse.proto_minor);
  f->set_flags(state.fuse.flags);
  f->set_kernel_flags(state.fuse.kernel_flags);
  f->set_max_write(state.fuse.max_write);
  f->set_max_readahead(state.fuse.max_readahead);
  f->set_time_gran(state.fuse.time_gran);
  f->set_max_pages(state.fuse.max_pages);
  f->set_max_background(state.fuse.max_background);
  f->set_congestion_threshold(state.fuse.congestion_threshold);
  f->set_kernel_has_resend(state.fuse.has_resend());
  for (const auto& m : state.mounts) {
    auto* out = msg.add_mounts();
    out->set_index(m.index);
    out->set_mountpoint(m.mountpoint);
    out->set_fs_type(m.fs_type);
    out->set_bootstrap(m.bootstrap);
    out->set_config(m.config);
    for (const auto& p : m.prefetch_files) out->add_prefetch_files(p);
  }
  msg.set_next_mount_index(state.next_mount_index);
  msg.set_fuse_conn_id(state.fuse_conn_id);
  msg.set_failover_policy(state.failover_policy);
  msg.set_thread_num(state.thread_num);
  for (const auto& p : state.pseudo_dirs) {
    auto* out = msg.add_pseudo_inodes();
    out->set_ino(p.ino);
    out->set_parent(p.parent);
    out->set_name(p.name);
  }
  msg.set_mount_count(static_cast<uint32_t>(state.mounts.size()));
  std::string bytes;
  msg.SerializeToString(&bytes);
  return {bytes.begin(), bytes.end()};
}

Result<SavedState> decode_state(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return make_error(ErrorKind::kCorrupt, "the saved state is empty");
  pb::DaemonState msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return make_error(ErrorKind::kCorrupt,
                      "the saved state ({} bytes) does not parse: truncated or corrupted",
                      bytes.size());
  }
  if (msg.format_major() == 0) {
    return make_error(ErrorKind::kCorrupt, "the saved state has no format_major: not a nydusd state");
  }
  if (msg.format_major() > kStateFormatMajor) {
    return make_error(ErrorKind::kUnsupported,
                      "the saved state has format {}.{} (written by {}); this nydusd reads format {} "
                      "only: take over with a newer binary",
                      msg.format_major(), msg.format_minor(), msg.writer_version(),
                      kStateFormatMajor);
  }
  if (!msg.mode().empty() && msg.mode() != "fuse" && msg.mode() != "singleton") {
    return make_error(ErrorKind::kUnsupported, "the saved state is of unknown mode \"{}\"", msg.mode());
  }
  if (msg.mode() == "singleton") return decode_singleton(msg);
  const auto& f = msg.fuse();
  if (!msg.has_fuse() || f.protocol_major() != 7 || f.protocol_minor() == 0 || f.max_write() == 0) {
    return make_error(ErrorKind::kCorrupt,
                      "the saved state has no valid FUSE negotiation (protocol {}.{}, max_write {})",
                      f.protocol_major(), f.protocol_minor(), f.max_write());
  }
  if (msg.format_minor() >= 1 &&
      (!msg.has_mount_count() || msg.mount_count() != static_cast<uint32_t>(msg.mounts_size()))) {
    return make_error(ErrorKind::kCorrupt,
                      "the saved state is incomplete ({} of {} mounts): truncated", msg.mounts_size(),
                      msg.has_mount_count() ? std::to_string(msg.mount_count()) : "?");
  }
  SavedState state;
  state.format_major = msg.format_major();
  state.format_minor = msg.format_minor();
  state.writer_version = msg.writer_version();
  state.daemon_id = msg.daemon_id();
  state.mountpoint = msg.mountpoint();
  state.fuse.kernel_major = f.protocol_major();
  state.fuse.kernel_minor = f.protocol_minor();
  state.fuse.proto_major = f.protocol_major();
  state.fuse.proto_minor = f.protocol_minor();
  state.fuse.flags = f.flags();
  state.fuse.kernel_flags = f.kernel_flags();
  if (f.kernel_has_resend()) state.fuse.kernel_flags |= fuse::abi::init_flags::kHasResend;
  state.fuse.max_write = f.max_write();
  state.fuse.max_readahead = f.max_readahead();
  state.fuse.time_gran = f.time_gran();
  state.fuse.max_pages = static_cast<uint16_t>(f.max_pages());
  state.fuse.max_background = static_cast<uint16_t>(f.max_background());
  state.fuse.congestion_threshold = static_cast<uint16_t>(f.congestion_threshold());
  std::set<uint32_t> indexes;
  std::set<std::string> paths;
  for (const auto& m : msg.mounts()) {
    if (m.index() == 0 || m.index() > 255) {
      return make_error(ErrorKind::kCorrupt, "saved mount {} has index {}, not in 1..255",
                        m.mountpoint(), m.index());
    }
    if (!indexes.insert(m.index()).second || !paths.insert(m.mountpoint()).second) {
      return make_error(ErrorKind::kCorrupt, "saved mount {} (index {}) is listed twice",
                        m.mountpoint(), m.index());
    }
    if (m.bootstrap().empty() || m.mountpoint().empty()) {
      return make_error(ErrorKind::kCorrupt, "saved mount with index {} has no bootstrap or path",
                        m.index());
    }
    SavedMount out;
    out.index = static_cast<uint8_t>(m.index());
    out.mountpoint = m.mountpoint();
    out.fs_type = m.fs_type().empty() ? "rafs" : m.fs_type();
    out.bootstrap = m.bootstrap();
    out.config = m.config();
    out.prefetch_files.assign(m.prefetch_files().begin(), m.prefetch_files().end());
    state.mounts.push_back(std::move(out));
  }
  state.next_mount_index = msg.next_mount_index();
  state.fuse_conn_id = msg.fuse_conn_id();
  state.failover_policy = msg.failover_policy();
  state.thread_num = msg.thread_num();
  for (const auto& p : msg.pseudo_inodes()) state.pseudo_dirs.push_back({p.ino(), p.parent(), p.name()});
  return state;
}

}  // namespace nydus::daemon
