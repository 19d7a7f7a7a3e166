-- See the PostgreSQL migration of the same name.
CREATE TABLE registry.match_keys (
    household_id text PRIMARY KEY,
    version      integer NOT NULL,
    match_key    text NOT NULL
);
CREATE INDEX registry.match_keys_key_idx ON match_keys (match_key);
