"""Fault hooks of the embedded segment stores, for tests.

Each store consults its :class:`FaultPlan` at fixed points of its connection handling. A test
programs the plan with rules; a rule counts the events it matches and *fires* on some of them::

    plan = cluster.faults(0)
    plan.drop_before_append(nth=3)                     # drop the connection instead of applying
                                                       # the store's 3rd append
    plan.drop_after_append(nth=100, every=100, times=None)  # ... after applying every 100th one
    plan.fail_segment("sc/st/0.#epoch.0", "sealed", commands={"SetupAppend"})
    plan.delay_replies(0.5, commands={"DataAppended"}, times=None)

Counting: a rule's matching events are numbered 1, 2, 3, … in the order the store meets them
(across all its connections). It fires on event ``nth``, then on every ``every``-th event after
it, at most ``times`` times (``None``: without limit). Defaults: fire once, on the first match.

Actions (the ``action`` of a :class:`FaultRule`):

========================  ==================================================================
``drop_before_append``    close the connection abruptly instead of applying an append
``drop_after_append``     apply an append, then close the connection before acknowledging it
``delay``                 hold a reply (and everything after it on that connection) ``delay`` s
``no_reply``              never send a reply (the rest of the connection goes on)
``stall``                 accept a connection, then never read from it nor answer (half-open)
``garbage``               send random bytes instead of a reply
``oversized``             send a frame header announcing more than 16 MiB instead of a reply
``unknown_type``          send a frame with an unassigned type code instead of a reply
``wrong_request_id``      send a reply with ``request_id + value`` instead of its request id
``incompatible_hello``    answer Hello with ``Hello(4, 1)``, outside every client's range
``fail_segment``          answer a request naming ``segment`` with ``reply``: ``sealed``,
                          ``no_such_segment``, ``wrong_host`` or ``token_expired`` (which,
                          on the append path, also closes the connection, as Java does)
========================  ==================================================================

Filters: ``commands`` (class names) restricts which events count: for the reply actions
(``delay`` … ``wrong_request_id``) the names of replies (``"DataAppended"``, ``"SegmentRead"``,
…); for ``fail_segment``, the names of requests (``"ReadSegment"``, ``"SetupAppend"``, and
``"Append"`` for appends). ``segment`` restricts ``fail_segment`` and the append drops to one
segment.

A plan is plain data: :meth:`FaultPlan.to_json` / :meth:`FaultPlan.from_json` carry it to a
store in a child process (``pravega-wire serve --faults``). Its methods take a lock, so a test
may program it from another thread while the store runs.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["ACTIONS", "APPEND_ACTIONS", "REPLY_ACTIONS", "SEGMENT_REPLIES", "FaultRule",
           "FaultPlan"]

APPEND_ACTIONS = ("drop_before_append", "drop_after_append")
REPLY_ACTIONS = ("delay", "no_reply", "garbage", "oversized", "unknown_type",
                 "wrong_request_id")
SEGMENT_REPLIES = ("sealed", "no_such_segment", "wrong_host", "token_expired")
ACTIONS = APPEND_ACTIONS + REPLY_ACTIONS + ("stall", "incompatible_hello", "fail_segment")


@dataclasses.dataclass
class FaultRule:
    """One programmed fault (see the module docstring). ``seen`` and ``fired`` count the
    matching events so far and the firings."""

    action: str
    nth: int = 1
    every: int = 1
    times: int | None = 1
    commands: frozenset[str] | None = None
    segment: str | None = None
    delay: float = 0.0
    reply: str | None = None
    value: int = 1
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; one of {ACTIONS}")
        if self.nth < 1 or self.every < 1 or (self.times is not None and self.times < 0):
            raise ValueError("nth and every must be >= 1 and times >= 0 (or None)")
        if self.action == "fail_segment":
            if self.reply not in SEGMENT_REPLIES:
                raise ValueError(f"fail_segment needs reply in {SEGMENT_REPLIES}")
            if self.segment is None:
                raise ValueError("fail_segment needs a segment")
        if self.action == "delay" and not self.delay > 0:
            raise ValueError("delay needs a positive delay (seconds)")
        if self.commands is not None:
            self.commands = frozenset(self.commands)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def _count(self) -> bool:
        """Count one matching event; True if the rule fires on it."""
        self.seen += 1
        if self.exhausted or self.seen < self.nth or (self.seen - self.nth) % self.every:
            return False
        self.fired += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        """The rule's settings (not its counters) as JSON-compatible data."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("seen", "fired")}
        if self.commands is not None:
            data["commands"] = sorted(self.commands)
        return data


