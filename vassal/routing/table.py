"""The routing table: rules read from the ``*route*`` options, and the engine that runs a chain.

Four chains, as in uWSGI 2.0 (core/routing.c): ``route*`` (request: before the static files
and the app), ``error-route*`` (whenever a status is set), ``response-route*`` (before the
head goes out), ``final-route*`` (after the request was logged). Each option adds a rule to
its chain, in the order given:

- ``route[-host|-uri|-qs|-remote-addr|-remote-user|-user-agent|-referer] = REGEXP ACTION``: the
  regexp (searched, unanchored) on PATH_INFO / HTTP_HOST (else SERVER_NAME) / REQUEST_URI /
  QUERY_STRING / REMOTE_ADDR / REMOTE_USER / HTTP_USER_AGENT / HTTP_REFERER; its groups are
  ``$1``..``$9`` in the action (``$0``: the whole match);
- ``route-if[-not] = CONDITION:ARGS ACTION`` (vassal.routing.conditions);
- ``*-route-status = STATUS ACTION`` (not in the request chain): the response status;
- ``route-run = ACTION``: always; ``route-label = NAME``: a place ``goto`` jumps to.

A rule and its action are split at the first space, the action's name and argument at the
first colon. Everything is checked when the config is read: a rule that can never work (bad
regexp, unknown condition or action, a ``goto`` to a label its chain does not have or
backwards) stops the start-up with one line naming the option and where it was given, where
uWSGI would log the problem on each request or exit without saying where.

Running a chain: each rule that matches runs its action; NEXT goes on, CONTINUE stops the
chain (the request goes on), BREAK stops it and ends the request. ``goto`` jumps forward only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vassal.log import log

from . import actions as A
from .conditions import Condition, ConditionError, compile_condition, compile_regexp
from .exchange import Exchange
from .expand import TemplateError, constant, is_constant

NEXT, CONTINUE, BREAK = A.NEXT, A.CONTINUE, A.BREAK

#: option prefix -> chain
PREFIXES = {"route": "request", "final-route": "final", "error-route": "error", "response-route": "response"}
#: option suffix -> the request variable its regexp reads
SUBJECTS: dict[str, tuple[str, ...]] = {
    "": ("PATH_INFO",), "-host": ("HTTP_HOST", "SERVER_NAME"), "-uri": ("REQUEST_URI",),
    "-qs": ("QUERY_STRING",), "-remote-addr": ("REMOTE_ADDR",), "-user-agent": ("HTTP_USER_AGENT",),
    "-remote-user": ("REMOTE_USER",), "-referer": ("HTTP_REFERER",),
}
#: the subject names uWSGI prints in its routing table dump
_SUBJECT_NAMES = {"": "path_info", "-host": "http_host", "-uri": "request_uri", "-qs": "query_string",
                  "-remote-addr": "remote_addr", "-user-agent": "user_agent", "-remote-user": "remote_user",
                  "-referer": "referer"}
KINDS = ("-label", "-if", "-if-not", "-run", "-status")


#: every routing option: name -> (chain, kind: a SUBJECTS key or one of KINDS)
ROUTE_OPTIONS: dict[str, tuple[str, str]] = {
    "route": ("request", ""), "route-host": ("request", "-host"), "route-uri": ("request", "-uri"),
    "route-qs": ("request", "-qs"), "route-remote-addr": ("request", "-remote-addr"),
    "route-user-agent": ("request", "-user-agent"),
    "route-remote-user": ("request", "-remote-user"), "route-referer": ("request", "-referer"),
    "route-label": ("request", "-label"), "route-if": ("request", "-if"),
    "route-if-not": ("request", "-if-not"), "route-run": ("request", "-run"),
    "final-route": ("final", ""), "final-route-host": ("final", "-host"),
    "final-route-uri": ("final", "-uri"), "final-route-qs": ("final", "-qs"),
    "final-route-remote-addr": ("final", "-remote-addr"),
    "final-route-user-agent": ("final", "-user-agent"),
    "final-route-remote-user": ("final", "-remote-user"),
    "final-route-referer": ("final", "-referer"), "final-route-label": ("final", "-label"),
    "final-route-if": ("final", "-if"), "final-route-if-not": ("final", "-if-not"),
    "final-route-run": ("final", "-run"), "final-route-status": ("final", "-status"),
    "error-route": ("error", ""), "error-route-host": ("error", "-host"),
    "error-route-uri": ("error", "-uri"), "error-route-qs": ("error", "-qs"),
    "error-route-remote-addr": ("error", "-remote-addr"),
    "error-route-user-agent": ("error", "-user-agent"),
    "error-route-remote-user": ("error", "-remote-user"),
    "error-route-referer": ("error", "-referer"), "error-route-label": ("error", "-label"),
    "error-route-if": ("error", "-if"), "error-route-if-not": ("error", "-if-not"),
    "error-route-run": ("error", "-run"), "error-route-status": ("error", "-status"),
    "response-route": ("response", ""), "response-route-host": ("response", "-host"),
    "response-route-uri": ("response", "-uri"), "response-route-qs": ("response", "-qs"),
    "response-route-remote-addr": ("response", "-remote-addr"),
    "response-route-user-agent": ("response", "-user-agent"),
    "response-route-remote-user": ("response", "-remote-user"),
    "response-route-referer": ("response", "-referer"),
    "response-route-label": ("response", "-label"), "response-route-if": ("response", "-if"),
    "response-route-if-not": ("response", "-if-not"), "response-route-run": ("response", "-run"),
    "response-route-status": ("response", "-status"),
}


class RouteError(ValueError):
    """A rule that cannot be used; the message names the option and where it was given."""


@dataclass(slots=True)
class Rule:
    pos: int
    option: str
    text: str
    label: str | None = None
    subject: tuple[str, ...] = ()  # request variables, the first one present is read
    regexp: re.Pattern[str] | None = None
    condition: Condition | None = None
    negate: bool = False
    status: int | None = None
    action: Callable[[Exchange], int] | None = None
    action_text: str = ""
    origin: str = ""  # where the option was given (file:line), for errors


@dataclass
class Chain:
    name: str
    rules: list[Rule] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # first rule of each name wins
    steps: list[tuple] = field(default_factory=list)  # the rules as ``run`` walks them


def parse_rule(option: str, value: str, pos: int) -> Rule:
    """One rule; RouteError (without the origin: the caller adds it)."""
    chain, suffix = ROUTE_OPTIONS[option]
    rule = Rule(pos, option, value)
    if suffix == "-label":
        rule.label = value
        return rule
    if suffix == "-run":
        rule.action_text = value
    else:
        head, space, rest = value.partition(" ")
        if not space:
            raise RouteError(f"invalid route syntax: {value!r} (expected {_syntax(suffix)})")
        rule.action_text = rest
        try:
            if suffix in ("-if", "-if-not"):
                name, colon, args = head.partition(":")
                if not colon:
                    raise RouteError(f"invalid route condition syntax: {head!r} (expected NAME:ARGS)")
                rule.condition = compile_condition(name, args)
                rule.negate = suffix == "-if-not"
            elif suffix == "-status":
                rule.status = A._c_atoi(head)
            else:
                rule.subject = SUBJECTS[suffix]
                rule.regexp = compile_regexp(head)
        except (ConditionError, TemplateError) as exc:
            raise RouteError(str(exc)) from None
    try:
        rule.action = A.build(rule.action_text)
    except (A.ActionError, TemplateError) as exc:
        raise RouteError(str(exc)) from None
    return rule


def _syntax(suffix: str) -> str:
    if suffix in ("-if", "-if-not"):
        return "CONDITION:ARGS ACTION:ARGS"
    if suffix == "-status":
        return "STATUS ACTION:ARGS"
    return "REGEXP ACTION:ARGS"


def check_gotos(chain: Chain) -> None:
    """A ``goto`` whose target is fixed must name a label of its chain (or a rule number)
    after its own rule: uWSGI would refuse it on every request."""
    for rule in chain.rules:
        act = rule.action
        label = getattr(act, "goto_label", None)
        if label is None or not is_constant(label):
            continue
        name = constant(label)
        target = chain.labels.get(name, act.goto_number)
        if name not in chain.labels and not name.strip().lstrip("+").isdigit():
            raise RouteError(f"{rule.option} ({rule.origin}): goto to label \"{name}\", which the "
                             f"{chain.name} chain does not have (labels: "
                             f"{' '.join(chain.labels) or 'none'})")
        if target <= rule.pos:
            raise RouteError(f"{rule.option} ({rule.origin}): goto \"{name}\" jumps backwards "
                             "(goto can only jump forward)")


# --- running ----------------------------------------------------------------------------------


#: what a rule tests, in the engine's tuples
_LABEL, _REGEXP, _CONDITION, _STATUS, _ALWAYS = range(5)


def compiled(chain: Chain) -> list[tuple]:
    """The chain as the engine walks it: (kind, test, extra, action) per rule, built once."""
    out = []
    for r in chain.rules:
        if r.label is not None:
            out.append((_LABEL, None, None, None))
        elif r.regexp is not None:
            out.append((_REGEXP, r.regexp.search, r.subject, r.action))
        elif r.condition is not None:
            out.append((_CONDITION, r.condition, r.negate, r.action))
        elif r.status is not None:
            out.append((_STATUS, r.status, None, r.action))
        else:
            out.append((_ALWAYS, None, None, r.action))
    return out


def run(chain: Chain, ex: Exchange) -> int:
    """uWSGI's ``uwsgi_apply_routes_do``: NEXT/CONTINUE/BREAK of one pass over a chain."""
    steps = chain.steps
    n = len(steps)
    ctx = ex.ctx
    env = ex.env
    # a chain may run inside another one's action (a status set by an action runs the error
    # chain): the outer rule's match and jump survive it
    saved_chain, saved_goto, saved_groups = ex.chain, ex.goto, ctx.groups
    ex.chain = chain
    ex.goto = 0
    i = 0
    try:
        while i < n:
            kind, test, extra, action = steps[i]
            if kind == _REGEXP:
                subject = None
                for var in extra:
                    subject = env.get(var)
                    if subject:
                        break
                if type(subject) is not str:
                    i += 1
                    continue
                m = test(subject)
                if m is None:
                    i += 1
                    continue
                ctx.groups = (m.group(0), *m.groups())
            elif kind == _CONDITION:
                ctx.groups = ()
                if test.test(test, ctx) == extra:
                    i += 1
                    continue
                if extra:
                    ctx.groups = ()
            elif kind == _LABEL or (kind == _STATUS and ctx.status != test):
                i += 1
                continue
            else:
                ctx.groups = ()
            ex.in_action = True
            try:
                outcome = action(ex)
            finally:
                ex.in_action = False
            if outcome == BREAK:
                ex.count_routed()
                return BREAK
            if outcome == CONTINUE:
                return CONTINUE
            if ex.goto:
                target, ex.goto = ex.goto, 0
                if target <= i:
                    log("[uwsgi-route] ERROR \"goto\" instruction can only jump forward (check your label !!!)")
                    return BREAK
                i = target
                continue
            i += 1
        return CONTINUE
    finally:
        ex.chain, ex.goto, ctx.groups = saved_chain, saved_goto, saved_groups


