-- Projects, members, the per-project update log, snapshots, versions, notifications.
-- Times are INTEGER microseconds since the Unix epoch, UTC (exact, and they sort).
-- Document bytes are opaque Yjs updates.

CREATE TABLE projects (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- Highest log seq ever assigned; bumped inside the writing transaction, so seqs
    -- are gap-free and in commit order.
    log_head       INTEGER NOT NULL DEFAULT 0,
    -- Compaction lease: the fence is bumped by every acquire; a compaction commits only
    -- while its fence is still the current one and not released.
    compact_fence  INTEGER NOT NULL DEFAULT 0,
    compact_holder TEXT,
    compact_until  INTEGER
) STRICT;

CREATE INDEX projects_owner_idx ON projects (owner);

CREATE TABLE project_members (
    project_id TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('editor', 'viewer')),
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
) STRICT;

CREATE INDEX project_members_user_idx ON project_members (user_id);

-- The update log, clustered by (project_id, seq) so loading a tail is one range scan.
-- Rows <= the snapshot's through_seq are deleted by compaction.
CREATE TABLE doc_updates (
    project_id TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, seq)
) STRICT, WITHOUT ROWID;

-- The latest snapshot only: it covers every log row with seq <= through_seq.
CREATE TABLE doc_snapshots (
    project_id  TEXT    PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    snapshot    BLOB    NOT NULL,
    through_seq INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE versions (
    project_id TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    label      TEXT,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    node_count INTEGER NOT NULL,
    edge_count INTEGER NOT NULL,
    log_seq    INTEGER NOT NULL,
    state      BLOB    NOT NULL,
    PRIMARY KEY (project_id, version)
) STRICT;

CREATE TABLE notifications (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,  -- JSON object
    created_at INTEGER NOT NULL,
    read_at    INTEGER
) STRICT;

-- Listing is newest first per user, (created_at, id) being the page key.
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;
