-- An admin can freeze a project's document; the flag outlives the room (a room loaded
-- later is read-only too) until an admin lifts it.
ALTER TABLE projects ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
