-- Secrets of a cluster, as the file store keeps them (invoker/secrets.py):
-- `data` is the Fernet token when `encrypted` (every server then shares
-- secrets_key_file), the value itself otherwise. Changes NOTIFY
-- faas_secrets with the secret's name.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    encrypted BOOLEAN NOT NULL,
    data BYTEA NOT NULL
);

-- Built layers, shared: a gzipped tar of the layer's directory, by its
-- content address, in chunks (a layer may be up to layer_limit_bytes).
-- `tree_digest` is the SHA-256 of the unpacked tree (invoker/layer_archive.py),
-- checked by every server that unpacks it.
CREATE TABLE layers (
    id TEXT PRIMARY KEY,
    tree_digest TEXT NOT NULL,
    archive_bytes BIGINT NOT NULL,
    chunks INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE layer_chunks (
    layer_id TEXT NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (layer_id, seq)
);
