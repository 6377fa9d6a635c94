#include "tests/integration/builder/oracle_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "tests/support/tree_compare.h"

namespace nydus::builder::testing {

namespace {

void check_sys(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

void write_file(const fs::path& p, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  check_sys(fd >= 0, "create " + p.string());
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    check_sys(n > 0, "write " + p.string());
    done += size_t(n);
  }
  ::close(fd);
  check_sys(::chmod(p.c_str(), mode) == 0, "chmod " + p.string());  // umask-proof
}

// Deterministic content: kind 0 random, 1 compressible text, 2 zeros.
std::string content(size_t size, uint64_t seed, int kind) {
  std::string out(size, '\0');
  if (kind == 0) {
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < size; i += 8) {
      uint64_t v = rng();
      std::memcpy(out.data() + i, &v, std::min<size_t>(8, size - i));
    }
  } else if (kind == 1) {
    std::string text;
    for (uint64_t i = 0; text.size() < size; ++i) text += "line " + std::to_string(i * seed) + " of some text\n";
    out = text.substr(0, size);
  }
  return out;
}

void set_xattr(const fs::path& p, const std::string& name, const std::string& value) {
  check_sys(::lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), 0) == 0, "setxattr " + name);
}

uint64_t path_hash(const std::string& s) { return std::hash<std::string>{}(s); }

// A valid POSIX ACL xattr value (version 2; user::rw- user:1000:r-- group::r-- mask::r-- other::r--).
std::string posix_acl() {
  struct __attribute__((packed)) Entry {
    uint16_t tag, perm;
    uint32_t id;
  };
  const Entry entries[] = {{0x01, 6, 0xFFFFFFFF}, {0x02, 4, 1000}, {0x04, 4, 0xFFFFFFFF},
                           {0x10, 4, 0xFFFFFFFF}, {0x20, 4, 0xFFFFFFFF}};
  uint32_t version = 2;
  std::string v(reinterpret_cast<const char*>(&version), 4);
  v.append(reinterpret_cast<const char*>(entries), sizeof(entries));
  return v;
}

}  // namespace

std::string nydus_image() { return std::string(NYDUS_BIN_DIR) + "/nydus-image"; }

