"""Metadata filters, applied inside both retrievers.

    from sieve import filters as f
    f.all_of(f.eq("topic", "biology"), f.range("year", gte=1990), f.any_of("lang", ["en", "fr"]))
"""

from __future__ import annotations

from typing import Iterable, Optional

from sieve.types import MetadataValue, value_to_proto
from sieve.v1 import common_pb2

Filter = common_pb2.Filter


def eq(key: str, value: MetadataValue) -> Filter:
    """`metadata[key] == value`."""
    return Filter(equals=common_pb2.Equals(key=key, value=value_to_proto(value)))


def range(key: str, gte: Optional[float] = None, lte: Optional[float] = None) -> Filter:  # noqa: A001
    """`gte <= metadata[key] <= lte` on a numeric value; either bound may be left out."""
    if gte is None and lte is None:
        raise ValueError(f"range filter on {key!r} needs gte, lte or both")
    clause = common_pb2.Range(key=key)
    if gte is not None:
        clause.gte = gte
    if lte is not None:
        clause.lte = lte
    return Filter(range=clause)


def any_of(key: str, values: Iterable[MetadataValue]) -> Filter:
    """`metadata[key]` equals one of `values`."""
    return Filter(any_of=common_pb2.AnyOf(key=key, values=[value_to_proto(v) for v in values]))


def all_of(*clauses: Filter) -> Filter:
    """Every clause holds."""
    return Filter(**{"and": common_pb2.And(clauses=list(clauses))})
