-- The content index: each file a deploy holds, with its SHA-256 and size. A row is written only
-- once the bytes were hashed by the server (an upload, a bundle member), checked by S3 (a
-- presigned POST bound to its checksum) or copied with S3 computing the digest of the copy.
-- A later deploy of the same site copies a file whose digest it finds here, inside the bucket,
-- from a finalized deploy that is not tombstoned, instead of receiving the bytes again.
-- Rows leave with their deploy (GC, delete, site delete; restore writes them back), so the
-- table holds only what the live deploys hold.
CREATE TABLE deploy_files (
    site      text   NOT NULL,
    deploy_id text   NOT NULL,
    path      text   NOT NULL,
    sha256    bytea  NOT NULL CHECK (length(sha256) = 32),
    size      bigint NOT NULL CHECK (size >= 0),
    PRIMARY KEY (site, deploy_id, path)
);
-- A manifest's lookup: which of these digests does the site already hold?
CREATE INDEX deploy_files_digest_idx ON deploy_files (site, sha256);