class FaultPlan:
    """The faults programmed for one segment store. Empty (no faults) by default."""

    def __init__(self, rules: Iterable[FaultRule] = ()):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        #: True while any rule is programmed: the store's hot path checks only this.
        self.active = False
        for rule in rules:
            self.add(rule)

    # ---- programming --------------------------------------------------------------------------

    def add(self, rule: FaultRule) -> FaultRule:
        """Program ``rule``; returns it (its counters show what happened)."""
        with self._lock:
            self._rules.append(rule)
            self.active = True
        return rule

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()
            self.active = False

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def drop_before_append(self, nth: int = 1, *, every: int = 1, times: int | None = 1,
                           segment: str | None = None) -> FaultRule:
        """Close the connection abruptly instead of applying the ``nth`` append (and so on)."""
        return self.add(FaultRule("drop_before_append", nth, every, times, segment=segment))

    def drop_after_append(self, nth: int = 1, *, every: int = 1, times: int | None = 1,
                          segment: str | None = None) -> FaultRule:
        """Apply the ``nth`` append, then close the connection before acknowledging it."""
        return self.add(FaultRule("drop_after_append", nth, every, times, segment=segment))

    def delay_replies(self, seconds: float, *, commands: Iterable[str] | None = None,
                      nth: int = 1, every: int = 1, times: int | None = 1) -> FaultRule:
        """Hold matching replies (and what follows them on the connection) ``seconds``."""
        return self.add(FaultRule("delay", nth, every, times, _names(commands), delay=seconds))

    def never_reply(self, *, commands: Iterable[str] | None = None, nth: int = 1,
                    every: int = 1, times: int | None = 1) -> FaultRule:
        """Swallow matching replies."""
        return self.add(FaultRule("no_reply", nth, every, times, _names(commands)))

    def stall_connections(self, *, nth: int = 1, every: int = 1,
                          times: int | None = 1) -> FaultRule:
        """Accept matching connections, then never read from them nor answer."""
        return self.add(FaultRule("stall", nth, every, times))

    def send_garbage(self, kind: str = "garbage", *, commands: Iterable[str] | None = None,
                     nth: int = 1, every: int = 1, times: int | None = 1) -> FaultRule:
        """Replace matching replies by bad bytes: ``kind`` is ``garbage`` (random bytes),
        ``oversized`` (a length over 16 MiB) or ``unknown_type`` (an unassigned type code)."""
        if kind not in ("garbage", "oversized", "unknown_type"):
            raise ValueError("kind must be 'garbage', 'oversized' or 'unknown_type'")
        return self.add(FaultRule(kind, nth, every, times, _names(commands)))

    def wrong_request_id(self, *, commands: Iterable[str] | None = None, delta: int = 1,
                         nth: int = 1, every: int = 1, times: int | None = 1) -> FaultRule:
        """Send matching replies with their request id plus ``delta``."""
        return self.add(FaultRule("wrong_request_id", nth, every, times, _names(commands),
                                  value=delta))

    def incompatible_hello(self, *, nth: int = 1, every: int = 1,
                           times: int | None = 1) -> FaultRule:
        """Answer matching Hellos with a version range no client accepts."""
        return self.add(FaultRule("incompatible_hello", nth, every, times))

    def fail_segment(self, segment: str, reply: str, *, commands: Iterable[str] | None = None,
                     nth: int = 1, every: int = 1, times: int | None = None) -> FaultRule:
        """Answer requests naming ``segment`` (of the ``commands`` kinds, default all) with
        ``reply``: ``sealed``, ``no_such_segment``, ``wrong_host`` or ``token_expired``.
        Fires on every match by default."""
        return self.add(FaultRule("fail_segment", nth, every, times, _names(commands),
                                  segment=segment, reply=reply))

    # ---- consulted by the store ---------------------------------------------------------------

    def fire(self, actions: tuple[str, ...], command: str | None = None,
             segment: str | None = None) -> FaultRule | None:
        """Count an event against every rule with one of ``actions`` that matches it (by
        command name and segment); return the first rule that fires, or None."""
        if not self.active:
            return None
        with self._lock:
            chosen = None
            for rule in self._rules:
                if rule.action not in actions:
                    continue
                if rule.commands is not None and command not in rule.commands:
                    continue
                if rule.segment is not None and rule.segment != segment:
                    continue
                if rule._count() and chosen is None:
                    chosen = rule
            return chosen

    # ---- serialization ------------------------------------------------------------------------

    def to_json(self) -> str:
        """The rules' settings as JSON (a list of objects)."""
        return json.dumps([rule.to_dict() for rule in self.rules])

    @classmethod
    def from_json(cls, text: str | list[dict[str, Any]]) -> FaultPlan:
        """A plan from :meth:`to_json`'s output (or the decoded list). Raises ValueError for
        anything that is not a list of valid rules."""
        data = json.loads(text) if isinstance(text, str) else text
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError("a fault plan is a JSON list of rule objects")
        rules = []
        for item in data:
            unknown = set(item) - {f.name for f in dataclasses.fields(FaultRule)}
            if unknown or "action" not in item:
                raise ValueError(f"bad fault rule {item!r}")
            rules.append(FaultRule(**item))
        return cls(rules)

    def __repr__(self) -> str:
        return f"FaultPlan({self.rules!r})"


def _names(commands: Iterable[str] | None) -> frozenset[str] | None:
    if commands is None:
        return None
    if isinstance(commands, str):
        return frozenset((commands,))
    return frozenset(commands)
