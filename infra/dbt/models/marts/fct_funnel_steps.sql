-- The shopping funnel per merchant and day (UTC). A visitor is a user when known, else an
-- anonymous id (stg visitor_id). Counts: visitors who reached each step that day. Rates, as
-- in the guide's funnel query: of the visitors who viewed a product that day, the share who
-- also added to cart / began checkout / purchased that day.

with visitor_days as (

    select
        merchant_id,
        event_date,
        visitor_id,
        max(iff(event_name = 'view_content', 1, 0)) as viewed,
        max(iff(event_name = 'add_to_cart', 1, 0)) as added,
        max(iff(event_name = 'begin_checkout', 1, 0)) as checked_out,
        max(iff(event_name = 'purchase', 1, 0)) as purchased
    from {{ ref('stg_tracklayer_events') }}
    where event_name in ('view_content', 'add_to_cart', 'begin_checkout', 'purchase')
      and visitor_id is not null
    group by merchant_id, event_date, visitor_id

),

daily as (

    select
        merchant_id,
        event_date,
        cast(count(*) as integer) as visitors,
        cast(sum(viewed) as integer) as viewed,
        cast(sum(added) as integer) as added_to_cart,
        cast(sum(checked_out) as integer) as checked_out,
        cast(sum(purchased) as integer) as purchased,
        cast(sum(iff(viewed = 1 and added = 1, 1, 0)) as integer) as viewed_then_added,
        cast(sum(iff(viewed = 1 and checked_out = 1, 1, 0)) as integer) as viewed_then_checked_out,
        cast(sum(iff(viewed = 1 and purchased = 1, 1, 0)) as integer) as viewed_then_purchased
    from visitor_days
    group by merchant_id, event_date

)

select
    merchant_id || '|' || cast(event_date as varchar) as funnel_day_key,
    merchant_id,
    event_date,
    visitors,
    viewed,
    added_to_cart,
    checked_out,
    purchased,
    cast(viewed_then_added / nullif(viewed, 0) as number(9, 4)) as add_to_cart_rate,
    cast(viewed_then_checked_out / nullif(viewed, 0) as number(9, 4)) as checkout_rate,
    cast(viewed_then_purchased / nullif(viewed, 0) as number(9, 4)) as purchase_rate
from daily
