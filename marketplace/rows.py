"""Model instances from hand-written SQL, for the few reads on the job path that run per job.

Django compiles a queryset's SQL on every execution: for the settle path's one-row read
with a join that is about 3 ms of CPU, ten times the round trip itself. The hot reads
write their SQL once and build instances here, with the same converters the ORM applies
(so the result is the same on PostgreSQL and on SQLite) and without the ORM's compiler.
"""
from __future__ import annotations

from functools import cache, cached_property

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model


def quoted(name: str) -> str:
    return _quoted(connection.vendor, name)


@cache
def _quoted(vendor: str, name: str) -> str:
    # a vendor quotes a name the same way on every connection: once per name, not per statement
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(name)


class RowLoader:
    """The columns of ``model`` (less ``leave_out``, which stay deferred) as ``alias.col, ...``,
    and instances built from rows that list them in that order."""

    def __init__(self, model: type[Model], alias: str, leave_out: tuple[str, ...] = ()) -> None:
        self.model, self.alias = model, alias
        self.fields = [f for f in model._meta.concrete_fields if f.name not in leave_out]
        self.attnames = [f.attname for f in self.fields]
        self.width = len(self.fields)

    @cached_property
    def columns(self) -> str:
        return ", ".join(f"{self.alias}.{quoted(f.column)}" for f in self.fields)

    @cached_property
    def _converters(self) -> list[tuple[int, list, object]]:
        converters = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.alias)
            found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if found:
                converters.append((index, found, column))
        return converters

    def build(self, row, start: int = 0) -> Model:
        db = connections[DEFAULT_DB_ALIAS]  # once, not through the proxy per converter
        values = list(row[start:start + self.width])
        for index, functions, column in self._converters:
            value = values[index]
            for convert in functions:
                value = convert(value, column, db)
            values[index] = value
        return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, values)


def for_update_skip_locked(of: str) -> str:
    """Row locks that skip rows another transaction holds; nothing on SQLite, whose write
    transaction already excludes every other writer."""
    if connection.features.has_select_for_update_skip_locked:
        return f" FOR UPDATE OF {of} SKIP LOCKED"
    return ""


def for_update(of: str) -> str:
    """Row locks that wait for rows another transaction holds; nothing on SQLite (as above)."""
    if connection.features.has_select_for_update_of:
        return f" FOR UPDATE OF {of}"
    return ""


def _prepared(field, value, db=connection):
    if isinstance(value, Model):  # a related instance: its key
        value = value.pk
    return field.get_db_prep_save(value, db)


def update_where(model: type[Model], values: dict, where: str, params: list) -> int:
    """``UPDATE`` these fields (by name) of the rows ``where`` names; how many rows it changed."""
    db = connections[DEFAULT_DB_ALIAS]
    sql, fields = _update_plan(model, tuple(values), where, db.vendor)
    prepared = [_prepared(field, value, db) for field, value in zip(fields, values.values())]
    with db.cursor() as cursor:
        cursor.execute(sql, prepared + list(params))
        return cursor.rowcount


@cache
def _update_plan(model: type[Model], names: tuple[str, ...], where: str, vendor: str) -> tuple[str, list]:
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    sets = ", ".join(f"{quoted(field.column)} = %s" for field in fields)
    return f"UPDATE {quoted(meta.db_table)} SET {sets} WHERE {where}", fields


def insert_row(model: type[Model], values: dict) -> None:
    """``INSERT`` one row of exactly these fields (by name): a field left out takes its column's
    database default, not the model's, so name every column that has no default."""
    db = connections[DEFAULT_DB_ALIAS]
    sql, fields = _insert_row_plan(model, tuple(values), db.vendor)
    prepared = [_prepared(field, value, db) for field, value in zip(fields, values.values())]
    with db.cursor() as cursor:
        cursor.execute(sql, prepared)


@cache
def _insert_row_plan(model: type[Model], names: tuple[str, ...], vendor: str) -> tuple[str, list]:
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    columns = ", ".join(quoted(field.column) for field in fields)
    return f"INSERT INTO {quoted(meta.db_table)} ({columns}) VALUES ({marks(fields)})", fields


