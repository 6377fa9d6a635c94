// The builder's in-memory image: a tree of inodes plus the blob and chunk
// tables its regular files point into. Every front end produces one (the
// directory scanner, the tar reader, the bootstrap loader used by merge) and
// the bootstrap writer consumes it.
//
// Ownership: a directory owns its children through shared_ptr because hard
// links are several directory entries naming one Inode; that inode's nlink
// and chunk list exist once. There are no cycles: directories never point
// to their parents (the writer passes the parent down while walking).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/layout.h"

namespace nydus::builder {

struct Inode;
using InodePtr = std::shared_ptr<Inode>;

// Children keyed by raw name bytes: std::string compares through
// char_traits<char>, which orders like memcmp (unsigned bytes), the order
// EROFS directories need.
using Children = std::map<std::string, InodePtr>;

struct Inode {
  uint32_t mode = 0;  // st_mode including the file type bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t rdev_major = 0;  // char and block devices
  uint32_t rdev_minor = 0;
  uint64_t size = 0;  // regular files: content length
  // Full names ("user.foo"), only the prefixes RAFS can store (see xattr.h).
  std::map<std::string, std::string> xattrs;
  std::string symlink;  // symlink target
  Children children;    // directories
  // Regular files: one entry per chunk_size piece, an index into Image::chunks.
  std::vector<uint32_t> chunks;
  // Directory sources: where the content is read from when the blob is written.
  std::string source_path;

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_symlink() const { return S_ISLNK(mode); }
  bool is_device() const { return S_ISCHR(mode) || S_ISBLK(mode); }
  // An overlayfs whiteout: a char device 0:0.
  bool is_whiteout() const { return S_ISCHR(mode) && rdev_major == 0 && rdev_minor == 0; }
};

InodePtr make_dir(uint32_t perm = 0755);

// The whole image as the bootstrap writer needs it.
struct Image {
  InodePtr root;
  uint32_t chunk_size = rafs::kDefaultChunkSize;
  rafs::Compressor compressor = rafs::Compressor::kNone;  // fs default (ext SB flags)
  rafs::Digester digester = rafs::Digester::kBlake3;
  // Blob table, in device order. mapped_blkaddr is computed by the writer.
  std::vector<rafs::BlobInfo> blobs;
  // Unique chunks; ChunkTableEntry::blob_index indexes `blobs`.
  std::vector<rafs::ChunkTableEntry> chunks;
};

// Calls fn(path, inode, parent) for every directory entry below `root` in
// pre-order (names sorted), root itself first with path "/" and no parent.
// Hard links are visited once per name.
void walk(const InodePtr& root,
          const std::function<void(const std::string& path, const InodePtr& node, const Inode* parent)>& fn);

// The EROFS file type (rafs::FileType) of a mode.
uint8_t file_type_of(uint32_t mode);

}  // namespace nydus::builder
