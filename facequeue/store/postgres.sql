-- The PostgreSQL statements, by the same names as queries.sql (loaded by store/postgres.py);
-- tests/test_schema_parity.py checks that both files name the same statements.
-- fq_now(plus_s) (migrations/postgres/0001) gives timestamps in SQLite's format from the
-- server's clock, so every daemon on every host uses one clock.

-- name: insert_person
INSERT INTO people (name, slug, country, occupation, search_name, source, wikidata_id,
                    portrait_url, cross_check, folder)
VALUES (:name, :slug, :country, :occupation, :search_name, :source, :wikidata_id,
        :portrait_url, :cross_check,
        CASE WHEN EXISTS (SELECT 1 FROM people WHERE folder = CAST(:folder AS text)) THEN NULL
             ELSE CAST(:folder AS text) END)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: person_exists
SELECT id FROM people
WHERE (slug = :slug AND country = :country)
   OR (:wikidata_id::text IS NOT NULL AND wikidata_id = :wikidata_id)
LIMIT 1;

-- name: reclaim_expired
UPDATE people
SET state = 'queued', lease_owner = NULL, lease_until = NULL,
    updated_at = fq_now()
WHERE state = 'running' AND lease_until < fq_now()
RETURNING *;

-- name: claim_person
UPDATE people
SET state = 'running', lease_owner = :owner,
    lease_until = fq_now(:lease_s),
    updated_at = fq_now()
WHERE id = (
    SELECT id FROM people
    WHERE (state = 'queued'
           AND (run_after IS NULL OR run_after <= fq_now()))
       OR (state = 'running' AND lease_until < fq_now())
    ORDER BY COALESCE(run_after, created_at), id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: renew_leases
UPDATE people
SET lease_until = fq_now(:lease_s)
WHERE state = 'running' AND lease_owner = :owner
  AND id IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint))
RETURNING id;

-- name: still_own
SELECT 1 FROM people WHERE id = :id AND state = 'running' AND lease_owner = :owner;

-- name: advance_stage
UPDATE people
SET stage = :stage, updated_at = fq_now()
WHERE id = :id AND lease_owner = :owner AND state = 'running'
RETURNING id;

-- name: finish_person
UPDATE people
SET state = :state, stage = 'done', state_reason = :reason, lease_owner = NULL,
    lease_until = NULL, run_after = NULL, last_error = NULL,
    finished_at = fq_now(),
    updated_at = fq_now()
WHERE id = :id AND lease_owner = :owner AND state = 'running'
RETURNING id;

-- name: fail_attempt
UPDATE people
SET state = CASE WHEN attempts + 1 >= :max_attempts THEN 'failed' ELSE 'queued' END,
    attempts = attempts + 1,
    last_error = :error,
    run_after = CASE WHEN attempts + 1 >= :max_attempts THEN NULL
                ELSE fq_now(:delay_s) END,
    finished_at = CASE WHEN attempts + 1 >= :max_attempts
                  THEN fq_now() ELSE NULL END,
    lease_owner = NULL, lease_until = NULL,
    updated_at = fq_now()
WHERE id = :id AND lease_owner = :owner AND state = 'running'
RETURNING state, attempts;

-- name: fail_permanently
UPDATE people
SET state = 'failed', attempts = attempts + 1, last_error = :error, run_after = NULL,
    lease_owner = NULL, lease_until = NULL,
    finished_at = fq_now(),
    updated_at = fq_now()
WHERE id = :id AND lease_owner = :owner AND state = 'running';

-- name: release_person
UPDATE people
SET state = 'queued', lease_owner = NULL, lease_until = NULL, run_after = NULL,
    updated_at = fq_now()
WHERE id = :id AND lease_owner = :owner AND state = 'running';

-- name: release_owner
UPDATE people
SET state = 'queued', lease_owner = NULL, lease_until = NULL,
    updated_at = fq_now()
WHERE lease_owner = :owner AND state = 'running';

-- name: retry_failed
UPDATE people
SET state = 'queued', attempts = 0, run_after = NULL, last_error = NULL, finished_at = NULL,
    updated_at = fq_now()
WHERE (state = 'failed' OR (state = 'queued' AND run_after IS NOT NULL))
  AND (:id::bigint IS NULL OR id = :id)
RETURNING id;

-- name: requeue_person
UPDATE people
SET state = 'queued', stage = :stage, attempts = 0, run_after = NULL, last_error = NULL,
    state_reason = NULL, finished_at = NULL,
    updated_at = fq_now()
WHERE id = :id AND state <> 'running';

-- name: get_person
SELECT * FROM people WHERE id = :id;

