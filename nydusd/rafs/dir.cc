// Directories (§7): blocks of 12-byte dirents followed by their names.
// Lookup follows the kernel (fs/erofs/namei.c): a binary search over blocks
// by each block's first name, then a binary search inside the chosen block.
// Every block and name touched is validated first, so a hostile directory
// yields kCorrupt, never an out-of-bounds read.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "nydusd/rafs/bootstrap_impl.h"

namespace nydus::rafs {

Result<InodeView> BootstrapImpl::load_dir(uint64_t nid) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView v, load_inode(nid));
  if (!S_ISDIR(v.attr.mode)) {
    return Error(ErrorKind::kInvalidArgument, fmt::format("nid {} is not a directory", nid), ENOTDIR);
  }
  return v;
}

Result<DirBlock> BootstrapImpl::dir_block(const InodeView& dir, uint64_t blk) const {
  NYDUS_ASSIGN_OR_RETURN(DirBlock b, flat_block(dir, blk));
  const uint64_t nid = dir.attr.nid;
  if (b.bytes.size() < sizeof(Dirent)) {
    return corrupt("dir nid {} block {} @{:#x}: {} bytes cannot hold a dirent", nid, blk, b.offset, b.bytes.size());
  }
  const uint16_t nameoff0 = read_struct<Dirent>(b.bytes, 0)->nameoff;
  if (nameoff0 < sizeof(Dirent) || nameoff0 % sizeof(Dirent) != 0 || nameoff0 >= b.bytes.size()) {
    return corrupt("dir nid {} block {} @{:#x}: de[0].nameoff {} must be a multiple of 12 in [12, {})", nid, blk,
                   b.offset, nameoff0, b.bytes.size());
  }
  b.count = nameoff0 / sizeof(Dirent);
  return b;
}

Result<std::pair<Dirent, std::string_view>> BootstrapImpl::dir_entry(const InodeView& dir, const DirBlock& b,
                                                                      uint32_t i) const {
  const Dirent de = *read_struct<Dirent>(b.bytes, uint64_t(i) * sizeof(Dirent));  // i < count, array < size
  const uint64_t start = de.nameoff;
  uint64_t end;
  if (i + 1 < b.count) {
    end = read_struct<Dirent>(b.bytes, uint64_t(i + 1) * sizeof(Dirent))->nameoff;
  } else if (start < b.bytes.size()) {
    // The last name ends at a NUL or at the end of the block's data.
    const void* nul = std::memchr(b.bytes.data() + start, 0, b.bytes.size() - start);
    end = nul ? uint64_t(static_cast<const uint8_t*>(nul) - b.bytes.data()) : b.bytes.size();
  } else {
    end = start;
  }
  const uint64_t names = uint64_t(b.count) * sizeof(Dirent);
  if (start < names || end <= start || end > b.bytes.size() || end - start > kMaxNameLen) {
    return corrupt("dir nid {} dirent {} @{:#x}: name [{}, {}) must be 1..{} bytes inside [{}, {})", dir.attr.nid, i,
                   b.offset + uint64_t(i) * sizeof(Dirent), start, end, kMaxNameLen, names, b.bytes.size());
  }
  return std::pair{de, std::string_view(reinterpret_cast<const char*>(b.bytes.data() + start), end - start)};
}

Status BootstrapImpl::readdir(uint64_t dir_nid, uint64_t start,
                              const std::function<bool(const DirEntry&, uint64_t next)>& fn) const {
  NYDUS_ASSIGN_OR_RETURN(InodeView dir, load_dir(dir_nid));
  const uint64_t nblocks = div_round_up(dir.attr.size, block_size());
  uint64_t index = 0;
  for (uint64_t blk = 0; blk < nblocks; ++blk) {
    NYDUS_ASSIGN_OR_RETURN(DirBlock b, dir_block(dir, blk));
    if (index + b.count <= start) {  // skip whole blocks before `start`
      index += b.count;
      continue;
    }
    for (uint32_t i = 0; i < b.count; ++i, ++index) {
      if (index < start) continue;
      NYDUS_ASSIGN_OR_RETURN(auto entry, dir_entry(dir, b, i));
      DirEntry e{std::string(entry.second), entry.first.nid, entry.first.file_type};
      if (!fn(e, index + 1)) return ok_status();
    }
  }
  return ok_status();
}

Result<uint64_t> BootstrapImpl::lookup(uint64_t dir_nid, std::string_view name) const {
  if (name.size() > kMaxNameLen) {
    return Error(ErrorKind::kInvalidArgument, fmt::format("name of {} bytes is too long", name.size()), ENAMETOOLONG);
  }
  NYDUS_ASSIGN_OR_RETURN(InodeView dir, load_dir(dir_nid));
  const auto not_found = [&] {
    return Error(ErrorKind::kNotFound, fmt::format("\"{}\" not found in dir nid {}", name, dir_nid), ENOENT);
  };
  if (name.empty()) return not_found();

  // 1. The last block whose first name is <= name.
  const uint64_t nblocks = div_round_up(dir.attr.size, block_size());
  uint64_t head = 0, back = nblocks;  // search [head, back)
  std::optional<DirBlock> candidate;
  while (head < back) {
    const uint64_t mid = head + (back - head) / 2;
    NYDUS_ASSIGN_OR_RETURN(DirBlock b, dir_block(dir, mid));
    NYDUS_ASSIGN_OR_RETURN(auto first, dir_entry(dir, b, 0));
    const int diff = name_compare(name, first.second);
    if (diff == 0) return first.first.nid;
    if (diff < 0) {
      back = mid;
    } else {
      candidate = b;
      head = mid + 1;
    }
  }
  if (!candidate) return not_found();

  // 2. Binary search inside that block (entry 0 is already known to be < name).
  uint32_t lo = 1, hi = candidate->count;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    NYDUS_ASSIGN_OR_RETURN(auto e, dir_entry(dir, *candidate, mid));
    const int diff = name_compare(name, e.second);
    if (diff == 0) return e.first.nid;
    if (diff < 0) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return not_found();
}

}  // namespace nydus::rafs
