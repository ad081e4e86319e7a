-- One row per event: replays removed, connection-test rows dropped, names normalised and the
-- common properties unpacked. Everything downstream reads this model, never RAW_EVENTS.

with source as (

    select * from {{ source('tracklayer', 'raw_events') }}

),

-- SQS delivers at least once, so the same event can be loaded twice: keep the row loaded last.
deduplicated as (

    select *
    from source
    where lower(trim(event_name)) <> '{{ var("connection_test_event_name") }}'
    qualify row_number() over (
        partition by event_id
        order by loaded_at desc nulls last
    ) = 1

),

renamed as (

    select
        -- identifiers
        event_id,
        merchant_id,
        lower(trim(event_name)) as event_name,
        nullif(trim(user_id), '') as user_id,
        nullif(trim(anonymous_id), '') as anonymous_id,
        -- one id per visitor for funnels: the user when known, else the device
        coalesce('user:' || nullif(trim(user_id), ''), 'anon:' || nullif(trim(anonymous_id), '')) as visitor_id,
        nullif(trim(order_id), '') as order_id,

        -- time (UTC wall clock)
        cast(event_time as timestamp_ntz) as event_time,
        cast(event_time as date) as event_date,
        cast(loaded_at as timestamp_ntz) as loaded_at,

        -- where it came from
        case
            when lower(trim(platform)) in ('web', 'ios', 'android') then lower(trim(platform))
            when platform is null then null
            else 'other'
        end as platform,
        platform as platform_raw,
        source,
        case
            when lower(trim(consent_status)) in ('granted', 'denied', 'not_required') then lower(trim(consent_status))
            when consent_status is null then null
            else 'other'
        end as consent_status,

        -- money
        cast(value as number(18, 4)) as value,
        upper(trim(currency)) as currency,

        -- properties: products come as a `products` array; a flat product_id/... is read too
        properties:page_url::string as page_url,
        properties:session_id::string as session_id,
        properties:utm_source::string as utm_source,
        properties:utm_medium::string as utm_medium,
        properties:utm_campaign::string as utm_campaign,
        array_size(properties:products) as product_count,
        coalesce(properties:product_id::string, properties:products[0]:product_id::string) as product_id,
        coalesce(properties:product_name::string, properties:products[0]:name::string) as product_name,
        try_to_number(coalesce(properties:price::string, properties:products[0]:price::string), 18, 4) as product_price,
        try_to_number(coalesce(properties:quantity::string, properties:products[0]:quantity::string), 18, 0) as product_quantity,

        -- from the original payload (a VARIANT object): fields the loader keeps nowhere else
        raw_payload:context:locale::string as locale,
        raw_payload:context:os::string as device_os,

        properties,
        raw_payload

    from deduplicated

)

select * from renamed
