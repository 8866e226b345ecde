// Tokenizer: byte-level BPE read from a Hugging Face tokenizer.json (the GPT-NeoX-20B family that Mamba
// checkpoints use): normalizer (NFC where present), added/special tokens matched before the model, the
// ByteLevel pre-tokenizer (GPT-2 split regex, byte-to-unicode mapping), ranked merges, and ByteLevel decoding.
// Ids equal those of the `tokenizers` library for the same tokenizer.json, with encode() doing what its
// `encode(text)` does by default (a TemplateProcessing post-processor's tokens included). Character properties
// come from utf8proc, so characters assigned in a later Unicode version than utf8proc's may split differently.
// encode() and decode() may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mambacpp {

class Tokenizer {
 public:
  // Throws Error naming the file (and the JSON path inside it) when it is missing or malformed, or when it
  // uses a model/pre-tokenizer/normalizer this reader does not implement.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json_text(const std::string& text, const std::string& source);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Throws Error if `text` is not valid UTF-8 (naming the byte offset).
  std::vector<int32_t> encode(std::string_view text) const;
  // Concatenated decoding of `ids` (special tokens included as their text); ill-formed UTF-8 becomes U+FFFD.
  // Ids out of range, or that no token has, throw Error (the reference skips them silently).
  std::string decode(const std::vector<int32_t>& ids) const;
  int64_t vocab_size() const;  // largest id + 1, added tokens included
  // Id of a token's text (e.g. "<|endoftext|>"), or -1.
  int32_t token_id(std::string_view token) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Streaming decoder: push ids one at a time and get back the text that is complete so far; bytes of a UTF-8
// character split across tokens are held back until the character is whole, so output never contains half a
// character. flush() returns what remains (an incomplete tail is replaced by U+FFFD, as the reference does).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace mambacpp
