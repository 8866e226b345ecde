// Tokenizer (see tokenizer.h): reads tokenizer.json and runs the pipeline of the reference `tokenizers` library
// for byte-level BPE files: (1) added tokens with `normalized: false` are split out of the raw text; (2) each
// remaining stretch is normalized (NFC or nothing) and added tokens with `normalized: true` are split out of it;
// (3) each remaining stretch gets its prefix space (add_prefix_space) and is cut by the GPT-2 pattern; (4) each
// piece goes through the BPE model as bytes; (5) the post-processor's template, if any, wraps the ids.
// Decoding maps each token back to bytes (ByteLevel decoder) and replaces ill-formed UTF-8 by U+FFFD.
#include "io/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "io/added_tokens.h"
#include "io/bpe.h"
#include "io/byte_level.h"
#include "io/unicode.h"

namespace mambacpp {

using json = nlohmann::json;

namespace {

// One step of a TemplateProcessing "single" template: the encoded sequence, or fixed special-token ids.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};
using Template = std::vector<TemplatePiece>;

std::string join(const std::string& path, const char* key) { return path.empty() ? key : path + "." + key; }

// Reads one tokenizer.json, naming the file and the JSON path in every error.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  [[noreturn]] void bad(const std::string& path, const std::string& what) const {
    if (path.empty()) fail("{}: {}", source_, what);
    fail("{}: {}: {}", source_, path, what);
  }
  const json& need(const json& obj, const char* key, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end()) bad(path, fmt::format("missing field '{}'", key));
    return *it;
  }
  const json& object(const json& obj, const char* key, const std::string& path) const {
    const json& v = need(obj, key, path);
    if (!v.is_object()) bad(join(path, key), "expected an object");
    return v;
  }
  const json& array(const json& obj, const char* key, const std::string& path) const {
    const json& v = need(obj, key, path);
    if (!v.is_array()) bad(join(path, key), "expected an array");
    return v;
  }
  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string()) bad(path, "expected a string");
    return v.get<std::string>();
  }
  std::string type(const json& obj, const std::string& path) const {
    if (!obj.is_object()) bad(path, "expected an object");
    return string(need(obj, "type", path), path + ".type");
  }
  // A boolean field; `fallback` when it is absent or null.
  bool flag(const json& obj, const char* key, bool fallback, const std::string& path) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) bad(join(path, key), "expected true or false");
    return it->get<bool>();
  }
  int32_t id(const json& v, const std::string& path) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      bad(path, "expected a token id (an integer from 0 to 2^31-1)");
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  [[noreturn]] void unsupported(const std::string& path, const std::string& kind, const std::string& type,
                                const char* supported) const {
    bad(path, fmt::format("{} type '{}' is not supported (supported: {})", kind, type, supported));
  }

 private:
  const std::string& source_;
};

// True when the normalizer is NFC (alone or in a Sequence; NFC applied twice is NFC), false when there is none.
bool read_normalizer(const Reader& r, const json& n, const std::string& path) {
  if (n.is_null()) return false;
  const std::string type = r.type(n, path);
  if (type == "NFC") return true;
  if (type != "Sequence") r.unsupported(path, "normalizer", type, "NFC, Sequence");
  const json& list = r.array(n, "normalizers", path);
  bool nfc = false;
  for (size_t i = 0; i < list.size(); ++i) {
    nfc |= read_normalizer(r, list[i], fmt::format("{}.normalizers[{}]", path, i));
  }
  return nfc;
}

struct PreTokenizer {
  bool add_prefix_space = false;
  bool use_regex = true;
};

PreTokenizer read_pre_tokenizer(const Reader& r, const json& p, const std::string& path) {
  if (p.is_null()) r.bad(path, "a ByteLevel pre-tokenizer is required (found null)");
  const std::string type = r.type(p, path);
  if (type == "Sequence") {
    const json& list = r.array(p, "pretokenizers", path);
    if (list.size() != 1) r.bad(path + ".pretokenizers", "expected exactly one pre-tokenizer, ByteLevel");
    return read_pre_tokenizer(r, list[0], path + ".pretokenizers[0]");
  }
  if (type != "ByteLevel") r.unsupported(path, "pre-tokenizer", type, "ByteLevel, Sequence of one ByteLevel");
  const json& prefix = r.need(p, "add_prefix_space", path);
  if (!prefix.is_boolean()) r.bad(path + ".add_prefix_space", "expected true or false");
  return PreTokenizer{prefix.get<bool>(), r.flag(p, "use_regex", true, path)};
}

