"""Training data as given: a text file, a folder of text files, the built-in
corpus, or JSON Lines of examples.  Everything is checked before a step runs,
and every mistake is one line naming the file (and the line, for JSON Lines):

    strata: error: data/train.jsonl:7: missing key 'target' (seq2seq needs {"source", "target"})

The built-in corpus is the English text of Python's own documentation topics
(`pydoc_data.topics`, ~465 KB, shipped with every CPython), so a spec trains on
a fresh machine without a download.

    >>> src = text_source(None)
    >>> src.name, src.builtin
    ('built-in corpus (pydoc_data.topics)', True)
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from strata.errors import UsageError
from strata.io import open_regular

__all__ = ["DataError", "TextSource", "text_source", "read_examples"]

CHUNK = 4 << 20           # bytes read at a time
MAX_LINE = 16 << 20       # longest JSON Lines record
MAX_FILES = 100_000       # files in a data folder
BUILTIN = "built-in corpus (pydoc_data.topics)"


class DataError(UsageError):
    """Bad training data: one line naming the file (exit code 2)."""


@dataclass
class TextSource:
    """Text files (read in order, joined by a newline) or the built-in corpus."""

    name: str
    files: list[Path] = field(default_factory=list)
    builtin: bool = False
    digest: str = ""      # sha256 of the bytes, filled by `check`
    chars: int = 0

    def check(self) -> "TextSource":
        """Read everything once: each file must exist, be non-empty UTF-8 text;
        records the content hash."""
        h = hashlib.sha256()
        n = 0
        for text in self.texts(_hash=h):
            n += len(text)
        self.digest, self.chars = h.hexdigest(), n
        return self

    def texts(self, _hash=None) -> Iterator[str]:
        """The text in pieces that end at a newline (never splitting a line, so a
        BPE tokenizer sees what it would see in one piece)."""
        if self.builtin:
            text = builtin_text()
            if _hash is not None:
                _hash.update(text.encode("utf-8"))
            yield text
            return
        for i, path in enumerate(self.files):
            if i:
                if _hash is not None:
                    _hash.update(b"\n")
                yield "\n"
            yield from _read_text(path, _hash)


def builtin_text() -> str:
    try:
        from pydoc_data.topics import topics  # lazy: startup
    except ImportError:
        raise DataError("no data given, and this Python lacks the built-in corpus (pydoc_data); "
                        "give a text file with --data") from None
    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


def _open(path: Path):
    """A regular file open for reading: a FIFO, a socket or a device (/dev/zero)
    is refused with the reason, without blocking in open()."""
    try:
        return os.fdopen(open_regular(path, "data file"), "rb")
    except UsageError as e:
        raise DataError(str(e).replace("is a directory, not a data file", "is a folder")) from None


def _binary(path: Path, offset: int) -> DataError:
    return DataError(f"{path}: not a UTF-8 text file (binary data at byte {offset}); "
                     "training data is plain text")


def _read_text(path: Path, h=None) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, carry, empty = 0, "", True
    with _open(path) as f:
        while True:
            try:
                raw = f.read(CHUNK)
            except OSError as e:
                raise DataError(f"{path}: cannot read ({e.strerror})") from None
            if raw:
                empty = False
                if h is not None:
                    h.update(raw)
                nul = raw.find(b"\0")
                if nul >= 0:
                    raise _binary(path, offset + nul)
            try:
                text = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise _binary(path, offset + e.start) from None
            offset += len(raw)
            if not raw:
                if text:
                    yield text
                break
            cut = text.rfind("\n") + 1
            if cut:
                yield text[:cut]
            carry = text[cut:]
            if len(carry) > 4 * CHUNK:  # one enormous line: give it out anyway
                yield carry
                carry = ""
    if empty:
        raise DataError(f"{path}: the file is empty")


def _folder_files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):  # symlinked folders are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                out.append(Path(root) / name)
                if len(out) > MAX_FILES:
                    raise DataError(f"{folder}: more than {MAX_FILES:,} files; "
                                    "concatenate them into fewer")
    if not out:
        raise DataError(f"{folder}: no files in this folder")
    return out


def text_source(data: str | os.PathLike | None) -> TextSource:
    """The text a language-model objective trains on: `data` is a file, a folder of
    text files (all of them, sorted, hidden ones skipped), or None for the
    built-in corpus."""
    if data is None:
        return TextSource(BUILTIN, builtin=True)
    path = Path(data)
    if path.is_dir():
        return TextSource(str(path), files=_folder_files(path))
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        raise DataError(f"{path}: JSON Lines are examples for seq2seq or classification; "
                        "a language-model objective trains on plain text files")
    return TextSource(str(path), files=[path])


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open(path) as f:
        for no, raw in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), 1):
            if len(raw) > MAX_LINE:
                raise DataError(f"{path}:{no}: line longer than {MAX_LINE >> 20} MB")
            if b"\0" in raw:
                raise _binary(path, f.tell() - len(raw) + raw.index(b"\0"))
            try:
                yield no, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _binary(path, f.tell() - len(raw) + e.start) from None


def read_examples(data: str | os.PathLike | None, keys: tuple[str, ...], objective: str,
                  classes: int | None = None):
    """Examples from a JSON Lines file: a list of dicts with the keys an objective
    reads (strings; `label` an int in [0, classes)), plus the file's sha256;
    `objective` names it in the messages."""
    need = "{" + ", ".join(f'"{k}"' for k in keys) + "}"
    if data is None:  # the objective's built-in task is read instead
        raise DataError(f"{objective} trains on JSON Lines of {need}: give one with --data")
    path = Path(data)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; {objective} trains on one JSON Lines file of {need}")
    h = hashlib.sha256()
    out = []
    for no, line in _jsonl_lines(path):
        h.update(line.encode("utf-8"))
        if not line.strip():
            continue
        where = f"{path}:{no}"
        try:
            rec = json.loads(line)
        except RecursionError:
            raise DataError(f"{where}: not valid JSON (nested too deeply)") from None
        except json.JSONDecodeError as e:
            if not out and no == 1 and not line.lstrip().startswith("{"):
                raise DataError(f"{path}: not JSON Lines (line 1 is not a JSON object); "
                                f"{objective} trains on records like {need}") from None
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except ValueError:  # an integer past Python's 4,300 digits
            raise DataError(f"{where}: a number with too many digits") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: a record should be a JSON object like {need}")
        for k in keys:
            if k not in rec:
                raise DataError(f"{where}: missing key '{k}' ({objective} needs {need})")
        ex = {}
        for k in keys:
            v = rec[k]
            if k == "label":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise DataError(f"{where}: 'label' should be an integer class id, "
                                    f"got {json.dumps(v)[:40]}")
                if not 0 <= v < (classes if classes is not None else 1 << 31):
                    shown = str(v) if abs(v) < 10 ** 12 else f"{str(v)[:8]}... ({len(str(v))} digits)"
                    has = f"{classes} classes (0 to {classes - 1})" if classes else "fewer classes"
                    raise DataError(f"{where}: label {shown} is out of range: the classifier has "
                                    f"{has}")
            elif not isinstance(v, str):
                raise DataError(f"{where}: '{k}' should be a string, got {json.dumps(v)[:40]}")
            elif not v.strip():
                raise DataError(f"{where}: '{k}' is empty")
            ex[k] = v
        out.append(ex)
    if not out:
        raise DataError(f"{path}: the file is empty" if h.digest() == hashlib.sha256().digest()
                        else f"{path}: no records in the file")
    return out, h.hexdigest()
