// Encoding text into tokens, and the token-file format (token_file.h).
#include "train/token_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/tokenizer.h"
#include "io/atomic_file.h"

namespace mambacpp {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'M', 'A', 'M', 'B', 'A', 'T', 'O', 'K'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 40;

size_t padded(size_t n) { return (n + 7) / 8 * 8; }

template <typename T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void append_le(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

std::vector<fs::path> text_files(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  MAMBA_CHECK(!ec && fs::exists(st), "{}: no such file or folder", path);
  if (!fs::is_directory(st)) return {fs::path(path)};
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  MAMBA_CHECK(!ec, "{}: cannot list the folder: {}", path, ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TokenData::TokenData() = default;
TokenData::~TokenData() = default;
TokenData::TokenData(TokenData&&) noexcept = default;
TokenData& TokenData::operator=(TokenData&&) noexcept = default;

TokenData TokenData::encode(const std::string& path, const Tokenizer* tok) {
  TokenData d;
  d.source_ = path;
  d.width_ = tok == nullptr ? 1 : tok->vocab_size() <= 65536 ? 2 : 4;
  std::vector<int32_t> ids;
  for (const fs::path& f : text_files(path)) {
    const std::string text = read_whole_file(f.string());
    if (text.empty()) continue;
    d.docs_.push_back(int64_t(d.owned_.size() / size_t(d.width_)));
    d.text_bytes_ += int64_t(text.size());
    if (tok == nullptr) {
      d.owned_.insert(d.owned_.end(), text.begin(), text.end());
      continue;
    }
    ids = tok->encode(text);
    for (int32_t id : ids) {
      const uint32_t v = uint32_t(id);
      d.owned_.insert(d.owned_.end(), reinterpret_cast<const uint8_t*>(&v),
                      reinterpret_cast<const uint8_t*>(&v) + d.width_);
    }
  }
  d.count_ = int64_t(d.owned_.size() / size_t(d.width_));
  MAMBA_CHECK(d.count_ > 0, "{}: no text to train on (empty file or folder)", path);
  d.tokens_ = d.owned_.data();
  return d;
}

bool TokenData::is_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, kMagic, 8) == 0;
}

TokenData TokenData::open(const std::string& path) {
  TokenData d;
  d.source_ = path;
  d.file_ = std::make_unique<MappedFile>(path);
  const uint8_t* p = d.file_->data();
  const size_t size = d.file_->size();
  MAMBA_CHECK(size >= kHeaderBytes, "{}: not a token file (only {} bytes, the header needs {})", path, size,
              kHeaderBytes);
  MAMBA_CHECK(std::memcmp(p, kMagic, 8) == 0, "{}: not a token file (bad magic)", path);
  const uint32_t version = read_le<uint32_t>(p + 8);
  MAMBA_CHECK(version == kVersion, "{}: token file version {} is not supported (expected {})", path, version,
              kVersion);
  const uint32_t width = read_le<uint32_t>(p + 12);
  MAMBA_CHECK(width == 1 || width == 2 || width == 4, "{}: bytes per token must be 1, 2 or 4, got {}", path, width);
  const uint64_t count = read_le<uint64_t>(p + 16), ndocs = read_le<uint64_t>(p + 24);
  const uint64_t limit = uint64_t(1) << 40;
  MAMBA_CHECK(count > 0 && count < limit && ndocs < limit, "{}: implausible header (tokens {}, documents {})", path,
              count, ndocs);
  const size_t docs_at = kHeaderBytes + padded(size_t(count) * width);
  const size_t expected = docs_at + size_t(ndocs) * 8;
  MAMBA_CHECK(size == expected, "{}: file is {} bytes but its header implies {} (truncated or damaged)", path, size,
              expected);
  d.width_ = int(width);
  d.count_ = int64_t(count);
  d.text_bytes_ = int64_t(read_le<uint64_t>(p + 32));
  d.tokens_ = p + kHeaderBytes;
  for (uint64_t i = 0; i < ndocs; ++i) {
    const uint64_t s = read_le<uint64_t>(p + docs_at + 8 * i);
    MAMBA_CHECK(s <= count && (i == 0 ? s == 0 : s >= uint64_t(d.docs_.back())),
                "{}: document table entry {} ({}) is out of order or past the {} tokens", path, i, s, count);
    d.docs_.push_back(int64_t(s));
  }
  return d;
}

TokenData TokenData::load(const std::string& path, const Tokenizer* tok) {
  return is_token_file(path) ? open(path) : encode(path, tok);
}

void TokenData::save(const std::string& path) const {
  std::string out(kMagic, 8);
  append_le<uint32_t>(out, kVersion);
  append_le<uint32_t>(out, uint32_t(width_));
  append_le<uint64_t>(out, uint64_t(count_));
  append_le<uint64_t>(out, uint64_t(docs_.size()));
  append_le<uint64_t>(out, uint64_t(text_bytes_));
  const size_t n = size_t(count_) * size_t(width_);
  out.append(reinterpret_cast<const char*>(tokens_), n);
  out.append(padded(n) - n, '\0');
  for (int64_t s : docs_) append_le<uint64_t>(out, uint64_t(s));
  write_file_atomic(path, out);
}

int32_t TokenData::operator[](int64_t i) const {
  const uint8_t* p = tokens_ + i * width_;
  switch (width_) {
    case 1: return *p;
    case 2: return read_le<uint16_t>(p);
    default: return int32_t(read_le<uint32_t>(p));
  }
}

void TokenData::copy(int64_t begin, int64_t n, int32_t* out) const {
  MAMBA_CHECK(begin >= 0 && n >= 0 && begin + n <= count_, "{}: tokens [{}, {}) are outside its {} tokens", source_,
              begin, begin + n, count_);
  for (int64_t i = 0; i < n; ++i) out[i] = (*this)[begin + i];
}

void TokenData::doc_start_flags(int64_t begin, int64_t n, uint8_t* out) const {
  std::fill(out, out + n, uint8_t(0));
  for (auto it = std::upper_bound(docs_.begin(), docs_.end(), begin - 1); it != docs_.end() && *it < begin + n; ++it)
    if (*it > 0) out[*it - begin] = 1;
}

int64_t TokenData::max_token() const {
  int64_t m = 0;
  for (int64_t i = 0; i < count_; ++i) m = std::max<int64_t>(m, uint32_t((*this)[i]));
  return m;
}

}  // namespace mambacpp
