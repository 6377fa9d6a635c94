// containerd's filter language (github.com/containerd/containerd/filters),
// as used by ListSnapshotsRequest.filters:
//
//   filters   := filter (OR over the repeated field)
//   filter    := selector ("," selector)*          (AND)
//   selector  := fieldpath [op value]               (no op: the field is present)
//   fieldpath := field ("." field)*
//   field     := [A-Za-z_][A-Za-z0-9_]* | quoted
//   op        := "==" | "!=" | "~="                  (~= is an unanchored regex search)
//   value     := quoted | run of characters other than ',' and white space
//   quoted    := "..." with backslash escapes, or /.../ for values
//
// Examples: `name==foo`, `kind==committed,parent==base`,
// `labels."containerd.io/gc.root"`, `labels.app~=^web`.
// As in containerd, `!=` also matches an absent field, and `~=` matches an
// absent field against "". The regex dialect is ECMAScript, close to Go's
// RE2 for the expressions filters use.
#pragma once

#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/result.h"
#include "snapshotter/snapshot_types.h"

namespace nydus::snapshotter {

// Looks a field path up in an object: nullopt when the field is absent.
using FieldAdaptor = std::function<std::optional<std::string>(const std::vector<std::string>& fieldpath)>;

class Filter {
 public:
  enum class Op { kPresent, kEqual, kNotEqual, kMatches };
  struct Selector {
    std::vector<std::string> fieldpath;
    Op op = Op::kPresent;
    std::string value;
    std::optional<std::regex> regex;
  };

  // No expressions: matches everything.
  Filter() = default;
  // Parses every expression; InvalidArgument with the position of the first
  // syntax error.
  static Result<Filter> parse(const std::vector<std::string>& expressions);

  bool match(const FieldAdaptor& adaptor) const;
  // The adaptor of containerd's snapshots service: kind, name, parent,
  // labels.<key>.
  bool match(const Info& info) const;

 private:
  std::vector<std::vector<Selector>> any_of_;  // OR of ANDs
};

}  // namespace nydus::snapshotter
