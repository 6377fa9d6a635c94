#include "nydusd/rafs/blob_ci.h"

#include <cstring>

#include "nydusd/rafs/compression.h"
#include "common/file_io.h"
#include "nydusd/rafs/read_struct.h"

namespace nydus::rafs {

namespace {

constexpr uint64_t kHeaderSize = sizeof(BlobCiHeader);

template <typename... Args>
Error ci_corrupt(const BlobInfo& blob, fmt::format_string<Args...> f, Args&&... args) {
  return Error(ErrorKind::kCorrupt, fmt::format("blob {} ({}) CI: {}", blob.index, blob.blob_id,
                                                fmt::format(f, std::forward<Args>(args)...)));
}

Status check_header(const BlobInfo& blob, const BlobCiHeader& h, uint64_t where) {
  if (h.magic != kBlobCiMagic || h.magic2 != kBlobCiMagic) {
    return ci_corrupt(blob, "header @{:#x}: magic {:#x}/{:#x}, want {:#x}", where, h.magic, h.magic2, kBlobCiMagic);
  }
  struct Field {
    const char* name;
    uint64_t header, table;
  };
  const Field fields[] = {
      {"ci_entries", h.ci_entries, blob.chunk_count},
      {"ci_compressor", h.ci_compressor, uint32_t(blob.ci_compressor)},
      {"ci_offset", h.ci_offset, blob.ci_offset},
      {"ci_compressed_size", h.ci_compressed_size, blob.ci_compressed_size},
      {"ci_uncompressed_size", h.ci_uncompressed_size, blob.ci_uncompressed_size},
      {"CHUNK_INFO_V2 feature", h.features & blob_features::kChunkInfoV2, blob.features & blob_features::kChunkInfoV2},
  };
  for (const auto& f : fields) {
    if (f.header != f.table) {
      return ci_corrupt(blob, "header @{:#x}: {} is {:#x}, the blob table says {:#x}", where, f.name, f.header, f.table);
    }
  }
  if (h.features & blob_features::kUnsupported) {
    return Error(ErrorKind::kUnsupported, fmt::format("blob {} CI: header features {:#x} are not supported",
                                                      blob.index, h.features));
  }
  return ok_status();
}

// Decodes and validates the uncompressed CI array.
Result<std::vector<ChunkInfo>> decode_entries(const BlobInfo& blob, std::span<const uint8_t> raw) {
  const size_t entry_size = blob.ci_v2 ? sizeof(ChunkInfoV2) : sizeof(ChunkInfoV1);
  // A validated bootstrap guarantees this; a hand-made BlobInfo may not.
  if (raw.size() / entry_size < blob.chunk_count) {
    return ci_corrupt(blob, "{} bytes cannot hold {} entries of {} bytes", raw.size(), blob.chunk_count, entry_size);
  }
  std::vector<ChunkInfo> out;
  out.reserve(blob.chunk_count);
  // Chunk data always precedes the CI array in the blob.
  const uint64_t data_end = blob.ci_offset;
  uint64_t prev_uend = 0, prev_cend = 0;
  for (uint32_t k = 0; k < blob.chunk_count; ++k) {
    const uint64_t at = uint64_t(k) * entry_size;
    ChunkInfo c;
    if (blob.ci_v2) {
      c = decode_ci_v2(*read_struct<ChunkInfoV2>(raw, at));  // raw.size() == chunk_count * entry_size
      constexpr uint8_t kKnown = ci_v2_flags::kCompressed | ci_v2_flags::kZran | ci_v2_flags::kBatch |
                                 ci_v2_flags::kEncrypted | ci_v2_flags::kHasCrc32;
      if (c.v2_flags & ~kKnown) return ci_corrupt(blob, "entry {}: unknown flags {:#x}", k, c.v2_flags);
      if (c.v2_flags & (ci_v2_flags::kZran | ci_v2_flags::kBatch | ci_v2_flags::kEncrypted)) {
        return Error(ErrorKind::kUnsupported, fmt::format("blob {} CI entry {}: zran/batch/encrypted chunk (flags {:#x})",
                                                          blob.index, k, c.v2_flags));
      }
    } else {
      c = decode_ci_v1(*read_struct<ChunkInfoV1>(raw, at));
    }
    if (c.uncompressed_size > blob.chunk_size || c.uncompressed_offset % kBlockSize != 0 ||
        !in_range(blob.uncompressed_size, c.uncompressed_offset, c.uncompressed_size)) {
      return ci_corrupt(blob, "entry {}: uncompressed [{:#x}, +{:#x}) is unaligned, larger than a chunk or outside "
                        "the blob ({:#x})", k, c.uncompressed_offset, c.uncompressed_size, blob.uncompressed_size);
    }
    if (c.compressed_size == 0 || (!c.compressed && c.compressed_size != c.uncompressed_size) ||
        !in_range(data_end, c.compressed_offset, c.compressed_size)) {
      return ci_corrupt(blob, "entry {}: compressed [{:#x}, +{:#x}) is empty, inconsistent or past the chunk data "
                        "(ends at {:#x})", k, c.compressed_offset, c.compressed_size, data_end);
    }
    // nydusd binary-searches by both offsets, so both must ascend.
    if (c.uncompressed_offset < prev_uend || c.compressed_offset < prev_cend) {
      return ci_corrupt(blob, "entry {}: offsets {:#x}/{:#x} overlap or precede the previous chunk (ends {:#x}/{:#x})",
                        k, c.uncompressed_offset, c.compressed_offset, prev_uend, prev_cend);
    }
    prev_uend = c.uncompressed_offset + c.uncompressed_size;
    prev_cend = c.compressed_offset + c.compressed_size;
    out.push_back(c);
  }
  return out;
}

}  // namespace

Result<std::vector<ChunkInfo>> parse_blob_ci(const BlobInfo& blob, std::span<const uint8_t> bytes, CiSource source) {
  if (source == CiSource::kBlobMeta) {
    const uint64_t want = round_up(blob.ci_uncompressed_size, kBlockSize) + kHeaderSize;
    if (bytes.size() != want) {
      return ci_corrupt(blob, "blob.meta is {} bytes, want {} (CI {} bytes padded to 4 KiB + header)", bytes.size(),
                        want, blob.ci_uncompressed_size);
    }
    const uint64_t header_at = bytes.size() - kHeaderSize;
    NYDUS_TRY(check_header(blob, *read_struct<BlobCiHeader>(bytes, header_at), header_at));
    return decode_entries(blob, bytes.first(blob.ci_uncompressed_size));
  }
  if (bytes.size() != blob.ci_compressed_size + kHeaderSize) {
    return ci_corrupt(blob, "CI region is {} bytes, want {} + {}", bytes.size(), blob.ci_compressed_size, kHeaderSize);
  }
  NYDUS_TRY(check_header(blob, *read_struct<BlobCiHeader>(bytes, blob.ci_compressed_size),
                         blob.ci_offset + blob.ci_compressed_size));
  auto raw = decompress(blob.ci_compressor, bytes.first(blob.ci_compressed_size), blob.ci_uncompressed_size);
  if (!raw.ok()) return std::move(raw).error().wrap(fmt::format("blob {} CI @{:#x}", blob.index, blob.ci_offset));
  return decode_entries(blob, *raw);
}

Result<std::vector<ChunkInfo>> read_blob_ci(const BlobInfo& blob, const std::string& path, CiSource source) {
  if (source == CiSource::kBlobMeta) {
    NYDUS_ASSIGN_OR_RETURN(auto bytes, read_file(path, round_up(blob.ci_uncompressed_size, kBlockSize) + kHeaderSize));
    return parse_blob_ci(blob, bytes, source);
  }
  NYDUS_ASSIGN_OR_RETURN(UniqueFd fd, open_readonly(path));
  NYDUS_ASSIGN_OR_RETURN(uint64_t size, file_size(fd.get(), path));
  // Check the region against the real file before allocating for it.
  if (!in_range(size, blob.ci_offset, blob.ci_compressed_size + kHeaderSize)) {
    return ci_corrupt(blob, "{}: CI region [{:#x}, +{:#x}) extends past the end of the blob ({} bytes)", path,
                      blob.ci_offset, blob.ci_compressed_size + kHeaderSize, size);
  }
  std::vector<uint8_t> bytes(blob.ci_compressed_size + kHeaderSize);
  NYDUS_TRY(pread_exact(fd.get(), bytes, blob.ci_offset, path));
  return parse_blob_ci(blob, bytes, source);
}

ChunkRef chunk_ref_from_ci(const BlobInfo& blob, uint32_t ci_index, const ChunkInfo& ci,
                           const Bootstrap* bootstrap) {
  ChunkRef r;
  r.blob_index = blob.index;
  r.ci_index = ci_index;
  r.file_offset = 0;
  r.compressed_offset = ci.compressed_offset;
  r.compressed_size = ci.compressed_size;
  r.uncompressed_offset = ci.uncompressed_offset;
  r.uncompressed_size = ci.uncompressed_size;
  r.compressed = ci.compressed;
  r.compressor = blob.compressor;
  r.digester = blob.digester;
  r.in_chunk_table = true;
  if (bootstrap) {
    if (const ChunkTableEntry* e = bootstrap->find_chunk(blob.index, ci_index, ci.uncompressed_offset)) {
      Digest d;
      std::memcpy(d.data(), e->digest, d.size());
      r.digest = d;
    }
  }
  return r;
}

}  // namespace nydus::rafs
