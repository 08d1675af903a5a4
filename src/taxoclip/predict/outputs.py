"""Streaming row writers: CSV, JSONL, Parquet and a terminal table, with `--resume`.

Rows are written batch by batch as they are produced and flushed, so memory stays flat and a
killed run keeps what it finished. Rows of one image are contiguous and images come in input
order, which is what resuming relies on:

- CSV and JSONL are appended to. On resume, a torn last line is dropped and so are all rows of
  the last image in the file (it may be incomplete); that image is done again. The header
  (columns) and the `model` of the existing rows must match the new run.
- Parquet cannot be appended to, so rows go to numbered part files in `<output>.parts/`
  (each written whole, then renamed) and are merged into `<output>` at the end. On resume
  the parts (or a finished file) are kept and the run goes on after them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import TaxoclipError

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "table")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
               ".pq": "parquet"}


def infer_format(output: str | None, fmt: str | None, default_file: str = "csv") -> str:
    """`fmt` if given, else from the output's extension; standard output gets `table` on a terminal."""
    if fmt:
        if fmt not in FORMATS:
            raise TaxoclipError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if fmt == "parquet" and not output:
            raise TaxoclipError("--format parquet needs --output FILE")
        return fmt
    if output and output != "-":
        return _EXTENSIONS.get(Path(output).suffix.lower(), default_file)
    return "table" if sys.stdout.isatty() else "csv"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float):
        return repr(value)
    return " ".join(str(value).splitlines()) if isinstance(value, str) and ("\n" in value or "\r" in value) else str(value)


class RowWriter:
    """Base: `done` is the set of paths already in the output (resume); `write` takes one batch."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self.done: set[str] = set()
        self.rows_written = 0

    def write(self, rows: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (the run completed)."""

    def abandon(self) -> None:
        """Stop without finishing (the run failed or was interrupted): keep what is resumable."""
        self.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def _check_existing(path: Path, resume: bool, overwrite: bool) -> bool:
    """True when an existing output should be resumed; removes it for --overwrite."""
    parts = _parts_dir(path)
    exists = path.exists() or parts.exists()
    if not exists:
        return False
    if resume:
        return True
    if overwrite:
        if path.exists():
            path.unlink()
        shutil.rmtree(parts, ignore_errors=True)
        return False
    raise TaxoclipError(f"{path} exists: pass --resume to continue it, or --overwrite to replace it")


def _check_model(path: Path, found: str | None, expected: dict[str, str]) -> None:
    for column, value in expected.items():
        if found is not None and column == "model" and found != value:
            raise TaxoclipError(f"--resume: {path} was written by model {found}, not {value}; use a new --output")


