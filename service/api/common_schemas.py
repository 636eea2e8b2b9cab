"""Schemas and validators shared by several resources: ids, ``n``, filters, the recommendation answer."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from webargs.fields import DelimitedList

from service.domain.errors import InvalidInput
from service.domain.ranking import DEFAULT_N

MAX_ID_LENGTH = 256
MAX_N = 100
MAX_EXCLUDE = 500
#: Control characters and lone surrogates: never part of an id, and unsafe in logs and keys.
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

SOURCES = ("personalized", "session", "popular", "popular-fallback", "basket", "similar-items")


#: What ``IdField`` / ``path_id`` accept, as the OpenAPI ``pattern`` of ids: no control character and not
#: only whitespace (``\s`` is Python's, i.e. ``str.isspace``, what ``strip`` removes).
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def _check_id(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("must not be blank")
    if _BAD_ID_CHARS.search(value):
        raise ma.ValidationError("must not contain control characters")


def is_valid_id(value: Any) -> bool:
    """What ``IdField`` accepts, as one cheap test (hot paths check many ids without raising)."""
    return is_plain_id(value) and not has_bad_id_chars(value)


def is_plain_id(value: Any) -> bool:
    """``is_valid_id`` but for the character test, which a caller checking many ids runs once over them all."""
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and not value.isspace()


def are_plain_ids(values: list[Any]) -> bool:
    """``all(is_plain_id(v) for v in values)`` with the loops in C: a rank page checks 20 to 500 ids, and a
    Python call per id cost it several µs."""
    if not values:
        return True
    if set(map(type, values)) != {str}:
        return False
    lengths = list(map(len, values))
    return min(lengths) > 0 and max(lengths) <= MAX_ID_LENGTH and not any(map(str.isspace, values))


def has_bad_id_chars(text: str) -> bool:
    """Whether ``text`` has a character no id may contain (one search over many ids joined)."""
    return _BAD_ID_CHARS.search(text) is not None


def IdField(**kwargs: Any) -> fields.String:
    """A customer, item, event or decision id: 1-256 characters, no control characters."""
    metadata = {"pattern": ID_PATTERN, **kwargs.pop("metadata", {})}
    return fields.String(validate=[validate.Length(1, MAX_ID_LENGTH), _check_id], metadata=metadata, **kwargs)


def path_id(value: str, what: str) -> str:
    """Validate an id taken from the URL path (400 with the field at fault)."""
    try:
        if len(value) > MAX_ID_LENGTH:
            raise ma.ValidationError(f"longer than {MAX_ID_LENGTH} characters")
        _check_id(value)
    except ma.ValidationError as exc:
        raise InvalidInput(f"invalid {what}", details={"path": {what: exc.messages}}) from None
    return value


_ASCII_INTEGER = re.compile(r"-?[0-9]+")
_ASCII_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class Integer(fields.Integer):
    """An integer; given as text (a query parameter), only ASCII digits: ``５``, ``1_0``, `` 5`` are refused
    (Python's ``int`` would take them)."""

    def _validated(self, value: Any) -> Any:
        if isinstance(value, str) and not _ASCII_INTEGER.fullmatch(value):
            raise self.make_error("invalid")
        return super()._validated(value)


class Float(fields.Float):
    """A number; given as text, only ASCII digits (with an optional fraction and exponent). ``strict``: a
    JSON number only (a body field documented as ``type: number`` takes no string)."""

    def __init__(self, *, strict: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strict = strict

    def _validated(self, value: Any) -> Any:
        if isinstance(value, str) and (self.strict or not _ASCII_NUMBER.fullmatch(value)):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """A JSON ``true`` / ``false`` only (marshmallow's Boolean also takes "yes", 1, "on"...)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


def n_field(default: int = DEFAULT_N, *, strict: bool = False) -> fields.Integer:
    return Integer(load_default=default, strict=strict, validate=validate.Range(1, MAX_N),
                          metadata={"description": f"number of items, 1..{MAX_N}"})


def category_field(description: str) -> fields.String:
    return fields.String(load_default=None, validate=validate.Length(1, MAX_ID_LENGTH),
                         metadata={"description": description})


class RepeatableList(DelimitedList):
    """Comma-separated values, repeatable: ``exclude=A,B``, ``exclude=A&exclude=B`` and mixes of both."""

    is_multiple = True  # webargs hands over every value of a repeated query parameter

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                raise self.make_error("invalid")
            value = ",".join(v for v in value if v != "")
        return super()._deserialize(value, attr, data, **kwargs)


class QueryFiltersSchema(ma.Schema):
    """``exclude``, ``category`` and ``exclude_category`` as query parameters."""

    exclude = RepeatableList(IdField(), load_default=list, validate=validate.Length(max=MAX_EXCLUDE),
                             metadata={"description": "item ids never to return: comma-separated and/or repeated "
                                                      "(`exclude=A,B` or `exclude=A&exclude=B`)"})
    category = category_field("only items of this category")
    exclude_category = category_field("no items of this category")


class RecommendedItemSchema(ma.Schema):
    """One recommended item with its metadata (null where unknown) and reason."""

    item_id = fields.String(required=True)
    score = fields.Float(required=True)
    title = fields.String(allow_none=True)
    price = fields.Float(allow_none=True)
    category = fields.String(allow_none=True)
    reason = fields.String(allow_none=True, metadata={
        "description": "why this item, e.g. 'bought with 85123A you ordered', 'you buy this about every month'"})


class RecommendationsSchema(ma.Schema):
    """Every recommendation answer: the model version, where it came from, and the items."""

    model_version = fields.String(required=True)
    source = fields.String(required=True, metadata={"enum": list(SOURCES), "description": (
        "personalized: the customer's history; session: events of a customer the model does not know; "
        "popular: nothing to personalise from; popular-fallback: Redis unavailable, answered from memory; "
        "basket: from the posted items; similar-items: items bought by the same customers")})
    customer_id = fields.String()
    item_id = fields.String()
    segment = fields.String(metadata={"description": "popular lists: 'global', 'country:NAME' or, for a segment "
                                                     "column, 'SEGMENT:VALUE'"})
    items = fields.List(fields.Nested(RecommendedItemSchema), required=True)
