"""SQL text of the retrieval queries, kept apart from the Python that composes and runs them.

Every candidate query joins ``documents`` and carries the access filter (``ACCESS_WHERE``) in
its ``WHERE`` clause, so a chunk the scope may not see is never read out of the database. The
optional filters (``FILTER_*``) are appended only when set, which keeps plans simple.

Parameters: ``:max_rank`` (int), ``:principals`` (text[]), ``:q`` (vector), ``:question``
(text), ``:limit``, plus one per set filter. ``{model}``: the embedding model whose vectors are
searched (``chunk_embeddings``), formatted in as a literal.
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
    "d.license, d.privacy_class, c.heading_path, c.injection_score, c.page_start, c.page_end"
)

# Per-transaction settings (``set_config(..., true)`` = ``SET LOCAL`` with bind parameters).
# Plan caching, per mode (``PLAN_CACHE_MODES``): psycopg prepares a statement run five times on a
# connection, and Postgres' default (``auto``) may then serve it from a generic plan, made without
# the question's terms, the vector or the scope's values. For the hybrid and lexical statements
# that plan is the faster one: their terms are computed inside the statement, so planning them
# per question only adds the planning (hybrid p50 15.4 -> 10.7 ms, lexical 7.7 -> 4.8 ms, same
# rankings; ``benchmarks/retrieval_plans.py``: held-out questions, alternating rounds). The
# vector statement is planned per question (``force_custom_plan``): its generic plan was slower
# (5.3 against 2.9 ms) and ranked differently. (Before migration 0014 the full-text index's
# pending list made every lexical scan sequential and the comparison came out the other way.)
PLAN_CACHE = "set_config('plan_cache_mode', :plan_cache_mode, true)"
SET_PLAN_CACHE = "SELECT " + PLAN_CACHE
# Iterative scans (pgvector 0.8) make the HNSW scan continue past ``ef_search`` until LIMIT rows
# survive the WHERE clause, so a selective access filter still yields k rows; ``relaxed_order``
# may return rows slightly out of distance order, hence the re-sort outside the CTE below.
SET_HNSW = (
    "SELECT " + PLAN_CACHE + ", "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('hnsw.max_scan_tuples', :max_scan_tuples, true)"
)
# Exact mode: no index scan at all, so the plan is a brute-force scan + sort (recall baseline).
SET_EXACT = "SELECT " + PLAN_CACHE + ", set_config('enable_indexscan', 'off', true)"

# Vectors come from ``chunk_embeddings`` for one model: ``{model}`` is the model id as a SQL
# literal (validated by ``index_registry.model_literal``), inlined so the planner picks that
# model's partial HNSW index (``WHERE model_id = '<id>'``).
VECTOR_QUERY = """
WITH relaxed AS MATERIALIZED (
    SELECT {columns}, e.embedding <=> :q AS distance
    FROM chunk_embeddings e
    JOIN chunks c ON c.chunk_id = e.chunk_id
    JOIN documents d ON d.doc_id = c.doc_id
    WHERE e.model_id = {model} AND {where}
    ORDER BY e.embedding <=> :q
    LIMIT :limit
)
SELECT * FROM relaxed ORDER BY distance, chunk_id
"""

# Lexical: BM25 over Postgres full-text search. The term statistics (``TERM_STATS``) are shared
# by the lexical ranking and the hybrid pool, so a chunk has one BM25 score in both.
# * terms: the question's lexemes (english stemming, stopwords dropped), each as a tsquery;
#   quoted by hand (backslash and quote escaped) because quote_literal's E'' form is not tsquery.
# * df: per term, how many chunks the scope can see contain it, counted exactly through the GIN
#   index up to :df_cap (bounded work on big corpora; hidden chunks are never counted). A term
#   that reaches the cap is common: its df is then ANALYZE's estimate for the table
#   (most_common_elem_freqs of chunks.tsv × rows), never below the cap. Counting that stopped at
#   the cap gave a word in half of a million chunks the idf of a word in a thousand, enough to
#   outweigh the rare words of the question.
# * N: the planner's row count of chunks (reltuples after ANALYZE, else the live-row count),
#   never below the largest df: cheap, and only the scale of idf depends on it.
# * match: the OR of the terms rarer than the cap (all terms when none is), so very common
#   words weigh in the score but do not pull every chunk of the corpus into the ranking.
# * score: sum over matched terms of idf * saturated tf, tf from the tsvector's positions and
#   length normalization by word_count against the matched rows' mean (k1 = :k1, b = :b). The
#   mean of the rows that match a rare question term stands in for the corpus mean, which would
#   cost a scan of the table on every query.
# ts_rank_cd has no idf, so a rare exact keyword loses to chunks repeating common question words.
TERM_STATS = """
terms AS MATERIALIZED (
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
                LIMIT :df_cap) AS hits) AS counted
    FROM terms t
),
corpus AS MATERIALIZED (
    SELECT greatest(CAST(c.reltuples AS float8), CAST(coalesce(t.n_live_tup, 0) AS float8), 1)
               AS total
    FROM pg_class c LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid
    WHERE c.oid = 'chunks'::regclass
),
estimated AS MATERIALIZED (
    SELECT s.lexeme, s.tq, s.counted,
           CASE WHEN s.counted < :df_cap THEN CAST(s.counted AS float8)
                ELSE greatest(CAST(:df_cap AS float8), coalesce(
                    (SELECT e.freq * n.total
                     FROM pg_stats p,
                          unnest(CAST(CAST(p.most_common_elems AS text) AS text[]),
                                 p.most_common_elem_freqs) AS e(elem, freq)
                     WHERE p.schemaname = current_schema() AND p.tablename = 'chunks'
                       AND p.attname = 'tsv' AND e.elem = s.lexeme
                     LIMIT 1), 0)) END AS df
    FROM stats s, corpus n
),
weighted AS MATERIALIZED (
    SELECT e.lexeme, e.tq, e.counted, e.df,
           ln(1 + (greatest(n.total, (SELECT max(df) FROM estimated)) - e.df + 0.5)
                  / (e.df + 0.5)) AS idf
    FROM estimated e, corpus n
    WHERE e.counted > 0
),
wanted AS MATERIALIZED (
    SELECT coalesce(array_agg(lexeme), CAST('{{}}' AS text[])) AS lexemes FROM weighted
),
any_term AS (
    SELECT CAST(string_agg(CAST(w.tq AS text), ' | ') AS tsquery) AS tq
    FROM weighted w
    WHERE w.counted < :df_cap OR NOT EXISTS (SELECT 1 FROM weighted WHERE counted < :df_cap)
),
matched AS MATERIALIZED (
    SELECT {columns}, c.tsv, c.word_count
    FROM chunks c JOIN documents d ON d.doc_id = c.doc_id, any_term
    WHERE c.tsv @@ any_term.tq AND {where}
),
mean AS MATERIALIZED (SELECT greatest(coalesce(avg(word_count), 1), 1) AS words FROM matched)
"""

# The question's weighted lexemes of one row ``m``, with their positions: the row's tsvector
# filtered down to them (``setweight`` marks them 'A' in a tsvector whose lexemes are all 'D', as
# the generated column makes them; ``ts_filter`` keeps the marked ones) before it is unnested,
# instead of unnesting all of its lexemes to join a handful (the same rows; a fifth off a
# hybrid query).
QUESTION_LEXEMES = ("unnest(ts_filter(setweight(m.tsv, 'A', (SELECT lexemes FROM wanted)), "
                    "'{{a}}')) AS u")

# BM25 of one row ``m`` (columns tsv, word_count) against ``weighted`` and ``mean``.
BM25_SCORE = """
(SELECT sum(w.idf * (cardinality(u.positions) * (:k1 + 1))
            / (cardinality(u.positions)
               + :k1 * (1 - :b + :b * m.word_count / mean.words)))
 FROM """ + QUESTION_LEXEMES + """ JOIN weighted w ON w.lexeme = u.lexeme)
