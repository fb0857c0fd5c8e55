-- Every usable face of an image, not only the largest (faces in photos with other people),
-- and the face curation kept. faces_json keeps every detected box (largest first); the
-- columns below hold what analysis measured on the faces it embedded.
ALTER TABLE images ADD COLUMN face_values_json TEXT;  -- per embedded face, in order: {index (into faces_json), blur, brightness, contrast, phash, phash_mirror, landmarks}
ALTER TABLE images ADD COLUMN face_vectors BLOB;      -- float32 embeddings of those faces, concatenated in the same order
ALTER TABLE images ADD COLUMN face_index INTEGER;     -- the face curation kept (index into faces_json); images.embedding is then that face's