-- name: find_people
SELECT * FROM people
WHERE CAST(id AS TEXT) = :ref OR slug = :ref OR name = :ref OR lower(name) = lower(:ref)
ORDER BY id;

-- name: people_at_rest
SELECT * FROM people WHERE stage = 'done' ORDER BY id;

-- name: delete_person
DELETE FROM people WHERE id = :id;


-- name: queue_summary
SELECT state, people FROM queue_summary;

-- name: next_run_after
SELECT MIN(run_after) FROM people WHERE state = 'queued';

-- name: claimable_count
SELECT COUNT(*) FROM people
WHERE (state = 'queued' AND (run_after IS NULL OR run_after <= fq_now()))
   OR (state = 'running' AND lease_until < fq_now());

-- name: person_progress_all
-- limit -1: everyone, as SQLite's LIMIT -1
SELECT * FROM person_progress ORDER BY person_id
LIMIT CASE WHEN :limit < 0 THEN NULL ELSE :limit END;

-- name: person_progress_one
SELECT * FROM person_progress WHERE person_id = :id;

-- name: image_reasons
SELECT state, COALESCE(reason, '') AS reason, COUNT(*) AS images
FROM images WHERE person_id = :id GROUP BY state, reason ORDER BY state, images DESC;

-- name: recent_failures
SELECT id, name, country, stage, attempts, last_error, updated_at FROM people
WHERE state = 'failed' ORDER BY updated_at DESC LIMIT :limit;

-- name: register_daemon
INSERT INTO daemons (id, pid, host, boot_id) VALUES (:id, :pid, :host, :boot_id);

-- name: beat_daemon
UPDATE daemons SET heartbeat_at = fq_now(), in_flight = :in_flight
WHERE id = :id;

-- name: stop_daemon
UPDATE daemons SET stopped_at = fq_now(), in_flight = 0 WHERE id = :id;

-- name: live_daemons
SELECT id, pid, host, started_at, heartbeat_at, in_flight FROM daemons
WHERE stopped_at IS NULL
  AND heartbeat_at >= fq_now(-1 * :stale_s)
ORDER BY started_at;

-- name: prune_daemons
DELETE FROM daemons
WHERE heartbeat_at < fq_now(-7 * 86400);

-- name: insert_image
INSERT INTO images (person_id, provider, rank, url, thumbnail_url, page_url, title, license,
                    author, width, height)
VALUES (:person_id, :provider, :rank, :url, :thumbnail_url, :page_url, :title, :license,
        :author, :width, :height)
ON CONFLICT (person_id, url) DO NOTHING;

-- name: images_of_person
SELECT * FROM images WHERE person_id = :person_id ORDER BY rank, id;

-- name: images_in_state
SELECT * FROM images WHERE person_id = :person_id AND state = :state ORDER BY rank, id;

-- name: image_downloaded
UPDATE images
SET state = 'downloaded', sha256 = :sha256, raw_path = :raw_path, final_url = :final_url,
    content_type = :content_type, bytes = :bytes, width = :width, height = :height,
    format = :format, updated_at = fq_now()
WHERE id = :id;

-- name: image_rejected
UPDATE images
SET state = 'rejected', reason = :reason, detail = :detail,
    updated_at = fq_now()
WHERE id = :id;

-- name: image_analyzed
UPDATE images
SET state = 'analyzed', analysis_status = :analysis_status, detail = :detail,
    faces_json = :faces_json, face_count = :face_count, blur = :blur, brightness = :brightness,
    contrast = :contrast, embedding = :embedding, phash = :phash, timings_json = :timings_json,
    face_path = :face_path, face_values_json = :face_values_json, face_vectors = :face_vectors,
    face_index = NULL,
    updated_at = fq_now()
WHERE id = :id;

-- name: image_curated
UPDATE images
SET state = :state, reason = :reason, detail = :detail, is_reference = :is_reference,
    distance = :distance, quality = :quality, crop_path = :crop_path,
    face_index = :face_index, embedding = COALESCE(:embedding, embedding),
    updated_at = fq_now()
WHERE id = :id;

-- name: forget_raw_path
UPDATE images SET raw_path = NULL WHERE id = :id;

-- name: all_raw_paths
SELECT DISTINCT raw_path FROM images WHERE raw_path IS NOT NULL;

-- name: all_crop_paths
SELECT crop_path FROM images WHERE crop_path IS NOT NULL
UNION SELECT face_path FROM images WHERE face_path IS NOT NULL;

-- name: claim_specific
UPDATE people
SET state = 'running', lease_owner = :owner,
    lease_until = fq_now(:lease_s),
    updated_at = fq_now()
