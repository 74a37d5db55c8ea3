#include "serve/jinja.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <memory>
#include <vector>

#include "core/error.h"

namespace condense::jinja {
namespace {

// Insertion-ordered, as Python's dicts (tojson output follows it).
using jv = nlohmann::ordered_json;

struct Ctx {
  std::string where;
  [[noreturn]] void error(int line, const std::string& what) const { fail(where + ", line " + std::to_string(line), what); }
};

// Templates come inside model files from strangers: the interpreter bounds what
// one can ask for (nesting that would exhaust the stack, loops and strings
// that would run for hours or fill memory) and says which limit was hit.
constexpr int kMaxNesting = 64;                    // parentheses, operators, blocks inside one another
constexpr int64_t kMaxSteps = 200'000;             // nodes run and expressions evaluated per render
constexpr size_t kMaxText = size_t(8) << 20;       // bytes of output, and of any one string or list
constexpr int64_t kMaxRange = 1'000'000;           // elements of one range()

// Counts entries into a recursive rule; refuses nesting beyond kMaxNesting.
struct Nesting {
  int& depth;
  Nesting(int& d, const Ctx& cx, int line) : depth(d) {
    if (++depth > kMaxNesting) cx.error(line, "nests deeper than " + std::to_string(kMaxNesting) + " levels");
  }
  ~Nesting() { --depth; }
};

// ---------------------------------------------------------------- values

struct Value {
  jv v;                       // null is Python's None
  bool undefined = false;
  std::shared_ptr<jv> ns;     // namespace(): attributes {% set ns.x = ... %} may change
  Value() = default;
  Value(jv j) : v(std::move(j)) {}
  static Value undef() {
    Value x;
    x.undefined = true;
    return x;
  }
  const jv& data() const { return ns ? *ns : v; }
};

bool truthy(const Value& x) {
  if (x.undefined) return false;
  if (x.ns) return true;
  const jv& v = x.v;
  switch (v.type()) {
    case jv::value_t::null: return false;
    case jv::value_t::boolean: return v.get<bool>();
    case jv::value_t::number_integer:
    case jv::value_t::number_unsigned: return v.get<int64_t>() != 0;
    case jv::value_t::number_float: return v.get<double>() != 0;
    case jv::value_t::string: return !v.get_ref<const std::string&>().empty();
    case jv::value_t::array:
    case jv::value_t::object: return !v.empty();
    default: return false;
  }
}

std::string py_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char b[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(b, sizeof b, "%.*g", p, d);
    if (std::strtod(b, nullptr) == d) break;
  }
  std::string s = b;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string py_repr(const jv& v);

std::string py_str(const jv& v) {
  switch (v.type()) {
    case jv::value_t::null: return "None";
    case jv::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case jv::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case jv::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case jv::value_t::number_float: return py_float(v.get<double>());
    case jv::value_t::string: return v.get<std::string>();
    default: return py_repr(v);
  }
}

std::string py_repr(const jv& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
    std::string o(1, q);
    for (char c : s) {
      if (c == '\\') o += "\\\\";
      else if (c == q) o += std::string("\\") + q;
      else if (c == '\n') o += "\\n";
      else if (c == '\t') o += "\\t";
      else o += c;
    }
    return o + q;
  }
  if (v.is_array()) {
    std::string o = "[";
    for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + py_repr(v[i]);
    return o + "]";
  }
  if (v.is_object()) {
    std::string o = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it, first = false) o += (first ? "" : ", ") + py_repr(jv(it.key())) + ": " + py_repr(it.value());
    return o + "}";
  }
  return py_str(v);
}

std::string to_text(const Value& x) { return x.undefined ? std::string() : py_str(x.data()); }

// Python's json.dumps(x, ensure_ascii=False, indent=indent) (transformers' tojson).
void py_json(const jv& v, int indent, int depth, std::string& o) {
  auto nl = [&](int d) {
    if (indent >= 0) o += "\n" + std::string(size_t(indent * d), ' ');
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  if (v.is_array()) {
    if (v.empty()) {
      o += "[]";
      return;
    }
    o += "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) o += item_sep;
      nl(depth + 1);
      py_json(v[i], indent, depth + 1, o);
    }
    nl(depth);
    o += "]";
  } else if (v.is_object()) {
    if (v.empty()) {
      o += "{}";
      return;
    }
    o += "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it, first = false) {
      if (!first) o += item_sep;
      nl(depth + 1);
      o += jv(it.key()).dump(-1, ' ', false, jv::error_handler_t::replace) + ": ";
      py_json(it.value(), indent, depth + 1, o);
    }
    nl(depth);
    o += "}";
  } else if (v.is_number_float()) {
    o += py_float(v.get<double>());
  } else {
    o += v.dump(-1, ' ', false, jv::error_handler_t::replace);
  }
}

// ---------------------------------------------------------------- template segments

struct Segment {
  enum Kind { Text, Expr, Stmt } kind;
  std::string body;
  int line;
};

