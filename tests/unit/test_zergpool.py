"""zergpool values (vassal/services/zergpool.py): what is a pool, what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal.services import zergpool


@pytest.mark.parametrize("value,expected", [
    ("/run/zp.sock:127.0.0.1:3031", ("/run/zp.sock", ["127.0.0.1:3031"])),
    ("/run/zp.sock:127.0.0.1:3031,/run/app.sock,:8000", ("/run/zp.sock", ["127.0.0.1:3031", "/run/app.sock",
                                                                          ":8000"])),
    ("@abstract:127.0.0.1:1", ("@abstract", ["127.0.0.1:1"])),
])
def test_parse(value: str, expected: tuple) -> None:
    assert zergpool.parse(value, "x.ini:1") == expected


@pytest.mark.parametrize("value", ["nocolon", ":127.0.0.1:1", "/zp.sock:", "/zp.sock:,,", "/zp.sock:host:notaport"])
def test_refused(value: str) -> None:
    with pytest.raises(zergpool.ZergPoolError, match=r"^zergpool \(x.ini:1\): "):
        zergpool.parse(value, "x.ini:1")


@given(st.text(max_size=40))
def test_parse_only_raises_zergpool_errors(value: str) -> None:
    try:
        zergpool.parse(value, "x")
    except zergpool.ZergPoolError:
        pass
