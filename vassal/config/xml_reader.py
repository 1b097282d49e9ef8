"""uWSGI's xml config reader (core/xmlconf.c, the libxml2 flavour Debian builds), on expat.

The document is read into a small tree shaped like libxml2's: runs of text and entity text
are one text node, CDATA sections and comments are nodes of their own. Then, as uWSGI does:

- the root is ``<uwsgi>``, or the first ``<uwsgi>`` child of another root whose ``id``
  matches the section asked for (any one when none is asked);
- each element child is an option: its value is its first child's text as written (a
  comment's text if that comes first), "1" when it has no child; an element whose first
  child is an element has no text for uWSGI (it crashes on it): an error naming file and
  line here;
- a child with an ``id`` other than the section asked for is skipped;
- ``<app mountpoint=M>X</app>`` (or ``domain=``) is ``mount = M=X`` plus ``app``, and so is
  the older ``<app mountpoint=M><script>X</script></app>`` of uWSGI 0.9 configs;
- a CDATA section directly inside ``<uwsgi>`` is python code: ``eval``.
"""

from __future__ import annotations

from xml.parsers import expat

from .errors import ConfigError
from .formats import Parsed, RawOption, shown

TEXT, CDATA, COMMENT, ELEMENT = "#text", "#cdata", "#comment", "#element"


class _Node:
    __slots__ = ("kind", "tag", "attrs", "line", "children", "parts")

    def __init__(self, kind: str, tag: str = "", attrs: dict[str, str] | None = None, line: int = 0) -> None:
        self.kind, self.tag, self.attrs, self.line = kind, tag, attrs or {}, line
        self.children: list[_Node] = []
        self.parts: list[str] = []  # text as expat hands it over, joined when read

    @property
    def content(self) -> str:
        return "".join(self.parts)


def _tree(text: str, name: str) -> _Node:
    parser = expat.ParserCreate("UTF-8")  # the text is already decoded: ignore the declaration
    root = _Node(ELEMENT, "#document")
    stack = [root]
    in_cdata = False

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = _Node(ELEMENT, tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        kids = stack[-1].children
        kind = CDATA if in_cdata else TEXT
        if kids and kids[-1].kind == kind:  # libxml2 makes one node of a run of text
            kids[-1].parts.append(data)
        else:
            node = _Node(kind, line=parser.CurrentLineNumber)
            node.parts.append(data)
            kids.append(node)

    def cdata_start() -> None:
        nonlocal in_cdata
        in_cdata = True
        stack[-1].children.append(_Node(CDATA, line=parser.CurrentLineNumber))

    def cdata_end() -> None:
        nonlocal in_cdata
        in_cdata = False

    def comment(data: str) -> None:
        node = _Node(COMMENT, line=parser.CurrentLineNumber)
        node.parts.append(data)
        stack[-1].children.append(node)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartCdataSectionHandler = cdata_start
    parser.EndCdataSectionHandler = cdata_end
    parser.CommentHandler = comment
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise ConfigError(f"{name}:{exc.lineno}: malformed xml: {expat.ErrorString(exc.code)}",
                          line=exc.lineno) from None
    except RecursionError:
        raise ConfigError(f"{name}: malformed xml: nested too deeply") from None
    elements = [n for n in root.children if n.kind == ELEMENT]
    if not elements:
        raise ConfigError(f"{name}: empty xml config")
    return elements[0]


def _first_text(node: _Node) -> str | None:
    """libxml2's ``node->children->content``: None when the first child is an element."""
    first = node.children[0]
    return None if first.kind == ELEMENT else first.content


def parse_xml(text: str, name: str, section: str | None = None, *, private: bool = False) -> Parsed:
    """Options of the ``<uwsgi>`` block (``section``: the ``id`` to pick)."""
    root = _tree(text, name)
    if root.tag != "uwsgi":
        chosen = None
        for child in root.children:
            if child.kind != ELEMENT or child.tag != "uwsgi":
                continue
            if section is not None and "id" in child.attrs and child.attrs["id"] != section:
                continue
            chosen = child
            break
        if chosen is None:
            raise ConfigError(f"{name}:{root.line}: invalid xml root element, <uwsgi> expected",
                              line=root.line)
        root = chosen
    options: list[RawOption] = []
    for node in root.children:
        if section is not None and "id" in node.attrs and node.attrs["id"] != section:
            continue
        if node.kind == CDATA:
            options.append(RawOption("eval", node.content, node.line))
            continue
        if node.kind != ELEMENT:
            continue
        if node.tag == "app":
            _app(node, options)
            continue
        if not node.children:
            options.append(RawOption(node.tag, "1", node.line))
            continue
        value = _first_text(node)
        if value is None:
            raise ConfigError(f"{name}:{node.line}: option {shown(node.tag, private)} must not start "
                              "with an element", line=node.line)
        options.append(RawOption(node.tag, value, node.line))
    return Parsed(options, [])


def _app(node: _Node, options: list[RawOption]) -> None:
    """``<app>``: a mount (``mountpoint``/``domain`` attribute), then the ``app`` marker."""
    value: str | None = None
    kids = node.children
    if len(kids) == 1 and kids[0].kind != ELEMENT:
        value = kids[0].content
    elif len(kids) > 1 and kids[1].children and kids[1].children[0].kind != ELEMENT:
        value = kids[1].children[0].content  # <app><script>module</script></app>
    elif kids:
        return  # uWSGI finds no text and adds nothing
    if value is not None:
        if "mountpoint" in node.attrs:
            value = f"{node.attrs['mountpoint']}={value}"
        elif "domain" in node.attrs:
            value = f"{node.attrs['domain']}|={value}"
        options.append(RawOption("mount", value, node.line))
    options.append(RawOption("app", "", node.line))
