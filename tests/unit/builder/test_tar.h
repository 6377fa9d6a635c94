// Writes OCI-style layer tars with libarchive for the builder tests (unit
// and integration): full PAX, so sub-second mtimes and xattrs survive.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <clocale>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nydus::builder::testing {

struct TarEntry {
  std::string path;
  mode_t mode = 0;
  std::string data;   // regular files
  std::string link;   // symlink target, or the hard link's target path
  bool hardlink = false;
  std::vector<std::pair<std::string, std::string>> xattrs;
  dev_t rdev = 0;
  uint32_t uid = 1000;
  uint32_t gid = 70000;
  int64_t mtime = 1700000000;
  long mtime_nsec = 123456789;
};

// The PAX writer converts names from the locale to UTF-8, so it runs in
// C.UTF-8; the previous locale is restored, so readers are tested in
// whatever locale the test process has (normally "C").
class Utf8Locale {
 public:
  Utf8Locale() : saved_(std::setlocale(LC_CTYPE, nullptr)) { std::setlocale(LC_CTYPE, "C.UTF-8"); }
  ~Utf8Locale() { std::setlocale(LC_CTYPE, saved_.c_str()); }

 private:
  std::string saved_;
};

inline void write_tar(const std::string& path, const std::vector<TarEntry>& entries, bool gzip) {
  Utf8Locale utf8;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  if (gzip) archive_write_add_filter_gzip(a);
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) throw std::runtime_error("open " + path);
  for (const auto& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_mode(ae, e.mode);
    archive_entry_set_uid(ae, e.uid);
    archive_entry_set_gid(ae, e.gid);
    archive_entry_set_mtime(ae, e.mtime, e.mtime_nsec);
    if (e.hardlink) {
      archive_entry_set_hardlink(ae, e.link.c_str());
    } else if (S_ISLNK(e.mode)) {
      archive_entry_set_symlink(ae, e.link.c_str());
    }
    if (S_ISREG(e.mode) && !e.hardlink) archive_entry_set_size(ae, la_int64_t(e.data.size()));
    if (S_ISCHR(e.mode) || S_ISBLK(e.mode)) archive_entry_set_rdev(ae, e.rdev);
    for (const auto& [k, v] : e.xattrs) archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
    if (archive_write_header(a, ae) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a));
    if (!e.data.empty() && archive_write_data(a, e.data.data(), e.data.size()) != la_ssize_t(e.data.size()))
      throw std::runtime_error(archive_error_string(a));
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace nydus::builder::testing
