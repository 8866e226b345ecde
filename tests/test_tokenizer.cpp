// Tokenizer tests: golden ids from the reference `tokenizers` library on the Mamba (GPT-NeoX) tokenizer.json,
// and hand-written tokenizer.json files whose expected ids follow from the rules by hand. In every hand-written
// vocabulary byte b has id b, and merge i makes token 256 + i, so the expected ids can be read off directly.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "io/tokenizer.h"
#include "support/test_util.h"

namespace mambacpp {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// The GPT-2 byte characters, written out from their definition: printable Latin-1 bytes stand for themselves,
// the remaining 68 bytes for U+0100, U+0101, ... in byte order.
std::string byte_chars(std::string_view raw) {
  std::string out;
  for (const char ch : raw) {
    const int b = static_cast<unsigned char>(ch);
    int c = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
      c = 0x100;
      for (int k = 0; k < b; ++k) c += !((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE);
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

const char* kByteLevel = R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true})";

struct Spec {
  std::vector<std::pair<std::string, std::string>> merges;  // raw bytes; merge i makes token 256 + i
  json normalizer = nullptr;
  json pre_tokenizer = json::parse(kByteLevel);
  json post_processor = nullptr;
  json added_tokens = json::array();
};

json added(int id, const std::string& content, bool special, bool normalized, bool lstrip = false, bool rstrip = false,
           bool single_word = false) {
  return {{"id", id},         {"content", content},       {"single_word", single_word}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
}

std::string make_json(const Spec& s) {
  json vocab = json::object(), merges = json::array();
  for (int b = 0; b < 256; ++b) vocab[byte_chars(std::string(1, static_cast<char>(b)))] = b;
  for (size_t i = 0; i < s.merges.size(); ++i) {
    const auto& [a, b] = s.merges[i];
    vocab[byte_chars(a + b)] = 256 + static_cast<int>(i);
    merges.push_back(byte_chars(a) + " " + byte_chars(b));
  }
  const json model = {{"type", "BPE"},          {"dropout", nullptr},     {"unk_token", nullptr}, {"fuse_unk", false},
                      {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab},       {"merges", merges}};
  const json root = {{"version", "1.0"},
                     {"added_tokens", s.added_tokens},
                     {"normalizer", s.normalizer},
                     {"pre_tokenizer", s.pre_tokenizer},
                     {"post_processor", s.post_processor},
                     {"decoder", json::parse(kByteLevel)},
                     {"model", model}};
  return root.dump();
}

Tokenizer make(const Spec& s) { return Tokenizer::from_json_text(make_json(s), "test.json"); }

// Expects fn to throw mambacpp::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << parts[0];
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

std::string stream_decode(const Tokenizer& tok, const Ids& ids) {
  StreamDecoder dec(tok);
  std::string out;
  for (const int32_t id : ids) out += dec.push(id);
  return out + dec.flush();
}

// tests/golden/tokenizer holds a byte-level BPE tokenizer.json of the GPT-NeoX form and cases.json =
// {"versions": {...}, "cases": [{"text", "ids", "decoded"}, ...]} from the reference library (scripts/make_golden.py).
TEST(Tokenizer, GoldenCasesMatchReference) {
  const std::string tok_path = test::golden("tokenizer/tokenizer.json");
  const std::string cases_path = test::golden("tokenizer/cases.json");
  ASSERT_TRUE(std::filesystem::exists(tok_path) && std::filesystem::exists(cases_path))
      << "missing golden files " << tok_path << " / " << cases_path;
  const Tokenizer tok = Tokenizer::from_file(tok_path);
  const json doc = json::parse(test::read_file(cases_path));
  const json& cases = doc.at("cases");
  ASSERT_GT(cases.size(), 0u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string text = cases[i].at("text").get<std::string>();
    const Ids ids = cases[i].at("ids").get<Ids>();
    const std::string decoded = cases[i].at("decoded").get<std::string>();
    EXPECT_EQ(tok.encode(text), ids) << "case " << i << ": " << text;
    EXPECT_EQ(tok.decode(ids), decoded) << "case " << i << ": " << text;
    EXPECT_EQ(stream_decode(tok, ids), decoded) << "case " << i << ": " << text;
  }
  EXPECT_EQ(tok.token_id("<|endoftext|>"), 0);
  EXPECT_EQ(tok.token_id("<|padding|>"), 1);
}

TEST(Tokenizer, LowestRankMergesFirst) {
  Spec s;
  s.merges = {{"b", "c"}, {"a", "b"}, {"a", "bc"}};  // bc=256, ab=257, abc=258
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("abc"), (Ids{258}));  // b+c (rank 0) before a+b (rank 1), then a+bc
  EXPECT_EQ(tok.encode("ab"), (Ids{257}));
  EXPECT_EQ(tok.encode("cab"), (Ids{99, 257}));
  EXPECT_EQ(tok.encode("abcbc"), (Ids{258, 256}));
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.token_id(byte_chars("ab")), 257);
  EXPECT_EQ(tok.token_id("zz"), -1);
}

TEST(Tokenizer, EqualRanksMergeLeftmostFirst) {
  Spec s;
  s.merges = {{"a", "a"}};  // aa=256
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("aaa"), (Ids{256, 97}));
  EXPECT_EQ(tok.encode("aaaa"), (Ids{256, 256}));
  EXPECT_EQ(tok.encode("aaaaa"), (Ids{256, 256, 97}));
}