"""

RESULT_COLUMNS = (
    "m.chunk_id, m.doc_id, m.ordinal, m.content_hash, m.text, m.title, m.uri, m.source, "
    "m.license, m.privacy_class, m.heading_path, m.injection_score, m.page_start, m.page_end"
)

LEXICAL_QUERY = "WITH " + TERM_STATS + """
SELECT """ + RESULT_COLUMNS + ", " + BM25_SCORE + """ AS score
FROM matched m, mean
ORDER BY score DESC, m.chunk_id
LIMIT :limit
"""

# Hybrid: the candidate pool is the union of the vector list (HNSW with the iterative scan, then
# exact distance order) and the lexical list, ``:limit`` each. Every pool row then gets both
# scores: its cosine and its BM25 from its own tsvector (a vector candidate that matched only
# common terms is not scored 0), plus the positions of the question's terms in it and their idf,
# for the proximity score computed in Python. The access filter is in every SELECT of chunks.
HYBRID_QUERY = "WITH " + TERM_STATS + """,
vec AS MATERIALIZED (
    SELECT v.chunk_id, row_number() OVER (ORDER BY v.distance, v.chunk_id) AS vrank
    FROM (SELECT c.chunk_id, e.embedding <=> :q AS distance
          FROM chunk_embeddings e
          JOIN chunks c ON c.chunk_id = e.chunk_id
          JOIN documents d ON d.doc_id = c.doc_id
          WHERE e.model_id = {model} AND {where}
          ORDER BY e.embedding <=> :q
          LIMIT :limit) AS v
),
lex AS MATERIALIZED (
    SELECT m.chunk_id, row_number() OVER (ORDER BY """ + BM25_SCORE + """ DESC, m.chunk_id)
               AS lrank
    FROM matched m, mean
),
pool AS MATERIALIZED (
    SELECT coalesce(v.chunk_id, l.chunk_id) AS chunk_id, v.vrank, l.lrank
    FROM vec v FULL JOIN (SELECT * FROM lex WHERE lrank <= :limit) AS l
         ON l.chunk_id = v.chunk_id
)
SELECT """ + RESULT_COLUMNS + """, p.vrank, p.lrank,
       coalesce(1 - (m.embedding <=> :q), 0) AS cosine,
       coalesce(""" + BM25_SCORE + """, 0) AS bm25,
       (SELECT coalesce(jsonb_object_agg(u.lexeme, u.positions), '{{}}'::jsonb)
        FROM """ + QUESTION_LEXEMES + """ JOIN weighted w ON w.lexeme = u.lexeme) AS positions,
       (SELECT coalesce(jsonb_object_agg(w.lexeme, w.idf), '{{}}'::jsonb) FROM weighted w)
           AS idf
FROM pool p
JOIN LATERAL (
    SELECT {columns}, c.tsv, c.word_count, e.embedding
    FROM chunks c JOIN documents d ON d.doc_id = c.doc_id
    LEFT JOIN chunk_embeddings e ON e.chunk_id = c.chunk_id AND e.model_id = {model}
    WHERE c.chunk_id = p.chunk_id AND {where}
) AS m ON true, mean
ORDER BY m.chunk_id
"""
