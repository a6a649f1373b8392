"""Introspection of generated message dataclasses into plain field descriptions.

The message classes (kio's, today) are frozen dataclasses whose fields carry
``metadata={"kafka_type": ..., "tag": N}``; nested structs are dataclasses without a
``kafka_type``. This module turns them into FieldSpec tuples that the encoder and the
fallback decoder compile from, without importing the class provider itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Final, Union, get_args, get_origin

EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

STRUCT: Final = "struct"

# Zero values for primitives (Kafka's implicit defaults). uuid's zero is None: the
# message classes represent the all-zero UUID as None.
_ZERO: Final[dict[str, object]] = {
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "uint8": 0,
    "uint16": 0,
    "uint32": 0,
    "uint64": 0,
    "float64": 0.0,
    "bool": False,
    "error_code": 0,
    "string": "",
    "bytes": b"",
    "records": b"",
    "uuid": None,
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
    "datetime_i64": EPOCH,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kafka_type: str  # a primitive type name, or STRUCT
    struct: type | None  # the nested dataclass when kafka_type == STRUCT
    array: bool
    nullable: bool  # for arrays: the array itself may be null
    tag: int | None
    default: Any  # dataclass default, else null if nullable, else the zero value


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (UnionType, Union):
        args = get_args(tp)
        rest = [a for a in args if a is not NoneType]
        if len(rest) != 1:
            raise TypeError(f"unsupported union type {tp!r}")
        return rest[0], len(rest) != len(args)
    return tp, False


def _spec(field: dataclasses.Field[Any]) -> FieldSpec:
    tp, nullable = _strip_optional(field.type)
    array = get_origin(tp) is tuple
    if array:
        tp, _ = _strip_optional(get_args(tp)[0])
    struct = tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None
    kafka_type = STRUCT if struct is not None else field.metadata["kafka_type"]
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    elif nullable:
        default = None
    elif array:
        default = ()
    elif struct is not None:
        default = zero_struct(struct)
    else:
        default = _ZERO[kafka_type]
    return FieldSpec(
        name=field.name,
        kafka_type=kafka_type,
        struct=struct,
        array=array,
        nullable=nullable,
        tag=field.metadata.get("tag"),
        default=default,
    )


@functools.cache
def struct_fields(cls: type) -> tuple[FieldSpec, ...]:
    return tuple(_spec(f) for f in dataclasses.fields(cls))


def is_flexible(cls: type) -> bool:
    return bool(getattr(cls, "__flexible__", False))


@functools.cache
def zero_struct(cls: type) -> Any:
    """An instance with every field at its default (how absent tagged structs decode)."""
    return cls(**{s.name: s.default for s in struct_fields(cls)})
