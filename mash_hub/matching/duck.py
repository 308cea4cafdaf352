"""The DuckDB connection linkage runs in: in memory, and unable to write anything to disk.

Decrypted feature rows live only in this process. DuckDB would otherwise spill large
intermediate results to ``<database>.tmp`` or ``temp_directory`` (plaintext); here the
temp directory is empty (spilling disabled: an operation that does not fit in memory fails
instead), the temp-size budget is zero, external access (COPY TO, read/write of files,
extension downloads) is off, and the configuration is locked so nothing later re-enables it.
"""

from __future__ import annotations

from typing import Any

from mash_hub.matching.features import FEATURE_COLUMNS


def connect(memory_limit: str | None = None, threads: int | None = None) -> Any:
    """A locked-down in-memory DuckDB connection."""
    import duckdb  # noqa: PLC0415 - heavy; only linkage commands need it

    config: dict[str, Any] = {
        "temp_directory": "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET max_temp_directory_size = '0KiB'")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def feature_table(rows: list[dict[str, Any]]) -> Any:
    """Feature rows as an Arrow table with a fixed schema (empty lists and nulls included)."""
    import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415

    schema = pa.schema(
        [
            (name, pa.list_(pa.string()) if kind == "list" else pa.string())
            for name, kind in FEATURE_COLUMNS.items()
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
