// `cmake --install` of the real build tree into a DESTDIR: every binary, the
// default configs (parsed by the snapshotter's own loader and by nlohmann),
// the systemd unit with KillMode=process and the containerd snippet.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "snapshotter/config.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
namespace snap = nydus::snapshotter;

namespace {

std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `cmake --install` of this build tree with prefix /usr/local into
// `destdir`; returns the exit status, output in `log`.
int install_into(const fs::path& destdir, std::string& log) {
  std::string cmd = "DESTDIR='" + destdir.string() + "' '" NYDUS_CMAKE_COMMAND "' --install '" +
                    NYDUS_BUILD_DIR + "' --prefix /usr/local 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  log.clear();
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) log.append(buf.data(), n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("packaging install puts binaries and configs under DESTDIR", "[packaging]") {
  nydus::testing::TempDir dest{"nydus-install-test"};
  std::string log;
  REQUIRE(install_into(dest.path(), log) == 0);
  INFO(log);

  for (const char* bin : {"nydusd", "containerd-nydus-grpc", "nydus-image", "nydusctl"}) {
    fs::path p = dest / "usr/local/bin" / bin;
    INFO(p);
    REQUIRE(fs::is_regular_file(p));
    REQUIRE(::access(p.c_str(), X_OK) == 0);
  }

  // /etc/nydus is absolute (not /usr/local/etc) yet still under DESTDIR.
  fs::path etc = dest / "etc/nydus";
  REQUIRE(fs::is_regular_file(etc / "config.toml"));
  REQUIRE(fs::is_regular_file(etc / "nydusd-config.fusedev.json"));
  REQUIRE_FALSE(fs::exists(dest / "usr/local/etc"));

  // The snapshotter's own loader accepts the default config as installed.
  auto config = snap::parse_config_toml(read_all(etc / "config.toml"), "config.toml");
  REQUIRE(config.ok());
  CHECK(config->daemon.recover_policy == snap::RecoverPolicy::kFailover);
  CHECK(config->system.enable);
  CHECK(config->system.address == "/run/containerd-nydus/system.sock");
  CHECK(config->daemon.nydusd_path == "/usr/local/bin/nydusd");
  CHECK(config->daemon.nydusimage_path == "/usr/local/bin/nydus-image");
  CHECK(config->daemon.nydusd_config == "/etc/nydus/nydusd-config.fusedev.json");
  CHECK(config->notes.empty());  // no unknown keys
  auto valid = snap::validate_config(*config);
  INFO((valid.ok() ? std::string() : valid.error().message()));
  CHECK(valid.ok());

  auto nydusd_config = nlohmann::json::parse(read_all(etc / "nydusd-config.fusedev.json"));
  CHECK(nydusd_config["device"]["backend"]["type"] == "localfs");

  std::string unit = read_all(dest / "usr/local/lib/systemd/system/nydus-snapshotter.service");
  CHECK(has_line(unit, "KillMode=process"));
  CHECK(has_line(unit, "ExecStart=/usr/local/bin/containerd-nydus-grpc --config /etc/nydus/config.toml"));
  CHECK(has_line(unit, "Restart=always"));
  CHECK(has_line(unit, "Before=containerd.service"));

  auto snippet = toml::parse_file(
      (dest / "usr/local/share/doc/nydus/containerd-nydus-proxy-plugin.toml").string());
  CHECK(snippet["proxy_plugins"]["nydus"]["type"].value_or(std::string()) == "snapshot");
  CHECK(snippet["proxy_plugins"]["nydus"]["address"].value_or(std::string()) ==
        "/run/containerd-nydus/containerd-nydus-grpc.sock");
}

TEST_CASE("packaging install again keeps an edited config and adds the default as .new", "[packaging]") {
  nydus::testing::TempDir dest{"nydus-install-test"};
  std::string log;
  REQUIRE(install_into(dest.path(), log) == 0);
  fs::path config = dest / "etc/nydus/config.toml";
  std::string original = read_all(config);
  { std::ofstream(config, std::ios::app) << "# edited by the operator\n"; }

  REQUIRE(install_into(dest.path(), log) == 0);
  INFO(log);
  CHECK(read_all(config) == original + "# edited by the operator\n");
  REQUIRE(fs::is_regular_file(dest / "etc/nydus/config.toml.new"));
  CHECK(read_all(dest / "etc/nydus/config.toml.new") == original);
  // An unchanged config is simply reinstalled, without a .new.
  CHECK_FALSE(fs::exists(dest / "etc/nydus/nydusd-config.fusedev.json.new"));
}
