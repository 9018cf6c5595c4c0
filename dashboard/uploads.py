"""Taking a file or a paste in: storing it (hashed, within its size limit, nothing
half-stored left behind) and sniffing its first bytes (encoding, delimiter, header) for the
format step. A web request does only this; the worker validates the rows (validation_run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.db import DatabaseError

from dashboard import csvfiles, mapping
from dashboard.models import Connection, Import

logger = logging.getLogger(__name__)


class UploadRefused(Exception):
    """The upload can't become an import; the message says why, for the form."""


def _spool(chunks: Any, limit: int, what: str) -> tuple[IO[bytes], int, str, int | None]:
    """Copy the upload to a temporary file, hashing it and enforcing the size limit; with the
    position of its first byte above ASCII (None when it has none), which says its encoding."""
    digest = hashlib.sha256()
    size = 0
    non_ascii = None
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise UploadRefused(
                    f"The {what} is larger than the {_human(limit)} allowed; split it into smaller files."
                )
            digest.update(chunk)
            spool.write(chunk)
            if non_ascii is None and not chunk.isascii():
                non_ascii = size - len(chunk) + csvfiles.first_non_ascii(chunk)
    except OSError as exc:
        spool.close()
        raise UploadRefused(
            f"The {what} could not be stored ({exc.strerror or exc}); nothing was kept."
        ) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest(), non_ascii


def _human(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return (
                f"{size:,.0f} {unit}"
                if unit == "bytes"
                else f"{size:,.1f} {unit}".replace(".0 ", " ")
            )
        size /= 1024  # type: ignore[assignment]
    raise AssertionError


def create_import(
    *,
    connection_obj: Connection,
    audience_name: str,
    mode: str,
    user: Any,
    upload: Any = None,
    paste: str | None = None,
) -> Import:
    """Store an upload or a paste and sniff it; raises UploadRefused with a clear message."""
    if upload is not None:
        name = os.path.basename(upload.name or "upload.csv")
        if not name.lower().endswith((".csv", ".txt", ".csv.gz", ".txt.gz", ".gz")):
            raise UploadRefused("Upload a .csv or .txt file (optionally gzip-compressed, .gz).")
        spool, size, sha, non_ascii = _spool(
            upload.chunks(), settings.IMPORT_MAX_FILE_BYTES, "file"
        )
        source = "file"
    else:
        raw = (paste or "").encode("utf-8", "surrogatepass")
        if len(raw) > settings.IMPORT_MAX_PASTE_BYTES:
            raise UploadRefused(
                f"The pasted text ({_human(len(raw))}) is larger than the "
                f"{_human(settings.IMPORT_MAX_PASTE_BYTES)} allowed; upload it as a file instead."
            )
        spool, size, sha, non_ascii = _spool([raw], settings.IMPORT_MAX_PASTE_BYTES, "pasted text")
        name, source = "pasted text", "paste"
    try:
        stream, raw_file = csvfiles.open_binary(spool)  # type: ignore[arg-type]
        compressed = stream is not raw_file
        try:
            head = csvfiles.read_head(stream)
            later = None
            # Its first bytes are ASCII, in every encoding: its first line that is not says
            # which (a big export may have its first accent far down).
            ascii_head = non_ascii is not None and non_ascii >= len(head)
            if source == "file" and not compressed and ascii_head:
                later = csvfiles.sample_at(spool, non_ascii, size)  # type: ignore[arg-type]
            # A paste came from the browser as text, which we stored as UTF-8.
            sniffed = csvfiles.sniff(head, "utf-8" if source == "paste" else None, later=later)
        except csvfiles.FileProblem as problem:
            raise UploadRefused(str(problem)) from None
        whole = len(head) < csvfiles.SNIFF_BYTES
        if sniffed.has_header and not sniffed.preview and whole:
            raise UploadRefused(
                f"The file has a header row ({', '.join(sniffed.columns)}) but no data rows."
            )
        if source == "paste" and len(sniffed.columns) == 1:
            sniffed.has_header = bool(csvfiles.ID_HEADER_RE.fullmatch(sniffed.columns[0]))
            if not sniffed.has_header:
                sniffed.preview = csvfiles._rows(
                    head.decode("utf-8", "replace"), sniffed.delimiter, 20
                )
                sniffed.columns = ["Column 1"]
        spool.seek(0)
        imp = Import(
            connection=connection_obj,
            audience_name=audience_name,
            mode=mode,
            created_by=user,
            source=source,
            original_name=name[:255],
            size=size,
            sha256=sha,
            compressed=compressed,
            encoding=sniffed.encoding,
            delimiter=sniffed.delimiter,
            has_header=sniffed.has_header,
            columns=sniffed.columns,
            preview=sniffed.preview,
        )
        imp.mapping = mapping.propose(sniffed.columns, sniffed.preview, mode)
        # The generated name is known before writing, so that whatever part of the file reached
        # the disk before it filled up can be removed: nothing half-stored is ever left.
        storage = imp.file.storage
        target = imp.file.field.generate_filename(imp, name if source == "file" else "paste.txt")
        try:
            imp.file.name = storage.save(target, File(spool), max_length=imp.file.field.max_length)
            imp.save()
        except (OSError, DatabaseError) as exc:
            _remove_quietly(storage, imp.file.name or target)
            raise UploadRefused(
                f"The upload could not be stored ({getattr(exc, 'strerror', None) or exc}); "
                "nothing was kept. Try again later."
            ) from None
        return imp
    finally:
        spool.close()


def read_again(imp: Import, *, delimiter: str, has_header: bool, encoding: str = "") -> None:
    """Read the file's first rows again as a person chose (the format step), proposing a new
    mapping; raises FileProblem, leaving the import as it was, when it can't be read so."""
    with imp.file.open("rb") as handle:
        stream, _ = csvfiles.open_binary(handle)  # type: ignore[arg-type]
        head = csvfiles.read_head(stream)
    chosen = "utf-8" if imp.source == "paste" else encoding or imp.encoding
    encoding, text = csvfiles.decode_head(head, len(head) >= csvfiles.SNIFF_BYTES, chosen)
    rows = csvfiles._rows(text, delimiter, csvfiles.PREVIEW_ROWS + 1)
    columns, preview = csvfiles.table(rows, has_header)
    if len(columns) > csvfiles.MAX_COLUMNS:
        raise csvfiles.FileProblem(
            f"Read that way, the file has more than the {csvfiles.MAX_COLUMNS} columns a "
            "mapping can hold: choose another delimiter."
        )
    imp.read_again(
        encoding=encoding,
        delimiter=delimiter,
        has_header=has_header,
        columns=columns,
        preview=preview,
        mapping=mapping.propose(columns, preview, imp.mode),
    )


def _remove_quietly(storage: Any, name: str) -> None:
    try:
        if storage.exists(name):
            storage.delete(name)
    except Exception:
        logger.exception("could not remove %s after a failed upload", name)
