-- The queue of people and one row per image found for them.
-- Timestamps are ISO-8601 UTC text ('2026-11-22T10:00:00.000Z') so they read well in sqlite3
-- and compare correctly as strings.

CREATE TABLE people (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(trim(name)) > 0),   -- as given (Cyrillic, diacritics kept)
    slug          TEXT NOT NULL CHECK (slug GLOB '[A-Za-z0-9]*' AND slug NOT GLOB '*[^A-Za-z0-9_-]*'),
    country       TEXT NOT NULL,
    occupation    TEXT,
    search_name   TEXT,                 -- best spelling for image search (defaults to name)
    source        TEXT NOT NULL,        -- manual | csv | llm:<model> | wikidata
    wikidata_id   TEXT,
    portrait_url  TEXT,                 -- Wikidata P18: anchors reference selection
    cross_check   TEXT,                 -- result of the Wikidata cross-check of an LLM name
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'promoted', 'insufficient', 'no_consensus', 'failed')),
    stage         TEXT NOT NULL DEFAULT 'search'
                  CHECK (stage IN ('search', 'download', 'analyze', 'curate', 'promote', 'done')),
    state_reason  TEXT,                 -- why a person rests where it rests (no_consensus, insufficient)
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   TEXT,
    run_after     TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at   TEXT,
    UNIQUE (slug, country)
);
CREATE INDEX people_claimable ON people (state, run_after);
CREATE UNIQUE INDEX people_wikidata ON people (wikidata_id) WHERE wikidata_id IS NOT NULL;

CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    rank          INTEGER NOT NULL,
    url           TEXT NOT NULL,
    thumbnail_url TEXT,
    page_url      TEXT,
    title         TEXT,
    license       TEXT,
    author        TEXT,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'downloaded', 'analyzed', 'accepted', 'rejected')),
    reason        TEXT,                 -- why rejected (always set when rejected)
    detail        TEXT,                 -- one human line about the reason
    -- download
    sha256        TEXT,
    raw_path      TEXT,                 -- relative to data_dir; NULL once the original is deleted
    final_url     TEXT,
    content_type  TEXT,
    bytes         INTEGER,
    width         INTEGER,
    height        INTEGER,
    format        TEXT,
    -- analysis (once per image)
    analysis_status TEXT,               -- ok | no_face | unreadable
    faces_json    TEXT,                 -- all detected boxes, largest first
    face_count    INTEGER,
    blur          REAL,
    brightness    REAL,
    contrast      REAL,
    embedding     BLOB,                 -- float32 of the main face
    phash         TEXT,
    timings_json  TEXT,
    face_path     TEXT,                 -- 20%-margin crop of the main face (relative), kept for recurate and review
    -- curation
    is_reference  INTEGER NOT NULL DEFAULT 0,
    distance      REAL,                 -- to the reference set
    quality       REAL,
    crop_path     TEXT,                 -- relative to data_dir
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (person_id, url),
    CHECK (state <> 'rejected' OR reason IS NOT NULL)
);
CREATE INDEX images_person ON images (person_id, state);
CREATE INDEX images_sha ON images (sha256);

-- One row per daemon process: `facequeue status` tells whether one is alive.
CREATE TABLE daemons (
    id            TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    started_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    heartbeat_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    stopped_at    TEXT,
    in_flight     INTEGER NOT NULL DEFAULT 0
);

CREATE VIEW queue_summary AS
    SELECT state, COUNT(*) AS people FROM people GROUP BY state ORDER BY state;

CREATE VIEW person_progress AS
    SELECT p.id AS person_id, p.name AS person, p.slug, p.country, p.occupation,
           p.stage, p.state, p.attempts,
           COUNT(i.id) AS images,
           COALESCE(SUM(i.state = 'accepted'), 0) AS accepted,
           COALESCE(SUM(i.state = 'rejected'), 0) AS rejected,
           COALESCE(SUM(i.state IN ('pending', 'downloaded', 'analyzed')), 0) AS in_progress,
           p.state_reason, p.last_error, p.run_after, p.updated_at
    FROM people p LEFT JOIN images i ON i.person_id = p.id
    GROUP BY p.id;

CREATE VIEW image_outcomes AS
    SELECT i.person_id, p.name AS person, p.country, i.url, i.state, i.reason, i.crop_path,
           i.id AS image_id, i.rank, i.provider, i.detail, i.distance, i.is_reference
    FROM images i JOIN people p ON p.id = i.person_id;
