// Tests of the safetensors reader and writer, sharded checkpoints (TensorStore), and every malformed-file path:
// each bad input must raise mambacpp::Error naming the file and, where there is one, the tensor.
#include <signal.h>
#include <sys/resource.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using test::expect_error;

namespace fs = std::filesystem;
using test::TempDir;

// Runs `f`, expecting an Error whose message contains every one of `parts`.
// A safetensors file by hand: 8-byte little-endian length (of `header` unless given), header, data.
std::string raw_file(const std::string& header, const std::string& data, uint64_t length = UINT64_MAX) {
  const uint64_t n = length == UINT64_MAX ? header.size() : length;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(n >> (8 * i)));
  return out + header + data;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A few tensors of each readable dtype, with known contents.
struct Sample {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  std::vector<uint16_t> b = {f32_to_bf16(1.0f), f32_to_bf16(-0.5f), f32_to_bf16(3.0f), f32_to_bf16(100.0f)};
  std::vector<uint16_t> c = {f32_to_f16(0.25f), f32_to_f16(-1.0f), f32_to_f16(2.0f), f32_to_f16(65504.0f)};
  float s = 42.0f;
  std::map<std::string, Tensor> tensors() {
    return {{"a", Tensor(a.data(), DType::f32, {2, 3})},
            {"b", Tensor(b.data(), DType::bf16, {4})},
            {"c", Tensor(c.data(), DType::f16, {1, 2, 2})},
            {"empty", Tensor(a.data(), DType::f32, {0, 3})},
            {"scalar", Tensor(&s, DType::f32, {})}};
  }
};

TEST(Safetensors, SaveThenReadBack) {
  TempDir dir;
  Sample s;
  const std::string path = dir.file("t.safetensors");
  save_safetensors(path, s.tensors(), {{"note", "hello"}});
  const SafetensorsFile f(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c", "empty", "scalar"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "hello");
  const Tensor a = f.get("a");
  EXPECT_EQ(a.dtype, DType::f32);
  EXPECT_EQ(a.shape_str(), "[2, 3]");
  EXPECT_EQ(std::memcmp(a.data, s.a.data(), 24), 0);
  const Tensor b = f.get("b");
  EXPECT_EQ(b.dtype, DType::bf16);
  EXPECT_EQ(std::memcmp(b.data, s.b.data(), 8), 0);
  const Tensor c = f.get("c");
  EXPECT_EQ(c.dtype, DType::f16);
  EXPECT_EQ(c.shape_str(), "[1, 2, 2]");
  EXPECT_EQ(f16_to_f32(c.ptr<uint16_t>()[3]), 65504.0f);
  EXPECT_EQ(f.get("empty").numel(), 0);
  EXPECT_EQ(f.get("scalar").ndim, 0);
  EXPECT_EQ(*f.get("scalar").f32(), 42.0f);
  for (const std::string& n : f.names())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.get(n).data) % dtype_size(f.get(n).dtype), 0u) << n;
}

TEST(Safetensors, WrittenLayoutFollowsTheFormat) {
  TempDir dir;
  Sample s;
  const std::string path = dir.file("t.safetensors");
  save_safetensors(path, s.tensors());
  const std::string bytes = test::read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"}", 0), 0u) << header;
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["a"]["dtype"], "F32");
  EXPECT_EQ(j["b"]["dtype"], "BF16");
  EXPECT_EQ(j["c"]["dtype"], "F16");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json({2, 3}));
  uint64_t total = 0;
  for (const auto& [k, v] : j.items())
    if (k != "__metadata__") total += v["data_offsets"][1].get<uint64_t>() - v["data_offsets"][0].get<uint64_t>();
  EXPECT_EQ(bytes.size(), 8 + n + total);
  // f32 data first (aligned), then the 16-bit tensors
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({0, 24}));
}

