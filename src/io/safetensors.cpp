// Safetensors reading (validated, memory-mapped), sharded checkpoints, and atomic writing (see safetensors.h).
#include "io/safetensors.h"

#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/error.h"
#include "io/mapped_file.h"

namespace mambacpp {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Element size in bytes of a safetensors dtype name; 0 for a name this reader does not know.
size_t element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},     {"C64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::optional<DType> readable_dtype(const std::string& dtype) {
  if (dtype == "F32") return DType::f32;
  if (dtype == "BF16") return DType::bf16;
  if (dtype == "F16") return DType::f16;
  return std::nullopt;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
  }
  return "?";
}

// One header entry, validated on its own (the ranges are checked together later).
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

uint64_t as_u64(const json& v, const std::string& path, const std::string& name, const char* field) {
  MAMBA_CHECK(v.is_number_unsigned(), "{}: tensor '{}': {} must hold non-negative integers, found {}", path, name,
              field, v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const json& v) {
  MAMBA_CHECK(v.is_object(), "{}: tensor '{}': header entry must be an object, found {}", path, name,
              v.type_name());
  Entry e;
  e.name = name;
  const auto dt = v.find("dtype");
  MAMBA_CHECK(dt != v.end() && dt->is_string(), "{}: tensor '{}': missing or non-string 'dtype'", path, name);
  e.dtype = dt->get<std::string>();
  const auto sh = v.find("shape");
  MAMBA_CHECK(sh != v.end() && sh->is_array(), "{}: tensor '{}': missing or non-array 'shape'", path, name);
  int64_t numel = 1;
  for (const json& d : *sh) {
    const uint64_t dim = as_u64(d, path, name, "shape");
    MAMBA_CHECK(dim <= uint64_t(std::numeric_limits<int64_t>::max()) &&
                    !__builtin_mul_overflow(numel, int64_t(dim), &numel),
                "{}: tensor '{}': shape {} has more elements than fit in 64 bits", path, name, sh->dump());
    e.shape.push_back(int64_t(dim));
  }
  const auto off = v.find("data_offsets");
  MAMBA_CHECK(off != v.end() && off->is_array() && off->size() == 2,
              "{}: tensor '{}': missing 'data_offsets' or not a pair [begin, end]", path, name);
  e.begin = as_u64((*off)[0], path, name, "data_offsets");
  e.end = as_u64((*off)[1], path, name, "data_offsets");
  MAMBA_CHECK(e.begin <= e.end, "{}: tensor '{}': data_offsets [{}, {}] end before they begin", path, name,
              e.begin, e.end);
  const size_t esize = element_size(e.dtype);
  if (esize != 0) {
    uint64_t bytes = 0;
    MAMBA_CHECK(!__builtin_mul_overflow(uint64_t(numel), uint64_t(esize), &bytes) && bytes == e.end - e.begin,
                "{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {} x {} bytes", path,
                name, e.begin, e.end, e.end - e.begin, sh->dump(), e.dtype, numel, esize);
  }
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& v) {
  MAMBA_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings, found {}", path, v.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items()) {
    MAMBA_CHECK(value.is_string(), "{}: __metadata__ entry '{}' must be a string, found {}", path, key,
                value.type_name());
    out[key] = value.get<std::string>();
  }
  return out;
}

// Every range inside the data block, and no two non-empty ranges sharing a byte.
void check_ranges(const std::string& path, std::vector<Entry>& entries, uint64_t data_len) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  const Entry* furthest = nullptr;
  for (const Entry& e : entries) {
    MAMBA_CHECK(e.end <= data_len,
                "{}: tensor '{}': data_offsets [{}, {}] run past the end of the data block ({} bytes); the file is "
                "truncated or corrupt",
                path, e.name, e.begin, e.end, data_len);
    if (e.begin == e.end) continue;
    MAMBA_CHECK(furthest == nullptr || e.begin >= furthest->end,
                "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap in the data block", path, furthest->name,
                furthest->begin, furthest->end, e.name, e.begin, e.end);
    furthest = &e;
  }
}

