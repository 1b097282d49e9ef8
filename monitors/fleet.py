"""Where a vassal runs in a fleet of emperors: a pure function of the vassal and the members.

Several emperors sharing one zoo:// tree form a *fleet*. Each vassal may ask, in a ``fleet``
section of its own config, for a number of replicas and for members carrying some labels::

    [fleet]
    replicas = 2
    labels = zone=eu, !spot

Every emperor computes the same placement from the same inputs (the live member list and the
vassal's config) with rendezvous hashing: each member gets a score hash(member, vassal), and
the vassal runs on the N eligible members with the highest scores. No leader, no
coordination beyond the member list: when a member leaves, only the vassals it ran move
(each to the member with the next score); when it comes back, exactly those move back.

Nothing here talks to ZooKeeper: monitors/zoo.py feeds it, and the fleet-status command
and the tests call it directly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vassal.config.formats import format_for, parse_ini

SECTION = "fleet"
KEYS = ("replicas", "labels")
#: labels are words of letters, digits and ``._-/``: what shells and ini files carry safely
_LABEL_WORD = re.compile(r"^[A-Za-z0-9._/-]{1,63}$")
MAX_LABELS = 64
#: ZooKeeper reserves these as node names, and a member name is a node name
_RESERVED_NAMES = ("", ".", "..", "zookeeper")


class BadSpec(ValueError):
    """A vassal's fleet section cannot be used; the text says why."""


@dataclass(frozen=True)
class Constraint:
    """One label requirement: ``key=value``, ``key!=value``, ``key`` (has it), ``!key`` (lacks it)."""

    key: str
    value: str | None = None  # None: only the key's presence counts
    negate: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.value is None:
            found = self.key in labels
        else:
            found = labels.get(self.key) == self.value
        return found != self.negate

    def __str__(self) -> str:
        if self.value is None:
            return ("!" if self.negate else "") + self.key
        return f"{self.key}{'!=' if self.negate else '='}{self.value}"


@dataclass(frozen=True)
class FleetSpec:
    """What a vassal asks of the fleet. ``replicas`` None: every eligible member runs it."""

    replicas: int | None = None
    labels: tuple[Constraint, ...] = ()

    def eligible(self, labels: Mapping[str, str]) -> bool:
        return all(c.matches(labels) for c in self.labels)

    def describe(self) -> str:
        count = "all" if self.replicas is None else str(self.replicas)
        return count + (f" [{', '.join(map(str, self.labels))}]" if self.labels else "")


DEFAULT = FleetSpec()


def _word(text: str, what: str) -> str:
    if not _LABEL_WORD.match(text):
        raise BadSpec(f"{what} {text!r} must be 1-63 letters, digits or ._-/")
    return text


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_member_labels(values: Iterable[str]) -> dict[str, str]:
    """``emperor-fleet-labels`` values (``zone=eu,ssd``, repeatable) as a dict; a bare key is ""."""
    labels: dict[str, str] = {}
    for value in values:
        for item in _items(value):
            key, sep, val = item.partition("=")
            key = _word(key.strip(), "label")
            labels[key] = _word(val.strip(), f"value of label {key}") if sep else ""
    if len(labels) > MAX_LABELS:
        raise BadSpec(f"{len(labels)} labels, at most {MAX_LABELS}")
    return labels


def parse_constraints(text: str) -> tuple[Constraint, ...]:
    """``zone=eu, ssd, !spot, arch!=arm`` as constraints."""
    out: list[Constraint] = []
    for item in _items(text):
        if "!=" in item:
            key, _, value = item.partition("!=")
            out.append(Constraint(_word(key.strip(), "label"), _word(value.strip(), "label value"),
                                  negate=True))
        elif "=" in item:
            key, _, value = item.partition("=")
            out.append(Constraint(_word(key.strip(), "label"), _word(value.strip(), "label value")))
        elif item.startswith("!"):
            out.append(Constraint(_word(item[1:].strip(), "label"), negate=True))
        else:
            out.append(Constraint(_word(item, "label")))
    return tuple(out)


def parse_replicas(text: str) -> int | None:
    text = text.strip()
    if text.lower() == "all":
        return None
    if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) < 1:
        raise BadSpec(f"replicas {text!r} is not a positive number (or 'all')")
    return int(text)