std::vector<Segment> segments(const std::string& s, const Ctx& cx) {
  std::vector<Segment> out;
  std::string text;
  int line = 1, text_line = 1;
  size_t i = 0;
  bool text_at_bol = true;  // the pending text starts a source line (lstrip_blocks looks back to there)
  auto count_lines = [&](size_t a, size_t b) {
    for (size_t k = a; k < b; ++k) line += s[k] == '\n';
  };
  while (i < s.size()) {
    const size_t open = s.find('{', i);
    if (open == std::string::npos || open + 1 >= s.size()) {
      text += s.substr(i);
      count_lines(i, s.size());
      break;
    }
    const char t = s[open + 1];
    if (t != '{' && t != '%' && t != '#') {
      text += s.substr(i, open + 1 - i);
      count_lines(i, open + 1);
      i = open + 1;
      continue;
    }
    text += s.substr(i, open - i);
    count_lines(i, open);
    const int tag_line = line;
    size_t p = open + 2;
    const bool block = t == '%' || t == '#';
    if (p < s.size() && s[p] == '-') {
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      ++p;
    } else if (p < s.size() && s[p] == '+') {
      ++p;  // lstrip_blocks disabled for this tag
    } else if (block) {
      // lstrip_blocks: spaces and tabs from the start of the line to the tag go.
      size_t k = text.size();
      while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
      if (k > 0 ? text[k - 1] == '\n' : text_at_bol) text.resize(k);
    }
    const std::string close = t == '{' ? "}}" : t == '%' ? "%}" : "#}";
    size_t e = p;
    if (t == '#') {
      e = s.find(close, p);
    } else {
      char quote = 0;
      for (; e + 1 < s.size(); ++e) {
        if (quote) {
          if (s[e] == '\\') ++e;
          else if (s[e] == quote) quote = 0;
        } else if (s[e] == '\'' || s[e] == '"') {
          quote = s[e];
        } else if (s.compare(e, 2, close) == 0) {
          break;
        }
      }
      if (e + 1 >= s.size()) e = std::string::npos;
    }
    if (e == std::string::npos) cx.error(tag_line, "'" + s.substr(open, 2) + "' is never closed with '" + close + "'");
    size_t body_end = e;
    bool strip_after = false;
    if (body_end > p && s[body_end - 1] == '-') {
      strip_after = true;
      --body_end;
    }
    if (!text.empty()) out.push_back({Segment::Text, text, text_line});
    text.clear();
    if (t != '#') out.push_back({t == '{' ? Segment::Expr : Segment::Stmt, s.substr(p, body_end - p), tag_line});
    count_lines(open, e + 2);
    i = e + 2;
    if (strip_after) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) line += s[i++] == '\n';
    } else if (block && i < s.size() && s[i] == '\n') {
      ++line;
      ++i;  // trim_blocks
    } else if (block && i + 1 < s.size() && s[i] == '\r' && s[i + 1] == '\n') {
      ++line;
      i += 2;
    }
    text_line = line;
    text_at_bol = i > 0 && s[i - 1] == '\n';
  }
  if (!text.empty()) out.push_back({Segment::Text, text, text_line});
  return out;
}

// ---------------------------------------------------------------- expression tokens

struct Tok {
  enum Kind { Name, Str, Int, Float, Op, End } kind;
  std::string s;
  int64_t i = 0;
  double f = 0;
};

std::vector<Tok> lex(const std::string& s, int line, const Ctx& cx) {
  std::vector<Tok> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::Name, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        Tok t{Tok::Float, s.substr(i, j - i)};
        t.f = std::strtod(t.s.c_str(), nullptr);  // 1e999-sized literals become inf, as in Python
        out.push_back(t);
      } else {
        Tok t{Tok::Int, s.substr(i, j - i)};
        try {
          t.i = std::stoll(t.s);
        } catch (const std::exception&) {
          cx.error(line, "integer " + t.s + " is out of range");
        }
        out.push_back(t);
      }
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[++j];
          v += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          v += s[j];
        }
      }
      if (j >= s.size()) cx.error(line, "an unterminated string");
      out.push_back({Tok::Str, v});
      i = j + 1;
    } else {
      static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char* t : two) {
        if (s.compare(i, 2, t) == 0) op = t;
      }
      if (op.size() == 1 && std::string("()[]{}.,:|~+-*/%<>=").find(c) == std::string::npos) cx.error(line, std::string("unexpected character '") + c + "'");
      out.push_back({Tok::Op, op});
      i += op.size();
    }
  }
  out.push_back({Tok::End, ""});
  return out;
}

// ---------------------------------------------------------------- expressions

struct Expr;
using ExprP = std::shared_ptr<Expr>;
struct Expr {
  enum Kind { Lit, Name, Attr, Index, Slice, Call, Filter, Test, Neg, Not, Bin, And, Or, Cond, List, Dict } kind;
  jv lit;
  std::string name;  // Name / Attr / Filter / Test / Bin operator
  std::vector<ExprP> args;   // operands; Call/Filter/Test: [callee or subject, positional...]
  std::vector<std::pair<std::string, ExprP>> kwargs;
  bool negate = false;       // "is not", "not in"
  int line = 0;
};

class Parser {
 public:
  Parser(std::vector<Tok> t, int line, const Ctx& cx) : t_(std::move(t)), line_(line), cx_(cx) {}
  int depth_ = 0;
  ExprP expr() { return cond(); }
  bool at_end() const { return t_[p_].kind == Tok::End; }
  bool peek_name(const char* n) const { return t_[p_].kind == Tok::Name && t_[p_].s == n; }
  bool peek_op(const char* o) const { return t_[p_].kind == Tok::Op && t_[p_].s == o; }
  std::string name() {
    if (t_[p_].kind != Tok::Name) cx_.error(line_, "expected a name, found '" + t_[p_].s + "'");
    return t_[p_++].s;
  }
  void expect_op(const char* o) {
    if (!peek_op(o)) cx_.error(line_, std::string("expected '") + o + "', found '" + t_[p_].s + "'");
    ++p_;
  }
  void expect_name(const char* n) {
    if (!peek_name(n)) cx_.error(line_, std::string("expected '") + n + "', found '" + t_[p_].s + "'");
    ++p_;
  }
  void end() {
    if (!at_end()) cx_.error(line_, "unexpected '" + t_[p_].s + "'");
  }