void read_decoder(const Reader& r, const json& d, const std::string& path) {
  if (d.is_null()) r.bad(path, "a ByteLevel decoder is required (found null)");
  const std::string type = r.type(d, path);
  if (type == "Sequence") {
    const json& list = r.array(d, "decoders", path);
    if (list.size() != 1) r.bad(path + ".decoders", "expected exactly one decoder, ByteLevel");
    return read_decoder(r, list[0], path + ".decoders[0]");
  }
  if (type != "ByteLevel") r.unsupported(path, "decoder", type, "ByteLevel, Sequence of one ByteLevel");
}

Template read_template(const Reader& r, const json& p, const std::string& path) {
  const json& single = r.array(p, "single", path);
  const json* specials = p.contains("special_tokens") ? &r.object(p, "special_tokens", path) : nullptr;
  Template out;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string at = fmt::format("{}.single[{}]", path, i);
    const json& piece = single[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      const json& seq = r.object(piece, "Sequence", at);
      const std::string which = r.string(r.need(seq, "id", at + ".Sequence"), at + ".Sequence.id");
      if (which != "A") r.bad(at + ".Sequence.id", fmt::format("a single template takes sequence A, not '{}'", which));
      out.push_back(TemplatePiece{true, {}});
      continue;
    }
    if (!piece.is_object() || !piece.contains("SpecialToken")) r.bad(at, "expected a Sequence or a SpecialToken");
    const json& tok = r.object(piece, "SpecialToken", at);
    const std::string name = r.string(r.need(tok, "id", at + ".SpecialToken"), at + ".SpecialToken.id");
    if (specials == nullptr || !specials->contains(name)) {
      r.bad(at, fmt::format("special token '{}' is not listed in {}.special_tokens", name, path));
    }
    const std::string def = fmt::format("{}.special_tokens[\"{}\"]", path, name);
    const json& ids = r.array(specials->at(name), "ids", def);
    TemplatePiece special;
    for (size_t k = 0; k < ids.size(); ++k) special.ids.push_back(r.id(ids[k], fmt::format("{}.ids[{}]", def, k)));
    out.push_back(std::move(special));
  }
  return out;
}

// The templates a post-processor applies, in order (ByteLevel adds none).
void read_post_processor(const Reader& r, const json& p, const std::string& path, std::vector<Template>& out) {
  if (p.is_null()) return;
  const std::string type = r.type(p, path);
  if (type == "ByteLevel") return;
  if (type == "TemplateProcessing") {
    out.push_back(read_template(r, p, path));
    return;
  }
  if (type != "Sequence") r.unsupported(path, "post-processor", type, "ByteLevel, TemplateProcessing, Sequence");
  const json& list = r.array(p, "processors", path);
  for (size_t i = 0; i < list.size(); ++i) {
    read_post_processor(r, list[i], fmt::format("{}.processors[{}]", path, i), out);
  }
}

// Rejects the BPE options this implementation leaves out (none of them is used by byte-level files).
void check_bpe_options(const Reader& r, const json& m) {
  const auto set = [&](const char* key) {
    const auto it = m.find(key);
    return it != m.end() && !it->is_null() ? &*it : nullptr;
  };
  if (const json* d = set("dropout"); d != nullptr && !(d->is_number() && d->get<double>() == 0.0)) {
    r.bad("model.dropout", "BPE dropout is not supported (expected null)");
  }
  if (set("unk_token") != nullptr) r.bad("model.unk_token", "an unknown token is not supported (expected null)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = set(key); v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
      r.bad(std::string("model.") + key, "is not supported (expected null)");
    }
  }
  if (r.flag(m, "byte_fallback", false, "model")) r.bad("model.byte_fallback", "is not supported (expected false)");
}

