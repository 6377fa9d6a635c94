// Inode records (§6), flat data of directories and symlinks (§7, §8), and
// inline xattrs (§8). load_inode() checks everything an inode's own fields
// decide: format bits, layout for its type, nlink, and that its xattr area,
// data blocks, inline tail or chunk index array lie inside the file, so the
// accessors that follow only re-check cheap bounds.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <bit>

#include "nydusd/rafs/bootstrap_impl.h"

namespace nydus::rafs {

namespace {

const char* layout_name(uint16_t layout) {
  switch (layout) {
    case 0: return "FLAT_PLAIN";
    case 2: return "FLAT_INLINE";
    case 4: return "CHUNK_BASED";
  }
  return "compressed";
}

// Linux "new" dev_t encoding as stored in i_u (§6).
uint32_t decode_rdev(uint32_t raw) {
  const uint32_t major = (raw & 0xFFF00) >> 8;
  const uint32_t minor = (raw & 0xFF) | ((raw >> 12) & 0xFFF00);
  return uint32_t(makedev(major, minor));
}

}  // namespace

Result<InodeView> BootstrapImpl::load_inode(uint64_t nid) const {
  const uint64_t size = bytes_.size();
  const uint64_t meta = uint64_t(super_.meta_blkaddr) * block_size();  // < size, checked at open
  if (nid >= (size - meta) / kInodeSlotSize) {
    return corrupt("nid {} is outside the metadata area (meta_blkaddr {}, file size {:#x})", nid,
                   super_.meta_blkaddr, size);
  }
  InodeView v;
  v.offset = meta + nid * kInodeSlotSize;
  const uint16_t format = *read_struct<uint16_t>(bytes_, v.offset);
  if (format & ~kInodeFormatKnownMask) {
    return corrupt("nid {} (inode @{:#x}): i_format {:#x} has unknown bits {:#x}", nid, v.offset, format,
                   format & ~kInodeFormatKnownMask);
  }
  const uint16_t layout = (format >> kInodeLayoutShift) & kInodeLayoutMask;
  if (layout != uint16_t(DataLayout::kFlatPlain) && layout != uint16_t(DataLayout::kFlatInline) &&
      layout != uint16_t(DataLayout::kChunkBased)) {
    return corrupt("nid {} (inode @{:#x}): i_format {:#x} has data layout {} ({}), which RAFS never uses", nid,
                   v.offset, format, layout, layout_name(layout));
  }
  InodeAttr& a = v.attr;
  a.nid = nid;
  a.extended = (format & kInodeVersionMask) != 0;
  a.layout = DataLayout(layout);
  v.inode_size = a.extended ? sizeof(ExtendedInode) : sizeof(CompactInode);
  if (a.extended) {
    auto ino = read_struct<ExtendedInode>(bytes_, v.offset);
    if (!ino) return corrupt("nid {} (inode @{:#x}): 64-byte inode extends past the end of the file", nid, v.offset);
    a.mode = ino->i_mode;
    a.size = ino->i_size;
    a.uid = ino->i_uid;
    a.gid = ino->i_gid;
    a.nlink = ino->i_nlink;
    a.mtime = ino->i_mtime;
    a.mtime_nsec = ino->i_mtime_nsec;
    a.xattr_count = ino->i_xattr_icount;
    v.i_u = ino->i_u;
  } else {
    const CompactInode ino = *read_struct<CompactInode>(bytes_, v.offset);  // 32 bytes fit: nid bound above
    a.mode = ino.i_mode;
    a.size = ino.i_size;
    a.uid = ino.i_uid;
    a.gid = ino.i_gid;
    a.nlink = ino.i_nlink;
    // Compact inodes have no mtime; report what the kernel reports.
    a.mtime = sb_.build_time;
    a.mtime_nsec = sb_.build_time_nsec;
    a.xattr_count = ino.i_xattr_icount;
    v.i_u = ino.i_u;
  }
  v.xattr_size = xattr_ibody_size(a.xattr_count);
  if (!in_range(size, v.offset, uint64_t(v.inode_size) + v.xattr_size)) {
    return corrupt("nid {} (inode @{:#x}): inode and {}-byte xattr area extend past the end of the file", nid,
                   v.offset, v.xattr_size);
  }
  if (a.nlink == 0) return corrupt("nid {} (inode @{:#x}): i_nlink is 0", nid, v.offset);

  const uint32_t bs = block_size();
  const auto want_layout = [&](std::initializer_list<DataLayout> ok, const char* what) -> Status {
    for (DataLayout l : ok) {
      if (a.layout == l) return ok_status();
    }
    return corrupt("nid {} (inode @{:#x}): {} with data layout {}", nid, v.offset, what, layout_name(layout));
  };
  switch (a.mode & S_IFMT) {
    case S_IFREG: {
      NYDUS_TRY(want_layout({DataLayout::kChunkBased}, "regular file"));
      // i_u low u16 is the EROFS chunk format: 0x20 (8-byte indexes) | chunkbits.
      const uint16_t cformat = uint16_t(v.i_u);
      if ((cformat & ~(kChunkFormatIndexes | kChunkFormatBitsMask)) || !(cformat & kChunkFormatIndexes)) {
        return corrupt("nid {} (inode @{:#x}): chunk format {:#x} must be 0x20 | chunkbits", nid, v.offset + 16,
                       cformat);
      }
      // The kernel counts indexes with its own chunk size; if that were
      // smaller than the RAFS chunk size it would read past the array.
      const uint32_t bits = uint32_t(std::countr_zero(bs)) + (cformat & kChunkFormatBitsMask);  // <= 43
      if ((uint64_t(1) << bits) < super_.chunk_size) {
        return corrupt("nid {} (inode @{:#x}): chunk format {:#x} gives a {}-byte kernel chunk, smaller than the "
                       "RAFS chunk size {}",
                       nid, v.offset + 16, cformat, uint64_t(1) << bits, super_.chunk_size);
      }
      const uint64_t count = div_round_up(a.size, super_.chunk_size);
      const uint64_t index_off = round_up(v.body_offset(), sizeof(ChunkAddr));
      if (count > size / sizeof(ChunkAddr) || !in_range(size, index_off, count * sizeof(ChunkAddr))) {
        return corrupt("nid {} (inode @{:#x}): {} chunk indexes for i_size {} at @{:#x} extend past the end of the "
                       "file",
                       nid, v.offset, count, a.size, index_off);
      }
      break;
    }
    case S_IFDIR:
    case S_IFLNK: {
      const bool dir = S_ISDIR(a.mode);
      NYDUS_TRY(want_layout({DataLayout::kFlatPlain, DataLayout::kFlatInline}, dir ? "directory" : "symlink"));
      if (a.size == 0) {
        return corrupt("nid {} (inode @{:#x}): {} with i_size 0", nid, v.offset, dir ? "directory" : "symlink");
      }
      if (!dir && a.size > kMaxSymlinkLen) {
        return corrupt("nid {} (inode @{:#x}): symlink target of {} bytes exceeds {}", nid, v.offset, a.size,
                       kMaxSymlinkLen);
      }
      const uint64_t nblocks = div_round_up(a.size, bs);
      const bool inline_tail = a.layout == DataLayout::kFlatInline;
      const uint64_t plain_len = inline_tail ? (nblocks - 1) * bs : a.size;
      if (plain_len > 0 && !in_range(size, uint64_t(v.i_u) * bs, plain_len)) {
        return corrupt("nid {} (inode @{:#x}): data blocks at block {} ({} bytes) extend past the end of the file",
                       nid, v.offset, v.i_u, plain_len);
      }
      if (inline_tail) {
        const uint64_t tail = a.size - (nblocks - 1) * bs;
        const uint64_t tail_off = v.body_offset();
        if (tail_off % bs + tail > bs || !in_range(size, tail_off, tail)) {
          return corrupt("nid {} (inode @{:#x}): inline tail of {} bytes at @{:#x} crosses a block boundary", nid,
                         v.offset, tail, tail_off);
        }
      }
      break;
    }
    case S_IFCHR:
    case S_IFBLK:
      NYDUS_TRY(want_layout({DataLayout::kFlatPlain}, "device"));
      a.rdev = decode_rdev(v.i_u);
      break;
    case S_IFIFO:
    case S_IFSOCK:
      NYDUS_TRY(want_layout({DataLayout::kFlatPlain}, "fifo or socket"));
      break;
    default:
      return corrupt("nid {} (inode @{:#x}): unknown file type in i_mode {:#o}", nid, v.offset + 4, a.mode);
  }
  return v;
}

Result<InodeAttr> BootstrapImpl::getattr(uint64_t nid) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView v, load_inode(nid));
  return v.attr;
}

