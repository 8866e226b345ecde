// Tests of training data: token files (round trip, every damaged-file error), encoding text files and
// folders, the train/validation split, seeded batching and validation windows.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/tokenizer.h"
#include "support/test_util.h"
#include "train/batcher.h"
#include "train/token_file.h"

namespace mambacpp {
namespace {

using test::expect_error;
using test::TempDir;

TEST(TrainData, ByteFileRoundTripsThroughATokenFile) {
  TempDir dir;
  test::write_file(dir.file("a.txt"), "hello, world\n");
  const TokenData d = TokenData::encode(dir.file("a.txt"), nullptr);
  ASSERT_EQ(d.size(), 13);
  EXPECT_EQ(d[0], 'h');
  EXPECT_EQ(d.text_bytes(), 13);
  d.save(dir.file("a.tok"));
  EXPECT_TRUE(TokenData::is_token_file(dir.file("a.tok")));
  EXPECT_FALSE(TokenData::is_token_file(dir.file("a.txt")));
  const TokenData r = TokenData::load(dir.file("a.tok"), nullptr);
  ASSERT_EQ(r.size(), 13);
  EXPECT_EQ(r.bytes_per_token(), 1);
  for (int64_t i = 0; i < 13; ++i) EXPECT_EQ(r[i], d[i]);
  EXPECT_EQ(r.doc_starts(), std::vector<int64_t>{0});
  EXPECT_EQ(r.max_token(), 'w');
}

TEST(TrainData, FolderIsOneDocumentPerFileInPathOrder) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "corpus" / "sub");
  test::write_file(dir.file("corpus/b.txt"), "bbb");
  test::write_file(dir.file("corpus/a.txt"), "aa");
  test::write_file(dir.file("corpus/empty.txt"), "");
  test::write_file(dir.file("corpus/sub/c.txt"), "c");
  const TokenData d = TokenData::encode(dir.file("corpus"), nullptr);
  EXPECT_EQ(d.size(), 6);
  EXPECT_EQ(d.doc_starts(), (std::vector<int64_t>{0, 2, 5}));
  std::vector<int32_t> all(6);
  d.copy(0, 6, all.data());
  EXPECT_EQ(all, (std::vector<int32_t>{'a', 'a', 'b', 'b', 'b', 'c'}));
  d.save(dir.file("c.tok"));
  EXPECT_EQ(TokenData::open(dir.file("c.tok")).doc_starts(), d.doc_starts());
  std::vector<uint8_t> flags(4, 9);
  d.doc_start_flags(1, 4, flags.data());  // tokens 1..4: document 1 starts at token 2
  EXPECT_EQ(flags, (std::vector<uint8_t>{0, 1, 0, 0}));
  d.doc_start_flags(0, 6, (flags = std::vector<uint8_t>(6)).data());
  EXPECT_EQ(flags, (std::vector<uint8_t>{0, 0, 1, 0, 0, 1}));  // the file's first token is no boundary
  const BatchSampler s(d, TokenRange{0, 6}, 3, 2, 1);
  std::vector<int32_t> ids(9);
  std::vector<uint8_t> starts(9);
  s.fill(0, ids.data(), starts.data());
  for (int w = 0; w < 3; ++w) {
    const int64_t at = ids[w * 3] == 'a' ? (ids[w * 3 + 1] == 'a' ? 0 : 1) : ids[w * 3 + 2] == 'b' ? 2 : 3;
    std::vector<uint8_t> want(3);
    d.doc_start_flags(at, 3, want.data());
    EXPECT_EQ(std::vector<uint8_t>(starts.begin() + w * 3, starts.begin() + w * 3 + 3), want) << "window " << w;
  }
}

TEST(TrainData, TokenizerIdsRoundTripAsSixteenBits) {
  const Tokenizer tok = Tokenizer::from_file(test::golden("tokenizer/tokenizer.json"));
  TempDir dir;
  const std::string text = "To be, or not to be: that is the question.";
  test::write_file(dir.file("t.txt"), text);
  const TokenData d = TokenData::encode(dir.file("t.txt"), &tok);
  const std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(d.size(), int64_t(ids.size()));
  d.save(dir.file("t.tok"));
  const TokenData r = TokenData::open(dir.file("t.tok"));
  EXPECT_EQ(r.bytes_per_token(), 2);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(r[int64_t(i)], ids[i]);
  EXPECT_EQ(r.text_bytes(), int64_t(text.size()));
}

