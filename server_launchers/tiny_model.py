"""Build a tiny random-weight Llama checkpoint that vLLM can serve on CPU.

No model can be downloaded on the machines this project runs on, so the end-to-end tier serves a model
made here: a 4-layer Llama with random weights (seeded), a byte-level BPE tokenizer trained on a small
synthetic corpus generated from a seed, ``<think>``/``</think>`` as single added tokens (so vLLM's
``deepseek_r1`` reasoning parser can split reasoning from content), a ChatML chat template whose
assistant turn opens with ``<think>\\n`` like DeepSeek-R1's, and a ``generation_config.json``.

Two halves:

* The top of this module (``DEFAULT_PARAMS``, ``params_hash``, ``model_dir_name``, ``INFO_FILE``) is
  plain standard library, so the launcher can import it from loadgen's interpreter (which has no torch)
  to know where a model with given parameters lives.
* ``build()`` imports torch/transformers/tokenizers lazily; it runs INSIDE the vLLM virtualenv, invoked
  as ``<venv>/bin/python tiny_model.py --out-root DIR [--params JSON]``.

The output directory is ``<out-root>/tiny-llama-<hash>`` where ``<hash>`` covers every parameter (and
``BUILD_VERSION``, bumped whenever this file changes what it writes). It is written to a temporary
sibling and renamed into place, so a half-built model is never visible. ``loadgen_tiny_model.json`` in
it records the token ids tests need (``think_end_id`` for a ``logit_bias`` that ends reasoning early).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "build", "is_complete", "main", "model_dir_name", "params_hash"]

BUILD_VERSION = 1
INFO_FILE = "loadgen_tiny_model.json"

DEFAULT_PARAMS: dict[str, int | str] = {
    "build_version": BUILD_VERSION,
    "seed": 1234,
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "corpus_words": 120_000,
    "dtype": "bfloat16",
}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_START = "<think>"
THINK_END = "</think>"

# ChatML; the generation prompt opens the reasoning block like DeepSeek-R1's template does, so the
# model's output is reasoning until it emits </think>. Earlier assistant turns drop their reasoning.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else "
    "message['content'] | map(attribute='text') | join('') -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' -}}"
    "{%- endif -%}"
)


def params_hash(params: dict) -> str:
    """Content hash of the build parameters: same parameters, same directory."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_dir_name(params: dict | None = None) -> str:
    return f"tiny-llama-{params_hash(params or DEFAULT_PARAMS)}"


def is_complete(model_dir: Path) -> bool:
    """A model directory counts only once its info file exists (written last, before the rename)."""
    return (model_dir / INFO_FILE).is_file() and (model_dir / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------------------
# Corpus: deterministic pseudo-English from syllables, plus a little real structure (numbers,
# punctuation, chat-ish lines) so the BPE learns useful merges. Small: ~1 MB of text in memory.

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr",
           "pl", "gr", "ch", "sh", "th", "br", "cl", "sp"]  # fmt: skip
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y"]
_CODAS = ["", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt"]
_COMMON = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by", "this", "are", "or", "at", "from", "an", "which", "have", "not", "but", "we", "can", "all", "their", "more", "one", "will", "has", "would", "there", "been", "if", "when", "so", "what", "about", "think", "answer", "question", "first", "then", "because", "therefore", "step", "let", "us", "consider", "model", "token", "request", "server", "latency"]  # fmt: skip


def _corpus_lines(seed: int, n_words: int) -> list[str]:
    rng = random.Random(seed)
    lexicon = []
    for _ in range(3000):
        word = "".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                       for _ in range(rng.choice((1, 1, 2, 2, 3))))  # fmt: skip
        lexicon.append(word)
    # Zipf-like weights so frequent words become single tokens.
    words = _COMMON + lexicon
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    lines, produced = [], 0
    while produced < n_words:
        length = rng.randint(4, 24)
        sentence = rng.choices(words, weights=weights, k=length)
        if rng.random() < 0.2:
            sentence.insert(rng.randrange(length), str(rng.randint(0, 10_000)))
        text = " ".join(sentence)
        text = text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", ",", ";", ":"])
        lines.append(text)
        produced += length
    return lines


# --------------------------------------------------------------------------------------------------
# Build (runs inside the vLLM virtualenv).


def _train_tokenizer(params: dict, out_dir: Path) -> dict[str, int]:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    n_added = len(SPECIAL_TOKENS) + 2
    trainer = trainers.BpeTrainer(
        vocab_size=int(params["vocab_size"]) - n_added,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(int(params["seed"]), int(params["corpus_words"])), trainer=trainer)
    # Like DeepSeek-R1: <think>/</think> are single added tokens but NOT "special", so they survive
    # skip_special_tokens=True in detokenization and the reasoning parser can see them.
    tok.add_tokens([AddedToken(THINK_START, normalized=False, special=False),
                    AddedToken(THINK_END, normalized=False, special=False)])  # fmt: skip

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=int(params["max_position_embeddings"]),
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    ids = {t: tok.token_to_id(t) for t in [*SPECIAL_TOKENS, THINK_START, THINK_END]}
    if any(v is None for v in ids.values()):
        raise RuntimeError(f"tokenizer lost a special token: {ids}")
    ids["vocab_size"] = tok.get_vocab_size()
    return ids


def build(out_root: Path, params: dict | None = None) -> Path:
    """Build the model under ``out_root`` (if absent) and return its directory."""
    params = dict(params or DEFAULT_PARAMS)
    out_root = Path(out_root)
    final = out_root / model_dir_name(params)
    if is_complete(final):
        return final
    out_root.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_root))
    try:
        random.seed(int(params["seed"]))
        torch.manual_seed(int(params["seed"]))
        ids = _train_tokenizer(params, tmp)
        config = LlamaConfig(
            vocab_size=int(params["vocab_size"]),
            hidden_size=int(params["hidden_size"]),
            intermediate_size=int(params["intermediate_size"]),
            num_hidden_layers=int(params["num_hidden_layers"]),
            num_attention_heads=int(params["num_attention_heads"]),
            num_key_value_heads=int(params["num_key_value_heads"]),
            max_position_embeddings=int(params["max_position_embeddings"]),
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        dtype = getattr(torch, str(params["dtype"]))
        model = LlamaForCausalLM(config).to(dtype)
        model.eval()
        model.save_pretrained(tmp, safe_serialization=True)
        GenerationConfig(
            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
            pad_token_id=ids["<|endoftext|>"],
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
        ).save_pretrained(tmp)
        info = {
            "name": "tiny-llama",
            "params": params,
            "params_hash": params_hash(params),
            "think_start_id": ids[THINK_START],
            "think_end_id": ids[THINK_END],
            "eos_token_id": ids["<|im_end|>"],
            "im_start_id": ids["<|im_start|>"],
            "endoftext_id": ids["<|endoftext|>"],
            "tokenizer_vocab_size": ids["vocab_size"],
            "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        }
        # Written last: its presence marks the directory complete.
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(final)
        except OSError:
            if not is_complete(final):  # another builder won the race only if it finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--out-root", required=True, type=Path, help="directory that holds tiny-llama-<hash>/")
    ap.add_argument(
        "--params", default=None, help="JSON object of build parameters (default: DEFAULT_PARAMS)"
    )
    ap.add_argument("--print-dir", action="store_true", help="print the target directory and exit")
    args = ap.parse_args(argv)
    params = dict(DEFAULT_PARAMS)
    if args.params:
        params.update(json.loads(args.params))
    if args.print_dir:
        print(args.out_root / model_dir_name(params))
        return 0
    model_dir = build(args.out_root, params)
    print(model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
