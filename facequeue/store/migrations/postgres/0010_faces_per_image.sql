-- PostgreSQL mirror of migrations/0010_faces_per_image.sql: every usable face of an image,
-- not only the largest, and the face curation kept.
ALTER TABLE images ADD COLUMN face_values_json TEXT;  -- per embedded face: {index, blur, brightness, contrast, phash, phash_mirror, landmarks}
ALTER TABLE images ADD COLUMN face_vectors BYTEA;     -- float32 embeddings of those faces, concatenated in the same order
ALTER TABLE images ADD COLUMN face_index INTEGER;     -- the face curation kept (index into faces_json)
