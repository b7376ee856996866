"""Write a tiny random-weight Llama as one GGUF file that llama.cpp's ``llama-server`` can serve on any CPU.

Like ``tiny_model.py`` for vLLM, but for llama.cpp: no model can be downloaded here, so the model is made here.
A 2-layer Llama (hidden 64 in 2 heads of 32, float32, seeded random weights), a byte-level BPE vocabulary trained on a small word
list (GPT-2 style, so llama.cpp's ``gpt2`` tokenizer reads it), ``<think>``/``</think>`` as single user-defined
tokens, and a ChatML template whose generation prompt opens ``<think>`` like DeepSeek-R1's, so
``--reasoning-format deepseek`` splits every answer into reasoning then content.

Two halves, as in ``tiny_model.py``: the top (``PARAMS``, ``model_file_name``) is standard library for the
launcher; ``write()`` imports ``numpy`` and ``gguf`` and runs inside the small virtualenv the launcher makes for it:
``<venv>/bin/python tiny_gguf.py OUT.gguf``. Next to the model, ``OUT.json`` records the token ids tests use.

``SHAPES`` adds random-weight reasoning Llamas of real size for a GPU (``tiny_gguf.py OUT.gguf llama-1b``): the
layer shapes of Llama-3.2-1B and Llama-3.1-8B and a small draft, float16, the same tokenizer and template, the
vocabulary padded to 128256 with plain word tokens (`` w123``) so the output layer costs what a real one does and
every sampled token is visible text. Their weights are tiled from one seeded random pool (a real model's speed
does not depend on its values; writing 16 GB of fresh normals would take minutes). ``tensor_shapes`` and
``param_count`` (standard library) say what ``write`` makes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import sys
from pathlib import Path

try:  # tiny_model's ChatML, whose generation prompt opens <think>: one template for both tiny models
    from server_launchers.tiny_model import CHAT_TEMPLATE
except ImportError:  # run as a script in the gguf virtualenv (no PYTHONPATH): this folder is sys.path[0]
    from tiny_model import CHAT_TEMPLATE

BUILD_VERSION = 1
PARAMS: dict[str, int] = {
    "build_version": BUILD_VERSION,
    "seed": 1234,
    "merges": 600,
    "hidden": 64,
    "layers": 2,
    "heads": 2,  # head size 32: llama.cpp's quantised KV caches (q8_0, q4_0) need a multiple of their block, 32
    "kv_heads": 1,
    "ffn": 176,
    "context": 4096,
}

# Real shapes (layer sizes of Meta's Llama 3 models; vocabulary size padded to theirs). Not in PARAMS' hash: the
# tiny model's file name stays what it was.
_REAL = {"vocab": 128256, "context": 131072, "dtype": "f16", "seed": 1234, "merges": 600, "build_version": 1}
SHAPES: dict[str, dict] = {
    "llama-1b": {**_REAL, "hidden": 2048, "layers": 16, "heads": 32, "kv_heads": 8, "ffn": 8192, "tied": 1},
    "llama-8b": {**_REAL, "hidden": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "ffn": 14336, "tied": 0},
    # a small draft for speculative decoding: same tokenizer, other weights (so a low acceptance rate)
    "llama-draft": {**_REAL, "hidden": 512, "layers": 4, "heads": 8, "kv_heads": 2, "ffn": 1536, "tied": 1},
}

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by but "
    "not what all were we when your can said there use an each which she do how their if will up other about out "
    "many then them these so some her would make like him into time has look two more go see no way could my than "
    "first water been call who its now find long down day did get come made may part over new work take just good "
    "old very after back most only year also well place live great where help through much before line right too "
    "mean same tell boy follow came want show around small three put end does another home hand big high such turn "
    "here why ask men went read need land different think answer question step let us consider because therefore "
    "final number"
)
WORDS = _WORD_TEXT.split()  # noqa: SIM905 (prose reads better than 160 quoted words)
CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]


def model_file_name(params: dict | None = None) -> str:
    blob = json.dumps(params or PARAMS, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(blob).hexdigest()[:12]
    shape = next((n for n, p in SHAPES.items() if p == params), None)
    return f"reasoning-{shape}-{digest}.gguf" if shape else f"tiny-reasoning-llama-{digest}.gguf"


def tensor_shapes(p: dict, vocab: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor ``write`` makes, as (name, numpy shape (out, in)); ``vocab`` defaults to ``p["vocab"]``."""
    v = vocab or p["vocab"]
    h, ff, hd = p["hidden"], p["ffn"], p["hidden"] // p["heads"]
    q, kv = p["heads"] * hd, p["kv_heads"] * hd
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (v, h))]
    for i in range(p["layers"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (h,)), (b + "attn_q.weight", (q, h)), (b + "attn_k.weight", (kv, h)),
                (b + "attn_v.weight", (kv, h)), (b + "attn_output.weight", (h, q)), (b + "ffn_norm.weight", (h,)),
                (b + "ffn_gate.weight", (ff, h)), (b + "ffn_up.weight", (ff, h)), (b + "ffn_down.weight", (h, ff))]  # fmt: skip
    out.append(("output_norm.weight", (h,)))
    if not p.get("tied"):  # tied: llama.cpp reads the output layer from token_embd
        out.append(("output.weight", (v, h)))
    return out


