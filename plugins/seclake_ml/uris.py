"""One reading of locations: ``s3://bucket/key`` URIs and local paths.

Every part of the package that splits an S3 URI or joins a location goes through these functions,
so a location is judged the same way everywhere:

* :func:`is_s3` tells an ``s3://`` URI from a local path;
* :func:`split_s3_uri` gives ``(bucket, key)``, refusing a bucket name that breaks the S3 naming
  rules and a key with empty or ``..`` segments;
* :func:`s3_prefix` gives ``(bucket, key prefix ending in '/')`` for a URI naming a folder;
* :func:`join_location` appends path segments to an S3 URI or a local folder;
* :func:`s3_subfolders` lists the sub-folders directly under an S3 key prefix.

Errors are :class:`ValueError` naming the argument and its value. Standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SCHEME = "s3://"
# S3 bucket naming rules: 3-63 characters; lowercase letters, digits, dots and hyphens; starting and
# ending with a letter or digit; no two adjacent dots (checked separately).
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SHOWN = 200  # characters of a refused value quoted in an error


def _refuse(name: str, value: Any, expected: str) -> ValueError:
    shown = value[:_SHOWN] if isinstance(value, str) else value
    return ValueError(f"{name}: got {shown!r}; expected {expected}")


def is_s3(location: Any) -> bool:
    """Whether ``location`` is an ``s3://`` URI (a string starting with the scheme), not a local path.

    :param location: a location as configured or computed; anything that is not a string is not S3.
    """
    return isinstance(location, str) and location.startswith(SCHEME)


def is_bucket_name(bucket: Any) -> bool:
    """Whether ``bucket`` follows the S3 bucket naming rules (3-63 lowercase letters, digits, '.', '-').

    :param bucket: the candidate bucket name.
    """
    return isinstance(bucket, str) and BUCKET_RE.fullmatch(bucket) is not None and ".." not in bucket


def split_s3_uri(uri: Any, name: str = "uri", *, require_key: bool = False) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``; the key is ``""`` for ``s3://bucket`` (and ``s3://bucket/``).

    A trailing ``/`` is kept in the key (it names a folder). Refused with a :class:`ValueError`
    naming ``name`` and the value: anything but an ``s3://`` string, a bucket name outside the S3
    rules, a key with an empty segment (``//``, a leading ``/``) or a ``..`` segment, and an empty
    key when ``require_key`` is set.

    :param uri: the URI to split.
    :param name: the argument or setting the URI came from, named in errors.
    :param require_key: refuse ``s3://bucket`` and ``s3://bucket/`` (no object or prefix named).
    """
    if not is_s3(uri):
        raise _refuse(name, uri, "an s3://bucket/key URI")
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not is_bucket_name(bucket):
        raise _refuse(name, uri, "an s3://bucket/key URI with a valid bucket name "
                                 "(3-63 lowercase letters, digits, '.' and '-')")
    segments = key.removesuffix("/").split("/") if key else []
    if any(s in ("", "..") for s in segments):
        raise _refuse(name, uri, "an s3://bucket/key URI without empty or '..' segments in the key")
    if require_key and not key:
        raise _refuse(name, uri, "an s3://bucket/key URI with a non-empty key")
    return bucket, key


def s3_prefix(uri: Any, name: str = "uri", *, allow_root: bool = False) -> tuple[str, str]:
    """``(bucket, key prefix ending in '/')`` of an ``s3://bucket/prefix`` URI naming a folder.

    A missing trailing ``/`` is added, so ``…/pairs`` and ``…/pairs_old/`` never share objects.

    :param uri: the URI of the folder.
    :param name: the argument or setting the URI came from, named in errors.
    :param allow_root: accept ``s3://bucket`` (the prefix is then ``""``, the whole bucket);
        otherwise the prefix must be non-empty.
    """
    bucket, key = split_s3_uri(uri, name, require_key=not allow_root)
    return bucket, key if not key or key.endswith("/") else key + "/"


def join_location(base: str, *parts: str) -> str:
    """``base`` with ``parts`` appended: ``/``-joined for an ``s3://`` URI, a local path otherwise.

    Each part is one or more path segments (``"a"``, ``"a/b"``); an empty part, an absolute one or
    one with an empty or ``..`` segment is refused, so a join never climbs out of ``base``.

    :param base: an ``s3://bucket[/prefix]`` URI or a local folder (a trailing ``/`` is ignored).
    :param parts: segments to append, in order.
    """
    if not isinstance(base, str) or not base:
        raise _refuse("base", base, "an s3://bucket[/prefix] URI or a local folder")
    for part in parts:
        if not isinstance(part, str) or any(s in ("", "..") for s in part.split("/")):
            raise _refuse("part", part, "a relative path segment (no empty or '..' segments, no leading '/')")
    if is_s3(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base).joinpath(*parts))


def s3_subfolders(paginator: Any, bucket: str, prefix: str) -> list[str]:
    """The full key prefixes (ending in ``/``) of the sub-folders directly under ``prefix``, sorted.

    One ``Delimiter='/'`` listing, page by page; objects directly under ``prefix`` are not returned.

    :param paginator: a boto3 ``list_objects_v2`` paginator.
    :param bucket: the bucket to list.
    :param prefix: the key prefix to list under (a folder ending in ``/``, or the start of a name).
    """
    found: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return sorted(found)
