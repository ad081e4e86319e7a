-- The product guide's sample queries, verbatim, against the table the loader fills.
-- For deduplicated, test-row-free figures use the dbt marts instead (infra/dbt, docs/dbt.md):
-- these read RAW_EVENTS directly, so a replayed event counts twice in SUM(value).

-- Revenue by platform
SELECT
platform,
currency,
DATE_TRUNC('day', event_time) AS event_day,
SUM(value) AS revenue,
COUNT(DISTINCT order_id) AS orders
FROM tracklayer.events.raw_events
WHERE event_name = 'purchase'
GROUP BY 1, 2, 3
ORDER BY event_day DESC, revenue DESC;

-- Funnel rates
WITH user_steps AS (
SELECT
merchant_id,
user_id,
MAX(IFF(event_name = 'view_content', 1, 0)) AS viewed,
MAX(IFF(event_name = 'add_to_cart', 1, 0)) AS added,
MAX(IFF(event_name = 'begin_checkout', 1, 0)) AS checked_out,
MAX(IFF(event_name = 'purchase', 1, 0)) AS purchased
FROM tracklayer.events.raw_events
WHERE event_time >= DATEADD('day', -30, CURRENT_TIMESTAMP())
GROUP BY 1, 2
)
SELECT
merchant_id,
AVG(added) AS add_to_cart_rate,
AVG(checked_out) AS checkout_rate,
AVG(purchased) AS purchase_rate
FROM user_steps
WHERE viewed = 1
GROUP BY 1;

-- Cohort LTV
WITH first_purchase AS (
SELECT
merchant_id,
user_id,
DATE_TRUNC('month', MIN(event_time)) AS cohort_month
FROM tracklayer.events.raw_events
WHERE event_name = 'purchase'
GROUP BY 1, 2
)
SELECT
f.merchant_id,
f.cohort_month,
DATEDIFF('month', f.cohort_month, DATE_TRUNC('month', e.event_time)) AS month_number,
SUM(e.value) AS cohort_revenue,
COUNT(DISTINCT f.user_id) AS customers,
SUM(e.value) / NULLIF(COUNT(DISTINCT f.user_id), 0) AS ltv
FROM first_purchase f
JOIN tracklayer.events.raw_events e
ON e.merchant_id = f.merchant_id
AND e.user_id = f.user_id
WHERE e.event_name = 'purchase'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