TEST(Tokenizer, WhitespaceRunsLeaveTheirLastSpaceToTheNextWord) {
  Spec s;
  s.merges = {{" ", " "}, {" ", "b"}};  // "  "=256, " b"=257
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("a b"), (Ids{97, 257}));
  EXPECT_EQ(tok.encode("a   b"), (Ids{97, 256, 257}));  // "a" "  " " b"
  EXPECT_EQ(tok.encode("a  "), (Ids{97, 256}));         // a run at the end stays whole
  EXPECT_EQ(tok.encode("   "), (Ids{256, 32}));
  EXPECT_EQ(tok.encode("a\n\nb"), (Ids{97, 10, 10, 98}));
  EXPECT_EQ(tok.encode("a \nb"), (Ids{97, 32, 10, 98}));
  EXPECT_EQ(tok.encode("a\t b"), (Ids{97, 9, 257}));
  EXPECT_EQ(tok.encode(""), (Ids{}));
}

TEST(Tokenizer, NoBreakSpaceIsWhiteSpace) {
  Spec s;
  s.merges = {{"\xC2", "\xA0"}, {"\xC2\xA0", "\xC2\xA0"}};  // one U+00A0 = 256, two = 257
  const Tokenizer tok = make(s);
  // Were U+00A0 punctuation-like, the two would form one piece and merge into 257.
  EXPECT_EQ(tok.encode("x\u00A0\u00A0y"), (Ids{120, 256, 256, 121}));
  EXPECT_EQ(tok.encode("x\u00A0\u00A0"), (Ids{120, 257}));
}

TEST(Tokenizer, Contractions) {
  Spec s;
  s.merges = {{"'", "t"}, {"'", "l"}, {"'l", "l"}, {"'", "S"}, {"n", "'"}};  // 't=256 'l=257 'll=258 'S=259 n'=260
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("don't"), (Ids{100, 111, 110, 256}));
  EXPECT_EQ(tok.encode("I'll"), (Ids{73, 258}));
  EXPECT_EQ(tok.encode("I'LL"), (Ids{73, 39, 76, 76}));  // case-sensitive: "'" then "LL"
  EXPECT_EQ(tok.encode("'S"), (Ids{39, 83}));
  EXPECT_EQ(tok.encode("''s"), (Ids{39, 39, 115}));  // "''" is one punctuation run
}

TEST(Tokenizer, DigitRunsAreOneWord) {
  Spec s;
  s.merges = {{"1", "2"}, {"12", "3"}, {" ", "4"}};  // 12=256 123=257 " 4"=258
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("abc1234 4"), (Ids{97, 98, 99, 257, 52, 258}));
  EXPECT_EQ(tok.encode("x12"), (Ids{120, 256}));
}

