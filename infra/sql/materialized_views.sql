-- Materialized views for the dashboards that ask the same questions all day: daily revenue
-- and daily funnel steps. Snowflake keeps them current in the background (serverless credits
-- for the maintenance, storage for the results) and can answer matching queries on
-- RAW_EVENTS from them.
--
-- Requirements and limits (Snowflake):
-- * Enterprise Edition or higher. Run as a role with CREATE MATERIALIZED VIEW on the schema
--   and SELECT on RAW_EVENTS (not the loader's tracklayer_writer role).
-- * One table, no joins, no window functions, no HAVING / ORDER BY / LIMIT, every GROUP BY key
--   in the SELECT list, only deterministic functions (so no CURRENT_TIMESTAMP()), and only
--   these aggregates among others: COUNT, SUM, MIN, MAX, AVG, APPROX_COUNT_DISTINCT -- no
--   COUNT(DISTINCT ...). Hence distinct counts are HyperLogLog estimates here.
-- * They read RAW_EVENTS as loaded: a replayed event (same event_id loaded twice) counts twice,
--   because deduplication needs a window function. Exact figures: the dbt marts fct_orders and
--   fct_funnel_steps (docs/dbt.md). Replays are rare (at-least-once delivery), so these are
--   good for dashboards, not for finance.
-- * Connection-test rows (event_name tracklayer_connection_test) fall outside both filters.
--
-- Rates for a dashboard, from the funnel view:
--   SELECT merchant_id, event_date,
--          add_to_cart_events / NULLIF(view_content_events, 0) AS add_to_cart_per_view,
--          purchase_events / NULLIF(view_content_events, 0) AS purchases_per_view
--   FROM tracklayer.events.mv_daily_funnel_steps;

-- Revenue per merchant, day (UTC), platform and currency.
CREATE OR REPLACE MATERIALIZED VIEW tracklayer.events.mv_daily_revenue
COMMENT = 'TrackLayer: purchase revenue per merchant, UTC day, platform, currency (replays not removed)'
AS
SELECT
merchant_id,
TO_DATE(event_time) AS event_date,
platform,
currency,
COUNT(*) AS purchase_events,
APPROX_COUNT_DISTINCT(order_id) AS orders_approx,
SUM(value) AS revenue
FROM tracklayer.events.raw_events
WHERE event_name = 'purchase'
GROUP BY merchant_id, TO_DATE(event_time), platform, currency;

-- Funnel steps per merchant and day (UTC): events per step and distinct visitors per step
-- (user_id when known, else anonymous_id; approximate).
CREATE OR REPLACE MATERIALIZED VIEW tracklayer.events.mv_daily_funnel_steps
COMMENT = 'TrackLayer: funnel events and approximate visitors per step, per merchant and UTC day (replays not removed)'
AS
SELECT
merchant_id,
TO_DATE(event_time) AS event_date,
SUM(IFF(event_name = 'view_content', 1, 0)) AS view_content_events,
SUM(IFF(event_name = 'add_to_cart', 1, 0)) AS add_to_cart_events,
SUM(IFF(event_name = 'begin_checkout', 1, 0)) AS begin_checkout_events,
SUM(IFF(event_name = 'purchase', 1, 0)) AS purchase_events,
APPROX_COUNT_DISTINCT(IFF(event_name = 'view_content', COALESCE(user_id, anonymous_id), NULL)) AS viewers_approx,
APPROX_COUNT_DISTINCT(IFF(event_name = 'add_to_cart', COALESCE(user_id, anonymous_id), NULL)) AS adders_approx,
APPROX_COUNT_DISTINCT(IFF(event_name = 'begin_checkout', COALESCE(user_id, anonymous_id), NULL)) AS checkouts_approx,
APPROX_COUNT_DISTINCT(IFF(event_name = 'purchase', COALESCE(user_id, anonymous_id), NULL)) AS purchasers_approx
FROM tracklayer.events.raw_events
WHERE event_name IN ('view_content', 'add_to_cart', 'begin_checkout', 'purchase')
GROUP BY merchant_id, TO_DATE(event_time);