Result<DirBlock> BootstrapImpl::flat_block(const InodeView& ino, uint64_t blk) const {
  const uint32_t bs = block_size();
  const uint64_t nblocks = div_round_up(ino.attr.size, bs);
  if (blk >= nblocks) {
    return make_error(ErrorKind::kInternal, "nid {}: block {} is past the last block {}", ino.attr.nid, blk,
                      nblocks);
  }
  const bool last = blk + 1 == nblocks;
  const uint64_t len = last ? ino.attr.size - blk * bs : bs;
  const uint64_t off = (last && ino.attr.layout == DataLayout::kFlatInline) ? ino.body_offset()
                                                                             : (uint64_t(ino.i_u) + blk) * bs;
  if (!in_range(bytes_.size(), off, len)) {  // load_inode() checked this; stay safe anyway
    return corrupt("nid {}: data block {} at @{:#x} is outside the file", ino.attr.nid, blk, off);
  }
  DirBlock b;
  b.bytes = std::span<const uint8_t>(bytes_).subspan(off, len);
  b.offset = off;
  return b;
}

Result<std::string> BootstrapImpl::readlink_inode(const InodeView& ino) const {
  if (!S_ISLNK(ino.attr.mode)) {
    return Error(ErrorKind::kInvalidArgument, fmt::format("nid {} is not a symlink", ino.attr.nid), EINVAL);
  }
  std::string target;
  const uint64_t nblocks = div_round_up(ino.attr.size, block_size());  // size <= 4096: one or two blocks
  for (uint64_t blk = 0; blk < nblocks; ++blk) {
    NYDUS_ASSIGN_OR_RETURN(DirBlock b, flat_block(ino, blk));
    target.append(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size());
  }
  return target;
}