TEST(Tokenizer, UnicodeGoesThroughTheByteMapping) {
  Spec s;
  s.merges = {{"a", "\xC3"}, {"!", "\xF0"}};  // "a"+first byte of é = 256, "!"+first byte of 🙂 = 257
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("é"), (Ids{195, 169}));
  EXPECT_EQ(tok.encode("aé"), (Ids{256, 169}));  // é is a letter: one word with "a"
  EXPECT_EQ(tok.encode(" 日本語"), (Ids{32, 230, 151, 165, 230, 156, 172, 232, 170, 158}));
  EXPECT_EQ(tok.encode("hi🙂!"), (Ids{104, 105, 240, 159, 153, 130, 33}));
  EXPECT_EQ(tok.encode("!🙂"), (Ids{257, 159, 153, 130}));  // 🙂 is punctuation-like: one word with "!"
  EXPECT_EQ(tok.encode("a\n"), (Ids{97, 10}));
  EXPECT_EQ(tok.encode(std::string("a\0b", 3)), (Ids{97, 0, 98}));
}

TEST(Tokenizer, NfcNormalization) {
  Spec s;
  EXPECT_EQ(make(s).encode("e\u0301"), (Ids{101, 204, 129}));
  s.normalizer = {{"type", "NFC"}};
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("e\u0301"), (Ids{195, 169}));            // é U+00E9
  EXPECT_EQ(tok.encode("\u1100\u1161"), (Ids{234, 176, 128}));  // Hangul jamo compose to 가 U+AC00
  EXPECT_EQ(tok.encode("\u212B"), (Ids{195, 133}));             // ANGSTROM SIGN becomes Å U+00C5
  s.normalizer = json::parse(R"({"type":"Sequence","normalizers":[{"type":"NFC"}]})");
  EXPECT_EQ(make(s).encode("e\u0301"), (Ids{195, 169}));
}

TEST(Tokenizer, SpecialTokensAreSplitOutFirst) {
  Spec s;
  s.added_tokens = json::array({added(256, "<|endoftext|>", true, false)});
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("a<|endoftext|>b"), (Ids{97, 256, 98}));
  EXPECT_EQ(tok.encode("<|endoftext|><|endoftext|>"), (Ids{256, 256}));
  EXPECT_EQ(tok.encode("<|endoftext|"), (Ids{60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124}));
  EXPECT_EQ(tok.decode({97, 256, 98}), "a<|endoftext|>b");
  EXPECT_EQ(tok.token_id("<|endoftext|>"), 256);
  EXPECT_EQ(tok.vocab_size(), 257);
}

TEST(Tokenizer, WhitespaceAddedTokensMatchLongestFirst) {
  Spec s;  // as in GPT-NeoX: runs of spaces, normalized, not special
  s.added_tokens = json::array({added(256, "   ", false, true), added(257, "  ", false, true)});
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("a  b"), (Ids{97, 257, 98}));
  EXPECT_EQ(tok.encode("a    b"), (Ids{97, 256, 32, 98}));  // "   " then " b"
  EXPECT_EQ(tok.encode("a     b"), (Ids{97, 256, 257, 98}));
  EXPECT_EQ(tok.decode({97, 256, 32, 98}), "a    b");
}

TEST(Tokenizer, NormalizedAddedTokensMatchNormalizedText) {
  Spec s;
  s.normalizer = {{"type", "NFC"}};
  s.added_tokens = json::array({added(256, "café", false, true)});
  EXPECT_EQ(make(s).encode("cafe\u0301!"), (Ids{256, 33}));
  s.added_tokens = json::array({added(256, "café", false, false)});  // matched on the raw text only
  EXPECT_EQ(make(s).encode("cafe\u0301!"), (Ids{99, 97, 102, 195, 169, 33}));
  EXPECT_EQ(make(s).encode("café!"), (Ids{256, 33}));
}

