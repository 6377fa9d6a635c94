#include "nydusd/daemon/cli.h"

#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "nydusd/daemon/version.h"

namespace nydus::daemon {

namespace {

constexpr uint64_t kFileMaxReserve = 16384;
constexpr uint64_t kMaxNofile = 1000000;

Result<std::string> read_text_file(const std::string& path) {
  NYDUS_TRY(load_fs_config_file(path));  // size cap, JSON, schema
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The reference's --localfs-dir: one directory holds the blobs and the cache.
std::string localfs_dir_config(const std::string& dir) {
  nlohmann::json config = {
      {"device",
       {{"backend", {{"type", "localfs"}, {"config", {{"dir", dir}, {"readahead", true}}}}},
        {"cache", {{"type", "blobcache"}, {"compressed", false}, {"config", {{"work_dir", dir}}}}}}},
      {"mode", "direct"}};
  return config.dump();
}

// The flags both modes take, and what they become in CliOptions.
struct CommonFlags {
  std::string log_level = "info";
  std::optional<std::string> apisock, id, supervisor, log_file;
  bool upgrade = false;
  bool version = false;
  uint64_t rlimit = kMaxNofile;
};

void add_common_flags(CLI::App& app, CommonFlags& f, const char* upgrade_help) {
  app.add_flag("-V,--version", f.version, "Print version information and exit");
  app.add_option("-A,--apisock", f.apisock, "Unix socket of the HTTP control API (mode 0600)");
  auto* id_opt = app.add_option("--id", f.id, "Daemon id (reported by the API; needs --supervisor)");
  auto* sup_opt = app.add_option("--supervisor", f.supervisor,
                                 "Supervisor socket for saving and restoring state (needs --id)");
  id_opt->needs(sup_opt);
  sup_opt->needs(id_opt);
  app.add_flag("--upgrade", f.upgrade, upgrade_help);
  app.add_option("-l,--log-level", f.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error"}))
      ->capture_default_str();
  app.add_option("-L,--log-file", f.log_file,
                 "Log to this file instead of stderr (\".log\" is appended without an extension)");
  app.add_option("--rlimit-nofile", f.rlimit, "Open file limit to set (0 leaves it unchanged)")
      ->capture_default_str();
}

// Parses; an outcome means "stop here" (help, version or a usage error).
std::optional<CliOutcome> parse_app(CLI::App& app, std::vector<std::string>& args, const CommonFlags& f,
                                    std::ostream& out, std::ostream& err) {
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return CliOutcome{std::nullopt, 0};
  } catch (const CLI::ParseError& e) {
    err << "nydusd: " << e.what() << "\n";
    return CliOutcome{std::nullopt, 2};
  }
  if (f.version) {
    out << version_text();
    return CliOutcome{std::nullopt, 0};
  }
  return std::nullopt;
}

CliOutcome usage_failure(std::ostream& err, const std::string& message) {
  err << "nydusd: " << message << "\n";
  return CliOutcome{std::nullopt, 1};
}

// The common flags' part of the options; --upgrade needs the API socket.
Result<CliOptions> common_options(const CommonFlags& f) {
  if (f.upgrade && !f.apisock) {
    return make_error(ErrorKind::kInvalidArgument, "--upgrade needs --apisock to receive the takeover");
  }
  CliOptions options;
  options.apisock = f.apisock;
  options.log_level = f.log_level;
  options.rlimit_nofile = f.rlimit;
  if (f.log_file) {
    options.log_file = std::filesystem::path(*f.log_file).has_extension() ? *f.log_file : *f.log_file + ".log";
  }
  options.daemon.id = f.id;
  options.daemon.supervisor = f.supervisor;
  options.daemon.upgrade = f.upgrade;
  return options;
}

// `nydusd singleton --fscache DIR ...` (the word already dropped; args reversed).
CliOutcome parse_singleton_cli(std::vector<std::string> args, std::ostream& out, std::ostream& err) {
  CLI::App app("nydusd singleton: serves RAFS v6 images to the kernel's EROFS over fscache "
               "(/dev/cachefiles on-demand mode); images are bound with PUT /api/v2/blobs.",
               "nydusd singleton");
  app.footer("Usage: nydusd singleton --fscache DIR --apisock SOCK [OPTIONS]");
  std::string fscache_dir;
  std::optional<std::string> config, tag;
  unsigned threads = fscache::kDefaultThreads;
  CommonFlags common;
  add_common_flags(app, common, "Start in upgrade mode: bind nothing and wait in INIT for a takeover");
  auto* dir_opt = app.add_option("-F,--fscache", fscache_dir,
                                 "cachefiles working directory (on a disk filesystem such as ext4)");
  app.add_option("--fscache-tag", tag, "cachefiles tag of the cache")->needs(dir_opt);
  app.add_option("--fscache-threads", threads, "Number of fscache worker threads")
      ->check(CLI::Range(1u, fscache::kMaxThreads))
      ->capture_default_str();
  app.add_option("-C,--config", config, "JSON file {\"blobs\":[BlobCacheEntry...]} bound at startup");
  if (auto stop = parse_app(app, args, common, out, err)) return *stop;
  auto fail = [&](const std::string& message) { return usage_failure(err, message); };
  // A successor (--upgrade) adopts the session its predecessor bound; the
  // dir then comes from the saved state.
  if (fscache_dir.empty() && !common.upgrade) {
    return fail("singleton mode needs --fscache DIR (a blob-cache-only singleton is not supported)");
  }
  auto common_result = common_options(common);
  if (!common_result.ok()) return fail(common_result.error().message());
  CliOptions options = std::move(*common_result);
  DaemonOptions& d = options.daemon;
  d.mode = DaemonMode::kSingleton;
  d.fscache.dir = fscache_dir;
  d.fscache.tag = tag.value_or("");
  d.fscache.threads = threads;
  if (config) {
    std::ifstream in(*config, std::ios::binary);
    if (!in) return fail(fmt::format("cannot read --config {}", *config));
    std::string text(kMaxConfigFileSize + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigFileSize) {
      return fail(fmt::format("--config {} is larger than {} bytes", *config, kMaxConfigFileSize));
    }
    auto entries = fscache::parse_blob_entry_list(text);
    if (!entries.ok()) return fail(fmt::format("--config {}: {}", *config, entries.error().message()));
    for (const auto& e : *entries) {
      if (auto st = fscache::check_blob_entry_paths(e); !st.ok()) {
        return fail(fmt::format("--config {}: blob {}: {}", *config, e.id, st.error().message()));
      }
    }
    d.fscache.preload = std::move(*entries);
  }
  return {std::move(options), 0};
}

}  // namespace

CliOutcome parse_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  // `nydusd fuse ...` is the default mode spelled out: drop the word.
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  if (!args.empty() && args.front() == "fuse") args.erase(args.begin());
  if (!args.empty() && args.front() == "singleton") {
    args.erase(args.begin());
    std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
    return parse_singleton_cli(std::move(args), out, err);
  }
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector

  CLI::App app("nydusd: serves RAFS v6 container images through FUSE, with takeover of the "
               "FUSE connection for crash failover and hot upgrade.",
               "nydusd");
  app.footer("Usage: nydusd [fuse] --mountpoint DIR [OPTIONS]\n"
             "       nydusd singleton --fscache DIR --apisock SOCK [OPTIONS]  (see nydusd singleton --help)\n"
             "Backends: localfs.");

  std::string mountpoint, failover = "resend";
  std::optional<std::string> config, localfs_dir, bootstrap, prefetch_list;
  std::string virtual_mountpoint = "/";
  unsigned threads = fuse::kDefaultThreads;
  bool writable = false;
  CommonFlags common;
  add_common_flags(app, common, "Start in upgrade mode: mount nothing and wait in INIT for a takeover");
  app.add_option("-M,--mountpoint", mountpoint, "Host directory where the FUSE filesystem is mounted");
  auto* config_opt = app.add_option("-C,--config", config, "Filesystem config file (JSON, v1 or v2)");
  app.add_option("-D,--localfs-dir", localfs_dir,
                 "Directory with the blobs, also used as cache work_dir (instead of --config)")
      ->excludes(config_opt);
  auto* bootstrap_opt =
      app.add_option("-B,--bootstrap", bootstrap, "RAFS v6 bootstrap (metadata) file to mount");
  app.add_option("--prefetch-files", prefetch_list,
                 "File listing absolute paths (one per line) to prefetch from the image")
      ->needs(bootstrap_opt);
  app.add_option("-m,--virtual-mountpoint", virtual_mountpoint,
                 "Path inside the FUSE filesystem where --bootstrap is mounted")
      ->capture_default_str();
  app.add_option("--thread-num,--fuse-threads", threads, "Number of FUSE worker threads")
      ->check(CLI::Range(1u, fuse::kMaxThreads))
      ->capture_default_str();
  app.add_option("--failover-policy", failover,
                 "What a takeover does with requests the predecessor read: none or resend")
      ->check(CLI::IsMember({"none", "resend"}))
      ->capture_default_str();
  app.add_flag("--writable", writable, "Not supported: images are always mounted read-only");
  if (auto stop = parse_app(app, args, common, out, err)) return *stop;
  auto fail = [&](const std::string& message) { return usage_failure(err, message); };
  if (mountpoint.empty()) return fail("--mountpoint is required");
  if (writable) return fail("--writable is not supported: RAFS images are read-only");
  if (bootstrap && !config && !localfs_dir) {
    return fail("--bootstrap needs --config or --localfs-dir");
  }
  auto common_result = common_options(common);
  if (!common_result.ok()) return fail(common_result.error().message());
  CliOptions options = std::move(*common_result);
  DaemonOptions& d = options.daemon;
  d.mountpoint = mountpoint;
  d.threads = threads;
  d.failover_policy = parse_failover_policy(failover).value();

