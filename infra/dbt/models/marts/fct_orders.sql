-- One row per order. An order is a purchase event with an order_id; order ids are unique per
-- merchant, so the key is (merchant_id, order_id). When a sender emits several purchase events
-- for one order (different event ids, so staging keeps them all), the first one counts and
-- purchase_events says how many there were.

with purchases as (

    select *
    from {{ ref('stg_tracklayer_events') }}
    where event_name = 'purchase'
      and order_id is not null

),

first_purchase as (

    select
        *,
        count(*) over (partition by merchant_id, order_id) as purchase_events
    from purchases
    qualify row_number() over (
        partition by merchant_id, order_id
        order by event_time, event_id
    ) = 1

)

select
    merchant_id || '|' || order_id as order_key,
    order_id,
    merchant_id,
    user_id,
    anonymous_id,
    case when user_id is not null then merchant_id || '|' || user_id end as customer_key,
    event_time as ordered_at,
    event_date as order_date,
    value as revenue,
    currency,
    platform,
    source,
    product_count,
    utm_source,
    utm_medium,
    utm_campaign,
    event_id,
    purchase_events
from first_purchase
