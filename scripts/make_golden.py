#!/usr/bin/env python3
"""Builds the golden reference files under tests/golden from Hugging Face transformers and tokenizers.

Runs where torch, transformers and tokenizers are installed (not needed to build or test mambacpp):

    python3 scripts/make_golden.py --corpus ../shared/data/tinyshakespeare.txt --out tests/golden

It writes
  tokenizer/tokenizer.json   a byte-level BPE tokenizer of the GPT-NeoX-20B form (NFC normalizer, ByteLevel
                             pre-tokenizer and decoder, <|endoftext|>/<|padding|> specials, whitespace-run
                             added tokens), trained on the corpus plus a multilingual sample
  tokenizer/cases.json       texts with the ids `tokenizers` gives them and their decoding
  models/NAME/               small random MambaForCausalLM checkpoints (save_pretrained: config.json,
                             model.safetensors or shards + index) with tokenizer.json, and
      expected.json          input ids, greedy continuations (with the smallest top-1/top-2 logit margin met
                             along the way), the loss, versions and seed
      expected.safetensors   logits per case and the gradient of the loss for every parameter ("grad.NAME")
Reference values are computed in float64 on the CPU (the model's own casts to float32 included).
"""
import argparse
import json
import os
import platform

import numpy as np
import torch
import tokenizers
import transformers
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import MambaConfig, MambaForCausalLM

SEED = 20261122

MULTILINGUAL = """\
Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ? Ça va très bien, merci.
Größe, Übermut und Spaß: die Straße ist schön. Ich heiße Jürgen.
吾輩は猫である。名前はまだ無い。日本語のテキストも少し入れておく。東京、大阪、京都。
我们在学习状态空间模型。中文文本测试。
Привет, мир! Как дела? Это тест на русском языке.
Ελληνικά: καλημέρα κόσμε. العربية: مرحبا بالعالم. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया।
Emoji: 🙂 😀 👍🏽 🇫🇷 👨‍👩‍👧 ❤️ 🐍 🚀 — “quotes” ‘single’ «guillemets» … ½ ² € £ ¥
def scan(u, delta, A, B, C):
    h = 0.0
    for t in range(len(u)):
        h = torch.exp(delta[t] * A) * h + delta[t] * B[t] * u[t]
    return [1, 22, 333, 4444, 55555, 0.5e-3, 0x1F]
int main(int argc, char** argv) { return argc > 1 ? 0 : 1; }  // C++
\tTabs\tand   spaces    and\n\nnewlines\r\n
"""

TOKENIZER_CASES = [
    "Hello, world!",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "  leading spaces and trailing spaces   ",
    "multiple     spaces\there\t\ttabs\n\n\nnewlines\r\nwindows",
    "I'm sure they've said we'll go; it's theirs, you'd think. DON'T SHOUT'S",
    "digits 0 12 345 6789 3.14159 1,000,000 2026-11-22 0x7fff",
    "café naïve résumé coöperate Ångström",
    "composed e\u0301 vs precomposed \u00e9 and A\u030a",
    "日本語のテキスト、東京。中文。한국어 텍스트",
    "Привет, мир! Ελληνικά. مرحبا. שלום.",
    "emoji 🙂😀👍🏽🇫🇷 family 👨‍👩‍👧 heart ❤️ snake 🐍",
    "def f(x):\n    return x ** 2  # square\n\nfor i in range(10):\n        print(i)",
    "if (a && b || !c) { x += y >> 2; } // done",
    "<|endoftext|>",
    "text before<|endoftext|>text after <|padding|> and <|endoftext|><|endoftext|>",
    "",
    " ",
    "\n",
    "a",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "zero\u200bwidth joiner\u200d and soft\u00adhyphen",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ ﬁ ligature",
    "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
    "punctuation!!! ??? ... --- ''' \"\"\" ((( ))) [[[ ]]] {{{ }}}",
    "                        twenty-four spaces then text",
    "end with spaces    ",
    "The quick brown fox jumps over the lazy dog. " * 3,
]


def train_tokenizer(corpus_text):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = corpus_text.splitlines(keepends=True) + MULTILINGUAL.splitlines(keepends=True) * 20
    tok.train_from_iterator(lines, trainer)
    tok.add_tokens([AddedToken(" " * k, normalized=True) for k in range(24, 1, -1)])
    return tok


def tokenizer_cases(tok, corpus_text):
    texts = list(TOKENIZER_CASES) + [corpus_text[:2000], MULTILINGUAL]
    cases = []
    for t in texts:
        ids = tok.encode(t).ids
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


MODEL_SPECS = {
    # d_state != 16, explicit dt_rank, tied head, no projection biases, conv width 4
    "tied": dict(hidden_size=64, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4, time_step_rank=8,
                 use_bias=False, use_conv_bias=True, tie_word_embeddings=True, layer_norm_epsilon=1e-5),
    # odd d_state, dt_rank "auto", conv width 3, untied head, projection biases, no conv bias, sharded files
    "untied": dict(hidden_size=48, state_size=5, num_hidden_layers=3, expand=2, conv_kernel=3, time_step_rank="auto",
                   use_bias=True, use_conv_bias=False, tie_word_embeddings=False, layer_norm_epsilon=1e-6),
}


