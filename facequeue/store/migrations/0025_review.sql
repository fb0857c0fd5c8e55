-- Reviewer decisions (`facequeue serve`: POST /api/images/{id}/review, the review UI).
-- A decision is sticky: curation applies it after its own verdict on every run, so
-- `recurate` and later runs never override it (a rejected image gets reason 'reviewer').
CREATE TABLE image_reviews (
    image_id    INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    person_id   INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    decision    TEXT NOT NULL CHECK (decision IN ('reject', 'accept')),
    note        TEXT,
    reviewed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX image_reviews_person ON image_reviews (person_id);

-- The gallery's version stamp: every change to gallery rows (promotion, forget, recurate, a
-- review) appends the person it touched, by trigger, so no writer can forget to. A server
-- holding the gallery in memory polls MAX(seq) and reloads only the people changed since.
CREATE TABLE gallery_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id  INTEGER NOT NULL,
    changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TRIGGER gallery_images_inserted AFTER INSERT ON gallery_images
BEGIN
    INSERT INTO gallery_changes (person_id) VALUES (NEW.person_id);
    -- keep the log short; a reader that fell further behind reloads everything
    DELETE FROM gallery_changes WHERE seq < (SELECT MAX(seq) FROM gallery_changes) - 100000;
END;

CREATE TRIGGER gallery_images_updated AFTER UPDATE ON gallery_images
BEGIN
    INSERT INTO gallery_changes (person_id) VALUES (NEW.person_id);
END;

CREATE TRIGGER gallery_images_deleted AFTER DELETE ON gallery_images
BEGIN
    INSERT INTO gallery_changes (person_id) VALUES (OLD.person_id);
END;

CREATE TRIGGER gallery_people_inserted AFTER INSERT ON gallery_people
BEGIN
    INSERT INTO gallery_changes (person_id) VALUES (NEW.person_id);
END;

CREATE TRIGGER gallery_people_deleted AFTER DELETE ON gallery_people
BEGIN
    INSERT INTO gallery_changes (person_id) VALUES (OLD.person_id);
END;

-- For the sqlite3 shell: the gallery's current version.
CREATE VIEW gallery_version AS
    SELECT COALESCE(MAX(seq), 0) AS version FROM gallery_changes;

-- For the sqlite3 shell: every reviewer decision with its image's current outcome.
CREATE VIEW review_outcomes AS
    SELECT r.image_id, r.person_id, p.name AS person, r.decision, r.note, r.reviewed_at,
           i.state, i.reason, i.url
    FROM image_reviews r
    JOIN images i ON i.id = r.image_id
    JOIN people p ON p.id = r.person_id;