  std::string config_text;
  if (config) {
    auto text = read_text_file(*config);
    if (!text.ok()) return fail(text.error().message());
    config_text = std::move(*text);
  } else if (localfs_dir) {
    config_text = localfs_dir_config(*localfs_dir);
  }
  if (!config_text.empty()) {
    auto parsed = parse_fs_config(config_text);
    if (!parsed.ok()) return fail(parsed.error().message());
    if (auto paths = check_fs_config_paths(*parsed); !paths.ok()) return fail(paths.error().message());
  }
  if (bootstrap) {
    MountRequest request;
    auto vpath = fuse::normalize_vfs_path(virtual_mountpoint);
    if (!vpath.ok()) return fail(vpath.error().message());
    request.mountpoint = *vpath;
    request.source = *bootstrap;
    request.config_text = config_text;
    if (prefetch_list) {
      auto files = load_prefetch_list(*prefetch_list);
      if (!files.ok()) return fail(files.error().message());
      request.prefetch_files = std::move(*files);
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(*bootstrap, ec)) {
      return fail(fmt::format("bootstrap {} does not exist or is not a file", *bootstrap));
    }
    d.initial_mount = std::move(request);
  }
  return {std::move(options), 0};
}

Status apply_rlimit_nofile(uint64_t limit) {
  if (limit == 0) return ok_status();
  uint64_t file_max = kMaxNofile + kFileMaxReserve;
  if (std::ifstream in("/proc/sys/fs/file-max"); in) in >> file_max;
  if (file_max < 2 * kFileMaxReserve) {
    return make_error(ErrorKind::kFailedPrecondition, "fs.file-max {} is below {}", file_max,
                      2 * kFileMaxReserve);
  }
  uint64_t target = std::min({limit, file_max - kFileMaxReserve, kMaxNofile});
  struct rlimit current {};
  if (::getrlimit(RLIMIT_NOFILE, &current) != 0) return Error::from_errno(errno, "getrlimit");
  if (current.rlim_cur >= target) return ok_status();
  struct rlimit wanted {target, std::max<rlim_t>(target, current.rlim_max)};
  if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
    // Not privileged to raise the hard limit: go as far as it allows.
    wanted = {std::min<rlim_t>(target, current.rlim_max), current.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) return Error::from_errno(errno, "setrlimit");
  }
  return ok_status();
}

}  // namespace nydus::daemon
