"""Client and AsyncClient (and their view namespaces and subscriptions) offer the same calls
with the same parameters; only ``await`` differs."""

from __future__ import annotations

import inspect

import pytest

import cairn_client as cc

PAIRS = [
    (cc.Client, cc.AsyncClient),
    (cc.KeyValue, cc.AsyncKeyValue),
    (cc.Audit, cc.AsyncAudit),
    (cc.Meta, cc.AsyncMeta),
    (cc.Subscription, cc.AsyncSubscription),
]

# Sync name -> async name where Python's protocols differ.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__", "__iter__": "__aiter__", "__next__": "__anext__"}


def public(cls: type) -> dict[str, object]:
    return {n: m for n, m in vars(cls).items() if callable(m) and (not n.startswith("_") or n in RENAMED or n in RENAMED.values())}


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda c: c.__name__)
def test_same_methods_and_parameters(sync: type, async_: type) -> None:
    sync_methods = public(sync)
    async_methods = public(async_)
    assert {RENAMED.get(n, n) for n in sync_methods} == set(async_methods)
    for name, method in sync_methods.items():
        twin = async_methods[RENAMED.get(name, name)]
        s, a = inspect.signature(method), inspect.signature(twin)  # type: ignore[arg-type]
        assert [(p.name, p.kind, p.default) for p in s.parameters.values()] == [
            (p.name, p.kind, p.default) for p in a.parameters.values()
        ], name
        if name == "subscribe":
            assert not inspect.iscoroutinefunction(twin), "subscribe returns an AsyncSubscription directly"
        elif inspect.isgeneratorfunction(method):
            assert inspect.isasyncgenfunction(twin), f"{name} must be an async iterator"
        elif name not in ("__init__", "__iter__"):
            assert inspect.iscoroutinefunction(twin), f"{name} must be awaited"


def test_properties_match() -> None:
    for sync, async_ in PAIRS:
        sync_props = {n for n, v in vars(sync).items() if isinstance(v, property)}
        assert sync_props == {n for n, v in vars(async_).items() if isinstance(v, property)}, sync.__name__


def test_views_are_attached() -> None:
    with cc.Client(transport=None) as client:
        assert isinstance(client.kv, cc.KeyValue)
        assert isinstance(client.audit, cc.Audit)
        assert isinstance(client.meta, cc.Meta)
