#include "snapshotter/filters.h"

#include <cctype>

namespace nydus::snapshotter {

namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<std::vector<Filter::Selector>> parse() {
    std::vector<Filter::Selector> selectors;
    skip_space();
    if (at_end()) return fail("a filter must contain at least one selector");
    while (true) {
      NYDUS_ASSIGN_OR_RETURN(Filter::Selector s, selector());
      selectors.push_back(std::move(s));
      skip_space();
      if (at_end()) return selectors;
      if (peek() != ',') return fail("expected ',' or the end of the filter");
      ++pos_;
      skip_space();
    }
  }

 private:
  Result<Filter::Selector> selector() {
    Filter::Selector s;
    while (true) {
      NYDUS_ASSIGN_OR_RETURN(std::string f, field());
      s.fieldpath.push_back(std::move(f));
      if (!at_end() && peek() == '.') {
        ++pos_;
        continue;
      }
      break;
    }
    skip_space();
    if (at_end() || peek() == ',') return s;
    if (text_.compare(pos_, 2, "==") == 0) {
      s.op = Filter::Op::kEqual;
    } else if (text_.compare(pos_, 2, "!=") == 0) {
      s.op = Filter::Op::kNotEqual;
    } else if (text_.compare(pos_, 2, "~=") == 0) {
      s.op = Filter::Op::kMatches;
    } else {
      return fail("expected an operator (==, != or ~=), ',' or the end of the filter");
    }
    pos_ += 2;
    skip_space();
    NYDUS_ASSIGN_OR_RETURN(s.value, value());
    if (s.op == Filter::Op::kMatches) {
      try {
        s.regex.emplace(s.value, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return fail(fmt::format("invalid regular expression \"{}\": {}", s.value, e.what()));
      }
    }
    return s;
  }

  Result<std::string> field() {
    if (at_end()) return fail("expected a field name");
    if (peek() == '"') return quoted('"');
    size_t start = pos_;
    if (!(std::isalpha(static_cast<unsigned char>(peek())) || peek() == '_')) {
      return fail("expected a field name (letters, digits, '_') or a quoted string");
    }
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_')) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  Result<std::string> value() {
    if (at_end()) return fail("expected a value");
    if (peek() == '"' || peek() == '/') return quoted(peek());
    size_t start = pos_;
    while (!at_end() && peek() != ',' && !std::isspace(static_cast<unsigned char>(peek()))) ++pos_;
    if (pos_ == start) return fail("expected a value");
    return std::string(text_.substr(start, pos_ - start));
  }

  // A string between two `delim`s with backslash escapes. For the regex
  // delimiter '/', only "\/" is unescaped: the rest belongs to the regex.
  Result<std::string> quoted(char delim) {
    size_t start = pos_;
    ++pos_;
    std::string out;
    while (!at_end() && peek() != delim) {
      char c = text_[pos_++];
      if (c == '\\' && !at_end()) {
        char e = text_[pos_++];
        if (delim == '/') {
          if (e != '/') out.push_back('\\');
          out.push_back(e);
          continue;
        }
        switch (e) {
          case 'n': out.push_back('\n'); break;
          case 't': out.push_back('\t'); break;
          case 'r': out.push_back('\r'); break;
          default: out.push_back(e); break;  // \" \\ and anything else literally
        }
        continue;
      }
      out.push_back(c);
    }
    if (at_end()) {
      pos_ = start;
      return fail(fmt::format("unterminated quoted string (missing closing {})", delim));
    }
    ++pos_;
    return out;
  }

  Error fail(std::string_view what) const {
    return make_error(ErrorKind::kInvalidArgument, "invalid filter \"{}\" at offset {}: {}", text_, pos_, what);
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(peek()))) ++pos_;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

bool match_selector(const Filter::Selector& s, const FieldAdaptor& adaptor) {
  std::optional<std::string> value = adaptor(s.fieldpath);
  switch (s.op) {
    case Filter::Op::kPresent: return value.has_value();
    case Filter::Op::kEqual: return value && *value == s.value;
    case Filter::Op::kNotEqual: return value.value_or("") != s.value;
    case Filter::Op::kMatches: return s.regex && std::regex_search(value.value_or(""), *s.regex);
  }
  return false;
}

}  // namespace

Result<Filter> Filter::parse(const std::vector<std::string>& expressions) {
  Filter filter;
  for (const auto& e : expressions) {
    NYDUS_ASSIGN_OR_RETURN(auto selectors, Parser(e).parse());
    filter.any_of_.push_back(std::move(selectors));
  }
  return filter;
}

bool Filter::match(const FieldAdaptor& adaptor) const {
  if (any_of_.empty()) return true;
  for (const auto& conjunction : any_of_) {
    bool all = true;
    for (const auto& s : conjunction) {
      if (!match_selector(s, adaptor)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

bool Filter::match(const Info& info) const {
  return match([&](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path.empty()) return std::nullopt;
    const std::string& head = path[0];
    if (head == "kind") {
      if (info.kind == Kind::kUnknown) return std::nullopt;
      return std::string(to_string(info.kind));
    }
    if (head == "name") return info.name;
    if (head == "parent") return info.parent;
    if (head == "labels") {
      if (path.size() < 2) return std::nullopt;
      std::string key = path[1];
      for (size_t i = 2; i < path.size(); ++i) key += "." + path[i];
      auto it = info.labels.find(key);
      if (it == info.labels.end()) return std::nullopt;
      return it->second;
    }
    return std::nullopt;
  });
}

}  // namespace nydus::snapshotter