BpeModel::Merges read_merges(const Reader& r, const json& list) {
  BpeModel::Merges merges;
  merges.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    const std::string at = fmt::format("model.merges[{}]", i);
    if (m.is_array()) {
      if (m.size() != 2) r.bad(at, "expected a pair of tokens");
      merges.emplace_back(r.string(m[0], at + "[0]"), r.string(m[1], at + "[1]"));
      continue;
    }
    const std::string line = r.string(m, at);
    if (line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      r.bad(at, fmt::format("expected two tokens separated by one space, found '{}'", line));
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

std::unique_ptr<BpeModel> read_model(const Reader& r, const json& root, const std::string& source) {
  const json& model = r.object(root, "model", "");
  if (model.contains("type")) {
    const std::string type = r.type(model, "model");
    if (type != "BPE") r.unsupported("model", "model", type, "BPE");
  }
  check_bpe_options(r, model);
  const json& vocab_json = r.object(model, "vocab", "model");
  BpeModel::Vocab vocab;
  vocab.reserve(vocab_json.size());
  std::unordered_map<int32_t, const std::string*> owner;
  for (const auto& [token, value] : vocab_json.items()) {
    const int32_t id = r.id(value, fmt::format("model.vocab[\"{}\"]", token));
    vocab.emplace(token, id);
  }
  for (const auto& [token, id] : vocab) {
    const auto [it, fresh] = owner.emplace(id, &token);
    if (!fresh) r.bad("model.vocab", fmt::format("id {} is given to both '{}' and '{}'", id, *it->second, token));
  }
  const BpeModel::Merges merges = read_merges(r, r.array(model, "merges", "model"));
  return std::make_unique<BpeModel>(std::move(vocab), merges, r.flag(model, "ignore_merges", false, "model"),
                                    source + ": model");
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  bool nfc = false;
  PreTokenizer pre;
  std::unique_ptr<BpeModel> bpe;
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  AddedTokenMatcher raw_tokens;                        // normalized: false, matched on the raw text
  AddedTokenMatcher normalized_tokens;                 // normalized: true, matched on normalized text
  std::vector<Template> templates;
  std::vector<std::string> token_bytes;  // [v] what each id decodes to (any bytes)
  std::vector<bool> has_token;           // [v] false for ids no token has

  std::string normalize(std::string_view s) const { return nfc ? unicode::nfc(s) : std::string(s); }
  std::map<int32_t, AddedToken> read_added_tokens(const Reader& r, const json& root);
  void build_decoding_table(const std::map<int32_t, AddedToken>& added);
  void encode_normalized(std::string_view raw, std::vector<int32_t>& ids) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  const std::string& bytes_of(int32_t id) const;
};

// Ids follow the reference: a token already known (an earlier added token, or the model's vocabulary) keeps that
// id; any other takes the next id from the vocabulary's size on. The ids written in the file are not used.
std::map<int32_t, AddedToken> Tokenizer::Impl::read_added_tokens(const Reader& r, const json& root) {
  std::map<int32_t, AddedToken> by_id;
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return by_id;
  const json& list = r.array(root, "added_tokens", "");
  auto next_id = static_cast<int32_t>(bpe->vocab().size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = fmt::format("added_tokens[{}]", i);
    const json& t = list[i];
    if (!t.is_object()) r.bad(at, "expected an object");
    AddedToken tok;
    tok.content = r.string(r.need(t, "content", at), at + ".content");
    r.id(r.need(t, "id", at), at + ".id");
    tok.special = r.flag(t, "special", false, at);
    tok.normalized = r.flag(t, "normalized", !tok.special, at);
    tok.single_word = r.flag(t, "single_word", false, at);
    tok.lstrip = r.flag(t, "lstrip", false, at);
    tok.rstrip = r.flag(t, "rstrip", false, at);
    if (tok.content.empty()) continue;
    int32_t id = next_id;
    if (const auto known = added_ids.find(tok.content); known != added_ids.end()) {
      id = known->second;
    } else if (const auto in_vocab = bpe->vocab().find(tok.content); in_vocab != bpe->vocab().end()) {
      id = in_vocab->second;
    } else {
      ++next_id;
    }
    added_ids[tok.content] = id;
    by_id[id] = std::move(tok);
  }
  for (const auto& [id, tok] : by_id) {
    if (tok.normalized) {
      normalized_tokens.add(normalize(tok.content), id, tok);
    } else {
      raw_tokens.add(tok.content, id, tok);
    }
  }
  return by_id;
}

// An added token decodes as its (normalized) text, taking precedence over the vocabulary entry of the same id.
void Tokenizer::Impl::build_decoding_table(const std::map<int32_t, AddedToken>& added) {
  int32_t max_id = added.empty() ? -1 : added.rbegin()->first;
  for (const auto& [token, id] : bpe->vocab()) max_id = std::max(max_id, id);
  token_bytes.assign(static_cast<size_t>(max_id) + 1, std::string());
  has_token.assign(static_cast<size_t>(max_id) + 1, false);
  for (const auto& [token, id] : bpe->vocab()) {
    token_bytes[id] = byte_level::decode_token(token);
    has_token[id] = true;
  }
  for (const auto& [id, tok] : added) {
    token_bytes[id] = byte_level::decode_token(tok.normalized ? normalize(tok.content) : tok.content);
    has_token[id] = true;
  }
}

void Tokenizer::Impl::encode_normalized(std::string_view raw, std::vector<int32_t>& ids) const {
  const std::string text = normalize(raw);
  std::vector<TextSpan> spans;
  normalized_tokens.split(text, spans);
  for (const TextSpan& s : spans) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      encode_piece(std::string_view(text).substr(s.begin, s.end - s.begin), ids);
    }
  }
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  std::string prefixed;
  if (pre.add_prefix_space && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.append(1, ' ').append(piece);
    piece = prefixed;
  }
  if (!pre.use_regex) {
    bpe->encode_word(piece, ids);
    return;
  }
  std::vector<std::string_view> words;
  byte_level::split(piece, words);
  for (const std::string_view w : words) bpe->encode_word(w, ids);
}

