"""strata's tokenizers as Hugging Face fast tokenizers (export): `tokenizer.json`
built with the `tokenizers` library, ids equal to strata's, and the
`tokenizer_config.json` that names the special tokens, so
`AutoTokenizer.from_pretrained(OUT)` loads it with transformers alone.

    char  WordLevel over single characters (a `Split` of every character), `Fuse` decoder
    byte  byte-level BPE without merges: id k + b is byte b (GPT-2's byte alphabet)
    bpe   the run's own byte-level BPE, as trained

The specials (`[PAD]`, `[MASK]`, ...) keep their ids 0..k-1 and become the
tokenizer's special tokens.
"""

from __future__ import annotations

import json

from strata.train.tokenizer import BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer

# strata's special token -> the tokenizer_config.json / config.json role it plays
ROLES = {"[PAD]": "pad_token", "[UNK]": "unk_token", "[CLS]": "cls_token", "[SEP]": "sep_token",
         "[MASK]": "mask_token", "[BOS]": "bos_token", "[EOS]": "eos_token"}


# what str.splitlines ends a line at (\r\n first: one end, as splitlines keeps it)
LINE_END = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in for each byte 0..255 (what ByteLevel maps bytes to)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def hf_tokenizer(tok: Tokenizer):
    """A `tokenizers.Tokenizer` giving the same ids as `tok`."""
    from tokenizers import (  # lazy: optional
        Regex,  # lazy: optional
        decoders,
        models,
        pre_tokenizers,
    )
    from tokenizers import Tokenizer as HF  # lazy: optional

    k = len(tok.specials)
    if isinstance(tok, BPETokenizer):
        hf = HF.from_str(tok.hf.to_str())
        # strata encodes line by line (str.splitlines, ends kept): "\n\n" is two
        # pre-tokens there, one in a whole-text ByteLevel pass; split the same way first
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LINE_END), behavior="merged_with_previous"), hf.pre_tokenizer])
        return hf
    if isinstance(tok, CharTokenizer):
        vocab = {s: i for i, s in enumerate(tok.specials)}
        vocab.update({c: i + k for i, c in enumerate(tok.chars)})
        hf = HF(models.WordLevel(vocab, unk_token="[UNK]" if tok.unk is not None else None))
        # every character its own word, a newline too
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
    elif isinstance(tok, ByteTokenizer):
        vocab = {s: i for i, s in enumerate(tok.specials)}
        vocab.update({c: i + k for i, c in enumerate(byte_alphabet())})
        hf = HF(models.BPE(vocab, [], fuse_unk=False))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        hf.decoder = decoders.ByteLevel()
    else:  # pragma: no cover - every strata tokenizer is one of the three
        raise TypeError(type(tok).__name__)
    if tok.specials:
        from tokenizers import AddedToken  # lazy: optional

        hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in tok.specials])
    return hf


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """role -> id of the special tokens a config records (`pad_token_id`, ...)."""
    return {ROLES[s][:-len("_token")] + "_token_id": i for i, s in enumerate(tok.specials) if s in ROLES}


def tokenizer_files(tok: Tokenizer, max_length: int | None) -> dict[str, str]:
    """file name -> text: tokenizer.json and tokenizer_config.json."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    if max_length:
        config["model_max_length"] = int(max_length)
    config.update({ROLES[s]: s for s in tok.specials if s in ROLES})
    return {"tokenizer.json": hf_tokenizer(tok).to_str(pretty=True),
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n"}
