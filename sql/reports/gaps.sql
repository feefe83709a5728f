-- Gap history, newest first: each hole (a missing range or a broken parent link) with when it
-- was first detected, how many repair attempts it took, the providers tried, the last
-- outcome, and the time from detection to the successful repair (NULL while open).
-- Run it: blockstreamer sql -f sql/reports/gaps.sql
SELECT g.from_number,
       g.to_number,
       g.to_number - g.from_number + 1 AS heights,
       g.reason,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(g.detected_at_ms) / 1000.0, 'unixepoch') AS first_detected,
       count(*) AS attempts,
       (SELECT group_concat(name, ',') FROM (
            SELECT DISTINCT p.name FROM gap_repairs x JOIN providers p ON p.id = x.provider_id
            WHERE x.from_number = g.from_number AND x.to_number = g.to_number AND x.reason = g.reason
            ORDER BY p.name)) AS providers,
       (SELECT x.outcome FROM gap_repairs x
         WHERE x.from_number = g.from_number AND x.to_number = g.to_number AND x.reason = g.reason
         ORDER BY x.attempted_at_ms DESC, x.id DESC LIMIT 1) AS last_outcome,
       min(CASE WHEN g.outcome = 'repaired' THEN g.attempted_at_ms END) - min(g.detected_at_ms) AS repair_ms
FROM gap_repairs g
GROUP BY g.from_number, g.to_number, g.reason
ORDER BY min(g.detected_at_ms) DESC, g.from_number DESC