class _LineWriter(RowWriter):
    """Append-only line formats (CSV, JSONL) with resume by truncation to the last whole image."""

    def __init__(self, path: str | os.PathLike | None, columns: Sequence[str], resume: bool = False,
                 overwrite: bool = False, expect: dict[str, str] | None = None, stream: TextIO | None = None):
        super().__init__(columns)
        self.path = Path(path) if path else None
        self.expect = expect or {}
        if self.path is None:
            self.handle = stream or sys.stdout
            self._owns = False
            self._start_file()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        resuming = _check_existing(self.path, resume, overwrite)
        if resuming and self._resume():
            self.handle = open(self.path, "a", newline="", encoding="utf-8")
        else:
            self.handle = open(self.path, "w", newline="", encoding="utf-8")
            self._start_file()
        self._owns = True

    # Subclasses: how a file starts, how rows become text, how a line is read back.
    def _start_file(self) -> None:
        pass

    def _encode(self, rows: list[dict]) -> str:
        raise NotImplementedError

    def _header_matches(self, first_line: bytes) -> bool:
        raise NotImplementedError

    def _parse(self, line: bytes) -> dict:
        raise NotImplementedError

    def _has_header(self) -> bool:
        return False

    def _resume(self) -> bool:
        """Read the existing file, drop a torn line and the last image's rows, note what is done.

        Returns False when nothing worth keeping was there (the file is then started afresh).
        """
        last_path, last_start, end = None, 0, 0
        model = None
        with open(self.path, "rb") as handle:
            if self._has_header():
                header = handle.readline()
                if not header.endswith(b"\n"):  # killed while writing the header
                    return False
                if not self._header_matches(header):
                    raise TaxoclipError(f"--resume: {self.path} has other columns than this run would write "
                                        f"(different options?); use a new --output")
                last_start = end = handle.tell()
            offset = end
            for line in handle:
                start, offset = offset, offset + len(line)
                if not line.endswith(b"\n"):
                    break  # torn by the kill
                try:
                    row = self._parse(line)
                except ValueError:
                    break
                if not self._has_header() and start == 0 and list(row) != self.columns:
                    raise TaxoclipError(f"--resume: {self.path} has other columns than this run would write "
                                        f"(different options?); use a new --output")
                path = row.get("path")
                model = row.get("model") or model
                if path != last_path:
                    if last_path is not None:
                        self.done.add(last_path)
                    last_path, last_start = path, start
                end = offset
        _check_model(self.path, model, self.expect)
        # The last image may be incomplete: cut the file where its rows start, and redo it.
        keep = last_start if last_path is not None else end
        with open(self.path, "r+b") as handle:
            handle.truncate(keep)
        return keep > 0 or not self._has_header()

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.handle.write(self._encode(rows))
        self.handle.flush()
        self.rows_written += len(rows)

    def close(self) -> None:
        if self._owns and not self.handle.closed:
            self.handle.close()


