"""A re-enactment of Python tensorflow_hub's cache locking protocol, for hubcache's cross-process tests.

tensorflow_hub itself cannot be installed here (no PyPI), so this script re-enacts, step for step,
`atomic_download` and `_wait_for_lock_to_disappear` from tensorflow_hub/resolver.py as described in
docs/concurrency.md and the project's protocol reference (part A4), with tf.io.gfile replaced by the
os calls it amounts to on a local disk:
  - the lock `<module_dir>.lock` holds "hostname.pid.uid" (uid = uuid4().hex);
  - it is written by tf_utils.atomic_write_string_to_file(overwrite=False): a temp file
    `<lock>.tmp<uuid4hex>`, then gfile.Rename(overwrite=False), which is a check-then-rename;
  - a waiter polls every 5 s (configurable here), and every `lock_file_timeout_sec` compares the
    byte size of the holder's temp dir `<module_dir>.<uid>.tmp` and the lock content with the last
    snapshot (the first snapshot is None, so the first check never steals); if both are unchanged
    it deletes the lock ("Deleting lock file %s due to inactivity.");
  - the download goes to `<module_dir>.<uid>.tmp`, then the descriptor is written, then the temp dir
    is renamed to `<module_dir>` (AlreadyExists: keep the other copy); finally the temp dir is
    deleted and the lock removed if its content is still ours.
The "download" copies a local model folder into the temp dir in small chunks with pauses, so the
temp dir grows the way a real download makes it grow.

Usage: tfhub_atomic_download.py --cache-dir D --handle H --source DIR [--chunk-bytes N]
         [--chunk-delay S] [--lock-timeout S] [--poll S]
Prints one JSON line: {"path": module_dir, "downloaded": true|false}.
"""

import argparse
import datetime
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid


class AlreadyExistsError(OSError):
    pass


def atomic_write_string_to_file(filename, contents, overwrite):
    temp_pathname = filename + ".tmp" + uuid.uuid4().hex
    with open(temp_pathname, "w") as f:
        f.write(contents)
    try:
        # gfile.Rename(overwrite=False) on a local disk: a check, then a rename (not atomic).
        if not overwrite and os.path.exists(filename):
            raise AlreadyExistsError(filename)
        os.rename(temp_pathname, filename)
    except OSError:
        os.remove(temp_pathname)
        raise


def read_file_to_string(filename):
    with open(filename) as f:
        return f.read()


def _lock_file_contents(task_uid):
    return "%s.%d.%s" % (socket.gethostname(), os.getpid(), task_uid)


def _lock_filename(module_dir):
    return os.path.abspath(module_dir) + ".lock"


def _module_dir(lock_filename):
    return lock_filename[0 : -len(".lock")]


def _task_uid_from_lock_file(lock_filename):
    return read_file_to_string(lock_filename).split(".")[-1]


def _temp_download_dir(module_dir, task_uid):
    return "{}.{}.tmp".format(os.path.abspath(module_dir), task_uid)


def _dir_size(directory):
    size = 0
    for elem in os.listdir(directory):
        full = os.path.join(directory, elem)
        size += _dir_size(full) if os.path.isdir(full) else os.stat(full).st_size
    return size


def _locked_tmp_dir_size(lock_filename):
    task_uid = _task_uid_from_lock_file(lock_filename)
    try:
        return _dir_size(_temp_download_dir(_module_dir(lock_filename), task_uid))
    except FileNotFoundError:
        return 0


def _wait_for_lock_to_disappear(handle, lock_file, lock_file_timeout_sec, poll_sec):
    locked_tmp_dir_size = 0
    locked_tmp_dir_size_check_time = time.time()
    lock_file_content = None
    iteration = 0
    while os.path.exists(lock_file):
        try:
            if iteration % 10 == 0:  # logging.log_every_n(..., 10, ...)
                logging.info(
                    "Module '%s' already being downloaded by '%s'. Waiting.",
                    handle,
                    read_file_to_string(lock_file),
                )
            iteration += 1
            if time.time() - locked_tmp_dir_size_check_time > lock_file_timeout_sec:
                cur_locked_tmp_dir_size = _locked_tmp_dir_size(lock_file)
                cur_lock_file_content = read_file_to_string(lock_file)
                if cur_locked_tmp_dir_size == locked_tmp_dir_size and cur_lock_file_content == lock_file_content:
                    logging.warning("Deleting lock file %s due to inactivity.", lock_file)
                    os.remove(lock_file)
                    break
                locked_tmp_dir_size = cur_locked_tmp_dir_size
                locked_tmp_dir_size_check_time = time.time()
                lock_file_content = cur_lock_file_content
        except FileNotFoundError:
            pass
        finally:
            time.sleep(poll_sec)