json parse_json(const std::string& path, const char* what, const char* first, const char* last) {
  try {
    return json::parse(first, last);
  } catch (const json::parse_error& e) {
    fail("{}: {} is not valid JSON (at byte {}): {}", path, what, e.byte, e.what());
  }
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), file_(std::make_unique<MappedFile>(path)) {
  const size_t size = file_->size();
  MAMBA_CHECK(size >= 8, "{}: file of {} bytes is too small to be safetensors (it starts with an 8-byte length)",
              path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file_->data()[i];
  MAMBA_CHECK(n <= size - 8,
              "{}: header length {} runs past the end of the file ({} bytes); the file is truncated or not "
              "safetensors",
              path, n, size);
  const char* first = reinterpret_cast<const char*>(file_->data()) + 8;
  const char* last = first + n;
  while (last > first && last[-1] == '\0') --last;
  const json header = parse_json(path, "the safetensors header", first, last);
  MAMBA_CHECK(header.is_object(), "{}: the safetensors header must be a JSON object, found {}", path,
              header.type_name());
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__")
      metadata_ = parse_metadata(path, value);
    else
      entries.push_back(parse_entry(path, key, value));
  }
  const uint8_t* base = file_->data() + 8 + n;
  check_ranges(path, entries, size - 8 - n);
  for (const Entry& e : entries) {
    const std::optional<DType> dt = readable_dtype(e.dtype);
    if (!dt) {
      unreadable_[e.name] = element_size(e.dtype) == 0
                                ? fmt::format("has dtype '{}', which this reader does not know", e.dtype)
                                : fmt::format("has dtype {}; only F32, BF16 and F16 tensors can be read", e.dtype);
    } else if (e.shape.size() > size_t(kMaxDims)) {
      unreadable_[e.name] = fmt::format("has {} dimensions; at most {} are supported", e.shape.size(), kMaxDims);
    } else if (reinterpret_cast<uintptr_t>(base + e.begin) % dtype_size(*dt) != 0) {
      Buffer copy(e.end - e.begin);
      std::memcpy(copy.data(), base + e.begin, e.end - e.begin);
      tensors_[e.name] = Tensor(const_cast<void*>(copy.data()), *dt, e.shape);
      copies_.push_back(std::move(copy));
    } else {
      tensors_[e.name] = Tensor(const_cast<uint8_t*>(base + e.begin), *dt, e.shape);
    }
  }
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

Tensor SafetensorsFile::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  const auto bad = unreadable_.find(name);
  if (bad != unreadable_.end()) fail("{}: tensor '{}' {}", path_, name, bad->second);
  fail("{}: no tensor named '{}'", path_, name);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors_) out.push_back(kv.first);
  for (const auto& kv : unreadable_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// weight_map of an index file: tensor name -> shard file name (a plain file name inside the folder).
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const MappedFile f(index_path);
  const char* p = reinterpret_cast<const char*>(f.data());
  const json j = parse_json(index_path, "the index", p, p + f.size());
  MAMBA_CHECK(j.is_object(), "{}: the index must be a JSON object, found {}", index_path, j.type_name());
  const auto wm = j.find("weight_map");
  MAMBA_CHECK(wm != j.end() && wm->is_object(), "{}: missing 'weight_map' object", index_path);
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : wm->items()) {
    MAMBA_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a shard file name, found {}", index_path, name,
                shard.dump());
    const std::string s = shard.get<std::string>();
    MAMBA_CHECK(!s.empty() && fs::path(s).filename().string() == s && s != "." && s != "..",
                "{}: weight_map['{}'] = '{}' must be a file name inside the checkpoint folder", index_path, name, s);
    out[name] = s;
  }
  return out;
}

}  // namespace