const std::string& Tokenizer::Impl::bytes_of(int32_t id) const {
  MAMBA_CHECK(id >= 0 && static_cast<size_t>(id) < token_bytes.size(), "{}: token id {} is out of range [0, {})",
              source, id, token_bytes.size());
  MAMBA_CHECK(has_token[id], "{}: token id {} is not assigned to any token", source, id);
  return token_bytes[id];
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MAMBA_CHECK(f.good(), "cannot open tokenizer file '{}'", path);
  std::ostringstream text;
  text << f.rdbuf();
  MAMBA_CHECK(!f.bad(), "cannot read tokenizer file '{}'", path);
  return from_json_text(text.str(), path);
}

Tokenizer Tokenizer::from_json_text(const std::string& text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: malformed JSON (byte {}): {}", source, e.byte, e.what());
  }
  const Reader r(source);
  if (!root.is_object()) r.bad("", "expected a JSON object at the top level");
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  const auto part = [&](const char* key) -> const json& {
    static const json null_json;
    const auto it = root.find(key);
    return it == root.end() ? null_json : *it;
  };
  impl->nfc = read_normalizer(r, part("normalizer"), "normalizer");
  impl->pre = read_pre_tokenizer(r, part("pre_tokenizer"), "pre_tokenizer");
  read_post_processor(r, part("post_processor"), "post_processor", impl->templates);
  read_decoder(r, part("decoder"), "decoder");
  impl->bpe = read_model(r, root, source);
  impl->build_decoding_table(impl->read_added_tokens(r, root));
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const size_t bad = unicode::first_invalid_utf8(text);
  MAMBA_CHECK(bad == std::string_view::npos, "{}: cannot encode text that is not valid UTF-8 (byte offset {})",
              impl_->source, bad);
  std::vector<int32_t> ids;
  std::vector<TextSpan> spans;
  impl_->raw_tokens.split(text, spans);
  for (const TextSpan& s : spans) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      impl_->encode_normalized(text.substr(s.begin, s.end - s.begin), ids);
    }
  }
  for (const Template& t : impl_->templates) {
    std::vector<int32_t> wrapped;
    for (const TemplatePiece& piece : t) {
      const std::vector<int32_t>& part = piece.is_sequence ? ids : piece.ids;
      wrapped.insert(wrapped.end(), part.begin(), part.end());
    }
    ids = std::move(wrapped);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (const int32_t id : ids) bytes += impl_->bytes_of(id);
  std::string text;
  unicode::append_lossy(text, bytes, true);
  return text;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->token_bytes.size()); }

int32_t Tokenizer::token_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = impl_->added_ids.find(key); it != impl_->added_ids.end()) return it->second;
  const auto it = impl_->bpe->vocab().find(key);
  return it == impl_->bpe->vocab().end() ? -1 : it->second;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.impl_->bytes_of(id);
  std::string text;
  pending_.erase(0, unicode::append_lossy(text, pending_, false));
  return text;
}

std::string StreamDecoder::flush() {
  std::string text;
  unicode::append_lossy(text, pending_, true);
  pending_.clear();
  return text;
}

}  // namespace mambacpp
