"""The cache's key hashes against uWSGI's (core/hash.c), in Python and in the C accelerator.

The hash of a key picks its slot (``hash % hashsize``) and is stored in its item, so a cache
store file is only shared with uWSGI when both compute the same 32 bits. The known values
below were printed by uWSGI 2.0's own djb33x_hash and murmur2_hash compiled with gcc on
x86-64 (char is signed there); the murmur2 ones of 5+ byte keys whose length is not a
multiple of 4 are where uWSGI departs from textbook MurmurHash2 (its tail reads the first
bytes of the key).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import need_service
from vassal.api import cache as C

# key, djb33x, murmur2: from uWSGI's core/hash.c (branch uwsgi-2.0)
KNOWN = [
    (b"", 5381, 0),
    (b"a", 177604, 2456313694),
    (b"ab", 5860902, 446775395),
    (b"abc", 193409669, 324500635),
    (b"abcd", 2087551809, 646393889),
    (b"abcde", 169732868, 155512662),
    (b"abcdef", 1306217442, 645517574),
    (b"abcdefg", 155502661, 3611800456),
    (b"abcdefgh", 836620429, 69371878),
    (b"abcdefghi", 1838670404, 3924184659),
    (b"hello world", 4173747013, 3742290278),
    (b"imperium", 1683934615, 2488603424),
    (b"uwsgi-cache-key", 2543984385, 1869252234),
    (b"\xe9t\xe9", 193394001, 825123185),
    (b"\xff\xfe\xfd\xfc\xfb", 4159697822, 3690374238),
    (b"k\x80\x81\x82\x83\x84\x85", 1127758799, 2336557171),
]


def accel():
    """The compiled accelerator, or need_service says it is missing."""
    need_service("cache accelerator", C._accel is not None,
                 "the C accelerator (vassal/api/_cachefast.c) was not compiled by the install")
    return C._accel


@pytest.mark.parametrize(("key", "djb", "murmur"), KNOWN)
def test_python_hashes_are_uwsgis(key: bytes, djb: int, murmur: int) -> None:
    assert C.djb33x(key) == djb
    assert C.murmur2(key) == murmur
    assert C.HASHES["djb33x"] is C.djb33x and C.HASHES["murmur2"] is C.murmur2


@pytest.mark.parametrize(("key", "djb", "murmur"), KNOWN)
def test_c_hashes_are_uwsgis(key: bytes, djb: int, murmur: int) -> None:
    fast = accel()
    assert fast.hash(key, False) == djb
    assert fast.hash(key, True) == murmur


def test_murmur2_tail_reads_the_first_bytes() -> None:
    # uWSGI's quirk: past the 4-byte blocks the tail bytes are not read at all (its first bytes
    # are read again), so keys differing only there collide, in Python and in C alike
    fast = C._accel
    for a, b in [(b"wxyz123", b"wxyz456"), (b"wxyzabcdX", b"wxyzabcdY"), (b"k\x80\x81\x82\x83", b"k\x80\x81\x82\xff")]:
        assert C.murmur2(a) == C.murmur2(b)
        assert fast is None or fast.hash(a, True) == fast.hash(b, True)
    assert C.murmur2(b"wxyz123") != C.murmur2(b"vxyz123")  # the first bytes do count twice


@given(st.binary(max_size=64))
def test_c_and_python_agree(key: bytes) -> None:
    fast = accel()
    assert fast.hash(key, False) == C.djb33x(key)
    assert fast.hash(key, True) == C.murmur2(key)