TEST(Tokenizer, AddedTokensStripAndSingleWord) {
  Spec s;
  s.added_tokens = json::array(
      {added(256, "<mask>", true, false, /*lstrip=*/true), added(257, "[R]", true, false, false, /*rstrip=*/true),
       added(258, "ab", false, true, false, false, /*single_word=*/true), added(259, "<m>", true, false)});
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("a  <mask>b"), (Ids{97, 256, 98}));
  EXPECT_EQ(tok.encode("a  <m>b"), (Ids{97, 32, 32, 259, 98}));
  EXPECT_EQ(tok.encode("[R]  b"), (Ids{257, 98}));
  EXPECT_EQ(tok.encode("ab cab ab_"), (Ids{258, 32, 99, 97, 98, 32, 97, 98, 95}));
}

TEST(Tokenizer, AddedTokenIdsFollowTheReferenceRule) {
  Spec s;  // ids written in the file are not used: a known token keeps its id, others count from the vocab size
  s.merges = {{"h", "i"}};  // hi=256
  s.added_tokens = json::array({added(900, "hi", false, true), added(901, "<new>", true, false)});
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.token_id("hi"), 256);
  EXPECT_EQ(tok.token_id("<new>"), 257);
  EXPECT_EQ(tok.encode("hi<new>"), (Ids{256, 257}));
}

TEST(Tokenizer, PrefixSpaceAndTemplate) {
  Spec s;
  s.merges = {{" ", "a"}};  // " a"=256
  s.pre_tokenizer = json::parse(R"({"type":"Sequence","pretokenizers":[
      {"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}]})");
  s.added_tokens = json::array({added(257, "<s>", true, false)});
  s.post_processor = json::parse(R"({"type":"TemplateProcessing",
      "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
      "pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
      "special_tokens":{"<s>":{"id":"<s>","ids":[257],"tokens":["<s>"]}}})");
  const Tokenizer tok = make(s);
  EXPECT_EQ(tok.encode("a"), (Ids{257, 256}));
  EXPECT_EQ(tok.encode(" a"), (Ids{257, 256}));
  EXPECT_EQ(tok.encode("a<s>a"), (Ids{257, 256, 257, 256}));  // each piece gets its prefix space
}

TEST(Tokenizer, DecodeRoundTripAndReplacement) {
  Spec s;
  s.merges = {{" ", "t"}, {" t", "h"}, {"e", " "}};
  s.added_tokens = json::array({added(259, "<|endoftext|>", true, false), added(260, "  ", false, true)});
  const Tokenizer tok = make(s);
  for (const std::string text :
       {"the cat's 12 hats", "  x\t\n\r\n  y  ", "é 日本語 🙂!", "<|endoftext|> a", ""}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
    EXPECT_EQ(stream_decode(tok, tok.encode(text)), text);
  }
  EXPECT_EQ(tok.decode({195}), "\uFFFD");
  EXPECT_EQ(tok.decode({240, 159, 97}), "\uFFFDa");              // a cut 4-byte character is one U+FFFD
  EXPECT_EQ(tok.decode({224, 128, 97}), "\uFFFD\uFFFDa");        // E0 80 is ill-formed from its second byte
  EXPECT_EQ(tok.decode({237, 160, 128}), "\uFFFD\uFFFD\uFFFD");  // a surrogate
}

TEST(Tokenizer, StreamDecoderHoldsBackHalfCharacters) {
  const Tokenizer tok = make(Spec{});
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(104), "h");
  EXPECT_EQ(dec.push(240), "");
  EXPECT_EQ(dec.push(159), "");
  EXPECT_EQ(dec.push(153), "");
  EXPECT_EQ(dec.push(130), "🙂");
  EXPECT_EQ(dec.push(33), "!");
  EXPECT_EQ(dec.flush(), "");
  EXPECT_EQ(dec.push(226), "");
  EXPECT_EQ(dec.push(130), "");
  EXPECT_EQ(dec.flush(), "\uFFFD");
  EXPECT_EQ(dec.push(128), "\uFFFD");
  EXPECT_EQ(dec.push(195), "");
  EXPECT_EQ(dec.push(65), "\uFFFDA");
  EXPECT_THROW(dec.push(300), Error);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  Spec s;
  s.merges = {{"t", "h"}, {"th", "e"}, {" ", "the"}};
  const Tokenizer tok = make(s);
  const std::string text = "the other theme of the thesis, then the end. ";
  const Ids expected = tok.encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) ok[t] += tok.encode(text + std::to_string(k % 7)).size() == expected.size() + 1;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 200);
}

