"""Content hashes for `exclude_unchanged` (Air's key): a file whose stat
moved but whose content hash held is not reported as modified.

Called by the snapshot's scan (snapshot.py) in the watcher thread
("air-watcher"), only when exclude_unchanged is on and a file's stat
changed; each node keeps its files' digests in `node.hashes`.
"""

__all__ = ["store_hash"]


def store_hash(node, name):
    """Hash a file of `node` (exclude_unchanged) and keep the digest; None when unreadable."""
    digest = _file_hash(node.prefix + name)
    if node.hashes is None:
        node.hashes = {}
    if digest is None:
        node.hashes.pop(name, None)
    else:
        node.hashes[name] = digest
    return digest


def _file_hash(path):
    """blake2b of the content, or None when it cannot be read."""
    # Imported here: hashlib costs ~3.7 MB of RSS (OpenSSL) and only
    # exclude_unchanged needs it.
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
    except OSError:
        return None
    return h.digest()