 private:
  ExprP make(Expr::Kind k) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->line = line_;
    return e;
  }
  ExprP cond() {
    Nesting guard(depth_, cx_, line_);
    ExprP a = or_();
    if (peek_name("if")) {
      ++p_;
      ExprP c = or_();
      ExprP b;
      if (peek_name("else")) {
        ++p_;
        b = cond();
      }
      auto e = make(Expr::Cond);
      e->args = {c, a, b};
      return e;
    }
    return a;
  }
  // `next (keyword next)*`, left-associative.
  ExprP chain(ExprP (Parser::*next)(), const char* keyword, Expr::Kind kind) {
    ExprP a = (this->*next)();
    while (peek_name(keyword)) {
      ++p_;
      auto e = make(kind);
      e->args = {a, (this->*next)()};
      a = e;
    }
    return a;
  }
  ExprP or_() { return chain(&Parser::and_, "or", Expr::Or); }
  ExprP and_() { return chain(&Parser::not_, "and", Expr::And); }
  ExprP not_() {
    Nesting guard(depth_, cx_, line_);
    if (peek_name("not")) {
      ++p_;
      auto e = make(Expr::Not);
      e->args = {not_()};
      return e;
    }
    return compare();
  }
  ExprP compare() {
    ExprP a = math1();
    for (;;) {
      std::string op;
      bool neg = false;
      if (t_[p_].kind == Tok::Op && (t_[p_].s == "==" || t_[p_].s == "!=" || t_[p_].s == "<" || t_[p_].s == ">" || t_[p_].s == "<=" || t_[p_].s == ">=")) {
        op = t_[p_++].s;
      } else if (peek_name("in")) {
        ++p_;
        op = "in";
      } else if (peek_name("not") && t_[p_ + 1].kind == Tok::Name && t_[p_ + 1].s == "in") {
        p_ += 2;
        op = "in";
        neg = true;
      } else {
        return a;
      }
      auto e = make(Expr::Bin);
      e->name = op;
      e->negate = neg;
      e->args = {a, math1()};
      a = e;
    }
  }
  ExprP binary(ExprP (Parser::*next)(), std::initializer_list<const char*> ops) {
    ExprP a = (this->*next)();
    for (;;) {
      const char* hit = nullptr;
      for (const char* o : ops) {
        if (peek_op(o)) hit = o;
      }
      if (!hit) return a;
      ++p_;
      auto e = make(Expr::Bin);
      e->name = hit;
      e->args = {a, (this->*next)()};
      a = e;
    }
  }
  ExprP math1() { return binary(&Parser::concat, {"+", "-"}); }
  ExprP concat() { return binary(&Parser::math2, {"~"}); }
  ExprP math2() { return binary(&Parser::pow_, {"*", "/", "//", "%"}); }
  ExprP pow_() { return binary(&Parser::unary, {"**"}); }
  ExprP unary() {
    Nesting guard(depth_, cx_, line_);
    if (peek_op("-")) {
      ++p_;
      auto e = make(Expr::Neg);
      e->args = {unary()};
      return e;
    }
    if (peek_op("+")) {
      ++p_;
      return unary();
    }
    return filters(postfix(primary()));
  }
  void call_args(ExprP e) {
    expect_op("(");
    while (!peek_op(")")) {
      if (t_[p_].kind == Tok::Name && t_[p_ + 1].kind == Tok::Op && t_[p_ + 1].s == "=") {
        const std::string k = t_[p_].s;
        p_ += 2;
        e->kwargs.push_back({k, expr()});
      } else {
        e->args.push_back(expr());
      }
      if (!peek_op(",")) break;
      ++p_;
    }
    expect_op(")");
  }
  ExprP postfix(ExprP a) {
    for (;;) {
      if (peek_op(".")) {
        ++p_;
        auto e = make(Expr::Attr);
        e->name = name();
        e->args = {a};
        a = e;
      } else if (peek_op("[")) {
        ++p_;
        ExprP lo, hi, step;
        bool slice = false;
        if (!peek_op(":")) lo = expr();
        if (peek_op(":")) {
          slice = true;
          ++p_;
          if (!peek_op("]") && !peek_op(":")) hi = expr();
          if (peek_op(":")) {
            ++p_;
            if (!peek_op("]")) step = expr();
          }
        }
        expect_op("]");
        auto e = make(slice ? Expr::Slice : Expr::Index);
        e->args = {a, lo, hi, step};
        a = e;
      } else if (peek_op("(")) {
        auto e = make(Expr::Call);
        e->args = {a};
        call_args(e);
        a = e;
      } else {
        return a;
      }
    }
  }
  ExprP filters(ExprP a) {
    for (;;) {
      if (peek_op("|")) {
        ++p_;
        auto e = make(Expr::Filter);
        e->name = name();
        e->args = {a};
        if (peek_op("(")) call_args(e);
        a = e;
      } else if (peek_name("is")) {
        ++p_;
        auto e = make(Expr::Test);
        if (peek_name("not")) {
          ++p_;
          e->negate = true;
        }
        e->name = name();
        e->args = {a};
        if (peek_op("(")) {
          call_args(e);
        } else if (!at_end() && (t_[p_].kind == Tok::Str || t_[p_].kind == Tok::Int || t_[p_].kind == Tok::Float)) {
          e->args.push_back(primary());  // "is divisibleby 3", "is equalto 'x'"
        }
        a = e;
      } else {
        return a;
      }
    }
  }
  ExprP primary() {
    const Tok& t = t_[p_];
    auto lit = [&](jv v) {
      ++p_;
      auto e = make(Expr::Lit);
      e->lit = std::move(v);
      return e;
    };
    switch (t.kind) {
      case Tok::Str: {
        // Adjacent strings join, as in Python.
        std::string s;
        while (t_[p_].kind == Tok::Str) s += t_[p_++].s;
        auto e = make(Expr::Lit);
        e->lit = s;
        return e;
      }
      case Tok::Int: return lit(t.i);
      case Tok::Float: return lit(t.f);
      case Tok::Name: {
        if (t.s == "true" || t.s == "True") return lit(true);
        if (t.s == "false" || t.s == "False") return lit(false);
        if (t.s == "none" || t.s == "None") return lit(nullptr);
        ++p_;
        auto e = make(Expr::Name);
        e->name = t.s;
        return e;
      }
      case Tok::Op:
        if (t.s == "(") {
          ++p_;
          ExprP e = expr();
          if (peek_op(",")) {  // a tuple: as a list
            auto l = make(Expr::List);
            l->args = {e};
            while (peek_op(",")) {
              ++p_;
              if (peek_op(")")) break;
              l->args.push_back(expr());
            }
            e = l;
          }
          expect_op(")");
          return e;
        }
        if (t.s == "[") {
          ++p_;
          auto e = make(Expr::List);
          while (!peek_op("]")) {
            e->args.push_back(expr());
            if (!peek_op(",")) break;
            ++p_;
          }
          expect_op("]");
          return e;
        }
        if (t.s == "{") {
          ++p_;
          auto e = make(Expr::Dict);
          while (!peek_op("}")) {
            ExprP k = expr();
            expect_op(":");
            e->args.push_back(k);
            e->args.push_back(expr());
            if (!peek_op(",")) break;
            ++p_;
          }
          expect_op("}");
          return e;
        }
        break;
      default: break;
    }
    cx_.error(line_, t.kind == Tok::End ? "an expression ends too early" : "unexpected '" + t.s + "'");
  }

  std::vector<Tok> t_;
  size_t p_ = 0;
  int line_;
  const Ctx& cx_;
};

