-- Every person gets a folder name of its own (faces/, candidates/, gallery/ use it).
-- Before, the folder was <slug>__<ascii country>, so "Israël" and "Israel" shared one folder.
-- Existing people keep the folder their files are in; where two people shared one, the
-- lowest id keeps it, the others get <folder>__<id>, and all of them are re-curated from
-- their stored analyses so each folder holds exactly its person's files. People with no
-- files yet get <slug>__p<id>; new people get <slug>__<ascii country> or, if taken,
-- <slug>__<ascii country>__<id> (decided at insert).
ALTER TABLE people ADD COLUMN folder TEXT;

CREATE TEMP TABLE legacy_folder AS
SELECT person_id, MIN(folder) AS folder FROM (
    SELECT person_id,
           substr(crop_path, 7, instr(substr(crop_path, 7), '/') - 1) AS folder
    FROM images WHERE crop_path LIKE 'faces/%/%'
    UNION ALL
    SELECT person_id,
           substr(face_path, 12, instr(substr(face_path, 12), '/') - 1) AS folder
    FROM images WHERE face_path LIKE 'candidates/%/%'
    UNION ALL
    SELECT person_id, substr(folder, 9) AS folder
    FROM gallery_people WHERE folder LIKE 'gallery/%'
) WHERE folder <> '' GROUP BY person_id;

UPDATE people SET folder = (
    SELECT CASE
        WHEN l.person_id = (SELECT MIN(l2.person_id) FROM legacy_folder l2 WHERE l2.folder = l.folder)
        THEN l.folder ELSE l.folder || '__' || l.person_id END
    FROM legacy_folder l WHERE l.person_id = people.id
);

-- Everyone who shared a folder is curated again (stage done/promote -> curate).
UPDATE people SET state = 'queued', stage = 'curate', run_after = NULL, attempts = 0,
    state_reason = NULL, finished_at = NULL,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
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
