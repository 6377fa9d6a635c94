#include "tools/nydus-image/inspect.h"

#include <sys/stat.h>

#include <cstring>
#include <iterator>

#include <fmt/format.h>

#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/digest.h"
#include "common/file_io.h"

namespace nydus::builder {

namespace {

constexpr uint64_t kMaxBootstrapSize = 1ull << 32;

std::string id_text(const uint8_t* p, size_t n) { return std::string(reinterpret_cast<const char*>(p), strnlen(reinterpret_cast<const char*>(p), n)); }

void print_super(std::string& out, const std::vector<uint8_t>& bytes) {
  rafs::SuperBlock sb;
  rafs::ExtSuperBlock ext;
  std::memcpy(&sb, bytes.data() + rafs::kSuperOffset, sizeof(sb));
  std::memcpy(&ext, bytes.data() + rafs::kExtSuperOffset, sizeof(ext));
  auto o = std::back_inserter(out);
  fmt::format_to(o, "Superblock (offset {:#x})\n", rafs::kSuperOffset);
  fmt::format_to(o, "  magic              {:#010x}\n", +sb.magic);
  fmt::format_to(o, "  checksum           {:#x}\n", +sb.checksum);
  fmt::format_to(o, "  feature_compat     {:#010x}\n", +sb.feature_compat);
  fmt::format_to(o, "  blkszbits          {}\n", +sb.blkszbits);
  fmt::format_to(o, "  sb_extslots        {}\n", +sb.sb_extslots);
  fmt::format_to(o, "  root_nid           {}\n", +sb.root_nid);
  fmt::format_to(o, "  inos               {}\n", +sb.inos);
  fmt::format_to(o, "  build_time         {}.{:09}\n", +sb.build_time, +sb.build_time_nsec);
  fmt::format_to(o, "  blocks             {}\n", +sb.blocks);
  fmt::format_to(o, "  meta_blkaddr       {}\n", +sb.meta_blkaddr);
  fmt::format_to(o, "  xattr_blkaddr      {}\n", +sb.xattr_blkaddr);
  fmt::format_to(o, "  feature_incompat   {:#010x}\n", +sb.feature_incompat);
  fmt::format_to(o, "  extra_devices      {}\n", +sb.extra_devices);
  fmt::format_to(o, "  devt_slotoff       {}\n", +sb.devt_slotoff);
  fmt::format_to(o, "Extended superblock (offset {:#x})\n", rafs::kExtSuperOffset);
  fmt::format_to(o, "  flags              {:#x}\n", +ext.flags);
  fmt::format_to(o, "  blob_table         offset {:#x} size {}\n", +ext.blob_table_offset, +ext.blob_table_size);
  fmt::format_to(o, "  chunk_size         {:#x}\n", +ext.chunk_size);
  fmt::format_to(o, "  chunk_table        offset {:#x} size {} ({} entries)\n", +ext.chunk_table_offset,
                 +ext.chunk_table_size, +ext.chunk_table_size / sizeof(rafs::ChunkTableEntry));
  fmt::format_to(o, "  prefetch_table     offset {:#x} size {}\n", +ext.prefetch_table_offset,
                 +ext.prefetch_table_size);
  // The reader validated the slots against the file size; the bound is belt and braces.
  for (uint32_t i = 0; i < sb.extra_devices && rafs::kDeviceTableOffset + (i + 1) * sizeof(rafs::DeviceSlot) <= bytes.size(); ++i) {
    rafs::DeviceSlot slot;
    std::memcpy(&slot, bytes.data() + rafs::kDeviceTableOffset + i * sizeof(slot), sizeof(slot));
    fmt::format_to(o, "Device slot {}: tag {} blocks {} mapped_blkaddr {}\n", i, id_text(slot.tag, sizeof(slot.tag)),
                   +slot.blocks, +slot.mapped_blkaddr);
  }
}

void print_blobs(std::string& out, const rafs::Bootstrap& bs) {
  auto o = std::back_inserter(out);
  for (const auto& b : bs.blobs()) {
    fmt::format_to(o, "Blob {}: {}\n", b.index, b.blob_id);
    fmt::format_to(o, "  chunk_size {:#x} chunk_count {} compressor {} digester {} features {:#x}\n", b.chunk_size,
                   b.chunk_count, uint32_t(b.compressor), uint32_t(b.digester), b.features);
    fmt::format_to(o, "  compressed_size {} uncompressed_size {}\n", b.compressed_size, b.uncompressed_size);
    fmt::format_to(o, "  ci compressor {} offset {:#x} compressed {} uncompressed {}{}\n", uint32_t(b.ci_compressor),
                   b.ci_offset, b.ci_compressed_size, b.ci_uncompressed_size, b.ci_v2 ? " (v2)" : "");
  }
}

Result<uint64_t> resolve(const rafs::Bootstrap& bs, const std::string& path) {
  uint64_t nid = bs.root_nid();
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string name = path.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty() || name == ".") continue;
    auto found = bs.lookup(nid, name);
    if (!found.ok()) return std::move(found).error().wrap("lookup " + path);
    nid = *found;
  }
  return nid;
}

Status print_path(std::string& out, const rafs::Bootstrap& bs, const std::string& path) {
  NYDUS_ASSIGN_OR_RETURN(uint64_t nid, resolve(bs, path));
  NYDUS_ASSIGN_OR_RETURN(rafs::InodeAttr a, bs.getattr(nid));
  auto o = std::back_inserter(out);
  fmt::format_to(o, "Path {}\n  nid {} mode {:o} uid {} gid {} size {} nlink {} mtime {}.{:09} rdev {:#x}\n", path,
                 a.nid, a.mode, a.uid, a.gid, a.size, a.nlink, a.mtime, a.mtime_nsec, a.rdev);
  NYDUS_ASSIGN_OR_RETURN(auto xattrs, bs.xattrs(nid));
  for (const auto& x : xattrs) fmt::format_to(o, "  xattr {} ({} bytes)\n", x.name, x.value.size());
  if (S_ISLNK(a.mode)) {
    NYDUS_ASSIGN_OR_RETURN(auto target, bs.readlink(nid));
    fmt::format_to(o, "  target {}\n", target);
  }
  if (!S_ISREG(a.mode)) return ok_status();
  NYDUS_ASSIGN_OR_RETURN(auto refs, bs.map_range(nid, 0, a.size));
  fmt::format_to(o, "  {} chunks\n", refs.size());
  for (const auto& r : refs) {
    fmt::format_to(o, "  file {:#x}: blob {} ci {} uoff {:#x} usize {} coff {:#x} csize {}{} digest {}\n",
                   r.file_offset, r.blob_index, r.ci_index, r.uncompressed_offset, r.uncompressed_size,
                   r.compressed_offset, r.compressed_size, r.compressed ? " compressed" : "",
                   r.digest ? rafs::to_hex(*r.digest) : "-");
  }
  return ok_status();
}

}  // namespace

Result<std::string> run_inspect(const std::string& bootstrap, const std::optional<std::string>& path) {
  NYDUS_ASSIGN_OR_RETURN(auto bytes, nydus::read_file(bootstrap, kMaxBootstrapSize));
  NYDUS_ASSIGN_OR_RETURN(auto bs, rafs::Bootstrap::from_bytes(bytes, bootstrap));
  std::string out;
  print_super(out, bytes);
  print_blobs(out, *bs);
  if (path) NYDUS_TRY(print_path(out, *bs, *path));
  return out;
}

}  // namespace nydus::builder
