"""Built layers in PostgreSQL, shared by every server of a cluster
(invoker/layer_archive.py makes and checks the archives): the server that
builds a layer stores it, any other fetches it on its first use. Tables
made by invoker/migrations/004_secrets_and_layers.sql.

An archive goes in chunks (CHUNK_BYTES each, one statement per chunk, so no
statement holds a whole layer in memory or outlasts its deadline), all in
one transaction: another server sees the whole archive or none of it.
"""

from __future__ import annotations

from .pg_schema import SharedConnection

CHUNK_BYTES = 8 * 1024 * 1024


class PostgresLayerArchive:
    def __init__(self, url: str) -> None:
        self._connection = SharedConnection(url)

    def has(self, layer_id: str) -> bool:
        with self._connection.transaction() as db:
            return db.execute("SELECT 1 FROM layers WHERE id = %s", (layer_id,)).fetchone() is not None

    def put(self, layer_id: str, tree_digest: str, archive_path: str) -> bool:
        with self._connection.transaction() as db, open(archive_path, "rb") as f:
            # Two servers storing one layer take turns; the second finds it stored.
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("layer:" + layer_id,))
            if db.execute("SELECT 1 FROM layers WHERE id = %s", (layer_id,)).fetchone() is not None:
                return False
            db.execute(
                "INSERT INTO layers (id, tree_digest, archive_bytes, chunks) VALUES (%s, %s, 0, 0)",
                (layer_id, tree_digest),
            )
            seq = size = 0
            while chunk := f.read(CHUNK_BYTES):
                db.execute(
                    "INSERT INTO layer_chunks (layer_id, seq, data) VALUES (%s, %s, %s)",
                    (layer_id, seq, chunk),
                )
                seq += 1
                size += len(chunk)
            db.execute(
                "UPDATE layers SET archive_bytes = %s, chunks = %s WHERE id = %s", (size, seq, layer_id)
            )
        return True

    def fetch(self, layer_id: str, archive_path: str) -> str | None:
        with self._connection.transaction() as db:
            row = db.execute("SELECT tree_digest, chunks FROM layers WHERE id = %s", (layer_id,)).fetchone()
            if row is None:
                return None
            tree_digest, chunks = row
            with open(archive_path, "wb") as f:
                for seq in range(chunks):
                    got = db.execute(
                        "SELECT data FROM layer_chunks WHERE layer_id = %s AND seq = %s", (layer_id, seq)
                    ).fetchone()
                    if got is None:
                        raise ValueError(f"chunk {seq} of {chunks} of layer {layer_id} is missing")
                    f.write(got[0])
        return str(tree_digest)

    def delete_unused(self, layer_id: str) -> bool:
        with self._connection.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("layer:" + layer_id,))
            cur = db.execute(
                "DELETE FROM layers WHERE id = %s"
                " AND NOT EXISTS (SELECT 1 FROM versions WHERE config->>'layer_id' = %s)",
                (layer_id, layer_id),
            )
        return cur.rowcount > 0

    def close(self) -> None:
        self._connection.close()
