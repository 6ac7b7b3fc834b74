"""The MQTT topic tree of :mod:`serving.adapters.mqtt` (its docstring draws it): which
topic an event and an asset's state go to, and how an id becomes one topic level."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "PLACEHOLDER",
    "Place",
    "check_root",
    "equipment_of",
    "event_name",
    "level",
    "state_topic",
    "topic_for",
]

PLACEHOLDER = "_"  # a hierarchy level the asset does not have
_ESCAPES = str.maketrans({"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "\x00": "%00"})
_OUR_TYPES = "io.assettwin."
# One or more non-empty levels without wildcards or NUL; not a broker's $SYS-like tree.
_ROOT = re.compile(r"[^/+#$\x00][^/+#\x00]*(?:/[^/+#\x00]+)*")


class Place(NamedTuple):
    """Where an asset sits in the ISA-95 equipment hierarchy (None: no such level)."""

    site: str | None = None
    area: str | None = None
    work_center: str | None = None

    @classmethod
    def of(cls, row: Any) -> Place:
        """The place of an ``Asset`` row, or of an asset's JSON representation."""
        if isinstance(row, Mapping):
            return cls(row.get("site"), row.get("area"), row.get("work_center"))
        return cls(row.site, row.area, row.work_center)


def level(value: str | None) -> str:
    """One topic level for an id: ``%``, ``/``, ``+``, ``#`` and NUL percent-encoded, a
    value that is exactly ``_`` as ``%5F``; ``_`` for none (None or empty)."""
    if not value:
        return PLACEHOLDER
    if value == PLACEHOLDER:
        return "%5F"
    return value.translate(_ESCAPES)


def event_name(event_type: str) -> str:
    """The last topic level of an event: ``io.assettwin.decision.issued`` ->
    ``decision-issued``; another source's type keeps its prefix (``com-acme-x``)."""
    short = event_type.removeprefix(_OUR_TYPES)
    return level(short.replace(".", "-").replace("_", "-"))


def check_root(root: str) -> str:
    """``root`` if it is a valid enterprise prefix, else a ValueError saying what is."""
    if not isinstance(root, str) or not _ROOT.fullmatch(root):
        raise ValueError(
            "topic_root must be one or more non-empty topic levels without '+', '#', NUL "
            f"or a leading '$' (e.g. acme/asset-twin), got {root!r}")
    return root


def _asset_base(root: str, place: Place, equipment_id: str) -> str:
    return "/".join([root, *map(level, place), level(equipment_id), "twin"])


def state_topic(root: str, equipment_id: str, place: Place) -> str:
    """``<root>/<site>/<area>/<work_center>/<equipment_id>/twin/state``."""
    return f"{_asset_base(root, place, equipment_id)}/state"


def equipment_of(envelope: Mapping[str, Any]) -> str | None:
    """The asset an event is about: ``data.equipment_id``, else an ``asset/<id>`` subject;
    None for an event about no asset."""
    data = envelope.get("data")
    named = data.get("equipment_id") if isinstance(data, Mapping) else None
    if isinstance(named, str) and named:
        return named
    kind, _, rest = str(envelope.get("subject", "")).partition("/")
    return rest if kind == "asset" and rest else None


def topic_for(root: str, envelope: Mapping[str, Any], place: Place | None = None) -> str:
    """The topic of one event. ``place``: where the asset of :func:`equipment_of` sits
    (None or ``Place()`` when the store does not know it)."""
    name = event_name(str(envelope["type"]))
    equipment_id = equipment_of(envelope)
    if equipment_id is not None:
        return f"{_asset_base(root, place or Place(), equipment_id)}/{name}"
    kind, _, rest = str(envelope["subject"]).partition("/")
    branch = f"_{kind}s" if rest else "_other"
    return f"{root}/{level(branch)}/{level(rest or kind)}/twin/{name}"
