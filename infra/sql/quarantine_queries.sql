-- What an operator runs on the quarantine, RAW_EVENTS_REJECTED (docs/operations.md, "The quarantine").
-- REJECTED_AT is the load time in UTC (the loader's sessions run in UTC). Each query reads only
-- a recent window: the table is not clustered, so a window keeps the scan small.

-- Rejections by reason and day, last 30 days
SELECT
DATE_TRUNC('day', REJECTED_AT) AS REJECTED_DAY,
REASON,
COUNT(*) AS REJECTIONS,
COUNT(DISTINCT MERCHANT_ID) AS MERCHANTS
FROM tracklayer.events.raw_events_rejected
WHERE REJECTED_AT >= DATEADD('day', -30, CURRENT_TIMESTAMP())
GROUP BY 1, 2
ORDER BY REJECTED_DAY DESC, REJECTIONS DESC, REASON;

-- The latest five examples per reason, last 7 days
SELECT
REASON,
REJECTED_AT,
MERCHANT_ID,
EVENT_ID,
SOURCE_MESSAGE_ID,
DETAIL,
LEFT(RAW_TEXT, 1000) AS RAW_TEXT
FROM tracklayer.events.raw_events_rejected
WHERE REJECTED_AT >= DATEADD('day', -7, CURRENT_TIMESTAMP())
QUALIFY ROW_NUMBER() OVER (PARTITION BY REASON ORDER BY REJECTED_AT DESC) <= 5
ORDER BY REASON, REJECTED_AT DESC;

-- Which producers to talk to: rejections by merchant and reason, last 7 days
SELECT
MERCHANT_ID,
REASON,
COUNT(*) AS REJECTIONS,
MAX(REJECTED_AT) AS LATEST
FROM tracklayer.events.raw_events_rejected
WHERE REJECTED_AT >= DATEADD('day', -7, CURRENT_TIMESTAMP())
GROUP BY 1, 2
ORDER BY REJECTIONS DESC, MERCHANT_ID, REASON;