def _write_module_descriptor_file(handle, module_dir):
    readme = "{}.descriptor.txt".format(module_dir)
    readme_content = "Module: %s\nDownload Time: %s\nDownloader Hostname: %s (PID:%d)" % (
        handle,
        str(datetime.datetime.today()),
        socket.gethostname(),
        os.getpid(),
    )
    atomic_write_string_to_file(readme, readme_content, overwrite=True)


def atomic_download(handle, download_fn, module_dir, lock_file_timeout_sec, poll_sec):
    lock_file = _lock_filename(module_dir)
    task_uid = uuid.uuid4().hex
    lock_contents = _lock_file_contents(task_uid)
    tmp_dir = _temp_download_dir(module_dir, task_uid)

    def check_module_exists():
        return os.path.exists(module_dir) and os.listdir(module_dir)

    if check_module_exists():
        return module_dir, False

    downloaded = False
    try:
        while True:
            try:
                atomic_write_string_to_file(lock_file, lock_contents, overwrite=False)
                if check_module_exists():
                    return module_dir, False
                if os.path.exists(module_dir):
                    shutil.rmtree(module_dir)
                break
            except (FileNotFoundError, PermissionError):
                raise  # permanent problems (NotFound, PermissionDenied, ...)
            except OSError:
                pass  # AlreadyExists: someone holds the lock
            _wait_for_lock_to_disappear(handle, lock_file, lock_file_timeout_sec, poll_sec)

        logging.info("Downloading TF-Hub Module '%s'.", handle)
        os.makedirs(tmp_dir)
        download_fn(handle, tmp_dir)
        downloaded = True
        _write_module_descriptor_file(handle, module_dir)
        try:
            # gfile.Rename(overwrite=False): AlreadyExists if the module dir is there.
            if os.path.exists(module_dir):
                raise AlreadyExistsError(module_dir)
            os.rename(tmp_dir, module_dir)
            logging.info("Downloaded TF-Hub Module '%s'.", handle)
        except AlreadyExistsError:
            logging.warning("Module already exists in %s", module_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        try:
            contents = read_file_to_string(lock_file)
        except FileNotFoundError:
            contents = ""
        if contents == lock_contents:
            try:
                os.remove(lock_file)
            except FileNotFoundError:
                pass
    return module_dir, downloaded


def slow_copy_fn(source, chunk_bytes, chunk_delay):
    """A download_fn that copies `source` into the temp dir in chunks, like bytes arriving."""

    def download_fn(_handle, tmp_dir):
        for root, dirs, files in os.walk(source):
            rel = os.path.relpath(root, source)
            target_root = tmp_dir if rel == "." else os.path.join(tmp_dir, rel)
            os.makedirs(target_root, exist_ok=True)
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as src, open(os.path.join(target_root, name), "wb") as dst:
                    while True:
                        chunk = src.read(chunk_bytes)
                        if not chunk:
                            break
                        dst.write(chunk)
                        dst.flush()
                        time.sleep(chunk_delay)

    return download_fn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--handle", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--chunk-bytes", type=int, default=16384)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--lock-timeout", type=float, default=600.0)
    parser.add_argument("--poll", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="python %(levelname)s: %(message)s")
    os.makedirs(args.cache_dir, exist_ok=True)  # create_local_module_dir: MakeDirs(cache_dir)
    module_dir = os.path.join(args.cache_dir, hashlib.sha1(args.handle.encode("utf8")).hexdigest())
    path, downloaded = atomic_download(
        args.handle,
        slow_copy_fn(args.source, args.chunk_bytes, args.chunk_delay),
        module_dir,
        args.lock_timeout,
        args.poll,
    )
    print(json.dumps({"path": path, "downloaded": downloaded}), flush=True)


if __name__ == "__main__":
    main()
