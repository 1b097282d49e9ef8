"""The directory tree the static-file tests serve (twin tests and our own)."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

HUGE = 64 << 20  # more than the socket buffers of both ends hold


def make_tree(t: Path) -> Path:
    """pub/ (mapped), pub-secret/ (a sibling whose name starts like pub), shared/ (static-safe),
    chk/ (check-static), m2/ (static-map2), fav.ico (a file mapping)."""
    for d in ("pub/sub", "pub-secret", "shared", "chk", "m2/s2"):
        (t / d).mkdir(parents=True, exist_ok=True)
    (t / "pub" / "a.txt").write_bytes(b"hello\n")
    (t / "pub" / "sub" / "index.html").write_bytes(b"<h1>index</h1>\n")
    (t / "pub" / "style.css").write_bytes(b"body { color: red }\n" * 20)
    (t / "pub" / "style.css.gz").write_bytes(gzip.compress((t / "pub" / "style.css").read_bytes(), mtime=0))
    (t / "pub" / "code.py").write_bytes(b"print('source')\n")
    (t / "pub" / "noext").write_bytes(b"no extension\n")
    (t / "pub" / "UPPER.TXT").write_bytes(b"upper\n")
    (t / "pub" / "with space.txt").write_bytes(b"spaced\n")
    (t / "pub" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (t / "pub" / "expire-uri.txt").write_bytes(b"expires by uri\n")
    rnd = random.Random(13)
    (t / "pub" / "big.bin").write_bytes(bytes(rnd.getrandbits(8) for _ in range(300_000)))
    with open(t / "pub" / "huge.bin", "wb") as f:  # sparse: 64 MiB that cost nothing to make
        f.write(b"HUGE")
        f.truncate(HUGE)
    (t / "pub-secret" / "s.txt").write_bytes(b"secret\n")
    (t / "shared" / "x.txt").write_bytes(b"shared\n")
    (t / "chk" / "robots.txt").write_bytes(b"User-agent: *\n")
    (t / "m2" / "s2" / "file.txt").write_bytes(b"map2\n")
    (t / "fav.ico").write_bytes(b"\0\0\1\0icon")
    for name, target in (("link-out.txt", "../chk/robots.txt"), ("link-safe.txt", "../shared/x.txt"),
                         ("link-prefix.txt", "../pub-secret/s.txt")):
        link = t / "pub" / name
        if not link.is_symlink():
            os.symlink(target, link)
    return t