TensorStore::TensorStore(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  MAMBA_CHECK(fs::exists(st), "{}: checkpoint not found (no such file or folder)", dir);
  std::map<std::string, std::string> weight_map;
  std::string index_path;
  if (!fs::is_directory(st)) {
    files_.emplace_back(dir);
  } else if (fs::exists(fs::path(dir) / "model.safetensors", ec)) {
    files_.emplace_back((fs::path(dir) / "model.safetensors").string());
  } else {
    index_path = (fs::path(dir) / "model.safetensors.index.json").string();
    MAMBA_CHECK(fs::exists(index_path, ec),
                "{}: no model.safetensors or model.safetensors.index.json in this folder", dir);
    weight_map = read_weight_map(index_path);
    std::set<std::string> shards;
    for (const auto& kv : weight_map) shards.insert(kv.second);
    for (const std::string& shard : shards) {
      try {
        files_.emplace_back((fs::path(dir) / shard).string());
      } catch (const Error& e) {
        fail("{}: shard '{}' named in weight_map cannot be read: {}", index_path, shard, e.what());
      }
    }
  }
  for (size_t i = 0; i < files_.size(); ++i) {
    for (const std::string& name : files_[i].names()) {
      const auto [it, fresh] = index_.emplace(name, i);
      MAMBA_CHECK(fresh, "{}: tensor '{}' is in two shards: {} and {}", dir, name, files_[it->second].path(),
                  files_[i].path());
    }
  }
  for (const auto& [name, shard] : weight_map) {
    const auto it = index_.find(name);
    MAMBA_CHECK(it != index_.end() && fs::path(files_[it->second].path()).filename() == shard,
                "{}: weight_map puts tensor '{}' in shard '{}', but that shard has no such tensor", index_path, name,
                shard);
  }
}

bool TensorStore::contains(const std::string& name) const { return index_.count(name) != 0; }

Tensor TensorStore::get(const std::string& name) const {
  const auto it = index_.find(name);
  MAMBA_CHECK(it != index_.end(), "checkpoint {}: no tensor named '{}'", dir_, name);
  return files_[it->second].get(name);
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

std::string TensorStore::source(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? dir_ : files_[it->second].path();
}

namespace {

std::string tensor_header(const Tensor& t, uint64_t begin) {
  json shape = json::array();
  for (int i = 0; i < t.ndim; ++i) shape.push_back(t.shape[i]);
  const json e = {{"dtype", safetensors_dtype_name(t.dtype)},
                  {"shape", shape},
                  {"data_offsets", {begin, begin + t.nbytes()}}};
  return e.dump();
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::string> order;
  for (const auto& [name, t] : tensors) {
    MAMBA_CHECK(!name.empty() && name != "__metadata__", "{}: '{}' cannot be a tensor name", path, name);
    MAMBA_CHECK(t.device == Device::cpu, "{}: tensor '{}' must be on the CPU to be saved", path, name);
    MAMBA_CHECK(t.is_contiguous(), "{}: tensor '{}' must be contiguous to be saved", path, name);
    MAMBA_CHECK(t.defined() || t.numel() == 0, "{}: tensor '{}' has no data", path, name);
    order.push_back(name);
  }
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return dtype_size(tensors.at(a).dtype) > dtype_size(tensors.at(b).dtype);
  });
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");
  std::map<std::string, uint64_t> begin;
  uint64_t offset = 0;
  for (const std::string& name : order) {
    begin[name] = offset;
    offset += tensors.at(name).nbytes();
  }
  std::string header = "{\"__metadata__\":" + json(meta).dump();
  for (const auto& [name, t] : tensors) {
    header += ',';
    header += json(name).dump();
    header += ':';
    header += tensor_header(t, begin[name]);
  }
  header += '}';
  header.resize((header.size() + 7) / 8 * 8, ' ');
  write_file_atomic(path, [&](int fd) {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
    write_all(fd, len, 8, path);
    write_all(fd, header.data(), header.size(), path);
    for (const std::string& name : order) write_all(fd, tensors.at(name).data, tensors.at(name).nbytes(), path);
  });
}

}  // namespace mambacpp
