// Safetensors reader: memory-maps one file, or every shard named by a model.safetensors.index.json, validates
// the header completely before any tensor is used, and hands out Tensor views of the mapped bytes.
//
// File layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[a, b]},
// "__metadata__": {...}}, then the data block; offsets are relative to the data block's start.
// Validation at open: N within the file; JSON well formed and an object; every entry has a dtype string, a
// shape of non-negative integers and data_offsets [a, b] with a <= b; b - a == numel · element size for every
// dtype of the format; ranges inside the data block and not overlapping; __metadata__ a map of strings. Every
// error names the file and, where there is one, the tensor.
// Tensors of other dtypes than F32/BF16/F16 (I64, F64, F8_*, ... or a dtype this reader does not know) may sit
// beside the ones used: they are validated as far as possible and listed, and only get() on one of them is an
// error (naming the tensor and its dtype). Views are aligned to their element size: a tensor the file stores
// unaligned is copied once at open.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"

namespace mambacpp {

class MappedFile;  // an mmap'ed read-only file (io/mapped_file.h)

class SafetensorsFile {
 public:
  // Opens and validates one .safetensors file.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const { return path_; }
  // True for every tensor the header lists, whatever its dtype.
  bool contains(const std::string& name) const { return tensors_.count(name) != 0 || unreadable_.count(name) != 0; }
  // A view of the named tensor's bytes (read-only memory: never write through it). Throws if absent or if its
  // dtype is not F32/BF16/F16 (or it has more than kMaxDims dimensions).
  Tensor get(const std::string& name) const;
  // Every tensor name the header lists, sorted.
  std::vector<std::string> names() const;
  // The header's __metadata__ (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> unreadable_;  // name -> why get() refuses it
  std::map<std::string, std::string> metadata_;
  std::vector<Buffer> copies_;  // aligned copies of tensors stored unaligned
};

// A checkpoint's tensors, from `dir/model.safetensors` or, when that is absent, from the shards listed in
// `dir/model.safetensors.index.json` (weight_map: tensor name -> shard file name, relative to dir). Every
// tensor of the weight_map must be in its shard; a tensor found in two shards is an error. `dir` may also be
// the path of a single .safetensors file.
class TensorStore {
 public:
  explicit TensorStore(const std::string& dir);
  const std::string& dir() const { return dir_; }
  bool contains(const std::string& name) const;
  Tensor get(const std::string& name) const;
  std::vector<std::string> names() const;
  // Where a tensor comes from, for error messages ("dir/model.safetensors").
  std::string source(const std::string& name) const;

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> index_;  // tensor name -> files_ index
  std::string dir_;
};

// Writes tensors (contiguous, on the CPU, f32/bf16/f16) to `path` as safetensors, atomically: a temporary file
// in the same folder, written, flushed to disk and renamed over `path` only once complete; on failure the
// temporary file is removed and `path` is left as it was. The header lists __metadata__ first (with
// "format": "pt" added unless given), then the tensors by name, padded with spaces to a multiple of 8 bytes;
// the data is laid out largest element size first, then by name, so every tensor is aligned.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mambacpp