// ---------------------------------------------------------------- statements

struct Node;
using NodeP = std::shared_ptr<Node>;
struct Node {
  enum Kind { Text, Out, If, For, Set } kind;
  std::string text;
  ExprP e;                                             // Out / For iterable / Set value
  std::vector<std::pair<ExprP, std::vector<NodeP>>> branches;  // If (null condition: else)
  std::vector<std::string> vars;                       // For targets; Set: {name} or {ns, attr}
  ExprP filter;                                        // For ... if cond
  std::vector<NodeP> body, else_body;                  // For
  int line = 0;
};

class Builder {
 public:
  Builder(const std::vector<Segment>& s, const Ctx& cx) : s_(s), cx_(cx) {}
  std::vector<NodeP> all() {
    std::string end;
    auto nodes = block({}, &end);
    return nodes;
  }

 private:
  // Nodes until one of `ends` (a statement keyword); *ended says which.
  std::vector<NodeP> block(const std::vector<std::string>& ends, std::string* ended, Parser** end_parser = nullptr) {
    Nesting guard(depth_, cx_, i_ < s_.size() ? s_[i_].line : 0);
    std::vector<NodeP> out;
    while (i_ < s_.size()) {
      const Segment& g = s_[i_++];
      if (g.kind == Segment::Text) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Text;
        n->text = g.body;
        out.push_back(n);
        continue;
      }
      parsers_.push_back(std::make_unique<Parser>(lex(g.body, g.line, cx_), g.line, cx_));
      Parser& p = *parsers_.back();
      if (g.kind == Segment::Expr) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Out;
        n->e = p.expr();
        p.end();
        out.push_back(n);
        continue;
      }
      const std::string kw = p.at_end() ? "" : p.name();
      for (const std::string& e : ends) {
        if (kw == e) {
          *ended = kw;
          if (end_parser) *end_parser = &p;
          return out;
        }
      }
      auto n = std::make_shared<Node>();
      n->line = g.line;
      if (kw == "if") {
        n->kind = Node::If;
        ExprP c = p.expr();
        p.end();
        for (;;) {
          std::string got;
          Parser* ep = nullptr;
          auto body = block({"elif", "else", "endif"}, &got, &ep);
          if (got.empty()) cx_.error(g.line, "{% if %} without {% endif %}");
          n->branches.push_back({c, body});
          if (got == "endif") break;
          if (got == "else") {
            ep->end();
            std::string got2;
            auto eb = block({"endif"}, &got2);
            if (got2.empty()) cx_.error(g.line, "{% if %} without {% endif %}");
            n->branches.push_back({nullptr, eb});
            break;
          }
          c = ep->expr();
          ep->end();
        }
      } else if (kw == "for") {
        n->kind = Node::For;
        n->vars.push_back(p.name());
        while (p.peek_op(",")) {
          p.expect_op(",");
          n->vars.push_back(p.name());
        }
        p.expect_name("in");
        n->e = p.expr();
        if (n->e->kind == Expr::Cond && !n->e->args[2]) {  // "for x in xs if cond": the parser read it as a conditional
          n->filter = n->e->args[0];
          n->e = n->e->args[1];
        }
        p.end();
        std::string got;
        n->body = block({"else", "endfor"}, &got);
        if (got.empty()) cx_.error(g.line, "{% for %} without {% endfor %}");
        if (got == "else") {
          n->else_body = block({"endfor"}, &got);
          if (got != "endfor") cx_.error(g.line, "{% for %} without {% endfor %}");
        }
      } else if (kw == "set") {
        n->kind = Node::Set;
        n->vars.push_back(p.name());
        if (p.peek_op(".")) {
          p.expect_op(".");
          n->vars.push_back(p.name());
        }
        if (!p.peek_op("=")) cx_.error(g.line, "{% set %} blocks are not supported: use {% set name = value %}");
        p.expect_op("=");
        n->e = p.expr();
        p.end();
      } else if (kw == "generation" || kw == "endgeneration") {
        continue;  // transformers' assistant-mask markers: no output of their own
      } else {
        cx_.error(g.line, "{% " + kw + " %} is not supported by condense's chat templates (if, for, set are)");
      }
      out.push_back(n);
    }
    if (!ends.empty()) ended->clear();
    return out;
  }

  const std::vector<Segment>& s_;
  const Ctx& cx_;
  size_t i_ = 0;
  int depth_ = 0;
  std::vector<std::unique_ptr<Parser>> parsers_;
};

// ---------------------------------------------------------------- evaluation

class Renderer {
 public:
  Renderer(const jv& vars, const Ctx& cx) : cx_(cx) {
    scopes_.emplace_back();
    for (auto it = vars.begin(); it != vars.end(); ++it) scopes_.back()[it.key()] = Value(it.value());
  }
  void run(const std::vector<NodeP>& nodes, std::string& out) {
    for (const NodeP& n : nodes) exec(*n, out);
  }

 private:
  Value lookup(const std::string& n) const {
    for (size_t i = scopes_.size(); i-- > 0;) {
      auto it = scopes_[i].find(n);
      if (it != scopes_[i].end()) return it->second;
    }
    return Value::undef();
  }

  void tick(int line) {
    if (++steps_ > kMaxSteps) cx_.error(line, "the template runs more than " + std::to_string(kMaxSteps) + " steps");
  }
  void emit(std::string& out, const std::string& s, int line) {
    if (out.size() + s.size() > kMaxText) cx_.error(line, "the template's output passes " + std::to_string(kMaxText) + " bytes");
    out += s;
  }

