-- One row per known customer: a user_id within a merchant (user ids are the merchant's own).
-- Guest checkouts (no user_id) stay in fct_orders with a null customer_key: stitching
-- anonymous ids to users is identity resolution, not this model's job.
-- The cohort is the month of the first order; lifetime revenue is in the merchant's currency.

with events as (

    select
        merchant_id,
        user_id,
        min(event_time) as first_seen_at,
        max(event_time) as last_seen_at,
        count(*) as events
    from {{ ref('stg_tracklayer_events') }}
    where user_id is not null
    group by merchant_id, user_id

),

orders as (

    select
        merchant_id,
        user_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) as orders,
        sum(revenue) as lifetime_revenue,
        max(currency) as currency
    from {{ ref('fct_orders') }}
    where user_id is not null
    group by merchant_id, user_id

)

select
    e.merchant_id || '|' || e.user_id as customer_key,
    e.merchant_id,
    e.user_id,
    e.first_seen_at,
    e.last_seen_at,
    e.events,
    o.first_order_at,
    o.last_order_at,
    cast(date_trunc('month', o.first_order_at) as date) as cohort_month,
    coalesce(o.orders, 0) as orders,
    cast(coalesce(o.lifetime_revenue, 0) as number(18, 4)) as lifetime_revenue,
    cast(o.lifetime_revenue / nullif(o.orders, 0) as number(18, 4)) as average_order_value,
    o.currency,
    case
        when coalesce(o.orders, 0) = 0 then 'prospect'
        when o.orders = 1 then 'one_time'
        else 'repeat'
    end as customer_type
from events e
left join orders o
    on o.merchant_id = e.merchant_id
   and o.user_id = e.user_id
