"""TF Hub's HttpCompressedFileResolver, re-enacted over real HTTP for the mirror tests.

tensorflow_hub cannot be installed here (no PyPI), so this does what its resolver does for an
http(s) handle in COMPRESSED mode, step for step (see the protocol reference, parts A1 and A5):
  - the URL is the handle with ("tf-hub-format", "compressed") appended the way
    `_append_format_query` does it (urlparse, parse_qsl, append, urlencode);
  - `urllib.request.urlopen(Request(url))` with urllib's default headers, redirects followed;
  - the body is read as a forward-only stream, `tarfile.open(mode="r|*")` (gzip'd or plain tar);
  - each member goes through `merge_relative_path` (leading "/" stripped, ".." refused), directories
    are made, regular files streamed, anything else refused ("Unexpected object type in tar archive");
  - all of it inside `atomic_download` (the lock protocol), shared with tfhub_atomic_download.py.

Usage: tfhub_http_download.py --cache-dir D --handle H
Prints one JSON line: {"path": module_dir, "downloaded": true|false}.
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import tarfile
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfhub_atomic_download import atomic_download  # noqa: E402


def append_format_query(handle, key_value):
    parsed = urllib.parse.urlparse(handle)
    qsl = urllib.parse.parse_qsl(parsed.query)
    qsl.append(key_value)
    return urllib.parse.urlunparse(parsed._replace(query=urllib.parse.urlencode(qsl)))


def merge_relative_path(dst_path, rel_path):
    norm_rel_path = os.path.normpath(rel_path.lstrip("/"))
    if norm_rel_path == ".":
        return dst_path
    if norm_rel_path.startswith(".."):
        raise ValueError("Relative path %r is invalid." % rel_path)
    merged = os.path.join(dst_path, norm_rel_path)
    if not merged.startswith(dst_path):
        raise ValueError("Relative path %r is invalid. Failed to merge with %r." % (rel_path, dst_path))
    return merged


def extract_tarfile_to_destination(fileobj, dst_path):
    with tarfile.open(mode="r|*", fileobj=fileobj) as tgz:
        for tarinfo in tgz:
            abs_target_path = merge_relative_path(dst_path, tarinfo.name)
            if tarinfo.isfile():
                extracted = tgz.extractfile(tarinfo)
                with open(abs_target_path, "wb") as out:
                    while True:
                        buf = extracted.read(10 << 20)
                        if not buf:
                            break
                        out.write(buf)
            elif tarinfo.isdir():
                os.makedirs(abs_target_path, exist_ok=True)
            else:
                raise ValueError("Unexpected object type in tar archive: %s" % tarinfo.type)


def http_download_fn(handle, tmp_dir):
    url = append_format_query(handle, ("tf-hub-format", "compressed"))
    response = urllib.request.urlopen(urllib.request.Request(url))
    try:
        extract_tarfile_to_destination(response, tmp_dir)
    except tarfile.ReadError:
        raise IOError("%s does not appear to be a valid module." % handle)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--handle", required=True)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="python %(levelname)s: %(message)s")
    os.makedirs(args.cache_dir, exist_ok=True)
    module_dir = os.path.join(args.cache_dir, hashlib.sha1(args.handle.encode("utf8")).hexdigest())
    path, downloaded = atomic_download(args.handle, http_download_fn, module_dir, 600.0, 0.2)
    print(json.dumps({"path": path, "downloaded": downloaded}), flush=True)


if __name__ == "__main__":
    main()