  void exec(const Node& n, std::string& out) {
    tick(n.line);
    switch (n.kind) {
      case Node::Text: emit(out, n.text, n.line); return;
      case Node::Out: emit(out, to_text(eval(*n.e)), n.line); return;
      case Node::If:
        for (const auto& [c, body] : n.branches) {
          if (!c || truthy(eval(*c))) {
            run(body, out);
            return;
          }
        }
        return;
      case Node::Set: {
        Value v = eval(*n.e);
        if (n.vars.size() == 1) {
          scopes_.back()[n.vars[0]] = v;
          return;
        }
        Value ns = lookup(n.vars[0]);
        if (!ns.ns) cx_.error(n.line, "'" + n.vars[0] + "' is not a namespace(): only namespace attributes can be set");
        (*ns.ns)[n.vars[1]] = v.data();
        return;
      }
      case Node::For: {
        Value it = eval(*n.e);
        std::vector<jv> items;
        const jv& d = it.data();
        if (it.undefined || d.is_null()) {
          // nothing to loop over
        } else if (d.is_array()) {
          for (const jv& x : d) items.push_back(x);
        } else if (d.is_object()) {
          for (auto k = d.begin(); k != d.end(); ++k) items.push_back(k.key());
        } else if (d.is_string()) {
          for (char c : d.get<std::string>()) items.push_back(std::string(1, c));
        } else {
          cx_.error(n.line, "cannot loop over " + py_repr(d));
        }
        if (n.filter) {
          std::vector<jv> kept;
          for (const jv& x : items) {
            tick(n.line);
            scopes_.emplace_back();
            bind(n, x);
            if (truthy(eval(*n.filter))) kept.push_back(x);
            scopes_.pop_back();
          }
          items.swap(kept);
        }
        if (items.empty()) {
          run(n.else_body, out);
          return;
        }
        for (size_t i = 0; i < items.size(); ++i) {
          tick(n.line);  // an empty body still costs an iteration
          scopes_.emplace_back();
          bind(n, items[i]);
          const int64_t len = int64_t(items.size()), k = int64_t(i);
          jv loop = {{"index", k + 1}, {"index0", k}, {"revindex", len - k}, {"revindex0", len - k - 1}, {"first", i == 0},
                     {"last", i + 1 == items.size()}, {"length", len}};
          loop["previtem"] = i > 0 ? items[i - 1] : jv();
          loop["nextitem"] = i + 1 < items.size() ? items[i + 1] : jv();
          scopes_.back()["loop"] = Value(loop);
          run(n.body, out);
          scopes_.pop_back();
        }
        return;
      }
    }
  }

  void bind(const Node& n, const jv& x) {
    if (n.vars.size() == 1) {
      scopes_.back()[n.vars[0]] = Value(x);
      return;
    }
    if (!x.is_array() || x.size() != n.vars.size()) cx_.error(n.line, "cannot unpack " + py_repr(x) + " into " + std::to_string(n.vars.size()) + " names");
    for (size_t k = 0; k < n.vars.size(); ++k) scopes_.back()[n.vars[k]] = Value(x[k]);
  }

  static int64_t as_int(const Value& v, const Ctx& cx, int line) {
    if (!v.data().is_number()) cx.error(line, "expected an integer, got " + py_repr(v.data()));
    return v.data().get<int64_t>();
  }

  Value attr(const Value& o, const std::string& k, int line) {
    if (o.undefined) return Value::undef();
    const jv& d = o.data();
    if (d.is_object()) {
      auto it = d.find(k);
      return it == d.end() ? Value::undef() : Value(*it);
    }
    return Value::undef();
  }

  Value index(const Value& o, const Value& k, int line) {
    if (o.undefined) return Value::undef();
    const jv& d = o.data();
    if (d.is_object() && k.data().is_string()) {
      auto it = d.find(k.data().get<std::string>());
      return it == d.end() ? Value::undef() : Value(*it);
    }
    if ((d.is_array() || d.is_string()) && k.data().is_number_integer()) {
      const int64_t n = d.is_array() ? int64_t(d.size()) : int64_t(d.get_ref<const std::string&>().size());
      int64_t i = k.data().get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undef();
      return d.is_array() ? Value(d[size_t(i)]) : Value(jv(std::string(1, d.get_ref<const std::string&>()[size_t(i)])));
    }
    return Value::undef();
  }

