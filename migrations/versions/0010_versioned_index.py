"""Versioned embedding index: vectors per model, the active model, and the switch history.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Changing the embedding model must not break a running system: the new model's vectors are
built beside the old ones (a shadow re-index) and one transaction switches which model queries
use. See ``services.common.index_registry``.

* ``index_models``: the models the index knows; exactly one ``active`` (a unique partial index
  enforces it).
* ``chunk_embeddings``: one vector per chunk and model; deleting a chunk deletes its vectors.
  One partial HNSW index per model, named ``chunk_embeddings_hnsw_<sha256(model)[:12]>``.
* ``index_switches``: who switched from which model to which, when.
* ``chunks.embedding`` stays (the vector of ``chunks.model_id``, the model active when the chunk
  was written), and a trigger mirrors it into ``chunk_embeddings``, so every writer of chunks
  (the embedder, tools and fixtures that insert rows directly) keeps the versioned table whole.

Existing chunks are copied in; the model most chunks carry (or, on an empty database, the
configured ``CUSTOMLLM_EMBEDDING_MODEL_ID``) becomes active. Any other model found on chunks is
recorded as ``retired`` (its vectors kept, nothing writes it, as the trigger does): it covers
only part of the index, so nothing should load it; ``customllm index reindex --model <active>``
gives those chunks a vector for the active model.

Downgrade drops the three tables and the trigger; ``chunks.embedding`` was kept current by every
writer, so 0009's retrieval works on it again as long as no switch happened (vectors from a
shadow re-index are lost; after a switch, chunks written since carry the new model in
``chunks.embedding`` and older ones the old model: downgrading then leaves a mixed column, and
those documents must be published again).
"""

import hashlib
import os

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
E5_SMALL = "intfloat/multilingual-e5-small"
# As services.common.embeddings.ALIASES (a migration imports no service code).
ALIASES = {"minilm": DEFAULT_MODEL, "all-minilm-l6-v2": DEFAULT_MODEL, "e5": E5_SMALL,
           "e5-small": E5_SMALL, "multilingual-e5-small": E5_SMALL}


def _index_sql(model_id: str) -> str:
    name = "chunk_embeddings_hnsw_" + hashlib.sha256(model_id.encode()).hexdigest()[:12]
    literal = "'" + model_id.replace("'", "''") + "'"
    return (f"CREATE INDEX IF NOT EXISTS {name} ON chunk_embeddings USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
            f"WHERE model_id = {literal}")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE index_models (
            model_id            text PRIMARY KEY,
            dim                 integer NOT NULL DEFAULT 384,
            model_path          text,  -- a local model (not shipped): where writers load it
            state               text NOT NULL
                                CHECK (state IN ('active', 'building', 'ready', 'retired')),
            created_at          timestamptz NOT NULL DEFAULT now(),
            reindex_started_at  timestamptz,
            reindex_finished_at timestamptz,
            activated_at        timestamptz,
            activated_by        text
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX index_models_one_active ON index_models ((true)) "
               "WHERE state = 'active'")
    op.execute(
        """
        CREATE TABLE chunk_embeddings (
            chunk_id   text NOT NULL REFERENCES chunks (chunk_id) ON DELETE CASCADE,
            model_id   text NOT NULL REFERENCES index_models (model_id) ON DELETE CASCADE,
            embedding  vector(384) NOT NULL,
            PRIMARY KEY (chunk_id, model_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE index_switches (
            switch_id    bigserial PRIMARY KEY,
            from_model   text,
            to_model     text NOT NULL,
            switched_by  text NOT NULL,
            switched_at  timestamptz NOT NULL DEFAULT now(),
            chunks       integer NOT NULL
        )
        """
    )
    # Any writer of chunks keeps chunk_embeddings whole: the row's own vector is its model's.
    op.execute(
        """
        CREATE FUNCTION chunks_mirror_embedding() RETURNS trigger AS $$
        BEGIN
            -- A model no one registered (a tool writing rows directly) is recorded as
            -- retired: its vectors are kept, but the embedder never tries to load it.
            INSERT INTO index_models (model_id, state) VALUES (NEW.model_id, 'retired')
            ON CONFLICT (model_id) DO NOTHING;
            INSERT INTO chunk_embeddings (chunk_id, model_id, embedding)
            VALUES (NEW.chunk_id, NEW.model_id, NEW.embedding)
            ON CONFLICT (chunk_id, model_id) DO UPDATE SET embedding = EXCLUDED.embedding;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER chunks_mirror_embedding AFTER INSERT OR UPDATE OF embedding, model_id "
        "ON chunks FOR EACH ROW EXECUTE FUNCTION chunks_mirror_embedding()")
    conn = op.get_bind()
    configured = os.environ.get("CUSTOMLLM_EMBEDDING_MODEL_ID", "").strip() or DEFAULT_MODEL
    configured = ALIASES.get(configured.lower(), configured)
    models = [row[0] for row in conn.execute(text(
        "SELECT model_id FROM chunks GROUP BY model_id ORDER BY count(*) DESC, model_id"))]
    active = models[0] if models else configured
    for model_id in dict.fromkeys([active, *models]):
        conn.execute(text(
            "INSERT INTO index_models (model_id, state, activated_at, activated_by) "
            "VALUES (:m, CASE WHEN :active THEN 'active' ELSE 'retired' END, "
            "CASE WHEN :active THEN now() END, CASE WHEN :active THEN 'migration 0010' END)"),
            {"m": model_id, "active": model_id == active})
    op.execute("INSERT INTO chunk_embeddings (chunk_id, model_id, embedding) "
               "SELECT chunk_id, model_id, embedding FROM chunks")
    for model_id in dict.fromkeys([active, *models]):
        op.execute(_index_sql(model_id))


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS chunks_mirror_embedding ON chunks")
    op.execute("DROP FUNCTION IF EXISTS chunks_mirror_embedding()")
    op.execute("DROP TABLE IF EXISTS index_switches")
    op.execute("DROP TABLE IF EXISTS chunk_embeddings")
    op.execute("DROP TABLE IF EXISTS index_models")