WHERE id = :id AND (state <> 'running' OR lease_until < fq_now())
RETURNING *;

-- name: other_users_of_raw
SELECT COUNT(*) FROM images WHERE raw_path = :raw_path AND person_id <> :person_id;

-- gallery queries

-- name: gallery_accepted_images
SELECT id, crop_path, embedding, is_reference, distance FROM images
WHERE person_id = :person_id AND state = 'accepted' ORDER BY id;

-- name: gallery_images_of
SELECT id, image_id, path, sha256 FROM gallery_images WHERE person_id = :person_id ORDER BY id;

-- name: gallery_folder
SELECT folder FROM gallery_people WHERE person_id = :person_id;

-- name: gallery_upsert_person
INSERT INTO gallery_people (person_id, folder, images, model, metric, threshold)
VALUES (:person_id, :folder, :images, :model, :metric, :threshold)
ON CONFLICT (person_id) DO UPDATE
SET folder = excluded.folder, images = excluded.images, model = excluded.model,
    metric = excluded.metric, threshold = excluded.threshold,
    promoted_at = fq_now();

-- name: gallery_delete_image
DELETE FROM gallery_images WHERE id = :id;

-- name: gallery_upsert_image
INSERT INTO gallery_images (person_id, image_id, path, sha256, embedding, is_reference)
VALUES (:person_id, :image_id, :path, :sha256, :embedding, :is_reference)
ON CONFLICT (image_id) DO UPDATE
SET path = excluded.path, sha256 = excluded.sha256, embedding = excluded.embedding,
    is_reference = excluded.is_reference;

-- name: gallery_delete_person_images
DELETE FROM gallery_images WHERE person_id = :person_id;

-- name: gallery_delete_person
DELETE FROM gallery_people WHERE person_id = :person_id;

-- name: gallery_all_embeddings
SELECT person_id, path, embedding FROM gallery_images ORDER BY person_id, id;

-- name: gallery_identities
SELECT g.person_id, p.name, p.country, g.folder FROM gallery_people g
JOIN people p ON p.id = g.person_id;

-- name: gallery_self_test
UPDATE gallery_people
SET tested_at = fq_now(), self_test_top1 = :top1,
    self_test_misses = :misses, own_distance = :own_distance,
    nearest_other_person_id = :nearest_other_person_id,
    nearest_other_distance = :nearest_other_distance, margin = :margin,
    flagged = :flagged, flag_reason = :flag_reason
WHERE person_id = :person_id;

-- name: gallery_tested_against
SELECT person_id FROM gallery_people WHERE nearest_other_person_id = :person_id;

-- name: gallery_list
SELECT * FROM gallery_summary ORDER BY flagged DESC, person;

-- name: gallery_paths
SELECT path FROM gallery_images;


-- name: report_people
SELECT pp.*, p.name, p.portrait_url, p.wikidata_id, p.finished_at,
       g.folder AS gallery_folder, g.images AS gallery_images, g.self_test_top1, g.margin,
       g.own_distance, g.nearest_other_distance, o.name AS nearest_other, g.flagged,
       g.flag_reason
FROM person_progress pp
JOIN people p ON p.id = pp.person_id
LEFT JOIN gallery_people g ON g.person_id = pp.person_id
LEFT JOIN people o ON o.id = g.nearest_other_person_id
ORDER BY pp.person_id;

-- name: report_images
SELECT i.*, (SELECT g.path FROM gallery_images g WHERE g.image_id = i.id) AS gallery_path,
       r.decision AS review, r.note AS review_note
FROM images i LEFT JOIN image_reviews r ON r.image_id = i.id
WHERE i.person_id = :person_id ORDER BY i.state, i.rank, i.id;

-- name: report_totals
SELECT COUNT(*) AS images,
       COUNT(*) FILTER (WHERE state = 'accepted') AS accepted,
       COUNT(*) FILTER (WHERE state = 'rejected') AS rejected,
       COUNT(*) FILTER (WHERE state IN ('pending', 'downloaded', 'analyzed')) AS in_progress
FROM images;

-- name: report_reasons
SELECT reason, COUNT(*) AS images FROM images WHERE state = 'rejected'
GROUP BY reason ORDER BY images DESC;

-- name: doctor_quick_check
-- the server checks its own pages; nothing like PRAGMA quick_check to run
SELECT 'ok' AS quick_check;

-- metadata/stats queries
-- (`facequeue stats --db`: accepted images through the image_outcomes view; person_progress
-- gives the people with none.)

