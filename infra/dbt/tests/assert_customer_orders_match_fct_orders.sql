-- dim_customers' orders and lifetime revenue add up to fct_orders, customer by customer.
with from_orders as (
    select customer_key, count(*) as orders, sum(revenue) as revenue
    from {{ ref('fct_orders') }}
    where customer_key is not null
    group by customer_key
)
select c.customer_key, c.orders, o.orders as fct_orders, c.lifetime_revenue, o.revenue as fct_revenue
from {{ ref('dim_customers') }} c
left join from_orders o on o.customer_key = c.customer_key
where c.orders <> coalesce(o.orders, 0)
   or c.lifetime_revenue <> cast(coalesce(o.revenue, 0) as number(18, 4))