TEST(TrainData, BadFilesNameTheFile) {
  TempDir dir;
  expect_error([&] { TokenData::load(dir.file("missing.txt"), nullptr); }, {"missing.txt", "no such file"});
  test::write_file(dir.file("empty.txt"), "");
  expect_error([&] { TokenData::load(dir.file("empty.txt"), nullptr); }, {"empty.txt", "no text"});
  std::filesystem::create_directories(dir.path() / "void");
  expect_error([&] { TokenData::load(dir.file("void"), nullptr); }, {"void", "no text"});

  test::write_file(dir.file("a.txt"), "abcdefghij");
  TokenData::encode(dir.file("a.txt"), nullptr).save(dir.file("a.tok"));
  const std::string good = test::read_file(dir.file("a.tok"));
  const auto damaged = [&](size_t at, char c, const std::vector<std::string>& parts) {
    std::string b = good;
    b[at] = c;
    test::write_file(dir.file("bad.tok"), b);
    expect_error([&] { TokenData::open(dir.file("bad.tok")); }, parts);
  };
  damaged(0, 'X', {"bad.tok", "bad magic"});
  damaged(8, 2, {"bad.tok", "version 2"});
  damaged(12, 3, {"bad.tok", "bytes per token"});
  damaged(16, 20, {"bad.tok", "truncated"});
  damaged(40 + 16, 5, {"bad.tok", "document table"});
  test::write_file(dir.file("bad.tok"), good.substr(0, good.size() - 1));
  expect_error([&] { TokenData::open(dir.file("bad.tok")); }, {"bad.tok", "truncated"});
  test::write_file(dir.file("bad.tok"), good.substr(0, 20));
  expect_error([&] { TokenData::open(dir.file("bad.tok")); }, {"bad.tok", "header"});
}

TEST(TrainData, SplitIsFirstNinetyPercent) {
  TokenRange tr, va;
  split_tokens(1000, 0.9, tr, va);
  EXPECT_EQ(tr.begin, 0);
  EXPECT_EQ(tr.end, 900);
  EXPECT_EQ(va.begin, 900);
  EXPECT_EQ(va.end, 1000);
  split_tokens(1115394, 0.9, tr, va);
  EXPECT_EQ(tr.end, 1003854);
}

TEST(TrainData, BatchesAreSeededAndStayInTheirRange) {
  TempDir dir;
  std::string text(5000, ' ');
  for (size_t i = 0; i < text.size(); ++i) text[i] = char('a' + i % 26);
  test::write_file(dir.file("a.txt"), text);
  const TokenData d = TokenData::encode(dir.file("a.txt"), nullptr);
  TokenRange tr, va;
  split_tokens(d.size(), 0.9, tr, va);
  const BatchSampler s1(d, tr, 4, 16, 7), s2(d, tr, 4, 16, 7), s3(d, tr, 4, 16, 8);
  std::vector<int32_t> a(4 * 17), b(4 * 17), c(4 * 17), e(4 * 17);
  s1.fill(3, a.data());
  s1.fill(5, e.data());
  s2.fill(3, b.data());
  s3.fill(3, c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, e);
  // Each window is a contiguous piece of the text (consecutive letters).
  for (int w = 0; w < 4; ++w)
    for (int t = 0; t < 16; ++t) EXPECT_EQ((a[w * 17 + t] - 'a' + 1) % 26, a[w * 17 + t + 1] - 'a');
  // Offsets over many batches cover the training part and never reach the validation part.
  const BatchSampler one(d, TokenRange{0, 20}, 1, 16, 1);
  std::set<int32_t> firsts;
  std::vector<int32_t> w(17);
  for (int i = 0; i < 200; ++i) {
    one.fill(i, w.data());
    firsts.insert(w[0]);
  }
  EXPECT_EQ(firsts.size(), 4u);  // offsets 0..3
  expect_error([&] { BatchSampler(d, TokenRange{0, 16}, 1, 16, 1); }, {"a.txt", "fewer than one window"});
}

TEST(TrainData, ValidationWindowsDoNotOverlap) {
  TempDir dir;
  test::write_file(dir.file("a.txt"), std::string(1000, 'x'));
  const TokenData d = TokenData::encode(dir.file("a.txt"), nullptr);
  TokenRange tr, va;
  split_tokens(d.size(), 0.9, tr, va);
  EXPECT_EQ(eval_windows(d, va, 32), (std::vector<int64_t>{900, 932, 964}));
  EXPECT_EQ(eval_windows(d, va, 99), (std::vector<int64_t>{900}));
  expect_error([&] { eval_windows(d, va, 100); }, {"a.txt", "evaluation part has 100 tokens"});
}

}  // namespace
}  // namespace mambacpp
