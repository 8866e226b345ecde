// Safetensors reader: memory-maps one file, or every shard named by a model.safetensors.index.json, validates
// the header completely before any tensor is used, and hands out Tensor views of the mapped bytes.
//
// File layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[a, b]},
// "__metadata__": {...}}, then the data block; offsets are relative to the data block's start.
// Validation: N within the file; JSON well formed; dtype one of F32/BF16/F16 (others are reported by name);
// b - a == numel · element size; ranges inside the data block and not overlapping. Every error names the file
// and, where there is one, the tensor.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

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
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // A view of the named tensor's bytes (read-only memory: never write through it). Throws if absent.
  Tensor get(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, Tensor> tensors_;
};

// A checkpoint's tensors, from `dir/model.safetensors` or from the shards listed in
// `dir/model.safetensors.index.json` (weight_map: tensor name -> shard file name).
class TensorStore {
 public:
  explicit TensorStore(const std::string& dir);
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

// Writes tensors (contiguous, on the CPU) to `path` as safetensors, atomically: a temporary file in the same
// folder, flushed and renamed over `path` only once complete. Names are written in sorted order.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mambacpp
