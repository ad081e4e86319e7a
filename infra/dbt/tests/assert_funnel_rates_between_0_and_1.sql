-- Rates are shares of the day's viewers: never below 0 or above 1, and no step counts more
-- visitors than the day had.
select *
from {{ ref('fct_funnel_steps') }}
where add_to_cart_rate < 0 or add_to_cart_rate > 1
   or checkout_rate < 0 or checkout_rate > 1
   or purchase_rate < 0 or purchase_rate > 1
   or viewed > visitors or added_to_cart > visitors
   or checked_out > visitors or purchased > visitors
