-- The recognition gallery: one row per promoted identity and one per gallery image.
-- Files live under <data_dir>/gallery/<slug>__<country>/ (usable as DeepFace's db_path);
-- paths here are relative to data_dir. Embeddings are copied from images.embedding so that
-- recognition never re-embeds the gallery.

CREATE TABLE gallery_people (
    person_id     INTEGER PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    folder        TEXT NOT NULL UNIQUE,           -- relative to data_dir
    images        INTEGER NOT NULL,               -- gallery images of this identity
    model         TEXT NOT NULL,                  -- recognition model of the embeddings
    metric        TEXT NOT NULL,                  -- cosine | euclidean | euclidean_l2
    threshold     REAL NOT NULL,                  -- the recognition threshold the test used
    promoted_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- leave-one-out self-test against the whole gallery
    tested_at     TEXT,
    self_test_top1 REAL,                          -- share of own images whose nearest identity is this one
    self_test_misses INTEGER,                     -- own images nearer to someone else
    own_distance  REAL,                           -- median distance to the nearest other own image
    nearest_other_person_id INTEGER REFERENCES people (id) ON DELETE SET NULL,
    nearest_other_distance REAL,                  -- median distance to that identity's nearest image
    margin        REAL,                           -- median (nearest other - nearest own); < 0 is bad
    flagged       INTEGER NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1)),
    flag_reason   TEXT,
    CHECK (flagged = 0 OR flag_reason IS NOT NULL)
);

CREATE TABLE gallery_images (
    id            INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    image_id      INTEGER NOT NULL UNIQUE REFERENCES images (id) ON DELETE CASCADE,
    path          TEXT NOT NULL UNIQUE,           -- relative to data_dir
    sha256        TEXT NOT NULL,                  -- of the file's bytes
    embedding     BLOB NOT NULL,                  -- float32, as images.embedding
    is_reference  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (person_id, sha256)
);
CREATE INDEX gallery_images_person ON gallery_images (person_id);

-- For the sqlite3 shell: one row per gallery identity with its self-test.
CREATE VIEW gallery_summary AS
    SELECT g.person_id, p.name AS person, p.country, g.folder, g.images,
           g.self_test_top1, g.margin, g.own_distance, g.nearest_other_distance,
           o.name AS nearest_other, g.flagged, g.flag_reason, g.promoted_at, g.tested_at
    FROM gallery_people g
    JOIN people p ON p.id = g.person_id
    LEFT JOIN people o ON o.id = g.nearest_other_person_id;