def dump(chains: dict[str, Chain]) -> None:
    """The table as uWSGI prints it at start-up."""
    titles = {"request": "", "error": "error ", "response": "response ", "final": "final "}
    for name in ("request", "error", "response", "final"):
        chain = chains[name]
        if not chain.rules:
            continue
        log(f"*** dumping internal {titles[name]}routing table ***")
        for r in chain.rules:
            if r.label is not None:
                log(f"[rule: {r.pos}] label: {r.label}")
            elif r.regexp is None and r.condition is None and r.status is None:
                log(f"[rule: {r.pos}] action: {r.action_text}")
            else:
                suffix = ROUTE_OPTIONS[r.option][1]
                subject = _SUBJECT_NAMES.get(suffix) or r.text.partition(" ")[0].partition(":")[2]
                kind = "regexp" if r.regexp is not None else "func"
                pattern = r.regexp.pattern if r.regexp is not None else r.text.partition(" ")[0].partition(":")[0]
                log(f"[rule: {r.pos}] subject: {subject} {kind}: {'!' if r.negate else ''}{pattern} "
                    f"action: {r.action_text}")
        log(f"*** end of the internal {titles[name]}routing table ***")


def rules_of(config: Any) -> dict[str, Chain]:
    """Every routing option of the config, in order, as four chains; RouteError on the first
    bad one."""
    chains = {name: Chain(name) for name in ("request", "error", "response", "final")}
    for entry in config.entries:
        option = entry.name
        if option not in ROUTE_OPTIONS:
            continue
        chain = chains[ROUTE_OPTIONS[option][0]]
        value = entry.typed if entry.typed is not None else ""
        try:
            rule = parse_rule(option, str(value), len(chain.rules))
        except RouteError as exc:
            raise RouteError(f"{option} ({entry.origin}): {exc}") from None
        rule.origin = str(entry.origin)
        if rule.label is not None:
            chain.labels.setdefault(rule.label, rule.pos)
        chain.rules.append(rule)
    for chain in chains.values():
        check_gotos(chain)
        chain.steps = compiled(chain)
    return chains
