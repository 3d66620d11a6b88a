-- audit.mount_events: the table as created. The columns and their order are the original
-- InfraSight schema (seeds/database-schema.md); additions go only at the end.
CREATE TABLE IF NOT EXISTS audit.mount_events (
  pid UInt32,
  uid UInt32,
  gid UInt32,
  ppid UInt32,
  user_pid UInt32,
  user_ppid UInt32,
  cgroup_id UInt64,
  cgroup_name String,
  comm String,

  dev_name String,
  dir_name String,
  type String,
  flags UInt64,

  monotonic_ts_enter_ns UInt64,
  monotonic_ts_exit_ns UInt64,
  return_code Int64,
  latency_ns UInt64,

  event_type String,
  node_name String,
  user String,

  latency_ms Float64,
  wall_time_ms Int64,
  wall_time_dt DateTime64(3),

  container_id String,
  container_image String,
  container_labels_json JSON,

  -- InfraSight additions (appended; the columns above are the original schema)
  -- the process's and its parent's start (boot-based ns): (pid, start_time_ns) names one
  -- process across pid reuse, (ppid, parent_start_time_ns) its parent (docs/process-identity.md)
  start_time_ns UInt64,
  parent_start_time_ns UInt64
)
ENGINE = MergeTree()
ORDER BY wall_time_ms;