int run(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::dup2(pipefd[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, size_t(n));
  ::close(pipefd[0]);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0) return -1;
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

ErofsMount::ErofsMount(const fs::path& source, const fs::path& target, const std::string& options)
    : target_(target) {
  ok_ = ::mount(source.c_str(), target.c_str(), "erofs", MS_RDONLY, options.empty() ? nullptr : options.c_str()) == 0;
  if (!ok_) error_ = std::strerror(errno);
}

ErofsMount::~ErofsMount() {
  if (ok_) ::umount2(target_.c_str(), MNT_DETACH);
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

void make_varied_tree(const fs::path& root) {
  fs::create_directories(root);
  write_file(root / "empty", "");
  write_file(root / "one", "x");

  fs::create_directories(root / "sizes");
  const size_t sizes[] = {4095, 4096, 4097, 65535, 65536, 65537, 1048575, 1048576, 1048577, 3 * 1048576 + 17};
  int kind = 0;
  for (size_t s : sizes) write_file(root / "sizes" / ("f" + std::to_string(s)), content(s, s, kind++ % 2));

  // 64 MiB in 1 MiB segments: random, text, zeros, and a repeat of segment 0 (dedup).
  std::string big;
  big.reserve(64u << 20);
  const std::string seg0 = content(1 << 20, 42, 0);
  for (int i = 0; i < 64; ++i) {
    switch (i % 4) {
      case 0: big += i == 0 ? seg0 : content(1 << 20, uint64_t(i), 0); break;
      case 1: big += content(1 << 20, uint64_t(i), 1); break;
      case 2: big += content(1 << 20, 0, 2); break;
      default: big += seg0; break;
    }
  }
  write_file(root / "big64m", big, 0640);

  {  // sparse: 20 MiB with two small extents
    fs::path p = root / "sparse";
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check_sys(fd >= 0 && ::ftruncate(fd, 20 << 20) == 0, "sparse");
    check_sys(::pwrite(fd, "middle", 6, (5 << 20) + 123) == 6, "pwrite");
    check_sys(::pwrite(fd, "end", 3, (20 << 20) - 3) == 3, "pwrite");
    ::close(fd);
  }

  fs::create_directories(root / "many");
  for (int i = 0; i < 10000; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "e%05d", i);
    write_file(root / "many" / name, i % 100 == 0 ? std::string(name) : std::string());
  }

  fs::create_directories(root / "names");
  write_file(root / "names" / std::string(255, 'L'), "long name");
  write_file(root / "names" / "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb8" "d" "\xc3\xa9-\xe5\x90\x8d\xe5\x89\x8d.txt", "unicode");
  write_file(root / "names" / "not-utf8-\xff\xfe", "raw bytes");
  write_file(root / "names" / "-dash", "dash");
  write_file(root / "names" / " space ", "space");
  write_file(root / "names" / ".hidden", "hidden");

  fs::create_directories(root / "links");
  check_sys(::symlink("../one", (root / "links" / "short").c_str()) == 0, "symlink");
  for (size_t len : {4031, 4032, 4033, 4095}) {
    std::string target;
    while (target.size() < len) target += "seg/";
    target.resize(len);
    check_sys(::symlink(target.c_str(), (root / "links" / ("len" + std::to_string(len))).c_str()) == 0, "symlink");
  }

  fs::create_directories(root / "hard");
  write_file(root / "hard" / "h1", content(100000, 9, 1));
  check_sys(::link((root / "hard" / "h1").c_str(), (root / "hard" / "h2").c_str()) == 0, "link");
  check_sys(::link((root / "hard" / "h1").c_str(), (root / "hard-other").c_str()) == 0, "link");

  fs::create_directories(root / "xattrs" / "dir");
  fs::path xf = root / "xattrs" / "file";
  write_file(xf, "with xattrs");
  set_xattr(xf, "user.foo", "bar");
  set_xattr(xf, "user.bin", std::string("\0\x01\xff\xfe", 4));
  set_xattr(xf, "user.empty", "");
  set_xattr(xf, "trusted.t", "trusted value");
  set_xattr(xf, "user.large", content(3000, 5, 1));
  fs::path many_x = root / "xattrs" / "many";
  write_file(many_x, "");
  for (int i = 0; i < 40; ++i) set_xattr(many_x, "user.attr" + std::to_string(i), std::to_string(i * i));
  set_xattr(root / "xattrs" / "dir", "user.dir", "d");
  set_xattr(root / "xattrs" / "dir", "trusted.overlay.opaque", "y");
  check_sys(::symlink("file", (root / "xattrs" / "link").c_str()) == 0, "symlink");
  set_xattr(root / "xattrs" / "link", "trusted.l", "on a symlink");
  fs::path acl = root / "xattrs" / "acl";
  write_file(acl, "acl");
  ::lsetxattr(acl.c_str(), "system.posix_acl_access", posix_acl().data(), posix_acl().size(), 0);  // best effort

  fs::create_directories(root / "special");
  check_sys(::mkfifo((root / "special" / "fifo").c_str(), 0640) == 0, "mkfifo");
  check_sys(::mknod((root / "special" / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0, "mknod");
  check_sys(::mknod((root / "special" / "blk").c_str(), S_IFBLK | 0660, makedev(7, 200)) == 0, "mknod");
  check_sys(::mknod((root / "special" / "bigdev").c_str(), S_IFCHR | 0600, makedev(259, 70000)) == 0, "mknod");
  check_sys(::mknod((root / "special" / "whiteout").c_str(), S_IFCHR, makedev(0, 0)) == 0, "mknod");
  {
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::string sp = (root / "special" / "sock").string();
    check_sys(sp.size() < sizeof(addr.sun_path), "socket path too long");
    std::strcpy(addr.sun_path, sp.c_str());
    check_sys(s >= 0 && ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind");
    ::close(s);
  }

  fs::path deep = root / "deep";
  for (int i = 0; i < 64; ++i) deep /= "d" + std::to_string(i);
  fs::create_directories(deep);
  write_file(deep / "leaf", "bottom");

  fs::create_directories(root / "ids" / "sub");
  write_file(root / "ids" / "big-ids", "ids");
  check_sys(::chown((root / "ids" / "big-ids").c_str(), 100000, 200000) == 0, "chown");
  check_sys(::chown((root / "ids" / "sub").c_str(), 65536, 4294967294u) == 0, "chown");
  check_sys(::symlink("big-ids", (root / "ids" / "link").c_str()) == 0, "symlink");
  check_sys(::lchown((root / "ids" / "link").c_str(), 70000, 70001) == 0, "lchown");

  fs::create_directories(root / "modes" / "sticky");
  write_file(root / "modes" / "setuid", "s", 04755);
  write_file(root / "modes" / "setgid", "g", 02711);
  write_file(root / "modes" / "none", "n", 0);
  check_sys(::chmod((root / "modes" / "sticky").c_str(), 01777) == 0, "chmod");
  check_sys(::chmod(root.c_str(), 0755) == 0, "chmod");

  // Nanosecond mtimes everywhere, children before parents so directory
  // times stick.
  std::vector<fs::path> all;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    all.push_back(it->path());
  std::sort(all.begin(), all.end(), [](const fs::path& a, const fs::path& b) { return a.string() > b.string(); });
  all.push_back(root);
  for (const auto& p : all) {
    uint64_t h = path_hash(p.lexically_relative(root).string());
    struct timespec ts[2] = {{0, UTIME_OMIT}, {time_t(1600000000 + h % 100000000), long(h % 1000000000)}};
    check_sys(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0, "utimensat " + p.string());
  }
}

std::vector<std::string> compare_trees(const fs::path& expected, const fs::path& actual, size_t limit) {
  nydus::testing::TreeCompareOptions options;
  options.limit = limit;
  return nydus::testing::diff_trees(expected, actual, options).diffs;
}

}  // namespace nydus::builder::testing
