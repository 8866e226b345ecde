// Token files: a corpus encoded once (bytes as tokens, vocabulary 256, or a tokenizer.json's ids) and read
// back memory-mapped for training and evaluation.
//
// Layout (little-endian):
//   offset 0   8 bytes  magic "MAMBATOK"
//          8   u32      version (1)
//         12   u32      bytes per token: 1 (u8), 2 (u16) or 4 (u32)
//         16   u64      token count
//         24   u64      document count
//         32   u64      bytes of source text (for bits per byte)
//         40   count tokens, zero-padded to a multiple of 8 bytes
//         then u64 × document count: each document's first token (0 first, non-decreasing, ≤ count)
// The file size must be exactly what the header implies.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mambacpp {

class MappedFile;
class Tokenizer;

// Tokens held in memory or mapped from a token file, with the documents they came from.
class TokenData {
 public:
  // Encodes a text file, or every regular file under a folder (sorted by path, each one a document), as bytes
  // (tok == nullptr) or with `tok`. Throws Error naming the path when it is missing, unreadable or has no text.
  static TokenData encode(const std::string& path, const Tokenizer* tok);
  // Maps a token file, validating its header, size and document table; errors name the file.
  static TokenData open(const std::string& path);
  // True when `path` is a regular file starting with the token-file magic.
  static bool is_token_file(const std::string& path);
  // A token file in `path`, the text file/folder encoded as `encode` does otherwise.
  static TokenData load(const std::string& path, const Tokenizer* tok);

  TokenData();
  ~TokenData();
  TokenData(TokenData&&) noexcept;
  TokenData& operator=(TokenData&&) noexcept;

  // Writes this data as a token file, atomically; errors name `path`.
  void save(const std::string& path) const;

  int64_t size() const { return count_; }
  int32_t operator[](int64_t i) const;
  // Copies tokens [begin, begin + n) into out.
  void copy(int64_t begin, int64_t n, int32_t* out) const;
  // out[i] = 1 when token begin + i starts a document (after the first token of the file), else 0.
  void doc_start_flags(int64_t begin, int64_t n, uint8_t* out) const;
  int64_t max_token() const;
  const std::vector<int64_t>& doc_starts() const { return docs_; }
  int64_t text_bytes() const { return text_bytes_; }
  int bytes_per_token() const { return width_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<MappedFile> file_;
  std::vector<uint8_t> owned_;
  const uint8_t* tokens_ = nullptr;
  int64_t count_ = 0;
  int width_ = 1;
  int64_t text_bytes_ = 0;
  std::vector<int64_t> docs_;
};

}  // namespace mambacpp
