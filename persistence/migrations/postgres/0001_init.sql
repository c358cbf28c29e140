-- Projects, members, the per-project update log, snapshots, versions, notifications.
-- Times are timestamptz (UTC on the way out). Document bytes are opaque Yjs updates.

CREATE TABLE projects (
    id             text        PRIMARY KEY,
    name           text        NOT NULL,
    owner          text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Highest log seq ever assigned; bumped under this row's lock, so seqs are
    -- gap-free and in commit order.
    log_head       bigint      NOT NULL DEFAULT 0,
    -- Compaction lease: the fence is bumped by every acquire; a compaction commits only
    -- while its fence is still the current one and not released.
    compact_fence  bigint      NOT NULL DEFAULT 0,
    compact_holder text,
    compact_until  timestamptz
)
-- Every group commit rewrites the project row (log_head, updated_at). Leaving 20 %
-- of each page free lets those be HOT updates (no index churn); no index covers
-- the columns they change, for the same reason.
WITH (fillfactor = 80);

CREATE INDEX projects_owner_idx ON projects (owner);

CREATE TABLE project_members (
    project_id text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('editor', 'viewer')),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);

CREATE INDEX project_members_user_idx ON project_members (user_id);

-- The update log. Rows <= the snapshot's through_seq are deleted by compaction.
CREATE TABLE doc_updates (
    project_id text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    data       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, seq)
);

-- The latest snapshot only: it covers every log row with seq <= through_seq.
CREATE TABLE doc_snapshots (
    project_id  text        PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    snapshot    bytea       NOT NULL,
    through_seq bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE versions (
    project_id text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version    integer     NOT NULL,
    label      text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    node_count integer     NOT NULL,
    edge_count integer     NOT NULL,
    log_seq    bigint      NOT NULL,
    state      bytea       NOT NULL,
    PRIMARY KEY (project_id, version)
);

CREATE TABLE notifications (
    id         text        PRIMARY KEY,
    user_id    text        NOT NULL,
    kind       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);

-- Listing is newest first per user, (created_at, id) being the page key.
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;