Result<std::string> BootstrapImpl::readlink(uint64_t nid) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView v, load_inode(nid));
  return readlink_inode(v);
}

Result<std::vector<Xattr>> BootstrapImpl::xattrs_inode(const InodeView& ino) const {
  std::vector<Xattr> out;
  if (ino.xattr_size == 0) return out;
  const uint64_t nid = ino.attr.nid;
  const uint64_t area = ino.offset + ino.inode_size;  // in range: load_inode()
  const XattrIbodyHeader h = *read_struct<XattrIbodyHeader>(bytes_, area);
  if (h.h_shared_count != 0) {
    return unsupported("nid {}: xattr header @{:#x} has {} shared xattrs, which RAFS never uses", nid, area,
                       h.h_shared_count);
  }
  uint64_t pos = sizeof(XattrIbodyHeader);
  while (pos < ino.xattr_size) {  // each entry advances pos by >= 4
    const uint64_t at = area + pos;
    if (ino.xattr_size - pos < sizeof(XattrEntry)) {
      return corrupt("nid {}: xattr entry @{:#x} is cut off by the end of the xattr area", nid, at);
    }
    const XattrEntry e = *read_struct<XattrEntry>(bytes_, at);
    const uint64_t len = sizeof(XattrEntry) + e.e_name_len + e.e_value_size;
    if (len > ino.xattr_size - pos) {
      return corrupt("nid {}: xattr entry @{:#x} ({} bytes) overruns the xattr area ending at @{:#x}", nid, at, len,
                     area + ino.xattr_size);
    }
    const char* prefix = nullptr;
    switch (e.e_name_index) {
      case kXattrUser: prefix = "user."; break;
      case kXattrPosixAclAccess: prefix = "system.posix_acl_access"; break;
      case kXattrPosixAclDefault: prefix = "system.posix_acl_default"; break;
      case kXattrTrusted: prefix = "trusted."; break;
      case kXattrSecurity: prefix = "security."; break;
      default:
        return corrupt("nid {}: xattr entry @{:#x} has name index {:#x}; only 1, 2, 3, 4 and 6 are allowed", nid,
                       at, e.e_name_index);
    }
    const char* p = reinterpret_cast<const char*>(bytes_.data() + at + sizeof(XattrEntry));
    Xattr x;
    x.name = std::string(prefix) + std::string(p, e.e_name_len);
    x.value.assign(p + e.e_name_len, e.e_value_size);
    out.push_back(std::move(x));
    pos += round_up(len, 4);
  }
  return out;
}

Result<std::vector<Xattr>> BootstrapImpl::xattrs(uint64_t nid) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView v, load_inode(nid));
  return xattrs_inode(v);
}

}  // namespace nydus::rafs