-- name: metadata_accepted_images
SELECT person_id, person, country, crop_path, image_id
FROM image_outcomes WHERE state = 'accepted' ORDER BY person_id, image_id;

-- name: wikidata_id_by_slug
-- Who holds a slug in a country (a namesake with another Wikidata id is another person).
SELECT wikidata_id FROM people WHERE slug = :slug AND country = :country LIMIT 1;

-- review + serve queries (facequeue serve; store/review.py)

-- name: review_image
SELECT i.id, i.person_id, i.state, i.reason, i.embedding IS NOT NULL AS has_embedding,
       i.face_path, p.state AS person_state, p.stage AS person_stage
FROM images i JOIN people p ON p.id = i.person_id WHERE i.id = :id;

-- name: review_set
INSERT INTO image_reviews (image_id, person_id, decision, note)
VALUES (:image_id, :person_id, :decision, :note)
ON CONFLICT (image_id) DO UPDATE
SET decision = excluded.decision, note = excluded.note, reviewed_at = fq_now();

-- name: review_clear
DELETE FROM image_reviews WHERE image_id = :image_id;

-- name: reviews_of_person
SELECT image_id, decision, note, reviewed_at FROM image_reviews WHERE person_id = :person_id;

-- name: review_claim_person
UPDATE people
SET state = 'running', stage = 'curate', lease_owner = :owner,
    lease_until = fq_now(:lease_s),
    attempts = 0, run_after = NULL, last_error = NULL,
    updated_at = fq_now()
WHERE id = :id AND stage IN ('curate', 'promote', 'done')
  AND (state <> 'running' OR lease_until < fq_now())
RETURNING *;

-- name: gallery_version
SELECT version FROM gallery_version;

-- name: gallery_changed_since
SELECT DISTINCT person_id FROM gallery_changes WHERE seq > :seq;

-- name: gallery_oldest_change
SELECT COALESCE(MIN(seq), 0) FROM gallery_changes;

-- name: gallery_embeddings_of
-- :ids is a JSON array of person ids (one parameter on both backends)
SELECT g.person_id, g.path, g.embedding, p.name, p.country, gp.folder
FROM gallery_images g
JOIN people p ON p.id = g.person_id
JOIN gallery_people gp ON gp.person_id = g.person_id
WHERE g.person_id IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint))
ORDER BY g.person_id, g.id;

-- name: gallery_all_person_ids
SELECT person_id FROM gallery_people;

-- name: gallery_references_of
SELECT g.image_id, g.path, g.is_reference FROM gallery_images g
WHERE g.person_id = :person_id ORDER BY g.is_reference DESC, g.id;

-- name: metrics_people
SELECT state, COUNT(*) AS n FROM people GROUP BY state;

-- name: metrics_images
SELECT state, COALESCE(reason, '') AS reason, COUNT(*) AS n FROM images GROUP BY state, reason;

-- name: metrics_heartbeat_age
SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp() - CAST(MAX(heartbeat_at) AS timestamptz))
            AS double precision)
FROM daemons WHERE stopped_at IS NULL;

-- name: ping
SELECT 1;

-- issue-12 statements (dead daemons' leases, own folders, vanished raw files), as in queries.sql

-- name: person_folder_suffixed
UPDATE people SET folder = CAST(:folder AS text) || '__' || id WHERE id = :id AND folder IS NULL;

-- name: release_orphans
-- Leases this daemon holds on people it no longer works on: back to the queue at once.
UPDATE people
SET state = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = fq_now()
WHERE state = 'running' AND lease_owner = :owner
  AND id NOT IN (SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS bigint))
RETURNING id;

-- name: other_daemons
SELECT id, pid, host, boot_id, heartbeat_at,
       CAST(EXTRACT(EPOCH FROM clock_timestamp() - CAST(heartbeat_at AS timestamptz))
            AS double precision) AS age_s
FROM daemons WHERE stopped_at IS NULL AND id <> :id;

-- name: mark_daemon_dead
UPDATE daemons SET stopped_at = fq_now(), in_flight = 0 WHERE id = :id AND stopped_at IS NULL;

-- name: take_over_leases
UPDATE people
SET state = 'queued', lease_owner = NULL, lease_until = NULL, run_after = NULL,
    updated_at = fq_now()
WHERE state = 'running' AND lease_owner = :owner
RETURNING id, name;

-- name: image_back_to_pending
-- Its raw file vanished before analysis (another person's curation deleted a shared file).
UPDATE images SET state = 'pending', raw_path = NULL, sha256 = NULL, updated_at = fq_now()
WHERE id = :id AND state = 'downloaded';
