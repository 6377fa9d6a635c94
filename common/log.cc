#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace nydus {

Result<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn" || name == "warning") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "off") return spdlog::level::off;
  return make_error(ErrorKind::kInvalidArgument,
                    "unknown log level '{}' (expected trace, debug, info, warn or error)", name);
}

Status init_logging(const std::string& name, spdlog::level::level_enum level,
                    const std::optional<std::string>& file) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (file) {
      logger = spdlog::basic_logger_mt(name, *file);
    } else {
      logger = spdlog::stderr_logger_mt(name);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return make_error(ErrorKind::kIo, "cannot open log file: {}", e.what());
  }
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n:%P] [%^%l%$] %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return ok_status();
}

}  // namespace nydus
