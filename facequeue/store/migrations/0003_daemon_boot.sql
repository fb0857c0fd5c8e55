-- A daemon's boot id (Linux /proc/sys/kernel/random/boot_id): a restarted daemon takes over at
-- once the leases of a daemon on the same host whose process is gone or that ran before a reboot.
ALTER TABLE daemons ADD COLUMN boot_id TEXT;
