"""SQL text of the retrieval queries, kept apart from the Python that composes and runs them.

Every candidate query joins ``documents`` and carries the access filter (``ACCESS_WHERE``) in
its ``WHERE`` clause, so a chunk the scope may not see is never read out of the database. The
optional filters (``FILTER_*``) are appended only when set, which keeps plans simple.

Parameters: ``:max_rank`` (int), ``:principals`` (text[]), ``:q`` (vector), ``:question``
(text), ``:limit``, plus one per set filter.
"""

from __future__ import annotations

ACCESS_WHERE = (
    "NOT d.deleted AND d.privacy_rank <= :max_rank "
    "AND (d.acl = '{}' OR d.acl && CAST(:principals AS text[]))"
)

FILTER_DOC_IDS = "d.doc_id = ANY(CAST(:doc_ids AS text[]))"
# ``ESCAPE`` so ``%`` and ``_`` inside a prefix match themselves (the caller escapes them).
FILTER_DOC_ID_PREFIX = "d.doc_id LIKE :doc_id_pattern ESCAPE '\\'"
FILTER_SOURCES = "d.source = ANY(CAST(:sources AS text[]))"
FILTER_LICENSES = "d.license = ANY(CAST(:licenses AS text[]))"
FILTER_METADATA = "d.metadata @> CAST(:metadata AS jsonb)"
# Guardrail policy "exclude": chunks the ingest scan marked as likely prompt injections are never
# read. NULL (not scanned) passes: excluding every chunk written before the scan existed would
# empty the index.
FILTER_INJECTION = "c.injection_score IS NULL OR c.injection_score < :max_injection_score"

CHUNK_COLUMNS = (
    "c.chunk_id, c.doc_id, c.ordinal, c.content_hash, c.text, d.title, d.uri, d.source, "
    "d.license, d.privacy_class, c.heading_path, c.injection_score"
)

# Per-transaction settings (``set_config(..., true)`` = ``SET LOCAL`` with bind parameters).
# Iterative scans (pgvector 0.8) make the HNSW scan continue past ``ef_search`` until LIMIT rows
# survive the WHERE clause, so a selective access filter still yields k rows; ``relaxed_order``
# may return rows slightly out of distance order, hence the re-sort outside the CTE below.
SET_HNSW = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('hnsw.max_scan_tuples', :max_scan_tuples, true)"
)
# Exact mode: no index scan at all, so the plan is a brute-force scan + sort (recall baseline).
SET_EXACT = "SELECT set_config('enable_indexscan', 'off', true)"

VECTOR_QUERY = """
WITH relaxed AS MATERIALIZED (
    SELECT {columns}, c.embedding <=> :q AS distance
    FROM chunks c JOIN documents d ON d.doc_id = c.doc_id
    WHERE {where}
    ORDER BY c.embedding <=> :q
    LIMIT :limit
)
SELECT * FROM relaxed ORDER BY distance, chunk_id
"""

# Lexical: BM25 over Postgres full-text search.
# * terms: the question's lexemes (english stemming, stopwords dropped), each as a tsquery;
#   quoted by hand (backslash and quote escaped) because quote_literal's E'' form is not tsquery.
# * df: per term, how many chunks the scope can see contain it, counted through the GIN index
#   and capped at :df_cap (bounded work on big corpora; statistics never count hidden chunks).
# * match: the OR of the terms rarer than the cap (all terms when none is), so very common
#   words weigh in the score but do not pull every chunk of the corpus into the ranking.
# * score: sum over matched terms of idf * saturated tf, tf from the tsvector's positions and
#   length normalization by word_count against the matched rows' mean (k1 = 1.2, b = 0.75).
#   N (corpus size) is the planner's estimate of the chunks table (reltuples after ANALYZE,
#   else the statistics' live-row count): cheap, and only the scale of idf depends on it.
# ts_rank_cd has no idf, so a rare exact keyword loses to chunks repeating common question words;
# measured on SQuAD in benchmarks/query_retrieval.py.
LEXICAL_QUERY = """
WITH terms AS MATERIALIZED (
    SELECT DISTINCT lexeme,
           CAST('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || ''''
                AS tsquery) AS tq
    FROM unnest(tsvector_to_array(to_tsvector('english', :question))) AS lexeme
),
stats AS MATERIALIZED (
    SELECT t.lexeme, t.tq,
           (SELECT count(*) FROM (
                SELECT 1 FROM chunks c JOIN documents d ON d.doc_id = c.doc_id
                WHERE c.tsv @@ t.tq AND {access}
                LIMIT :df_cap) AS hits) AS df
    FROM terms t
),
weighted AS MATERIALIZED (
    SELECT s.lexeme, s.tq, s.df,
           ln(1 + (n.total - s.df + 0.5) / (s.df + 0.5)) AS idf
    FROM stats s,
         (SELECT greatest(CAST(c.reltuples AS float8), CAST(coalesce(t.n_live_tup, 0) AS float8),
                          (SELECT max(df) FROM stats), 1) AS total
          FROM pg_class c LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid
          WHERE c.oid = 'chunks'::regclass) AS n
    WHERE s.df > 0
),
any_term AS (
    SELECT CAST(string_agg(CAST(w.tq AS text), ' | ') AS tsquery) AS tq
    FROM weighted w
    WHERE w.df < :df_cap OR NOT EXISTS (SELECT 1 FROM weighted WHERE df < :df_cap)
),
matched AS MATERIALIZED (
    SELECT {columns}, c.tsv, c.word_count, avg(c.word_count) OVER () AS mean_words
    FROM chunks c JOIN documents d ON d.doc_id = c.doc_id, any_term
    WHERE c.tsv @@ any_term.tq AND {where}
)
SELECT m.chunk_id, m.doc_id, m.ordinal, m.content_hash, m.text, m.title, m.uri, m.source,
       m.license, m.privacy_class, m.heading_path, m.injection_score,
       (SELECT sum(w.idf * (cardinality(u.positions) * 2.2)
                   / (cardinality(u.positions)
                      + 1.2 * (0.25 + 0.75 * m.word_count / greatest(m.mean_words, 1))))
        FROM unnest(m.tsv) AS u JOIN weighted w ON w.lexeme = u.lexeme) AS score
FROM matched m
ORDER BY score DESC, m.chunk_id
LIMIT :limit
"""
