-- PostgreSQL mirror of migrations/0004_person_folder.sql: every person gets a folder name of
-- its own. Existing people keep the folder their files are in; where two shared one, the
-- lowest id keeps it, the others get <folder>__<id> and are re-curated; people with no files
-- yet get <slug>__p<id>. (split_part stands in for SQLite's substr/instr; COLLATE "C" makes
-- MIN pick what SQLite's byte order picks.)
ALTER TABLE people ADD COLUMN folder TEXT;

CREATE TEMP TABLE legacy_folder ON COMMIT DROP AS
SELECT person_id, MIN(folder COLLATE "C") AS folder FROM (
    SELECT person_id, split_part(substr(crop_path, 7), '/', 1) AS folder
    FROM images WHERE crop_path LIKE 'faces/%/%'
    UNION ALL
    SELECT person_id, split_part(substr(face_path, 12), '/', 1) AS folder
    FROM images WHERE face_path LIKE 'candidates/%/%'
    UNION ALL
    SELECT person_id, substr(folder, 9) AS folder
    FROM gallery_people WHERE folder LIKE 'gallery/%'
) f WHERE folder <> '' GROUP BY person_id;

UPDATE people SET folder = (
    SELECT CASE
        WHEN l.person_id = (SELECT MIN(l2.person_id) FROM legacy_folder l2 WHERE l2.folder = l.folder)
        THEN l.folder ELSE l.folder || '__' || l.person_id END
    FROM legacy_folder l WHERE l.person_id = people.id
);

-- Everyone who shared a folder is curated again (stage done/promote -> curate).
UPDATE people SET state = 'queued', stage = 'curate', run_after = NULL, attempts = 0,
    state_reason = NULL, finished_at = NULL, updated_at = fq_now()
WHERE state <> 'running' AND stage IN ('promote', 'done')
  AND id IN (SELECT person_id FROM legacy_folder
             WHERE folder IN (SELECT folder FROM legacy_folder GROUP BY folder HAVING COUNT(*) > 1));

-- Their gallery rows pointed into the shared folder: promotion writes them anew.
DELETE FROM gallery_images WHERE person_id IN (
    SELECT l.person_id FROM legacy_folder l JOIN people p ON p.id = l.person_id
    WHERE p.folder <> l.folder);
DELETE FROM gallery_people WHERE person_id IN (
    SELECT l.person_id FROM legacy_folder l JOIN people p ON p.id = l.person_id
    WHERE p.folder <> l.folder);

UPDATE people SET folder = slug || '__p' || id WHERE folder IS NULL;

DROP TABLE legacy_folder;

CREATE UNIQUE INDEX people_folder ON people (folder);