TEST(Safetensors, UnpaddedHeaderAndUnalignedDataStillRead) {
  TempDir dir;
  const float x[2] = {3.0f, -4.5f};
  std::string data(1, 'z');
  data.append(reinterpret_cast<const char*>(x), 8);
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  const std::string path = dir.file("h.safetensors");
  test::write_file(path, raw_file(header, data));
  const SafetensorsFile f(path);
  const Tensor t = f.get("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 4, 0u);
  EXPECT_EQ(t.f32()[0], 3.0f);
  EXPECT_EQ(t.f32()[1], -4.5f);
}

TEST(Safetensors, OtherDtypesAreListedButOnlyTheRequestedOneFails) {
  TempDir dir;
  const std::string header = R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
                             R"("q":{"dtype":"Q9_X","shape":[3],"data_offsets":[20,21]}})";
  const std::string path = dir.file("m.safetensors");
  const float one = 1.0f;
  const std::string data = std::string(16, '\0') + std::string(reinterpret_cast<const char*>(&one), 4) + "q";
  test::write_file(path, raw_file(header, data));
  const SafetensorsFile f(path);
  EXPECT_TRUE(f.contains("ids"));
  EXPECT_TRUE(f.contains("q"));
  EXPECT_EQ(f.names(), (std::vector<std::string>{"ids", "q", "w"}));
  EXPECT_EQ(*f.get("w").f32(), 1.0f);
  expect_error([&] { f.get("ids"); }, {path, "'ids'", "I64"});
  expect_error([&] { f.get("q"); }, {path, "'q'", "Q9_X"});
  expect_error([&] { f.get("nope"); }, {path, "'nope'"});
}

struct BadHeader {
  const char* what;
  std::string header;
  std::string data;
  std::vector<std::string> parts;  // besides the file name
};

TEST(Safetensors, EveryMalformedHeaderIsReported) {
  const std::vector<BadHeader> cases = {
      {"not JSON", R"({"a": {"dtype": )", "", {"not valid JSON", "byte"}},
      {"not an object", "[1, 2]", "", {"must be a JSON object"}},
      {"entry not an object", R"({"a": 5})", "", {"'a'", "object"}},
      {"missing dtype", R"({"a":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'), {"'a'", "dtype"}},
      {"dtype not a string", R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'),
       {"'a'", "dtype"}},
      {"missing shape", R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", std::string(4, '\0'), {"'a'", "shape"}},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0'),
       {"'a'", "shape", "-1"}},
      {"fractional dim", R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", std::string(4, '\0'),
       {"'a'", "shape"}},
      {"missing offsets", R"({"a":{"dtype":"F32","shape":[1]}})", std::string(4, '\0'), {"'a'", "data_offsets"}},
      {"three offsets", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", std::string(4, '\0'),
       {"'a'", "data_offsets"}},
      {"reversed offsets", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0'),
       {"'a'", "[4, 0]"}},
      {"wrong byte size", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'),
       {"'a'", "4 bytes", "2 x 4"}},
      {"out of range", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, '\0'),
       {"'a'", "past the end of the data block"}},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],)"
                  R"("data_offsets":[4,12]}})",
       std::string(12, '\0'), {"'a'", "'b'", "overlap"}},
      {"numel overflow", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}})",
       std::string(4, '\0'), {"'a'", "64 bits"}},
      {"byte size overflow", R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})",
       std::string(8, '\0'), {"'a'", "needs"}},
      {"metadata not strings", R"({"__metadata__":{"format":1}})", "", {"__metadata__", "'format'"}},
  };
  for (const BadHeader& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir dir;
    const std::string path = dir.file("bad.safetensors");
    test::write_file(path, raw_file(c.header, c.data));
    std::vector<std::string> parts = c.parts;
    parts.push_back(path);
    expect_error([&] { SafetensorsFile f(path); }, parts);
  }
}

TEST(Safetensors, TruncatedFilesAreReported) {
  TempDir dir;
  Sample s;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, s.tensors());
  const std::string bytes = test::read_file(good);
  const std::string cut_header = dir.file("cut_header.safetensors");
  test::write_file(cut_header, bytes.substr(0, 40));
  expect_error([&] { SafetensorsFile f(cut_header); }, {cut_header, "header length", "truncated"});
  // The last tensor in the data block is a 16-bit one; dropping two bytes leaves it short.
  const std::string cut_data = dir.file("cut_data.safetensors");
  test::write_file(cut_data, bytes.substr(0, bytes.size() - 2));
  expect_error([&] { SafetensorsFile f(cut_data); }, {cut_data, "'c'", "past the end of the data block"});
  const std::string tiny = dir.file("tiny.safetensors");
  test::write_file(tiny, "abc");
  expect_error([&] { SafetensorsFile f(tiny); }, {tiny, "too small"});
  const std::string empty = dir.file("empty.safetensors");
  test::write_file(empty, "");
  expect_error([&] { SafetensorsFile f(empty); }, {empty, "too small"});
  const std::string huge = dir.file("huge.safetensors");
  test::write_file(huge, raw_file("{}", "", uint64_t(1) << 40));
  expect_error([&] { SafetensorsFile f(huge); }, {huge, "header length 1099511627776", "past the end"});
}

TEST(Safetensors, MissingFileAndFolderAreReported) {
  TempDir dir;
  const std::string missing = dir.file("nope.safetensors");
  expect_error([&] { SafetensorsFile f(missing); }, {missing, "No such file"});
  expect_error([&] { SafetensorsFile f(dir.path().string()); }, {dir.path().string(), "directory"});
}

TEST(TensorStore, SingleFileFolderAndFilePath) {
  TempDir dir;
  Sample s;
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, s.tensors());
  for (const std::string& where : {dir.path().string(), path}) {
    const TensorStore store(where);
    EXPECT_EQ(store.names().size(), 5u);
    EXPECT_TRUE(store.contains("a"));
    EXPECT_FALSE(store.contains("zz"));
    EXPECT_EQ(store.source("a"), path);
    EXPECT_EQ(store.get("a").f32()[2], 3.25f);
    expect_error([&] { store.get("zz"); }, {where, "'zz'"});
  }
}

