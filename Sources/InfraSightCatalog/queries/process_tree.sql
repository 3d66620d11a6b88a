-- title: Process tree
-- shows: A process's ancestors (depth below 0, its parent at -1) and descendants (above
-- shows: 0), from the rows' pid/ppid and start times on its node, across pid reuse
-- shows: (docs/process-identity.md). Needs ClickHouse 24.4 or later (WITH RECURSIVE).
-- grafana: processes table 2
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String -- the process's node
-- param: pid UInt32 -- the process's pid (on its node)
-- param: start_time_ns UInt64 -- the process's start time (with pid, names one process)
WITH RECURSIVE
procs AS (
    SELECT pid, start_time_ns,
        argMin(ppid, monotonic_ts_enter_ns) AS parent_pid, argMin(parent_start_time_ns, monotonic_ts_enter_ns) AS parent_start,
        argMax(comm, monotonic_ts_enter_ns) AS comm, argMaxIf(argv, monotonic_ts_enter_ns, event_type = 'execve') AS argv,
        any(user) AS user, any(container_id) AS container_id, min(wall_time_dt) AS first_seen, count() AS events
    FROM audit.tracing_events
    WHERE node_name = {node:String}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
    GROUP BY pid, start_time_ns
),
up AS (
    SELECT toInt32(0) AS depth, pid, start_time_ns, parent_pid, parent_start, comm, argv, user, container_id, first_seen, events
    FROM procs WHERE pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
    UNION ALL
    SELECT toInt32(up.depth - 1), p.pid, p.start_time_ns, p.parent_pid, p.parent_start, p.comm, p.argv, p.user, p.container_id, p.first_seen, p.events
    FROM procs AS p INNER JOIN up ON p.pid = up.parent_pid AND p.start_time_ns = up.parent_start
    WHERE up.depth > -64
),
down AS (
    SELECT toInt32(0) AS depth, pid, start_time_ns, parent_pid, parent_start, comm, argv, user, container_id, first_seen, events
    FROM procs WHERE pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
    UNION ALL
    SELECT toInt32(down.depth + 1), p.pid, p.start_time_ns, p.parent_pid, p.parent_start, p.comm, p.argv, p.user, p.container_id, p.first_seen, p.events
    FROM procs AS p INNER JOIN down ON p.parent_pid = down.pid AND p.parent_start = down.start_time_ns
    WHERE down.depth < 64
)
SELECT depth, pid, start_time_ns, parent_pid AS ppid, parent_start AS parent_start_time_ns, comm, argv, user, container_id, first_seen, events
FROM (SELECT * FROM up UNION ALL SELECT * FROM down WHERE depth > 0)
ORDER BY depth, first_seen, pid