def perturb(model, gen):
    """Moves every parameter away from its initial value so that nothing is tested at a trivial point."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if name.endswith("A_log"):
                p.add_(0.3 * noise)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * noise)
            elif name.endswith("dt_proj.bias"):
                p.add_(0.5 * noise)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif "embeddings" in name:
                # small beside the layers' output, so that a tied head does not just echo the current token
                p.copy_(0.2 * noise)
            elif "lm_head" in name:
                p.copy_(0.5 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "out_proj" in name:
                # as large as the embedding, so that the layers and not the current token decide the logits
                p.copy_(noise / p.shape[1] ** 0.5)
            else:
                p.add_(0.05 * noise)


def greedy(model, prompt, steps):
    """Greedy continuation through generate() (recurrent cache path), with the smallest top-2 margin."""
    out = model.generate(torch.tensor([prompt]), max_new_tokens=steps, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
    new_ids = out.sequences[0, len(prompt):].tolist()
    margins = []
    for s in out.scores:
        top = torch.topk(s[0].double(), 2).values
        margins.append(float(top[0] - top[1]))
    return new_ids, min(margins)


def build_model(name, spec, vocab, tok, out_dir, gen):
    cfg = MambaConfig(vocab_size=vocab, pad_token_id=1, bos_token_id=0, eos_token_id=0, **spec)
    torch.manual_seed(SEED)
    model = MambaForCausalLM(cfg).double().eval()
    perturb(model, gen)
    mdir = os.path.join(out_dir, "models", name)
    os.makedirs(mdir, exist_ok=True)
    shard = {"max_shard_size": "200KB"} if name == "untied" else {}
    model.float().save_pretrained(mdir, safe_serialization=True, **shard)
    model.double()
    tok.save(os.path.join(mdir, "tokenizer.json"))

    tensors, cases = {}, []
    random_ids = torch.randint(0, vocab, (2, 37), generator=gen)
    text_ids = torch.tensor([tok.encode("First Citizen:\nBefore we proceed any further, hear me speak.").ids])
    single = torch.randint(0, vocab, (1, 1), generator=gen)
    for i, ids in enumerate([random_ids, text_ids, single]):
        with torch.no_grad():
            logits = model(ids).logits
        tensors[f"logits.{i}"] = logits.float().contiguous()
        cases.append({"input_ids": ids.tolist(), "logits": f"logits.{i}"})

    model.zero_grad()
    loss_ids = random_ids
    out = model(loss_ids, labels=loss_ids)
    out.loss.backward()
    out.loss = out.loss.detach()
    for pname, p in model.named_parameters():
        tensors[f"grad.{pname}"] = p.grad.float().contiguous()

    # Of several prompts, keep three whose continuations never come near a tie (a top-1/top-2 margin under 0.01
    # could be decided by rounding rather than by the model), preferring those that visit the most distinct
    # tokens (a random model often settles on repeating one). The margins are recorded beside them.
    candidates = [text_ids[0].tolist()] + [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in range(1, 20)]
    greedy_cases = []
    for prompt in candidates:
        with torch.no_grad():
            new_ids, margin = greedy(model, prompt, 20)
        greedy_cases.append({"prompt_ids": prompt, "new_ids": new_ids, "min_margin": margin})
    clear = [g for g in greedy_cases if g["min_margin"] >= 0.01]
    greedy_cases = sorted(clear, key=lambda g: (-len(set(g["new_ids"])), -g["min_margin"]))[:3]
    assert len(greedy_cases) == 3, "too few prompts gave a clear greedy continuation"

    save_file(tensors, os.path.join(mdir, "expected.safetensors"))
    expected = {
        "seed": SEED,
        "versions": versions(),
        "precision": "float64 on CPU",
        "logits": cases,
        "loss": {"input_ids": loss_ids.tolist(), "labels": "input_ids shifted by one (transformers' own)",
                 "value": float(out.loss)},
        "greedy": greedy_cases,
        "parameters": [n for n, _ in model.named_parameters()],
    }
    with open(os.path.join(mdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{name}: params {sum(p.numel() for p in model.parameters())}, logits std "
          f"{float(tensors['logits.0'].std()):.3f}, loss {float(out.loss):.4f}, "
          f"greedy margins {[round(g['min_margin'], 4) for g in greedy_cases]}, "
          f"distinct new ids {[len(set(g['new_ids'])) for g in greedy_cases]}")


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version(), "numpy": np.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="text used to train the tokenizer (tinyshakespeare.txt)")
    ap.add_argument("--out", required=True, help="output folder (tests/golden)")
    args = ap.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        corpus = f.read()
    torch.set_grad_enabled(True)
    gen = torch.Generator().manual_seed(SEED)

    os.makedirs(os.path.join(args.out, "tokenizer"), exist_ok=True)
    tok = train_tokenizer(corpus)
    tok.save(os.path.join(args.out, "tokenizer", "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer", "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions(), "cases": tokenizer_cases(tok, corpus)}, f, ensure_ascii=False, indent=1)
    vocab = (tok.get_vocab_size() + 7) // 8 * 8
    print(f"tokenizer: {tok.get_vocab_size()} tokens, model vocab {vocab}")

    for name, spec in MODEL_SPECS.items():
        build_model(name, spec, vocab, tok, args.out, gen)


if __name__ == "__main__":
    main()