TEST(Tokenizer, BadTextAndIds) {
  const Tokenizer tok = make(Spec{});
  expect_error([&] { tok.encode("ab\xFF"); }, {"test.json", "UTF-8", "byte offset 2"});
  expect_error([&] { tok.encode("a\xC3"); }, {"byte offset 1"});
  expect_error([&] { tok.encode("\xED\xA0\x80"); }, {"byte offset 0"});
  expect_error([&] { tok.encode("\xC0\xAF"); }, {"byte offset 0"});
  expect_error([&] { tok.decode({256}); }, {"256", "out of range"});
  expect_error([&] { tok.decode({-1}); }, {"-1", "out of range"});
}

TEST(Tokenizer, BadFiles) {
  const std::string good = make_json(Spec{});
  auto load_edited = [&](const std::function<void(json&)>& edit) {
    json j = json::parse(good);
    edit(j);
    Tokenizer::from_json_text(j.dump(), "bad.json");
  };
  expect_error([&] { Tokenizer::from_json_text("{\"model\": [1, 2", "bad.json"); }, {"bad.json", "malformed JSON"});
  expect_error([&] { Tokenizer::from_json_text("[]", "bad.json"); }, {"bad.json", "object"});
  expect_error([&] { load_edited([](json& j) { j.erase("model"); }); }, {"bad.json", "missing field 'model'"});
  expect_error([&] { load_edited([](json& j) { j["model"]["type"] = "WordPiece"; }); }, {"model", "WordPiece"});
  expect_error([&] { load_edited([](json& j) { j["model"].erase("vocab"); }); }, {"model", "'vocab'"});
  expect_error([&] { load_edited([](json& j) { j["model"]["merges"] = {"x \xC4\xA0\xC4\xA0"}; }); },
               {"model.merges[0]", "'ĠĠ'", "not in the vocabulary"});
  expect_error([&] { load_edited([](json& j) { j["model"]["merges"] = {"a b c"}; }); }, {"model.merges[0]"});
  expect_error([&] { load_edited([](json& j) { j["model"]["vocab"]["a"] = "x"; }); }, {"model.vocab[\"a\"]"});
  expect_error([&] { load_edited([](json& j) { j["model"]["vocab"]["zz"] = 3; }); }, {"id 3"});
  expect_error([&] { load_edited([](json& j) { j["model"]["unk_token"] = "<unk>"; }); }, {"model.unk_token"});
  expect_error([&] { load_edited([](json& j) { j["model"]["dropout"] = 0.1; }); }, {"model.dropout"});
  expect_error([&] { load_edited([](json& j) {
                       j["normalizer"] = {{"type", "NFKC"}};
                     }); },
               {"normalizer", "'NFKC'", "not supported"});
  expect_error([&] { load_edited([](json& j) {
                       j["pre_tokenizer"] = {{"type", "Whitespace"}};
                     }); },
               {"pre_tokenizer", "'Whitespace'"});
  expect_error([&] { load_edited([](json& j) { j["pre_tokenizer"].erase("add_prefix_space"); }); },
               {"add_prefix_space"});
  expect_error([&] { load_edited([](json& j) {
                       j["decoder"] = {{"type", "WordPiece"}};
                     }); },
               {"decoder", "'WordPiece'"});
  expect_error([&] { load_edited([](json& j) {
                       j["post_processor"] = {{"type", "BertProcessing"}};
                     }); },
               {"post_processor", "'BertProcessing'"});
  expect_error([&] { load_edited([](json& j) {
                       j["added_tokens"] = {{{"id", 5}}};
                     }); },
               {"added_tokens[0]", "'content'"});
  expect_error([&] { Tokenizer::from_file("/nonexistent/tokenizer.json"); }, {"/nonexistent/tokenizer.json"});
}

}  // namespace
}  // namespace mambacpp