  Value slice(const Value& o, const Expr& e) {
    const jv& d = o.data();
    if (!d.is_array() && !d.is_string()) cx_.error(e.line, "cannot slice " + py_repr(d));
    const int64_t n = d.is_array() ? int64_t(d.size()) : int64_t(d.get_ref<const std::string&>().size());
    const int64_t step = e.args[3] ? as_int(eval(*e.args[3]), cx_, e.line) : 1;
    if (step == 0) cx_.error(e.line, "slice step cannot be zero");
    auto norm = [&](const ExprP& x, int64_t dflt) {
      if (!x) return dflt;
      int64_t v = as_int(eval(*x), cx_, e.line);
      if (v < 0) v += n;
      return step > 0 ? std::clamp<int64_t>(v, 0, n) : std::clamp<int64_t>(v, -1, n - 1);
    };
    const int64_t a = norm(e.args[1], step > 0 ? 0 : n - 1), b = norm(e.args[2], step > 0 ? n : -1);
    jv out = d.is_array() ? jv::array() : jv(std::string());
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
      if (d.is_array()) out.push_back(d[size_t(i)]);
      else out.get_ref<std::string&>() += d.get_ref<const std::string&>()[size_t(i)];
    }
    return Value(out);
  }

  static std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
    auto in = [&](char c) { return chars.empty() ? std::isspace(static_cast<unsigned char>(c)) != 0 : chars.find(c) != std::string::npos; };
    size_t a = 0, b = s.size();
    if (left) {
      while (a < b && in(s[a])) ++a;
    }
    if (right) {
      while (b > a && in(s[b - 1])) --b;
    }
    return s.substr(a, b - a);
  }

  std::vector<Value> positional(const Expr& e, size_t from) {
    std::vector<Value> a;
    for (size_t i = from; i < e.args.size(); ++i) a.push_back(eval(*e.args[i]));
    return a;
  }
  Value kwarg(const Expr& e, const std::string& k) {
    for (const auto& [name, x] : e.kwargs) {
      if (name == k) return eval(*x);
    }
    return Value::undef();
  }

  Value call(const Expr& e) {
    const Expr& f = *e.args[0];
    if (f.kind == Expr::Name) {
      const std::vector<Value> a = positional(e, 1);
      if (f.name == "raise_exception") cx_.error(e.line, "the template raised: " + (a.empty() ? std::string() : to_text(a[0])));
      if (f.name == "namespace") {
        Value v;
        v.ns = std::make_shared<jv>(jv::object());
        for (const auto& [k, x] : e.kwargs) (*v.ns)[k] = eval(*x).data();
        return v;
      }
      if (f.name == "dict") {
        jv o = jv::object();
        for (const auto& [k, x] : e.kwargs) o[k] = eval(*x).data();
        return Value(o);
      }
      if (f.name == "range") {
        int64_t lo = 0, hi = 0, st = 1;
        if (a.size() == 1) hi = as_int(a[0], cx_, e.line);
        else if (a.size() >= 2) lo = as_int(a[0], cx_, e.line), hi = as_int(a[1], cx_, e.line);
        if (a.size() == 3) st = as_int(a[2], cx_, e.line);
        if (st == 0 || a.empty() || a.size() > 3) cx_.error(e.line, "range() takes 1 to 3 integers, step not 0");
        // The element count in 128-bit arithmetic: the bounds may be anything an int64 holds.
        const __int128 span = st > 0 ? __int128(hi) - lo : __int128(lo) - hi, step = st > 0 ? __int128(st) : -__int128(st);
        if (span > 0 && (span + step - 1) / step > kMaxRange) cx_.error(e.line, "range() of more than " + std::to_string(kMaxRange) + " elements");
        jv l = jv::array();
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) l.push_back(i);
        return Value(l);
      }
      if (f.name == "strftime_now") {
        const std::time_t t = std::time(nullptr);
        char b[128];
        if (std::strftime(b, sizeof b, a.empty() ? "%Y-%m-%d" : to_text(a[0]).c_str(), std::localtime(&t)) == 0) b[0] = '\0';  // too long: contents undefined
        return Value(jv(std::string(b)));
      }
      cx_.error(e.line, "unknown function " + f.name + "()");
    }
    if (f.kind == Expr::Attr) {
      const Value self = eval(*f.args[0]);
      const std::string& m = f.name;
      const std::vector<Value> a = positional(e, 1);
      const jv& d = self.data();
      if (d.is_string()) {
        const std::string& s = d.get_ref<const std::string&>();
        const std::string arg0 = a.empty() || a[0].data().is_null() ? std::string() : to_text(a[0]);
        if (m == "strip" || m == "lstrip" || m == "rstrip") return Value(jv(strip(s, arg0, m != "rstrip", m != "lstrip")));
        // Methods that are also filters: one implementation.
        if (m == "upper" || m == "lower" || m == "title" || m == "capitalize" || (m == "replace" && a.size() >= 2)) return filter_named(m, self, a, e);
        if (m == "startswith") return Value(jv(s.rfind(arg0, 0) == 0));
        if (m == "endswith") return Value(jv(s.size() >= arg0.size() && s.compare(s.size() - arg0.size(), arg0.size(), arg0) == 0));
        if (m == "split") {
          jv l = jv::array();
          if (arg0.empty()) {
            size_t p = 0;
            for (;;) {
              while (p < s.size() && std::isspace(static_cast<unsigned char>(s[p]))) ++p;
              if (p >= s.size()) break;
              size_t q = p;
              while (q < s.size() && !std::isspace(static_cast<unsigned char>(s[q]))) ++q;
              l.push_back(s.substr(p, q - p));
              p = q;
            }
          } else {
            size_t p = 0, q;
            while ((q = s.find(arg0, p)) != std::string::npos) l.push_back(s.substr(p, q - p)), p = q + arg0.size();
            l.push_back(s.substr(p));
          }
          return Value(l);
        }
      }
      if (d.is_object()) {
        if (m == "items") {
          jv l = jv::array();
          for (auto it = d.begin(); it != d.end(); ++it) l.push_back(jv::array({it.key(), it.value()}));
          return Value(l);
        }
        if (m == "keys" || m == "values") {
          jv l = jv::array();
          for (auto it = d.begin(); it != d.end(); ++it) l.push_back(m == "keys" ? jv(it.key()) : it.value());
          return Value(l);
        }
        if (m == "get") {
          Value r = a.empty() ? Value::undef() : index(self, a[0], e.line);
          return r.undefined ? (a.size() > 1 ? a[1] : Value(jv())) : r;
        }
      }
      cx_.error(e.line, "unsupported method ." + m + "() on " + (self.undefined ? std::string("an undefined value") : py_repr(d)));
    }
    cx_.error(e.line, "only named functions and methods can be called");
  }

  Value filter_named(const std::string& f, const Value& x, const std::vector<Value>& a, const Expr& e) {
    const jv& d = x.data();
    auto str = [&] { return to_text(x); };
    if (f == "trim") return Value(jv(strip(str(), a.empty() ? "" : to_text(a[0]), true, true)));
    if (f == "length" || f == "count") {
      if (d.is_string()) return Value(jv(int64_t(d.get_ref<const std::string&>().size())));
      if (d.is_array() || d.is_object()) return Value(jv(int64_t(d.size())));
      if (x.undefined) return Value(jv(0));
      cx_.error(e.line, "length of " + py_repr(d));
    }
    if (f == "upper" || f == "lower") {
      std::string o = str();
      for (char& c : o) c = char(f == "upper" ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
      return Value(jv(o));
    }
    if (f == "capitalize" || f == "title") {
      std::string o = str();
      bool start = true;
      for (char& c : o) {
        const bool alpha = std::isalpha(static_cast<unsigned char>(c)) != 0;
        c = char(start && alpha ? std::toupper(static_cast<unsigned char>(c)) : f == "capitalize" || !start ? std::tolower(static_cast<unsigned char>(c)) : c);
        if (f == "title") start = !alpha;
        else if (alpha) start = false;
      }
      return Value(jv(o));
    }
    if (f == "tojson") {
      Value ind = kwarg(e, "indent");
      if (ind.undefined && !a.empty()) ind = a[0];
      std::string o;
      py_json(d, ind.undefined || ind.data().is_null() ? -1 : int(as_int(ind, cx_, e.line)), 0, o);
      return Value(jv(o));
    }
    if (f == "string") return Value(jv(str()));
    if (f == "safe" || f == "e" || f == "escape") return x;  // no autoescaping in chat templates
    if (f == "list") return d.is_array() ? x : filter_named("items_of", x, a, e);
    if (f == "items_of") {
      jv l = jv::array();
      if (d.is_string())
        for (char c : d.get<std::string>()) l.push_back(std::string(1, c));
      else if (d.is_object())
        for (auto it = d.begin(); it != d.end(); ++it) l.push_back(it.key());
      return Value(l);
    }
    if (f == "items") {
      jv l = jv::array();
      for (auto it = d.begin(); d.is_object() && it != d.end(); ++it) l.push_back(jv::array({it.key(), it.value()}));
      return Value(l);
    }
    if (f == "first" || f == "last") {
      if (d.is_array()) return d.empty() ? Value::undef() : Value(f == "first" ? d.front() : d.back());
      if (d.is_string()) {
        const std::string& s = d.get_ref<const std::string&>();
        return s.empty() ? Value::undef() : Value(jv(std::string(1, f == "first" ? s.front() : s.back())));
      }
      return Value::undef();
    }
    if (f == "reverse") {
      if (d.is_array()) return Value(jv(jv::array_t(d.rbegin(), d.rend())));
      std::string s = str();
      return Value(jv(std::string(s.rbegin(), s.rend())));
    }
    if (f == "join") {
      const std::string sep = a.empty() ? "" : to_text(a[0]);
      std::string o;
      if (d.is_array()) {
        for (size_t i = 0; i < d.size(); ++i) o += (i ? sep : "") + py_str(d[i]);
      }
      return Value(jv(o));
    }
    if (f == "default" || f == "d") {
      const bool boolean = (a.size() > 1 && truthy(a[1])) || truthy(kwarg(e, "boolean"));
      if (x.undefined || (boolean && !truthy(x))) return a.empty() ? Value(jv(std::string())) : a[0];
      return x;
    }
    if (f == "int") {
      if (d.is_number_float()) {
        const double v = d.get<double>();
        if (!(std::fabs(v) < 9.2e18)) cx_.error(e.line, "cannot convert " + py_repr(d) + " to an integer");
        return Value(jv(int64_t(v)));
      }
      if (d.is_number()) return Value(jv(d.get<int64_t>()));
      try {
        return Value(jv(int64_t(std::stoll(str()))));
      } catch (const std::exception&) {
        return Value(jv(0));
      }
    }
    if (f == "float") {
      if (d.is_number()) return Value(jv(d.get<double>()));
      try {
        return Value(jv(std::stod(str())));
      } catch (const std::exception&) {
        return Value(jv(0.0));
      }
    }
    if (f == "abs" && d.is_number()) return Value(d.is_number_float() ? jv(std::fabs(d.get<double>())) : jv(std::llabs(d.get<int64_t>())));
    if (f == "replace" && a.size() >= 2) {
      std::string s = str(), o, from = to_text(a[0]), to = to_text(a[1]);
      if (from.empty()) return Value(jv(s));
      size_t p = 0, q;
      while ((q = s.find(from, p)) != std::string::npos) o += s.substr(p, q - p) + to, p = q + from.size();
      return Value(jv(o + s.substr(p)));
    }
    cx_.error(e.line, "unsupported filter |" + f);
  }

  bool test(const Expr& e, const Value& x) {
    const std::string& t = e.name;
    const jv& d = x.data();
    const std::vector<Value> a = positional(e, 1);
    if (t == "defined") return !x.undefined;
    if (t == "undefined") return x.undefined;
    if (x.undefined && t != "none") return false;
    if (t == "none") return !x.undefined && d.is_null();
    if (t == "string") return d.is_string();
    if (t == "number") return d.is_number() && !d.is_boolean();
    if (t == "integer") return d.is_number_integer();
    if (t == "float") return d.is_number_float();
    if (t == "boolean") return d.is_boolean();
    if (t == "true") return d.is_boolean() && d.get<bool>();
    if (t == "false") return d.is_boolean() && !d.get<bool>();
    if (t == "mapping") return d.is_object() || bool(x.ns);
    if (t == "sequence" || t == "iterable") return d.is_array() || d.is_string() || d.is_object();
    if (t == "even" || t == "odd") return d.is_number_integer() && (((d.get<int64_t>() % 2) + 2) % 2 == (t == "odd" ? 1 : 0));
    if (t == "divisibleby" && !a.empty()) return d.is_number_integer() && as_int(a[0], cx_, e.line) != 0 && d.get<int64_t>() % as_int(a[0], cx_, e.line) == 0;
    if ((t == "equalto" || t == "eq" || t == "sameas") && !a.empty()) return d == a[0].data();
    if ((t == "ne") && !a.empty()) return d != a[0].data();
    cx_.error(e.line, "unsupported test 'is " + t + "'");
  }

  Value binop(const Expr& e) {
    const std::string& op = e.name;
    const Value l = eval(*e.args[0]), r = eval(*e.args[1]);
    const jv &a = l.data(), &b = r.data();
    if (op == "==") return Value(jv(l.undefined ? r.undefined : !r.undefined && a == b));
    if (op == "!=") return Value(jv(!(l.undefined ? r.undefined : !r.undefined && a == b)));
    if (op == "in") {
      bool in = false;
      if (b.is_string()) {
        if (!a.is_string()) cx_.error(e.line, "'in <string>' needs a string on the left, got " + py_repr(a));
        in = b.get_ref<const std::string&>().find(a.get_ref<const std::string&>()) != std::string::npos;
      } else if (b.is_array()) {
        for (const jv& x : b) in = in || x == a;
      } else if (b.is_object()) {
        in = a.is_string() && b.contains(a.get<std::string>());
      } else if (!r.undefined) {
        cx_.error(e.line, "'in' on " + py_repr(b));
      }
      return Value(jv(e.negate ? !in : in));
    }
    if (op == "~") return Value(jv(to_text(l) + to_text(r)));
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      if (!((a.is_number() && b.is_number()) || (a.is_string() && b.is_string()))) cx_.error(e.line, "cannot compare " + py_repr(a) + " " + op + " " + py_repr(b));
      const bool lt = a < b, gt = b < a;
      return Value(jv(op == "<" ? lt : op == ">" ? gt : op == "<=" ? !gt : !lt));
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(jv(a.get<std::string>() + b.get<std::string>()));
      if (a.is_array() && b.is_array()) {
        jv o = a;
        for (const jv& x : b) o.push_back(x);
        return Value(o);
      }
    }
    if (a.is_number() && b.is_number() && !a.is_boolean() && !b.is_boolean()) {
      const bool ints = a.is_number_integer() && b.is_number_integer();
      const double x = a.get<double>(), y = b.get<double>();
      if (ints && (op == "+" || op == "-" || op == "*")) {
        int64_t o = 0;
        const int64_t p = a.get<int64_t>(), q = b.get<int64_t>();
        const bool over = op == "+" ? __builtin_add_overflow(p, q, &o) : op == "-" ? __builtin_sub_overflow(p, q, &o) : __builtin_mul_overflow(p, q, &o);
        if (over) cx_.error(e.line, "integer overflow in " + std::to_string(p) + " " + op + " " + std::to_string(q));
        return Value(jv(o));
      }
      if (op == "+") return Value(jv(x + y));
      if (op == "-") return Value(jv(x - y));
      if (op == "*") return Value(jv(x * y));
      if (op == "**") return ints && b.get<int64_t>() >= 0 ? Value(jv(int64_t(std::llround(std::pow(x, y))))) : Value(jv(std::pow(x, y)));
      if (y == 0 && (op == "/" || op == "//" || op == "%")) cx_.error(e.line, "division by zero");
      if (op == "/") return Value(jv(x / y));
      if (op == "//") {
        if (ints) {
          const int64_t p = a.get<int64_t>(), q = b.get<int64_t>();
          if (p == INT64_MIN && q == -1) cx_.error(e.line, "integer overflow in " + std::to_string(p) + " // -1");
          return Value(jv(p / q - ((p % q != 0) && ((p < 0) != (q < 0)) ? 1 : 0)));
        }
        return Value(jv(std::floor(x / y)));
      }
      if (op == "%") {
        if (ints) {
          const int64_t p = a.get<int64_t>(), q = b.get<int64_t>(), m = q == -1 ? 0 : p % q;  // INT64_MIN % -1 traps
          return Value(jv(m != 0 && ((m < 0) != (q < 0)) ? m + q : m));
        }
        return Value(jv(x - y * std::floor(x / y)));
      }
    }
    if (op == "*" && a.is_string() && b.is_number_integer()) {
      if (b.get<int64_t>() > 0 && a.get<std::string>().size() > kMaxText / size_t(b.get<int64_t>())) {
        cx_.error(e.line, "a string repeated past " + std::to_string(kMaxText) + " bytes");
      }
      std::string o;
      for (int64_t i = 0; i < b.get<int64_t>(); ++i) o += a.get<std::string>();
      return Value(jv(o));
    }
    cx_.error(e.line, "unsupported operands for '" + op + "': " + (l.undefined ? std::string("undefined") : py_repr(a)) + " and " +
                          (r.undefined ? std::string("undefined") : py_repr(b)));
  }

  // Every evaluation is a step, and no value grows past kMaxText (a string's
  // bytes, a list's elements: a few doublings in a loop would fill memory).
  Value eval(const Expr& e) {
    tick(e.line);
    Value v = eval_node(e);
    const jv& d = v.data();
    if ((d.is_string() && d.get_ref<const std::string&>().size() > kMaxText) || (d.is_array() && d.size() > kMaxText / 8)) {
      cx_.error(e.line, "a value grows past " + std::to_string(kMaxText) + " bytes");
    }
    return v;
  }

  Value eval_node(const Expr& e) {
    switch (e.kind) {
      case Expr::Lit: return Value(e.lit);
      case Expr::Name: return lookup(e.name);
      case Expr::Attr: return attr(eval(*e.args[0]), e.name, e.line);
      case Expr::Index: return index(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::Slice: return slice(eval(*e.args[0]), e);
      case Expr::Call: return call(e);
      case Expr::Filter: return filter_named(e.name, eval(*e.args[0]), positional(e, 1), e);
      case Expr::Test: return Value(jv(test(e, eval(*e.args[0])) != e.negate));
      case Expr::Neg: {
        const Value v = eval(*e.args[0]);
        if (!v.data().is_number()) cx_.error(e.line, "cannot negate " + py_repr(v.data()));
        if (v.data().is_number_integer() && v.data().get<int64_t>() == INT64_MIN) cx_.error(e.line, "integer overflow in negation");
        return v.data().is_number_float() ? Value(jv(-v.data().get<double>())) : Value(jv(-v.data().get<int64_t>()));
      }
      case Expr::Not: return Value(jv(!truthy(eval(*e.args[0]))));
      case Expr::And: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? eval(*e.args[1]) : a;
      }
      case Expr::Or: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? a : eval(*e.args[1]);
      }
      case Expr::Cond: return truthy(eval(*e.args[0])) ? eval(*e.args[1]) : e.args[2] ? eval(*e.args[2]) : Value::undef();
      case Expr::Bin: return binop(e);
      case Expr::List: {
        jv l = jv::array();
        for (const ExprP& x : e.args) l.push_back(eval(*x).data());
        return Value(l);
      }
      case Expr::Dict: {
        jv o = jv::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const Value k = eval(*e.args[i]);
          if (!k.data().is_string()) cx_.error(e.line, "dict keys must be strings here");
          o[k.data().get<std::string>()] = eval(*e.args[i + 1]).data();
        }
        return Value(o);
      }
    }
    return Value::undef();
  }

  const Ctx& cx_;
  int64_t steps_ = 0;
  std::vector<std::map<std::string, Value>> scopes_;
};

}  // namespace

std::string render(const std::string& source, const nlohmann::json& vars, const std::string& where) {
  const Ctx cx{where};
  const std::vector<Segment> segs = segments(source, cx);
  Builder b(segs, cx);
  const std::vector<NodeP> nodes = b.all();
  Renderer r(jv::parse(vars.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)), cx);  // BOS/EOS text from a binary file may not be UTF-8
  std::string out;
  r.run(nodes, out);
  return out;
}

}  // namespace condense::jinja
