-- PostgreSQL mirror of migrations/0003_daemon_boot.sql: a daemon's boot id, so a restarted
-- daemon takes over at once the leases of a dead daemon on the same host.
ALTER TABLE daemons ADD COLUMN boot_id TEXT;
