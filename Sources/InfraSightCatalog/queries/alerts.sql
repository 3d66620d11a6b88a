-- title: Alerts
-- shows: What the detection rules raised, newest first: rule, severity, what happened
-- shows: (the rule's output), who and where. `severity` keeps only one severity.
-- grafana: security table 0
-- grafana: overview table 2
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: severity String = '' -- info, low, medium, high or critical ('' for all)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT time, node_name AS node, severity, rule, output, pid, start_time_ns, comm, user, container_id, container_image, tags, source_table
FROM audit.alerts
WHERE time BETWEEN {from:DateTime64(3)} AND {to:DateTime64(3)}
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
  AND ({severity:String} = '' OR severity = {severity:String})
ORDER BY time DESC
LIMIT {limit:UInt32}