def param_count(p: dict, vocab: int | None = None) -> int:
    return sum(math.prod(shape) for _, shape in tensor_shapes(p, vocab))


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _train_bpe(n_merges: int, alphabet: dict[int, str]) -> list[tuple[str, str]]:
    """Plain BPE on a Zipf-weighted word list (a leading space is the common form, as GPT-2 splits text)."""
    freq: collections.Counter[str] = collections.Counter()
    for rank, word in enumerate(WORDS):
        weight = 1000 // (rank + 1) + 2
        freq[" " + word] += 4 * weight
        freq[word] += weight
        freq[" " + word.capitalize()] += 2
    for piece in [".", ",", "?", "!", ":", ";", "\n", "\n\n", *(f" {d}" for d in range(10))]:
        freq[piece] += 50
    words = {tuple(alphabet[b] for b in w.encode()): n for w, n in freq.items()}
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # deterministic tie-break
        if count < 2:
            break
        merges.append((a, b))
        merged: collections.Counter[tuple[str, ...]] = collections.Counter()
        for symbols, n in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def write(out: Path, params: dict | None = None) -> dict:
    """Write the model to ``out`` (via a temporary file) and its info to ``out.with_suffix('.json')``."""
    import gguf

    p = dict(params or PARAMS)
    alphabet = _byte_alphabet()
    merges = _train_bpe(p["merges"], alphabet)
    tokens = [alphabet[b] for b in range(256)]
    types = [gguf.TokenType.NORMAL] * 256
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
            types.append(gguf.TokenType.NORMAL)
    ids: dict[str, int] = {}
    for tok, kind in [(t, gguf.TokenType.CONTROL) for t in CONTROL] + [
        (t, gguf.TokenType.USER_DEFINED) for t in THINK
    ]:
        ids[tok] = len(tokens)
        tokens.append(tok)
        types.append(kind)
    for i in range(len(tokens), p.get("vocab", 0)):  # padding to a real vocabulary: visible word tokens
        tokens.append(f"{alphabet[32]}w{i}")
        types.append(gguf.TokenType.NORMAL)
    vocab = len(tokens)

    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("tiny-random-llama-reasoning")
    w.add_context_length(p["context"])
    w.add_embedding_length(p["hidden"])
    w.add_block_count(p["layers"])
    w.add_feed_forward_length(p["ffn"])
    w.add_head_count(p["heads"])
    w.add_head_count_kv(p["kv_heads"])
    w.add_rope_dimension_count(p["hidden"] // p["heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    f16 = p.get("dtype") == "f16"
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_eos_token_id(ids["<|im_end|>"])
    w.add_eot_token_id(ids["<|im_end|>"])
    w.add_pad_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    for name, data in _tensors(p, vocab, f16):
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = {
        "vocab_size": vocab,
        "merges": len(merges),
        "think_start_id": ids["<think>"],
        "think_end_id": ids["</think>"],
        "eos_id": ids["<|im_end|>"],
        "params": p,
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out)
    return info


def _tensors(p: dict, vocab: int, f16: bool):
    """(name, array) per tensor: norms are ones (float32); weights seeded normals, std 0.02 (the embedding
    1.0, the output layer 0.3), float16 where ``f16``: drawn fresh for a small model, tiled from a pool above."""
    import numpy as np

    rng = np.random.default_rng(p["seed"])
    dtype = np.float16 if f16 else np.float32
    big = np.random.default_rng(
        [p["seed"], 1]
    )  # the pool's own generator: the tiny model's draws stay as they were
    pool = big.standard_normal(1 << 22).astype(np.float32)  # 4M values, reused at random offsets

    def rand(shape: tuple[int, ...], std: float):
        n = math.prod(shape)
        if n <= pool.size:
            return (rng.standard_normal(shape) * std).astype(dtype)
        off = int(big.integers(pool.size))
        scaled = (pool * std).astype(dtype)
        tiled = np.tile(scaled, -(-(n + off) // pool.size))
        return tiled[off : off + n].reshape(shape)

    for name, shape in tensor_shapes(p, vocab):
        if len(shape) == 1:
            yield name, np.ones(shape, dtype=np.float32)
        else:
            std = 1.0 if name == "token_embd.weight" else 0.3 if name == "output.weight" else 0.02
            yield name, rand(shape, std)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in SHAPES):
        sys.exit(f"usage: tiny_gguf.py OUT.gguf [{'|'.join(SHAPES)}]")
    print(json.dumps(write(Path(sys.argv[1]), SHAPES[sys.argv[2]] if len(sys.argv) == 3 else None)))
