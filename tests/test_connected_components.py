"""The identity graph's connected components (intermediate.crm360_connected_components, created by
macros/connected_components.sql) against a plain union-find, on graphs built to be hard for label
propagation: long chains numbered at random (many rounds), stars, a ladder, many small components,
self-loops and repeated edges, and random sparse graphs."""

from __future__ import annotations

import random
import re
from itertools import pairwise
from pathlib import Path

import pytest

MACRO = Path(__file__).resolve().parents[1] / "dbt_project" / "macros" / "connected_components.sql"


def _function_sql() -> str:
    """The function's DDL as the on-run-start hook runs it: the macro's body (it holds no Jinja)."""
    text = MACRO.read_text(encoding="utf-8")
    body = re.search(r"\{% macro create_connected_components_function\(\) -%\}(.*?)\{%- endmacro %\}", text, re.S)
    assert body and "{{" not in body.group(1) and "{%" not in body.group(1)
    return body.group(1)


def _expected(edges: list[tuple[int, int]]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a == b:
            continue
        for n in (a, b):
            parent.setdefault(n, n)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for n in parent:
        members.setdefault(find(n), []).append(n)
    return {n: min(group) for group in members.values() for n in group}


def _graphs(rng: random.Random) -> dict[str, list[tuple[int, int]]]:
    ids = rng.sample(range(1, 10**9), 20000)
    pop = iter(ids)
    chain = [next(pop) for _ in range(500)]
    star = [next(pop) for _ in range(300)]
    ladder = [next(pop) for _ in range(400)]
    small = [next(pop) for _ in range(3000)]
    sparse = [next(pop) for _ in range(4000)]
    graphs = {
        "chain": list(pairwise(chain)),
        "star": [(star[0], n) for n in star[1:]],
        "ladder": [(ladder[i], ladder[i + 2]) for i in range(len(ladder) - 2)]
                  + [(ladder[i], ladder[i + 1]) for i in range(0, len(ladder), 50)],
        "small components, self-loops, repeats": [(small[i], small[i + 1]) for i in range(0, len(small) - 1, 3)]
                  + [(n, n) for n in small[::7]] + [(small[1], small[0])] * 3,
        "random sparse": [(rng.choice(sparse), rng.choice(sparse)) for _ in range(3500)],
    }
    graphs["all of them"] = [edge for edges in list(graphs.values()) for edge in edges]
    return graphs


@pytest.mark.parametrize("seed", [1, 2])
def test_components_equal_a_union_find(db, seed):
    with db.connect() as conn:
        conn.execute(_function_sql())
        for name, edges in _graphs(random.Random(seed)).items():
            conn.execute("drop table if exists pg_temp.graph")
            conn.execute("create temp table graph (node_a bigint, node_b bigint)")
            with conn.cursor().copy("copy pg_temp.graph (node_a, node_b) from stdin") as copy:
                for edge in edges:
                    copy.write_row(edge)
            found = dict(conn.execute(
                "select node_id, component_id from intermediate.crm360_connected_components('pg_temp.graph')"
            ).fetchall())
            assert found == _expected(edges), f"{name}: components differ from a union-find"