// Writes tensors `a` and `b` to two shards with an index; `index` overrides the weight_map's JSON text.
void write_shards(const TempDir& dir, Sample& s, const std::string& index = "") {
  auto all = s.tensors();
  save_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"a", all["a"]}, {"c", all["c"]}});
  save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"b", all["b"]}});
  const std::string def = R"({"metadata":{"total_size":40},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
                          R"("c":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
  test::write_file(dir.file("model.safetensors.index.json"), index.empty() ? def : index);
}

TEST(TensorStore, ShardedCheckpoint) {
  TempDir dir;
  Sample s;
  write_shards(dir, s);
  const TensorStore store(dir.path().string());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.source("a"), dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(store.source("b"), dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(bf16_to_f32(store.get("b").ptr<uint16_t>()[3]), 100.0f);
  EXPECT_EQ(store.get("a").f32()[5], -7.0f);
}

TEST(TensorStore, BadShardingIsReported) {
  Sample s;
  const std::string index_name = "model.safetensors.index.json";
  {
    TempDir dir;
    write_shards(dir, s, R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"gone.safetensors"}})");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "'gone.safetensors'", "No such file"});
  }
  {
    TempDir dir;
    write_shards(dir, s, R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "'a'", "no such tensor"});
  }
  {
    TempDir dir;
    write_shards(dir, s);
    auto all = s.tensors();
    save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"a", all["a"]}, {"b", all["b"]}});
    expect_error([&] { TensorStore t(dir.path().string()); }, {"'a'", "two shards", "model-00002-of-00002"});
  }
  {
    TempDir dir;
    write_shards(dir, s, R"({"weight_map": {"a": )");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "not valid JSON"});
  }
  {
    TempDir dir;
    write_shards(dir, s, R"({"metadata": {}})");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "weight_map"});
  }
  {
    TempDir dir;
    write_shards(dir, s, R"({"weight_map":{"a":"../model-00001-of-00002.safetensors"}})");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "file name inside"});
  }
  {
    TempDir dir;
    write_shards(dir, s, R"({"weight_map":{"a":7}})");
    expect_error([&] { TensorStore t(dir.path().string()); }, {index_name, "'a'", "shard file name"});
  }
}

TEST(TensorStore, EmptyOrMissingFolder) {
  TempDir dir;
  expect_error([&] { TensorStore t(dir.path().string()); }, {dir.path().string(), "no model.safetensors"});
  const std::string missing = dir.file("absent");
  expect_error([&] { TensorStore t(missing); }, {missing, "not found"});
}

TEST(SaveSafetensors, RejectsWhatCannotBeSaved) {
  TempDir dir;
  std::vector<float> v(6, 1.0f);
  Tensor t(v.data(), DType::f32, {2, 3});
  t.stride[0] = 1;
  t.stride[1] = 2;
  const std::string path = dir.file("x.safetensors");
  expect_error([&] { save_safetensors(path, {{"transposed", t}}); }, {path, "'transposed'", "contiguous"});
  expect_error([&] { save_safetensors(path, {{"__metadata__", Tensor(v.data(), DType::f32, {6})}}); },
               {path, "__metadata__"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(SaveSafetensors, OverwritesAtomically) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  std::vector<float> one = {1.0f}, two = {2.0f, 3.0f};
  save_safetensors(path, {{"w", Tensor(one.data(), DType::f32, {1})}});
  save_safetensors(path, {{"w", Tensor(two.data(), DType::f32, {2})}});
  const SafetensorsFile f(path);
  EXPECT_EQ(f.get("w").numel(), 2);
  EXPECT_EQ(f.get("w").f32()[1], 3.0f);
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"x.safetensors"}));
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::others_read, fs::perms::others_read);
}

TEST(SaveSafetensors, TargetThatIsAFolderIsLeftAlone) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  fs::create_directory(path);
  test::write_file(path + "/keep.txt", "keep");
  std::vector<float> v = {1.0f};
  expect_error([&] { save_safetensors(path, {{"w", Tensor(v.data(), DType::f32, {1})}}); },
               {path, "cannot replace"});
  EXPECT_EQ(test::read_file(path + "/keep.txt"), "keep");
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"model.safetensors"}));
}

TEST(SaveSafetensors, MissingParentFolderIsReported) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/x.safetensors");
  std::vector<float> v = {1.0f};
  expect_error([&] { save_safetensors(path, {{"w", Tensor(v.data(), DType::f32, {1})}}); },
               {path, "No such file"});
  EXPECT_TRUE(entries(dir.path()).empty());
}

// A write that fails part-way (here: the file size limit, which binds root too) leaves the old file intact
// and no temporary file behind.
TEST(SaveSafetensors, FailedWriteKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  std::vector<float> small = {5.0f};
  save_safetensors(path, {{"w", Tensor(small.data(), DType::f32, {1})}});
  const std::string before = test::read_file(path);
  std::vector<float> big(1 << 18, 1.0f);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = 64 * 1024;
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  expect_error([&] { save_safetensors(path, {{"w", Tensor(big.data(), DType::f32, {1 << 18})}}); },
               {path, "write failed"});
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(test::read_file(path), before);
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"x.safetensors"}));
}

}  // namespace
}  // namespace mambacpp
