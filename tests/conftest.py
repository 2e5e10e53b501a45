"""Fixtures shared by every test package.

- ``table_factory(lines) -> Table``: import provisioning objects (exactly the JSON Lines format of
  DESIGN §6: groups with ``"kind": "group"``, SIMs with or without ``"kind": "sim"``) into a real
  snapshot file under ``tmp_path`` and map it. Tables are closed when the test ends. Invalid lines
  raise ``core.provision.ProvisionError``, as an import would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.provision import import_file
from core.store.table import Table

TableFactory = Callable[[list[dict[str, Any]]], Table]


@pytest.fixture
def table_factory(tmp_path: Path) -> Iterator[TableFactory]:
    tables: list[Table] = []

    def build(lines: list[dict[str, Any]]) -> Table:
        directory = tmp_path / f"table-{len(tables)}"
        directory.mkdir()
        source = directory / "provision.jsonl"
        source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        result = import_file(source, directory / "data", seq=1, now=0.0)
        table = Table.open(result.snapshot_path)
        tables.append(table)
        return table

    yield build
    for table in tables:
        table.close()
