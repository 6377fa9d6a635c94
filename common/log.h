// Logging: spdlog with a level and an optional log file. Call init_logging()
// once in main(); everything else logs through spdlog's free functions
// (spdlog::info(...)), which use the default logger configured here.
#pragma once

#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "common/result.h"

namespace nydus {

// Parses "trace|debug|info|warn|error" (also "warning", "off").
Result<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Logs to stderr, or to `file` when given (the file is created or appended).
// `name` is the program name shown in each line.
Status init_logging(const std::string& name, spdlog::level::level_enum level,
                    const std::optional<std::string>& file = std::nullopt);

}  // namespace nydus