def spec_from_pairs(pairs: Iterable[tuple[str, str]]) -> FleetSpec:
    """A fleet section's ``(key, value)`` pairs; ``labels`` may repeat and adds up."""
    replicas: int | None = None
    constraints: list[Constraint] = []
    for key, value in pairs:
        if key == "replicas":
            replicas = parse_replicas(value)
        elif key == "labels":
            constraints.extend(parse_constraints(value))
        else:
            raise BadSpec(f"unknown key {key!r} in the {SECTION} section (known: {', '.join(KEYS)})")
    if len(constraints) > MAX_LABELS:
        raise BadSpec(f"{len(constraints)} label constraints, at most {MAX_LABELS}")
    return FleetSpec(replicas, tuple(constraints))


def _section_pairs(doc: object, what: str) -> list[tuple[str, str]]:
    """The fleet mapping of a parsed json or yaml document, its lists flattened."""
    if not isinstance(doc, dict):
        raise BadSpec(f"a {what} config must be a{'n object' if what == 'json' else ' mapping'}")
    section = doc.get(SECTION)
    if section is None:
        return []
    if not isinstance(section, dict):
        raise BadSpec(f'"{SECTION}" must be a mapping, like {{"replicas": 2}}')
    pairs: list[tuple[str, str]] = []
    for key, value in section.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise BadSpec(f"{SECTION}.{key} must be a string or a number")
            pairs.append((str(key), str(item)))
    return pairs


def _json_pairs(text: str) -> list[tuple[str, str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadSpec(f"malformed json at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise BadSpec("malformed json: nested too deeply") from None
    return _section_pairs(doc, "json")


def _yaml_pairs(text: str) -> list[tuple[str, str]]:
    """Strict YAML for the fleet section, which is ours; a file that is uWSGI's lenient yaml
    but not YAML is fine as long as it has no fleet section."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if not re.search(r"^" + SECTION + r"\s*:", text, re.MULTILINE):
            return []
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise BadSpec(f"malformed yaml{where}: {problem}") from None
    except RecursionError:
        raise BadSpec("malformed yaml: nested too deeply") from None
    return _section_pairs(doc, "yaml") if doc is not None else []


def spec_from_config(name: str, config: bytes | None) -> FleetSpec:
    """The placement a vassal's config asks for: its ``fleet`` section, or the default.

    The section is written like the rest of the file: ini ``[fleet]`` (read by uWSGI's ini
    reader), a top-level ``fleet:`` mapping in yaml, a ``"fleet"`` object in json. uWSGI
    and our vassals skip it as they skip any section but their own. yaml and json are read
    strictly (a ``fleet`` they cannot parse is an error, not a silent default). xml configs
    have no second section a vassal would skip: a ``<fleet>`` there is refused.
    """
    if not config:
        return DEFAULT
    text = config.decode("utf-8", "replace")
    fmt = format_for(name)
    if fmt == "ini":
        pairs = [(o.key, o.value) for o in parse_ini(text, name, SECTION).options]
    elif fmt == "yaml":
        pairs = _yaml_pairs(text)
    elif fmt == "json":
        pairs = _json_pairs(text)
    elif fmt == "xml":
        if re.search(r"<\s*" + SECTION + r"[\s/>]", text):
            raise BadSpec(f"a <{SECTION}> placement is read from ini, yaml and json configs "
                          "only, not xml")
        pairs = []
    else:  # emperor-extra-extension configs: no format we can read a section from
        pairs = []
    return spec_from_pairs(pairs)


def check_member_name(name: str) -> str:
    """A member name is a ZooKeeper node name: no ``/``, printable, not reserved."""
    if (name in _RESERVED_NAMES or "/" in name or not name.isprintable()
            or len(name.encode("utf-8", "replace")) > 200):
        raise BadSpec(f"fleet member name {name!r} cannot be a ZooKeeper node name "
                      "(printable, no '/', at most 200 bytes)")
    return name


def score(member: str, vassal: str) -> int:
    """The rendezvous weight: the same on every machine and every Python (no hash seed)."""
    digest = hashlib.blake2b(f"{member}\0{vassal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def place(vassal: str, spec: FleetSpec, members: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The members that run ``vassal``, best first: the ``replicas`` eligible members with the
    highest scores (all eligible members when replicas is not set)."""
    eligible = [m for m, labels in members.items() if spec.eligible(labels)]
    eligible.sort(key=lambda m: (score(m, vassal), m), reverse=True)
    return eligible if spec.replicas is None else eligible[:spec.replicas]
