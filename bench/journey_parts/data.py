"""Realistic import files: IDs with leading zeros, 5 or 15 typed attributes, 2% bad rows and
5% repeated IDs (a later row of an ID replaces the earlier one).

Every row has as many cells as the header: tablib, which django-import-export reads files with,
refuses a ragged file outright, and all contenders must read the same bytes. The bad rows are
bad in their values instead (IDs, numbers, decimals, dates, URLs, over-long texts).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

# (header, type as the mapping page names it); every attribute is a column of the file.
ATTRIBUTES_5 = [
    ("first_name", "string"),
    ("age", "number"),
    ("score", "float"),
    ("signup", "date"),
    ("avatar", "url"),
]
ATTRIBUTES_15 = ATTRIBUTES_5 + [
    ("city", "string"),
    ("company", "string"),
    ("loyalty_points", "number"),
    ("orders", "number"),
    ("balance", "float"),
    ("avg_basket", "float"),
    ("last_order", "date"),
    ("profile", "url"),
    ("interests", "array"),
    ("devices", "array"),
]
ATTRIBUTES = {5: ATTRIBUTES_5, 15: ATTRIBUTES_15}

BAD_SHARE = 0.02
REPEAT_SHARE = 0.05
ID_DIGITS = 12  # every ID is zero-padded to 12 digits: "000123456789"

_NAMES = [
    "Ada", "Grace", "Linus", "Guido", "Barbara", "Margaret", "Alan", "Frances", "Ken", "Dennis",
    "Radia", "Edsger", "Niklaus", "Donald", "Tim", "Hedy", "Katherine", "Zoë", "José",
    "Françoise", "Ångström", "Łukasz", "Søren", "Chloé", "Noémie", "Björn",
]  # fmt: skip
_CITIES = ["Paris", "Lyon", "São Paulo", "Zürich", "New York", "Kraków", "Montréal", "Tokyo"]
_COMPANIES = ["Acme, Inc.", "Globex", 'The "Best" Shop', "Initech", "Umbrella; Ltd", "Hooli"]
_INTERESTS = ["sports", "music", "travel", "cooking", "books", "movies", "tech", "art"]
_DEVICES = ["ios", "android", "web", "tablet"]


def custom_id(identity: int) -> str:
    """The identity-th distinct ID: unique, scattered, and zero-padded like a customer number."""
    return f"{(identity * 7_919_987 + 104_729) % 10**10:0{ID_DIGITS}d}"


def _value(rng: random.Random, name: str, kind: str, cid: str) -> str:
    if kind == "string":
        if name == "city":
            return rng.choice(_CITIES)
        if name == "company":
            return rng.choice(_COMPANIES)
        return rng.choice(_NAMES)
    if kind == "number":
        return str(rng.randrange(18, 90) if name == "age" else rng.randrange(0, 100_000))
    if kind == "float":
        return f"{rng.uniform(-1000, 1000) if name == 'balance' else rng.random() * 100:.2f}"
    if kind == "date":
        day = f"{rng.randrange(2015, 2026)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        form = rng.random()
        if form < 0.7:
            return f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"
        return day if form < 0.85 else f"{day} {rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
    if kind == "url":
        return f"https://img.example.com/u/{cid}.png?s={rng.randrange(10)}"
    if kind == "array":
        pool = _INTERESTS if name == "interests" else _DEVICES
        return "|".join(rng.sample(pool, rng.randrange(1, 4)))
    raise ValueError(kind)


# The ways a row goes bad, each keeping the row's width; the column is the first of its type.
_BAD_KINDS = (
    "empty_id",
    "space_id",
    "long_id",
    "number",
    "float",
    "date",
    "url",
    "long_string",
)


@dataclass
class Generated:
    rows: int
    bad_rows: int
    repeated_rows: int
    distinct_ids: int
    size: int


def write_csv(path: Path, rows: int, width: int, seed: int = 8) -> Generated:
    """Write the file; the same (rows, width, seed) always gives the same bytes."""
    rng = random.Random(seed)
    attributes = ATTRIBUTES[width]
    first_of = {}
    for i, (_, kind) in enumerate(attributes):
        first_of.setdefault(kind, i)
    bad = repeated = identities = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id"] + [name for name, _ in attributes])
        for _ in range(rows):
            if identities and rng.random() < REPEAT_SHARE:
                cid = custom_id(rng.randrange(identities))
                repeated += 1
            else:
                cid = custom_id(identities)
                identities += 1
            cells = [cid]
            for name, kind in attributes:
                # An optional attribute is sometimes left empty ("no value").
                cells.append("" if rng.random() < 0.05 else _value(rng, name, kind, cid))
            if rng.random() < BAD_SHARE:
                bad += 1
                how = rng.choice(_BAD_KINDS)
                if how == "empty_id":
                    cells[0] = ""
                elif how == "space_id":
                    cells[0] = " " + cid
                elif how == "long_id":
                    cells[0] = cid * 50
                elif how == "number":
                    cells[1 + first_of["number"]] = rng.choice(["forty", "12.5", "1e3"])
                elif how == "float":
                    cells[1 + first_of["float"]] = rng.choice(["12,5", "n/a", "1.2.3"])
                elif how == "date":
                    cells[1 + first_of["date"]] = rng.choice(["31/12/2024", "2024-13-45", "soon"])
                elif how == "url":
                    cells[1 + first_of["url"]] = rng.choice(["img.example.com/x.png", "http://"])
                else:
                    cells[1 + first_of["string"]] = "x" * 400
            w.writerow(cells)
    return Generated(rows, bad, repeated, identities, path.stat().st_size)


def mapping(width: int) -> dict:
    """The mapping a person confirms on the mapping page: ID in column 0, each type as written."""
    return {
        "id": 0,
        "action": None,
        "attributes": [
            {"column": i + 1, "name": name, "type": kind, "separator": "|"}
            for i, (name, kind) in enumerate(ATTRIBUTES[width])
        ],
    }
