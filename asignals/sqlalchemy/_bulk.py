"""Bulk statements: ``post_bulk_insert``, ``post_bulk_update`` and ``post_bulk_delete``,
recorded when an ORM-enabled INSERT, UPDATE or DELETE runs through a tracked session
(``do_orm_execute``) and sent, once per statement, after the outermost commit.

The user's result is the one SQLAlchemy returns: the statement is run unchanged, except
that an UPDATE or DELETE left to ``synchronize_session="auto"`` (the default: "evaluate,
or fetch when it cannot") uses ``"fetch"`` where the dialect has RETURNING, so that
SQLAlchemy itself fetches the primary keys of the rows it matched
(``returned_defaults_rows``) without adding anything to the rows the user fetches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.sql.elements import BindParameter

from ._delivery import record
from ._frames import Bulk, Frame
from ._signals import post_bulk_delete, post_bulk_insert, post_bulk_update
from ._tracking import handle


def do_orm_execute(state: ORMExecuteState) -> Any:
    if not (state.is_insert or state.is_update or state.is_delete):
        return None
    signal = (
        post_bulk_insert if state.is_insert else post_bulk_update if state.is_update else None
    ) or post_bulk_delete
    mapper = state.bind_mapper
    if signal._idle() or mapper is None or not signal._wanted(mapper.class_):
        return None
    if state.is_insert:
        result = state.invoke_statement()
        pks = _inserted_keys(state, result, mapper)
    else:
        by_key = state.parameters is not None  # an UPDATE by primary key, a row per set
        if not by_key and _can_fetch(state, mapper):
            state.update_execution_options(synchronize_session="fetch")
        result = state.invoke_statement()
        if by_key:
            pks = _keys_given(_rows(state.parameters), mapper)
        else:
            matched = getattr(result, "returned_defaults_rows", None)
            pks = (
                _matched_keys(matched, mapper)
                if isinstance(result, CursorResult) and matched
                else None
            )
            if pks is None and isinstance(result, CursorResult) and result.rowcount == 0:
                pks = frozenset()
    if pks is not None and not pks:
        return result  # no row affected: nothing to send
    payload = {
        "pks": pks,
        "values": None if state.is_delete else _values(state),
        "statement": state.statement,
    }
    frame = Frame()
    frame.bulk(Bulk(signal, mapper.class_, payload))
    record(state.session, frame)
    return result


def _can_fetch(state: ORMExecuteState, mapper: Any) -> bool:
    """SQLAlchemy may fetch the matched rows' keys with RETURNING: the statement is left
    to ``synchronize_session="auto"`` and the dialect has RETURNING for it.

    The dialect is the session's bind's: asking ``get_bind()`` would be one more call
    the application may observe (a session with binds per mapper: no keys, ``None``)."""
    if state.execution_options.get("synchronize_session", "auto") != "auto":
        return False
    dialect = getattr(state.session.bind, "dialect", None)
    if dialect is None:
        return False
    return bool(dialect.update_returning if state.is_update else dialect.delete_returning)


def _rows(parameters: Any) -> list[Any]:
    """Parameter sets as a list (one set may be given alone)."""
    return parameters if isinstance(parameters, list) else [parameters]


def _keys(rows: Any) -> frozenset[Any]:
    """Rows of primary key values, in the key's column order: a value or a tuple each."""
    return frozenset(row[0] if len(row) == 1 else tuple(row) for row in rows)


def _matched_keys(rows: Any, mapper: Any) -> frozenset[Any]:
    """The keys of the rows SQLAlchemy fetched with RETURNING for ``"fetch"``.

    Their columns are the table's primary key in an order of SQLAlchemy's choosing, which
    may differ from one process to the next (it was a set's): each value is read by its
    column, never by position, for a composite key."""
    columns = mapper.primary_key
    if len(columns) == 1:
        return frozenset(row[0] for row in rows)
    return frozenset(tuple(row._mapping[column] for column in columns) for row in rows)


def _keys_given(parameters: Any, mapper: Any) -> frozenset[Any] | None:
    """The primary keys in parameter sets (None when some set has not all of them)."""
    names = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    found: list[Any] = []
    for parameters_set in parameters:
        if not all(name in parameters_set for name in names):
            return None
        values = tuple(parameters_set[name] for name in names)
        found.append(values[0] if len(values) == 1 else values)
    return frozenset(found)


def _inserted_keys(state: ORMExecuteState, result: Any, mapper: Any) -> frozenset[Any] | None:
    if state.parameters is not None:
        return _keys_given(_rows(state.parameters), mapper)
    statement: Any = state.statement
    own_rows = statement._returning or statement._multi_values  # no single key to read
    if isinstance(result, CursorResult) and not own_rows:
        rows: Any = result.inserted_primary_key_rows  # one row: the cursor's lastrowid
        if rows and all(value is not None for row in rows for value in row):
            return _keys(rows)
    return None


def _values(state: ORMExecuteState) -> Any:
    """What the statement sets: a dict, or a list of dicts (one per row)."""
    parameters = state.parameters
    if isinstance(parameters, list):
        return [dict(one) for one in parameters]
    if parameters is not None:  # one parameter set, given alone
        one: Any = parameters
        return dict(one)
    statement: Any = state.statement
    if getattr(statement, "_multi_values", None):
        return [_named(row) for rows in statement._multi_values for row in rows]
    return _named(statement._values or {})


def _named(values: Any) -> dict[str, Any]:
    """Column (or attribute) keys by name; a bound value as the value itself."""
    return {
        str(getattr(key, "key", key)): value.value if isinstance(value, BindParameter) else value
        for key, value in dict(values).items()
    }


handle(do_orm_execute=do_orm_execute)