class CsvWriter(_LineWriter):
    def _has_header(self) -> bool:
        return True

    def _start_file(self) -> None:
        self.handle.write(self._encode_lines([self.columns]))
        self.handle.flush()

    def _encode_lines(self, lines: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(lines)
        return buffer.getvalue()

    def _encode(self, rows: list[dict]) -> str:
        return self._encode_lines([[_text(row.get(c)) for c in self.columns] for row in rows])

    def _header_matches(self, first_line: bytes) -> bool:
        return next(csv.reader([first_line.decode("utf-8-sig").rstrip("\r\n")])) == self.columns

    def _parse(self, line: bytes) -> dict:
        values = next(csv.reader([line.decode("utf-8").rstrip("\r\n")]))
        if len(values) != len(self.columns):
            raise ValueError("not a row of this table")
        return dict(zip(self.columns, values))


def _json_value(value: Any) -> Any:
    if _is_missing(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class JsonlWriter(_LineWriter):
    def _encode(self, rows: list[dict]) -> str:
        return "".join(json.dumps({c: _json_value(row.get(c)) for c in self.columns}, ensure_ascii=False) + "\n"
                       for row in rows)

    def _parse(self, line: bytes) -> dict:
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        return row


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def arrow_schema(columns: Sequence[str], embed_dim: int | None = None) -> Any:
    """Column types: `k` int32, scores float64, `embedding` list<float32>, everything else string."""
    import pyarrow as pa

    fields = []
    for column in columns:
        if column == "k":
            fields.append(pa.field(column, pa.int32()))
        elif column == "score" or column.endswith("_score"):
            fields.append(pa.field(column, pa.float64()))
        elif column == "embedding":
            fields.append(pa.field(column, pa.list_(pa.float32())))
        else:
            fields.append(pa.field(column, pa.string()))
    return pa.schema(fields)


class ParquetWriter(RowWriter):
    """Part files per batch in `<output>.parts/`, merged into `<output>` by `close()`."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], resume: bool = False,
                 overwrite: bool = False, expect: dict[str, str] | None = None):
        import pyarrow.parquet as pq

        super().__init__(columns)
        self.path = Path(path)
        self.parts = _parts_dir(self.path)
        self.schema = arrow_schema(columns)
        self.expect = expect or {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _check_existing(self.path, resume, overwrite):
            self.parts.mkdir(exist_ok=True)
            if self.path.exists():  # a finished output: it becomes the first part
                os.replace(self.path, self.parts / "part-000000.parquet")
            for part in self._part_files():
                try:
                    table = pq.read_table(part, columns=["path", "model"] if "model" in columns else ["path"])
                    names = pq.read_schema(part).names
                except Exception as err:  # noqa: BLE001
                    raise TaxoclipError(f"--resume: cannot read {part}: {err}") from None
                if names != self.columns:
                    raise TaxoclipError(f"--resume: {self.path} has other columns than this run would write "
                                        f"(different options?); use a new --output")
                self.done.update(table.column("path").to_pylist())
                if "model" in table.column_names and table.num_rows:
                    _check_model(self.path, table.column("model")[0].as_py(), self.expect)
        self.parts.mkdir(exist_ok=True)
        existing = self._part_files()
        self.next_part = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        for stray in self.parts.glob(".tmp-*"):
            stray.unlink()

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def write(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        table = pa.Table.from_pylist([{c: _json_value(row.get(c)) for c in self.columns} for row in rows],
                                     schema=self.schema)
        target = self.parts / f"part-{self.next_part:06d}.parquet"
        tmp = self.parts / f".tmp-{self.next_part:06d}.parquet"
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        self.next_part += 1
        self.rows_written += len(rows)

    def abandon(self) -> None:
        """Leave the parts as they are, for `--resume`."""

    def close(self) -> None:
        """Merge the parts into the output file (streaming, one part at a time) and remove them."""
        import pyarrow.parquet as pq

        if not self.parts.exists():
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            for part in self._part_files():
                writer.write_table(pq.read_table(part, schema=self.schema))
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)


class TableWriter(RowWriter):
    """A readable fixed-width table on a terminal, printed as rows arrive (model and bank once)."""

    WIDTHS = {"path": 36, "k": 2, "rank": 7, "name": 30, "score": 7, "common_name": 28, "error": 40, "label": 30}
    HIDDEN = ("model", "bank")

    def __init__(self, columns: Sequence[str], stream: TextIO | None = None):
        super().__init__(columns)
        self.stream = stream or sys.stdout
        lineage = {"kingdom", "phylum", "class", "order", "family", "genus", "species"} if "name" in columns else set()
        self.shown = [c for c in columns if c not in self.HIDDEN and c not in lineage]
        self.started = False

    def _width(self, column: str) -> int:
        if column.endswith("_score"):
            return 7
        return self.WIDTHS.get(column, 18)

    def _cell(self, column: str, value: Any) -> str:
        width = self._width(column)
        text = f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else _text(value)
        if len(text) > width:
            text = "…" + text[-(width - 1):] if column == "path" else text[: width - 1] + "…"
        return text.rjust(width) if column == "score" or column.endswith("_score") or column == "k" else text.ljust(width)

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        lines = []
        if not self.started:
            lines.append(f"# model: {rows[0].get('model')}   bank: {rows[0].get('bank')}")
            lines.append("  ".join(self._cell(c, c) for c in self.shown).rstrip())
            self.started = True
        lines.extend("  ".join(self._cell(c, row.get(c)) for c in self.shown).rstrip() for row in rows)
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.rows_written += len(rows)


def open_writer(output: str | None, fmt: str, columns: Sequence[str], resume: bool = False,
                overwrite: bool = False, expect: dict[str, str] | None = None) -> RowWriter:
    """A writer for `fmt` to `output` (None or `-`: standard output; no resume there)."""
    to_stdout = not output or output == "-"
    if to_stdout and resume:
        raise TaxoclipError("--resume needs --output FILE")
    if fmt == "table":
        if not to_stdout:
            raise TaxoclipError("--format table prints to the terminal; pick csv, jsonl or parquet for --output")
        return TableWriter(columns)
    if fmt == "csv":
        return CsvWriter(None if to_stdout else output, columns, resume, overwrite, expect)
    if fmt == "jsonl":
        return JsonlWriter(None if to_stdout else output, columns, resume, overwrite, expect)
    if fmt == "parquet":
        if to_stdout:
            raise TaxoclipError("Parquet needs --output FILE")
        return ParquetWriter(output, columns, resume, overwrite, expect)
    raise TaxoclipError(f"unknown format {fmt!r}")