def insert_instance(instance: Model, child: type[Model] | None = None, child_values: dict | None = None,
                    link: str = "") -> None:
    """``INSERT`` a new instance, every column as the ORM would write it, and fill in its key and
    its generated columns; with ``child``, also a ``child`` row whose ``link`` field is the new
    key: on PostgreSQL in the same statement (a data-modifying ``WITH``), elsewhere just after."""
    db = connections[DEFAULT_DB_ALIAS]
    together = child is not None and db.vendor == "postgresql"
    plan = _insert_plan(type(instance), child if together else None, tuple(child_values or ()) if together else (),
                        link, db.vendor)
    prepared = [_prepared(field, field.pre_save(instance, True), db) for field in plan.written]
    if together:
        prepared += [_prepared(field, value, db) for field, value in zip(plan.child_fields, child_values.values())]
    with db.cursor() as cursor:
        cursor.execute(plan.sql, prepared)
        row = cursor.fetchone()
    for (field, column, converters), value in zip(plan.returned, row):
        for convert in converters:
            value = convert(value, column, db)
        setattr(instance, field.attname, value)
    instance._state.adding, instance._state.db = False, db.alias
    if child is not None and not together:
        insert_row(child, {link: instance.pk, **child_values})


class _InsertPlan:
    """An ``INSERT`` of a model's instances, written once per model (and child) per vendor."""

    def __init__(self, model: type[Model], child: type[Model] | None, child_names: tuple[str, ...], link: str,
                 vendor: str) -> None:
        db = connections[DEFAULT_DB_ALIAS]
        meta = model._meta
        self.written = [f for f in meta.concrete_fields if not f.generated and f is not meta.auto_field]
        returned = [f for f in meta.concrete_fields if f.generated or f is meta.auto_field]
        self.returned = []
        for field in returned:
            column = field.get_col(meta.db_table)
            self.returned.append((field, column, db.ops.get_db_converters(column) + field.get_db_converters(db)))
        returning = ", ".join(quoted(field.column) for field in returned)
        sql = (f"INSERT INTO {quoted(meta.db_table)} ({', '.join(quoted(f.column) for f in self.written)}) "
               f"VALUES ({marks(self.written)}) RETURNING {returning}")
        self.child_fields = [child._meta.get_field(name) for name in child_names] if child else []
        if child is not None:
            columns = ", ".join(quoted(f.column) for f in [child._meta.get_field(link), *self.child_fields])
            sql = (f"WITH created AS ({sql}), linked AS (INSERT INTO {quoted(child._meta.db_table)} ({columns}) "
                   f"SELECT {quoted(meta.pk.column)}, {marks(self.child_fields)} FROM created) "
                   f"SELECT {returning} FROM created")
        self.sql = sql


@cache
def _insert_plan(model, child, child_names, link, vendor) -> _InsertPlan:
    return _InsertPlan(model, child, child_names, link, vendor)


def marks(values) -> str:
    """``%s, %s, ...``: one placeholder per value."""
    return ", ".join(["%s"] * len(values))


def update_then_insert(model: type[Model], values: dict, where: str, params: list,
                       child: type[Model], child_values: dict, link: str) -> int:
    """PostgreSQL only: ``UPDATE`` the rows ``where`` names and, for each row it changed, ``INSERT``
    a ``child`` row whose ``link`` field is that row's key; one statement (a data-modifying
    ``WITH``), one round trip. How many rows it changed."""
    db = connections[DEFAULT_DB_ALIAS]
    sql, fields, child_fields = _update_then_insert_plan(model, tuple(values), where, child, tuple(child_values), link)
    prepared = [_prepared(field, value, db) for field, value in zip(fields, values.values())]
    prepared_child = [_prepared(field, value, db) for field, value in zip(child_fields, child_values.values())]
    with db.cursor() as cursor:
        cursor.execute(sql, prepared + list(params) + prepared_child)
        return cursor.rowcount


@cache
def _update_then_insert_plan(model, names, where, child, child_names, link) -> tuple[str, list, list]:
    meta, child_meta = model._meta, child._meta
    fields = [meta.get_field(name) for name in names]
    sets = ", ".join(f"{quoted(field.column)} = %s" for field in fields)
    child_fields = [child_meta.get_field(name) for name in child_names]
    columns = ", ".join(quoted(field.column) for field in [child_meta.get_field(link), *child_fields])
    pk = quoted(meta.pk.column)
    sql = (f"WITH changed AS (UPDATE {quoted(meta.db_table)} SET {sets} WHERE {where} RETURNING {pk}) "
           f"INSERT INTO {quoted(child_meta.db_table)} ({columns}) SELECT {pk}, {marks(child_fields)} FROM changed")
    return sql, fields, child_fields
