-- title: Alerts over time
-- shows: Alerts per interval by rule: when detection started firing, and which rule.
-- grafana: security timeseries 1
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: interval_s UInt32 = 10 -- bucket width in seconds
SELECT toStartOfInterval(time, toIntervalSecond({interval_s:UInt32})) AS t, rule, count() AS alerts
FROM audit.alerts
WHERE time BETWEEN {from:DateTime64(3)} AND {to:DateTime64(3)}
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
GROUP BY t, rule
ORDER BY t, rule
